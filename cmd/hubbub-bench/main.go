// Command hubbub-bench measures Hubbub the way its users would: it starts
// Redis and several chat server processes on loopback, creates users through
// the API, spreads WebSocket connections over several load worker processes
// (each its own 127.0.0.x source address: one process may hold at most
// 20,000 open files here), joins them to one channel, sends messages at a
// stepped rate, and reports per step what arrived, how fast and how late,
// and what it cost the servers (RSS and CPU read from /proc).
//
//	hubbub-bench run [flags]       the coordinator (what people run)
//	hubbub-bench worker            a load worker (started by run)
//	hubbub-bench baseline --addr   gorilla's chat example shape (the baseline)
//
// Every run is bounded: a fixed number of sockets and messages, a deadline
// (--timeout), and only loopback addresses. See docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hubbub-chat/hubbub/test/baseline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hubbub-bench run|worker|baseline [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(ctx, os.Args[2:])
	case "worker":
		err = workerMain(ctx)
	case "baseline":
		err = baselineMain(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want run, worker or baseline)", os.Args[1])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "hubbub-bench:", err)
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg config
	var steps, serverArgs, serverEnv string
	fs.StringVar(&cfg.Target, "target", "hubbub", "hubbub (chat servers) or baseline (gorilla's chat example shape, one process)")
	fs.StringVar(&cfg.ChatServer, "chatserver", "", "chatserver binary (default: bin/chatserver, else beside this binary)")
	fs.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "redis-server binary")
	fs.StringVar(&cfg.Backend, "backend", "redis", "redis, or memory (one server only)")
	fs.IntVar(&cfg.Servers, "servers", 1, "chat server processes")
	fs.IntVar(&cfg.Conns, "conns", 200, "WebSocket connections, all in one channel")
	fs.IntVar(&cfg.Users, "users", 0, "users to create (default: one per connection)")
	fs.IntVar(&cfg.Workers, "workers", 0, "load worker processes (default: one per 16,000 connections)")
	fs.StringVar(&cfg.Channel, "channel", "general", "the channel")
	fs.StringVar(&steps, "steps", "10,20,40", "comma-separated messages/s per step (all senders together); RATE@LOGINS adds a login flood of LOGINS/s")
	fs.DurationVar(&cfg.StepDuration, "step-duration", 10*time.Second, "how long each step sends")
	fs.DurationVar(&cfg.DrainMax, "drain-max", 20*time.Second, "how long to wait after a step for the last deliveries")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "idle wait after connecting, before memory is measured")
	fs.IntVar(&cfg.Repeat, "repeat", 3, "run the steps this many times; tables show medians")
	fs.Float64Var(&cfg.DialRate, "dial-rate", 0, "new connections per second, all workers together (0 = as fast as dial concurrency allows)")
	fs.IntVar(&cfg.DialConc, "dial-concurrency", 32, "concurrent handshakes per worker")
	fs.IntVar(&cfg.BcryptCost, "bcrypt-cost", 4, "bcrypt cost of the benchmark's users (low: creating them is setup, not the test)")
	fs.IntVar(&cfg.FloodCost, "flood-bcrypt-cost", 12, "bcrypt cost of the login-flood account")
	fs.IntVar(&cfg.FloodConc, "flood-concurrency", 64, "logins in flight at most during a flood")
	fs.StringVar(&serverArgs, "server-args", "", "extra chatserver flags, space-separated")
	fs.StringVar(&serverEnv, "server-env", "", "extra environment for the servers, space-separated KEY=VALUE (e.g. GOGC=50)")
	fs.StringVar(&cfg.WorkDir, "workdir", "", "directory for server and Redis logs (default: a new temp dir)")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "the whole run's deadline")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 5*time.Minute, "how long workers may take to open their sockets")
	fs.IntVar(&cfg.FirstWorkerIP, "first-worker-ip", 10, "workers bind source addresses 127.0.0.N, 127.0.0.N+1, ...")
	fs.StringVar(&cfg.JSONOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.Steps, err = parseSteps(steps); err != nil {
		return err
	}
	cfg.ServerArgs = strings.Fields(serverArgs)
	cfg.ServerEnv = strings.Fields(serverEnv)
	if cfg.Users <= 0 {
		cfg.Users = cfg.Conns
	}
	if cfg.Workers <= 0 {
		cfg.Workers = int(math.Ceil(float64(cfg.Conns) / 16000))
	}
	switch {
	case cfg.Target != "hubbub" && cfg.Target != "baseline":
		return fmt.Errorf("--target: want hubbub or baseline")
	case cfg.Conns < 1 || cfg.Servers < 1 || cfg.Repeat < 1:
		return fmt.Errorf("--conns, --servers and --repeat must be at least 1")
	case cfg.Conns/cfg.Workers > 19000:
		return fmt.Errorf("%d sockets per worker: over the 20,000 open files one process may have; raise --workers", cfg.Conns/cfg.Workers)
	case cfg.Target == "baseline" && cfg.Servers != 1:
		return fmt.Errorf("the baseline is one process: --servers=1")
	case cfg.Backend == "memory" && cfg.Servers != 1:
		return fmt.Errorf("the memory backend is one process: --servers=1")
	case cfg.FirstWorkerIP+cfg.Workers > 254:
		return fmt.Errorf("too many workers for 127.0.0.%d+", cfg.FirstWorkerIP)
	case len(cfg.Steps)*cfg.Repeat > maxSteps:
		return fmt.Errorf("at most %d steps in all", maxSteps)
	}
	if cfg.Target == "hubbub" && cfg.ChatServer == "" {
		cfg.ChatServer = findChatServer()
	}
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "hubbub-bench-"); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("logs", "dir", cfg.WorkDir)
	res, err := runCoordinator(ctx, cfg, log)
	if res != nil && len(res.Steps) > 0 {
		if res.Medians == nil {
			res.Medians = medians(res.Steps)
		}
		writeMarkdown(os.Stdout, res)
		if cfg.JSONOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(cfg.JSONOut, b, 0o644); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return err
}

func findChatServer() string {
	if _, err := os.Stat("bin/chatserver"); err == nil {
		p, _ := filepath.Abs("bin/chatserver")
		return p
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "chatserver")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chatserver"); err == nil {
		return p
	}
	return "bin/chatserver"
}

// baselineMain serves the baseline chat at --addr: /ws and /healthz.
func baselineMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hub := baseline.NewHub()
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		hub.Run(ctx)
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { hub.ServeWS(ctx, w, r) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-hubDone
	return err
}

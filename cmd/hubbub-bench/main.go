// Command hubbub-bench measures Hubbub the way its users would: it starts
// Redis and several chat server processes on loopback, creates users through
// the API, spreads WebSocket connections over several load worker processes
// (each its own 127.0.0.x source address: one process may hold at most
// 20,000 open files here), joins them to one channel, sends messages at a
// stepped rate, and reports per step what arrived, how fast and how late,
// and what it cost the servers (RSS and CPU read from /proc).
//
//	hubbub-bench run [flags]       the coordinator (what people run)
//	hubbub-bench hello [flags]     one person's connect (hello) in many channels, and the people directory
//	hubbub-bench worker            a load worker (started by run)
//	hubbub-bench baseline --addr   gorilla's chat example shape (the baseline)
//
// Every run is bounded: a fixed number of sockets and messages, a deadline
// (--timeout), and only loopback addresses. See docs/benchmarks.md.
//
// This file is the command line only: the tool is internal/loadtest, whose
// Run starts this same binary again as "worker" and "baseline".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hubbub-chat/hubbub/internal/loadtest"
	"github.com/hubbub-chat/hubbub/internal/loadtest/baseline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hubbub-bench run|hello|worker|baseline [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(ctx, os.Args[2:])
	case "hello":
		err = helloMain(ctx, os.Args[2:])
	case "worker":
		err = loadtest.RunWorker(ctx, os.Stdin, os.Stdout)
	case "baseline":
		err = baselineMain(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want run, hello, worker or baseline)", os.Args[1])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "hubbub-bench:", err)
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg loadtest.Config
	var steps, serverArgs, serverEnv, jsonOut string
	fs.StringVar(&cfg.Target, "target", "hubbub", "hubbub (chat servers) or baseline (gorilla's chat example shape, one process)")
	fs.StringVar(&cfg.ChatServer, "chatserver", "", "chatserver binary (default: bin/chatserver, else beside this binary)")
	fs.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "redis-server binary")
	fs.IntVar(&cfg.RedisReplicas, "redis-replicas", 0, "replicas of the Redis (0..5): the chat servers then wait for one to confirm each message (--redis-min-replica-acks auto)")
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
	fs.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.Steps, err = loadtest.ParseSteps(steps); err != nil {
		return err
	}
	cfg.ServerArgs = strings.Fields(serverArgs)
	cfg.ServerEnv = strings.Fields(serverEnv)
	res, err := loadtest.Run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if res != nil && len(res.Steps) > 0 {
		res.WriteMarkdown(os.Stdout)
		if jsonOut != "" {
			if werr := res.WriteJSON(jsonOut); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return err
}

func helloMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("hello", flag.ContinueOnError)
	var cfg loadtest.HelloConfig
	var serverArgs, jsonOut string
	fs.StringVar(&cfg.ChatServer, "chatserver", "", "chatserver binary (default: bin/chatserver, else beside this binary)")
	fs.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "redis-server binary")
	fs.StringVar(&cfg.Backend, "backend", "redis", "redis or memory")
	fs.IntVar(&cfg.People, "people", 10000, "people in the room (registered and logged in through the API)")
	fs.IntVar(&cfg.Channels, "channels", 1000, "created channels the measured person is in")
	fs.IntVar(&cfg.MessagesPerChannel, "messages-per-channel", 1, "messages posted in each channel before measuring (so lastId and unread are real)")
	fs.IntVar(&cfg.Connects, "connects", 200, "connects timed per scenario")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "connects at once in the concurrent scenario (0: skip it)")
	fs.IntVar(&cfg.DirectoryWalks, "directory-walks", 3, "walks through every page of the people directory")
	fs.StringVar(&cfg.Prefix, "prefix", "bench12", "the people directory's prefix query")
	fs.IntVar(&cfg.Requests, "requests", 50, "repetitions of each single-page HTTP request")
	fs.IntVar(&cfg.BcryptCost, "bcrypt-cost", 4, "bcrypt cost of the users (low: creating them is setup, not the test)")
	fs.StringVar(&serverArgs, "server-args", "", "extra chatserver flags, space-separated")
	fs.StringVar(&cfg.WorkDir, "workdir", "", "directory for server and Redis logs (default: a new temp dir)")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "the whole run's deadline")
	fs.DurationVar(&cfg.Settle, "settle", time.Second, "pause after setup and after each scenario, for the server's background work to end")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the chat server, taken while the measured person connects over and over, to this file")
	fs.IntVar(&cfg.ProfileSeconds, "profile-seconds", 10, "length of the --cpuprofile profile")
	fs.BoolVar(&cfg.ProfileOthersOnline, "profile-others-online", false, "profile while the channels' owner is online (default: while nobody else is)")
	fs.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.ServerArgs = strings.Fields(serverArgs)
	res, err := loadtest.RunHello(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if res != nil && (len(res.Connects) > 0 || len(res.Requests) > 0) {
		res.WriteMarkdown(os.Stdout)
		if jsonOut != "" {
			if werr := res.WriteJSON(jsonOut); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return err
}

// baselineMain serves the baseline chat at --addr: /ws and /healthz.
func baselineMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (loopback)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return baseline.ListenAndServe(ctx, *addr)
}

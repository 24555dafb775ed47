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
//	hubbub-bench storm [flags]     a reconnect storm: every socket drops and resumes at once
//	hubbub-bench dm [flags]        DMs and small channels, optionally through a server's drain
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
	"io"
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
		fmt.Fprintln(os.Stderr, "usage: hubbub-bench run|hello|storm|dm|worker|baseline [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runMain(ctx, os.Args[2:])
	case "hello":
		err = helloMain(ctx, os.Args[2:])
	case "storm":
		err = stormMain(ctx, os.Args[2:])
	case "dm":
		err = dmMain(ctx, os.Args[2:])
	case "worker":
		err = loadtest.RunWorker(ctx, os.Stdin, os.Stdout)
	case "baseline":
		err = baselineMain(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q (want run, hello, storm, dm, worker or baseline)", os.Args[1])
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
	fs.StringVar(&cfg.Target, "target", "hubbub", "hubbub (chat servers), baseline (gorilla's chat example shape, one process) or centrifugo (Centrifugo v6 nodes: bin/centrifugo, built by make centrifugo, else beside this binary or on PATH)")
	fs.StringVar(&cfg.Kind, "kind", loadtest.KindSend, "what each send is (hubbub): send (a new message), edit (an edit of one message each sender posts first) or react (a reaction to it, on and off; counted, not timed)")
	fs.StringVar(&cfg.ChatServer, "chatserver", "", "chatserver binary (default: bin/chatserver, else beside this binary)")
	fs.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "redis-server binary")
	fs.IntVar(&cfg.RedisReplicas, "redis-replicas", 0, "replicas of the Redis (0..5): the chat servers then wait for one to confirm each message (--redis-min-replica-acks auto)")
	fs.StringVar(&cfg.Backend, "backend", "redis", "redis, or memory (one server only; centrifugo: its redis or memory engine)")
	fs.IntVar(&cfg.Servers, "servers", 1, "chat server processes")
	fs.IntVar(&cfg.Conns, "conns", 200, "WebSocket connections, all in one channel")
	fs.IntVar(&cfg.Users, "users", 0, "users to create, or with centrifugo to sign tokens for (default: one per connection)")
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
	fs.StringVar(&serverArgs, "server-args", "", "extra chatserver (or centrifugo) flags, space-separated")
	fs.StringVar(&serverEnv, "server-env", "", "extra environment for the servers, space-separated KEY=VALUE (e.g. GOGC=50)")
	fs.StringVar(&cfg.WorkDir, "workdir", "", "directory for server and Redis logs (default: a new temp dir)")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "the whole run's deadline")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 5*time.Minute, "how long workers may take to open their sockets")
	fs.IntVar(&cfg.FirstWorkerIP, "first-worker-ip", 10, "workers bind source addresses 127.0.0.N, 127.0.0.N+1, ...")
	memoryFloor := fs.Int64("memory-floor", 1024, "MiB: the workers stop dialing once the machine's MemAvailable falls below it (0: never), and the run goes on with the sockets it has")
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
	cfg.MemoryFloor = *memoryFloor << 20
	res, err := loadtest.Run(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if res == nil || len(res.Steps) == 0 {
		return err
	}
	return report(res, jsonOut, err)
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
	if res == nil || (len(res.Connects) == 0 && len(res.Requests) == 0) {
		return err
	}
	return report(res, jsonOut, err)
}

// setupFlags defines the flags storm and dm share (what they start, as run
// starts it); the function it returns finishes s once the flags are parsed.
func setupFlags(fs *flag.FlagSet, s *loadtest.Setup) func() {
	var serverArgs, serverEnv string
	fs.StringVar(&s.ChatServer, "chatserver", "", "chatserver binary (default: bin/chatserver, else beside this binary)")
	fs.StringVar(&s.RedisServer, "redis-server", "redis-server", "redis-server binary")
	fs.IntVar(&s.Servers, "servers", 2, "chat server processes (sockets round-robin over them)")
	fs.IntVar(&s.Workers, "workers", 0, "load worker processes (default: one per 16,000 connections)")
	fs.IntVar(&s.BcryptCost, "bcrypt-cost", 4, "bcrypt cost of the users made through the API (low: creating them is setup, not the test)")
	fs.StringVar(&serverArgs, "server-args", "", "extra chatserver flags, space-separated")
	fs.StringVar(&serverEnv, "server-env", "", "extra environment for the servers, space-separated KEY=VALUE (e.g. GOGC=50)")
	fs.StringVar(&s.WorkDir, "workdir", "", "directory for server and Redis logs (default: a new temp dir)")
	fs.DurationVar(&s.Timeout, "timeout", 20*time.Minute, "the whole run's deadline")
	fs.DurationVar(&s.ConnectTimeout, "connect-timeout", 10*time.Minute, "how long workers may take to open their sockets the first time")
	fs.IntVar(&s.FirstWorkerIP, "first-worker-ip", 10, "workers bind source addresses 127.0.0.N, 127.0.0.N+1, ...")
	return func() {
		s.ServerArgs = strings.Fields(serverArgs)
		s.ServerEnv = strings.Fields(serverEnv)
	}
}

// report prints what a run measured, and writes it to jsonOut when set.
func report(res interface {
	WriteMarkdown(io.Writer)
	WriteJSON(string) error
}, jsonOut string, err error) error {
	res.WriteMarkdown(os.Stdout)
	if jsonOut != "" {
		if werr := res.WriteJSON(jsonOut); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return err
}

func stormMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("storm", flag.ContinueOnError)
	var cfg loadtest.StormConfig
	var jsonOut string
	finish := setupFlags(fs, &cfg.Setup)
	fs.StringVar(&cfg.Target, "target", "hubbub", "hubbub (chat servers) or centrifugo (Centrifugo v6 nodes on its Redis engine, resuming by recovery: bin/centrifugo, built by make centrifugo)")
	fs.IntVar(&cfg.Conns, "conns", 10000, "WebSocket connections, all in the channel general")
	fs.IntVar(&cfg.Users, "users", 1000, "users (socket i is user i mod users)")
	fs.IntVar(&cfg.Missed, "missed", 20, "messages sent into the channel while every socket is away")
	fs.IntVar(&cfg.Repeat, "repeat", 1, "drop, miss and reconnect this many times; the table adds medians")
	fs.IntVar(&cfg.DialConc, "dial-concurrency", 500, "each worker's dials in flight during the reconnect storm (unpaced)")
	fs.IntVar(&cfg.ConnectConc, "connect-concurrency", 0, "each worker's dials in flight during the first connect (default: 32, or --dial-concurrency with --login)")
	fs.BoolVar(&cfg.Login, "login", false, "the first connect logs every user in through POST /api/v1/login (once per worker), against accounts hashed at --login-bcrypt-cost")
	fs.IntVar(&cfg.LoginCost, "login-bcrypt-cost", 12, "with --login: the accounts' bcrypt cost (production: 12)")
	fs.IntVar(&cfg.Watch, "watch", 0, "after each hello, watch this many people (user i: users i+1 .. i+N)")
	fs.DurationVar(&cfg.RoundTimeout, "round-timeout", 2*time.Minute, "how long one reconnect storm may take")
	fs.DurationVar(&cfg.Settle, "settle", 2*time.Second, "pause before each drop")
	fs.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	finish()
	res, err := loadtest.RunStorm(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if res == nil || res.Connect.Sockets == 0 {
		return err
	}
	return report(res, jsonOut, err)
}

func dmMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dm", flag.ContinueOnError)
	var cfg loadtest.DMConfig
	var jsonOut string
	finish := setupFlags(fs, &cfg.Setup)
	fs.IntVar(&cfg.People, "people", 5000, "people (even: 2k and 2k+1 share a DM)")
	fs.IntVar(&cfg.SocketsPerPerson, "sockets-per-person", 2, "sockets per person, on different servers")
	fs.IntVar(&cfg.ChannelSize, "channel-size", 100, "people per created channel")
	fs.IntVar(&cfg.ChannelsPerPerson, "channels-per-person", 2, "created channels each person is in, 1 or 2 (5,000 people in 2 each: 100 channels of 100)")
	fs.Float64Var(&cfg.RatePerPerson, "rate-per-person", 0.2, "messages per second each person sends, turn about into their DM and their channel")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long the people send")
	fs.IntVar(&cfg.ConnectConc, "connect-concurrency", 32, "each worker's dials in flight during the first connect")
	fs.BoolVar(&cfg.Drain, "drain", false, "send SIGTERM to server 0 part way (its sockets move to the other servers, resuming)")
	fs.DurationVar(&cfg.DrainAfter, "drain-after", 0, "with --drain: when, into the sending (default: half of --duration)")
	fs.DurationVar(&cfg.DrainMax, "drain-max", 30*time.Second, "how long to wait after the sending for the last deliveries and moves")
	fs.DurationVar(&cfg.Settle, "settle", 3*time.Second, "pause between the first connect and the sending")
	fs.StringVar(&jsonOut, "json", "", "also write the results as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	finish()
	if cfg.DrainAfter == 0 {
		cfg.DrainAfter = cfg.Duration / 2
	}
	res, err := loadtest.RunDM(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if res == nil || res.Connect.Sockets == 0 {
		return err
	}
	return report(res, jsonOut, err)
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

package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// StormConfig describes one run of the "storm" subcommand: a pod drain as
// its users see it. Every socket closes at once, messages are sent while
// everyone is away, and every socket comes back at once with a resume from
// the last id it saw; the run measures how fast they are all back, with
// everything they missed.
type StormConfig struct {
	Setup
	// Target is "hubbub" (the default) or "centrifugo": Centrifugo nodes on
	// its Redis engine, whose sockets resume by recovering from the stream
	// offset they last saw (centrifugo_storm.go).
	Target string
	Conns  int
	Users  int
	Missed int // messages sent while the sockets are away
	Repeat int // drop, miss and reconnect this many times
	// DialConc is each worker's dials in flight during the storm;
	// ConnectConc during the first connect (0: 32, or DialConc with Login).
	DialConc    int
	ConnectConc int
	// Login makes the first connect log every user in (once per worker)
	// through the API, against accounts hashed at LoginCost.
	Login     bool
	LoginCost int
	Watch     int // people each socket watches after hello (the watch frame)
	// RoundTimeout bounds each reconnect, from the command to the last
	// socket complete.
	RoundTimeout time.Duration
	Settle       time.Duration // pause before each drop: the servers finish the last round's work
}

// Setup is what the storm and dm runs start, as run starts it: Redis,
// chat servers and load workers.
type Setup struct {
	ChatServer  string
	RedisServer string
	Servers     int
	Workers     int // 0: one per 16,000 sockets
	BcryptCost  int // of the accounts made through the API
	ServerArgs  []string
	ServerEnv   []string
	WorkDir     string
	Timeout     time.Duration // the whole run
	// ConnectTimeout bounds the workers' first connect.
	ConnectTimeout time.Duration
	FirstWorkerIP  int
}

// config is the run Config that starts what s describes, for conns sockets
// of users people, each worker dialing conc at a time.
func (s Setup) config(conns, users, conc int) Config {
	return Config{
		Target: "hubbub", ChatServer: s.ChatServer, RedisServer: s.RedisServer, Backend: "redis",
		Servers: s.Servers, Conns: conns, Users: users, Workers: s.Workers, Channel: "general",
		Repeat: 1, DialConc: conc, BcryptCost: s.BcryptCost,
		ServerArgs: s.ServerArgs, ServerEnv: s.ServerEnv, WorkDir: s.WorkDir, Timeout: s.Timeout,
		FirstWorkerIP: s.FirstWorkerIP, ConnectTimeout: s.ConnectTimeout,
	}
}

const stormPassword = "bench-password"

// config is the run Config the storm's servers, users and workers are
// started from, so that they are started exactly as run starts them.
func (cfg StormConfig) config() Config {
	conc := cfg.ConnectConc
	if conc <= 0 {
		conc = 32
		if cfg.Login {
			conc = cfg.DialConc
		}
	}
	k := cfg.Setup.config(cfg.Conns, cfg.Users, conc)
	if cfg.Target == centrifugoTarget {
		k.Target = centrifugoTarget
		// Every missed message must still be in the stream, whatever came
		// before it.
		k.CentrifugoHistory = max(100, cfg.Missed)
	}
	return k
}

func (cfg StormConfig) check() error {
	switch {
	case cfg.Users < 1 || cfg.Users > cfg.Conns:
		return errors.New("--users: 1 .. --conns")
	case cfg.Missed < 0 || cfg.Watch < 0 || cfg.DialConc < 1:
		return errors.New("--missed and --watch may not be negative, --dial-concurrency at least 1")
	case cfg.Repeat < 1 || cfg.Repeat > maxSteps:
		return fmt.Errorf("--repeat: 1..%d", maxSteps)
	case cfg.RoundTimeout <= 0:
		return errors.New("--round-timeout must be positive")
	case cfg.Target != "" && cfg.Target != "hubbub" && cfg.Target != centrifugoTarget:
		return errors.New("--target: hubbub or centrifugo")
	case cfg.Target == centrifugoTarget && (cfg.Login || cfg.Watch > 0):
		return errors.New("--target centrifugo has no accounts to log in to and no presence to watch: no --login, no --watch")
	case cfg.Target == centrifugoTarget && cfg.Missed > centrifugoRecoveryLimit:
		return fmt.Errorf("--target centrifugo recovers at most %d publications (its client_recovery_max_publication_limit): --missed ≤ %d", centrifugoRecoveryLimit, centrifugoRecoveryLimit)
	}
	return nil
}

// RunStorm is the "storm" subcommand from start to finish. Like Run, it
// returns what it measured even when it fails part way.
func RunStorm(ctx context.Context, cfg StormConfig, log *slog.Logger) (*StormResults, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	res := &StormResults{Machine: machine()}
	err := runEdge(ctx, cfg.config(), log, func(ctx context.Context, c *coordinator) error {
		k := c.cfg
		res.Config = StormResultConfig{
			Target: k.Target, Servers: k.Servers, Conns: k.Conns, Users: k.Users, Workers: k.Workers, Missed: cfg.Missed, Repeat: cfg.Repeat,
			DialConcurrency: cfg.DialConc, ConnectConcurrency: k.DialConc, Login: cfg.Login, AccountBcryptCost: k.BcryptCost,
			Watch: cfg.Watch, ServerArgs: k.ServerArgs,
		}
		if cfg.Login {
			res.Config.AccountBcryptCost = cfg.LoginCost
		}
		s := &storm{c: c, cfg: cfg, log: log, res: res}
		return s.run(ctx)
	})
	if len(res.Rounds) > 0 {
		res.Median = medianOf(res.Rounds)
		res.Median.Round = len(res.Rounds)
	}
	return res, err
}

type storm struct {
	c      *coordinator
	cfg    StormConfig
	log    *slog.Logger
	res    *StormResults
	poster *ownerSocket // Hubbub's; Centrifugo's is opened per round
}

func (s *storm) run(ctx context.Context) error {
	c := s.c
	t0 := time.Now()
	if err := s.accounts(ctx); err != nil {
		return err
	}
	s.res.Setup.Seconds = time.Since(t0).Seconds()
	var err error
	if s.res.Connect, err = c.connectEdge(ctx, s.plan); err != nil {
		return err
	}
	if c.cfg.Target != centrifugoTarget {
		if s.poster, err = openPoster(ctx, posterDialer(), s.posterURL(), c.tokens[0], 1); err != nil {
			return fmt.Errorf("the missed messages' socket: %w", err)
		}
		defer s.poster.close()
	}
	for round := 1; round <= s.cfg.Repeat; round++ {
		select {
		case <-time.After(s.cfg.Settle):
		case <-ctx.Done():
			return ctx.Err()
		}
		r, err := s.round(ctx, round)
		if err != nil {
			return err
		}
		s.res.Rounds = append(s.res.Rounds, r)
		s.log.Info("storm", "round", round, "reconnected", fmt.Sprintf("%d/%d", r.Reconnected, r.Sockets), "complete", r.Complete,
			"seconds", fmt.Sprintf("%.2f", r.Seconds), "resumedPerSec", int(r.ResumedPerSec),
			"helloP99ms", r.Hello.P99ms, "resumedP99ms", r.Resumed.P99ms, "missed", fmt.Sprintf("%d/%d", r.MissedDelivered, r.MissedExpected),
			"dups", r.MissedDuplicates, "cpu", r.CPU.String())
	}
	c.quitWorkers()
	return nil
}

// accounts makes the users: through the API at the servers' low cost, as
// run does; or, for --login, hashed at the production cost by short-lived
// servers (one per core, since a bootstrap file is hashed one account at a
// time), leaving the logins to the workers' first connect.
func (s *storm) accounts(ctx context.Context) error {
	c := s.c
	if c.cfg.Target == centrifugoTarget {
		return nil // startServers signed every user's token
	}
	if !s.cfg.Login {
		return c.createUsers(ctx)
	}
	t0 := time.Now()
	parts := runtime.NumCPU()
	lines := make([][]string, parts)
	for i := range c.cfg.Users {
		lines[i%parts] = append(lines[i%parts], userName(i)+":"+stormPassword)
	}
	var wg sync.WaitGroup
	errs := make([]error, parts)
	for p := range parts {
		wg.Go(func() { errs[p] = c.bootstrapUsers(ctx, fmt.Sprintf("accounts-%d", p), lines[p], s.cfg.LoginCost) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("creating accounts at bcrypt cost %d: %w", s.cfg.LoginCost, err)
	}
	s.res.Setup.AccountsSeconds = time.Since(t0).Seconds()
	s.log.Info("accounts created", "users", c.cfg.Users, "bcryptCost", s.cfg.LoginCost, "seconds", fmt.Sprintf("%.1f", s.res.Setup.AccountsSeconds))
	// The workers log in for their sockets; the coordinator needs a token
	// only for the socket that sends the missed messages.
	c.tokens = make([]string, c.cfg.Users)
	var tok struct{ Token string }
	cred := map[string]string{"username": userName(0), "password": stormPassword}
	if err := c.callWant(ctx, http.MethodPost, c.servers[0].url("/api/v1/login"), "", cred, &tok, http.StatusOK); err != nil {
		return fmt.Errorf("logging in %s: %w", userName(0), err)
	}
	c.tokens[0] = tok.Token
	return nil
}

// plan places sockets as run does (socket i: server i mod servers, worker
// i mod workers, user i mod users) and tells the workers what the storm
// needs.
func (s *storm) plan(jobs []job) {
	c := s.c
	edge := edgeJob{Workload: workloadStorm, Users: c.cfg.Users, Watch: s.cfg.Watch, ReconnectConcurrency: s.cfg.DialConc, Missed: s.cfg.Missed}
	if s.cfg.Login {
		edge.Password = stormPassword
	}
	c.planEdge(jobs, edge, func(i int) (worker, user, server int) {
		return i % len(jobs), i % c.cfg.Users, i % len(c.servers)
	})
}

// round drops every socket, sends the missed messages while everyone is
// away, and times every socket's way back.
func (s *storm) round(ctx context.Context, round int) (StormRound, error) {
	c := s.c
	r := StormRound{Round: round, Sockets: c.cfg.Conns}
	t0 := time.Now()
	if _, err := c.command(ctx, command{Cmd: "drop", Step: round}, "dropped", 60*time.Second); err != nil {
		return r, err
	}
	// Only the poster's socket is left once the servers have let go of the
	// others: a missed message must not reach a socket still registered.
	if err := c.waitConnections(ctx, 1, 60*time.Second); err != nil {
		return r, err
	}
	r.DropSeconds = time.Since(t0).Seconds()
	if err := s.sendMissed(ctx, round); err != nil {
		return r, fmt.Errorf("sending the missed messages: %w", err)
	}
	cmds := c.redisCommands()
	before := c.sampleCPU()
	start := before.at
	t, err := c.edgeCommand(ctx, command{Cmd: "reconnect", Step: round, Duration: s.cfg.RoundTimeout}, "reconnected", s.cfg.RoundTimeout+60*time.Second)
	if err != nil {
		return r, err
	}
	r.CPU = before.to(c.sampleCPU())
	if after := c.redisCommands(); cmds != nil && after != nil {
		r.RedisPerSocket = commandsPerConnect(cmds, after, float64(max(1, t.Connected)))
	}
	r.ServerRSSMiB = c.serverRSSMiB()
	r.Reconnected, r.Failed, r.Complete, r.Lost = t.Connected, t.Failed, t.Completed, t.Lost
	r.Seconds = sinceSeconds(start, t.LastDoneNS)
	r.ResumedPerSec = perSecond(t.Completed, r.Seconds)
	r.Hello, r.Resumed = t.hello.quantiles(), t.resumed.quantiles()
	r.MissedDelivered, r.MissedDuplicates = t.Missed, t.MissedDups
	r.MissedExpected = uint64(s.cfg.Missed) * t.Connected
	r.ErrorFrames, r.UnknownChannel, r.PresenceObjects = t.Errors, t.Unknown, t.Presence
	return r, nil
}

// sendMissed sends the round's missed messages from the last server's
// poster socket, each acknowledged before the reconnect starts.
func (s *storm) sendMissed(ctx context.Context, round int) error {
	c := s.c
	texts := make([]string, s.cfg.Missed)
	for k := range texts {
		texts[k] = fmt.Sprintf("%s%d %d sent while you were away", markMissed, round, k)
	}
	if c.cfg.Target == centrifugoTarget {
		return centrifugoPost(ctx, s.posterURL(), c.tokens[0], c.cfg.Channel, texts)
	}
	frames := make([][]byte, len(texts))
	for k, text := range texts {
		frames[k] = sendFrame(c.cfg.Channel, text, fmt.Sprintf("missed-%d-%d", round, k))
	}
	return s.poster.sendAll(frames)
}

func (s *storm) posterURL() string {
	return "ws://" + s.c.servers[len(s.c.servers)-1].addr + s.c.wsPath()
}

func posterDialer() *websocket.Dialer { return &websocket.Dialer{HandshakeTimeout: 30 * time.Second} }

// waitConnections waits until the servers hold want sockets in all.
func (c *coordinator) waitConnections(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := 0
		for _, srv := range c.servers {
			name := "hubbub_connections"
			if c.cfg.Target == centrifugoTarget {
				// Live, where centrifugo_node_num_clients is updated every 10 s.
				name = "centrifugo_client_connections_inflight"
			}
			m, err := scrape(ctx, srv.url("/metrics"), name)
			if err != nil {
				return fmt.Errorf("reading %s's connections: %w", srv.addr, err)
			}
			n += int(m[name])
		}
		if n <= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the servers still hold %d sockets %s after the drop (want %d)", n, timeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

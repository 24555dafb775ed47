// Package server assembles a chat server from its configuration: backend,
// accounts, chat core, HTTP API, web page, health and metrics endpoints; and
// runs it until its context ends, draining clients gracefully.
package server

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/api"
	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/embedded"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/metrics"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/search"
	"github.com/hubbub-chat/hubbub/chatserver/web"
)

// Backend is what the server needs from storage: the chat core's and the
// account service's contracts, plus health and shutdown.
type Backend interface {
	chat.Backend
	auth.Store
	Ping(ctx context.Context) error
	Close() error
}

// Options are the server's dependencies that do not come from configuration.
type Options struct {
	// Backend, when set, is used instead of the one the configuration names,
	// and is not closed by the server (tests restart servers over one backend).
	Backend Backend
	Logger  *slog.Logger
}

// Server is one chat server.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	backend  Backend
	owned    bool
	metrics  *metrics.Metrics
	chat     *chat.Service
	index    *search.Index
	auth     *auth.Service
	proxies  []netip.Prefix // cfg.TrustedProxies, parsed
	draining atomic.Bool
	storage  storageHealth
}

// New builds a server. It creates the bootstrap users, so it talks to storage.
func New(ctx context.Context, cfg config.Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	proxies, err := config.ParsePrefixes(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	pod := podID()
	s := &Server{cfg: cfg, log: log, backend: opts.Backend, metrics: metrics.New(), proxies: proxies}
	if s.backend == nil {
		b, err := OpenBackend(cfg, pod, log)
		if err != nil {
			return nil, err
		}
		s.backend, s.owned = b, true
	}
	registerBackendMetrics(s.metrics, s.backend)
	s.auth, err = auth.New(s.backend, auth.Options{
		BcryptCost: cfg.BcryptCost, BcryptConcurrency: bcryptSlots(cfg.BcryptConcurrency), SessionTTL: cfg.SessionTTL,
		RegistrationOpen: cfg.Registration == config.RegistrationOpen,
		MaxFailures:      cfg.LoginAttemptsPerMinute, MaxFailuresPerIP: cfg.LoginAttemptsPerIPPerMinute,
		ThrottleWindow: time.Minute,
	})
	if err != nil {
		s.closeBackend()
		return nil, err
	}
	if err := s.bootstrapUsers(ctx); err != nil {
		s.closeBackend()
		return nil, err
	}
	s.index = search.New(s.backend)
	s.chat = chat.New(s.backend, chat.Options{
		Pod: pod, Channels: cfg.Channels, HistoryMax: cfg.HistoryMax, MaxMessageBytes: cfg.MaxMessageBytes,
		MessagesPerSecond: cfg.MessagesPerSecond, MessageBurst: cfg.MessageBurst,
		MaxConnsPerUser: cfg.MaxConnectionsPerUser, MaxConns: cfg.MaxConnections, PresenceTTL: cfg.PresenceTTL,
		SendQueueMax: cfg.SendQueueMax, WriteTimeout: cfg.WriteTimeout, PongWait: cfg.PongWait,
		Admins:     cfg.Admins,
		Membership: chat.MemberLimits{PerUser: cfg.MaxChannelsPerUser, Members: cfg.MaxChannelMembers},
		Search:     s.index,
		Logger:     log, Metrics: s.metrics,
	})
	return s, nil
}

// OpenBackend opens the backend cfg names: Redis with RedisURL; without it,
// the embedded store in DataDir, or memory alone when DataDir is empty.
func OpenBackend(cfg config.Config, pod string, log *slog.Logger) (Backend, error) {
	switch {
	case cfg.RedisURL != "":
		return openRedis(cfg, pod, log)
	case cfg.DataDir != "":
		b, err := embedded.Open(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("--data-dir: %w", err)
		}
		return b, nil
	}
	return memory.New(), nil
}

func podID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "chatserver"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

func (s *Server) closeBackend() {
	if s.owned {
		if err := s.backend.Close(); err != nil {
			s.log.Warn("closing backend", "err", err)
		}
	}
}

// bootstrapUsers creates the accounts listed in BootstrapUsersFile
// ("username:password" per line; blank lines and # comments ignored).
// Existing accounts are left as they are.
func (s *Server) bootstrapUsers(ctx context.Context) error {
	if s.cfg.BootstrapUsersFile == "" {
		return nil
	}
	f, err := os.Open(s.cfg.BootstrapUsersFile)
	if err != nil {
		return fmt.Errorf("bootstrap users: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	created := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pw, ok := strings.Cut(line, ":")
		if !ok {
			// Never echo the line: it holds a password.
			return fmt.Errorf("bootstrap users: %s line %d: want username:password", s.cfg.BootstrapUsersFile, n)
		}
		_, err := s.auth.CreateUser(ctx, user, pw)
		switch {
		case err == nil:
			created++
		case errors.Is(err, auth.ErrUserExists):
		default:
			return fmt.Errorf("bootstrap users: %s line %d: %w", s.cfg.BootstrapUsersFile, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("bootstrap users: %w", err)
	}
	s.log.Info("bootstrap users", "created", created)
	return nil
}

// Handler is the server's HTTP handler (for tests that bring their own listener).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	api.New(api.Options{
		Auth: s.auth, Chat: s.chat, Metrics: s.metrics, Logger: s.log,
		AllowedOrigins: s.cfg.AllowedOrigins, TrustedProxies: s.proxies,
		SessionTTL:         s.cfg.SessionTTL,
		MaxChannelsPerUser: s.cfg.MaxChannelsPerUser, MaxChannelMembers: s.cfg.MaxChannelMembers,
	}).Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.Handle("GET "+protocol.StatsPath, newStatsHandler(s.backend, s.log))
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.Handle("/", web.Handler())
	return mux
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	if err := s.checkStorage(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("storage unreachable\n"))
		return
	}
	if !s.chat.Following() {
		// Sockets would wait until the room's channels are followed. (The
		// storage is checked first: when it is what holds the start up,
		// the log says so.)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("starting\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// checkStorage pings the storage for readiness, and logs when that starts
// failing (with the cause) and when it works again.
func (s *Server) checkStorage(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, time.Second)
	defer cancel()
	err := s.backend.Ping(ctx)
	if err != nil && parent.Err() != nil {
		return err // the prober gave up: that says nothing about the storage
	}
	if s.cfg.RedisURL != "" {
		err = explainRedis(s.cfg.RedisURL, err)
	}
	s.storage.record(s.log, err)
	return err
}

// storageHealth logs the storage check once per episode: the first failure
// at warn, saying why the server is not ready (readiness probes come every
// few seconds, and would otherwise leave only "503" to go by), and the
// recovery at info.
type storageHealth struct {
	mu      sync.Mutex
	failing bool
	count   int
}

func (h *storageHealth) record(log *slog.Logger, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && !h.failing:
		h.failing, h.count = true, 1
		log.Warn("not ready: storage unreachable", "err", err)
	case err != nil:
		h.count++
	case h.failing:
		log.Info("ready: storage reachable again", "failedChecks", h.count)
		h.failing, h.count = false, 0
	}
}

// Serve serves on ln until ctx ends, then drains: readiness turns false,
// clients are told to reconnect (spread over a few seconds, close 1012), and
// Serve returns once they are gone or the shutdown grace has passed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	defer s.closeBackend()
	defer func() {
		if err := s.index.Close(); err != nil {
			s.log.Warn("closing the search index", "err", err)
		}
	}()

	var wg sync.WaitGroup
	runErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr <- s.chat.Run(runCtx)
	}()
	// Run must end before Serve returns, on every path: stop it, then wait.
	defer func() {
		stopRun()
		wg.Wait()
	}()

	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.log.Info("chat server listening", "addr", ln.Addr().String(), "room", s.cfg.Room, "backend", backendName(s.cfg))
	// Say at once if the storage cannot be used (a wrong address, password
	// or Sentinel master name), rather than at the first readiness probe.
	wg.Go(func() { _ = s.checkStorage(runCtx) }) // logged by checkStorage

	select {
	case err := <-serveErr:
		return fmt.Errorf("serving: %w", err)
	case err := <-runErr:
		_ = srv.Close()
		if err == nil {
			err = errors.New("chat core stopped unexpectedly")
		}
		return err
	case <-ctx.Done():
	}

	s.draining.Store(true)
	grace := s.cfg.ShutdownGrace
	s.log.Info("draining", "connections", s.chat.ConnectionCount(), "grace", grace)
	drainCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// Spread reconnects over a third of the grace period (at most 5 s) so the
	// other servers are not hit by a reconnect storm.
	s.chat.Drain(drainCtx, min(grace/3, 5*time.Second))
	if err := srv.Shutdown(drainCtx); err != nil {
		_ = srv.Close()
	}
	stopRun()
	s.log.Info("stopped")
	return nil
}

func backendName(cfg config.Config) string {
	switch {
	case cfg.RedisURL != "":
		return "redis"
	case cfg.DataDir != "":
		return "embedded"
	}
	return "memory"
}

// ConnectionCount is the number of open WebSockets.
func (s *Server) ConnectionCount() int { return s.chat.ConnectionCount() }

// bcryptSlots resolves --bcrypt-concurrency: 0 means half the CPUs this
// process may use, at least one.
func bcryptSlots(n int) int {
	if n > 0 {
		return n
	}
	return max(1, runtime.GOMAXPROCS(0)/2)
}

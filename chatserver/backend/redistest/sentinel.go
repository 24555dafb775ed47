package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Sentinel topology for fault tests, all on loopback behind one password:
// three redis-servers, a primary and two replicas of it (AOF on, as Start's),
// watched by three sentinels with quorum 2 that fail over within seconds of
// the primary going down. Each redis-server is a *Server, so a test kills,
// freezes and thaws it as any other; Rejoin brings a killed one back as a
// replica of the current primary.
//
// Nothing announces a failover to a test, so the Wait methods poll the
// sentinels (SENTINEL commands) and the servers (INFO replication) until a
// deadline.

// SentinelMaster is the name the sentinels monitor the primary under: the
// ?master= of URL.
const SentinelMaster = "hubbub"

// Sentinel timings, far below production's (30 s, 3 min) so a fault test
// sees a failover in seconds.
const (
	// sentinelDownAfter is how long the primary may stay silent before a
	// sentinel holds it down. 3 s: a false failover is not harmless. While
	// the old primary lives on until Sentinel reconfigures it, it takes
	// writes that the replica still following it confirms, and that the
	// promoted one never gets (a CI run under load saw one, and 97 acked
	// messages lost). At 1 s a 2-core machine running other test packages
	// starved a redis-server that long.
	sentinelDownAfter = 3000 * time.Millisecond
	// sentinelFailoverTimeout bounds each step of a failover, and a failover
	// that did not happen (say, a split vote) is retried only after twice
	// this. 3 s is ample on loopback (promotion and reconfiguration take
	// well under a second) and keeps a retried failover within a test's
	// patience.
	sentinelFailoverTimeout = 3000 * time.Millisecond
	// sentinelPollEvery is how often the Wait methods look again.
	sentinelPollEvery = 50 * time.Millisecond
	// sentinelQueryTimeout bounds one command to a sentinel or a server:
	// a frozen server answers nothing.
	sentinelQueryTimeout = time.Second
)

// Sentinel is three redis-servers and the three sentinels that watch them.
type Sentinel struct {
	t         failer
	password  string
	servers   []*Server
	sentinels []*sentinelProc
	// clients query the servers and the sentinels, by address (both take
	// the password). RESP2: sentinelPairs reads flat arrays.
	clients clientPool
}

// StartSentinel starts a Sentinel topology for t and stops it when t ends;
// once it returns, the sentinels know the primary, both replicas and each
// other, so a failover can happen. opts configure every redis-server (the
// replication and AOF directives are set already); the password is
// WithPassword's if given, else a random one. It fails t if
// redis-server is not on PATH or the topology does not settle in time.
func StartSentinel(t testing.TB, opts ...Option) *Sentinel {
	t.Helper()
	return forTest(t, func() (*Sentinel, error) { return NewSentinel(opts...) }, func(h *Sentinel) {
		h.t = t
		for _, s := range h.servers {
			s.t = t
		}
	})
}

// NewSentinel starts a Sentinel topology that belongs to no test (for a
// TestMain); the caller stops it with Close. See StartSentinel. Its methods
// panic where those of one from StartSentinel fail the test.
func NewSentinel(opts ...Option) (h *Sentinel, err error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	h = &Sentinel{t: noTest{}, password: cfg.password}
	if h.password == "" {
		var pw [16]byte
		_, _ = rand.Read(pw[:]) // crypto/rand never fails on Linux
		h.password = hex.EncodeToString(pw[:])
		opts = append(slices.Clip(opts), WithPassword(h.password))
	}
	h.clients = clientPool{password: h.password, timeout: sentinelQueryTimeout, protocol: 2}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
		}
	}()
	common := append(slices.Clip(opts),
		// Every server may become a replica after a failover.
		WithConfig("masterauth", h.password),
		// A diskless sync waits 5 s for more replicas to share it by default.
		WithConfig("repl-diskless-sync-delay", "0"),
	)
	primary, err := New(common...)
	if err != nil {
		return nil, err
	}
	h.servers = append(h.servers, primary)
	for range 2 {
		r, err := New(append(slices.Clip(common), WithConfig("replicaof", "127.0.0.1", strconv.Itoa(primary.port)))...)
		if err != nil {
			return nil, err
		}
		h.servers = append(h.servers, r)
	}
	for range 3 {
		s, err := startSentinel(h.password, primary.port)
		if err != nil {
			return nil, err
		}
		h.sentinels = append(h.sentinels, s)
	}
	if err := h.waitSettled(startTimeout); err != nil {
		return nil, fmt.Errorf("redistest: sentinel topology: %w", err)
	}
	return h, nil
}

// Close stops the sentinels and the servers and removes their directories.
// Closing a closed topology does nothing.
func (h *Sentinel) Close() error {
	var errs []error
	for _, s := range h.sentinels {
		errs = append(errs, s.close())
	}
	for _, s := range h.servers {
		errs = append(errs, s.Close())
	}
	h.clients.close()
	return errors.Join(errs...)
}

// Password is the one password of the servers and the sentinels.
func (h *Sentinel) Password() string { return h.password }

// MasterName is the name the sentinels know the primary by.
func (h *Sentinel) MasterName() string { return SentinelMaster }

// SentinelAddrs are the sentinels' "host:port" addresses.
func (h *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(h.sentinels))
	for i, s := range h.sentinels {
		out[i] = s.addr()
	}
	return out
}

// URL is the chat server's --redis-url for the topology, password included:
// redis-sentinel://:PASSWORD@host:port,host:port,host:port/?master=NAME.
func (h *Sentinel) URL() string { return h.URLWith(SentinelMaster, h.password) }

// URLWith is URL with another master name and password (either may be
// empty: no ?master=, no password), for tests of bad configurations.
func (h *Sentinel) URLWith(master, password string) string {
	u := url.URL{Scheme: "redis-sentinel", Host: strings.Join(h.SentinelAddrs(), ","), Path: "/"}
	if master != "" {
		u.RawQuery = url.Values{"master": {master}}.Encode()
	}
	if password != "" {
		u.User = url.UserPassword("", password)
	}
	return u.String()
}

// Client is a client of s (password set; no retries; queries time out
// after a second), for a test's own look at a server. It is closed with
// the topology.
func (h *Sentinel) Client(s *Server) *redis.Client { return h.client(s.Addr()) }

// Servers are the three redis-servers, in the order they were started (the
// first was the first primary).
func (h *Sentinel) Servers() []*Server { return slices.Clone(h.servers) }

// Primary is the server the sentinels name as the primary (SENTINEL
// get-master-addr-by-name). It fails the test if the running sentinels do
// not all name the same one of the three.
func (h *Sentinel) Primary() *Server {
	h.t.Helper()
	p, err := h.primary(context.Background())
	if err != nil {
		h.t.Fatalf("redistest: %v", err)
	}
	return p
}

// Replicas are the servers that are not Primary, in Servers' order,
// running or not.
func (h *Sentinel) Replicas() []*Server {
	h.t.Helper()
	p := h.Primary()
	var out []*Server
	for _, s := range h.servers {
		if s != p {
			out = append(out, s)
		}
	}
	return out
}

// WaitFailover waits until the sentinels have replaced old as the primary:
// every running sentinel names the same other server, and that server
// reports role:master. It returns the new primary, and fails the test if
// that does not happen within timeout.
func (h *Sentinel) WaitFailover(old *Server, timeout time.Duration) *Server {
	h.t.Helper()
	var last error
	deadline := time.Now().Add(timeout)
	for {
		p, err := h.primary(context.Background())
		if err == nil && p == old {
			err = fmt.Errorf("the sentinels still name %s", old.Addr())
		}
		if err == nil {
			if err = h.isMaster(p); err == nil {
				return p
			}
		}
		last = err
		if time.Now().After(deadline) {
			h.t.Fatalf("redistest: no failover from %s within %s: %v%s", old.Addr(), timeout, last, h.logs())
		}
		time.Sleep(sentinelPollEvery)
	}
}

// WaitSettled waits until the topology is whole again: every running
// sentinel names the same primary, which reports role:master and has
// every other running server as an online replica, and every sentinel
// sees the primary up, the other sentinels and every running replica up
// (so the next failover can choose any of them). Frozen servers count as
// running: thaw them first. It fails the test after timeout.
func (h *Sentinel) WaitSettled(timeout time.Duration) {
	h.t.Helper()
	if err := h.waitSettled(timeout); err != nil {
		h.t.Fatalf("redistest: %v%s", err, h.logs())
	}
}

// Rejoin starts s, a server that was killed or stopped (or restarts one
// still running), as a replica of the current primary, on its port and
// directory: with AOF it loads its data, then syncs from the primary.
// Like a Sentinel deployment's start script, it asks the sentinels for
// the primary rather than coming back as the primary it may have been.
func (h *Sentinel) Rejoin(s *Server) {
	h.t.Helper()
	p := h.Primary()
	if p == s {
		h.t.Fatalf("redistest: rejoin: %s is the primary", s.Addr())
	}
	s.mu.Lock()
	s.args = sentinelReplicaOf(s.args, p.port)
	s.mu.Unlock()
	s.Restart()
}

// CutReplication cuts the primary off from its replicas, as a network
// partition would, and returns them: it freezes every running replica
// (SIGSTOP) and closes the primary's replication connections (CLIENT KILL
// TYPE replica), so that the primary goes on taking writes no replica
// receives. Freezing alone would not do: the kernel goes on receiving into
// a stopped replica's socket, and the replica applies it all once thawed,
// even after the primary died. Thawing the replicas (Server.Thaw) ends the
// cut: they reconnect and catch up, unless the primary died meanwhile.
func (h *Sentinel) CutReplication() (primary *Server, replicas []*Server) {
	h.t.Helper()
	primary = h.Primary()
	for _, s := range h.servers {
		if s != primary && s.Running() {
			s.Freeze()
			replicas = append(replicas, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sentinelQueryTimeout)
	defer cancel()
	if err := h.client(primary.Addr()).ClientKillByFilter(ctx, "TYPE", "replica").Err(); err != nil {
		h.t.Fatalf("redistest: cutting replication: CLIENT KILL TYPE replica on %s: %v", primary.Addr(), err)
	}
	return primary, replicas
}

// sentinelReplicaOf returns args with its replicaof directive (if any) replaced by
// one naming port on loopback.
func sentinelReplicaOf(args []string, port int) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "--replicaof" && i+2 < len(args) {
			i += 2
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--replicaof", "127.0.0.1", strconv.Itoa(port))
}

func (h *Sentinel) waitSettled(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := h.settled(context.Background())
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sentinel topology not settled within %s: %w", timeout, err)
		}
		time.Sleep(sentinelPollEvery)
	}
}

// settled says what is not yet as WaitSettled wants it, or nil.
func (h *Sentinel) settled(ctx context.Context) error {
	p, err := h.primary(ctx)
	if err != nil {
		return err
	}
	info, err := h.info(ctx, p)
	if err != nil {
		return err
	}
	if role := infoField(info, "role"); role != "master" {
		return fmt.Errorf("primary %s reports role %q", p.Addr(), role)
	}
	var replicas []*Server
	for _, s := range h.servers {
		if s != p && s.Running() {
			replicas = append(replicas, s)
		}
	}
	for _, r := range replicas {
		if !strings.Contains(info, fmt.Sprintf("port=%d,state=online,", r.port)) {
			return fmt.Errorf("replica %s is not online on primary %s", r.Addr(), p.Addr())
		}
	}
	peers := 0
	for _, s := range h.sentinels {
		if s.running() {
			peers++
		}
	}
	for _, s := range h.sentinels {
		if !s.running() {
			continue
		}
		c := h.client(s.addr())
		ctx, cancel := context.WithTimeout(ctx, sentinelQueryTimeout)
		m, err := c.Do(ctx, "SENTINEL", "MASTER", SentinelMaster).Result()
		if err != nil {
			cancel()
			return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", s.addr(), err)
		}
		master := sentinelPairs(m)
		rs, err := c.Do(ctx, "SENTINEL", "REPLICAS", SentinelMaster).Result()
		cancel()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", s.addr(), err)
		}
		if f := master["flags"]; f != "master" {
			return fmt.Errorf("sentinel %s sees the primary as %q", s.addr(), f)
		}
		if n := master["num-other-sentinels"]; n != strconv.Itoa(peers-1) {
			return fmt.Errorf("sentinel %s knows %s other sentinels, want %d", s.addr(), n, peers-1)
		}
		list, _ := rs.([]any)
		for _, r := range replicas {
			flags := ""
			for _, e := range list {
				kv := sentinelPairs(e)
				if kv["port"] == strconv.Itoa(r.port) {
					flags = kv["flags"]
				}
			}
			if flags != "slave" {
				return fmt.Errorf("sentinel %s sees replica %s as %q", s.addr(), r.Addr(), flags)
			}
		}
	}
	return nil
}

// primary is the server every running sentinel names as the primary.
func (h *Sentinel) primary(ctx context.Context) (*Server, error) {
	named := ""
	for _, s := range h.sentinels {
		if !s.running() {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, sentinelQueryTimeout)
		addr, err := h.client(s.addr()).Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("sentinel %s: get-master-addr-by-name: %w", s.addr(), err)
		}
		if len(addr) != 2 {
			return nil, fmt.Errorf("sentinel %s: get-master-addr-by-name answered %q", s.addr(), addr)
		}
		a := net.JoinHostPort(addr[0], addr[1])
		if named != "" && a != named {
			return nil, fmt.Errorf("the sentinels disagree on the primary: %s and %s", named, a)
		}
		named = a
	}
	if named == "" {
		return nil, errors.New("no sentinel is running")
	}
	for _, s := range h.servers {
		if s.Addr() == named {
			return s, nil
		}
	}
	return nil, fmt.Errorf("the sentinels name %s, none of the topology's servers", named)
}

// isMaster checks that s reports role:master.
func (h *Sentinel) isMaster(s *Server) error {
	info, err := h.info(context.Background(), s)
	if err != nil {
		return err
	}
	if role := infoField(info, "role"); role != "master" {
		return fmt.Errorf("%s reports role %q", s.Addr(), role)
	}
	return nil
}

func (h *Sentinel) info(ctx context.Context, s *Server) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, sentinelQueryTimeout)
	defer cancel()
	info, err := h.client(s.Addr()).Info(ctx, "replication").Result()
	if err != nil {
		return "", fmt.Errorf("%s: INFO replication: %w", s.Addr(), err)
	}
	return info, nil
}

// client is a client of addr (a server or a sentinel).
func (h *Sentinel) client(addr string) *redis.Client { return h.clients.get(addr) }

// logs is the tail of every sentinel's log, for a failure message.
func (h *Sentinel) logs() string {
	var b strings.Builder
	for _, s := range h.sentinels {
		fmt.Fprintf(&b, "\nsentinel %s log:\n%s", s.addr(), tail(filepath.Join(s.dir, "sentinel.log")))
	}
	return b.String()
}

// sentinelPairs reads a SENTINEL MASTER or REPLICAS entry: in RESP2 (the
// clients speak it), a flat array of names and values.
func sentinelPairs(v any) map[string]string {
	out := map[string]string{}
	kv, _ := v.([]any)
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		val, _ := kv[i+1].(string)
		out[k] = val
	}
	return out
}

// sentinelQuote quotes s for a redis config file (a double-quoted string,
// as the server's parser reads it), so that a password or a path may hold
// spaces, quotes or any byte.
func sentinelQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, "\\x%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// sentinelProc is one redis-sentinel process.
type sentinelProc struct {
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// startSentinel starts a sentinel on a free port that monitors the primary
// on primaryPort. A sentinel rewrites its configuration file as it learns
// the topology, so the file lives in the sentinel's own temporary directory.
func startSentinel(password string, primaryPort int) (*sentinelProc, error) {
	bin, err := exec.LookPath("redis-server") // as redis-sentinel, with --sentinel
	if err != nil {
		return nil, errors.New(NotFound)
	}
	dir, err := os.MkdirTemp("", "redistest-sentinel-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &sentinelProc{dir: dir}
	var lastErr error
	for range 5 { // a free port can be taken before it is bound: try a few
		if s.port, lastErr = freePort(); lastErr != nil {
			continue
		}
		if lastErr = s.start(bin, password, primaryPort); lastErr == nil {
			return s, nil
		}
	}
	return nil, errors.Join(fmt.Errorf("redistest: %w", lastErr), os.RemoveAll(dir))
}

func (s *sentinelProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *sentinelProc) start(bin, password string, primaryPort int) error {
	conf := filepath.Join(s.dir, "sentinel.conf")
	logPath := filepath.Join(s.dir, "sentinel.log")
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	lines := []string{
		"port " + strconv.Itoa(s.port),
		"bind 127.0.0.1",
		"daemonize no",
		"dir " + sentinelQuote(s.dir),
		"logfile " + sentinelQuote(logPath),
		// Clients and the other sentinels (which use their own requirepass
		// to authenticate to their peers) need the password.
		"requirepass " + sentinelQuote(password),
		"sentinel resolve-hostnames no",
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", SentinelMaster, primaryPort),
		fmt.Sprintf("sentinel auth-pass %s %s", SentinelMaster, sentinelQuote(password)),
		fmt.Sprintf("sentinel down-after-milliseconds %s %s", SentinelMaster, ms(sentinelDownAfter)),
		fmt.Sprintf("sentinel failover-timeout %s %s", SentinelMaster, ms(sentinelFailoverTimeout)),
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-sentinel: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a killed test sentinel says nothing useful
		close(done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(s.addr(), password)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-sentinel on port %d did not answer PING within %s: %w; log:\n%s", s.port, startTimeout, err, tail(logPath))
		}
		select {
		case <-done:
			return fmt.Errorf("redis-sentinel on port %d exited at start; log:\n%s", s.port, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

func (s *sentinelProc) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// close kills the sentinel, waits for it to exit and removes its directory.
func (s *sentinelProc) close() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	s.mu.Unlock()
	if cmd != nil {
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stopping redis-sentinel: %w", err)
		}
		<-done
	}
	return os.RemoveAll(s.dir)
}

// Package redistest runs a real redis-server for tests: on a free loopback
// port, with its own temporary directory and AOF on. Start ties one to a
// test, which stops it when it ends; New starts one outside any test (from
// a TestMain, say), which its caller stops with Close. Fault tests can kill,
// stop and restart it; a restarted server keeps its port and directory, so
// it reloads what the AOF holds.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NotFound is the failure message when redis-server is not on PATH.
const NotFound = "redis-server not found: run `make deps` or apt-get install redis-server"

// startTimeout bounds how long a (re)started server may take to answer PING,
// AOF loading included.
const startTimeout = 20 * time.Second

// Option changes how the server is started.
type Option func(*config)

type config struct {
	args     []string
	password string
}

// WithConfig adds redis-server configuration directives, each a name and its
// values, e.g. WithConfig("client-output-buffer-limit", "pubsub 64kb 32kb 1").
// A "requirepass" directive is also the password the readiness check
// authenticates with.
func WithConfig(name string, values ...string) Option {
	return func(c *config) {
		c.args = append(c.args, "--"+name)
		c.args = append(c.args, values...)
		if name == "requirepass" && len(values) == 1 {
			c.password = values[0]
		}
	}
}

// WithPassword makes the server require password (requirepass).
func WithPassword(password string) Option {
	return WithConfig("requirepass", password)
}

// Server is one redis-server process (and its restarts).
type Server struct {
	t        failer // the test of a server from Start; noTest for one from New
	bin      string
	dir      string
	port     int
	args     []string
	password string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server for t and stops it when t ends. It fails t
// if redis-server is not on PATH or does not answer PING in time.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return forTest(t, func() (*Server, error) { return New(opts...) }, func(s *Server) { s.t = t })
}

// New starts a redis-server that belongs to no test, for a TestMain or a
// server shared by many tests; the caller stops it with Close. It fails if
// redis-server is not on PATH or does not answer PING in time.
//
// Kill, Stop, Freeze, Thaw and Restart fail the test of a server from
// Start; on a server from New, having no test to fail, they panic.
func New(opts ...Option) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New(NotFound)
	}
	var c config
	for _, o := range opts {
		o(&c)
	}
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		return nil, fmt.Errorf("redistest: %w", err)
	}
	s := &Server{t: noTest{}, bin: bin, dir: dir, args: c.args, password: c.password}
	// A free port can be taken by someone else between finding and binding
	// it; try a few.
	var lastErr error
	for range 5 {
		if s.port, lastErr = freePort(); lastErr != nil {
			continue
		}
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, errors.Join(fmt.Errorf("redistest: %w", lastErr), os.RemoveAll(dir))
	}
	return s, nil
}

// failer is what a Server needs of its test.
type failer interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// noTest is the failer of a server from New: failures panic, and there is
// no cleanup to register (a frozen server needs no thaw before Close:
// SIGKILL ends a stopped process too).
type noTest struct{}

func (noTest) Helper()                           {}
func (noTest) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (noTest) Cleanup(func())                    {}

// Close kills the server (SIGKILL), waits for it to exit and removes its
// directory. Closing a closed server does nothing.
func (s *Server) Close() error {
	if err := s.signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("stopping redis-server: %w", err)
	}
	return removeDir(s.dir)
}

// removeDir removes a server's data directory. A child redis-server forked
// (an RDB for a replica's full sync) outlives its parent for a moment,
// writing its temp file, and nothing lets us wait for it (it is not our
// child): RemoveAll goes again while the directory is still being written.
func removeDir(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.RemoveAll(dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Addr is the server's "host:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Dir is the server's data directory (the AOF lives there).
func (s *Server) Dir() string { return s.dir }

// Kill ends the server with SIGKILL (no AOF flush) and waits for it to exit.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("redistest: kill: %v", err)
	}
}

// Stop ends the server with SIGTERM (it flushes its AOF) and waits for it to exit.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("redistest: stop: %v", err)
	}
}

// Freeze stops the server with SIGSTOP: it keeps its connections open and
// answers nothing, like a Redis stuck on a disk or behind a partition. The
// test's cleanup thaws it, so that it can be stopped.
func (s *Server) Freeze() {
	s.t.Helper()
	if err := s.send(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("redistest: freeze: %v", err)
	}
	s.t.Cleanup(s.Thaw)
}

// Thaw resumes a frozen server (SIGCONT); on a running one, or one no longer
// running, it does nothing.
func (s *Server) Thaw() {
	s.t.Helper()
	if !s.Running() {
		return
	}
	if err := s.send(syscall.SIGCONT); err != nil {
		s.t.Fatalf("redistest: thaw: %v", err)
	}
}

// send delivers sig without waiting for the process to exit.
func (s *Server) send(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return errors.New("redis-server is not running")
	}
	return s.cmd.Process.Signal(sig)
}

// Restart stops the server if it runs, then starts it again on the same
// port and directory and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
	var err error
	// The port was just released; another process rarely grabs it, but
	// the kernel may need a moment to let it be bound again.
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart: %v", err)
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	logPath := filepath.Join(s.dir, "redis.log")
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "yes",
		"--daemonize", "no",
		"--logfile", logPath,
	}
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status of a killed test server says nothing useful
		close(done)
	}()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(s.Addr(), s.password); err == nil {
			break
		} else if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d did not answer PING within %s: %w; log:\n%s", s.port, startTimeout, err, tail(logPath))
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start; log:\n%s", s.port, tail(logPath))
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.cmd, s.done = cmd, done
	return nil
}

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("redis-server did not exit within 30s of %v", sig)
	}
	s.cmd, s.done = nil, nil
	return nil
}

// ping sends one PING and expects +PONG (a loading server answers -LOADING),
// after an AUTH with password if it is set.
func ping(addr, password string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	var req []byte
	if password != "" {
		// RESP, not an inline command: the password may hold spaces.
		req = fmt.Appendf(req, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
	}
	req = append(req, "PING\r\n"...)
	if _, err := c.Write(req); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	if password != "" {
		if err := expectLine(r, "AUTH", "+OK"); err != nil {
			return err
		}
	}
	return expectLine(r, "PING", "+PONG")
}

// expectLine reads one reply line from r and checks it is want.
func expectLine(r *bufio.Reader, cmd, want string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(line); got != want {
		return fmt.Errorf("%s answered %q", cmd, got)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

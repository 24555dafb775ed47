// Package chatpods runs built chatserver binaries on loopback as the pods
// of a room, for the tests that need several real processes (test/multipod,
// test/ha): start, kill, drain and restart them, and wait on their HTTP
// endpoints.
package chatpods

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build builds cmd/chatserver into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "chatserver")
	build := exec.Command("go", "build", "-o", bin, "github.com/hubbub-chat/hubbub/cmd/chatserver")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building cmd/chatserver: %w", err)
	}
	return bin, nil
}

// Pod is one chatserver process, and its restarts on the same port. Set
// Args (and Env) before Start.
type Pod struct {
	Name string
	Args []string
	Env  []string // nil: the test process's environment
	// ExitWait bounds how long Signal waits for the process to exit.
	ExitWait time.Duration

	t    *testing.T
	bin  string
	port int
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// New prepares a pod of binary bin on a free loopback port. It is killed
// when the test ends, and its log's tail shown if the test failed.
func New(t *testing.T, bin, name string) *Pod {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &Pod{Name: name, ExitWait: 10 * time.Second, t: t, bin: bin, port: port, log: filepath.Join(t.TempDir(), name+".log")}
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", p.Name, p.Tail(6000))
		}
	})
	return p
}

// Addr is the pod's host:port, URL its base URL.
func (p *Pod) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }
func (p *Pod) URL() string  { return "http://" + p.Addr() }

// Start runs the process, its output appended to the pod's log.
func (p *Pod) Start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(p.bin, p.Args...)
	cmd.Env = p.Env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is read from ProcessState
		f.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// Restart starts the process again and waits until it is ready.
func (p *Pod) Restart() {
	p.t.Helper()
	p.Start()
	p.WaitStatus("/readyz", http.StatusOK, 20*time.Second)
}

// Exited reports whether the process has ended.
func (p *Pod) Exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// WaitStatus polls path until it answers status, and fails the test if
// that does not happen within d or the process exits. Nothing announces
// readiness: it polls.
func (p *Pod) WaitStatus(path string, status int, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	last := "no answer"
	for {
		code, err := getStatus(p.URL() + path)
		if err == nil && code == status {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("HTTP %d", code)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s did not answer %d within %s (last: %s); log:\n%s", p.Name, path, status, d, last, p.Tail(3000))
		}
		if p.Exited() {
			p.t.Fatalf("%s exited while waiting for %s %d; log:\n%s", p.Name, path, status, p.Tail(3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Signal sends sig and waits for the process to exit (at most ExitWait,
// then it is killed and the test fails). It returns how long the exit took
// and the process state; nothing when no process runs.
func (p *Pod) Signal(sig syscall.Signal) (time.Duration, *os.ProcessState) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return 0, nil
	}
	start := time.Now()
	_ = cmd.Process.Signal(sig) // it may have exited already; Wait has the truth
	select {
	case <-done:
	case <-time.After(p.ExitWait):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("%s did not exit within %s of %v", p.Name, p.ExitWait, sig)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return time.Since(start), cmd.ProcessState
}

// LogFile is where the process's output goes.
func (p *Pod) LogFile() string { return p.log }

// Tail is the last n bytes of the pod's log.
func (p *Pod) Tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Status is what GET path answers.
func (p *Pod) Status(path string) (int, error) { return getStatus(p.URL() + path) }

var httpClient = &http.Client{Timeout: 5 * time.Second}

func getStatus(u string) (int, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body) // lets the connection be reused
	return resp.StatusCode, nil
}

// FreePort is a loopback TCP port free at the time of asking.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Package multipod runs several real chatserver processes (built binaries)
// against one real redis-server and checks that they behave as one chat,
// including while pods are killed, drained and Redis restarts.
package multipod

import (
	"context"
	"fmt"
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

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// binary is the chatserver built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hubbub-multipod-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "chatserver")
	build := exec.Command("go", "build", "-o", binary, "github.com/hubbub-chat/hubbub/cmd/chatserver")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cmd/chatserver:", err)
		return 1
	}
	return m.Run()
}

const (
	room  = "test/multipod"
	grace = 3 * time.Second
)

// pod is one chatserver process (and its restarts on the same port).
type pod struct {
	t     *testing.T
	name  string
	port  int
	args  []string
	log   string
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
}

// startPods starts n chatservers on redisURL and waits until each is ready.
func startPods(t *testing.T, srv *redistest.Server, n int, extra ...string) []*pod {
	t.Helper()
	pods := make([]*pod, n)
	for i := range pods {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		p := &pod{
			t: t, name: fmt.Sprintf("pod-%d", i), port: port,
			log: filepath.Join(t.TempDir(), fmt.Sprintf("pod-%d.log", i)),
		}
		p.args = append([]string{
			"--redis-url=" + srv.URL(),
			"--addr=" + p.addr(),
			"--room=" + room,
			"--bcrypt-cost=4",
			"--shutdown-grace=" + grace.String(),
			"--channels=general,random",
			"--messages-per-second=50",
			"--message-burst=100",
			"--login-attempts-per-minute=10000", "--login-attempts-per-ip-per-minute=10000",
			"--log-level=info",
		}, extra...)
		p.start()
		pods[i] = p
		t.Cleanup(func() {
			p.signal(syscall.SIGKILL)
			if t.Failed() {
				if b, err := os.ReadFile(p.log); err == nil {
					if len(b) > 6000 {
						b = b[len(b)-6000:]
					}
					t.Logf("%s log (tail):\n%s", p.name, b)
				}
			}
		})
	}
	for _, p := range pods {
		p.waitReady()
	}
	return pods
}

func (p *pod) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }
func (p *pod) url() string  { return "http://" + p.addr() }

func (p *pod) start() {
	p.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command(binary, p.args...)
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
	p.cmd, p.done, p.state = cmd, done, nil
	p.mu.Unlock()
}

// waitReady polls /readyz until it answers 200.
func (p *pod) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready after 20s (last: %v)", p.name, err)
		}
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			p.t.Fatalf("%s exited while starting", p.name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// signal sends sig and waits for the process to exit (at most grace + 10s).
// It returns how long the exit took and the process state.
func (p *pod) signal(sig syscall.Signal) (time.Duration, *os.ProcessState) {
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
	case <-time.After(grace + 10*time.Second):
		_ = cmd.Process.Kill()
		<-done
		p.t.Errorf("%s did not exit within %s of %v", p.name, grace+10*time.Second, sig)
	}
	p.mu.Lock()
	p.cmd, p.state = nil, cmd.ProcessState
	p.mu.Unlock()
	return time.Since(start), cmd.ProcessState
}

func (p *pod) restart() {
	p.t.Helper()
	p.start()
	p.waitReady()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func urls(pods ...*pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.url()
	}
	return out
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func protocolCompare(a, b string) int { return protocol.CompareIDs(a, b) }

// Package ha runs real chatserver processes (built binaries) on a real Redis
// Sentinel topology (three redis-servers, three sentinels) and kills Redis
// primaries under traffic: it shows that a failover loses no acknowledged
// message and stores none twice, logs nobody out and leaves presence right,
// and what the replica acknowledgements (--redis-min-replica-acks) buy.
//
// The pod harness is test/multipod's, copied: the chat servers here get
// their Redis password from the environment, as a managed pod does.
package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// binary is the chatserver built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hubbub-ha-")
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
	room  = "test/ha"
	grace = 3 * time.Second
	// readyTimeout bounds a chat server's start: it needs Redis to answer,
	// through the sentinels.
	readyTimeout = 20 * time.Second
)

// pod is one chatserver process.
type pod struct {
	t    *testing.T
	name string
	port int
	args []string
	env  []string
	log  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// newPod prepares a chatserver on redisURL whose Redis password comes from
// HUBBUB_REDIS_PASSWORD, as in a managed pod (kept out of its arguments).
// It is killed when the test ends, and its log shown if the test failed.
func newPod(t *testing.T, name, redisURL, password string, extra ...string) *pod {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{t: t, name: name, port: port, log: filepath.Join(t.TempDir(), name+".log")}
	p.args = append([]string{
		"--redis-url=" + redisURL,
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
	p.env = append(os.Environ(), config.EnvName("redis-password")+"="+password)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", p.name, p.tail(6000))
		}
	})
	return p
}

// startPods starts n chatservers on redisURL and waits until each is ready.
func startPods(t *testing.T, redisURL, password string, n int, extra ...string) []*pod {
	t.Helper()
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = newPod(t, fmt.Sprintf("pod-%d", i), redisURL, password, extra...)
		pods[i].start()
	}
	for _, p := range pods {
		p.waitStatus("/readyz", http.StatusOK, readyTimeout)
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
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // whether it still runs is what the tests check
		f.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// exited reports whether the process has ended.
func (p *pod) exited() bool {
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

// waitStatus polls path until it answers status, and fails the test if that
// does not happen within d or the process exits.
func (p *pod) waitStatus(path string, status int, d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	last := "no answer"
	for {
		code, err := getStatus(p.url() + path)
		if err == nil && code == status {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("HTTP %d", code)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: %s did not answer %d within %s (last: %s); log:\n%s", p.name, path, status, d, last, p.tail(3000))
		}
		if p.exited() {
			p.t.Fatalf("%s exited while waiting for %s %d; log:\n%s", p.name, path, status, p.tail(3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL and waits for it.
func (p *pod) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // it may have exited already
	<-done
}

// tail is the end of the pod's log.
func (p *pod) tail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

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

// getJSON GETs u with a bearer token (if any) into out; non-200 is an error.
func getJSON(ctx context.Context, u, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", u, resp.StatusCode, body)
	}
	return json.Unmarshal(body, out)
}

// history reads a channel's whole history, oldest first, page by page.
func history(ctx context.Context, base, token, channel string) ([]protocol.Message, error) {
	const page = 200 // the API's largest page
	var out []protocol.Message
	before := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(page)}}
		if before != "" {
			q.Set("before", before)
		}
		var resp struct {
			Messages []protocol.Message `json:"messages"`
		}
		if err := getJSON(ctx, base+"/api/v1/channels/"+url.PathEscape(channel)+"/messages?"+q.Encode(), token, &resp); err != nil {
			return nil, err
		}
		out = append(resp.Messages, out...)
		if len(resp.Messages) < page {
			return out, nil
		}
		before = resp.Messages[0].ID
	}
}

// onlineUsers is a pod's GET /api/v1/stats onlineUsers.
func onlineUsers(ctx context.Context, base string) (int, error) {
	var st protocol.Stats
	if err := getJSON(ctx, base+protocol.StatsPath, "", &st); err != nil {
		return 0, err
	}
	return st.OnlineUsers, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

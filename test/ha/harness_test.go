// Package ha runs real chatserver processes (built binaries) on a real Redis
// Sentinel topology (three redis-servers, three sentinels) and kills Redis
// primaries under traffic: it shows that a failover loses no acknowledged
// message and stores none twice, logs nobody out and leaves presence right,
// and what the replica acknowledgements (--redis-min-replica-acks) buy.
//
// The chat servers here get their Redis password from the environment, as
// a managed pod does.
package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/test/chatpods"
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
	if binary, err = chatpods.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
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
type pod = chatpods.Pod

// newPod prepares a chatserver on redisURL whose Redis password comes from
// HUBBUB_REDIS_PASSWORD, as in a managed pod (kept out of its arguments).
func newPod(t *testing.T, name, redisURL, password string, extra ...string) *pod {
	t.Helper()
	p := chatpods.New(t, binary, name)
	p.Args = append([]string{
		"--redis-url=" + redisURL,
		"--addr=" + p.Addr(),
		"--room=" + room,
		"--bcrypt-cost=4",
		"--shutdown-grace=" + grace.String(),
		"--channels=general,random",
		"--messages-per-second=50",
		"--message-burst=100",
		"--login-attempts-per-minute=10000", "--login-attempts-per-ip-per-minute=10000",
		"--log-level=info",
	}, extra...)
	p.Env = append(os.Environ(), config.EnvName("redis-password")+"="+password)
	return p
}

// startPods starts n chatservers on redisURL and waits until each is ready.
func startPods(t *testing.T, redisURL, password string, n int, extra ...string) []*pod {
	t.Helper()
	pods := make([]*pod, n)
	for i := range pods {
		pods[i] = newPod(t, fmt.Sprintf("pod-%d", i), redisURL, password, extra...)
		pods[i].Start()
	}
	for _, p := range pods {
		p.WaitStatus("/readyz", http.StatusOK, readyTimeout)
	}
	return pods
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

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

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// Package multipod runs several real chatserver processes (built binaries)
// against one real redis-server and checks that they behave as one chat,
// including while pods are killed, drained and Redis restarts.
package multipod

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/test/chatpods"
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
	if binary, err = chatpods.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

const (
	room  = "test/multipod"
	grace = 3 * time.Second
)

// pod is one chatserver process (and its restarts on the same port).
type pod = chatpods.Pod

// startPods starts n chatservers on srv and waits until each is ready.
func startPods(t *testing.T, srv *redistest.Server, n int, extra ...string) []*pod {
	t.Helper()
	pods := make([]*pod, n)
	for i := range pods {
		p := chatpods.New(t, binary, fmt.Sprintf("pod-%d", i))
		p.ExitWait = grace + 10*time.Second
		p.Args = append([]string{
			"--redis-url=" + srv.URL(),
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
		p.Start()
		pods[i] = p
	}
	for _, p := range pods {
		p.WaitStatus("/readyz", http.StatusOK, 20*time.Second)
	}
	return pods
}

func urls(pods ...*pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.URL()
	}
	return out
}

func testContext(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func protocolCompare(a, b string) int { return protocol.CompareIDs(a, b) }

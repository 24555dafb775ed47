package ha

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
)

// A chat server given a Sentinel URL it cannot use starts anyway: it does not
// exit (a crash loop under Kubernetes) nor hang, answers /healthz 200 (alive)
// and /readyz 503 (send it no traffic), and says once in its log, at warn,
// why it is not ready, in words that tell what to fix.
func TestBadSentinelConfig(t *testing.T) {
	h := redistest.StartSentinel(t)
	cases := []struct {
		name, url, password string
		cause               string // what the "not ready" line's err must say
	}{
		{
			name: "UnknownMasterName", url: h.URLWith("no-such-master", ""), password: h.Password(),
			cause: `no sentinel knows a master named "no-such-master"`,
		},
		{
			name: "WrongPassword", url: h.URLWith(h.MasterName(), ""), password: "not-the-password",
			cause: "WRONGPASS",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := newPod(t, "pod", tc.url, tc.password)
			p.Start()
			p.WaitStatus("/healthz", http.StatusOK, readyTimeout)
			// Readiness is probed again and again, as by a kubelet: each
			// answer is 503 and comes within the kubelet's default probe
			// timeout (1 s; 2 s allows for a busy machine).
			for range 5 {
				start := time.Now()
				code, err := p.Status("/readyz")
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("/readyz took %s to answer", took)
				}
				if err != nil || code != http.StatusServiceUnavailable {
					t.Fatalf("/readyz: %d, %v; want 503", code, err)
				}
			}
			if p.Exited() {
				t.Fatalf("the chat server exited; log:\n%s", p.Tail(3000))
			}
			if code, err := p.Status("/healthz"); err != nil || code != http.StatusOK {
				t.Errorf("/healthz after the probes: %d, %v; want 200", code, err)
			}
			lines := notReadyLines(t, p.LogFile())
			if len(lines) != 1 {
				t.Fatalf("%d %q lines in the log, want 1 (%q); log:\n%s", len(lines), notReady, lines, p.Tail(3000))
			}
			if !strings.Contains(lines[0].Err, tc.cause) {
				t.Errorf("the %q line says %q, want it to say %q", notReady, lines[0].Err, tc.cause)
			}
			t.Logf("%s: %s", lines[0].Msg, lines[0].Err)
		})
	}
}

// notReady is the message of the server's log line when readiness fails.
const notReady = "not ready: storage unreachable"

type logLine struct {
	Level, Msg, Err string
}

// notReadyLines are the warn lines of a chatserver's JSON log that say it
// is not ready.
func notReadyLines(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		// Lines that are not JSON come from go-redis's own logger.
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == notReady && l.Level == "WARN" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

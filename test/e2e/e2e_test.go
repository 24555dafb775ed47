//go:build e2e

package e2e

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestChat runs the conversation test/kind runs on a kind cluster against any
// running chat servers, named by the environment:
//
//	HUBBUB_E2E_URL        comma-separated server URLs; user i talks to URL i (required)
//	HUBBUB_E2E_CHANNEL    channel to talk in (general)
//	HUBBUB_E2E_MESSAGES   messages per user (40)
//	HUBBUB_E2E_EXPECT_DISCONNECT=1  go on until a socket dropped after the midway point
//	HUBBUB_E2E_MIDWAY_FILE  created when half the messages are acked, the
//	                        script's cue to delete a chat pod
//	HUBBUB_E2E_TIMEOUT    overall deadline (4m)
//
// Two users register on their own servers, chat, and each must receive every
// acked message exactly once, in order, however servers come and go.
func TestChat(t *testing.T) {
	raw := os.Getenv("HUBBUB_E2E_URL")
	if raw == "" {
		t.Fatal("HUBBUB_E2E_URL is not set: TestChat needs running chat servers, e.g.\n" +
			"  HUBBUB_E2E_URL=http://127.0.0.1:18080,http://127.0.0.1:18081 go test -tags e2e -run TestChat ./test/e2e\n" +
			"`make kind-e2e` sets it up on a kind cluster")
	}
	urls := strings.Split(raw, ",")
	timeout := envDuration(t, "HUBBUB_E2E_TIMEOUT", 4*time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	opts := Options{
		Channel:          envString("HUBBUB_E2E_CHANNEL", "general"),
		Messages:         envInt(t, "HUBBUB_E2E_MESSAGES", 40),
		Interval:         250 * time.Millisecond, // under the default 5 sends/s per socket
		AckTimeout:       10 * time.Second,
		SettleTimeout:    30 * time.Second,
		ExpectDisconnect: os.Getenv("HUBBUB_E2E_EXPECT_DISCONNECT") == "1",
		AfterDrop:        10,
		Logf:             t.Logf,
	}
	if f := os.Getenv("HUBBUB_E2E_MIDWAY_FILE"); f != "" {
		opts.Midway = func() {
			if err := os.WriteFile(f, []byte("midway\n"), 0o644); err != nil {
				t.Errorf("midway file: %v", err)
			}
		}
	}

	// A client of its own, whose idle connections are closed at the end
	// (goleak checks no goroutine outlives the test).
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()

	suffix := RandomSuffix()
	var ps []Participant
	for i, name := range []string{"alice-" + suffix, "bob-" + suffix} {
		api := API{BaseURL: strings.TrimRight(urls[i%len(urls)], "/"), Client: hc}
		p, err := Signup(ctx, api, name, "correct-horse-"+suffix)
		if err != nil {
			t.Fatalf("%s on %s: %v", name, api.BaseURL, err)
		}
		t.Logf("%s talks to %s", name, api.BaseURL)
		ps = append(ps, p)
	}
	reports, err := Converse(ctx, opts, ps...)
	for _, r := range reports {
		t.Logf("%+v", r)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 2 {
		t.Fatalf("%s=%q: want an integer of at least 2", name, v)
	}
	return n
}

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// countingLister counts Online calls and fails while err is set.
type countingLister struct {
	onlineLister
	calls int
	err   error
}

func (l *countingLister) Online(ctx context.Context, limit int) ([]string, error) {
	l.calls++
	if l.err != nil {
		return nil, l.err
	}
	return l.onlineLister.Online(ctx, limit)
}

func getStats(t *testing.T, h http.Handler) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, protocol.StatsPath, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return rec.Code, body
}

// TestStatsCountsDistinctUsersWithoutLogin: the count is of people, not
// sockets or pods, and needs no session.
func TestStatsCountsDistinctUsersWithoutLogin(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	for _, j := range []struct{ pod, user string }{{"pod-a", "alice"}, {"pod-b", "alice"}, {"pod-a", "bob"}} {
		if err := b.Join(ctx, j.pod, j.user, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.Room = "test/stats"
	srv, err := New(ctx, cfg, Options{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Through the server's own routes: the API's catch-all for /api/ must
	// not shadow it.
	code, body := getStats(t, srv.Handler())
	if code != http.StatusOK || body["onlineUsers"] != 2.0 {
		t.Fatalf("GET %s = %d %v, want 200 with onlineUsers 2", protocol.StatsPath, code, body)
	}
}

// TestStatsCachesCountsNotFailures: within statsTTL requests share one
// storage read; a failure is a 503 in the API's error shape and is retried
// by the next request.
func TestStatsCachesCountsNotFailures(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	if err := b.Join(ctx, "pod-a", "alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	l := &countingLister{onlineLister: b, err: chat.ErrUnavailable}
	now := time.Unix(1_800_000_000, 0)
	h := newStatsHandler(l, slog.New(slog.NewTextHandler(io.Discard, nil)))
	h.now = func() time.Time { return now }

	code, body := getStats(t, h)
	if e, _ := body["error"].(map[string]any); code != http.StatusServiceUnavailable || e["code"] != "unavailable" {
		t.Fatalf("with storage down: %d %v, want 503 unavailable", code, body)
	}
	l.err = nil
	if code, body := getStats(t, h); code != http.StatusOK || body["onlineUsers"] != 1.0 || l.calls != 2 {
		t.Fatalf("after recovery: %d %v after %d reads, want 200 with 1 after 2 reads", code, body, l.calls)
	}
	if err := b.Join(ctx, "pod-a", "bob", time.Hour); err != nil {
		t.Fatal(err)
	}
	now = now.Add(statsTTL - time.Millisecond)
	if _, body := getStats(t, h); body["onlineUsers"] != 1.0 || l.calls != 2 {
		t.Errorf("within the TTL: %v after %d reads, want the cached 1 after 2 reads", body, l.calls)
	}
	now = now.Add(time.Millisecond)
	if _, body := getStats(t, h); body["onlineUsers"] != 2.0 || l.calls != 3 {
		t.Errorf("after the TTL: %v after %d reads, want 2 after 3 reads", body, l.calls)
	}
}

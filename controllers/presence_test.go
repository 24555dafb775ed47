package controllers

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// chatServerForTest serves a real chat server's HTTP handler for room, on
// the Redis at url, and returns its address.
func chatServerForTest(t *testing.T, room, url, password string) string {
	t.Helper()
	ctx := t.Context()
	b, err := redisbackend.New(redisbackend.Options{Room: room, URL: url, Password: password, PodID: "lobby-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	cfg := config.Default()
	cfg.Room, cfg.RedisURL, cfg.RedisPassword = room, url, password
	srv, err := server.New(ctx, cfg, server.Options{Backend: b, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// TestHTTPPresenceAsksARealChatServer: the operator's counter and the chat
// server's stats endpoint agree on the contract, on presence a real Redis
// holds: distinct users of this room, and "Redis unavailable" told apart.
func TestHTTPPresenceAsksARealChatServer(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("s3cret"))
	ctx := t.Context()
	const room = "team-a/lobby"
	b, err := redisbackend.New(redisbackend.Options{Room: room, URL: srv.URL(), Password: "s3cret", PodID: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, j := range []struct{ pod, user string }{{"lobby-a", "alice"}, {"lobby-b", "alice"}, {"lobby-a", "bob"}} {
		if err := b.Join(ctx, j.pod, j.user, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	other, err := redisbackend.New(redisbackend.Options{Room: "team-b/lobby", URL: srv.URL(), Password: "s3cret", PodID: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Join(ctx, "lobby-c", "carol", time.Minute); err != nil {
		t.Fatal(err)
	}

	addr := chatServerForTest(t, room, srv.URL(), "s3cret")
	if n, err := (HTTPPresence{}).OnlineUsers(ctx, addr); err != nil || n != 2 {
		t.Fatalf("OnlineUsers = %d, %v; want 2 (alice on two pods, bob; not carol of another room)", n, err)
	}
	// The replication it reports: a lone Redis, its own primary.
	st, err := HTTPPresence{}.Stats(ctx, addr)
	if err != nil || st.OnlineUsers != 2 || st.Redis == nil {
		t.Fatalf("Stats = %+v, %v; want 2 online and the Redis replication", st, err)
	}
	if want := (protocol.RedisStats{Primary: srv.Addr()}); *st.Redis != want {
		t.Errorf("Stats.Redis = %+v, want %+v", *st.Redis, want)
	}

	srv.Kill()
	// A server that has not counted yet: nothing cached.
	addr = chatServerForTest(t, room, srv.URL(), "s3cret")
	_, err = HTTPPresence{}.OnlineUsers(ctx, addr)
	if !errors.Is(err, ErrRedisUnavailable) {
		t.Fatalf("with Redis stopped: %v, want ErrRedisUnavailable", err)
	}
}

func TestHTTPPresenceErrors(t *testing.T) {
	var elsewhereHits atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhereHits.Add(1)
		_, _ = io.WriteString(w, `{"onlineUsers":99}`)
	}))
	defer elsewhere.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close()

	serve := func(h http.HandlerFunc) string {
		ts := httptest.NewServer(h)
		t.Cleanup(ts.Close)
		return ts.Listener.Addr().String()
	}
	answer := func(status int, body string) string {
		return serve(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != protocol.StatsPath || r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
				http.Error(w, "unexpected request", http.StatusTeapot)
				return
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		})
	}
	tests := []struct {
		name      string
		addr      string
		want      string // in the error
		redisDown bool
	}{
		{"redis down", answer(503, `{"error":{"code":"unavailable","message":"storage unavailable, try again"}}`), "storage unavailable, try again", true},
		{"redis down, odd body", answer(503, `<html>`), "unavailable", true},
		{"no such endpoint (an older chat image)", answer(404, `{"error":{"code":"not_found"}}`), "404", false},
		{"not a count", answer(200, `{"online":3}`), "not a count", false},
		{"negative", answer(200, `{"onlineUsers":-1}`), "not a count", false},
		{"not JSON", answer(200, `three`), "not a count", false},
		// Read only up to a bound: the pod runs the room author's image.
		{"too long", answer(200, `{"onlineUsers":1,"pad":"`+strings.Repeat("x", 1<<20)+`"}`), "not a count", false},
		{"redirect elsewhere", serve(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+protocol.StatsPath, http.StatusFound)
		}), "302", false},
		{"nothing listening", closedAddr, "connection refused", false},
		{"too slow", serve(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}), "deadline exceeded", false},
	}
	for _, tt := range tests {
		start := time.Now()
		_, err := HTTPPresence{Timeout: time.Second}.OnlineUsers(t.Context(), tt.addr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
		if got := errors.Is(err, ErrRedisUnavailable); got != tt.redisDown {
			t.Errorf("%s: errors.Is(err, ErrRedisUnavailable) = %t, want %t", tt.name, got, tt.redisDown)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s, bounded by a 1s timeout", tt.name, d)
		}
	}
	if n := elsewhereHits.Load(); n != 0 {
		t.Errorf("a redirect was followed %d times", n)
	}
	if n, err := (HTTPPresence{}).OnlineUsers(t.Context(), answer(200, `{"onlineUsers":3}`)); err != nil || n != 3 {
		t.Errorf("a good answer: %d, %v", n, err)
	}
}

// TestHTTPPresenceStats: the Redis replication of a stats answer is taken
// when it makes sense, and an absent or odd one leaves the count alone.
func TestHTTPPresenceStats(t *testing.T) {
	tests := []struct {
		body string
		want *protocol.RedisStats
	}{
		{`{"onlineUsers":3}`, nil},
		{`{"onlineUsers":3,"redis":null}`, nil},
		{`{"onlineUsers":3,"redis":{"primary":"lobby-redis-1.lobby-redis-headless.ns.svc:6379","replicas":2,"replicasInSync":1}}`,
			&protocol.RedisStats{Primary: "lobby-redis-1.lobby-redis-headless.ns.svc:6379", Replicas: 2, ReplicasInSync: 1}},
		{`{"onlineUsers":3,"redis":{"replicas":2,"replicasInSync":2,"future":true}}`, &protocol.RedisStats{Replicas: 2, ReplicasInSync: 2}},
		{`{"onlineUsers":3,"redis":"primary"}`, nil},
		{`{"onlineUsers":3,"redis":{"replicas":-1}}`, nil},
		{`{"onlineUsers":3,"redis":{"replicas":1,"replicasInSync":2}}`, nil},
		{`{"onlineUsers":3,"redis":{"replicas":"two"}}`, nil},
	}
	for _, tt := range tests {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, tt.body) }))
		st, err := HTTPPresence{}.Stats(t.Context(), ts.Listener.Addr().String())
		ts.Close()
		if err != nil || st.OnlineUsers != 3 {
			t.Errorf("%s: %+v, %v; want 3 online", tt.body, st, err)
			continue
		}
		if diff := cmp.Diff(tt.want, st.Redis); diff != "" {
			t.Errorf("%s: redis (-want +got):\n%s", tt.body, diff)
		}
	}
}

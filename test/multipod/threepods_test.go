package multipod

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/test/chatclient"
)

// Three servers on one Redis behave as one chat.
func TestThreePods(t *testing.T) {
	srv := redistest.Start(t)
	pods := startPods(t, srv, 3)
	ctx := testContext(t, 2*time.Minute)

	t.Run("RegisteredOnOneLogsInOnAnother", func(t *testing.T) {
		if err := chatclient.Register(ctx, pods[0].URL(), "alice", "password-alice"); err != nil {
			t.Fatal(err)
		}
		if err := chatclient.Register(ctx, pods[2].URL(), "alice", "another-password"); !errors.Is(err, chatclient.ErrTaken) {
			t.Errorf("registering alice again on another pod: %v, want taken", err)
		}
		token, err := chatclient.Login(ctx, pods[1].URL(), "alice", "password-alice")
		if err != nil {
			t.Fatal(err)
		}
		// The session works on every pod.
		for _, p := range pods {
			user, err := chatclient.Me(ctx, p.URL(), token)
			if err != nil || user != "alice" {
				t.Errorf("%s: /me = %q, %v; want alice", p.Name, user, err)
			}
		}
	})

	t.Run("ClientsOnDifferentPodsChatInOrder", func(t *testing.T) {
		const perPod, each = 2, 15
		var clients []*chatclient.Client
		for i := range 3 * perPod {
			p := pods[i%3]
			name := fmt.Sprintf("chatter%d", i)
			if err := chatclient.Register(ctx, p.URL(), name, "password-"+name); err != nil {
				t.Fatal(err)
			}
			token, err := chatclient.Login(ctx, pods[(i+1)%3].URL(), name, "password-"+name)
			if err != nil {
				t.Fatal(err)
			}
			c := chatclient.New(chatclient.Config{Servers: []string{p.URL()}, Token: token, Channels: []string{"general"}})
			runClient(t, ctx, c)
			clients = append(clients, c)
		}
		for _, c := range clients {
			if err := c.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
		}
		for i := range each {
			for j, c := range clients {
				c.Send("general", fmt.Sprintf("chatter%d says %d", j, i))
			}
		}
		want := waitAllAcked(t, clients, "general", 30*time.Second)
		if len(want) != each*len(clients) {
			t.Fatalf("%d messages acked, want %d", len(want), each*len(clients))
		}
		for i, c := range clients {
			got := waitDelivered(t, c, "general", want, 30*time.Second)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("client %d (on %s) saw (-acked, in id order +delivered):\n%s", i, pods[i%3].Name, diff)
			}
		}
	})

	t.Run("RevokeAllClosesSocketsOnEveryPod", func(t *testing.T) {
		if err := chatclient.Register(ctx, pods[0].URL(), "bob", "password-bob"); err != nil {
			t.Fatal(err)
		}
		token, err := chatclient.Login(ctx, pods[0].URL(), "bob", "password-bob")
		if err != nil {
			t.Fatal(err)
		}
		var clients []*chatclient.Client
		var dones []chan error
		for _, p := range pods {
			c := chatclient.New(chatclient.Config{Servers: []string{p.URL()}, Token: token, NoReconnect: true})
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			if err := c.WaitConnected(ctx); err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			dones = append(dones, done)
		}
		start := time.Now()
		if err := chatclient.RevokeAll(ctx, pods[1].URL(), token); err != nil {
			t.Fatal(err)
		}
		for i, done := range dones {
			select {
			case err := <-done:
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != 4401 {
					t.Errorf("socket on %s ended with %v, want close 4401", pods[i].Name, err)
				}
			case <-time.After(2*time.Second - time.Since(start)):
				t.Errorf("socket on %s still open 2s after revoke-all on %s", pods[i].Name, pods[1].Name)
			}
		}
		t.Logf("revoke-all closed %d sockets on 3 pods in %s", len(clients), time.Since(start).Round(time.Millisecond))
		if _, err := chatclient.Me(ctx, pods[2].URL(), token); err == nil {
			t.Error("a revoked token still works on another pod")
		}
	})
}

// runClient runs c until the test ends.
func runClient(t *testing.T, ctx context.Context, c *chatclient.Client) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx) // ends with ctx; connection errors are the test's subject, counted in Stats
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitAllAcked waits until every send of every client on channel is
// acknowledged and returns the acknowledged ids in id order.
func waitAllAcked(t *testing.T, clients []*chatclient.Client, channel string, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		unacked := 0
		for _, c := range clients {
			unacked += c.Unacked()
		}
		if unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sends still unacknowledged after %s", unacked, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ids []string
	for _, c := range clients {
		for _, s := range c.Sends() {
			if s.Channel == channel && s.Change == nil {
				ids = append(ids, s.ID)
			}
		}
	}
	slices.SortFunc(ids, protocolCompare)
	return ids
}

// waitDelivered waits until c has seen every id in want on channel and
// returns the ids it saw: messages it got, and those it learnt were deleted
// (a message deleted while the client was away reaches it only so).
func waitDelivered(t *testing.T, c *chatclient.Client, channel string, want []string, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := c.Known(channel)
		if missing(want, got) == 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func missing(want, got []string) int {
	have := make(map[string]bool, len(got))
	for _, id := range got {
		have[id] = true
	}
	n := 0
	for _, id := range want {
		if !have[id] {
			n++
		}
	}
	return n
}

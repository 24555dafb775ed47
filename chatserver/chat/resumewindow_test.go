package chat_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/chat/chattest"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// heldReplays is the memory store whose replay reads, once armed, wait for
// the test (entered says which channel is being read) or fail.
type heldReplays struct {
	*memory.Backend
	armed   atomic.Bool
	fail    error
	entered chan string
	gate    chan struct{}
}

func (h *heldReplays) After(ctx context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	if h.armed.Load() {
		if h.fail != nil {
			return nil, h.fail
		}
		h.entered <- channel
		select {
		case <-h.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Backend.After(ctx, channel, after, limit)
}

func newHeldRoom(t *testing.T, fail error, window time.Duration) (*room, *heldReplays) {
	t.Helper()
	mem := memory.New()
	for _, u := range []string{"alice", "bob"} {
		if err := mem.CreateUser(context.Background(), auth.User{Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	store := &heldReplays{Backend: mem, fail: fail, entered: make(chan string, 4), gate: make(chan struct{})}
	opts := testOptions()
	opts.MessagesPerSecond, opts.MessageBurst = 1000, 1000
	opts.ResumeWindow = window
	return runServiceOn(t, store, mem, opts), store
}

// messagesOf collects the message ids ws got per channel, once it has n.
func messagesOf(t *testing.T, ws *chattest.Socket, n int) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for range n {
		m := ws.Next(t, protocol.TypeMessage)
		ch := m["channel"].(string)
		got[ch] = append(got[ch], m["id"].(string))
	}
	return got
}

// A resume whose replay outlasts the resume window still gets every message
// it missed, in order, in every channel it named: live messages that come
// meanwhile wait behind the replays. (When the window ran on, live messages
// of a channel not replayed yet went out first, and its replay then skipped
// what they had passed: a gap after a drain with slow storage.)
func TestResumeWindowWaitsForASlowReplay(t *testing.T) {
	// The replay is held past the window's end: the window must not end
	// while the resume is handled, however slow storage is. The resume is
	// the socket's first frame, queued before the server starts reading, so
	// it comes within the window however busy the machine is.
	const window = 50 * time.Millisecond
	r, store := newHeldRoom(t, nil, window)
	alice := r.connect("alice")
	sent := map[string][]string{}
	for i := range 2 {
		for _, ch := range []string{"general", "random"} {
			sent[ch] = append(sent[ch], send(t, alice, ch, "before", fmt.Sprint(ch, i)))
		}
	}
	store.armed.Store(true)
	bob := chattest.New()
	bob.Send(fmt.Sprintf(`{"type":"resume","since":{"general":%q,"random":%q}}`, sent["general"][0], sent["random"][0]))
	started := time.Now()
	r.s.Start(bob, chat.Peer{User: "bob", Session: "b"})
	bob.Next(t, protocol.TypeHello)
	<-store.entered
	// Live messages in both channels while the first replay waits.
	for _, ch := range []string{"general", "random"} {
		sent[ch] = append(sent[ch], send(t, alice, ch, "live", ch+"-live"))
	}
	for range 6 { // alice's own copies: the fan-out has reached the server's sockets
		alice.Next(t, protocol.TypeMessage)
	}
	// What is tested is that time passes beyond the window while the
	// replay waits: no event marks that, so the test waits for the clock.
	time.Sleep(time.Until(started.Add(2 * window)))
	store.armed.Store(false)
	close(store.gate)

	got := messagesOf(t, bob, 4)
	for _, ch := range []string{"general", "random"} {
		if want := sent[ch][1:]; fmt.Sprint(got[ch]) != fmt.Sprint(want) {
			t.Errorf("bob got %s %v, want %v (what he missed, then the live one)", ch, got[ch], want)
		}
	}
	resumed := bob.Next(t, protocol.TypeResumed)
	if rec, _ := resumed["recovered"].(map[string]any); rec["general"] != true || rec["random"] != true {
		t.Errorf("resumed %v, want both recovered", resumed)
	}
}

// A replay that storage fails is not recovered: live messages go on, so
// resuming again could not fill the gap; the client reloads the channel.
func TestResumeWhoseReplayFailsIsNotRecovered(t *testing.T) {
	r, store := newHeldRoom(t, errors.New("storage unavailable"), time.Millisecond)
	alice := r.connect("alice")
	first := send(t, alice, "general", "seen", "g0")
	send(t, alice, "general", "missed", "g1")
	for range 2 { // alice's own copies: the fan-out is over before bob connects
		alice.Next(t, protocol.TypeMessage)
	}
	store.armed.Store(true)
	bob := chattest.New()
	r.s.Start(bob, chat.Peer{User: "bob", Session: "b"})
	bob.Send(fmt.Sprintf(`{"type":"resume","since":{"general":%q}}`, first))
	if e := bob.Next(t, protocol.TypeError); e["code"] != protocol.CodeUnavailable {
		t.Fatalf("error %v, want unavailable", e)
	}
	resumed := bob.Next(t, protocol.TypeResumed)
	if rec, _ := resumed["recovered"].(map[string]any); rec["general"] != false {
		t.Fatalf("resumed %v, want general not recovered", resumed)
	}
	store.armed.Store(false)
	live := send(t, alice, "general", "live", "g2")
	if m := bob.Next(t, protocol.TypeMessage); m["id"] != live {
		t.Fatalf("bob got %v, want the live %s", m["id"], live)
	}
}

// A client that sends no frame (or only pings) still gets live messages
// once the window has passed. The window is long enough for the ping to
// come within it: input pauses the window, and a ping alone must not leave
// it paused.
func TestResumeWindowEndsForASilentClient(t *testing.T) {
	tests := []struct {
		name  string
		input func(ws *chattest.Socket)
	}{
		{"nothing", func(*chattest.Socket) {}},
		{"a ping only", func(ws *chattest.Socket) { ws.SendPing("p") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newHeldRoom(t, nil, 100*time.Millisecond)
			alice := r.connect("alice")
			bob := chattest.New()
			r.s.Start(bob, chat.Peer{User: "bob", Session: "b"})
			bob.Next(t, protocol.TypeHello)
			tt.input(bob)
			id := send(t, alice, "general", "live", "g0")
			if m := bob.Next(t, protocol.TypeMessage); m["id"] != id {
				t.Fatalf("bob got %v, want the live %s", m["id"], id)
			}
		})
	}
}

package chat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/chat/chattest"
	"github.com/hubbub-chat/hubbub/chatserver/metrics"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The chat core end to end within one process: a real Service on the
// memory backend, each client a chattest.Socket. What the server writes is
// what a client would read; no network, no HTTP.

type room struct {
	t  *testing.T
	s  *chat.Service
	b  *memory.Backend
	ws map[string]*chattest.Socket
}

func testOptions() chat.Options {
	return chat.Options{
		Pod: "pod-a", Channels: []string{"general", "random"}, HistoryMax: 100, MaxMessageBytes: 4096,
		MessagesPerSecond: 5, MessageBurst: 10, MaxConnsPerUser: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// newRoom runs a Service with the given users until the test ends.
func newRoom(t *testing.T, opts chat.Options, users ...string) *room {
	t.Helper()
	b := memory.New()
	for _, u := range users {
		if err := b.CreateUser(context.Background(), auth.User{Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return runService(t, b, opts)
}

// secondPod runs another Service on r's store, as a second pod on the same
// Redis would.
func (r *room) secondPod(opts chat.Options) *room {
	opts.Pod = "pod-b"
	return runService(r.t, r.b.Peer(), opts)
}

func runService(t *testing.T, b *memory.Backend, opts chat.Options) *room {
	t.Helper()
	return runServiceOn(t, b, b, opts)
}

// runServiceOn runs a Service on store, which wraps mem.
func runServiceOn(t *testing.T, store chat.Backend, mem *memory.Backend, opts chat.Options) *room {
	t.Helper()
	s := chat.New(store, opts)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &room{t: t, s: s, b: mem, ws: map[string]*chattest.Socket{}}
}

// connect opens a socket for user, as a client that has nothing to resume.
// A new socket holds live messages back until the client's first frame (a
// resume, to replay first), so the client sends one.
func (r *room) connect(user string) *chattest.Socket {
	r.t.Helper()
	return r.connectPeer(chat.Peer{User: user, Session: "session-" + user})
}

// connectPeer is connect for a peer as the caller makes it (a session
// check, say).
func (r *room) connectPeer(p chat.Peer) *chattest.Socket {
	r.t.Helper()
	ws := chattest.New()
	r.s.Start(ws, p)
	ws.Next(r.t, protocol.TypeHello)
	ws.Send(`{"type":"resume","since":{}}`)
	ws.Next(r.t, protocol.TypeResumed)
	return ws
}

// send sends a message frame and returns its ack's id.
func send(t *testing.T, ws *chattest.Socket, channel, text, clientID string) string {
	t.Helper()
	ws.Send(fmt.Sprintf(`{"type":"send","channel":%q,"text":%q,"clientId":%q}`, channel, text, clientID))
	ack := ws.Next(t, protocol.TypeAck)
	if ack["clientId"] != clientID {
		t.Fatalf("ack %v, want clientId %s", ack, clientID)
	}
	return ack["id"].(string)
}

func TestSendIsAckedAndDeliveredToEveryone(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	alice, bob := r.connect("alice"), r.connect("bob")
	id := send(t, alice, "general", "hello all", "c1")
	for name, ws := range map[string]*chattest.Socket{"alice": alice, "bob": bob} {
		m := ws.Next(t, protocol.TypeMessage)
		if m["id"] != id || m["from"] != "alice" || m["text"] != "hello all" || m["channel"] != "general" {
			t.Errorf("%s got %v, want alice's message %s", name, m, id)
		}
	}
	// A retried send (same clientId) is acked with the first id.
	if again := send(t, alice, "general", "hello all", "c1"); again != id {
		t.Errorf("retried send acked %s, want %s", again, id)
	}
}

// Bad frames get an error object naming what is wrong; the socket stays
// open and the next frame works.
func TestBadFramesGetErrors(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		code  string
	}{
		{"not JSON", `nonsense`, protocol.CodeBadRequest},
		{"unknown type", `{"type":"shout"}`, protocol.CodeBadRequest},
		{"text too long", `{"type":"send","channel":"general","text":"` + strings.Repeat("x", 4097) + `","clientId":"c"}`, protocol.CodeTooLarge},
		{"no such channel", `{"type":"send","channel":"nowhere","text":"hi","clientId":"c"}`, protocol.CodeUnknownChannel},
		{"someone else's DM", `{"type":"send","channel":"dm:bob:carol","text":"hi","clientId":"c"}`, protocol.CodeForbidden},
		{"a DM to nobody", `{"type":"send","to":"nobody","text":"hi","clientId":"c"}`, protocol.CodeUnknownChannel},
		{"a DM to oneself", `{"type":"send","to":"alice","text":"hi","clientId":"c"}`, protocol.CodeUnknownChannel},
		{"typing in no channel", `{"type":"typing","channel":"nowhere"}`, protocol.CodeUnknownChannel},
		{"read marker past the end", `{"type":"read","channel":"general","id":"99999999999999-0"}`, protocol.CodeBadRequest},
		{"resume of a made-up DM", `{"type":"resume","since":{"dm:alice:zed":""}}`, protocol.CodeUnknownChannel},
	}
	opts := testOptions()
	opts.MessageBurst = 100
	r := newRoom(t, opts, "alice", "bob", "carol")
	alice := r.connect("alice")
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice.Send(tt.frame)
			e := alice.Next(t, protocol.TypeError)
			if e["code"] != tt.code || e["message"] == "" {
				t.Fatalf("error %v, want code %s and a message", e, tt.code)
			}
			send(t, alice, "general", "still here", fmt.Sprint("ok-", i))
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		alice.SendBinary([]byte{1, 2, 3})
		if e := alice.Next(t, protocol.TypeError); e["code"] != protocol.CodeBadRequest {
			t.Fatalf("error %v, want bad_request", e)
		}
	})
}

func TestSendRateLimit(t *testing.T) {
	opts := testOptions()
	opts.MessagesPerSecond, opts.MessageBurst = 0.001, 3
	r := newRoom(t, opts, "alice")
	alice := r.connect("alice")
	for i := range 3 {
		send(t, alice, "general", "burst", fmt.Sprint("b", i))
	}
	alice.Send(`{"type":"send","channel":"general","text":"one too many","clientId":"over"}`)
	e := alice.Next(t, protocol.TypeError)
	if e["code"] != protocol.CodeRateLimited || e["clientId"] != "over" {
		t.Fatalf("error %v, want rate_limited for clientId over", e)
	}
}

// A socket that goes on sending past its frame budget is closed with 1008.
func TestFloodingCloses(t *testing.T) {
	r := newRoom(t, testOptions(), "alice")
	alice := r.connect("alice")
	for range 300 {
		alice.Send(`{"type":"typing","channel":"general"}`)
	}
	if code := alice.CloseCode(t); code != protocol.ClosePolicy {
		t.Fatalf("close %d, want %d", code, protocol.ClosePolicy)
	}
}

func TestDirectMessage(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob", "carol")
	alice, bob, carol := r.connect("alice"), r.connect("bob"), r.connect("carol")
	alice.Send(`{"type":"send","to":"Bob","text":"psst","clientId":"d1"}`)
	id := alice.Next(t, protocol.TypeAck)["id"]
	for name, ws := range map[string]*chattest.Socket{"alice": alice, "bob": bob} {
		m := ws.Next(t, protocol.TypeMessage)
		if m["channel"] != "dm:alice:bob" || m["id"] != id {
			t.Errorf("%s got %v, want the DM %v", name, m, id)
		}
	}
	if n := bob.Next(t, protocol.TypeNotification); n["kind"] != "dm" || n["from"] != "alice" {
		t.Errorf("bob's notification %v, want a dm from alice", n)
	}
	// carol is not in it: her next message is the one in general.
	send(t, alice, "general", "public", "p1")
	if m := carol.Next(t, protocol.TypeMessage); m["channel"] != "general" {
		t.Errorf("carol got %v: someone else's DM", m)
	}
}

func TestMentionNotifies(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	alice, bob := r.connect("alice"), r.connect("bob")
	send(t, alice, "general", "hey @Bob, look", "m1")
	n := bob.Next(t, protocol.TypeNotification)
	if n["kind"] != "mention" || n["channel"] != "general" || n["from"] != "alice" {
		t.Fatalf("notification %v, want alice's mention in general", n)
	}
}

// A reconnecting client's resume replays what it missed, in order, then
// says which channels it holds whole.
func TestResumeReplaysWhatWasMissed(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	alice := r.connect("alice")
	var ids []string
	for i := range 4 {
		ids = append(ids, send(t, alice, "general", fmt.Sprint("m", i), fmt.Sprint("c", i)))
	}
	ws := chattest.New()
	r.s.Start(ws, chat.Peer{User: "bob", Session: "b"})
	ws.Send(fmt.Sprintf(`{"type":"resume","since":{"general":%q}}`, ids[1]))
	ws.Next(t, protocol.TypeHello)
	for _, want := range ids[2:] {
		if m := ws.Next(t, protocol.TypeMessage); m["id"] != want {
			t.Fatalf("replayed %v, want %s", m["id"], want)
		}
	}
	resumed := ws.Next(t, protocol.TypeResumed)
	if rec, _ := resumed["recovered"].(map[string]any); rec["general"] != true {
		t.Fatalf("resumed %v, want general recovered", resumed)
	}
	// Live messages follow, not repeats.
	next := send(t, alice, "general", "live", "live")
	if m := ws.Next(t, protocol.TypeMessage); m["id"] != next {
		t.Fatalf("after the replay got %v, want the live %s", m["id"], next)
	}
}

func TestReadMarkerReachesTheOtherDevices(t *testing.T) {
	r := newRoom(t, testOptions(), "alice")
	phone, laptop := r.connect("alice"), r.connect("alice")
	id := send(t, phone, "general", "note to self", "n1")
	phone.Send(fmt.Sprintf(`{"type":"read","channel":"general","id":%q}`, id))
	if m := laptop.Next(t, protocol.TypeRead); m["channel"] != "general" || m["id"] != id {
		t.Fatalf("laptop got %v, want the read marker %s", m, id)
	}
}

func TestTypingReachesOthersOnly(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	alice, bob := r.connect("alice"), r.connect("bob")
	alice.Send(`{"type":"typing","channel":"general"}`)
	if m := bob.Next(t, protocol.TypeTyping); m["user"] != "alice" || m["channel"] != "general" {
		t.Fatalf("bob got %v", m)
	}
	for _, o := range alice.Objects(t) {
		if o["type"] == protocol.TypeTyping {
			t.Fatalf("alice was told she is typing: %v", o)
		}
	}
}

// TestFollowedChannelsCounted: /metrics counts the DM channels a server
// follows, once each however many of its sockets are in them.
func TestFollowedChannelsCounted(t *testing.T) {
	opts := testOptions()
	opts.Metrics = metrics.New()
	r := newRoom(t, opts, "alice", "bob", "carol")
	alice, bob, carol := r.connect("alice"), r.connect("bob"), r.connect("carol")
	r.connect("bob") // a second device
	for i, to := range []*chattest.Socket{bob, carol} {
		name := []string{"bob", "carol"}[i]
		alice.Send(fmt.Sprintf(`{"type":"send","to":%q,"text":"hi","clientId":"f%d"}`, name, i))
		id := alice.Next(t, protocol.TypeAck)["id"]
		if m := to.Next(t, protocol.TypeMessage); m["id"] != id {
			t.Fatalf("%s got %v, want the DM %v", name, m, id)
		}
		if got := testutil.ToFloat64(opts.Metrics.Followed); got != float64(i+1) {
			t.Errorf("after the DM to %s: hubbub_followed_channels %v, want %d", name, got, i+1)
		}
	}
}

// TestHelloSizeWhateverIsOnline: hello names nobody online (issue #18:
// at most 4 KB however many people are), so a reconnect storm does not
// read and send everyone's name per socket.
func TestHelloSizeWhateverIsOnline(t *testing.T) {
	r := newRoom(t, testOptions(), "alice")
	for i := range 2000 {
		if err := r.b.Join(context.Background(), "pod-x", fmt.Sprintf("someone%04d", i), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	alice := r.connect("alice")
	b, _, _ := bytes.Cut(alice.Texts()[0], []byte("\n")) // hello is the first object
	var hello map[string]any
	if err := json.Unmarshal(b, &hello); err != nil || hello["type"] != protocol.TypeHello {
		t.Fatalf("first object %.100s (%v), want hello", b, err)
	}
	if len(b) > 4096 {
		t.Errorf("hello is %d bytes with 2,000 people online, over 4 KB", len(b))
	}
	if _, ok := hello["online"]; ok {
		t.Errorf("hello lists people online: %.200s", b)
	}
	t.Logf("hello: %d bytes", len(b))
}

// feedInReach is the memory backend with its feed's handler in the test's
// reach, so the test can say events were missed, as a Redis feed does once
// its lost subscription is back.
type feedInReach struct {
	*memory.Backend
	handler chan chat.Handler
}

func (f *feedInReach) Run(ctx context.Context, h chat.Handler) error {
	f.handler <- h
	return f.Backend.Run(ctx, h)
}

// TestMissedEventsReadFromStorage: told that events were missed, the
// service checks every socket's session and channels within
// MissedEventsCheck, not at its next check an hour away, and reads the
// status of the people watched and the DMs of the people connected: a
// socket whose removal went unheard gets removed, one whose session ended
// unheard is closed, one watching someone who came online unheard is told,
// and one whose new DM went unheard gets its message.
func TestMissedEventsReadFromStorage(t *testing.T) {
	opts := testOptions()
	opts.SessionCheck = time.Hour
	opts.MissedEventsCheck = 50 * time.Millisecond
	mem := memory.New()
	ctx := context.Background()
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		if err := mem.CreateUser(ctx, auth.User{Username: u, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	feed := &feedInReach{Backend: mem, handler: make(chan chat.Handler, 1)}
	r := runServiceOn(t, feed, mem, opts)
	h := <-feed.handler

	live := func(context.Context) error { return nil }
	var carolGone atomic.Bool
	bob := r.connectPeer(chat.Peer{User: "bob", Session: "session-bob", Check: live})
	carol := r.connectPeer(chat.Peer{User: "carol", Session: "session-carol", Check: func(context.Context) error {
		if carolGone.Load() {
			return chat.ErrSessionGone
		}
		return nil
	}})
	if _, err := r.s.CreateChannel(ctx, "alice", "ops", false); err != nil {
		t.Fatal(err)
	}
	if err := r.s.AddMember(ctx, "alice", "ops", "bob", false); err != nil {
		t.Fatal(err)
	}
	bob.Next(t, protocol.TypeChannel)
	alice := r.connect("alice")
	alice.Send(`{"type":"watch","users":["dave"]}`)
	awaitPresence(t, alice, "dave", "offline")
	erin := r.connect("erin")

	// What events would have told, stored without them.
	if removed, err := mem.RemoveMember(ctx, "ops", "bob"); err != nil || !removed {
		t.Fatalf("removing bob in storage: %v, %v", removed, err)
	}
	carolGone.Store(true)
	if err := mem.Join(ctx, "pod-elsewhere", "dave", time.Minute); err != nil {
		t.Fatal(err)
	}
	const dm = "dm:dave:erin" // made on another server, as dave's first DM to erin
	if _, err := mem.AddDM(ctx, dm); err != nil {
		t.Fatal(err)
	}
	first, err := mem.Append(ctx, protocol.Message{Channel: dm, From: "dave", Text: "psst", TS: time.Now().UnixMilli()}, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	h.EventsMissed()

	if got := bob.Next(t, protocol.TypeRemoved); got["channel"] != "ops" {
		t.Errorf("bob got %v, want removed from ops", got)
	}
	if code := carol.CloseCode(t); code != protocol.CloseUnauthorized {
		t.Errorf("carol's socket closed %d, want %d", code, protocol.CloseUnauthorized)
	}
	awaitPresence(t, alice, "dave", "online")
	if got := erin.Next(t, protocol.TypeMessage); got["channel"] != dm || got["id"] != first.ID {
		t.Errorf("erin got %v, want dave's first DM %s", got, first.ID)
	}
}

// TestHelloSaysRoomAdmin: hello marks a room admin (--admins), so a page
// offers them what the server lets them do, and nobody else.
func TestHelloSaysRoomAdmin(t *testing.T) {
	opts := testOptions()
	opts.Admins = []string{"root"}
	r := newRoom(t, opts, "root", "alice")
	for _, tt := range []struct {
		user string
		want bool
	}{
		{"root", true},
		{"alice", false},
	} {
		b, _, _ := bytes.Cut(r.connect(tt.user).Texts()[0], []byte("\n"))
		var hello struct {
			Type  string
			Admin *bool
		}
		if err := json.Unmarshal(b, &hello); err != nil || hello.Type != protocol.TypeHello {
			t.Fatalf("%s's first object %.100s (%v), want hello", tt.user, b, err)
		}
		if got := hello.Admin != nil && *hello.Admin; got != tt.want {
			t.Errorf("%s's hello says admin %t, want %t: %.200s", tt.user, got, tt.want, b)
		}
		if !tt.want && hello.Admin != nil {
			t.Errorf("%s's hello carries admin at all: %.200s", tt.user, b)
		}
	}
}

// TestPresence: a socket hears of the people it watches, from the moment
// it asks, and of nobody else.
func TestPresence(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob", "carol", "dave")
	alice := r.connect("alice")
	dave := r.connect("dave") // watches nobody
	bob := r.connect("bob")
	alice.Send(`{"type":"watch","users":["Bob","carol","bob"]}`)
	awaitPresence(t, alice, "bob", "online")
	awaitPresence(t, alice, "carol", "offline")
	carol := r.connect("carol")
	awaitPresence(t, alice, "carol", "online")
	bob.SendClose(protocol.CloseNormal)
	awaitPresence(t, alice, "bob", "offline")
	carol.SendClose(protocol.CloseNormal)
	awaitPresence(t, alice, "carol", "offline")
	for _, o := range dave.Objects(t) {
		if o["type"] == protocol.TypePresence {
			t.Errorf("dave watches nobody, yet got %v", o)
		}
	}
	alice.Send(`{"type":"watch","users":["not a name"]}`)
	if e := alice.Next(t, protocol.TypeError); e["code"] != protocol.CodeBadRequest {
		t.Errorf("a watch of a bad name: %v, want bad_request", e)
	}
}

// awaitPresence waits until the latest presence object about user says
// status.
func awaitPresence(t *testing.T, s *chattest.Socket, user, status string) {
	t.Helper()
	s.Await(t, user+" "+status, func() bool {
		latest := ""
		for _, o := range s.Objects(t) {
			if o["type"] == protocol.TypePresence && o["user"] == user {
				latest, _ = o["status"].(string)
			}
		}
		return latest == status
	})
}

func TestPingIsAnswered(t *testing.T) {
	r := newRoom(t, testOptions(), "alice")
	alice := r.connect("alice")
	alice.SendPing("are you there")
	alice.Await(t, "a pong", func() bool {
		for _, c := range alice.Controls() {
			if c.Op == 10 && string(c.Payload) == "are you there" {
				return true
			}
		}
		return false
	})
}

func TestClosingCodes(t *testing.T) {
	t.Run("the client's close is echoed and the socket forgotten", func(t *testing.T) {
		r := newRoom(t, testOptions(), "alice")
		alice := r.connect("alice")
		alice.SendClose(protocol.CloseNormal)
		if code := alice.CloseCode(t); code != protocol.CloseNormal {
			t.Fatalf("close %d, want the echo %d", code, protocol.CloseNormal)
		}
		alice.Await(t, "the socket closed", alice.Closed)
	})
	t.Run("too many sockets for one person", func(t *testing.T) {
		r := newRoom(t, testOptions(), "alice")
		for range 3 {
			r.connect("alice")
		}
		ws := chattest.New()
		r.s.Start(ws, chat.Peer{User: "alice"})
		if code := ws.CloseCode(t); code != protocol.CloseTooManyConnections {
			t.Fatalf("close %d, want %d", code, protocol.CloseTooManyConnections)
		}
	})
	t.Run("a revoked session", func(t *testing.T) {
		r := newRoom(t, testOptions(), "alice")
		alice := r.connect("alice")
		if err := r.s.RevokeSessions(context.Background(), "alice", []string{"session-alice"}); err != nil {
			t.Fatal(err)
		}
		if code := alice.CloseCode(t); code != protocol.CloseUnauthorized {
			t.Fatalf("close %d, want %d", code, protocol.CloseUnauthorized)
		}
	})
	t.Run("a session found gone at its check", func(t *testing.T) {
		opts := testOptions()
		opts.SessionCheck = 40 * time.Millisecond
		r := newRoom(t, opts, "alice")
		ws := chattest.New()
		r.s.Start(ws, chat.Peer{User: "alice", Check: func(context.Context) error { return chat.ErrSessionGone }})
		if code := ws.CloseCode(t); code != protocol.CloseUnauthorized {
			t.Fatalf("close %d, want %d", code, protocol.CloseUnauthorized)
		}
	})
}

// Drain tells every client to reconnect, closes with 1012, refuses new
// sockets, and returns once the sockets are gone.
func TestDrain(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	alice, bob := r.connect("alice"), r.connect("bob")
	drained := make(chan struct{})
	go func() {
		r.s.Drain(context.Background(), 10*time.Millisecond)
		close(drained)
	}()
	for _, ws := range []*chattest.Socket{alice, bob} {
		ws.Next(t, protocol.TypeReconnect)
		if code := ws.CloseCode(t); code != protocol.CloseServiceRestart {
			t.Fatalf("close %d, want %d", code, protocol.CloseServiceRestart)
		}
		ws.SendClose(protocol.CloseServiceRestart) // the client answers
	}
	<-drained
	if n := r.s.ConnectionCount(); n != 0 {
		t.Errorf("%d sockets after drain", n)
	}
	late := chattest.New()
	r.s.Start(late, chat.Peer{User: "alice"})
	if code := late.CloseCode(t); code != protocol.CloseServiceRestart {
		t.Fatalf("a socket after drain: close %d, want %d", code, protocol.CloseServiceRestart)
	}
}

// When Run ends, every socket still open is closed, and Run returns only
// after their goroutines have.
func TestRunEndClosesEverySocket(t *testing.T) {
	b := memory.New()
	s := chat.New(b, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	var socks []*chattest.Socket
	for _, u := range []string{"alice", "bob", "carol"} {
		ws := chattest.New()
		s.Start(ws, chat.Peer{User: u})
		ws.Next(t, protocol.TypeHello)
		socks = append(socks, ws)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	for i, ws := range socks {
		if !ws.Closed() {
			t.Errorf("socket %d open after Run returned", i)
		}
	}
	if n := s.ConnectionCount(); n != 0 {
		t.Errorf("%d sockets registered after Run returned", n)
	}
}

// Two servers on one store, as two pods on one Redis: whatever reaches one
// reaches the other's sockets.
func TestAcrossServers(t *testing.T) {
	a := newRoom(t, testOptions(), "alice", "bob", "carol")
	b := a.secondPod(testOptions())
	alice, bob := a.connect("alice"), b.connect("bob")

	t.Run("a channel message", func(t *testing.T) {
		id := send(t, alice, "general", "hello from pod a", "x1")
		if m := bob.Next(t, protocol.TypeMessage); m["id"] != id {
			t.Fatalf("bob on pod b got %v, want %s", m["id"], id)
		}
	})
	t.Run("a first DM: pod b's socket follows the new channel", func(t *testing.T) {
		alice.Send(`{"type":"send","to":"bob","text":"first DM","clientId":"x2"}`)
		id := alice.Next(t, protocol.TypeAck)["id"]
		if m := bob.Next(t, protocol.TypeMessage); m["id"] != id || m["channel"] != "dm:alice:bob" {
			t.Fatalf("bob got %v, want the DM %v", m, id)
		}
		// bob resumes it from what he holds: it is his, though it did not
		// exist when he connected.
		bob.Send(fmt.Sprintf(`{"type":"resume","since":{"dm:alice:bob":%q}}`, id))
		if r := bob.Next(t, protocol.TypeResumed); r["recovered"].(map[string]any)["dm:alice:bob"] != true {
			t.Fatalf("resumed %v", r)
		}
	})
	t.Run("presence", func(t *testing.T) {
		alice.Send(`{"type":"watch","users":["bob","carol"]}`)
		awaitPresence(t, alice, "bob", "online")
		awaitPresence(t, alice, "carol", "offline")
		b.connect("carol")
		awaitPresence(t, alice, "carol", "online")
	})
	t.Run("logout everywhere", func(t *testing.T) {
		if err := a.s.RevokeSessions(context.Background(), "bob", nil); err != nil {
			t.Fatal(err)
		}
		if code := bob.CloseCode(t); code != protocol.CloseUnauthorized {
			t.Fatalf("bob's socket on pod b: close %d, want %d", code, protocol.CloseUnauthorized)
		}
	})
}

// Typing is advisory: a socket's typing frames for one channel become at
// most one event a second.
func TestTypingIsThrottled(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	alice, bob := r.connect("alice"), r.connect("bob")
	for range 5 {
		alice.Send(`{"type":"typing","channel":"general"}`)
	}
	// Another channel has its own throttle; its event comes after any the
	// burst made (events reach a server in the order they were published).
	alice.Send(`{"type":"typing","channel":"random"}`)
	bob.Await(t, "typing in random", func() bool {
		for _, o := range bob.Objects(t) {
			if o["type"] == protocol.TypeTyping && o["channel"] == "random" {
				return true
			}
		}
		return false
	})
	n := 0
	for _, o := range bob.Objects(t) {
		if o["type"] == protocol.TypeTyping && o["channel"] == "general" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bob was told %d times that alice is typing in general, want once", n)
	}
}

// A resume past what the channel still keeps is not "recovered": the
// client reloads history instead of trusting a gap.
func TestResumeAfterTrimmedHistory(t *testing.T) {
	opts := testOptions()
	opts.HistoryMax, opts.MessageBurst = 3, 100
	r := newRoom(t, opts, "alice", "bob")
	alice := r.connect("alice")
	first := send(t, alice, "general", "soon trimmed", "t0")
	for i := range 5 {
		send(t, alice, "general", "newer", fmt.Sprint("t", i+1))
	}
	ws := chattest.New()
	r.s.Start(ws, chat.Peer{User: "bob"})
	ws.Send(fmt.Sprintf(`{"type":"resume","since":{"general":%q}}`, first))
	resumed := ws.Next(t, protocol.TypeResumed)
	if rec := resumed["recovered"].(map[string]any); rec["general"] != false {
		t.Fatalf("resumed %v: general should not count as recovered", resumed)
	}
	// What is kept still came, in order.
	var prev string
	for range 3 {
		id := ws.Next(t, protocol.TypeMessage)["id"].(string)
		if prev != "" && protocol.CompareIDs(prev, id) >= 0 {
			t.Fatalf("replayed %s after %s", id, prev)
		}
		prev = id
	}
}

func TestChannelsAndHistory(t *testing.T) {
	opts := testOptions()
	opts.MessageBurst = 100
	r := newRoom(t, opts, "alice", "bob")
	alice := r.connect("alice")
	var ids []string
	for i := range 5 {
		ids = append(ids, send(t, alice, "general", fmt.Sprint("m", i), fmt.Sprint("h", i)))
	}
	ctx := context.Background()
	alice.Send(fmt.Sprintf(`{"type":"read","channel":"general","id":%q}`, ids[1]))
	send(t, alice, "random", "sync point", "sync") // the read marker is stored before this is acked

	chans, err := r.s.Channels(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 2 || chans[0].Name != "general" || chans[0].LastID != ids[4] || chans[0].Unread != 3 {
		t.Fatalf("channels %+v, want general first with last %s and 3 unread", chans, ids[4])
	}

	tests := []struct {
		name, channel, before string
		limit                 int
		want                  []string
		err                   error
	}{
		{"the newest page", "general", "", 2, ids[3:], nil},
		{"the page before", "general", ids[3], 2, ids[1:3], nil},
		{"a limit past the bound is bounded", "general", "", 100000, ids, nil},
		{"someone else's DM", "dm:bob:carol", "", 10, nil, chat.ErrForbidden},
		{"no such channel", "nowhere", "", 10, nil, chat.ErrUnknownChannel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, err := r.s.History(ctx, "alice", tt.channel, tt.before, tt.limit)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			var got []string
			for _, m := range msgs {
				got = append(got, m.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("history %v, want %v (oldest first)", got, tt.want)
			}
		})
	}
}

// MarkAllRead starts a new account with nothing unread.
func TestMarkAllRead(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "newcomer")
	alice := r.connect("alice")
	send(t, alice, "general", "before you came", "b1")
	ctx := context.Background()
	if err := r.s.MarkAllRead(ctx, "newcomer"); err != nil {
		t.Fatal(err)
	}
	chans, err := r.s.Channels(ctx, "newcomer")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chans {
		if c.Unread != 0 {
			t.Errorf("%s: %d unread for a new account", c.Name, c.Unread)
		}
	}
}

// A "joined" that arrives after the person was removed (events are at most
// once and unordered between servers) is undone as soon as storage is
// read again: the socket gets removed, not the channel's messages.
func TestStaleJoinedIsUndone(t *testing.T) {
	r := newRoom(t, testOptions(), "alice", "bob")
	ctx := context.Background()
	bob := r.connect("bob")
	if _, err := r.s.CreateChannel(ctx, "alice", "ops", true); err != nil {
		t.Fatal(err)
	}
	if err := r.s.AddMember(ctx, "alice", "ops", "bob", false); err != nil {
		t.Fatal(err)
	}
	bob.Next(t, protocol.TypeChannel)
	if err := r.s.RemoveMember(ctx, "alice", "ops", "bob"); err != nil {
		t.Fatal(err)
	}
	bob.Next(t, protocol.TypeRemoved)

	// The add's event again, late, as from another server.
	stale := chat.Event{Kind: chat.EventMember, Channel: "ops", User: "bob", Status: "joined", Private: true, Origin: "pod-elsewhere"}
	if err := r.b.Publish(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if added := bob.Next(t, protocol.TypeChannel); added["name"] != "ops" {
		t.Fatalf("got %v, want the stale channel object", added)
	}
	if removed := bob.Next(t, protocol.TypeRemoved); removed["channel"] != "ops" {
		t.Fatalf("got %v, want removed from ops once storage is read", removed)
	}
	alice := r.connect("alice")
	id := send(t, alice, "ops", "bob is out", "o1")
	alice.Next(t, protocol.TypeMessage)
	// A DM after it: had ops reached bob, it would have come first.
	dm := sendTo(t, alice, "bob", "psst", "d1")
	for {
		// Ids are per channel: the DM may well have the same one.
		m := bob.Next(t, protocol.TypeMessage)
		if m["channel"] == "ops" {
			t.Fatalf("bob got %s of ops (alice sent %s) after the stale join was undone", m["id"], id)
		}
		if m["id"] == dm {
			break
		}
	}
}

func sendTo(t *testing.T, ws *chattest.Socket, to, text, clientID string) string {
	t.Helper()
	ws.Send(fmt.Sprintf(`{"type":"send","to":%q,"text":%q,"clientId":%q}`, to, text, clientID))
	ack := ws.Next(t, protocol.TypeAck)
	return ack["id"].(string)
}

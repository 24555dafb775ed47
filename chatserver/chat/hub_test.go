package chat

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hubbub-chat/hubbub/chatserver/chat/chattest"
)

// follows records what a hub asks of the feed.
type follows struct {
	mu    sync.Mutex
	calls []string
}

func (f *follows) Follow(ch, after string) { f.add("follow " + ch + " " + after) }
func (f *follows) Unfollow(ch string)      { f.add("unfollow " + ch) }
func (f *follows) add(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func newTestHub(limits hubLimits) (*hub, *follows, *atomic.Int64) {
	f := &follows{}
	count := new(atomic.Int64)
	return newHub([]string{"general"}, f, limits, func(d int) { count.Add(int64(d)) }), f, count
}

func testConn(user string) *conn { return &conn{user: user, ws: chattest.New()} }

func TestHubRegister(t *testing.T) {
	type reg struct {
		user      string
		wantErr   error
		wantFirst bool
	}
	tests := []struct {
		name   string
		limits hubLimits
		regs   []reg
		count  int
	}{
		{"first socket of a user, then a second", hubLimits{perUser: 5},
			[]reg{{"alice", nil, true}, {"alice", nil, false}, {"bob", nil, true}}, 3},
		{"per-user bound", hubLimits{perUser: 2},
			[]reg{{"alice", nil, true}, {"alice", nil, false}, {"alice", errTooManyConns, false}, {"bob", nil, true}}, 3},
		{"server bound", hubLimits{perUser: 5, total: 2},
			[]reg{{"alice", nil, true}, {"bob", nil, true}, {"carol", errServerFull, false}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, count := newTestHub(tt.limits)
			for i, r := range tt.regs {
				first, err := h.register(testConn(r.user), nil)
				if !errors.Is(err, r.wantErr) || first != r.wantFirst {
					t.Fatalf("register %d (%s): first %t, err %v; want %t, %v", i, r.user, first, err, r.wantFirst, r.wantErr)
				}
			}
			if h.len() != tt.count || count.Load() != int64(tt.count) {
				t.Errorf("len %d, reported %d; want %d", h.len(), count.Load(), tt.count)
			}
		})
	}
}

func TestHubUnregisterReportsTheLastSocket(t *testing.T) {
	h, _, count := newTestHub(hubLimits{perUser: 5})
	a1, a2 := testConn("alice"), testConn("alice")
	for _, c := range []*conn{a1, a2} {
		if _, err := h.register(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if h.unregister(a1) {
		t.Error("alice's first socket left: reported as her last")
	}
	if !h.unregister(a2) {
		t.Error("alice's last socket left: not reported")
	}
	if h.unregister(a2) {
		t.Error("unregistering twice reported a last socket again")
	}
	if h.len() != 0 || count.Load() != 0 || len(h.localUsers()) != 0 {
		t.Errorf("after both left: len %d, reported %d, users %v", h.len(), count.Load(), h.localUsers())
	}
}

// A DM channel is followed while it has local members: once for the first,
// let go after the last.
func TestHubFollowsDMsWhileTheyHaveMembers(t *testing.T) {
	h, f, _ := newTestHub(hubLimits{perUser: 5})
	const dm = "dm:alice:bob"
	a, b := testConn("alice"), testConn("bob")
	if _, err := h.register(a, map[string]string{dm: "5-0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.register(b, map[string]string{dm: "6-0"}); err != nil {
		t.Fatal(err)
	}
	if !h.follows(a, dm) || !h.follows(b, dm) {
		t.Fatal("members do not follow their DM")
	}
	h.unregister(a)
	h.unregister(b)
	want := []string{"follow " + dm + " 5-0", "unfollow " + dm}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("feed calls %q, want %q", f.calls, want)
	}
}

func TestHubJoinDM(t *testing.T) {
	h, f, _ := newTestHub(hubLimits{perUser: 5})
	const dm = "dm:alice:bob"
	a, b, c := testConn("alice"), testConn("bob"), testConn("carol")
	for _, x := range []*conn{a, b, c} {
		if _, err := h.register(x, nil); err != nil {
			t.Fatal(err)
		}
	}
	h.joinDM(dm, "alice", "bob")
	var got []string
	h.fanout(inChannel(dm), func(x *conn) { got = append(got, x.user) })
	slices.Sort(got)
	if !slices.Equal(got, []string{"alice", "bob"}) || h.follows(c, dm) {
		t.Fatalf("DM members %v (carol follows: %t)", got, h.follows(c, dm))
	}
	if !slices.Equal(f.calls, []string{"follow " + dm + " "}) {
		t.Fatalf("feed calls %q: a new DM is followed once, from its start", f.calls)
	}
}

func TestHubFanout(t *testing.T) {
	h, _, _ := newTestHub(hubLimits{perUser: 5})
	const dm = "dm:alice:bob"
	for _, u := range []string{"alice", "alice", "bob", "carol"} {
		if _, err := h.register(testConn(u), nil); err != nil {
			t.Fatal(err)
		}
	}
	h.joinDM(dm, "alice", "bob")
	tests := []struct {
		name string
		to   audience
		want []string
	}{
		{"everyone", everyone(), []string{"alice", "alice", "bob", "carol"}},
		{"a public channel is everyone", inChannel("general"), []string{"alice", "alice", "bob", "carol"}},
		{"a DM reaches its members' sockets", inChannel(dm), []string{"alice", "alice", "bob"}},
		{"a DM nobody here follows reaches no one", inChannel("dm:dave:erin"), nil},
		{"a user's sockets", ofUser("alice"), []string{"alice", "alice"}},
		{"a user with none here", ofUser("dave"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			h.fanout(tt.to, func(c *conn) { got = append(got, c.user) })
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("reached %v, want %v", got, tt.want)
			}
		})
	}
	if got := h.localUsers(); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Errorf("local users %v", got)
	}
}

func TestHubDrainRefusesNewSockets(t *testing.T) {
	h, _, _ := newTestHub(hubLimits{perUser: 5})
	if !h.start() {
		t.Fatal("a fresh hub refused a socket")
	}
	a := testConn("alice")
	if _, err := h.register(a, nil); err != nil {
		t.Fatal(err)
	}
	if all := h.drain(); len(all) != 1 || all[0] != a {
		t.Fatalf("drain returned %v, want alice's socket", all)
	}
	if h.start() {
		t.Error("a socket started after drain")
	}
	if _, err := h.register(testConn("bob"), nil); !errors.Is(err, errDraining) {
		t.Errorf("register after drain: %v, want errDraining", err)
	}
	waited := h.wait()
	select {
	case <-waited:
		t.Fatal("wait returned while a socket's goroutines run")
	default:
	}
	h.unregister(a)
	h.done()
	<-waited
}

// stop closes every registered socket and returns only once the sockets'
// goroutines have.
func TestHubStopClosesAndWaits(t *testing.T) {
	h, _, _ := newTestHub(hubLimits{perUser: 5})
	var socks []*chattest.Socket
	for _, u := range []string{"alice", "bob"} {
		c := testConn(u)
		socks = append(socks, c.ws.(*chattest.Socket))
		if !h.start() {
			t.Fatal("refused")
		}
		if _, err := h.register(c, nil); err != nil {
			t.Fatal(err)
		}
		// The socket's goroutine: it ends when its socket is closed.
		go func() {
			defer h.done()
			_ = c.ws.WaitReadable()
			h.unregister(c)
		}()
	}
	h.stop()
	for i, s := range socks {
		if !s.Closed() {
			t.Errorf("socket %d left open", i)
		}
	}
	if h.len() != 0 {
		t.Errorf("%d sockets registered after stop", h.len())
	}
}

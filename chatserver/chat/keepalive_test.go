package chat

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/chat/chattest"
)

// TestKeepaliveCollect: one tick finds the sockets due a ping or a session
// check, and those whose write has been stuck past the write timeout.
func TestKeepaliveCollect(t *testing.T) {
	s := New(nil, Options{PongWait: 10 * time.Second, WriteTimeout: time.Second, SessionCheck: time.Minute, MaxConnsPerUser: 5})
	now := time.Now()
	later, earlier := now.Add(time.Hour), now.Add(-time.Second)
	checker := func(context.Context) error { return nil }
	add := func(user string, nextPing, nextCheck time.Time, check func(context.Context) error) *conn {
		c := &conn{s: s, user: user, ws: chattest.New(), nextPing: nextPing, nextCheck: nextCheck, check: check}
		if _, err := s.hub.register(c, nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	idle := add("idle", later, later, checker)
	pingDue := add("ping", earlier, later, checker)
	checkDue := add("check", later, earlier, checker)
	noCheck := add("nocheck", later, earlier, nil)
	stuck := add("stuck", later, later, nil)
	release := stuck.ws.(*chattest.Socket).Block()
	defer release()
	go func() { _ = stuck.ws.WriteText([][]byte{[]byte("x")}) }()
	stuck.ws.(*chattest.Socket).Await(t, "the write to block", func() bool { return !stuck.ws.WriteBlockedSince().IsZero() })

	var due keepaliveDue
	due.collect(s, now.Add(2*time.Second)) // the stuck write is 2 s old
	users := func(cs []*conn) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.user)
		}
		slices.Sort(out)
		return out
	}
	if got := users(due.pings); !slices.Equal(got, []string{"ping"}) {
		t.Errorf("pings %v, want [ping]", got)
	}
	if got := users(due.checks); !slices.Equal(got, []string{"check"}) {
		t.Errorf("checks %v, want [check] (nocheck has no session to check)", got)
	}
	if got := users(due.stuck); !slices.Equal(got, []string{"stuck"}) {
		t.Errorf("stuck %v, want [stuck]", got)
	}
	if want := now.Add(2 * time.Second).Add(s.pingPeriod()); !pingDue.nextPing.Equal(want) {
		t.Errorf("next ping at %v, want %v", pingDue.nextPing, want)
	}
	if !idle.nextPing.Equal(later) || !checkDue.nextPing.Equal(later) || !noCheck.nextPing.Equal(later) {
		t.Error("a socket not due a ping had its next ping moved")
	}
	due.clear()
	if len(due.pings)+len(due.checks)+len(due.stuck) != 0 {
		t.Error("clear left work for the next tick")
	}
}

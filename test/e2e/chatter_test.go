package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSplitFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Frame
		wantErr bool
	}{
		{"one object", `{"type":"ack","clientId":"c1","id":"1-1"}`, []Frame{{Type: "ack", ClientID: "c1", ID: "1-1"}}, false},
		{"coalesced", "{\"type\":\"ack\",\"clientId\":\"c1\",\"id\":\"1-1\"}\n{\"type\":\"message\",\"id\":\"1-1\",\"channel\":\"general\",\"from\":\"a\",\"text\":\"hi\\nthere\"}\n",
			[]Frame{{Type: "ack", ClientID: "c1", ID: "1-1"}, {Type: "message", ID: "1-1", Channel: "general", From: "a", Text: "hi\nthere"}}, false},
		{"blank lines", "\n{\"type\":\"hello\",\"user\":\"a\"}\n\n", []Frame{{Type: "hello", User: "a"}}, false},
		{"not JSON", "{\"type\":\"hello\"}\nnope", []Frame{{Type: "hello"}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SplitFrame([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %t", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMessageID(t *testing.T) {
	tests := []struct {
		a, b     string
		wantLess bool
	}{
		{"1-1", "1-2", true},
		{"1-9", "1-10", true}, // numeric, not string order
		{"2-0", "10-0", true},
		{"5-5", "5-5", false},
		{"6-0", "5-99", false},
	}
	for _, tc := range tests {
		a, err := ParseMessageID(tc.a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseMessageID(tc.b)
		if err != nil {
			t.Fatal(err)
		}
		if got := a.Less(b); got != tc.wantLess {
			t.Errorf("%s < %s = %t, want %t", tc.a, tc.b, got, tc.wantLess)
		}
	}
	for _, bad := range []string{"", "1", "1-", "-1", "a-1", "1-2-3"} {
		if _, err := ParseMessageID(bad); err == nil {
			t.Errorf("ParseMessageID(%q) succeeded", bad)
		}
	}
}

// TestConverse runs the client against a fake server with each fault the
// client must survive, and each fault it must report.
func TestConverse(t *testing.T) {
	const perUser = 12
	tests := []struct {
		name       string
		fault      func(*fakeServer)
		expectDrop bool
		wantErr    string // empty: the conversation must pass
		check      func(t *testing.T, reports []Report)
	}{
		{name: "steady", check: func(t *testing.T, rs []Report) {
			for _, r := range rs {
				if r.Reconnects != 0 || r.Retries != 0 {
					t.Errorf("%s: %d reconnects, %d retries on a steady server", r.User, r.Reconnects, r.Retries)
				}
			}
		}},
		{name: "refused sends are retried", fault: func(s *fakeServer) { s.refuseEvery = 4 }, check: func(t *testing.T, rs []Report) {
			if rs[0].Retries+rs[1].Retries == 0 {
				t.Error("no retries although every 4th send was refused")
			}
		}},
		{name: "server drains mid-conversation", expectDrop: true, fault: func(s *fakeServer) { s.drainAt = perUser + 2 }, check: func(t *testing.T, rs []Report) {
			for _, r := range rs {
				if r.Reconnects == 0 {
					t.Errorf("%s never reconnected", r.User)
				}
			}
		}},
		{name: "ack lost with the socket", fault: func(s *fakeServer) { s.loseAckAt = 5 }, check: func(t *testing.T, rs []Report) {
			if rs[0].Reconnects+rs[1].Reconnects == 0 {
				t.Error("no reconnect although a socket was closed")
			}
		}},
		{name: "replays are dropped", fault: func(s *fakeServer) { s.duplicateAll = true }, check: func(t *testing.T, rs []Report) {
			for _, r := range rs {
				if r.Replayed == 0 {
					t.Errorf("%s dropped no duplicates although every message came twice", r.User)
				}
			}
		}},
		{name: "a lost message is caught", fault: func(s *fakeServer) { s.loseMessage = 7 }, wantErr: "acked messages never arrived: [1700000000000-7]"},
		{name: "reordering is caught", fault: func(s *fakeServer) { s.swapAt = 3 }, wantErr: "out of order"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer(t, tc.fault)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			alice, err := Signup(ctx, s.api(), "alice", "password-a")
			if err != nil {
				t.Fatal(err)
			}
			bob, err := Signup(ctx, s.api(), "bob", "password-b")
			if err != nil {
				t.Fatal(err)
			}
			midway := 0
			opts := Options{
				Channel: "general", Messages: perUser, Interval: 2 * time.Millisecond, AckTimeout: 5 * time.Second, SettleTimeout: time.Second,
				ExpectDisconnect: tc.expectDrop, AfterDrop: 4,
				Midway: func() { midway++ },
				Logf:   t.Logf,
			}
			reports, err := Converse(ctx, opts, alice, bob)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Converse error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if midway != 1 {
				t.Errorf("Midway called %d times, want 1", midway)
			}
			s.mu.Lock()
			stored := len(s.log)
			s.mu.Unlock()
			for _, r := range reports {
				if r.Acked < perUser {
					t.Errorf("%s: %d acked, want at least %d", r.User, r.Acked, perUser)
				}
				// Every stored message reached everyone; double commits
				// (a retried send stored twice) are stored and acked too.
				if r.Received != stored {
					t.Errorf("%s received %d messages, the server stored %d", r.User, r.Received, stored)
				}
			}
			if tc.check != nil {
				tc.check(t, reports)
			}
		})
	}
}

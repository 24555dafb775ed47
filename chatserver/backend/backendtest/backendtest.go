// Package backendtest is the behaviour suite every chat storage backend must
// pass: each clause of the contracts in chatserver/chat/backend.go (Log,
// Feed, Presence, State, Users, Channels, and a Snapshotter's Snapshot) and chatserver/auth/store.go
// (Store) is a subtest here.
//
// A backend's test calls Run with a NewStore:
//
//	backendtest.Run(t, func(t *testing.T) func() backendtest.Backend {
//		store := ... // one empty storage, cleaned up with t.Cleanup
//		return func() backendtest.Backend { return ... /* a server on store */ }
//	})
//
// Each call of the returned function must give another server of the same
// room: it shares messages, presence, state, users, channels and sessions
// with the others, and has its own Feed (its own Run, Follow set and
// Handler), which receives the messages and events the others commit and
// publish.
package backendtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Backend is what the suite tests: chat storage and fan-out, and accounts.
type Backend interface {
	chat.Backend
	auth.Store
}

// NewStore makes one empty storage for a subtest (cleaned up by t.Cleanup)
// and returns a function that makes servers on it (see the package doc).
type NewStore func(t *testing.T) (newBackend func() Backend)

// Timeouts of the suite. Waits end as soon as their condition holds; these
// only bound a failing test.
const (
	waitTimeout = 10 * time.Second
	pollEvery   = 10 * time.Millisecond
)

// Run runs every subtest against the backend newStore makes. Subtests run in
// parallel, each on its own storage.
func Run(t *testing.T, newStore NewStore) {
	groups := []struct {
		name  string
		tests []test
	}{
		{"Log", logTests},
		{"Change", changeTests},
		{"Thread", threadTests},
		{"Feed", feedTests},
		{"Presence", presenceTests},
		{"State", stateTests},
		{"Auth", authTests},
		{"Channels", channelTests},
		{"Snapshot", snapshotTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, newStore(t))
				})
			}
		})
	}
}

type test struct {
	name string
	run  func(t *testing.T, newBackend func() Backend)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the wait times out. For conditions
// that only time can make true (a TTL running out), nothing to wait on exists.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(pollEvery)
	}
}

// waitOut lets a TTL run out: it returns once d has passed since start.
func waitOut(start time.Time, d time.Duration) {
	time.Sleep(time.Until(start.Add(d)))
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// walk pages through a list by name from the start: page reads the page
// after a name, key names an item. It fails t if paging goes past most
// items (it would never end).
func walk[T any](t *testing.T, most int, page func(after string) ([]T, error), key func(T) string) []T {
	t.Helper()
	var walked []T
	for after := ""; ; {
		p := must[[]T](t)(page(after))
		if len(p) == 0 {
			return walked
		}
		walked = append(walked, p...)
		after = key(p[len(p)-1])
		if len(walked) > most {
			t.Fatalf("paging did not end: %+v", walked)
		}
	}
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func appendN(t *testing.T, ctx context.Context, b Backend, channel string, n int) []protocol.Message {
	t.Helper()
	out := make([]protocol.Message, 0, n)
	for i := range n {
		m, err := b.Append(ctx, protocol.Message{Channel: channel, From: "alice", Text: fmt.Sprintf("%s #%d", channel, i)}, "", 0)
		check(t, err)
		out = append(out, m)
	}
	return out
}

func ids(ms []protocol.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// recorder is a chat.Handler that keeps what it is given and notes contract
// violations: concurrent or non-increasing Messages calls for a channel.
type recorder struct {
	mu         sync.Mutex
	msgs       map[string][]protocol.Message
	events     []chat.Event
	missed     int // EventsMissed calls
	inCall     map[string]bool
	violations []string
	changed    chan struct{} // closed and replaced on every change
}

func newRecorder() *recorder {
	return &recorder{msgs: map[string][]protocol.Message{}, inCall: map[string]bool{}, changed: make(chan struct{})}
}

func (r *recorder) Messages(channel string, msgs []protocol.Message) {
	r.mu.Lock()
	if r.inCall[channel] {
		r.violations = append(r.violations, "concurrent Messages calls for "+channel)
	}
	r.inCall[channel] = true
	r.mu.Unlock()
	// Widen the window in which a concurrent call would be seen.
	time.Sleep(100 * time.Microsecond)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inCall[channel] = false
	if len(msgs) == 0 {
		r.violations = append(r.violations, "empty Messages call for "+channel)
	}
	prev := ""
	if have := r.msgs[channel]; len(have) > 0 {
		prev = have[len(have)-1].ID
	}
	for _, m := range msgs {
		if m.Channel != channel {
			r.violations = append(r.violations, fmt.Sprintf("message %s of channel %q delivered as %q", m.ID, m.Channel, channel))
		}
		if prev != "" && protocol.CompareIDs(m.ID, prev) <= 0 {
			r.violations = append(r.violations, fmt.Sprintf("%s: id %s delivered after %s", channel, m.ID, prev))
		}
		prev = m.ID
	}
	r.msgs[channel] = append(r.msgs[channel], msgs...)
	r.notifyLocked()
}

func (r *recorder) Event(e chat.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	r.notifyLocked()
}

func (r *recorder) EventsMissed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.missed++
	r.notifyLocked()
}

func (r *recorder) missedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.missed
}

func (r *recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) messages(channel string) []protocol.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs[channel])
}

func (r *recorder) eventList() []chat.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// wait blocks until cond (called with r.mu held) holds.
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		ch := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
	}
}

// waitMessages waits until channel has at least n messages and returns them.
func (r *recorder) waitMessages(t *testing.T, channel string, n int) []protocol.Message {
	t.Helper()
	r.wait(t, fmt.Sprintf("%d messages in %s", n, channel), func() bool { return len(r.msgs[channel]) >= n })
	return r.messages(channel)
}

// waitID waits until channel has delivered id.
func (r *recorder) waitID(t *testing.T, channel, id string) {
	t.Helper()
	r.wait(t, fmt.Sprintf("message %s in %s", id, channel), func() bool {
		return slices.ContainsFunc(r.msgs[channel], func(m protocol.Message) bool { return m.ID == id })
	})
}

func (r *recorder) checkViolations(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error(v)
	}
}

// runFeed runs b's feed into a new recorder until the test ends, and checks
// that Run returned nil and that the recorder saw no contract violation.
func runFeed(t *testing.T, b Backend) *recorder {
	t.Helper()
	r := newRecorder()
	startFeed(t, b, r)
	return r
}

func startFeed(t *testing.T, b Backend, r *recorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v after its context ended, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return within %s of its context ending", waitTimeout)
		}
		r.checkViolations(t)
	})
}

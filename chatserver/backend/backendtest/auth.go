package backendtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

var authTests = []test{
	{"CreateAndGetUser", testCreateGetUser},
	{"CreateUserRaceOneWins", testCreateUserRace},
	{"SessionCreateTouchList", testSessionTouch},
	{"SessionTouchSlidesExpiry", testSessionSlides},
	{"SessionExpires", testSessionExpires},
	{"DeleteSession", testDeleteSession},
	{"DeleteSessions", testDeleteSessions},
	{"ThrottleFixedWindow", testThrottle},
	{"ThrottleCountIsAtomic", testThrottleAtomic},
	{"ThrottleForgive", testThrottleForgive},
	{"ThrottleWindowEnds", testThrottleWindowEnds},
}

func createUser(t *testing.T, ctx context.Context, b Backend, name string) auth.User {
	t.Helper()
	u := auth.User{Username: name, PasswordHash: []byte("$2a$04$hash-of-" + name), CreatedAt: time.Unix(1700000000, 0)}
	check(t, b.CreateUser(ctx, u))
	return u
}

func newSession(user string, n int) (token string, s auth.Session) {
	token = fmt.Sprintf("token-%s-%d", user, n)
	sum := sha256.Sum256([]byte(token))
	h := hex.EncodeToString(sum[:])
	now := time.Unix(1700000000, int64(n)*1e6)
	return token, auth.Session{ID: h[:16], TokenHash: h, Username: user, CreatedAt: now, LastSeenAt: now, UserAgent: "test/" + fmt.Sprint(n), IP: "127.0.0.1"}
}

var ignoreLastSeen = cmpopts.IgnoreFields(auth.Session{}, "LastSeenAt")

var sortSessions = cmpopts.SortSlices(func(a, b auth.Session) bool { return a.ID < b.ID })

func testCreateGetUser(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	u := auth.User{Username: "alice", PasswordHash: []byte{0, 1, '\n', 0xff, '$'}, CreatedAt: time.Unix(1700000000, 123456789)}
	check(t, b.CreateUser(ctx, u))
	got := must[auth.User](t)(peer.GetUser(ctx, "alice"))
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("GetUser on another server (-want +got):\n%s", diff)
	}
	if _, err := b.GetUser(ctx, "nobody"); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("GetUser(nobody) error = %v, want ErrNotFound", err)
	}
	if err := peer.CreateUser(ctx, auth.User{Username: "alice", PasswordHash: []byte("other")}); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("CreateUser of a taken name = %v, want ErrUserExists", err)
	}
	if got := must[auth.User](t)(b.GetUser(ctx, "alice")); string(got.PasswordHash) != string(u.PasswordHash) {
		t.Error("a failed CreateUser changed the existing account")
	}
}

func testCreateUserRace(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	servers := []Backend{newBackend(), newBackend()}
	var (
		mu          sync.Mutex
		won, exists int
		wg          sync.WaitGroup
	)
	for i := range 10 {
		wg.Go(func() {
			err := servers[i%2].CreateUser(ctx, auth.User{Username: "alice", PasswordHash: []byte(fmt.Sprint(i))})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, auth.ErrUserExists):
				exists++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won != 1 || exists != 9 {
		t.Errorf("10 concurrent creates: %d won, %d got ErrUserExists; want 1 and 9", won, exists)
	}
}

func testSessionTouch(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	_, s1 := newSession("alice", 1)
	_, s2 := newSession("alice", 2)
	_, other := newSession("bob", 1)
	for _, s := range []auth.Session{s1, s2, other} {
		check(t, b.CreateSession(ctx, s, time.Minute))
	}
	before := time.Now()
	got := must[auth.Session](t)(peer.TouchSession(ctx, s1.TokenHash, time.Minute))
	if diff := cmp.Diff(s1, got, ignoreLastSeen); diff != "" {
		t.Errorf("TouchSession on another server (-want +got):\n%s", diff)
	}
	if got.LastSeenAt.Before(before.Add(-time.Second)) {
		t.Errorf("TouchSession LastSeenAt = %v, want about now (%v)", got.LastSeenAt, before)
	}
	list := must[[]auth.Session](t)(peer.Sessions(ctx, "alice"))
	if diff := cmp.Diff([]auth.Session{s1, s2}, list, ignoreLastSeen, sortSessions); diff != "" {
		t.Errorf("Sessions(alice) (-want +got):\n%s", diff)
	}
	if _, err := b.TouchSession(ctx, "no-such-hash", time.Minute); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("TouchSession(unknown) error = %v, want ErrNotFound", err)
	}
	if list := must[[]auth.Session](t)(b.Sessions(ctx, "carol")); len(list) != 0 {
		t.Errorf("Sessions of a user without any = %v", list)
	}
}

func testSessionSlides(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	_, s := newSession("alice", 1)
	start := time.Now()
	check(t, b.CreateSession(ctx, s, shortTTL))
	must[auth.Session](t)(b.TouchSession(ctx, s.TokenHash, time.Minute))
	waitOut(start, 2*shortTTL)
	if _, err := b.TouchSession(ctx, s.TokenHash, time.Minute); err != nil {
		t.Errorf("TouchSession after the first TTL passed = %v; a touch must slide the expiry", err)
	}
	if list := must[[]auth.Session](t)(b.Sessions(ctx, "alice")); len(list) != 1 {
		t.Errorf("Sessions = %v, want the touched session", list)
	}
}

func testSessionExpires(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	_, s := newSession("alice", 1)
	_, keep := newSession("alice", 2)
	check(t, b.CreateSession(ctx, s, shortTTL))
	check(t, b.CreateSession(ctx, keep, time.Minute))
	// Listing does not touch: poll it until the short-lived session is gone.
	eventually(t, "the session to expire", func() bool {
		return len(must[[]auth.Session](t)(b.Sessions(ctx, "alice"))) == 1
	})
	if _, err := b.TouchSession(ctx, s.TokenHash, shortTTL); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("TouchSession of an expired session = %v, want ErrNotFound", err)
	}
	if diff := cmp.Diff([]auth.Session{keep}, must[[]auth.Session](t)(b.Sessions(ctx, "alice")), ignoreLastSeen); diff != "" {
		t.Errorf("Sessions after one expired (-want +got):\n%s", diff)
	}
}

func testDeleteSession(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	_, s1 := newSession("alice", 1)
	_, s2 := newSession("alice", 2)
	_, bobs := newSession("bob", 1)
	for _, s := range []auth.Session{s1, s2, bobs} {
		check(t, b.CreateSession(ctx, s, time.Minute))
	}
	got := must[auth.Session](t)(peer.DeleteSession(ctx, "alice", s1.ID))
	if diff := cmp.Diff(s1, got, ignoreLastSeen); diff != "" {
		t.Errorf("DeleteSession returned (-want +got):\n%s", diff)
	}
	if _, err := b.TouchSession(ctx, s1.TokenHash, time.Minute); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("TouchSession of a deleted session = %v, want ErrNotFound", err)
	}
	tests := []struct{ name, user, id string }{
		{"again", "alice", s1.ID},
		{"unknown id", "alice", "0123456789abcdef"},
		{"empty id", "alice", ""},
		{"someone else's", "alice", bobs.ID},
	}
	for _, tc := range tests {
		if _, err := b.DeleteSession(ctx, tc.user, tc.id); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("DeleteSession %s: error = %v, want ErrNotFound", tc.name, err)
		}
	}
	if diff := cmp.Diff([]auth.Session{s2}, must[[]auth.Session](t)(b.Sessions(ctx, "alice")), ignoreLastSeen); diff != "" {
		t.Errorf("Sessions(alice) after deleting one (-want +got):\n%s", diff)
	}
	if _, err := b.TouchSession(ctx, bobs.TokenHash, time.Minute); err != nil {
		t.Errorf("bob's session after alice's deletes: %v", err)
	}
}

func testDeleteSessions(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	var want []auth.Session
	for i := range 3 {
		_, s := newSession("alice", i)
		check(t, b.CreateSession(ctx, s, time.Minute))
		want = append(want, s)
	}
	_, bobs := newSession("bob", 1)
	check(t, b.CreateSession(ctx, bobs, time.Minute))
	got := must[[]auth.Session](t)(peer.DeleteSessions(ctx, "alice"))
	if diff := cmp.Diff(want, got, ignoreLastSeen, sortSessions); diff != "" {
		t.Errorf("DeleteSessions returned (-want +got):\n%s", diff)
	}
	for _, s := range want {
		if _, err := b.TouchSession(ctx, s.TokenHash, time.Minute); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("TouchSession after DeleteSessions = %v, want ErrNotFound", err)
		}
	}
	if list := must[[]auth.Session](t)(b.Sessions(ctx, "alice")); len(list) != 0 {
		t.Errorf("Sessions after DeleteSessions = %v", list)
	}
	if got := must[[]auth.Session](t)(b.DeleteSessions(ctx, "alice")); len(got) != 0 {
		t.Errorf("second DeleteSessions = %v, want none", got)
	}
	if _, err := b.TouchSession(ctx, bobs.TokenHash, time.Minute); err != nil {
		t.Errorf("bob's session after alice's DeleteSessions: %v", err)
	}
}

type throttleCount struct {
	count int
	retry time.Duration
}

// countLogin calls CountLogin, failing the test on an error.
func countLogin(t *testing.T, ctx context.Context, b Backend, key string, window time.Duration) throttleCount {
	t.Helper()
	n, d, err := b.CountLogin(ctx, key, window)
	check(t, err)
	return throttleCount{n, d}
}

func testThrottle(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	const window = time.Minute
	var got []throttleCount
	for _, srv := range []Backend{b, peer, b} {
		got = append(got, countLogin(t, ctx, srv, "user:alice", window))
	}
	for i, r := range got {
		if r.count != i+1 {
			t.Errorf("attempt %d counted as %d", i+1, r.count)
		}
		if r.retry <= 0 || r.retry > window {
			t.Errorf("attempt %d: retryAfter %s, want in (0, %s]", i+1, r.retry, window)
		}
	}
	if got[2].retry > got[0].retry {
		t.Errorf("retryAfter grew from %s to %s: the window must be fixed from the first attempt, not sliding", got[0].retry, got[2].retry)
	}
	if other := countLogin(t, ctx, b, "ip:127.0.0.1", window); other.count != 1 {
		t.Errorf("first attempt of another key counted as %d, want 1", other.count)
	}
	check(t, peer.ResetLogin(ctx, "user:alice"))
	if r := countLogin(t, ctx, b, "user:alice", window); r.count != 1 {
		t.Errorf("first attempt after ResetLogin counted as %d, want 1", r.count)
	}
	if r := countLogin(t, ctx, b, "ip:127.0.0.1", window); r.count != 2 {
		t.Errorf("ResetLogin of one key changed another: counted as %d, want 2", r.count)
	}
}

// Login counts an attempt before it checks the password, so concurrent
// counts on any servers must each see their own number: were two to see the
// same, both could go on to check a password past the limit.
func testThrottleAtomic(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	servers := []Backend{newBackend(), newBackend()}
	const n = 40
	var (
		mu   sync.Mutex
		seen []int
		wg   sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			c, _, err := servers[i%2].CountLogin(ctx, "ip:192.0.2.1", time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, c)
		})
	}
	wg.Wait()
	slices.Sort(seen)
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("counts seen by %d concurrent attempts (-want +got):\n%s", n, diff)
	}
}

func testThrottleForgive(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	const window = time.Minute
	first := countLogin(t, ctx, b, "ip:192.0.2.1", window)
	countLogin(t, ctx, b, "ip:192.0.2.1", window)
	check(t, peer.ForgiveLogin(ctx, "ip:192.0.2.1"))
	r := countLogin(t, ctx, b, "ip:192.0.2.1", window)
	if r.count != 2 {
		t.Errorf("after 2 attempts and 1 forgiven, the next counted as %d, want 2", r.count)
	}
	if r.retry > first.retry {
		t.Errorf("retryAfter grew from %s to %s: ForgiveLogin must not move the window", first.retry, r.retry)
	}

	// Never below zero: forgiving more than was counted forgives nothing extra.
	countLogin(t, ctx, b, "ip:192.0.2.2", window)
	for range 3 {
		check(t, b.ForgiveLogin(ctx, "ip:192.0.2.2"))
	}
	if r := countLogin(t, ctx, b, "ip:192.0.2.2", window); r.count != 1 {
		t.Errorf("after over-forgiving, the next attempt counted as %d, want 1", r.count)
	}

	// A key without a window stays without one.
	check(t, b.ForgiveLogin(ctx, "ip:192.0.2.3"))
	if r := countLogin(t, ctx, b, "ip:192.0.2.3", shortTTL); r.count != 1 || r.retry <= 0 || r.retry > shortTTL {
		t.Errorf("first attempt after forgiving a fresh key = %+v, want count 1 in a new %s window", r, shortTTL)
	}
}

func testThrottleWindowEnds(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	for range 2 {
		countLogin(t, ctx, b, "user:alice", shortTTL)
	}
	// Counting while waiting is harmless: a window is fixed from its first
	// attempt, so it ends on time however often it is counted.
	eventually(t, "the throttle window to end", func() bool {
		return countLogin(t, ctx, b, "user:alice", shortTTL).count == 1
	})
}

package backendtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

func testThrottle(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	const window = time.Minute
	type result struct {
		count int
		retry time.Duration
	}
	call := func(f func() (int, time.Duration, error)) result {
		t.Helper()
		n, d, err := f()
		check(t, err)
		return result{n, d}
	}
	if got := call(func() (int, time.Duration, error) { return b.LoginFailures(ctx, "user:alice") }); got != (result{}) {
		t.Errorf("LoginFailures of a fresh key = %+v, want zero", got)
	}
	r1 := call(func() (int, time.Duration, error) { return b.FailedLogin(ctx, "user:alice", window) })
	r2 := call(func() (int, time.Duration, error) { return peer.FailedLogin(ctx, "user:alice", window) })
	r3 := call(func() (int, time.Duration, error) { return b.FailedLogin(ctx, "user:alice", window) })
	for i, r := range []result{r1, r2, r3} {
		if r.count != i+1 {
			t.Errorf("failure %d counted as %d", i+1, r.count)
		}
		if r.retry <= 0 || r.retry > window {
			t.Errorf("failure %d: retryAfter %s, want in (0, %s]", i+1, r.retry, window)
		}
	}
	if r3.retry > r1.retry {
		t.Errorf("retryAfter grew from %s to %s: the window must be fixed from the first failure, not sliding", r1.retry, r3.retry)
	}
	read := call(func() (int, time.Duration, error) { return peer.LoginFailures(ctx, "user:alice") })
	if read.count != 3 || read.retry <= 0 || read.retry > r3.retry {
		t.Errorf("LoginFailures = %+v, want count 3 and retryAfter in (0, %s]", read, r3.retry)
	}
	if again := call(func() (int, time.Duration, error) { return b.LoginFailures(ctx, "user:alice") }); again.count != 3 {
		t.Errorf("LoginFailures counted: %d, want 3", again.count)
	}
	if other := call(func() (int, time.Duration, error) { return b.LoginFailures(ctx, "ip:127.0.0.1") }); other != (result{}) {
		t.Errorf("another key = %+v, want zero", other)
	}
	check(t, b.ResetLogin(ctx, "user:alice"))
	if got := call(func() (int, time.Duration, error) { return peer.LoginFailures(ctx, "user:alice") }); got != (result{}) {
		t.Errorf("LoginFailures after ResetLogin = %+v, want zero", got)
	}
}

func testThrottleWindowEnds(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	for range 2 {
		if _, _, err := b.FailedLogin(ctx, "user:alice", shortTTL); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the throttle window to end", func() bool {
		n, _, err := b.LoginFailures(ctx, "user:alice")
		check(t, err)
		return n == 0
	})
	n, _, err := b.FailedLogin(ctx, "user:alice", shortTTL)
	check(t, err)
	if n != 1 {
		t.Errorf("first failure of a new window counted as %d, want 1", n)
	}
}

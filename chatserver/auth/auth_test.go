package auth_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
)

func newService(t *testing.T, opts auth.Options) *auth.Service {
	t.Helper()
	return newServiceOn(t, memory.New(), opts)
}

func newServiceOn(t *testing.T, store auth.Store, opts auth.Options) *auth.Service {
	t.Helper()
	if opts.BcryptCost == 0 {
		opts.BcryptCost = 4
	}
	if opts.SessionTTL == 0 {
		opts.SessionTTL = time.Hour
	}
	if opts.MaxFailures == 0 {
		opts.MaxFailures = 5
	}
	s, err := auth.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNormalizeUsername(t *testing.T) {
	tests := map[string]string{"Alice": "alice", " bob_1.x-y ": "bob_1.x-y", "ab": "", "a b c": "", "élodie": "", strings.Repeat("a", 33): ""}
	for in, want := range tests {
		got, err := auth.NormalizeUsername(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("NormalizeUsername(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestLoginAndSessions(t *testing.T) {
	ctx := context.Background()
	s := newService(t, auth.Options{RegistrationOpen: true})
	if _, err := s.Register(ctx, "Alice", "password1"); err != nil {
		t.Fatal(err)
	}
	sess, token, err := s.Login(ctx, auth.LoginRequest{Username: "ALICE", Password: "password1", IP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != 43 { // 32 bytes, base64url without padding
		t.Errorf("token length %d", len(token))
	}
	if sess.TokenHash == token || strings.Contains(sess.TokenHash, token) {
		t.Error("the token itself is stored")
	}
	got, err := s.Authenticate(ctx, token)
	if err != nil || got.ID != sess.ID || got.Username != "alice" {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	if _, err := s.Authenticate(ctx, token+"x"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("tampered token: %v", err)
	}
	if _, err := s.Revoke(ctx, "alice", sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, token); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("revoked token: %v", err)
	}
}

func TestSlidingExpiry(t *testing.T) {
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	s := newService(t, auth.Options{RegistrationOpen: true, SessionTTL: ttl})
	if _, err := s.Register(ctx, "alice", "password1"); err != nil {
		t.Fatal(err)
	}
	_, token, err := s.Login(ctx, auth.LoginRequest{Username: "alice", Password: "password1"})
	if err != nil {
		t.Fatal(err)
	}
	// Activity every half TTL keeps it alive well past one TTL...
	for i := 0; i < 4; i++ {
		time.Sleep(ttl / 2) // waiting out real time is the behaviour under test
		if _, err := s.Authenticate(ctx, token); err != nil {
			t.Fatalf("touch %d after %v: %v", i, time.Duration(i+1)*ttl/2, err)
		}
	}
	// ...and idleness past the TTL ends it.
	time.Sleep(ttl + 50*time.Millisecond)
	if _, err := s.Authenticate(ctx, token); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("idle session still valid: %v", err)
	}
}

// An unknown username must cost a bcrypt comparison like a known one, so
// timing does not reveal which usernames exist. With the only bcrypt slot
// taken, both kinds of login have to wait for it.
func TestUnknownUserStillPaysForBcrypt(t *testing.T) {
	ctx := context.Background()
	s := newService(t, auth.Options{RegistrationOpen: true, BcryptConcurrency: 1})
	if _, err := s.Register(ctx, "alice", "password1"); err != nil {
		t.Fatal(err)
	}
	release := s.HoldBcryptSlotForTest()
	defer release()
	for _, user := range []string{"alice", "nobody", "x"} {
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, _, err := s.Login(cctx, auth.LoginRequest{Username: user, Password: "wrong password"})
		cancel()
		if !errors.Is(err, auth.ErrBusy) {
			t.Errorf("login as %q with bcrypt saturated: %v, want ErrBusy (it skipped bcrypt)", user, err)
		}
	}
}

// A login takes a bcrypt slot only while it has time left for the
// comparison and the writes after it: with less, it is refused as busy,
// even with a slot free, rather than spending a comparison on a request
// about to fail at its deadline. Waiting for a held slot, it gives up as
// soon as it could no longer make it, before its deadline.
func TestLoginWithoutTimeForBcryptIsBusy(t *testing.T) {
	ctx := context.Background()
	s := newService(t, auth.Options{RegistrationOpen: true, BcryptConcurrency: 1})
	if _, err := s.Register(ctx, "alice", "password1"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		timeout  time.Duration
		holdSlot bool
		wantBusy bool
	}{
		{"time enough, slot free", 5 * time.Second, false, false},
		{"less time than a check needs, slot free", 20 * time.Millisecond, false, true},
		{"slot held past the time it could wait", 400 * time.Millisecond, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.holdSlot {
				defer s.HoldBcryptSlotForTest()()
			}
			cctx, cancel := context.WithTimeout(ctx, tt.timeout)
			defer cancel()
			_, _, err := s.Login(cctx, auth.LoginRequest{Username: "alice", Password: "password1", IP: "192.0.2.1"})
			if busy := errors.Is(err, auth.ErrBusy); busy != tt.wantBusy {
				t.Fatalf("login with %s left: %v, want busy %t", tt.timeout, err, tt.wantBusy)
			}
			if tt.holdSlot && cctx.Err() != nil {
				t.Errorf("refused only at the request's deadline (%v): it waited for a slot it could no longer use", cctx.Err())
			}
		})
	}
}

// outcome names how a login ended, for tables.
func outcome(t *testing.T, err error) string {
	t.Helper()
	var th *auth.ThrottledError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, auth.ErrInvalidCredentials):
		return "invalid"
	case errors.As(err, &th):
		if th.RetryAfter < time.Second || th.RetryAfter > time.Minute {
			t.Errorf("throttled with RetryAfter %s, want 1s..1m", th.RetryAfter)
		}
		return "throttled"
	}
	t.Fatalf("login: %v", err)
	return ""
}

func TestThrottle(t *testing.T) {
	const (
		a = "192.0.2.1"
		b = "198.51.100.2"
	)
	type attempt struct {
		user     string
		right    bool // the right password, else a wrong one
		ip, want string
	}
	tests := []struct {
		name             string
		perUserIP, perIP int
		attempts         []attempt
	}{
		{"a flood against a name does not lock its owner out elsewhere", 2, 10, []attempt{
			{"alice", false, a, "invalid"},
			{"alice", false, a, "invalid"},
			{"alice", false, a, "throttled"},
			{"alice", true, a, "throttled"}, // the right password too, from there
			{"alice", true, b, "ok"},
			{"bob", false, a, "invalid"}, // other names from there are not alice's budget
		}},
		{"an address over its budget is refused for every name", 2, 4, []attempt{
			{"alice", false, a, "invalid"},
			{"alice", false, a, "invalid"},
			{"alice", false, a, "throttled"}, // refused, and still counted against the address
			{"bob", false, a, "invalid"},
			{"carol", true, a, "throttled"},
			{"carol", true, b, "ok"},
		}},
		{"a success starts the name's budget at that address over", 2, 10, []attempt{
			{"alice", false, a, "invalid"},
			{"alice", false, a, "invalid"},
			{"alice", true, b, "ok"}, // from elsewhere: resets nothing at a
			{"alice", false, a, "throttled"},
			{"bob", false, a, "invalid"},
			{"bob", true, a, "ok"},
			{"bob", false, a, "invalid"},
			{"bob", false, a, "invalid"},
			{"bob", false, a, "throttled"},
		}},
		{"a success gives the address back only its own attempt", 2, 3, []attempt{
			{"bob", false, a, "invalid"},
			{"carol", false, a, "invalid"},
			{"mallory", true, a, "ok"}, // one's own account buys no guesses at others'
			{"dave", false, a, "invalid"},
			{"erin", false, a, "throttled"},
		}},
		{"successes do not spend the address's budget", 1, 2, []attempt{
			{"alice", true, a, "ok"},
			{"bob", true, a, "ok"},
			{"carol", true, a, "ok"},
			{"alice", true, a, "ok"},
			{"bob", false, a, "invalid"},
		}},
		{"unknown and impossible names spend the address's budget", 2, 2, []attempt{
			{"nobody", false, a, "invalid"},
			{"no", false, a, "invalid"}, // too short to be a username
			{"alice", true, a, "throttled"},
		}},
		{"an IPv6 client counts by its /64", 1, 2, []attempt{
			{"alice", false, "2001:db8::1", "invalid"},
			{"alice", false, "2001:db8::ffff:2", "throttled"},
			{"bob", false, "2001:db8::3", "throttled"},
			{"bob", false, "2001:db8:0:1::3", "invalid"},
		}},
		{"an IPv4-mapped address counts as the IPv4 one", 1, 5, []attempt{
			{"alice", false, "::ffff:" + a, "invalid"},
			{"alice", false, a, "throttled"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := newService(t, auth.Options{RegistrationOpen: true, MaxFailures: tt.perUserIP, MaxFailuresPerIP: tt.perIP})
			for _, u := range []string{"alice", "bob", "carol", "mallory"} {
				if _, err := s.CreateUser(ctx, u, "password-"+u); err != nil {
					t.Fatal(err)
				}
			}
			for i, at := range tt.attempts {
				pw := "wrong password"
				if at.right {
					pw = "password-" + at.user
				}
				_, _, err := s.Login(ctx, auth.LoginRequest{Username: at.user, Password: pw, IP: at.ip})
				if got := outcome(t, err); got != at.want {
					t.Errorf("attempt %d (%s from %s, right password: %t) = %s, want %s", i+1, at.user, at.ip, at.right, got, at.want)
				}
			}
		})
	}
}

// gatedStore holds every GetUser, the step between counting an attempt and
// its bcrypt comparison, until open is closed, and reports each on reached.
type gatedStore struct {
	auth.Store
	reached chan struct{}
	open    chan struct{}
}

func (g *gatedStore) GetUser(ctx context.Context, name string) (auth.User, error) {
	g.reached <- struct{}{}
	<-g.open
	return g.Store.GetUser(ctx, name)
}

// Concurrent wrong guesses cannot outrun the count: with every guess that
// got past the throttle held before its password check, the others must
// already have been refused. Counting after bcrypt would let all of them by.
func TestThrottleCannotBeRaced(t *testing.T) {
	const guesses, limit = 40, 5
	ctx := context.Background()
	g := &gatedStore{Store: memory.New(), reached: make(chan struct{}, guesses), open: make(chan struct{})}
	s := newServiceOn(t, g, auth.Options{RegistrationOpen: true, MaxFailures: limit, MaxFailuresPerIP: 10 * guesses})
	if _, err := s.CreateUser(ctx, "alice", "password1"); err != nil {
		t.Fatal(err)
	}
	results := make(chan error, guesses)
	for range guesses {
		go func() {
			_, _, err := s.Login(ctx, auth.LoginRequest{Username: "alice", Password: "wrong password", IP: "192.0.2.1"})
			results <- err
		}()
	}
	// Every guess either waits at the gate or has returned: none is left
	// that could still be admitted once the gate opens.
	var reached int
	var errs []error
	for reached+len(errs) < guesses {
		select {
		case <-g.reached:
			reached++
		case err := <-results:
			errs = append(errs, err)
		}
	}
	close(g.open)
	for len(errs) < guesses {
		errs = append(errs, <-results)
	}
	got := map[string]int{}
	for _, err := range errs {
		got[outcome(t, err)]++
	}
	if reached > limit {
		t.Errorf("%d of %d concurrent guesses reached the password check, want at most %d", reached, guesses, limit)
	}
	if want := map[string]int{"invalid": limit, "throttled": guesses - limit}; !maps.Equal(got, want) {
		t.Errorf("outcomes %v, want %v", got, want)
	}
}

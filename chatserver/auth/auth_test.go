package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
)

func newService(t *testing.T, opts auth.Options) *auth.Service {
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
	s, err := auth.New(memory.New(), opts)
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

func TestThrottlePerIP(t *testing.T) {
	ctx := context.Background()
	s := newService(t, auth.Options{RegistrationOpen: true, MaxFailures: 2})
	for _, u := range []string{"alice", "bob"} {
		if _, err := s.Register(ctx, u, "password1"); err != nil {
			t.Fatal(err)
		}
	}
	// Two failures from one IP against different users...
	for _, u := range []string{"alice", "bob"} {
		if _, _, err := s.Login(ctx, auth.LoginRequest{Username: u, Password: "nope-nope", IP: "192.0.2.1"}); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatal(err)
		}
	}
	// ...block that IP for everyone, but not other IPs.
	var th *auth.ThrottledError
	if _, _, err := s.Login(ctx, auth.LoginRequest{Username: "carol", Password: "password1", IP: "192.0.2.1"}); !errors.As(err, &th) || th.RetryAfter <= 0 {
		t.Fatalf("same IP: %v", err)
	}
	if _, _, err := s.Login(ctx, auth.LoginRequest{Username: "alice", Password: "password1", IP: "192.0.2.2"}); err != nil {
		t.Fatalf("other IP: %v", err)
	}
}

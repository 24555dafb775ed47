package server_test

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// clientFrom is an HTTP client whose connections leave from the loopback
// address ip (any of 127.0.0.0/8 works on Linux without setup), so the
// server sees a different client per address over real sockets.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// loginVia posts a login through c; hdr are extra header name, value pairs.
func loginVia(t *testing.T, c *http.Client, ts *testServer, user, password string, hdr ...string) apiResult {
	t.Helper()
	return callVia(t, c, "POST", ts.URL+"/api/v1/login", "", map[string]string{"username": user, "password": password}, hdr...)
}

func wantInvalid(t *testing.T, what string, r apiResult) {
	t.Helper()
	if r.Status != 401 || r.errCode() != "invalid_credentials" || r.errMessage() != "invalid username or password" {
		t.Fatalf("%s: got %d %v, want 401 invalid_credentials", what, r.Status, r.Body)
	}
}

func wantThrottled(t *testing.T, what string, r apiResult) {
	t.Helper()
	if r.Status != 429 || r.errCode() != "rate_limited" || r.errMessage() == "" {
		t.Fatalf("%s: got %d %v, want 429 rate_limited", what, r.Status, r.Body)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Fatalf("%s: Retry-After = %q, want 1..60 seconds", what, r.Header.Get("Retry-After"))
	}
}

func wantOK(t *testing.T, what string, r apiResult) {
	t.Helper()
	if r.Status != 200 || r.Body["token"] == nil {
		t.Fatalf("%s: got %d %v, want 200 with a token", what, r.Status, r.Body)
	}
}

// Login throttling counts by (username, client address) and by address.
// Over real sockets from two loopback addresses: a flood against alice from
// one address is cut off there, alice still logs in from the other, and the
// flooding address, its own budget spent, is refused for bob as well.
func testLoginThrottling(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.LoginAttemptsPerMinute, cfg.LoginAttemptsPerIPPerMinute = 3, 5
	ts := startServer(t, cfg, server.Options{})
	login(t, ts, "alice")
	login(t, ts, "bob")
	attacker, owner := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")

	for i := range 3 {
		wantInvalid(t, "wrong guess "+strconv.Itoa(i+1)+" at alice", loginVia(t, attacker, ts, "alice", "wrong password"))
	}
	wantThrottled(t, "4th guess at alice from there", loginVia(t, attacker, ts, "alice", "wrong password"))
	wantOK(t, "alice from another address", loginVia(t, owner, ts, "alice", "password-alice"))
	// The flooder's address has spent 4 of its 5: one more guess, at
	// another name, and then nothing from there, even the right password.
	wantInvalid(t, "guess at bob", loginVia(t, attacker, ts, "bob", "wrong password"))
	wantThrottled(t, "bob from the flooding address", loginVia(t, attacker, ts, "bob", "password-bob"))
	wantOK(t, "bob from another address", loginVia(t, owner, ts, "bob", "password-bob"))
	// With no proxy trusted, naming another address fools nobody.
	wantThrottled(t, "flooder claiming another address", loginVia(t, attacker, ts, "bob", "password-bob", "X-Forwarded-For", "127.0.0.3"))
}

// Behind a trusted proxy the client is the rightmost X-Forwarded-For hop
// that is not a trusted proxy: clients relayed by one proxy get budgets of
// their own, and an entry a client wrote itself changes nothing. A peer
// outside --trusted-proxies has its X-Forwarded-* headers ignored.
func testTrustedProxies(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.TrustedProxies = []string{"127.0.0.2/32"}
	cfg.LoginAttemptsPerMinute, cfg.LoginAttemptsPerIPPerMinute = 2, 100
	ts := startServer(t, cfg, server.Options{})
	login(t, ts, "alice")
	proxy, direct := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.3")
	const flooder, owner = "203.0.113.7", "203.0.113.8"

	for range 2 {
		wantInvalid(t, "guess relayed for the flooder", loginVia(t, proxy, ts, "alice", "wrong password", "X-Forwarded-For", flooder))
	}
	wantThrottled(t, "3rd guess relayed for the flooder", loginVia(t, proxy, ts, "alice", "password-alice", "X-Forwarded-For", flooder))
	wantThrottled(t, "flooder writing the owner's address leftmost",
		loginVia(t, proxy, ts, "alice", "password-alice", "X-Forwarded-For", owner+", "+flooder))
	r := loginVia(t, proxy, ts, "alice", "password-alice", "X-Forwarded-For", owner, "X-Forwarded-Proto", "https")
	wantOK(t, "owner relayed by the same proxy", r)
	wantCookie(t, "behind a trusted proxy that says https", r, "__Host-hubbub_session=", "; Path=/", "; HttpOnly", "; Secure", "; SameSite=Strict")

	// An untrusted peer naming the throttled flooder is itself the client.
	r = loginVia(t, direct, ts, "alice", "password-alice", "X-Forwarded-For", flooder, "X-Forwarded-Proto", "https")
	wantOK(t, "untrusted peer's header ignored", r)
	wantCookie(t, "an untrusted peer saying https", r, "hubbub_session=", "; Path=/", "; HttpOnly", "; SameSite=Strict", "!Secure", "!__Host-")
}

// wantCookie checks the Set-Cookie header: it holds every part, and none
// of the parts written !part.
func wantCookie(t *testing.T, what string, r apiResult, parts ...string) {
	t.Helper()
	c := r.Header.Get("Set-Cookie")
	for _, p := range parts {
		if not, ok := strings.CutPrefix(p, "!"); ok {
			if strings.Contains(c, not) {
				t.Errorf("%s: Set-Cookie %q holds %q", what, c, not)
			}
		} else if !strings.HasPrefix(c, p) && !strings.Contains(c, p) {
			t.Errorf("%s: Set-Cookie %q lacks %q", what, c, p)
		}
	}
}

package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWebSocketOrigin: the upgrader itself refuses a handshake from a
// foreign origin, and one without Origin that rides on the session cookie,
// whatever handler calls it; Bearer clients may omit Origin.
func TestWebSocketOrigin(t *testing.T) {
	a := New(Options{AllowedOrigins: []string{"https://Chat.Example.com/"}})
	if a.upgrader.CheckOrigin == nil {
		t.Fatal("the upgrader has no CheckOrigin: gorilla would then allow only same-host origins, silently differing from handleWS")
	}
	tests := []struct {
		name   string
		origin string
		cookie bool
		bearer bool
		want   bool
	}{
		{name: "own origin", origin: "http://hubbub.test", cookie: true, want: true},
		{name: "own origin, other case", origin: "HTTP://Hubbub.Test", cookie: true, want: true},
		{name: "listed origin", origin: "https://chat.example.com", cookie: true, want: true},
		{name: "foreign origin with cookie", origin: "https://evil.example", cookie: true, want: false},
		{name: "foreign origin with bearer", origin: "https://evil.example", bearer: true, want: false},
		{name: "other port is another origin", origin: "http://hubbub.test:8081", cookie: true, want: false},
		{name: "scheme differs", origin: "https://hubbub.test", cookie: true, want: false},
		{name: "malformed origin", origin: "::nonsense", bearer: true, want: false},
		{name: "null origin", origin: "null", cookie: true, want: false},
		{name: "no origin, cookie", cookie: true, want: false},
		{name: "no origin, bearer", bearer: true, want: true},
		{name: "no origin, no credentials", want: true}, // refused later: unauthenticated
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://hubbub.test/ws", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if tc.cookie {
				r.AddCookie(&http.Cookie{Name: CookieName, Value: "token"})
			}
			if tc.bearer {
				r.Header.Set("Authorization", "Bearer token")
			}
			if got := a.upgrader.CheckOrigin(r); got != tc.want {
				t.Errorf("upgrader.CheckOrigin = %t, want %t", got, tc.want)
			}
		})
	}
}

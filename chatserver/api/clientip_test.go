package api

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

var testProxies = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("2001:db8:ffff::/48"),
}

func TestClientAddr(t *testing.T) {
	tests := []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{name: "no proxies trusted: the peer, whatever the header", remote: "10.0.0.2:5555", xff: []string{"198.51.100.1"}, want: "10.0.0.2"},
		{name: "untrusted peer: header ignored", remote: "203.0.113.9:5555", xff: []string{"198.51.100.1"}, trusted: testProxies, want: "203.0.113.9"},
		{name: "untrusted peer naming a trusted proxy", remote: "203.0.113.9:5555", xff: []string{"10.0.0.5"}, trusted: testProxies, want: "203.0.113.9"},
		{name: "trusted peer without header", remote: "10.0.0.2:5555", trusted: testProxies, want: "10.0.0.2"},
		{name: "trusted peer, one hop", remote: "10.0.0.2:5555", xff: []string{"198.51.100.1"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "spoofed leftmost entry", remote: "10.0.0.2:5555", xff: []string{"1.2.3.4, 198.51.100.1"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "spoofed leftmost entry in a trusted range", remote: "10.0.0.2:5555", xff: []string{"10.9.9.9, 198.51.100.1"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "chain of trusted proxies", remote: "10.0.0.2:5555", xff: []string{"1.2.3.4, 198.51.100.1, 10.0.0.5, 10.0.0.6"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "all hops trusted: the leftmost", remote: "10.0.0.2:5555", xff: []string{"10.1.1.1, 10.0.0.5"}, trusted: testProxies, want: "10.1.1.1"},
		{name: "header on several lines is one list", remote: "10.0.0.2:5555", xff: []string{"1.2.3.4, 198.51.100.1", "10.0.0.5"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "hop with a port", remote: "10.0.0.2:5555", xff: []string{"198.51.100.1:4711"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "empty entries skipped", remote: "10.0.0.2:5555", xff: []string{"198.51.100.1, ,"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "garbage ends the walk at the last hop vouched for", remote: "10.0.0.2:5555", xff: []string{"198.51.100.1, unknown, 10.0.0.5"}, trusted: testProxies, want: "10.0.0.5"},
		{name: "garbage right at the peer", remote: "10.0.0.2:5555", xff: []string{"unknown"}, trusted: testProxies, want: "10.0.0.2"},
		{name: "IPv6 trusted peer, IPv6 client", remote: "[2001:db8:ffff::1]:443", xff: []string{"2001:db8:1::7"}, trusted: testProxies, want: "2001:db8:1::7"},
		{name: "IPv6 spoofed leftmost", remote: "[2001:db8:ffff::1]:443", xff: []string{"2001:db8:1::666, 2001:db8:1::7, 2001:db8:ffff::2"}, trusted: testProxies, want: "2001:db8:1::7"},
		{name: "IPv6 hop with a port", remote: "[2001:db8:ffff::1]:443", xff: []string{"[2001:db8:1::7]:4711"}, trusted: testProxies, want: "2001:db8:1::7"},
		{name: "IPv6 untrusted peer", remote: "[2001:db8:1::7]:443", xff: []string{"198.51.100.1"}, trusted: testProxies, want: "2001:db8:1::7"},
		{name: "IPv4 client through an IPv6 proxy", remote: "[2001:db8:ffff::1]:443", xff: []string{"198.51.100.1"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "IPv4-mapped peer counts as IPv4", remote: "[::ffff:10.0.0.2]:5555", xff: []string{"198.51.100.1"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "IPv4-mapped hop counts as IPv4", remote: "10.0.0.2:5555", xff: []string{"198.51.100.1, ::ffff:10.0.0.5"}, trusted: testProxies, want: "198.51.100.1"},
		{name: "zone dropped", remote: "[fe80::1%eth0]:5555", want: "fe80::1"},
		{name: "unparsable peer kept as is", remote: "@", want: "@"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientAddr(tt.remote, tt.xff, tt.trusted); got != tt.want {
				t.Errorf("clientAddr(%q, %q) = %q, want %q", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

// X-Forwarded-Proto decides the server's own origin (and the cookie's
// Secure flag) only when a trusted proxy sent it.
func TestForwardedProtoFromTrustedProxiesOnly(t *testing.T) {
	a := New(Options{TrustedProxies: testProxies})
	tests := []struct {
		name, remote, proto, want string
	}{
		{"trusted proxy says https", "10.0.0.2:5555", "https", "https://hubbub.test"},
		{"untrusted peer says https", "203.0.113.9:5555", "https", "http://hubbub.test"},
		{"trusted proxy, nonsense", "10.0.0.2:5555", "gopher", "http://hubbub.test"},
		{"trusted proxy, nothing", "10.0.0.2:5555", "", "http://hubbub.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://hubbub.test/", nil)
			r.RemoteAddr = tt.remote
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			if got := a.ownOrigin(r); got != tt.want {
				t.Errorf("ownOrigin = %q, want %q", got, tt.want)
			}
		})
	}
}

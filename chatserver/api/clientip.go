package api

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientIP is the address a request comes from: what login throttling
// counts and a session lists.
func (a *API) clientIP(r *http.Request) string {
	return clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), a.opts.TrustedProxies)
}

// fromTrustedProxy reports whether the request's direct peer is one of the
// trusted proxies, whose X-Forwarded-* headers therefore count.
func (a *API) fromTrustedProxy(r *http.Request) bool {
	peer, ok := parseHop(r.RemoteAddr)
	return ok && trustedAddr(a.opts.TrustedProxies, peer)
}

// clientAddr finds the client behind a chain of proxies. Anybody can write
// anything into X-Forwarded-For, so it counts only when the direct peer
// (remoteAddr) is a trusted proxy. Each proxy appends the address it was
// reached from, so the list is walked from the right, past trusted proxies:
// the first address that is not one is the client, and whatever lies left
// of it the client wrote itself. When every hop is trusted, the leftmost is
// the client (it sits inside the proxies' network). An entry that is not an
// address ends the walk at the last hop walked, the furthest one vouched for.
func clientAddr(remoteAddr string, xff []string, trusted []netip.Prefix) string {
	client, ok := parseHop(remoteAddr)
	if !ok {
		return remoteAddr
	}
	if !trustedAddr(trusted, client) {
		return client.String()
	}
	hops := forwardedHops(xff)
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = hop
		if !trustedAddr(trusted, hop) {
			break
		}
	}
	return client.String()
}

// forwardedHops splits X-Forwarded-For values into entries, in order. A
// header sent on several lines is one list (RFC 9110, section 5.3).
func forwardedHops(values []string) []string {
	var hops []string
	for _, v := range values {
		for h := range strings.SplitSeq(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	return hops
}

// parseHop parses an address with or without a port ("192.0.2.1",
// "192.0.2.1:443", "[2001:db8::1]:443"). An IPv4-mapped IPv6 address counts
// as the IPv4 one, and a zone is dropped, so one host is always one address.
func parseHop(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

func trustedAddr(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

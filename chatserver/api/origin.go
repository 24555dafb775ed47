// Origins: the one the request was addressed to, and whether the Origin
// header it carries may use the API or open a socket.

package api

import (
	"net/http"
	"net/url"
	"strings"
)

// ownOrigin is the origin the request was addressed to.
func (a *API) ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if a.fromTrustedProxy(r) {
		if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
			scheme = p
		}
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

// originAllowed reports whether the request's Origin header is the server's
// own or an allowed one. A missing Origin is reported as such.
func (a *API) originAllowed(r *http.Request) (present, ok bool) {
	o := r.Header.Get("Origin")
	if o == "" {
		return false, false
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return true, false
	}
	o = strings.ToLower(u.Scheme + "://" + u.Host)
	return true, o == a.ownOrigin(r) || a.origins[o]
}

// wsOriginAllowed is the WebSocket handshake's origin rule. Browsers always
// send Origin on WebSocket handshakes, and it must be ours or listed; a
// request without one must not ride on a cookie (non-browser clients use a
// Bearer token and may omit it).
func (a *API) wsOriginAllowed(r *http.Request) bool {
	present, ok := a.originAllowed(r)
	_, viaCookie := credentials(r)
	return ok || (!present && !viaCookie)
}

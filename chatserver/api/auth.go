// Which session a request speaks for: its token (Bearer header or cookie),
// the session cookie, and the check behind every authed route and /ws.

package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

// The session cookie. Over HTTPS it is __Host-hubbub_session: the __Host-
// prefix makes browsers refuse it unless it is Secure, has Path=/ and no
// Domain, so no sibling subdomain or plain-http page can set or shadow it.
// A developer's plain-http server cannot use that prefix, and gets
// hubbub_session.
const (
	CookieName       = "hubbub_session"
	SecureCookieName = "__Host-" + CookieName
)

// credentials finds the session token: a Bearer header, else the cookie.
func credentials(r *http.Request) (token string, viaCookie bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t), false
		}
		return "", false
	}
	for _, name := range []string{SecureCookieName, CookieName} {
		if c, err := r.Cookie(name); err == nil {
			return c.Value, true
		}
	}
	return "", false
}

// sessionCookie is the session cookie for r's scheme: SameSite=Strict (no
// other site's page can send it, not even a link), HttpOnly, and over HTTPS
// Secure with the __Host- prefix. maxAge < 0 deletes it.
func (a *API) sessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	c := &http.Cookie{Name: CookieName, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
	if strings.HasPrefix(a.ownOrigin(r), "https://") {
		c.Name, c.Secure = SecureCookieName, true
	}
	return c
}

type sessionKey struct{}

func sessionFrom(r *http.Request) auth.Session {
	s, _ := r.Context().Value(sessionKey{}).(auth.Session)
	return s
}

// authenticate is the one session check behind HTTP requests and the
// WebSocket handshake. It enforces same-origin for cookie-authenticated
// requests that change state or open a socket (CSRF / cross-site WebSocket hijacking).
func (a *API) authenticate(w http.ResponseWriter, r *http.Request, needsOrigin bool) (auth.Session, bool) {
	token, viaCookie := credentials(r)
	if viaCookie && needsOrigin {
		if present, ok := a.originAllowed(r); !present || !ok {
			a.m.Auth.WithLabelValues("bad_origin").Inc()
			WriteError(w, http.StatusForbidden, "bad_origin", "cross-origin request refused")
			return auth.Session{}, false
		}
	}
	sess, err := a.opts.Auth.Authenticate(r.Context(), token)
	if errors.Is(err, auth.ErrUnauthenticated) {
		a.m.Auth.WithLabelValues("unauthenticated").Inc()
		WriteError(w, http.StatusUnauthorized, "unauthorized", auth.ErrUnauthenticated.Error())
		return auth.Session{}, false
	}
	if err != nil {
		a.internalError(w, r, err)
		return auth.Session{}, false
	}
	return sess, true
}

func (a *API) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		changes := r.Method != http.MethodGet && r.Method != http.MethodHead
		sess, ok := a.authenticate(w, r, changes)
		if !ok {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
	}
}

func (a *API) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, a.sessionCookie(r, "", -1))
}

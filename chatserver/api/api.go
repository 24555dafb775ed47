// Package api is the chat server's HTTP surface: the JSON API under
// /api/v1, the WebSocket upgrade at /ws, and the origin and CSRF rules both
// share. See docs/protocol.md.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/metrics"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/wsconn"
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

const maxBodyBytes = 16 << 10

// writeBufferPool lends WebSocket write buffers for the length of one write.
var writeBufferPool sync.Pool

// Options configure the API.
type Options struct {
	Auth    *auth.Service
	Chat    *chat.Service
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// AllowedOrigins are origins besides the server's own ("https://host[:port]").
	AllowedOrigins []string
	// TrustedProxies are the proxies in front of the server: only a request
	// whose peer is one of them has its X-Forwarded-For and X-Forwarded-Proto
	// believed. Empty believes none.
	TrustedProxies []netip.Prefix
	// SessionTTL sets the cookie's Max-Age (the server-side expiry slides).
	SessionTTL time.Duration
	// Context is the server's lifetime; sockets are served under it.
	Context context.Context
}

// API serves /api/v1 and /ws.
type API struct {
	opts     Options
	log      *slog.Logger
	m        *metrics.Metrics
	upgrader websocket.Upgrader
	origins  map[string]bool
}

// New returns the API.
func New(opts Options) *API {
	a := &API{opts: opts, log: opts.Logger, m: opts.Metrics, origins: map[string]bool{}}
	for _, o := range opts.AllowedOrigins {
		a.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	a.upgrader = websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// 0: wsconn.Upgrade gives each socket its own small read buffer.
		ReadBufferSize: 0,
		// Lent from the pool for one frame and returned: idle sockets hold
		// none. Large enough that a coalesced frame is mostly one write.
		WriteBufferSize: 16 << 10,
		WriteBufferPool: &writeBufferPool,
		// handleWS checks the origin first, to answer with a clear JSON 403;
		// the upgrader checks again, so that no path to Upgrade skips it.
		CheckOrigin: a.wsOriginAllowed,
	}
	return a
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	route := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, bounded(h)) }
	route("POST /api/v1/register", a.handleRegister)
	route("POST /api/v1/login", a.handleLogin)
	route("POST /api/v1/logout", a.authed(a.handleLogout))
	route("GET /api/v1/me", a.authed(a.handleMe))
	route("GET /api/v1/sessions", a.authed(a.handleSessions))
	route("DELETE /api/v1/sessions/{id}", a.authed(a.handleRevoke))
	route("DELETE /api/v1/sessions", a.authed(a.handleRevokeAll))
	route("GET /api/v1/channels", a.authed(a.handleChannels))
	route("GET /api/v1/channels/{channel}/messages", a.authed(a.handleHistory))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "not_found", "no such endpoint")
	})
	// The handshake's session check is bounded too; the socket it starts
	// runs under the server's context, not the request's.
	route("GET /ws", a.handleWS)
}

// Every request is bounded: a frozen or unreachable Redis answers 503 within
// requestTimeout (however many storage calls the request makes), and a body
// must arrive within bodyTimeout (a client dripping bytes holds no handler).
const (
	requestTimeout = 3 * time.Second
	bodyTimeout    = 10 * time.Second
)

func bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

// --- errors and JSON ---

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError answers with the API's error body, {"error":{"code","message"}}.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	WriteJSON(w, status, b)
}

// WriteJSON answers v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// internalError answers 503 for storage trouble and 500 otherwise, logging once.
func (a *API) internalError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, chat.ErrUnavailable) || errors.Is(err, auth.ErrBusy) || errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("request failed: storage unavailable", "path", r.URL.Path, "err", err)
		WriteError(w, http.StatusServiceUnavailable, "unavailable", "storage unavailable, try again")
		return
	}
	a.log.Error("request failed", "path", r.URL.Path, "err", err)
	WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}

// decodeBody reads a JSON body into v: only application/json, bounded size,
// no unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
		return false
	}
	// Only here, where a body is read: a deadline left on a connection that
	// /ws then hijacks would cut the socket.
	// A writer without a connection (a test's recorder) has no deadline to set.
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", maxBodyBytes))
			return false
		}
		WriteError(w, http.StatusBadRequest, "bad_request", "malformed JSON body: "+protocol.Truncate(err.Error(), 120))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		WriteError(w, http.StatusBadRequest, "bad_request", "one JSON object per body")
		return false
	}
	return true
}

// --- origins, client IPs, auth ---

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

// --- handlers ---

type credentialsBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// credentialsRequest decodes a register or login body. A cross-origin one
// is refused: a login sets a cookie, so a cross-site login (login CSRF)
// would sign the victim into the attacker's account.
func (a *API) credentialsRequest(w http.ResponseWriter, r *http.Request) (credentialsBody, bool) {
	var body credentialsBody
	if !decodeBody(w, r, &body) {
		return body, false
	}
	if present, ok := a.originAllowed(r); present && !ok {
		WriteError(w, http.StatusForbidden, "bad_origin", "cross-origin request refused")
		return body, false
	}
	return body, true
}

func (a *API) handleRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := a.credentialsRequest(w, r)
	if !ok {
		return
	}
	name, err := a.opts.Auth.Register(r.Context(), body.Username, body.Password)
	switch {
	case err == nil:
		a.m.Auth.WithLabelValues("registered").Inc()
		if err := a.opts.Chat.MarkAllRead(r.Context(), name); err != nil {
			// The account exists; at worst old messages show as unread.
			a.log.Warn("marking history read for a new account", "err", err)
		}
		WriteJSON(w, http.StatusCreated, map[string]string{"username": name})
	case errors.Is(err, auth.ErrRegistrationClosed):
		WriteError(w, http.StatusForbidden, "registration_closed", err.Error())
	case errors.Is(err, auth.ErrUserExists):
		WriteError(w, http.StatusConflict, "username_taken", "that username is taken")
	case errors.Is(err, auth.ErrInvalidUsername), errors.Is(err, auth.ErrPasswordTooShort), errors.Is(err, auth.ErrPasswordTooLong):
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		a.internalError(w, r, err)
	}
}

func (a *API) handleLogin(w http.ResponseWriter, r *http.Request) {
	body, ok := a.credentialsRequest(w, r)
	if !ok {
		return
	}
	sess, token, err := a.opts.Auth.Login(r.Context(), auth.LoginRequest{
		Username: body.Username, Password: body.Password, IP: a.clientIP(r), UserAgent: r.UserAgent(),
	})
	var throttled *auth.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &throttled):
		a.m.Auth.WithLabelValues("throttled").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int((throttled.RetryAfter+time.Second-1)/time.Second)))
		WriteError(w, http.StatusTooManyRequests, "rate_limited", throttled.Error())
		return
	case errors.Is(err, auth.ErrInvalidCredentials):
		a.m.Auth.WithLabelValues("login_failed").Inc()
		WriteError(w, http.StatusUnauthorized, "invalid_credentials", err.Error())
		return
	case errors.Is(err, auth.ErrPasswordTooLong):
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	default:
		a.internalError(w, r, err)
		return
	}
	a.m.Auth.WithLabelValues("login").Inc()
	http.SetCookie(w, a.sessionCookie(r, token, int(a.opts.SessionTTL/time.Second)))
	WriteJSON(w, http.StatusOK, map[string]string{"username": sess.Username, "token": token})
}

func (a *API) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, a.sessionCookie(r, "", -1))
}

func (a *API) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r)
	if _, err := a.opts.Auth.Revoke(r.Context(), sess.Username, sess.ID); err != nil && !errors.Is(err, auth.ErrSessionNotFound) {
		a.internalError(w, r, err)
		return
	}
	if err := a.opts.Chat.RevokeSessions(r.Context(), sess.Username, []string{sess.ID}); err != nil {
		a.log.Warn("announcing logout", "err", err)
	}
	a.clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) handleMe(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"username": sessionFrom(r).Username})
}

type sessionView struct {
	auth.Session
	Current bool `json:"current"`
}

func (a *API) handleSessions(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r)
	list, err := a.opts.Auth.Sessions(r.Context(), me.Username)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	out := make([]sessionView, 0, len(list))
	for _, s := range list {
		out = append(out, sessionView{Session: s, Current: s.ID == me.ID})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (a *API) handleRevoke(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r)
	id := r.PathValue("id")
	if _, err := a.opts.Auth.Revoke(r.Context(), me.Username, id); errors.Is(err, auth.ErrSessionNotFound) {
		WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	} else if err != nil {
		a.internalError(w, r, err)
		return
	}
	if err := a.opts.Chat.RevokeSessions(r.Context(), me.Username, []string{id}); err != nil {
		// The session is gone from storage; sockets elsewhere still close at
		// their next session check.
		a.log.Warn("announcing revocation", "err", err)
	}
	if id == me.ID {
		a.clearCookie(w, r)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) handleRevokeAll(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r)
	if _, err := a.opts.Auth.RevokeAll(r.Context(), me.Username); err != nil {
		a.internalError(w, r, err)
		return
	}
	if err := a.opts.Chat.RevokeSessions(r.Context(), me.Username, nil); err != nil {
		a.log.Warn("announcing revocation", "err", err)
	}
	a.clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) handleChannels(w http.ResponseWriter, r *http.Request) {
	chans, err := a.opts.Chat.Channels(r.Context(), sessionFrom(r).Username)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"channels": chans})
}

func (a *API) handleHistory(w http.ResponseWriter, r *http.Request) {
	channel := r.PathValue("channel")
	q := r.URL.Query()
	before := q.Get("before")
	if before != "" {
		if _, err := protocol.ParseID(before); err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", "before: "+err.Error())
			return
		}
	}
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > chat.MaxHistoryPage {
			WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit must be 1..%d", chat.MaxHistoryPage))
			return
		}
		limit = n
	}
	msgs, err := a.opts.Chat.History(r.Context(), sessionFrom(r).Username, channel, before, limit)
	switch {
	case errors.Is(err, chat.ErrForbidden):
		WriteError(w, http.StatusForbidden, "forbidden", "you are not a member of this channel")
		return
	case errors.Is(err, chat.ErrUnknownChannel):
		WriteError(w, http.StatusNotFound, "unknown_channel", "no such channel")
		return
	case err != nil:
		a.internalError(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []protocol.Message{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"messages": msgs})
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

func (a *API) handleWS(w http.ResponseWriter, r *http.Request) {
	if !a.wsOriginAllowed(r) {
		a.m.Auth.WithLabelValues("bad_origin").Inc()
		WriteError(w, http.StatusForbidden, "bad_origin", "WebSocket origin not allowed")
		return
	}
	sess, ok := a.authenticate(w, r, false)
	if !ok {
		return
	}
	// Over the per-user connection limit the upgrade still happens: the
	// client then sees the documented close code 4429, not a bare HTTP error.
	ws, err := wsconn.Upgrade(&a.upgrader, w, r, nil)
	if err != nil {
		return // the upgrader has written the HTTP error
	}
	user, id := sess.Username, sess.ID
	token, _ := credentials(r)
	// The socket runs on the chat service's goroutine; returning here lets
	// net/http free this request's buffers and stack.
	a.opts.Chat.Start(a.opts.Context, ws, chat.Peer{
		User: user, Session: id,
		Check: func(ctx context.Context) error {
			_, err := a.opts.Auth.Authenticate(ctx, token)
			if errors.Is(err, auth.ErrUnauthenticated) {
				return chat.ErrSessionGone
			}
			return err
		},
	})
}

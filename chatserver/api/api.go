// Package api is the chat server's HTTP surface: the JSON API under
// /api/v1, the WebSocket upgrade at /ws, and the origin and CSRF rules both
// share. See docs/protocol.md.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/metrics"
)

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
	// MaxChannelsPerUser and MaxChannelMembers are named in the messages
	// that refuse past them.
	MaxChannelsPerUser, MaxChannelMembers int
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
	route("GET /api/v1/channels/{channel}/messages/{id}/thread", a.authed(a.handleThread))
	route("POST /api/v1/channels", a.authed(a.handleCreateChannel))
	route("GET /api/v1/channels/browse", a.authed(a.handleBrowse()))
	route("POST /api/v1/channels/{channel}/join", a.authed(a.handleJoin))
	route("POST /api/v1/channels/{channel}/leave", a.authed(a.handleLeave))
	route("GET /api/v1/channels/{channel}/members", a.authed(a.handleMembers()))
	route("POST /api/v1/channels/{channel}/members", a.authed(a.handleAddMember))
	route("DELETE /api/v1/channels/{channel}/members/{username}", a.authed(a.handleRemoveMember))
	route("GET /api/v1/users", a.authed(a.handleUsers()))
	route("GET /api/v1/search", a.authed(a.handleSearch))
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

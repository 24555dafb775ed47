package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/api"
)

const (
	// statsTTL is how long a count is reused. Anyone who reaches a pod can
	// ask, so a flood of requests must not become a flood of storage reads.
	statsTTL = 5 * time.Second
	// statsTimeout bounds one count, below the operator's 3s per request.
	statsTimeout = 2 * time.Second
	// maxStatsUsers caps the users counted; past it the count is a lower bound.
	maxStatsUsers = 100_000
)

// onlineLister is what the stats need of the backend (chat.Presence).
type onlineLister interface {
	Online(ctx context.Context, limit int) ([]string, error)
}

// statsHandler serves protocol.StatsPath: {"onlineUsers": N}, or 503 with
// the API's error body when presence cannot be read from storage. It needs
// no login: the operator holds no account and no credential, and the number
// is what every signed-in person sees anyway.
type statsHandler struct {
	presence onlineLister
	log      *slog.Logger
	now      func() time.Time

	// mu is held while counting, so that concurrent requests share one read.
	mu sync.Mutex
	at time.Time // when n was counted; zero: never
	n  int
}

func newStatsHandler(presence onlineLister, log *slog.Logger) *statsHandler {
	return &statsHandler{presence: presence, log: log, now: time.Now}
}

func (h *statsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, err := h.onlineUsers(r.Context())
	if err != nil {
		h.log.Warn("stats: presence unavailable", "err", err)
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", "storage unavailable, try again")
		return
	}
	api.WriteJSON(w, http.StatusOK, struct {
		OnlineUsers int `json:"onlineUsers"`
	}{n})
}

// onlineUsers is the number of distinct users online in the room, counted
// at most once per statsTTL. A failed count is not remembered.
func (h *statsHandler) onlineUsers(ctx context.Context) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && h.now().Sub(h.at) < statsTTL {
		return h.n, nil
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	users, err := h.presence.Online(ctx, maxStatsUsers)
	if err != nil {
		return 0, err
	}
	h.n, h.at = len(users), h.now()
	return h.n, nil
}

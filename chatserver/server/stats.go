package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/api"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
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

// replicationReader is what a Redis backend adds: its replication state.
type replicationReader interface {
	Replication(ctx context.Context) (redisbackend.Replication, error)
}

// statsHandler serves protocol.StatsPath: protocol.Stats, or 503 with the
// API's error body when presence cannot be read from storage. It needs no
// login: the operator holds no account and no credential (not even the
// Redis password: it learns the room's Redis primary and replicas here),
// and the number is what every signed-in person sees anyway.
type statsHandler struct {
	presence onlineLister
	log      *slog.Logger
	now      func() time.Time

	// mu is held while counting, so that concurrent requests share one read.
	mu    sync.Mutex
	at    time.Time // when stats were read; zero: never
	stats protocol.Stats
}

func newStatsHandler(presence onlineLister, log *slog.Logger) *statsHandler {
	return &statsHandler{presence: presence, log: log, now: time.Now}
}

func (h *statsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st, err := h.read(r.Context())
	if err != nil {
		h.log.Warn("stats: presence unavailable", "err", err)
		api.WriteError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "storage unavailable, try again")
		return
	}
	api.WriteJSON(w, http.StatusOK, st)
}

// read counts the distinct users online in the room and, on Redis, reads
// its replication, at most once per statsTTL. A failed count is not
// remembered; a failed replication read leaves Redis out.
func (h *statsHandler) read(ctx context.Context) (protocol.Stats, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && h.now().Sub(h.at) < statsTTL {
		return h.stats, nil
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	users, err := h.presence.Online(ctx, maxStatsUsers)
	if err != nil {
		return protocol.Stats{}, err
	}
	st := protocol.Stats{OnlineUsers: len(users)}
	if rr, ok := h.presence.(replicationReader); ok {
		rep, err := rr.Replication(ctx)
		if err != nil {
			h.log.Warn("stats: Redis replication unknown", "err", err)
		} else {
			st.Redis = &protocol.RedisStats{Primary: rep.Primary, Replicas: rep.Replicas, ReplicasInSync: rep.InSync}
		}
	}
	h.stats, h.at = st, h.now()
	return st, nil
}

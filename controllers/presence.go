package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// PresenceCounter counts the distinct users online in a room by asking one
// of its chat pods, which read presence from the room's Redis themselves.
// The operator hands it only the pod's address, never a credential: the
// room's Redis password stays between the kubelet and the pods. The
// reconciler calls it once per room every Options.PresenceInterval; an
// implementation bounds its own time and the amount it reads.
type PresenceCounter interface {
	// OnlineUsers asks the chat pod at addr (host:port). An error wrapping
	// ErrRedisUnavailable means the pod answered that it cannot read Redis.
	OnlineUsers(ctx context.Context, addr string) (int, error)
}

// StatsReader is a PresenceCounter that also reports how the chat pod sees
// the room's Redis replication: the primary, and how many replicas it has
// and has in sync. The reconciler uses it when Options.Presence has it.
type StatsReader interface {
	// Stats asks the chat pod at addr (host:port); errors as OnlineUsers'.
	// Stats.Redis is nil when the pod reported no replication (a backend
	// other than Redis, or a chat image that predates it).
	Stats(ctx context.Context, addr string) (protocol.Stats, error)
}

// ErrRedisUnavailable is what a chat pod reports when it cannot read the
// room's Redis: the pod is up, its storage is not.
var ErrRedisUnavailable = errors.New("the chat pod cannot reach its Redis")

// Bounds of HTTPPresence.
const (
	defaultPresenceTimeout = 3 * time.Second
	// maxStatsBody bounds what is read of an answer: a pod runs the room
	// author's image, and the operator reads it for a few numbers.
	maxStatsBody = 4 << 10
	// maxErrorText bounds the pod's error message quoted in the status.
	maxErrorText = 200
)

// HTTPPresence asks a chat pod's GET /api/v1/stats for the room's online
// count (and, as a StatsReader, the Redis replication the pod sees), over
// plain HTTP with a fresh connection per call (rooms come and go; idle
// connections to thousands of pods would only pile up). It follows no
// redirect and uses no proxy: the answer must come from the pod itself, and
// the operator must not be steered to fetch other addresses.
type HTTPPresence struct {
	// Timeout bounds one call. Default 3s.
	Timeout time.Duration
	// Transport replaces the default transport (tests); nil uses one
	// without proxy or keep-alives.
	Transport http.RoundTripper
}

var (
	_ PresenceCounter = HTTPPresence{}
	_ StatsReader     = HTTPPresence{}
)

// presenceTransport bounds nothing in time itself: each call's context does.
var presenceTransport = &http.Transport{
	Proxy:                  nil,
	DialContext:            (&net.Dialer{}).DialContext,
	DisableKeepAlives:      true,
	MaxResponseHeaderBytes: 16 << 10,
}

// OnlineUsers implements PresenceCounter.
func (p HTTPPresence) OnlineUsers(ctx context.Context, addr string) (int, error) {
	st, err := p.Stats(ctx, addr)
	return st.OnlineUsers, err
}

// Stats implements StatsReader. The answer's redis part is taken only when
// it makes sense (replica counts that are not negative, no more in sync
// than connected); otherwise it is left out, and the count still counts.
func (p HTTPPresence) Stats(ctx context.Context, addr string) (protocol.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, cmpOr(p.Timeout, defaultPresenceTimeout))
	defer cancel()
	transport := p.Transport
	if transport == nil {
		transport = presenceTransport
	}
	c := &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	u := url.URL{Scheme: "http", Host: addr, Path: protocol.StatsPath}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return protocol.Stats{}, fmt.Errorf("ask chat pod %s: %w", addr, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return protocol.Stats{}, fmt.Errorf("ask chat pod %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatsBody))
	if err != nil {
		return protocol.Stats{}, fmt.Errorf("ask chat pod %s: %w", addr, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var stats struct {
			OnlineUsers *int            `json:"onlineUsers"`
			Redis       json.RawMessage `json:"redis"`
		}
		if err := json.Unmarshal(body, &stats); err != nil || stats.OnlineUsers == nil || *stats.OnlineUsers < 0 {
			return protocol.Stats{}, fmt.Errorf("chat pod %s: GET %s: not a count of online users", addr, protocol.StatsPath)
		}
		return protocol.Stats{OnlineUsers: *stats.OnlineUsers, Redis: redisStats(stats.Redis)}, nil
	case http.StatusServiceUnavailable:
		return protocol.Stats{}, fmt.Errorf("chat pod %s: %w: %s", addr, ErrRedisUnavailable, errorText(body))
	default:
		return protocol.Stats{}, fmt.Errorf("chat pod %s: GET %s: %s", addr, protocol.StatsPath, resp.Status)
	}
}

// redisStats is the redis part of a stats answer, or nil when it is absent
// or makes no sense.
func redisStats(raw json.RawMessage) *protocol.RedisStats {
	if len(raw) == 0 {
		return nil
	}
	var rs *protocol.RedisStats
	if err := json.Unmarshal(raw, &rs); err != nil || rs == nil ||
		rs.Replicas < 0 || rs.ReplicasInSync < 0 || rs.ReplicasInSync > rs.Replicas {
		return nil
	}
	return rs
}

// errorText is the message of a chat server's JSON error body, shortened:
// it ends up in the room's status.
func errorText(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := "unavailable"
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
	}
	msg = strings.ToValidUTF8(msg, "?")
	if len(msg) > maxErrorText {
		msg = strings.ToValidUTF8(msg[:maxErrorText], "") + "..."
	}
	return msg
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

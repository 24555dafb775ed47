package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
)

// StorageCall is one storage read of a connect, timed from the tool.
type StorageCall struct {
	Call    string  `json:"call"`
	Latency Latency `json:"latency"`
	Items   int     `json:"items"`
}

// The limits chat's open and hello read with (unexported there: maxJoined,
// maxDMs, maxUnread, maxOnline in chatserver/chat/options.go).
const (
	probeMaxJoined = 10000
	probeMaxDMs    = 1000
	probeMaxUnread = 1000
	probeMaxOnline = 1000
)

// probeStorage times, one by one, the storage reads a connect of the
// measured person makes before its hello can go out (chat's open, then
// hello's channelInfos and online list), with the server's own Redis
// backend against the server's Redis: what a connect's latency is made of
// when the server adds nothing. The chat server reports no per-call
// timings, and a CPU profile shows where CPU goes, not where a connect waits.
func (h *helloBench) probeStorage(ctx context.Context) error {
	if h.c.redis == nil || h.cfg.Requests == 0 {
		return nil
	}
	b, err := redisbackend.New(redisbackend.Options{
		Room: "bench/load", URL: "redis://" + h.c.redisAt, PodID: "hubbub-bench-probe",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	defer b.Close()
	user := userName(helloPerson)
	created, err := b.UserChannels(ctx, user, probeMaxJoined)
	if err != nil {
		return err
	}
	names := make([]string, len(created))
	for i, c := range created {
		names[i] = c.Channel
	}
	behind := make(map[string]string, len(names))
	for _, n := range names {
		behind[n] = "" // no read marker: everything is unread
	}
	calls := []struct {
		name string
		f    func() (int, error)
	}{
		{"UserChannels (HGETALL)", func() (int, error) { x, err := b.UserChannels(ctx, user, probeMaxJoined); return len(x), err }},
		{"DMs (SSCAN)", func() (int, error) { x, err := b.DMs(ctx, user, probeMaxDMs); return len(x), err }},
		{fmt.Sprintf("LastIDs of %d created channels (pipelined XREVRANGE)", len(names)), func() (int, error) {
			x, err := b.LastIDs(ctx, names)
			return len(x), err
		}},
		{"ReadMarkers (HGETALL)", func() (int, error) { x, err := b.ReadMarkers(ctx, user); return len(x), err }},
		{"LastIDs of the default channel", func() (int, error) { x, err := b.LastIDs(ctx, []string{"general"}); return len(x), err }},
		{fmt.Sprintf("CountsAfter of %d channels (pipelined XLEN)", len(behind)), func() (int, error) {
			x, err := b.CountsAfter(ctx, behind, probeMaxUnread)
			return len(x), err
		}},
		{"Online (script)", func() (int, error) { x, err := b.Online(ctx, probeMaxOnline); return len(x), err }},
	}
	for _, c := range calls {
		r := StorageCall{Call: c.name}
		var ds []time.Duration
		for range h.cfg.Requests {
			t0 := time.Now()
			n, err := c.f()
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			ds = append(ds, time.Since(t0))
			r.Items = n
		}
		r.Latency = summarize(ds)
		h.res.Storage = append(h.res.Storage, r)
		h.log.Info("storage call", "call", c.name, "p50ms", r.Latency.P50ms, "p99ms", r.Latency.P99ms, "items", r.Items)
	}
	return nil
}

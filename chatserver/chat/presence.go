package chat

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Presence is batched: every presenceBatch the changes since the last batch
// (each user's latest status) go to every socket as presence objects that
// are encoded once and pre-joined with newlines, so a batch costs each
// socket one queue entry and usually one frame, however many people it
// names. One queued object per change would cost a room of 10,000 sockets
// 10^8 queue entries and frames while 10,000 people connect.
const (
	presenceBatch = 250 * time.Millisecond
	// maxPresenceChunk bounds the objects pre-joined into one entry, so an
	// entry stays within about one frame (a frame is capped near 64 KB).
	maxPresenceChunk = 500
)

// presenceBatcher collects presence changes (user -> latest status) until
// the next batch goes out.
type presenceBatcher struct {
	mu      sync.Mutex
	pending map[string]string
}

// note keeps a user's latest status for the next batch.
func (p *presenceBatcher) note(user, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		p.pending = map[string]string{}
	}
	p.pending[user] = status
}

// take returns the batch, encoded: entries of pre-joined presence objects,
// and how many objects each holds. It empties the batch.
func (p *presenceBatcher) take() (entries [][]byte, sizes []int) {
	p.mu.Lock()
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for chunk := range slices.Chunk(slices.Sorted(maps.Keys(pending)), maxPresenceChunk) {
		var e []byte
		for i, u := range chunk {
			if i > 0 {
				e = append(e, '\n')
			}
			e = append(e, protocol.Encode(protocol.Presence{Type: protocol.TypePresence, User: u, Status: pending[u]})...)
		}
		entries, sizes = append(entries, e), append(sizes, len(chunk))
	}
	return entries, sizes
}

// flushPresence sends the pending batch to every socket.
func (s *Service) flushPresence() {
	entries, sizes := s.pres.take()
	if len(entries) == 0 {
		return
	}
	queued := 0 // objects
	s.hub.fanout(everyone(), func(c *conn) {
		c.out.mu.Lock()
		for i, e := range entries {
			if c.out.enqueueLocked(e) {
				queued += sizes[i]
			}
		}
		c.out.mu.Unlock()
	})
	s.objs.out(protocol.TypePresence).Add(float64(queued))
}

// presenceLoop sends presence batches, refreshes this server's presence
// marks every third of the TTL, and sweeps expired ones (other servers'
// that crashed) every 1-2 s, so a crashed server's users go offline within
// TTL plus one sweep.
func (s *Service) presenceLoop(ctx context.Context) {
	heartbeat := time.NewTicker(s.opts.PresenceTTL / 3)
	defer heartbeat.Stop()
	sweep := time.NewTicker(max(time.Second, min(2*time.Second, s.opts.PresenceTTL/10)))
	defer sweep.Stop()
	batch := time.NewTicker(presenceBatch)
	defer batch.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-batch.C:
			s.flushPresence()
		case <-heartbeat.C:
			if err := s.b.Heartbeat(ctx, s.opts.Pod, s.hub.localUsers(), s.opts.PresenceTTL); err != nil {
				s.backendError("presence_heartbeat", err)
			}
		case <-sweep.C:
			offline, err := s.b.Sweep(ctx)
			if err != nil {
				s.backendError("presence_sweep", err)
				continue
			}
			for _, u := range offline {
				s.publish(ctx, Event{Kind: EventPresence, User: u, Status: "offline"})
			}
		}
	}
}

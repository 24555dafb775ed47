package chat

import (
	"context"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Presence is batched: every presenceBatch the changes since the last batch
// (each user's latest status) go to the sockets watching those users
// (watch.go), each socket's share as one queue entry.
const presenceBatch = 250 * time.Millisecond

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

// take returns the batch and empties it.
func (p *presenceBatcher) take() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := p.pending
	p.pending = nil
	return pending
}

// flushPresence sends the pending batch to the sockets watching its people.
func (s *Service) flushPresence() {
	pending := s.pres.take()
	if len(pending) == 0 {
		return
	}
	queued := 0 // objects
	for c, e := range s.watch.batch(pending) {
		if c.out.enqueue(e.b) {
			queued += e.n
		}
	}
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

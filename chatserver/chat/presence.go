package chat

import (
	"context"
	"slices"
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
	// noted holds the users noted while a refresh reads storage (nil when
	// none does): what an event says then is at least as new as that read.
	noted map[string]struct{}
}

// note keeps a user's latest status for the next batch.
func (p *presenceBatcher) note(user, status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noteLocked(user, status)
	if p.noted != nil {
		p.noted[user] = struct{}{}
	}
}

func (p *presenceBatcher) noteLocked(user, status string) {
	if p.pending == nil {
		p.pending = map[string]string{}
	}
	p.pending[user] = status
}

// refreshing marks the start of a read of storage for refreshed.
func (p *presenceBatcher) refreshing() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noted = map[string]struct{}{}
}

// refreshed notes the statuses a refresh read, except of the users an event
// was noted for since refreshing.
func (p *presenceBatcher) refreshed(statuses map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for u, st := range statuses {
		if _, ok := p.noted[u]; !ok {
			p.noteLocked(u, st)
		}
	}
	p.noted = nil
}

// take returns the batch and empties it.
func (p *presenceBatcher) take() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	pending := p.pending
	p.pending = nil
	return pending
}

// refreshPresence reads the status of everyone this server's sockets watch
// and sends it with the next batch: presence events were missed (the feed's
// subscription was lost), and a watcher would show someone online who left
// meanwhile until it watched again. It runs on the presence loop.
func (s *Service) refreshPresence(ctx context.Context) {
	users := s.watch.watched()
	if len(users) == 0 {
		return
	}
	s.pres.refreshing()
	statuses := make(map[string]string, len(users))
	for chunk := range slices.Chunk(users, 1000) {
		cctx, cancel := context.WithTimeout(ctx, storageTimeout)
		online, err := s.b.OnlineAmong(cctx, chunk)
		cancel()
		if err != nil {
			s.backendError("presence_refresh", err)
			break // what was read still goes out
		}
		for _, u := range chunk {
			statuses[u] = "offline"
			if online[u] {
				statuses[u] = "online"
			}
		}
	}
	s.pres.refreshed(statuses)
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
		case <-s.presenceLost:
			s.refreshPresence(ctx)
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

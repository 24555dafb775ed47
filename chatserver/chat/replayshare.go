package chat

import (
	"context"
	"sync"
	"time"
)

// replayShare lets the sockets that resume a channel from the same id at
// about the same time share one storage read of what followed, encoded
// once: after a drain every socket of a server resumes the same channels
// from the same ids within seconds, and each read cost a round trip and an
// encoding per message per socket.
//
// A socket may take a read only if the read began after the socket was
// registered (hub.regs): what was committed before the read began is in
// it, and what was committed after reaches the socket live, held back
// until its replay is queued. A read that began earlier could miss what
// was fanned out in between, before the socket could receive it.
type replayShare struct {
	mu    sync.Mutex
	reads map[replayKey]*replayRead
}

type replayKey struct{ channel, after string }

// replayRead is one read of a channel's messages after an id.
type replayRead struct {
	regs  uint32    // hub.regs when it began
	began time.Time // for forgetting it
	done  chan struct{}
	msgs  []outMsg
	err   error
}

const (
	// replayShareFor is how long a read may be taken by later sockets: the
	// spread of one storm's resumes is seconds, and each of its sockets
	// takes only a read that began after it registered.
	replayShareFor = time.Second
	// replaySweepAt is how many reads are kept before the old are swept.
	replaySweepAt = 1024
)

// after returns channel's messages after after (at most limit), from a read
// that began after the socket registered as reg, or from one of its own
// that later sockets may share. regs reads the hub's registration count.
func (r *replayShare) after(ctx context.Context, read func(ctx context.Context) ([]outMsg, error), key replayKey, reg uint32, regs func() uint32) ([]outMsg, error) {
	now := time.Now()
	r.mu.Lock()
	if rd := r.reads[key]; rd != nil && int32(rd.regs-reg) >= 0 && now.Sub(rd.began) < replayShareFor {
		r.mu.Unlock()
		select {
		case <-rd.done:
			return rd.msgs, rd.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	rd := &replayRead{regs: regs(), began: now, done: make(chan struct{})}
	if r.reads == nil {
		r.reads = map[replayKey]*replayRead{}
	}
	if len(r.reads) >= replaySweepAt {
		for k, old := range r.reads {
			if now.Sub(old.began) >= replayShareFor {
				delete(r.reads, k)
			}
		}
	}
	r.reads[key] = rd
	r.mu.Unlock()
	// Others may wait on this read: it is not bound to this socket's
	// context, only to the storage timeout.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
	defer cancel()
	rd.msgs, rd.err = read(cctx)
	close(rd.done)
	return rd.msgs, rd.err
}

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
//
// Clients send resume as soon as they connect, so each socket's resume
// comes before the next socket registers: a read that began at once would
// serve nobody else. During a storm (the same read was asked for within
// replayShareFor), a read gathers for replayGather before it begins, and
// every socket that asks meanwhile (registered by then) takes it.
type replayShare struct {
	mu    sync.Mutex
	reads map[replayKey]*replayRead
	// gathered is when a gathering read begins (nil: replayGather from
	// now); tests end gathering when they choose.
	gathered func() <-chan time.Time
}

type replayKey struct{ channel, after string }

// replayRead is one read of a channel's messages after an id.
type replayRead struct {
	gathering bool      // not begun yet: anyone may take it
	regs      uint32    // hub.regs when it began
	began     time.Time // when it was asked for, for forgetting it
	takers    int       // sockets that took it besides the one that asked
	done      chan struct{}
	msgs      []outMsg
	err       error
}

const (
	// replayShareFor is how long a read may be taken by later sockets: the
	// spread of one storm's resumes is seconds, and each of its sockets
	// takes only a read that began after it registered.
	replayShareFor = time.Second
	// replayGather is how long a read waits for others during a storm: a
	// resume is that much later, and its read is shared by the sockets of
	// that much of the storm.
	replayGather = 5 * time.Millisecond
	// replaySweepAt is how many reads are kept before the old are swept.
	replaySweepAt = 1024
)

// after returns channel's messages after after (at most limit), from a read
// that began after the socket registered as reg, or from one of its own
// that later sockets may share. regs reads the hub's registration count.
func (r *replayShare) after(ctx context.Context, read func(ctx context.Context) ([]outMsg, error), key replayKey, reg uint32, regs func() uint32) ([]outMsg, error) {
	now := time.Now()
	r.mu.Lock()
	prev := r.reads[key]
	if rd := prev; rd != nil && (rd.gathering || int32(rd.regs-reg) >= 0) && now.Sub(rd.began) < replayShareFor {
		rd.takers++
		r.mu.Unlock()
		select {
		case <-rd.done:
			return rd.msgs, rd.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	storm := prev != nil && now.Sub(prev.began) < replayShareFor
	rd := &replayRead{gathering: storm, regs: regs(), began: now, done: make(chan struct{})}
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
	if storm {
		if r.gathered != nil {
			<-r.gathered()
		} else {
			<-time.After(replayGather)
		}
		r.mu.Lock()
		rd.regs, rd.gathering = regs(), false
		r.mu.Unlock()
	}
	// Others may wait on this read: it is not bound to this socket's
	// context, only to the storage timeout.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
	defer cancel()
	rd.msgs, rd.err = read(cctx)
	close(rd.done)
	return rd.msgs, rd.err
}

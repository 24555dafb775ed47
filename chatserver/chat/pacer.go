package chat

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Write pacing. A frame costs a socket write (a system call, and on loopback
// the receiver's TCP work too): about 10 µs, whatever it holds. One frame per
// message per socket is what makes broadcast expensive, so under heavy
// fan-out each socket writes at most one frame per frameGap, and whatever
// arrives meanwhile is coalesced into it. Under light load there is no gap:
// a message goes out as soon as it is fanned out.
//
// Load is the rate of message objects this server queues to sockets; pacing
// starts above coalesceAbove per second and stops below coalesceBelow (the
// gap between the two keeps it from flapping).
const (
	pacerTick     = 10 * time.Millisecond
	loadWindow    = time.Second
	coalesceAbove = 40000
	coalesceBelow = 20000
	frameGap      = 100 * time.Millisecond
)

type pacer struct {
	epoch  time.Time
	gap    atomic.Int64 // nanoseconds between a socket's frames; 0 = write at once
	queued atomic.Int64 // message objects queued since the last load sample

	mu      sync.Mutex
	waiting []*conn // sockets whose next frame waits for its gap
}

// now is monotonic nanoseconds since the pacer's epoch.
func (p *pacer) now() int64 { return int64(time.Since(p.epoch)) }

// holdLocked reports whether c must wait before its next frame, and if so
// puts it on the waiting list. Caller holds c.mu.
func (c *conn) holdLocked() bool {
	p := &c.s.pace
	gap := p.gap.Load()
	if gap == 0 || c.closing || c.pingDue || c.lastFrame == 0 || p.now()-c.lastFrame >= gap {
		return false
	}
	if !c.paced {
		c.paced = true
		p.mu.Lock()
		p.waiting = append(p.waiting, c)
		p.mu.Unlock()
	}
	return true
}

// paceLoop samples the load, sets the gap, and starts the writers of
// waiting sockets whose gap has passed.
func (s *Service) paceLoop(ctx context.Context) {
	p := &s.pace
	t := time.NewTicker(pacerTick)
	defer t.Stop()
	sampled := time.Now()
	var due []*conn
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if el := time.Since(sampled); el >= loadWindow {
			rate := float64(p.queued.Swap(0)) / el.Seconds()
			sampled = time.Now()
			switch {
			case rate > coalesceAbove && p.gap.Load() == 0:
				p.gap.Store(int64(frameGap))
				s.log.Debug("write pacing on", "objectsPerSecond", int(rate))
			case rate < coalesceBelow && p.gap.Load() != 0:
				p.gap.Store(0)
				s.log.Debug("write pacing off", "objectsPerSecond", int(rate))
			}
		}
		p.mu.Lock()
		due, p.waiting = p.waiting, due[:0]
		p.mu.Unlock()
		for _, c := range due {
			c.mu.Lock()
			c.paced = false
			if len(c.queue) > 0 || c.closing || c.pingDue {
				c.kickLocked() // waits again if its gap has not passed
			}
			c.mu.Unlock()
		}
		clear(due)
	}
}

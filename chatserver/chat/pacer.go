package chat

import (
	"context"
	"log/slog"
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
// Load is the rate of message objects this server queues to sockets. Pacing
// starts within an attack window of it rising above coalesceAbove per second
// (a second of unpaced fan-out at that rate builds a backlog that takes
// seconds to drain) and stops only after a release window below
// coalesceBelow (the gap between the two keeps it from flapping).
//
// frameGap trades latency for CPU: a broadcast reaches a server's sockets
// in a wave, and the wave's last socket waits for the whole wave, so the
// gap must leave the CPU time to finish a wave before the next is due. 150 ms
// is what two cores shared by two servers and their clients sustain at 10,000
// sockets and 400,000 deliveries a second (docs/benchmarks.md); 100 ms
// saturated them and doubled p99. People do not notice 150 ms in a chat.
const (
	pacerTick     = 10 * time.Millisecond
	attackWindow  = 100 * time.Millisecond
	releaseWindow = time.Second
	coalesceAbove = 40000
	coalesceBelow = 20000
	frameGap      = 150 * time.Millisecond
)

type pacer struct {
	epoch  time.Time
	gap    atomic.Int64 // nanoseconds between a socket's frames; 0 = write at once
	queued atomic.Int64 // message objects queued since the last load sample

	mu      sync.Mutex
	waiting []*outbox // sockets whose next frame waits for its gap
}

// pacingSwitch decides from load samples whether pacing is on.
type pacingSwitch struct {
	on    bool
	quiet time.Duration // how long the load has been under coalesceBelow
}

// update takes one sample: its window and the load in message objects per
// second over it.
func (w *pacingSwitch) update(window time.Duration, rate float64) bool {
	switch {
	case !w.on:
		w.on = rate > coalesceAbove
	case rate < coalesceBelow:
		if w.quiet += window; w.quiet >= releaseWindow {
			w.on, w.quiet = false, 0
		}
	default:
		w.quiet = 0
	}
	return w.on
}

// now is monotonic nanoseconds since the pacer's epoch.
func (p *pacer) now() int64 { return int64(time.Since(p.epoch)) }

// holdLocked reports whether o must wait before its next frame, and if so
// puts it on the waiting list. Caller holds o.mu.
func (o *outbox) holdLocked() bool {
	p := &o.w.pace
	gap := p.gap.Load()
	if gap == 0 || o.end.closing || o.ctl.due() || o.pace.lastFrame == 0 || p.now()-o.pace.lastFrame >= gap {
		return false
	}
	if !o.pace.waiting {
		o.pace.waiting = true
		p.mu.Lock()
		p.waiting = append(p.waiting, o)
		p.mu.Unlock()
	}
	return true
}

// run samples the load, sets the gap, and starts the writers of waiting
// sockets whose gap has passed, until ctx ends.
func (p *pacer) run(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(pacerTick)
	defer t.Stop()
	sampled := time.Now()
	var sw pacingSwitch
	var due []*outbox
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if el := time.Since(sampled); el >= attackWindow {
			rate := float64(p.queued.Swap(0)) / el.Seconds()
			sampled = time.Now()
			if on := sw.update(el, rate); on != (p.gap.Load() != 0) {
				gap := time.Duration(0)
				if on {
					gap = frameGap
				}
				p.gap.Store(int64(gap))
				log.Debug("write pacing", "on", on, "objectsPerSecond", int(rate))
			}
		}
		p.mu.Lock()
		due, p.waiting = p.waiting, due[:0]
		p.mu.Unlock()
		for _, o := range due {
			o.mu.Lock()
			o.pace.waiting = false
			if len(o.queue) > 0 || o.end.closing || o.ctl.due() {
				o.kickLocked() // waits again if its gap has not passed
			}
			o.mu.Unlock()
		}
		clear(due)
	}
}

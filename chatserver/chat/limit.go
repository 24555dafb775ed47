package chat

import "time"

// Per-socket budget for all client frames together, whatever their type:
// sends also spend the room's own send limit, but typing, read and resume
// frames cost the server storage calls and fan-out too. A socket past the
// budget gets rate_limited errors. Refusals have a budget of their own,
// floodLimit refilled at the frame rate: a socket whose refused frames come
// faster than that (it sends over twice the rate, sustained) is closed with
// 1008, however many of its frames still pass.
const (
	frameRate  = 20.0  // frames per second, sustained
	frameBurst = 60.0  // frames at once (a reconnect's resume and read markers)
	floodLimit = 100.0 // refusals at once before the socket is closed
)

// frameBudget is the rate and burst of every socket's frame budget.
type frameBudget struct{ rate, burst float64 }

// newFrameBudget is the defaults above, raised where a room allows more
// sends, so that the send limit, not the frame budget, is what a busy
// sender meets first.
func newFrameBudget(opts Options) frameBudget {
	return frameBudget{max(frameRate, 2*opts.MessagesPerSecond), max(frameBurst, 2*float64(opts.MessageBurst))}
}

// verdict is what a socket's frame gate decides for one frame.
type verdict int

const (
	admitted verdict = iota // within the frame budget: served
	refused                 // over it: answered rate_limited
	flooding                // refusals outpaced their budget: the socket is closed, once
	ignored                 // after flooding: neither served nor answered
)

// frameGate holds a socket's frame budget and its refusals budget, two token
// buckets refilled together at the frame rate (one clock and float32 tokens:
// it lives in every socket, which has a size class to stay in). Counting
// refusals in a row instead let a flood through: at 1,000 frames/s one frame
// in 50 passes (the budget refills every 50 ms), so no run of refusals
// reached the limit, and each refusal cost an answer. It also made closing
// depend on how fast the server read: one starved of CPU read frames slower
// than the budget refills and never closed a flood.
type frameGate struct {
	at       int64   // the pacer's clock at the last refill
	frames   float32 // tokens
	refusals float32 // tokens; below 0 once flooding was decided (no bool: padding)
}

func newFrameGate(now int64, b frameBudget) frameGate {
	return frameGate{at: now, frames: float32(b.burst), refusals: floodLimit}
}

// admit decides a frame read at now (the pacer's clock).
func (g *frameGate) admit(now int64, b frameBudget) verdict {
	if g.refusals < 0 {
		return ignored
	}
	add := float32(float64(now-g.at) / float64(time.Second) * b.rate)
	g.at = now
	g.frames = min(float32(b.burst), g.frames+add)
	g.refusals = min(floodLimit, g.refusals+add)
	switch {
	case g.frames >= 1:
		g.frames--
		return admitted
	case g.refusals >= 1:
		g.refusals--
		return refused
	}
	g.refusals = -1
	return flooding
}

// bucket is a token bucket on a monotonic clock in nanoseconds (the pacer's):
// up to burst tokens at once, refilled at rate per second. Used by one
// goroutine at a time (the socket's reader).
type bucket struct {
	tokens float64
	at     int64
}

func newBucket(now int64, burst float64) bucket { return bucket{tokens: burst, at: now} }

// take spends a token if there is one.
func (b *bucket) take(now int64, rate, burst float64) bool {
	b.tokens = min(burst, b.tokens+float64(now-b.at)/float64(time.Second)*rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

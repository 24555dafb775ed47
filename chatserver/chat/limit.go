package chat

import "time"

// Per-socket budget for all client frames together, whatever their type:
// sends also spend the room's own send limit, but typing, read and resume
// frames cost the server storage calls and fan-out too. A socket past the
// budget gets rate_limited errors; one that goes on past floodLimit refusals
// in a row is closed with 1008.
const (
	frameRate  = 20.0 // frames per second, sustained
	frameBurst = 60.0 // frames at once (a reconnect's resume and read markers)
	floodLimit = 100  // refusals in a row before the socket is closed
)

// frameBudget is the rate and burst of every socket's frame budget.
type frameBudget struct{ rate, burst float64 }

// newFrameBudget is the defaults above, raised where a room allows more
// sends, so that the send limit, not the frame budget, is what a busy
// sender meets first.
func newFrameBudget(opts Options) frameBudget {
	return frameBudget{max(frameRate, 2*opts.MessagesPerSecond), max(frameBurst, 2*float64(opts.MessageBurst))}
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

package chat

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// frameWriter is the write side of a Socket.
type frameWriter interface {
	// WriteText writes objs, newline-separated, as one text frame.
	WriteText(objs [][]byte) error
	WriteControlFrame(op int, payload []byte) error
	// WriteBlockedSince is when the write in progress began (zero: none).
	WriteBlockedSince() time.Time
	Close() error
}

// outbox is one socket's write side: the queue of encoded objects and the
// writer that empties it in coalesced frames, ping and pong replies, the
// closing handshake, and the cut-off of a client too slow to keep up. The
// writer runs only while there is something to write (a socket that waits
// holds no goroutine and no buffer), on the server's writer pool, paced
// under heavy load.
//
// Its mu also guards the socket's order: every ordering decision ends in
// queued objects, and one lock keeps the two in step.
type outbox struct {
	mu    sync.Mutex
	ws    frameWriter
	w     *wire
	queue [][]byte
	spare [][]byte // the writer's last, emptied queue, reused by the next batch
	// writing says a writer runs; greeted that hello is queued (nothing
	// goes out before it); gathering that a frame's answers are being
	// queued, to go out together when it ends (gather).
	writing, greeted, gathering bool
	ctl                         control
	pace                        pacing
	end                         ending
	// readDone: the socket's reader has stopped. wdone: the writer that
	// closed the socket is done.
	readDone, wdone signal
}

// control is the control frames a writer owes the peer.
type control struct {
	ping bool
	pong []byte // payload of the ping to answer; nil = none
}

// due says whether a control frame waits (it skips the pacing gap).
func (c control) due() bool { return c.ping || c.pong != nil }

// pacing is an outbox's place in write pacing (pacer.go).
type pacing struct {
	waiting   bool  // on the pacer's waiting list
	lastFrame int64 // pacer clock at the last frame written
}

// ending is how the socket closes, once it is closing. (code is an int32
// beside the flags: every byte of a socket counts, times 10,000.)
type ending struct {
	closing bool
	byPeer  bool // the client began the closing handshake
	sent    bool // a close frame went out already (gorilla sends one on a read-limit error)
	code    int32
	text    string
}

// Bounds on the queue memory a socket keeps between batches, and on what
// gather holds back.
const (
	maxGathered   = 256
	maxSpareQueue = 64 // a larger emptied queue is left to the GC
	maxIdleQueue  = 8  // an idle socket keeps at most this much queue capacity
)

func newOutbox(ws frameWriter, w *wire) outbox { return outbox{ws: ws, w: w} }

// enqueue queues one encoded object and reports whether it was queued.
func (o *outbox) enqueue(obj []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.enqueueLocked(obj)
}

// enqueueLocked reports whether obj was queued. A socket whose queue is
// full is too slow to keep up: it is closed rather than allowed to hold
// memory or block fan-out to everyone else. Caller holds o.mu.
func (o *outbox) enqueueLocked(obj []byte) bool {
	if o.end.closing {
		return false
	}
	if len(o.queue) >= o.w.queueMax {
		o.w.m.SlowConsumers.Inc()
		o.queue = nil
		o.closeLocked(protocol.CloseTooSlow, "too slow")
		if !o.ws.WriteBlockedSince().IsZero() {
			// The writer is stuck on a client that does not read: it would
			// take the close frame no sooner. Cut the connection now rather
			// than after the write timeout.
			_ = o.ws.Close()
		}
		return false
	}
	o.queue = append(o.queue, obj)
	o.kickLocked()
	return true
}

// gather holds the writer back while f queues its objects, then lets them
// go as one write: a resume's replay and its resumed would otherwise race
// the writer into a frame each (a write is the dearest part of a small
// frame, and a reconnect storm is mostly resumes). Past maxGathered objects
// the writer goes anyway: a long replay must not fill the queue unwritten.
func (o *outbox) gather(f func()) {
	o.mu.Lock()
	o.gathering = true
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.gathering = false
		o.kickLocked()
		o.mu.Unlock()
	}()
	f()
}

// greet queues hello ahead of whatever waited for it and lets the writer go.
func (o *outbox) greet(hello []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.queue = append([][]byte{hello}, o.queue...)
	o.greeted = true
	o.kickLocked()
}

// requestPing asks the writer to send a ping.
func (o *outbox) requestPing() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.end.closing {
		o.ctl.ping = true
		o.kickLocked()
	}
}

// answerPing has the writer answer a ping: only the writer writes, and a
// pong answers the latest ping only.
func (o *outbox) answerPing(data string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.end.closing {
		o.ctl.pong = []byte(data)
		o.kickLocked()
	}
}

// peerClosed answers the client's close frame with its own code, as RFC
// 6455 asks.
func (o *outbox) peerClosed(code int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.end.closing {
		o.end.byPeer = true
		o.closeLocked(code, "")
	}
}

// closedTooLarge records that gorilla already sent 1009 for an oversize frame.
func (o *outbox) closedTooLarge() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeLocked(protocol.CloseTooLarge, "frame too large")
	o.end.sent = true
}

// closing reports whether the socket is closing.
func (o *outbox) closing() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.end.closing
}

// close asks the writer to flush what is queued, then close with code.
func (o *outbox) close(code int, text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeLocked(code, text)
}

func (o *outbox) closeLocked(code int, text string) {
	if o.end.closing {
		return
	}
	o.end.closing, o.end.code, o.end.text = true, int32(code), text
	o.kickLocked()
}

// kickLocked starts the writer unless one runs, hello is not queued yet,
// or the pacing gap has not passed. Caller holds o.mu.
func (o *outbox) kickLocked() {
	if o.writing || !o.greeted || (o.gathering && len(o.queue) < maxGathered) || o.holdLocked() {
		return
	}
	o.writing = true
	o.w.writers.start(o)
}

// writeLoop is the outbox's writer, run by the writer pool. It writes
// whatever is queued, coalesced, until the queue is empty, then returns; the
// writer that sees the socket closing sends the close frame and closes it.
func (o *outbox) writeLoop() {
	frames := 0
	defer func() { o.w.m.FramesOut.Add(float64(frames)) }()
	for {
		o.mu.Lock()
		if len(o.queue) > 0 && o.holdLocked() {
			// Paced: the pacer starts a writer when the gap has passed.
			o.writing = false
			o.mu.Unlock()
			return
		}
		q := o.queue
		o.queue, o.spare = o.spare, nil
		ctl, end := o.ctl, o.end
		o.ctl = control{}
		if len(q) == 0 && !ctl.due() && !end.closing {
			o.writing = false
			if cap(q) <= maxIdleQueue {
				o.queue = q
			}
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()

		var err error
		if ctl.pong != nil {
			err = o.ws.WriteControlFrame(websocket.PongMessage, ctl.pong)
		}
		if ctl.ping && err == nil {
			err = o.ws.WriteControlFrame(websocket.PingMessage, nil)
		}
		if err == nil {
			var n int
			n, err = o.write(q)
			frames += n
		}
		clear(q)
		o.mu.Lock()
		if cap(q) <= maxSpareQueue && o.spare == nil {
			o.spare = q[:0]
		}
		if len(q) > 0 {
			o.pace.lastFrame = o.w.pace.now()
		}
		o.mu.Unlock()
		if err != nil {
			o.close(protocol.CloseGoingAway, "")
			o.finish()
			return
		}
		if end.closing {
			o.closeHandshake(end)
			return
		}
	}
}

// closeHandshake sends the close frame, gives the client a moment to
// answer (its reader then stops) so the frame is not lost to a TCP reset,
// and closes the socket.
func (o *outbox) closeHandshake(end ending) {
	if end.code != protocol.CloseNormal && !end.byPeer {
		o.w.m.Errors.WithLabelValues(protocol.CloseLabel(int(end.code))).Inc()
	}
	if !end.sent {
		_ = o.ws.WriteControlFrame(websocket.CloseMessage, websocket.FormatCloseMessage(int(end.code), end.text))
	}
	t := time.NewTimer(time.Second)
	select {
	case <-o.wait(&o.readDone):
	case <-t.C:
	}
	t.Stop()
	o.finish()
}

// finish closes the socket (which also unblocks the reader). Only the last
// writer calls it: once closing, no other writer starts.
func (o *outbox) finish() {
	_ = o.ws.Close()
	o.fire(&o.wdone)
}

// write sends queued objects, coalescing them into as few frames as the
// frame size cap allows. Per-frame cost dominates fan-out, so this is what
// makes broadcast cheap. It returns the frames sent.
func (o *outbox) write(q [][]byte) (frames int, err error) {
	for len(q) > 0 {
		n, i := len(q[0]), 1
		for ; i < len(q) && n+1+len(q[i]) <= maxFrameBytes; i++ {
			n += 1 + len(q[i])
		}
		if err := o.ws.WriteText(q[:i]); err != nil {
			return frames, err
		}
		frames++
		q = q[i:]
	}
	return frames, nil
}

// signal is a one-shot event whose channel is made only when someone waits
// before it fires. Most sockets live and die with nobody waiting, and an
// idle socket should not hold channels it will never need. Guarded by the
// outbox's mu.
type signal struct {
	fired bool
	ch    chan struct{}
}

var firedC = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (o *outbox) fire(e *signal) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.fired {
		return
	}
	e.fired = true
	if e.ch != nil {
		close(e.ch)
	}
}

// wait returns a channel that is closed when e has fired.
func (o *outbox) wait(e *signal) <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.fired {
		return firedC
	}
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

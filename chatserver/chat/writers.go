package chat

import (
	"runtime"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/metrics"
)

// Writer goroutines. A socket with something to write is handed to a
// writer goroutine, which writes until the socket's queue is empty and then
// takes the next socket. Writers are pooled and bounded: a broadcast to
// 17,000 sockets would otherwise start 17,000 goroutines at once, each
// growing a fresh stack to what a write needs (growing stacks alone once
// cost a tenth of fan-out's CPU) and each with an idle timer. Sockets beyond
// the writers wait in a FIFO queue. The bound is high enough that a few
// clients whose writes block (they stopped reading; the keepalive loop cuts
// those after WriteTimeout) cannot stall everyone else's delivery.
//
// Idle writers exit after writerIdle, so an idle server holds none, and at
// once when the server has stopped.
const writerIdle = 2 * time.Second

func maxWriters() int { return max(256, 64*runtime.GOMAXPROCS(0)) }

// writerPool is a server's bounded set of writer goroutines and the FIFO
// of outboxes waiting for one.
type writerPool struct {
	mu      sync.Mutex
	queue   []*outbox // sockets waiting for a writer, from head
	head    int
	idle    int // writers parked on wake
	running int
	max     int
	// wake carries one token per idle writer that was given work. Buffered
	// to max, so handing over never blocks.
	wake chan struct{}
	// stopped is closed when the server has stopped: idle writers exit.
	stopped chan struct{}
}

func (w *writerPool) init(max int) {
	w.max = max
	w.wake = make(chan struct{}, max)
	w.stopped = make(chan struct{})
}

// start gets o written: by an idle writer, a new one, or, with max
// running, the first to finish its current socket.
func (w *writerPool) start(o *outbox) {
	w.mu.Lock()
	w.queue = append(w.queue, o)
	switch {
	case w.idle > 0:
		w.idle--
		w.mu.Unlock()
		w.wake <- struct{}{}
	case w.running < w.max:
		w.running++
		w.mu.Unlock()
		go w.writer()
	default:
		w.mu.Unlock()
	}
}

// next pops the first waiting socket, or registers the caller as idle.
func (w *writerPool) next() *outbox {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head < len(w.queue) {
		c := w.queue[w.head]
		w.queue[w.head] = nil
		switch w.head++; {
		case w.head == len(w.queue):
			w.queue, w.head = w.queue[:0], 0
		case w.head >= 1024 && 2*w.head >= len(w.queue):
			// Never empty under sustained load: move the rest to the front
			// rather than let the slice grow without end.
			n := copy(w.queue, w.queue[w.head:])
			clear(w.queue[n:])
			w.queue, w.head = w.queue[:n], 0
		}
		return c
	}
	w.idle++
	return nil
}

// leave retires an idle writer unless work was handed to it meanwhile
// (its token is then in wake, and it must stay).
func (w *writerPool) leave() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.idle == 0 {
		return false // every idle writer, this one included, was given work
	}
	w.idle--
	w.running--
	return true
}

func (w *writerPool) writer() {
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		if o := w.next(); o != nil {
			o.writeLoop()
			continue
		}
		idle.Reset(writerIdle)
		select {
		case <-w.wake:
			continue
		case <-idle.C:
		case <-w.stopped:
		}
		if w.leave() {
			return
		}
		<-w.wake // a token is on its way for us
	}
}

// wire is what all of a server's outboxes share: the writer pool, the
// pacer, the queue bound, and the counters they feed.
type wire struct {
	writers  writerPool
	pace     pacer
	queueMax int
	m        *metrics.Metrics
	stopOnce sync.Once
}

func newWire(queueMax int, m *metrics.Metrics) *wire {
	w := &wire{queueMax: queueMax, m: m}
	w.pace.epoch = time.Now()
	w.writers.init(maxWriters())
	return w
}

// stop lets idle writers exit at once.
func (w *wire) stop() { w.stopOnce.Do(func() { close(w.writers.stopped) }) }

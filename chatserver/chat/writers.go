package chat

import (
	"runtime"
	"sync"
	"time"
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
// once when Run has returned.
const writerIdle = 2 * time.Second

func maxWriters() int { return max(256, 64*runtime.GOMAXPROCS(0)) }

type writerPool struct {
	mu      sync.Mutex
	queue   []*conn // sockets waiting for a writer, from head
	head    int
	idle    int // writers parked on wake
	running int
	max     int
	// wake carries one token per idle writer that was given work. Buffered
	// to max, so handing over never blocks.
	wake chan struct{}
}

func (w *writerPool) init(max int) {
	w.max = max
	w.wake = make(chan struct{}, max)
}

// startWriter gets c written: by an idle writer, a new one, or, with max
// running, the first to finish its current socket.
func (s *Service) startWriter(c *conn) {
	w := &s.writers
	w.mu.Lock()
	w.queue = append(w.queue, c)
	switch {
	case w.idle > 0:
		w.idle--
		w.mu.Unlock()
		w.wake <- struct{}{}
	case w.running < w.max:
		w.running++
		w.mu.Unlock()
		go s.writer()
	default:
		w.mu.Unlock()
	}
}

// next pops the first waiting socket, or registers the caller as idle.
func (w *writerPool) next() *conn {
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

func (s *Service) writer() {
	w := &s.writers
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		if c := w.next(); c != nil {
			c.writeLoop()
			continue
		}
		idle.Reset(writerIdle)
		select {
		case <-w.wake:
			continue
		case <-idle.C:
		case <-s.stopped:
		}
		if w.leave() {
			return
		}
		<-w.wake // a token is on its way for us
	}
}

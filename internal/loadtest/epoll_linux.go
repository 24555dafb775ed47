package loadtest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// The worker reads its sockets through epoll, not a goroutine each: on the
// machine that also runs the servers, the load tool's own cost per frame
// (a goroutine wake-up and a second read that finds the socket empty, both
// Go's way of waiting) shows up as the servers' latency. Writes (the
// sender's messages, pongs) still go through gorilla.
//
// Edge-triggered, so epoll does not poll every reported socket a second
// time to see whether it is still readable: a read that does not fill the
// buffer has emptied the socket, and only a full one is followed by another.
//
// One epoll instance serves all sockets, read by one goroutine per P. With
// an instance per goroutine, a goroutine that the scheduler left runnable
// for a few milliseconds (the servers hold the cores) came back to a backlog
// that only it could read, and read it alone on one core while the other
// idled: the tail of every broadcast ran at half speed.

type poller struct {
	epfd  int
	conns []atomic.Pointer[wconn] // by file descriptor
	chunk int                     // the least a read asks for
}

// readChunk is poller.chunk: a frame of Hubbub's (a burst of coalesced
// objects) fits, so most sockets need one read.
const readChunk = 64 << 10

// eventBatch is how many sockets a reader takes from epoll at a time: small
// enough that a broadcast's backlog (2,000 sockets and up) is shared out,
// large enough that epoll_wait stays a small part of the cost.
const eventBatch = 128

// epollET is EPOLLET as the uint32 EpollEvent.Events holds (syscall
// declares it negative).
const epollET = 1 << 31

func newPoller() (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, fmt.Errorf("getrlimit: %w", err)
	}
	p := &poller{epfd: epfd, conns: make([]atomic.Pointer[wconn], min(lim.Cur, 1<<20)), chunk: readChunk}
	// Waiting in epoll_wait would block a thread in a system call, and Go's
	// sysmon then wakes every 20 µs to take its P away (6 % of the worker's
	// CPU): an epoll fd is itself pollable, so wait for it in Go's poller
	// and collect events without blocking. Go lets one goroutine at a time
	// wait on a file: the others queue for it, and each takes a small batch
	// of events, so that a backlog is shared out rather than read by one.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		return nil, err
	}
	ready, err := os.NewFile(uintptr(epfd), "epoll").SyscallConn()
	if err != nil {
		return nil, err
	}
	for range max(1, runtime.GOMAXPROCS(0)) {
		go p.run(ready)
	}
	return p, nil
}

// startReading reads c from now on; what arrived with the handshake
// response is parsed first.
func (w *worker) startReading(c *wconn, hc *headConn) error {
	raw, err := hc.TCPConn.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	p := w.poller
	if fd >= len(p.conns) {
		return fmt.Errorf("fd %d over the open-file limit", fd)
	}
	c.fd = fd
	tail, err := c.parseFrames(hc.rest(), time.Now())
	if err != nil {
		return err
	}
	c.pending = tail
	c.poller = p
	p.conns[fd].Store(c)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.conns[fd].CompareAndSwap(c, nil)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (p *poller) run(ready syscall.RawConn) {
	events := make([]syscall.EpollEvent, eventBatch)
	buf := make([]byte, 4*p.chunk)
	for {
		var n int
		var werr error
		err := ready.Read(func(uintptr) bool {
			n, werr = syscall.EpollWait(p.epfd, events, 0)
			return n != 0 || (werr != nil && !errors.Is(werr, syscall.EINTR))
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			panic(fmt.Sprintf("epoll_wait: %v", err)) // the worker cannot go on blind
		}
		for _, ev := range events[:n] {
			if c := p.conns[ev.Fd].Load(); c != nil {
				buf = p.serve(c, buf)
			}
		}
	}
}

// serve reads c unless another goroutine is reading it, in which case that
// one reads again when done: a new edge can reach one goroutine while
// another is still reading what the previous edge announced.
func (p *poller) serve(c *wconn, buf []byte) []byte {
	c.again.Store(true)
	for c.reading.CompareAndSwap(false, true) {
		c.again.Store(false)
		buf = p.read(c, buf)
		c.reading.Store(false)
		if !c.again.Load() {
			break
		}
	}
	return buf
}

// read reads c until a read does not fill the buffer (TCP then had nothing
// more queued; what arrives later is a new edge) and handles the frames
// the reads complete.
func (p *poller) read(c *wconn, buf []byte) []byte {
	for {
		if need := 2 * (len(c.pending) + p.chunk); need > len(buf) {
			buf = make([]byte, need)
		}
		k := copy(buf, c.pending)
		n, err := syscall.Read(c.fd, buf[k:])
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return buf
		case err != nil || n == 0:
			p.drop(c)
			return buf
		}
		tail, err := c.parseFrames(buf[:k+n], time.Now())
		if err != nil {
			p.drop(c)
			return buf
		}
		c.pending = append(c.pending[:0], tail...)
		if k+n < len(buf) {
			return buf
		}
	}
}

// drop forgets a socket that failed or was closed by the server.
func (p *poller) drop(c *wconn) {
	if !p.conns[c.fd].CompareAndSwap(c, nil) {
		return // already dropped
	}
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	c.lost()
	_ = c.ws.Close()
}

// forget stops watching c before the worker closes it on purpose.
func (c *wconn) forget() {
	if p := c.poller; p != nil && p.conns[c.fd].CompareAndSwap(c, nil) {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
}

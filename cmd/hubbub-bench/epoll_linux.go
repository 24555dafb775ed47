package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The worker reads its sockets through epoll, not a goroutine each: on the
// machine that also runs the servers, the load tool's own cost per frame
// (a goroutine wake-up and a second read that finds the socket empty, both
// Go's way of waiting) shows up as the servers' latency. Edge-triggered, so
// epoll does not poll every reported socket a second time to see whether it
// is still readable: a read that does not fill the buffer has emptied the
// socket, and only a full one is followed by another. Writes (the sender's
// messages, pongs) still go through gorilla.

type poller struct {
	epfd  int
	ready syscall.RawConn // epfd in Go's own poller: readable when events wait
	mu    sync.Mutex
	conns map[int32]*wconn
}

type pollers struct {
	ps   []*poller
	next atomic.Uint32
}

func newPollers() (*pollers, error) {
	all := &pollers{}
	for range max(1, runtime.GOMAXPROCS(0)) {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		// Waiting in epoll_wait would block a thread in a system call, and
		// Go's sysmon then wakes every 20 µs to take its P away (6 % of the
		// worker's CPU): an epoll fd is itself pollable, so wait for it
		// in Go's poller and collect events without blocking.
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, err
		}
		rc, err := os.NewFile(uintptr(fd), "epoll").SyscallConn()
		if err != nil {
			return nil, err
		}
		p := &poller{epfd: fd, ready: rc, conns: map[int32]*wconn{}}
		all.ps = append(all.ps, p)
		go p.run()
	}
	return all, nil
}

// startReading reads c from now on; rest is what arrived with the
// handshake response.
func (w *worker) startReading(c *wconn, hc *headConn) error {
	raw, err := hc.TCPConn.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	c.fd = fd
	tail, err := c.parseFrames(hc.rest(), time.Now())
	if err != nil {
		return err
	}
	c.pending = tail
	p := w.pollers.ps[int(w.pollers.next.Add(1))%len(w.pollers.ps)]
	c.poller = p
	p.mu.Lock()
	p.conns[int32(fd)] = c
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, int32(fd))
		p.mu.Unlock()
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (p *poller) run() {
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 256<<10)
	for {
		var n int
		var werr error
		err := p.ready.Read(func(uintptr) bool {
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
			p.mu.Lock()
			c := p.conns[ev.Fd]
			p.mu.Unlock()
			if c != nil {
				buf = p.read(c, buf)
			}
		}
	}
}

// epollET is EPOLLET as the uint32 EpollEvent.Events holds (syscall
// declares it negative).
const epollET = 1 << 31

// read reads c until a read does not fill the buffer (TCP then had nothing
// more queued; what arrives later is a new edge) and handles the frames
// the reads complete.
func (p *poller) read(c *wconn, buf []byte) []byte {
	for {
		if need := 2 * (len(c.pending) + 64<<10); need > len(buf) {
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
	p.mu.Lock()
	delete(p.conns, int32(c.fd))
	p.mu.Unlock()
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	c.lost()
	_ = c.ws.Close()
}

// forget stops watching c before the worker closes it on purpose.
func (c *wconn) forget() {
	if p := c.poller; p != nil {
		p.mu.Lock()
		delete(p.conns, int32(c.fd))
		p.mu.Unlock()
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
}

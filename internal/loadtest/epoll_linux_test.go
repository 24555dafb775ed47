package loadtest

import (
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// socketPair is a loopback TCP connection: the test writes server frames on
// srv, the poller reads cli's descriptor.
func socketPair(t *testing.T) (srv, cli *net.TCPConn, fd int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli = c.(*net.TCPConn)
	s := <-accepted
	if s == nil {
		t.FailNow()
	}
	srv = s.(*net.TCPConn)
	t.Cleanup(func() { srv.Close(); cli.Close() })
	rc, err := cli.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return srv, cli, fd
}

// testConn is a poller with a 4 KB read size (a 16 KB buffer, so a few
// dozen KB take many reads) and fd registered with it as a socket whose
// hello has come.
func testConn(fd int) (*poller, *wconn) {
	p := &poller{chunk: 4 << 10, conns: make([]atomic.Pointer[wconn], fd+1)}
	c := &wconn{w: &worker{}, fd: fd, poller: p, helloed: true, hello: make(chan struct{}), lastSeq: []int64{-1}}
	p.conns[fd].Store(c)
	return p, c
}

// queued is how many bytes wait in fd's receive queue (SIOCINQ).
func queued(t *testing.T, fd int) int {
	t.Helper()
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}

// Epoll is edge-triggered: a socket is reported once for what arrived, so
// the reader that takes the edge must read until the socket is empty.
// Bytes left behind would wait, unreported, until the server wrote again.
func TestServeDrainsTheSocketOnOneEdge(t *testing.T) {
	tests := []struct {
		name   string
		frames int
		text   int // bytes of filler in each message
	}{
		{"one frame", 1, 10},
		{"less than one read", 20, 10},
		{"many reads of small frames", 400, 20},
		{"frames that straddle reads", 97, 300},
		{"one frame larger than the buffer", 1, 40 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _, fd := socketPair(t)
			var wire []byte
			for seq := range tt.frames {
				payload := fmt.Appendf(nil, `{"type":"message","channel":"general","text":"hb 0 %d 0 %d %s"}`,
					time.Now().UnixNano(), seq, make([]byte, tt.text))
				wire = append(appendHeaderForTest(wire, len(payload)), payload...)
			}
			if _, err := srv.Write(wire); err != nil {
				t.Fatal(err)
			}
			// Everything must be queued before the one serve below (it all
			// fits the receive window). Loopback delivers in the writer's
			// system call; the bounded wait covers a kernel that does not.
			for deadline := time.Now().Add(5 * time.Second); queued(t, fd) < len(wire); {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d bytes arrived", queued(t, fd), len(wire))
				}
				time.Sleep(time.Millisecond)
			}

			p, c := testConn(fd)
			w := c.w
			p.serve(c, make([]byte, 4*p.chunk))

			if got := w.steps[0].delivered.Load(); got != uint64(tt.frames) {
				t.Errorf("one serve handled %d of %d messages", got, tt.frames)
			}
			if n := queued(t, fd); n != 0 {
				t.Errorf("%d bytes left in the socket", n)
			}
			if len(c.pending) != 0 || c.gone.Load() {
				t.Errorf("pending %d bytes, dropped %v; want 0, false", len(c.pending), c.gone.Load())
			}
		})
	}
}

// A socket another reader holds is left to it, with a note to read again.
func TestServeLeavesAHeldSocketToItsReader(t *testing.T) {
	srv, _, fd := socketPair(t)
	payload := []byte(`{"type":"message","text":"hb 0 1 0 0"}`)
	if _, err := srv.Write(append(appendHeaderForTest(nil, len(payload)), payload...)); err != nil {
		t.Fatal(err)
	}
	p, c := testConn(fd)
	w := c.w
	c.reading.Store(true)
	p.serve(c, make([]byte, 4*p.chunk))
	if got := w.steps[0].delivered.Load(); got != 0 {
		t.Errorf("read a held socket: %d messages", got)
	}
	if !c.again.Load() {
		t.Error("again not set: the holder would not read what this edge announced")
	}
}

// appendHeaderForTest appends the header of an unmasked final text frame
// of n < 64 KB bytes, as a server sends it.
func appendHeaderForTest(b []byte, n int) []byte {
	if n < 126 {
		return append(b, 0x81, byte(n))
	}
	return append(b, 0x81, 126, byte(n>>8), byte(n))
}

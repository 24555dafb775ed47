// Package wsconn upgrades HTTP requests to gorilla/websocket connections
// whose reader can wait for the next frame on a small stack.
//
// A chat server holds one reader goroutine per socket, and most sockets are
// idle most of the time. A goroutine parked inside gorilla's ReadMessage
// keeps the stack that the whole read path (frame parsing, bufio, net, poll)
// grew to: 4 KB, more than the rest of the socket's state. WaitReadable parks
// instead in the runtime poller right under the caller, so the caller can
// run the read itself on a short-lived goroutine and keep its own stack at
// the 2 KB minimum. For that, this package owns the connection's read buffer
// (so it can tell whether input is already buffered) and consumes ping and
// pong frames itself (ReadMessage would handle a pong and then wait inside
// for the next data frame, on the deep stack this is about avoiding).
//
// The read buffer itself is lent from a pool only while input is being read:
// an idle connection holds none.
package wsconn

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// ReadBufferSize is the size of the read buffers lent to connections.
// gorilla reuses a hijacked reader only when it is larger than 256 bytes,
// and it must hold a whole control frame (at most 131 bytes from a client).
// Buffers are pooled, so a few KB cost nothing per idle connection and
// save system calls on larger frames.
const ReadBufferSize = 4096

// readers holds the read buffers not lent to a connection.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, ReadBufferSize) }}

// Conn is an upgraded WebSocket connection.
type Conn struct {
	*websocket.Conn
	// br is gorilla's reader (it keeps this pointer). While input is read it
	// is a copy of lent, sharing lent's buffer; while waiting it is empty.
	br   *bufio.Reader
	lent *bufio.Reader // from readers; nil while nothing is lent
	nc   net.Conn
	rc   syscall.RawConn // nil when the connection has no file descriptor

	writeSince atomic.Int64 // unix nanoseconds when the write in progress began; 0 = none
}

// Upgrade upgrades the request like u.Upgrade, giving the connection a
// read buffer this package can see. u.ReadBufferSize must be 0 (the size is
// ReadBufferSize), so gorilla reads through that buffer.
func Upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request, h http.Header) (*Conn, error) {
	if u.ReadBufferSize != 0 {
		// gorilla would read through a buffer of its own, which
		// WaitReadable cannot see: a frame could sit in it unread.
		return nil, errReadBufferSize
	}
	hw := &hijacker{ResponseWriter: w}
	ws, err := u.Upgrade(hw, r, h)
	if err != nil {
		if hw.c != nil && hw.c.lent != nil {
			hw.c.giveBack()
		}
		return nil, err
	}
	c := hw.c
	c.Conn = ws
	if sc, ok := c.nc.(syscall.Conn); ok && c.lent != nil {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	return c, nil
}

var errReadBufferSize = errors.New("wsconn: the Upgrader's ReadBufferSize must be 0")

// hijacker hands gorilla a read buffer of this package's in place of
// net/http's.
type hijacker struct {
	http.ResponseWriter
	c *Conn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		// The client sent frames before the handshake response (it must
		// not): keep the buffer that holds them, for good (rc stays nil,
		// so nothing is lent or given back).
		h.c = &Conn{br: brw.Reader, nc: nc}
		return nc, brw, nil
	}
	h.c = &Conn{br: new(bufio.Reader), nc: nc}
	h.c.lend()
	return nc, bufio.NewReadWriter(h.c.br, brw.Writer), nil
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (h *hijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Buffered is how many bytes of input are read from the socket but not yet
// consumed.
func (c *Conn) Buffered() int { return c.br.Buffered() }

// WaitReadable blocks until a read would not wait: input is buffered, the
// socket is readable, or it has failed or closed. It returns an error when
// the read deadline passes or the connection is closed meanwhile. Call it
// only between messages, never while another goroutine reads.
func (c *Conn) WaitReadable() error {
	if c.rc == nil || c.br.Buffered() > 0 {
		return nil
	}
	c.giveBack()
	err := c.rc.Read(readable)
	c.lend() // even after an error: gorilla must never see an empty reader
	return err
}

// lend gives br a pooled buffer to read nc through.
func (c *Conn) lend() {
	r := readers.Get().(*bufio.Reader)
	r.Reset(c.nc)
	*c.br = *r
	c.lent = r
}

// giveBack returns the lent buffer, which holds nothing unread.
func (c *Conn) giveBack() {
	*c.br = bufio.Reader{}
	c.lent.Reset(nil)
	readers.Put(c.lent)
	c.lent = nil
}

// HandleControl reads a ping or pong frame at the head of the input, if one
// is there, and runs its handler (PingHandler answers, PongHandler extends
// the deadline, as gorilla's ReadMessage would). It reports whether it
// handled one; otherwise the next frame is left for ReadMessage, which also
// reports anything malformed. Call it only between messages, from the
// reading goroutine; it may wait for the rest of a frame that has begun.
func (c *Conn) HandleControl() (bool, error) {
	head, err := c.br.Peek(2)
	if err != nil {
		return false, nil // ReadMessage reports it
	}
	op, size, ok := controlFrame(head)
	if !ok {
		return false, nil
	}
	frame, err := c.br.Peek(size)
	if err != nil {
		return false, nil
	}
	var payload [maxControlPayload]byte
	n := unmask(payload[:], frame)
	if _, err := c.br.Discard(size); err != nil {
		return false, err
	}
	data := string(payload[:n])
	if op == websocket.PingMessage {
		return true, c.PingHandler()(data)
	}
	return true, c.PongHandler()(data)
}

const (
	maxControlPayload = 125
	maskLen           = 4
)

// controlFrame parses the first two bytes of a client frame. It accepts
// only what RFC 6455 allows a client's ping or pong to be (final, no
// extension bits, masked, payload ≤ 125 bytes) and returns the opcode and
// the frame's whole size; anything else is ReadMessage's to judge.
func controlFrame(head []byte) (op, size int, ok bool) {
	if len(head) < 2 {
		return 0, 0, false
	}
	b0, b1 := head[0], head[1]
	op = int(b0 & 0x0f)
	if b0&0xf0 != 0x80 || (op != websocket.PingMessage && op != websocket.PongMessage) {
		return 0, 0, false
	}
	n := int(b1 & 0x7f)
	if b1&0x80 == 0 || n > maxControlPayload {
		return 0, 0, false
	}
	return op, 2 + maskLen + n, true
}

// unmask copies the payload of a complete masked control frame into dst and
// returns its length.
func unmask(dst, frame []byte) int {
	key := frame[2 : 2+maskLen]
	p := frame[2+maskLen:]
	for i, b := range p {
		dst[i] = b ^ key[i%maskLen]
	}
	return len(p)
}

// DiscardInput reads and drops up to max bytes of input for at most wait.
// After a frame over the read limit, the rest of it is still arriving:
// closing TCP with it unread would reset the connection, and the reset
// could beat the close frame to the client.
func (c *Conn) DiscardInput(max int64, wait time.Duration) {
	_ = c.nc.SetReadDeadline(time.Now().Add(wait))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, max))
}

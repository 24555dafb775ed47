package wsconn

import (
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Writing. A chat server's CPU goes on writing frames: one per socket per
// burst of messages. gorilla's writer costs, on top of the system call, two
// allocations, a buffer-pool round trip, a channel used as a lock and a
// deadline timer per frame. WriteText and WriteControlFrame build a server frame
// (unmasked) in one pooled buffer and hand it to the socket in one write.
//
// The caller has one writer per connection. Each frame is one Write, and a
// net.Conn holds its write lock for a whole Write, so frames never
// interleave, not even with the close frame gorilla writes by itself (on a
// read-limit or protocol error, from the reading goroutine). Set a ping and
// a close handler that hand their replies to the writer, so that they go
// out in order with it.
//
// There is no write deadline (setting one is a timer operation per frame):
// WriteBlockedSince tells a sweeper how long a write has been stuck, and
// closing the connection ends it.

const (
	maxHeader = 10 // FIN/opcode, length 127, 8-byte extended length
	// Buffers that grew past this (a frame with one huge object) are left
	// to the garbage collector.
	maxPooledBuffer = 256 << 10
)

var frameBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 16<<10)
	return &b
}}

// ErrControlTooLong says a control frame's payload is over 125 bytes.
var ErrControlTooLong = errors.New("wsconn: control frame payload over 125 bytes")

// WriteText writes objs, separated by newlines, as one text frame.
func (c *Conn) WriteText(objs [][]byte) error {
	bp := frameBufs.Get().(*[]byte)
	buf := append((*bp)[:0], make([]byte, maxHeader)...)
	for i, o := range objs {
		if i > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, o...)
	}
	err := c.writeFrame(websocket.TextMessage, buf)
	if cap(buf) <= maxPooledBuffer {
		*bp = buf[:0]
		frameBufs.Put(bp)
	}
	return err
}

// WriteControlFrame writes a ping, pong or close frame.
func (c *Conn) WriteControlFrame(op int, payload []byte) error {
	if len(payload) > maxControlPayload {
		return ErrControlTooLong
	}
	var b [maxHeader + maxControlPayload]byte
	n := copy(b[maxHeader:], payload)
	return c.writeFrame(op, b[:maxHeader+n])
}

// writeFrame writes buf[maxHeader:] as one frame's payload, its header
// put in the room in front.
func (c *Conn) writeFrame(op int, buf []byte) error {
	var h [maxHeader]byte
	hl := appendHeader(h[:0], op, len(buf)-maxHeader)
	start := maxHeader - len(hl)
	copy(buf[start:], hl)
	c.writeSince.Store(time.Now().UnixNano())
	_, err := c.nc.Write(buf[start:])
	c.writeSince.Store(0)
	return err
}

// appendHeader appends the header of a final, unmasked server frame
// (RFC 6455 §5.2).
func appendHeader(b []byte, op, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		return append(b, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// WriteBlockedSince is when the write in progress began, or the zero time
// when none is.
func (c *Conn) WriteBlockedSince() time.Time {
	if ns := c.writeSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

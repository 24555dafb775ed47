package loadtest

import (
	"errors"
	"net"
)

// headConn hands the WebSocket handshake to gorilla but keeps the frames
// after it: Read never returns a byte past the end of the HTTP response
// head, so gorilla's buffered reader holds no frames, and whatever arrived
// with the head is left in rest for the worker's own frame reader.
//
// Its buffer lives only as long as the handshake: rest lets it go, since a
// worker holds tens of thousands of these for as long as their sockets.
type headConn struct {
	*net.TCPConn
	buf   []byte // headBufSize, made at the first Read, dropped by rest
	have  []byte // read from the socket, not yet returned
	match int    // bytes of "\r\n\r\n" just seen
	done  bool   // the head has been returned
}

var headEnd = []byte("\r\n\r\n")

// headBufSize is what headConn reads at a time during the handshake.
const headBufSize = 4096

// errHeadRead says something read past the handshake through gorilla:
// after it the worker reads the socket itself.
var errHeadRead = errors.New("headConn: read after the handshake")

func (h *headConn) Read(p []byte) (int, error) {
	if h.done {
		return 0, errHeadRead
	}
	if len(h.have) == 0 {
		if h.buf == nil {
			h.buf = make([]byte, headBufSize)
		}
		n, err := h.TCPConn.Read(h.buf)
		if n == 0 {
			return 0, err
		}
		h.have = h.buf[:n]
	}
	n := 0
	for n < len(h.have) && n < len(p) && !h.done {
		b := h.have[n]
		switch {
		case b == headEnd[h.match]:
			h.match++
		case b == '\r':
			h.match = 1
		default:
			h.match = 0
		}
		h.done = h.match == len(headEnd)
		n++
	}
	copy(p, h.have[:n])
	h.have = h.have[n:]
	return n, nil
}

// rest takes the bytes that arrived after the head, and lets the buffer
// go: nothing reads through headConn after the handshake.
func (h *headConn) rest() []byte {
	r := append([]byte(nil), h.have...)
	h.have, h.buf = nil, nil
	return r
}

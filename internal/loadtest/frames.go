package loadtest

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/gorilla/websocket"
)

// maxServerFrame bounds one server frame the worker accepts.
const maxServerFrame = 16 << 20

var (
	errFrameTooLarge = errors.New("server frame too large")
	errMaskedFrame   = errors.New("server frame is masked")
	errFragmented    = errors.New("fragmented server frame")
	errClosed        = errors.New("server sent close")
	errOpcode        = errors.New("unexpected opcode")
)

// parseFrames handles the complete server frames at the front of b (RFC
// 6455: unmasked, and Hubbub never fragments) and returns what is left: the
// start of a frame still arriving.
func (c *wconn) parseFrames(b []byte, now time.Time) ([]byte, error) {
	for len(b) >= 2 {
		op, fin := int(b[0]&0x0f), b[0]&0x80 != 0
		if b[1]&0x80 != 0 {
			return nil, errMaskedFrame
		}
		n, h := int(b[1]&0x7f), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return b, nil
			}
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return b, nil
			}
			u := binary.BigEndian.Uint64(b[2:])
			if u > maxServerFrame {
				return nil, errFrameTooLarge
			}
			n, h = int(u), 10
		}
		if n > maxServerFrame {
			return nil, errFrameTooLarge
		}
		if len(b) < h+n {
			return b, nil
		}
		payload := b[h : h+n]
		switch {
		case op == websocket.TextMessage && fin && c.w.job.Mode == centrifugoTarget:
			if err := c.centrifugoFrame(payload, now); err != nil {
				return nil, err
			}
		case op == websocket.TextMessage && fin:
			c.frame(payload, now)
		case op == websocket.PingMessage:
			// gorilla's WriteControl is safe beside the sender's writes.
			if err := c.ws.WriteControl(websocket.PongMessage, append([]byte(nil), payload...), now.Add(10*time.Second)); err != nil {
				return nil, err
			}
		case op == websocket.PongMessage:
		case op == websocket.CloseMessage:
			return nil, errClosed
		case !fin || op == 0:
			return nil, errFragmented
		default:
			return nil, errOpcode
		}
		b = b[h+n:]
	}
	return b, nil
}

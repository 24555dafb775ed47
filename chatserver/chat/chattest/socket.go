// Package chattest is a stand-in WebSocket for unit tests of the chat core:
// no network, every frame the server writes recorded, client frames fed in
// by the test. It satisfies chat.Socket.
package chattest

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Wait bounds how long a test waits for the server to write something.
const Wait = 5 * time.Second

// Control is a control frame the server wrote.
type Control struct {
	Op      int // websocket.PingMessage, PongMessage or CloseMessage
	Payload []byte
}

// Socket records what the server writes and feeds it what the test sends.
// Its zero value is not usable: use New.
type Socket struct {
	mu       sync.Mutex
	changed  chan struct{} // a token after every change a test may wait for
	texts    [][]byte      // each text frame written
	controls []Control
	closed   bool
	taken    map[int]bool // objects (by index) already taken by Next
	writeErr error
	gate     chan struct{} // while set, writes block until it is closed
	blocked  time.Time

	input    chan clientFrame
	next     *clientFrame
	done     chan struct{} // closed by Close
	deadline time.Time
	limit    int64
	onPing   func(string) error
	onClose  func(int, string) error
}

type clientFrame struct {
	typ   int
	data  []byte
	close int // a close frame with this code, when set
	ping  string
}

// New returns an open Socket.
func New() *Socket {
	return &Socket{changed: make(chan struct{}, 1), input: make(chan clientFrame, 1024), done: make(chan struct{})}
}

func (s *Socket) note() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// --- the server's side (chat.Socket) ---

// WriteText records objs as one text frame.
func (s *Socket) WriteText(objs [][]byte) error {
	if err := s.waitGate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.note()
	if s.closed {
		return errClosed
	}
	if s.writeErr != nil {
		return s.writeErr
	}
	s.texts = append(s.texts, bytes.Join(objs, []byte("\n")))
	return nil
}

// WriteControlFrame records a control frame.
func (s *Socket) WriteControlFrame(op int, payload []byte) error {
	if err := s.waitGate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.note()
	if s.closed {
		return errClosed
	}
	s.controls = append(s.controls, Control{op, append([]byte(nil), payload...)})
	return nil
}

// waitGate blocks while a test holds writes (Block), until it lets go or
// the socket closes.
func (s *Socket) waitGate() error {
	s.mu.Lock()
	gate := s.gate
	if gate != nil {
		s.blocked = time.Now()
		s.note()
	}
	s.mu.Unlock()
	if gate == nil {
		return nil
	}
	select {
	case <-gate:
	case <-s.done:
	}
	s.mu.Lock()
	s.blocked = time.Time{}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return errClosed
	}
	return nil
}

// WriteBlockedSince is when the blocked write began, zero when none is.
func (s *Socket) WriteBlockedSince() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocked
}

// Close closes the socket: reads and writes fail from now on.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.note()
	}
	return nil
}

func (s *Socket) SetReadLimit(limit int64) { s.mu.Lock(); s.limit = limit; s.mu.Unlock() }
func (s *Socket) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}
func (s *Socket) SetPingHandler(h func(string) error) { s.mu.Lock(); s.onPing = h; s.mu.Unlock() }
func (s *Socket) SetPongHandler(func(string) error)   {}
func (s *Socket) SetCloseHandler(h func(int, string) error) {
	s.mu.Lock()
	s.onClose = h
	s.mu.Unlock()
}
func (s *Socket) Buffered() int                     { return 0 }
func (s *Socket) DiscardInput(int64, time.Duration) {}

// WaitReadable waits for the test's next frame, or the socket's close.
func (s *Socket) WaitReadable() error {
	if s.next != nil {
		return nil
	}
	select {
	case f := <-s.input:
		s.next = &f
		return nil
	case <-s.done:
		return errClosed
	}
}

// HandleControl handles a ping the test sent, as gorilla would: through
// the ping handler.
func (s *Socket) HandleControl() (bool, error) {
	if s.next == nil || s.next.ping == "" {
		return false, nil
	}
	f := s.next
	s.next = nil
	s.mu.Lock()
	h := s.onPing
	s.mu.Unlock()
	return true, h(f.ping)
}

// ReadMessage returns the test's next data frame. A close frame from the
// test goes to the close handler and ends reading, as with gorilla.
func (s *Socket) ReadMessage() (int, []byte, error) {
	if err := s.WaitReadable(); err != nil {
		return 0, nil, err
	}
	f := s.next
	s.next = nil
	if f.close != 0 {
		s.mu.Lock()
		h := s.onClose
		s.mu.Unlock()
		_ = h(f.close, "")
		return 0, nil, &websocket.CloseError{Code: f.close}
	}
	return f.typ, f.data, nil
}

// --- the test's side ---

// Send feeds the server a text frame.
func (s *Socket) Send(text string) {
	s.input <- clientFrame{typ: websocket.TextMessage, data: []byte(text)}
}

// SendBinary feeds the server a binary frame.
func (s *Socket) SendBinary(data []byte) {
	s.input <- clientFrame{typ: websocket.BinaryMessage, data: data}
}

// SendPing feeds the server a ping frame.
func (s *Socket) SendPing(payload string) { s.input <- clientFrame{ping: payload} }

// SendClose feeds the server a close frame with code.
func (s *Socket) SendClose(code int) { s.input <- clientFrame{close: code} }

// FailWrites makes every write from now on fail with err.
func (s *Socket) FailWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeErr = err
}

// Block makes writes block (WriteBlockedSince then says since when) until
// the returned function is called or the socket closes.
func (s *Socket) Block() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.gate = gate
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.gate == gate {
			s.gate = nil
			close(gate)
		}
	}
}

// Texts returns the text frames written so far.
func (s *Socket) Texts() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.texts...)
}

// Controls returns the control frames written so far.
func (s *Socket) Controls() []Control {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Control(nil), s.controls...)
}

// Closed reports whether the socket is closed.
func (s *Socket) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// ReadLimit is the read limit the server set.
func (s *Socket) ReadLimit() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// Await waits until cond holds, checking it after every change.
func (s *Socket) Await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(Wait)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-s.changed:
		case <-deadline.C:
			t.Fatalf("waited %v for %s", Wait, what)
		}
	}
}

// CloseCode waits for the server's close frame and returns its code.
func (s *Socket) CloseCode(t testing.TB) int {
	t.Helper()
	var code int
	s.Await(t, "a close frame", func() bool {
		for _, c := range s.Controls() {
			if c.Op == websocket.CloseMessage {
				code = 1005
				if len(c.Payload) >= 2 {
					code = int(c.Payload[0])<<8 | int(c.Payload[1])
				}
				return true
			}
		}
		return false
	})
	return code
}

// Objects returns every object written so far, decoded, in order.
func (s *Socket) Objects(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range s.Texts() {
		for _, line := range bytes.Split(f, []byte("\n")) {
			var obj map[string]any
			if err := json.Unmarshal(line, &obj); err != nil {
				t.Fatalf("server wrote bad JSON %q: %v", line, err)
			}
			out = append(out, obj)
		}
	}
	return out
}

// Next waits for the first object of type typ not taken yet, takes it and
// returns it. Objects of one type come in the order written; objects of
// other types are left for their own Next.
func (s *Socket) Next(t testing.TB, typ string) map[string]any {
	t.Helper()
	var found map[string]any
	s.Await(t, "a "+typ+" object", func() bool {
		for i, o := range s.Objects(t) {
			if o["type"] == typ && !s.taken[i] {
				if s.taken == nil {
					s.taken = map[int]bool{}
				}
				found, s.taken[i] = o, true
				return true
			}
		}
		return false
	})
	return found
}

var errClosed = errors.New("chattest: use of closed connection")

package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The worker's dialer keeps little per socket: a small gorilla read buffer
// (the 101 head only), write buffers borrowed per frame, and headConn's
// buffer dropped once the head is read. The handshake must still work and
// the first frame after it must reach the worker's own reader.
func TestDialerKeepsLittlePerSocket(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A long extra header: the response head is longer than gorilla's
		// read buffer.
		h := http.Header{"X-Padding": {strings.Repeat("p", 3*handshakeReadBuffer)}}
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, h)
		if err != nil {
			t.Error(err)
			return
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"hello"}`)); err != nil {
			t.Error(err)
			return
		}
		_, b, err := ws.ReadMessage()
		if err != nil {
			t.Error(err)
			return
		}
		got <- string(b)
		_, _, _ = ws.ReadMessage() // until the client closes
	}))
	defer srv.Close()

	w := &worker{job: job{LocalIP: "127.0.0.1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := w.dialer().DialContext(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	hc := ws.NetConn().(*headConn)
	// The hello frame may or may not have come with the head; read until
	// it is all there, as the worker's reader would.
	rest := hc.rest()
	if hc.buf != nil || hc.have != nil {
		t.Fatalf("headConn kept its buffer after rest: %d bytes", cap(hc.buf))
	}
	frame := []byte{0x81, byte(len(`{"type":"hello"}`))}
	frame = append(frame, `{"type":"hello"}`...)
	if len(rest) < len(frame) {
		_ = hc.TCPConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		more := make([]byte, len(frame)-len(rest))
		if _, err := hc.TCPConn.Read(more); err != nil {
			t.Fatal(err)
		}
		rest = append(rest, more...)
	}
	if string(rest) != string(frame) {
		t.Fatalf("after the head: %q, want %q", rest, frame)
	}
	if _, err := hc.Read(make([]byte, 8)); err != errHeadRead {
		t.Fatalf("read through gorilla after the head: %v, want errHeadRead", err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("from the pool")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "from the pool" {
			t.Fatalf("server got %q", s)
		}
	case <-ctx.Done():
		t.Fatal("the server got nothing")
	}
}

// A socket's duplicate tracking grows with the senders it hears from, and
// ignores a sender past the job's workers.
func TestMessageGrowsLastSeq(t *testing.T) {
	c := &wconn{w: &worker{job: job{Workers: 4}}}
	now := time.Now()
	text := func(sender, seq int) []byte {
		return fmt.Appendf(nil, "0 %d %d %d load test message", now.UnixNano(), sender, seq)
	}
	c.message(text(2, 5), now)
	if len(c.lastSeq) != 3 || c.lastSeq[0] != -1 || c.lastSeq[1] != -1 || c.lastSeq[2] != 5 {
		t.Fatalf("lastSeq %v, want [-1 -1 5]", c.lastSeq)
	}
	c.message(text(2, 5), now)
	c.message(text(0, 0), now)
	c.message(text(4, 1), now) // no such worker
	s := &c.w.steps[0]
	if d, dup := s.delivered.Load(), s.dups.Load(); d != 2 || dup != 1 {
		t.Fatalf("delivered %d, duplicates %d; want 2, 1", d, dup)
	}
	if len(c.lastSeq) != 3 {
		t.Fatalf("lastSeq %v grew for a sender past the workers", c.lastSeq)
	}
}

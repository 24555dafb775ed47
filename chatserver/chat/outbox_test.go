package chat

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hubbub-chat/hubbub/chatserver/chat/chattest"
	"github.com/hubbub-chat/hubbub/chatserver/metrics"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Compile-time checks: both sockets satisfy what the chat core consumes.
var _ Socket = (*chattest.Socket)(nil)

// newTestOutbox is an outbox on a fake socket, with its own writer pool.
func newTestOutbox(t *testing.T, queueMax int) (*outbox, *chattest.Socket) {
	t.Helper()
	w := newWire(queueMax, metrics.New())
	t.Cleanup(w.stop)
	ws := chattest.New()
	o := newOutbox(ws, w)
	return &o, ws
}

func obj(s string) []byte { return []byte(`{"o":"` + s + `"}`) }

func TestOutboxWritesNothingBeforeHello(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	o.enqueue(obj("early-1"))
	o.enqueue(obj("early-2"))
	o.requestPing()
	if n := len(ws.Texts()) + len(ws.Controls()); n != 0 {
		t.Fatalf("%d frames written before hello", n)
	}
	o.greet(obj("hello"))
	ws.Await(t, "the first frame", func() bool { return len(ws.Texts()) > 0 })
	// hello, then what waited, in one coalesced frame.
	if got, want := string(ws.Texts()[0]), `{"o":"hello"}`+"\n"+`{"o":"early-1"}`+"\n"+`{"o":"early-2"}`; got != want {
		t.Fatalf("first frame %q, want %q", got, want)
	}
}

// TestOutboxGathers: what one frame's handler queues goes out as one
// write after it, however the writer would have raced it; but a handler
// that queues more than maxGathered lets the writer go meanwhile.
func TestOutboxGathers(t *testing.T) {
	tests := []struct {
		name       string
		objs       int
		writesMore bool // frames written while still gathering
	}{
		{"a replay and its resumed: one write", 21, false},
		{"a long replay is written as it goes", maxGathered + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, ws := newTestOutbox(t, 10*maxGathered)
			o.greet(obj("hello"))
			ws.Await(t, "hello", func() bool { return len(ws.Texts()) == 1 })
			o.gather(func() {
				for i := range tt.objs {
					o.enqueue(obj(string(rune('a' + i%26))))
				}
				if tt.writesMore {
					ws.Await(t, "a write while gathering", func() bool { return len(ws.Texts()) > 1 })
				} else if n := len(ws.Texts()); n != 1 {
					t.Errorf("%d frames written while gathering %d objects", n-1, tt.objs)
				}
			})
			ws.Await(t, "every object", func() bool {
				n := 0
				for _, f := range ws.Texts()[1:] {
					n += bytes.Count(f, []byte("\n")) + 1
				}
				return n == tt.objs
			})
			if !tt.writesMore && len(ws.Texts()) != 2 {
				t.Errorf("%d frames after gathering, want hello and one", len(ws.Texts()))
			}
		})
	}
}

func TestOutboxCoalescesUpToTheFrameCap(t *testing.T) {
	tests := []struct {
		name    string
		sizes   []int // object sizes, queued while the writer is held
		wantLen []int // objects per frame
	}{
		{"small objects share one frame", []int{10, 10, 10}, []int{3}},
		{"a frame stops short of the cap", []int{maxFrameBytes / 2, maxFrameBytes / 2, 10}, []int{1, 2}},
		{"an object over the cap goes alone", []int{10, maxFrameBytes + 1, 10}, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, ws := newTestOutbox(t, 100)
			for _, n := range tt.sizes {
				o.enqueue(bytes.Repeat([]byte("x"), n))
			}
			o.greet([]byte("h"))
			want := len(tt.wantLen)
			ws.Await(t, "every frame", func() bool { return len(ws.Texts()) >= want })
			texts := ws.Texts()
			if len(texts) != want {
				t.Fatalf("%d frames, want %d", len(texts), want)
			}
			for i, f := range texts {
				objs := bytes.Count(f, []byte("\n")) + 1
				if i == 0 {
					objs-- // hello
				}
				if objs != tt.wantLen[i] {
					t.Errorf("frame %d holds %d objects, want %d", i, objs, tt.wantLen[i])
				}
				if len(f) > maxFrameBytes && objs+btoi(i == 0) > 1 {
					t.Errorf("frame %d is %d bytes with several objects: over the cap", i, len(f))
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestOutboxPingAndPong(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	o.greet(obj("hello"))
	o.requestPing()
	o.answerPing("first")
	o.answerPing("latest") // a pong answers the latest ping only
	ws.Await(t, "a ping", func() bool {
		for _, c := range ws.Controls() {
			if c.Op == websocket.PingMessage {
				return true
			}
		}
		return false
	})
	var pongs []string
	for _, c := range ws.Controls() {
		if c.Op == websocket.PongMessage {
			pongs = append(pongs, string(c.Payload))
		}
	}
	if len(pongs) > 0 && pongs[len(pongs)-1] != "latest" {
		t.Errorf("pongs %q: the last must answer the latest ping", pongs)
	}
}

func TestOutboxCloseFlushesThenHandshakes(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	o.greet(obj("hello"))
	o.enqueue(obj("last words"))
	o.close(protocol.CloseUnauthorized, "session revoked")
	if o.enqueue(obj("too late")) {
		t.Error("an object was queued after close")
	}
	if got := ws.CloseCode(t); got != protocol.CloseUnauthorized {
		t.Fatalf("close code %d, want %d", got, protocol.CloseUnauthorized)
	}
	all := string(bytes.Join(ws.Texts(), []byte("\n")))
	if !strings.Contains(all, "last words") || strings.Contains(all, "too late") {
		t.Errorf("frames before the close: %q", all)
	}
	// The writer waits for the client's answer (the reader stopping)
	// before it drops the connection.
	if ws.Closed() {
		t.Error("closed before the client could answer the close frame")
	}
	o.fire(&o.readDone)
	ws.Await(t, "the socket closed", ws.Closed)
	<-o.wait(&o.wdone)
	if got := testutil.ToFloat64(o.w.m.Errors.WithLabelValues("close_session_ended")); got != 1 {
		t.Errorf("errors{close_session_ended} = %v, want 1", got)
	}
}

func TestOutboxEchoesThePeersClose(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	o.greet(obj("hello"))
	o.peerClosed(protocol.CloseGoingAway)
	o.fire(&o.readDone)
	if got := ws.CloseCode(t); got != protocol.CloseGoingAway {
		t.Fatalf("echoed close code %d, want %d", got, protocol.CloseGoingAway)
	}
	<-o.wait(&o.wdone)
	// The client left: not an error of ours.
	if got := testutil.ToFloat64(o.w.m.Errors.WithLabelValues("close_going_away")); got != 0 {
		t.Errorf("errors{close_going_away} = %v, want 0", got)
	}
}

func TestOutboxAfterOversizeFrameSendsNoSecondClose(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	o.greet(obj("hello"))
	o.closedTooLarge() // gorilla has written the 1009 close itself
	o.fire(&o.readDone)
	<-o.wait(&o.wdone)
	for _, c := range ws.Controls() {
		if c.Op == websocket.CloseMessage {
			t.Fatalf("a second close frame went out: %q", c.Payload)
		}
	}
	if !ws.Closed() {
		t.Error("socket still open")
	}
}

func TestOutboxWriteErrorClosesTheSocket(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	ws.FailWrites(errors.New("broken pipe"))
	o.greet(obj("hello"))
	<-o.wait(&o.wdone)
	if !ws.Closed() || !o.closing() {
		t.Fatalf("after a failed write: socket closed %t, outbox closing %t", ws.Closed(), o.closing())
	}
}

func TestOutboxSlowConsumer(t *testing.T) {
	tests := []struct {
		name    string
		blocked bool // the writer is stuck on the client
	}{
		{"a full queue closes with 4408", false},
		{"a stuck writer is cut at once", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const max = 3
			o, ws := newTestOutbox(t, max)
			if tt.blocked {
				release := ws.Block()
				defer release()
				o.greet(obj("hello"))
				ws.Await(t, "the writer to block", func() bool { return !ws.WriteBlockedSince().IsZero() })
			}
			for i := range max {
				if !o.enqueue(obj("fits")) {
					t.Fatalf("object %d refused under the bound", i)
				}
			}
			if o.enqueue(obj("overflow")) {
				t.Fatal("an object past the bound was queued")
			}
			if got := testutil.ToFloat64(o.w.m.SlowConsumers); got != 1 {
				t.Errorf("slow consumers = %v, want 1", got)
			}
			if tt.blocked {
				ws.Await(t, "the socket cut", ws.Closed)
				return
			}
			o.greet(obj("hello"))
			if got := ws.CloseCode(t); got != protocol.CloseTooSlow {
				t.Fatalf("close code %d, want %d", got, protocol.CloseTooSlow)
			}
			for _, f := range ws.Texts() {
				if bytes.Contains(f, []byte("fits")) {
					t.Errorf("the dropped queue was written: %q", f)
				}
			}
		})
	}
}

func TestOutboxPacing(t *testing.T) {
	o, ws := newTestOutbox(t, 100)
	o.greet(obj("hello"))
	ws.Await(t, "hello", func() bool { return len(ws.Texts()) == 1 })
	ws.Await(t, "the writer to finish", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return !o.writing
	})
	o.w.pace.gap.Store(int64(time.Hour))
	o.enqueue(obj("waits"))
	o.mu.Lock()
	waiting := o.pace.waiting
	o.mu.Unlock()
	if !waiting || len(ws.Texts()) != 1 {
		t.Fatalf("within the gap: waiting %t, frames %d; want the object held", waiting, len(ws.Texts()))
	}
	// Control frames do not wait for the gap.
	o.requestPing()
	ws.Await(t, "the ping", func() bool { return len(ws.Controls()) == 1 })
	// With the gap gone, the pacer lets the held object out.
	o.w.pace.gap.Store(0)
	ctx, cancel := contextWithCleanup(t)
	go o.w.pace.run(ctx, discardLogger())
	ws.Await(t, "the paced frame", func() bool {
		for _, f := range ws.Texts() {
			if bytes.Contains(f, []byte("waits")) {
				return true
			}
		}
		return false
	})
	cancel()
}

// TestConnStaysInItsSizeClass: a socket's conn is allocated once and held
// for the socket's life, 10,000 of them on a busy server. It fits Go's
// 416-byte size class; a field that pushes it into the next (448) costs
// every idle socket 32 bytes. Grow it on purpose, with the idle memory
// figures of docs/benchmarks.md measured again, and move this bound.
func TestConnStaysInItsSizeClass(t *testing.T) {
	if size := unsafe.Sizeof(conn{}); size > 416 {
		t.Fatalf("conn is %d bytes, over its 416-byte size class", size)
	}
}

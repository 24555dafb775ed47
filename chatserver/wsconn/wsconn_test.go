package wsconn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// pair upgrades one real loopback connection and returns both ends.
func pair(t testing.TB) (*Conn, *websocket.Conn) {
	t.Helper()
	up := &websocket.Upgrader{}
	got := make(chan *Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(up, w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
			close(got)
			return
		}
		got <- c
	}))
	t.Cleanup(srv.Close)
	cli, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := <-got
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = cli.Close(); _ = c.Close() })
	return c, cli
}

func TestConnReadsThroughALentBuffer(t *testing.T) {
	c, _ := pair(t)
	if c.lent == nil || c.br.Size() != ReadBufferSize {
		t.Errorf("after the upgrade: lent %v, read buffer %d bytes; want a lent %d-byte buffer", c.lent != nil, c.br.Size(), ReadBufferSize)
	}
	if c.rc == nil {
		t.Error("a TCP connection should have a raw conn to wait on")
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	if err := c.WaitReadable(); err == nil {
		t.Fatal("WaitReadable past the deadline returned nil")
	}
	if c.lent == nil || c.br.Size() != ReadBufferSize {
		t.Error("after a failed wait the reader has no buffer: a later read would panic")
	}
}

// frame builds one masked client frame.
func frame(op int, payload []byte, key [4]byte) []byte {
	b := []byte{0x80 | byte(op)}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	for i, p := range payload {
		b = append(b, p^key[i%4])
	}
	return b
}

// TestRandomFramesInRandomPieces sends a random mix of pings, pongs and
// text messages of all sizes, cut into random TCP writes, and reads them
// the way the chat server does. Whatever is buffered, split or lent, every
// message arrives whole and in order and every control frame is handled.
func TestRandomFramesInRandomPieces(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			c, cli := pair(t)
			var pongs, pings []string
			c.SetPongHandler(func(s string) error { pongs = append(pongs, s); return nil })
			c.SetPingHandler(func(s string) error { pings = append(pings, s); return nil })
			c.SetReadLimit(1 << 20)
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost frame fails, not hangs

			var stream []byte
			var wantTexts, wantPongs, wantPings []string
			for i := range 200 {
				var key [4]byte
				rng.Read(key[:])
				switch rng.Intn(4) {
				case 0:
					p := fmt.Sprint("pong ", i)
					wantPongs = append(wantPongs, p)
					stream = append(stream, frame(websocket.PongMessage, []byte(p), key)...)
				case 1:
					p := fmt.Sprint("ping ", i)
					wantPings = append(wantPings, p)
					stream = append(stream, frame(websocket.PingMessage, []byte(p), key)...)
				default:
					sizes := []int{1, 100, 200, 4000, 5000, 70000}
					txt := strings.Repeat(string(rune('a'+i%26)), sizes[rng.Intn(len(sizes))])
					txt = fmt.Sprint(i, ":", txt)
					wantTexts = append(wantTexts, txt)
					stream = append(stream, frame(websocket.TextMessage, []byte(txt), key)...)
				}
			}
			go func() {
				for rest := stream; len(rest) > 0; {
					n := min(len(rest), 1+rng.Intn(3000))
					if _, err := cli.NetConn().Write(rest[:n]); err != nil {
						return
					}
					rest = rest[n:]
				}
			}()

			var texts []string
			for len(texts) < len(wantTexts) {
				if err := c.WaitReadable(); err != nil {
					t.Fatal(err)
				}
				for {
					handled, err := c.HandleControl()
					if err != nil {
						t.Fatal(err)
					}
					if !handled || c.Buffered() == 0 {
						break
					}
				}
				if c.Buffered() == 0 {
					continue // only control frames arrived: wait again
				}
				_, data, err := c.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				texts = append(texts, string(data))
			}
			// Control frames after the last text may still be in flight.
			for len(pongs) < len(wantPongs) || len(pings) < len(wantPings) {
				if err := c.WaitReadable(); err != nil {
					t.Fatal(err)
				}
				if handled, err := c.HandleControl(); err != nil || !handled {
					t.Fatalf("HandleControl = %v, %v", handled, err)
				}
			}
			if !slices.Equal(texts, wantTexts) {
				t.Errorf("texts differ: got %d, want %d", len(texts), len(wantTexts))
			}
			if !slices.Equal(pongs, wantPongs) || !slices.Equal(pings, wantPings) {
				t.Errorf("control frames differ: pongs %d/%d, pings %d/%d", len(pongs), len(wantPongs), len(pings), len(wantPings))
			}
		})
	}
}

func TestControlFramesAreHandledWithoutWaitingForData(t *testing.T) {
	tests := []struct {
		name    string
		typ     int // PingMessage or PongMessage
		payload string
	}{
		{"pong", websocket.PongMessage, "still here"},
		{"empty pong", websocket.PongMessage, ""},
		{"ping", websocket.PingMessage, "p1"},
		{"ping, largest payload", websocket.PingMessage, strings.Repeat("x", 125)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cli := pair(t)
			pinged, ponged := make(chan string, 1), make(chan string, 1)
			ping := c.PingHandler()
			c.SetPingHandler(func(s string) error { pinged <- s; return ping(s) })
			c.SetPongHandler(func(s string) error { ponged <- s; return nil })
			answered := make(chan string, 1)
			cli.SetPongHandler(func(s string) error { answered <- s; return nil })
			go func() { _, _, _ = cli.ReadMessage() }() // runs the client's pong handler

			if err := cli.WriteControl(tt.typ, []byte(tt.payload), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitReadable(); err != nil {
				t.Fatal(err)
			}
			handled, err := c.HandleControl()
			if err != nil || !handled {
				t.Fatalf("HandleControl = %v, %v; want true, nil", handled, err)
			}
			if tt.typ == websocket.PongMessage {
				if got := <-ponged; got != tt.payload {
					t.Errorf("pong handler got %q, want %q", got, tt.payload)
				}
			} else {
				if got := <-pinged; got != tt.payload {
					t.Errorf("ping handler got %q, want %q", got, tt.payload)
				}
				if got := <-answered; got != tt.payload {
					t.Errorf("client got pong %q, want %q", got, tt.payload)
				}
			}
			if c.Buffered() != 0 {
				t.Errorf("%d bytes left buffered after the control frame", c.Buffered())
			}

			// A data frame after it is untouched and reaches ReadMessage.
			if err := cli.WriteMessage(websocket.TextMessage, []byte(`{"type":"send"}`)); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitReadable(); err != nil {
				t.Fatal(err)
			}
			if handled, err := c.HandleControl(); handled || err != nil {
				t.Fatalf("HandleControl on a data frame = %v, %v; want false, nil", handled, err)
			}
			typ, data, err := c.ReadMessage()
			if err != nil || typ != websocket.TextMessage || string(data) != `{"type":"send"}` {
				t.Fatalf("ReadMessage = %d %q %v", typ, data, err)
			}
		})
	}
}

func TestPipelinedFramesAreReadInOrder(t *testing.T) {
	c, cli := pair(t)
	var pongs []string
	c.SetPongHandler(func(s string) error { pongs = append(pongs, s); return nil })
	// Several frames written back to back usually arrive in one read, so
	// later ones wait in the buffer, where WaitReadable must see them.
	for i, f := range []struct {
		typ  int
		data string
	}{{websocket.PongMessage, "a"}, {websocket.TextMessage, "one"}, {websocket.PongMessage, "b"}, {websocket.PongMessage, "c"}, {websocket.TextMessage, "two"}} {
		var err error
		if f.typ == websocket.TextMessage {
			err = cli.WriteMessage(f.typ, []byte(f.data))
		} else {
			err = cli.WriteControl(f.typ, []byte(f.data), time.Now().Add(time.Second))
		}
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	var texts []string
	for len(texts) < 2 {
		if err := c.WaitReadable(); err != nil {
			t.Fatal(err)
		}
		handled, err := c.HandleControl()
		if err != nil {
			t.Fatal(err)
		}
		if handled {
			continue
		}
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, string(data))
	}
	if got := strings.Join(texts, ","); got != "one,two" {
		t.Errorf("texts = %s", got)
	}
	if got := strings.Join(pongs, ","); got != "a,b,c" {
		t.Errorf("pongs = %s", got)
	}
}

func TestWaitReadableEndsAtTheReadDeadline(t *testing.T) {
	c, _ := pair(t)
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReadable(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable = %v, want the deadline error", err)
	}
}

func TestWaitReadableReturnsWhenThePeerGoes(t *testing.T) {
	c, cli := pair(t)
	_ = cli.NetConn().Close()
	if err := c.WaitReadable(); err != nil {
		t.Fatalf("WaitReadable = %v; want nil, leaving the error to ReadMessage", err)
	}
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("ReadMessage after the peer left: no error")
	}
}

func TestWaitReadableEndsWhenClosed(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() { done <- c.WaitReadable() }()
	_ = c.Close()
	if err := <-done; err == nil {
		t.Fatal("WaitReadable on a closed connection returned nil")
	}
}

func TestMalformedControlFramesAreLeftToGorilla(t *testing.T) {
	c, cli := pair(t)
	// A ping with RSV1 set, unmasked: not ours to judge.
	if _, err := cli.NetConn().Write([]byte{0xc9, 0x00}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReadable(); err != nil {
		t.Fatal(err)
	}
	if handled, err := c.HandleControl(); handled || err != nil {
		t.Fatalf("HandleControl = %v, %v; want false, nil", handled, err)
	}
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("gorilla accepted a malformed frame")
	}
}

func TestControlFrame(t *testing.T) {
	tests := []struct {
		name     string
		head     []byte
		op, size int
		ok       bool
	}{
		{"masked ping", []byte{0x89, 0x80 | 5}, websocket.PingMessage, 11, true},
		{"masked pong, empty", []byte{0x8a, 0x80}, websocket.PongMessage, 6, true},
		{"largest pong", []byte{0x8a, 0x80 | 125}, websocket.PongMessage, 131, true},
		{"unmasked ping", []byte{0x89, 5}, 0, 0, false},
		{"extended length", []byte{0x89, 0x80 | 126}, 0, 0, false},
		{"not final", []byte{0x09, 0x80}, 0, 0, false},
		{"rsv bit", []byte{0x99, 0x80}, 0, 0, false},
		{"close", []byte{0x88, 0x80}, 0, 0, false},
		{"text", []byte{0x81, 0x85}, 0, 0, false},
		{"short", []byte{0x89}, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, size, ok := controlFrame(tt.head)
			if op != tt.op || size != tt.size || ok != tt.ok {
				t.Errorf("controlFrame(% x) = %d, %d, %v; want %d, %d, %v", tt.head, op, size, ok, tt.op, tt.size, tt.ok)
			}
		})
	}
}

// FuzzControlFrame checks the frame parser against untrusted bytes: it
// never accepts what does not fit a client control frame, and unmasking
// what it accepts round-trips.
func FuzzControlFrame(f *testing.F) {
	f.Add([]byte{0x89, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
	f.Add([]byte{0x8a, 0x80, 0, 0, 0, 0})
	f.Add([]byte{0x81, 0xfe, 0, 200})
	f.Fuzz(func(t *testing.T, b []byte) {
		op, size, ok := controlFrame(b)
		if !ok {
			return
		}
		if op != websocket.PingMessage && op != websocket.PongMessage {
			t.Fatalf("accepted opcode %d", op)
		}
		if size < 6 || size > 131 {
			t.Fatalf("size %d out of range", size)
		}
		if len(b) < size {
			return // HandleControl would wait for the rest
		}
		var dst [maxControlPayload]byte
		n := unmask(dst[:], b[:size])
		for i := range n {
			if dst[i]^b[2+i%4] != b[6+i] {
				t.Fatalf("byte %d not unmasked", i)
			}
		}
	})
}

func TestAppendHeader(t *testing.T) {
	tests := []struct {
		op, n int
		want  []byte
	}{
		{websocket.TextMessage, 0, []byte{0x81, 0}},
		{websocket.TextMessage, 125, []byte{0x81, 125}},
		{websocket.TextMessage, 126, []byte{0x81, 126, 0, 126}},
		{websocket.TextMessage, 65535, []byte{0x81, 126, 0xff, 0xff}},
		{websocket.TextMessage, 65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{websocket.PingMessage, 0, []byte{0x89, 0}},
		{websocket.CloseMessage, 2, []byte{0x88, 2}},
	}
	for _, tt := range tests {
		if got := appendHeader(nil, tt.op, tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("appendHeader(%d, %d) = % x, want % x", tt.op, tt.n, got, tt.want)
		}
	}
}

// TestWrittenFramesReadByGorilla checks the frames this package writes
// against gorilla's client, at every length encoding.
func TestWrittenFramesReadByGorilla(t *testing.T) {
	c, cli := pair(t)
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 300000} {
		objs := [][]byte{bytes.Repeat([]byte("a"), n), []byte(`{"type":"x"}`)}
		if err := c.WriteText(objs); err != nil {
			t.Fatal(err)
		}
		typ, data, err := cli.ReadMessage()
		if err != nil || typ != websocket.TextMessage || !bytes.Equal(data, bytes.Join(objs, []byte("\n"))) {
			t.Fatalf("%d-byte object: got type %d, %d bytes, %v", n, typ, len(data), err)
		}
	}
	pinged := make(chan string, 1)
	cli.SetPingHandler(func(s string) error { pinged <- s; return nil })
	if err := c.WriteControlFrame(websocket.PingMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteControlFrame(websocket.CloseMessage, websocket.FormatCloseMessage(4401, "session expired")); err != nil {
		t.Fatal(err)
	}
	_, _, err := cli.ReadMessage()
	if got := <-pinged; got != "hi" {
		t.Errorf("ping payload %q", got)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4401 || ce.Text != "session expired" {
		t.Errorf("close: %v", err)
	}
	if err := c.WriteControlFrame(websocket.PingMessage, make([]byte, 126)); !errors.Is(err, ErrControlTooLong) {
		t.Errorf("126-byte ping: %v", err)
	}
}

// TestBlockedWriteIsVisibleAndEndsOnClose: a client that stops reading
// blocks the write; the sweeper sees since when, and closing ends it.
func TestBlockedWriteIsVisibleAndEndsOnClose(t *testing.T) {
	c, _ := pair(t) // the client never reads
	if !c.WriteBlockedSince().IsZero() {
		t.Fatal("blocked before writing")
	}
	done := make(chan error, 1)
	go func() {
		big := [][]byte{bytes.Repeat([]byte("x"), 1<<20)}
		for {
			if err := c.WriteText(big); err != nil {
				done <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for c.WriteBlockedSince().IsZero() || time.Since(c.WriteBlockedSince()) < 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatal("the write never blocked")
		}
		time.Sleep(5 * time.Millisecond) // polling: a blocked write sends no event
	}
	_ = c.Close()
	if err := <-done; err == nil {
		t.Fatal("write on a closed connection succeeded")
	}
	if !c.WriteBlockedSince().IsZero() {
		t.Error("still blocked after the write ended")
	}
}

// BenchmarkWriteFrame compares one 300-byte text frame written by WriteText
// with the same frame through gorilla's writer (NextWriter, a deadline,
// Close), on a real loopback socket whose reader discards.
func BenchmarkWriteFrame(b *testing.B) {
	obj := [][]byte{bytes.Repeat([]byte("m"), 300)}
	for _, bb := range []struct {
		name  string
		write func(c *Conn) error
	}{
		{"wsconn", func(c *Conn) error { return c.WriteText(obj) }},
		{"gorilla", func(c *Conn) error {
			if err := c.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
				return err
			}
			w, err := c.NextWriter(websocket.TextMessage)
			if err != nil {
				return err
			}
			if _, err := w.Write(obj[0]); err != nil {
				return err
			}
			return w.Close()
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			c, cli := pair(b)
			go func() { _, _ = io.Copy(io.Discard, cli.NetConn()) }()
			b.ReportAllocs()
			for b.Loop() {
				if err := bb.write(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGorillasOwnWritesNeverInterleave: gorilla writes a close frame by
// itself (read limit, protocol errors) from the reading goroutine, while
// the connection's writer may be mid-frame; no frame may split another,
// even a frame larger than the socket buffer takes in one system call.
func TestGorillasOwnWritesNeverInterleave(t *testing.T) {
	c, cli := pair(t)
	const n = 300
	text := bytes.Repeat([]byte("t"), 100<<10) // several TCP writes' worth
	go func() {
		for range n {
			if err := c.WriteText([][]byte{text}); err != nil {
				return
			}
		}
	}()
	go func() {
		for range n {
			// gorilla's own write path, as its read-limit close uses
			if err := c.Conn.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(5*time.Second)); err != nil {
				return
			}
		}
	}()
	pings := 0
	cli.SetPingHandler(func(string) error { pings++; return nil })
	_ = cli.SetReadDeadline(time.Now().Add(20 * time.Second))
	for texts := 0; texts < n; texts++ {
		_, data, err := cli.ReadMessage()
		if err != nil {
			t.Fatalf("after %d texts and %d pings: %v", texts, pings, err)
		}
		if !bytes.Equal(data, text) {
			t.Fatalf("text %d corrupted (%d bytes)", texts, len(data))
		}
	}
}

func TestUpgradeRefusesAReadBufferOfGorillas(t *testing.T) {
	up := &websocket.Upgrader{ReadBufferSize: 1024}
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	if _, err := Upgrade(up, httptest.NewRecorder(), r, nil); !errors.Is(err, errReadBufferSize) {
		t.Fatalf("Upgrade = %v, want errReadBufferSize", err)
	}
}

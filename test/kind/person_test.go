//go:build kind

package kind

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/test/e2e"
)

// person is one signed-up user with one socket, whose every server object is
// kept so a step can wait for the one it expects.
type person struct {
	t    *testing.T
	name string
	p    e2e.Participant
	conn *websocket.Conn

	mu     sync.Mutex
	frames []e2e.Frame
	closed error // why the socket ended, once it has
	more   chan struct{}
}

const password = "correct-horse-battery"

func signup(ctx context.Context, t *testing.T, base, name string) e2e.Participant {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	p, err := e2e.Signup(ctx, e2e.API{BaseURL: base, Client: hc}, name, password)
	if err != nil {
		t.Fatalf("sign up %s at %s: %v", name, base, err)
	}
	return p
}

// connect opens p's socket and waits for its hello.
func connect(ctx context.Context, t *testing.T, p e2e.Participant) *person {
	t.Helper()
	conn, err := p.API.Dial(ctx, p.Token)
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	u := &person{t: t, name: p.Name, p: p, conn: conn, more: make(chan struct{}, 1)}
	go u.read()
	t.Cleanup(func() { conn.Close() })
	u.expect(ctx, "hello", func(f e2e.Frame) bool { return f.Type == "hello" })
	return u
}

func (u *person) read() {
	for {
		_, data, err := u.conn.ReadMessage()
		var fs []e2e.Frame
		if err == nil {
			fs, err = e2e.SplitFrame(data)
		}
		u.mu.Lock()
		u.frames = append(u.frames, fs...)
		if err != nil {
			u.closed = err
		}
		u.mu.Unlock()
		select {
		case u.more <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// expect waits up to 30 s for a server object matching match, and returns it.
func (u *person) expect(ctx context.Context, what string, match func(e2e.Frame) bool) e2e.Frame {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	seen := 0
	for {
		u.mu.Lock()
		frames, closed := u.frames, u.closed
		u.mu.Unlock()
		for _, f := range frames[seen:] {
			if match(f) {
				return f
			}
		}
		seen = len(frames)
		if closed != nil {
			u.t.Fatalf("%s: socket closed (%v) before %s; it got %s", u.name, closed, what, summary(frames))
		}
		select {
		case <-u.more:
		case <-ctx.Done():
			u.t.Fatalf("%s: no %s within 30 s; it got %s", u.name, what, summary(frames))
		}
	}
}

// count is how many of the server objects received so far match.
func (u *person) count(match func(e2e.Frame) bool) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, f := range u.frames {
		if match(f) {
			n++
		}
	}
	return n
}

// closeCode waits for the socket to end and returns its close code (0 when
// it ended without a close frame).
func (u *person) closeCode(ctx context.Context, limit time.Duration) int {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		u.mu.Lock()
		closed := u.closed
		u.mu.Unlock()
		if closed != nil {
			var ce *websocket.CloseError
			if errors.As(closed, &ce) {
				return ce.Code
			}
			return 0
		}
		select {
		case <-u.more:
		case <-ctx.Done():
			u.t.Fatalf("%s: socket still open after %s", u.name, limit)
		}
	}
}

func summary(frames []e2e.Frame) string {
	var b strings.Builder
	for i, f := range frames {
		if i == 20 {
			fmt.Fprintf(&b, " ... (%d in all)", len(frames))
			break
		}
		j, _ := json.Marshal(f)
		b.Write(j)
		b.WriteByte(' ')
	}
	if b.Len() == 0 {
		return "nothing"
	}
	return b.String()
}

// send sends a message (to a channel, or a DM when to is set) and waits for
// its ack; it returns the message's id.
// watch asks for the presence of users (the server answers with each one's
// status now, then changes).
func (u *person) watch(users ...string) {
	u.t.Helper()
	if err := u.conn.WriteJSON(map[string]any{"type": "watch", "users": users}); err != nil {
		u.t.Fatalf("%s: watch: %v", u.name, err)
	}
}

func (u *person) send(ctx context.Context, channel, to, text string) string {
	u.t.Helper()
	clientID := rand.Text()[:16]
	frame := map[string]string{"type": "send", "text": text, "clientId": clientID}
	if to != "" {
		frame["to"] = to
	} else {
		frame["channel"] = channel
	}
	if err := u.conn.WriteJSON(frame); err != nil {
		u.t.Fatalf("%s: send: %v", u.name, err)
	}
	ack := u.expect(ctx, "the ack of "+clientID, func(f e2e.Frame) bool {
		return (f.Type == "ack" || f.Type == "error") && f.ClientID == clientID
	})
	if ack.Type == "error" {
		u.t.Fatalf("%s: send refused: %s %s", u.name, ack.Code, ack.Message)
	}
	return ack.ID
}

// history returns the ids and texts of a channel's last 200 messages.
func history(ctx context.Context, t *testing.T, p e2e.Participant, channel string) []e2e.Frame {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.API.BaseURL+"/api/v1/channels/"+channel+"/messages?limit=200", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("history of %s: %v", channel, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("history of %s: status %d: %s", channel, resp.StatusCode, body)
	}
	var page struct {
		Messages []e2e.Frame `json:"messages"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("history of %s: %v: %s", channel, err, body)
	}
	return page.Messages
}

func dmChannel(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// fakeServer speaks just enough of the chat protocol (one channel, memory
// only) to test the client, and can misbehave on purpose: refuse sends, drop
// every socket, lose an ack, lose or reorder a message. Its faults are what
// the client must survive, or, for the last two, catch.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	// Faults, keyed by the commit count at which they strike.
	refuseEvery  int  // refuse every n-th send with an `unavailable` error
	drainAt      int  // after this many commits, tell every socket to reconnect and close it
	loseAckAt    int  // commit this message, then close its socket without acking
	loseMessage  int  // ack this message but never store or deliver it
	swapAt       int  // deliver this message after the next one
	duplicateAll bool // deliver every message twice

	mu       sync.Mutex
	tokens   map[string]string // token -> user
	users    map[string]bool
	conns    map[*fakeConn]bool
	log      []Frame // committed messages, in id order
	sends    int
	held     *Frame // a message held back by swapAt
	drained  bool
	nextTokn int
}

type fakeConn struct {
	ws   *websocket.Conn
	user string
	wmu  sync.Mutex

	// Guarded by fakeServer.mu. Like the real server, a new socket holds
	// live messages back until the client's first frame, so that a resume
	// replays before anything newer goes out.
	ready bool
	held  []Frame
	last  MessageID // newest message id sent to this socket
}

// deliverLocked sends messages newer than what the socket already has; mu is held.
func (c *fakeConn) deliverLocked(out []any, msgs ...Frame) {
	for _, m := range msgs {
		id, _ := ParseMessageID(m.ID)
		if !c.last.Less(id) {
			continue // resume and live overlap: already sent
		}
		c.last = id
		out = append(out, m)
	}
	if len(out) > 0 {
		c.send(out...)
	}
}

// readyLocked ends the hold: held messages go out; mu is held.
func (c *fakeConn) readyLocked() {
	if !c.ready {
		c.ready = true
		c.deliverLocked(nil, c.held...)
		c.held = nil
	}
}

func (c *fakeConn) send(frames ...any) {
	var lines []string
	for _, f := range frames {
		b, _ := json.Marshal(f)
		lines = append(lines, string(b))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// One WebSocket message, objects separated by newlines, as the real
	// server coalesces them.
	_ = c.ws.WriteMessage(websocket.TextMessage, []byte(strings.Join(lines, "\n")))
}

func newFakeServer(t *testing.T, configure func(*fakeServer)) *fakeServer {
	s := &fakeServer{t: t, tokens: map[string]string{}, users: map[string]bool{}, conns: map[*fakeConn]bool{}}
	if configure != nil {
		configure(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/register", s.register)
	mux.HandleFunc("POST /api/v1/login", s.login)
	mux.HandleFunc("GET /ws", s.ws)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		s.mu.Lock()
		for c := range s.conns {
			c.ws.Close()
		}
		s.mu.Unlock()
		s.srv.Close()
	})
	return s
}

func (s *fakeServer) api() API { return API{BaseURL: s.srv.URL, Client: s.srv.Client()} }

func (s *fakeServer) register(w http.ResponseWriter, r *http.Request) {
	var b struct{ Username, Password string }
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil || b.Username == "" {
		http.Error(w, `{"error":{"code":"bad_request","message":"bad body"}}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[b.Username] {
		http.Error(w, `{"error":{"code":"taken","message":"taken"}}`, http.StatusConflict)
		return
	}
	s.users[b.Username] = true
	w.WriteHeader(http.StatusCreated)
}

func (s *fakeServer) login(w http.ResponseWriter, r *http.Request) {
	var b struct{ Username, Password string }
	_ = json.NewDecoder(r.Body).Decode(&b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.users[b.Username] {
		http.Error(w, `{"error":{"code":"unauthorized","message":"invalid username or password"}}`, http.StatusUnauthorized)
		return
	}
	s.nextTokn++
	tok := fmt.Sprintf("token-%d", s.nextTokn)
	s.tokens[tok] = b.Username
	_ = json.NewEncoder(w).Encode(map[string]string{"username": b.Username, "token": tok})
}

func (s *fakeServer) ws(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	user := s.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	s.mu.Unlock()
	if user == "" {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("Origin") != "http://"+r.Host {
		http.Error(w, "bad origin", http.StatusForbidden)
		return
	}
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{ws: ws, user: user}
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		ws.Close()
	}()
	// The real server may coalesce other objects with hello (whatever was
	// queued behind it); so does this one.
	c.send(map[string]any{"type": "hello", "user": user}, Frame{Type: "presence", User: user})
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var f struct {
			Type, Channel, Text, ClientID string
			Since                         map[string]string
		}
		if err := json.Unmarshal(data, &f); err != nil {
			s.t.Errorf("fake server: client sent bad JSON %q", data)
			return
		}
		if f.Type != "resume" {
			s.mu.Lock()
			c.readyLocked()
			s.mu.Unlock()
		}
		switch f.Type {
		case "send":
			if !s.handleSend(c, f.Channel, f.Text, f.ClientID) {
				return
			}
		case "resume":
			s.resume(c, f.Since["general"])
		default:
			s.t.Errorf("fake server: unexpected frame %q", data)
		}
	}
}

// handleSend commits and fans out one message; false closes the socket.
func (s *fakeServer) handleSend(c *fakeConn, channel, text, clientID string) bool {
	s.mu.Lock()
	s.sends++
	if s.refuseEvery > 0 && s.sends%s.refuseEvery == 0 {
		s.mu.Unlock()
		c.send(Frame{Type: "error", Code: "unavailable", Message: "redis down", ClientID: clientID})
		return true
	}
	n := len(s.log) + 1
	m := Frame{Type: "message", ID: fmt.Sprintf("1700000000000-%d", n), Channel: channel, From: c.user, Text: text}
	ack := Frame{Type: "ack", ClientID: clientID, ID: m.ID}
	if n == s.loseMessage {
		s.log = append(s.log, Frame{}) // the id is used up, the message is gone
		s.mu.Unlock()
		c.send(ack)
		return true
	}

	s.log = append(s.log, m)
	deliver := []Frame{m}
	switch {
	case n == s.swapAt:
		s.held, deliver = &m, nil
	case s.held != nil:
		deliver, s.held = []Frame{m, *s.held}, nil
	}
	conns := make([]*fakeConn, 0, len(s.conns))
	for k := range s.conns {
		conns = append(conns, k)
	}
	drain := s.drainAt > 0 && n >= s.drainAt && !s.drained
	s.drained = s.drained || drain
	// Deliver while still holding mu, so every socket gets messages in
	// commit order, as a real server delivers each channel in stream order.
	defer s.mu.Unlock()

	for _, k := range conns {
		if k == c && n == s.loseAckAt {
			continue // committed, but the sender's socket dies before its ack
		}
		var out []any
		if k == c {
			out = append(out, ack)
		}
		switch {
		case !k.ready:
			k.held = append(k.held, deliver...)
			if len(out) > 0 {
				k.send(out...)
			}
		case s.duplicateAll || s.swapAt > 0:
			// Bypass the socket's ordering and dedupe: they are the fault.
			for _, d := range deliver {
				out = append(out, d)
				if s.duplicateAll {
					out = append(out, d)
				}
			}
			if len(out) > 0 {
				k.send(out...)
			}
		default:
			k.deliverLocked(out, deliver...)
		}
	}
	if n == s.loseAckAt {
		return false
	}
	if drain {
		for _, k := range conns {
			k.send(Frame{Type: "reconnect", Reason: "draining"})
			k.wmu.Lock()
			_ = k.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseServiceRestart, "draining"))
			k.ws.Close()
			k.wmu.Unlock()
		}
		return false
	}
	return true
}

// resume replays every stored message after since, in one coalesced frame.
func (s *fakeServer) resume(c *fakeConn, since string) {
	after, err := ParseMessageID(since)
	if err != nil {
		s.t.Errorf("fake server: resume since %q: %v", since, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The client has everything up to since.
	if c.last.Less(after) {
		c.last = after
	}
	var replay []Frame
	for _, m := range s.log {
		if m.ID != "" {
			replay = append(replay, m)
		}
	}
	c.deliverLocked(nil, replay...)
	c.readyLocked()
}

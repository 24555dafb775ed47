package chatclient

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Message is a chat message as the server sends it.
type Message struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	From    string `json:"from"`
	Text    string `json:"text"`
	TS      int64  `json:"ts"`
}

// Object is one server object (a line of a frame), decoded loosely.
type Object struct {
	Type     string          `json:"type"`
	Raw      json.RawMessage `json:"-"`
	ClientID string          `json:"clientId"`
	ID       string          `json:"id"`
	Channel  string          `json:"channel"`
	From     string          `json:"from"`
	Text     string          `json:"text"`
	TS       int64           `json:"ts"`
	// Entry, Emoji, On and EditedAt are set on edited, deleted and
	// reaction objects.
	Entry    string `json:"entry"`
	Emoji    string `json:"emoji"`
	On       bool   `json:"on"`
	EditedAt int64  `json:"editedAt"`
	User     string `json:"user"`
	Status   string `json:"status"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Reason   string `json:"reason"`
	// Recovered is set on resumed: per channel, whether the replay was whole.
	Recovered map[string]bool `json:"recovered"`
}

// Config configures a Client.
type Config struct {
	// Servers are base URLs ("http://127.0.0.1:8080"); each connection picks
	// one at random.
	Servers []string
	// Token is the session token (sent as a Bearer token).
	Token string
	// Channels are resumed on every connection (from the last id seen, or
	// from the start when none was seen yet).
	Channels []string
	// Watch names the people whose presence every connection asks for.
	Watch []string
	// NoReconnect makes Run return when the first connection ends.
	NoReconnect bool
	// MinBackoff and MaxBackoff bound the reconnect delay (full jitter).
	// Defaults 100ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// ResendAfter is how long a send waits after an error before it is sent
	// again with the same clientId. Default 300ms.
	ResendAfter time.Duration
	// OnObject, if set, sees every server object (from the reader goroutine;
	// it must not block).
	OnObject func(Object)
}

// Send is what the client knows about one message it sent.
type Send struct {
	ClientID string
	Channel  string
	Text     string
	// Change is set on an edit, delete or reaction (Change); nil on a message.
	Change   *ChangeOf
	ID       string // set when acknowledged
	Errors   int    // error frames naming it, and connections lost while it was unacknowledged
	Attempts int
	// Refused is the error code that refused a change for good (not one
	// storage or the rate limit may lift); "" otherwise.
	Refused  string
	inFlight bool
	retryAt  time.Time
}

// Stats count what happened to a client.
type Stats struct {
	Connects    int // successful connections (hello received)
	DialErrors  int
	Reconnects  int // "reconnect" objects (server draining)
	Redelivered int // messages dropped because their id was already seen
	OutOfOrder  int // messages with an id below the newest seen that were new
	Resumes     int // resumes sent again after the server could not serve one
	// Unrecovered counts channels a resume could not bring back whole (the
	// server no longer kept what followed the client's last id).
	Unrecovered int
	CloseCodes  []int
}

// Client is a resilient WebSocket chat client. Its methods are safe for
// concurrent use.
type Client struct {
	cfg Config

	mu        sync.Mutex
	ws        *websocket.Conn // current connection, nil when down
	connected chan struct{}   // closed while a connection is up
	sends     map[string]*Send
	order     []string // clientIds in send order
	msgs      map[string][]Message
	seen      map[string]map[string]bool   // channel -> ids
	last      map[string]string            // channel -> newest id
	resumeAt  time.Time                    // when to send resume again (zero: no need)
	states    map[string]map[string]*State // channel -> message id -> state now (changes.go)
	stats     Stats
	wmu       sync.Mutex // serializes writes on ws
}

// New returns a client; Run connects it.
func New(cfg Config) *Client {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = 300 * time.Millisecond
	}
	return &Client{
		cfg: cfg, connected: make(chan struct{}),
		sends: map[string]*Send{}, msgs: map[string][]Message{},
		seen: map[string]map[string]bool{}, last: map[string]string{},
		states: map[string]map[string]*State{},
	}
}

// Run connects and keeps reconnecting until ctx ends (or, with NoReconnect,
// until the first connection ends). It returns the last connection error.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	var lastErr error
	for ctx.Err() == nil {
		server := c.cfg.Servers[rand.IntN(len(c.cfg.Servers))]
		helloed, err := c.session(ctx, server)
		if err != nil {
			lastErr = err
		}
		if c.cfg.NoReconnect && (helloed || attempt > 0) {
			return lastErr
		}
		if helloed {
			attempt = 0
		}
		// Full jitter: a random delay up to the exponential bound.
		bound := min(c.cfg.MaxBackoff, c.cfg.MinBackoff<<min(attempt, 10))
		attempt++
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rand.Int64N(int64(bound)) + 1)):
		}
	}
	return lastErr
}

// session runs one connection; helloed reports whether it got that far.
func (c *Client) session(ctx context.Context, server string) (helloed bool, err error) {
	u, err := url.Parse(server)
	if err != nil {
		return false, err
	}
	wsURL := "ws://" + u.Host + "/ws"
	h := http.Header{}
	h.Set("Authorization", "Bearer "+c.cfg.Token)
	h.Set("Origin", "http://"+u.Host)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.DialContext(ctx, wsURL, h)
	if err != nil {
		c.mu.Lock()
		c.stats.DialErrors++
		c.mu.Unlock()
		if resp != nil {
			return false, fmt.Errorf("dial %s: %w (HTTP %d)", wsURL, err, resp.StatusCode)
		}
		return false, fmt.Errorf("dial %s: %w", wsURL, err)
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()

	// The first object is hello; then resume, then (re)send what is unacked.
	objs, err := readObjects(ws)
	if err != nil {
		return false, c.closed(err)
	}
	if len(objs) == 0 || objs[0].Type != "hello" {
		return false, fmt.Errorf("first object is %+v, want hello", objs)
	}
	c.mu.Lock()
	since := map[string]string{}
	for _, ch := range c.cfg.Channels {
		since[ch] = c.last[ch]
	}
	c.ws = ws
	c.stats.Connects++
	close(c.connected)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ws = nil
		c.connected = make(chan struct{})
		for _, s := range c.sends {
			if s.inFlight {
				s.inFlight = false
				s.Errors++ // lost with the connection: resent on the next
			}
		}
		c.mu.Unlock()
	}()
	if len(since) > 0 {
		if err := c.write(map[string]any{"type": "resume", "since": since}); err != nil {
			return true, err
		}
	}
	if len(c.cfg.Watch) > 0 {
		if err := c.write(map[string]any{"type": "watch", "users": c.cfg.Watch}); err != nil {
			return true, err
		}
	}
	for _, o := range objs {
		c.handle(o)
	}

	done := make(chan struct{})
	defer close(done)
	go c.resender(done)
	for {
		objs, err := readObjects(ws)
		if err != nil {
			return true, c.closed(err)
		}
		for _, o := range objs {
			c.handle(o)
		}
	}
}

// closed records a close code and returns err.
func (c *Client) closed(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		c.mu.Lock()
		c.stats.CloseCodes = append(c.stats.CloseCodes, ce.Code)
		c.mu.Unlock()
	}
	return err
}

func readObjects(ws *websocket.Conn) ([]Object, error) {
	_, data, err := ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var out []Object
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var o Object
		if err := json.Unmarshal(line, &o); err != nil {
			return nil, fmt.Errorf("server object %q: %w", line, err)
		}
		o.Raw = slices.Clone(line)
		out = append(out, o)
	}
	return out, nil
}

func (c *Client) handle(o Object) {
	switch o.Type {
	case "resumed":
		c.mu.Lock()
		for _, whole := range o.Recovered {
			if !whole {
				c.stats.Unrecovered++
			}
		}
		c.mu.Unlock()
	case "message":
		c.mu.Lock()
		ch := o.Channel
		if c.takeLocked(ch, o.ID) {
			c.msgs[ch] = append(c.msgs[ch], Message{ID: o.ID, Channel: ch, From: o.From, Text: o.Text, TS: o.TS})
			c.stateLocked(ch, o.ID).Text = o.Text
		}
		c.mu.Unlock()
	case "edited", "deleted", "reaction":
		c.mu.Lock()
		c.applyLocked(o)
		c.mu.Unlock()
	case "ack":
		c.mu.Lock()
		if s := c.sends[o.ClientID]; s != nil {
			s.ID, s.inFlight = o.ID, false
		}
		c.mu.Unlock()
	case "error":
		if o.ClientID == "" && o.Code == "unavailable" {
			// A resume the server could not serve: ask again shortly.
			c.mu.Lock()
			c.resumeAt = time.Now().Add(c.cfg.ResendAfter)
			c.mu.Unlock()
		}
		if o.ClientID != "" {
			c.mu.Lock()
			if s := c.sends[o.ClientID]; s != nil && s.ID == "" {
				s.Errors++
				s.inFlight = false
				s.retryAt = time.Now().Add(c.cfg.ResendAfter)
				if s.Change != nil && o.Code != "unavailable" && o.Code != "rate_limited" {
					s.Refused = o.Code // final: sending it again changes nothing
				}
			}
			c.mu.Unlock()
		}
	case "reconnect":
		c.mu.Lock()
		c.stats.Reconnects++
		c.mu.Unlock()
	}
	if c.cfg.OnObject != nil {
		c.cfg.OnObject(o)
	}
}

// takeLocked records that entry id of channel (a message, or a change of
// one) arrived, and reports whether it is new: ids come once, in order.
func (c *Client) takeLocked(ch, id string) bool {
	if c.seen[ch] == nil {
		c.seen[ch] = map[string]bool{}
	}
	if c.seen[ch][id] {
		c.stats.Redelivered++
		return false
	}
	if last := c.last[ch]; last != "" && protocol.CompareIDs(id, last) < 0 {
		c.stats.OutOfOrder++
	} else {
		c.last[ch] = id
	}
	c.seen[ch][id] = true
	return true
}

// resender sends again, with the same clientId, every send that is neither
// acknowledged nor in flight.
func (c *Client) resender(done <-chan struct{}) {
	t := time.NewTicker(c.cfg.ResendAfter / 2)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		var resume map[string]string
		now := time.Now()
		if !c.resumeAt.IsZero() && now.After(c.resumeAt) {
			c.resumeAt = time.Time{}
			resume = map[string]string{}
			for _, ch := range c.cfg.Channels {
				resume[ch] = c.last[ch]
			}
			c.stats.Resumes++
		}
		var due []*Send
		for _, id := range c.order {
			s := c.sends[id]
			if s.ID == "" && s.Refused == "" && !s.inFlight && now.After(s.retryAt) {
				s.inFlight = true
				s.Attempts++
				due = append(due, s)
			}
		}
		c.mu.Unlock()
		if len(resume) > 0 {
			if err := c.write(map[string]any{"type": "resume", "since": resume}); err != nil {
				return
			}
		}
		for _, s := range due {
			if err := c.write(frame(s)); err != nil {
				c.mu.Lock()
				s.inFlight = false
				c.mu.Unlock()
				return
			}
		}
	}
}

func frame(s *Send) map[string]any {
	if s.Change != nil {
		return s.Change.frame(s)
	}
	return map[string]any{"type": "send", "channel": s.Channel, "text": s.Text, "clientId": s.ClientID}
}

func (c *Client) write(v any) error {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return errors.New("not connected")
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ws.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	return ws.WriteMessage(websocket.TextMessage, data)
}

// Send sends text to channel and returns its clientId. The outcome (ack or
// errors) is in Sends; a send that fails is retried until acknowledged.
func (c *Client) Send(channel, text string) string {
	return c.send(&Send{Channel: channel, Text: text})
}

// send sends s (a message or a change) under a new clientId, retried until
// acknowledged (or, a change, refused).
func (c *Client) send(s *Send) string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand never fails on Linux
	s.ClientID, s.inFlight, s.Attempts = hex.EncodeToString(b[:]), true, 1
	c.mu.Lock()
	c.sends[s.ClientID] = s
	c.order = append(c.order, s.ClientID)
	c.mu.Unlock()
	if err := c.write(frame(s)); err != nil {
		c.mu.Lock()
		s.inFlight = false
		s.Errors++ // not connected: the client knows at once, and retries
		c.mu.Unlock()
	}
	return s.ClientID
}

// SendRaw writes an arbitrary client frame (for protocol tests).
func (c *Client) SendRaw(v any) error { return c.write(v) }

// WaitConnected blocks until a connection is up.
func (c *Client) WaitConnected(ctx context.Context) error {
	c.mu.Lock()
	ch := c.connected
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connected reports whether a connection is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws != nil
}

// Messages returns the channel's messages as seen, duplicates dropped.
func (c *Client) Messages(channel string) []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs[channel])
}

// Sends returns every send so far, in send order.
func (c *Client) Sends() []Send {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Send, 0, len(c.order))
	for _, id := range c.order {
		out = append(out, *c.sends[id])
	}
	return out
}

// Unacked counts sends not yet acknowledged (nor refused, for changes).
func (c *Client) Unacked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sends {
		if s.ID == "" && s.Refused == "" {
			n++
		}
	}
	return n
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.CloseCodes = slices.Clone(s.CloseCodes)
	return s
}

package e2e

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Participant is one user of a conversation, logged in on one server.
type Participant struct {
	Name  string
	Token string
	API   API
}

// Signup registers username and logs in through api.
func Signup(ctx context.Context, api API, username, password string) (Participant, error) {
	if err := api.Register(ctx, username, password); err != nil {
		return Participant{}, err
	}
	token, err := api.Login(ctx, username, password)
	if err != nil {
		return Participant{}, err
	}
	return Participant{Name: username, Token: token, API: api}, nil
}

// RandomSuffix makes user names unique per run, so a run can repeat against
// the same room.
func RandomSuffix() string { return strings.ToLower(crand.Text()[:8]) }

// Options shape a conversation.
type Options struct {
	// Channel is the public channel everyone talks in.
	Channel string
	// Messages is how many messages each participant sends at least.
	Messages int
	// Interval between one participant's sends. The server's default rate
	// limit is 5 per second with a burst of 10; a rate_limited send is retried.
	Interval time.Duration
	// AckTimeout is how long a send may stay unanswered on a live socket
	// before it is sent again with the same clientId.
	AckTimeout time.Duration
	// ExpectDisconnect keeps everyone sending until, after the midway point,
	// some socket has dropped and reconnected and AfterDrop more messages
	// were acked: the run then proves a lost server lost nothing.
	ExpectDisconnect bool
	AfterDrop        int
	// SettleTimeout bounds the wait, once every sender is done, for acked
	// messages still to arrive; what has not arrived by then is reported
	// as lost.
	SettleTimeout time.Duration
	// Midway is called once, when half of all messages are acked.
	Midway func()
	// Until, when set, keeps everyone sending until it returns true: a
	// rolling update is then covered from its first pod to its last.
	Until func() bool
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// Report is what one participant did and saw.
type Report struct {
	User       string
	Acked      int // messages the server acked (committed)
	Received   int // messages of the channel delivered, duplicates dropped
	Replayed   int // duplicate deliveries dropped by id (after a resume)
	Retries    int // sends repeated after an error frame, a lost socket or no ack
	Reconnects int
	Drains     int // reconnect frames: a draining server asked this client to come back elsewhere
	// Unrecovered counts resumes after which the server no longer kept all
	// that followed this client's last id: what it then misses is trimmed,
	// not lost by a fault, and shows here rather than as a mystery.
	Unrecovered int
	// DoubleCommits counts retried sends that were stored twice (the first
	// attempt was committed but its ack was lost, and the retry got a new id).
	DoubleCommits int
}

// sentMessage is an acked message: who sent it and what it said.
type sentMessage struct{ from, text string }

// conversation is the state the participants share.
type conversation struct {
	opts  Options
	users int

	mu             sync.Mutex
	acked          map[string]sentMessage // message id -> message
	ackCount       int
	sendersDone    map[string]bool
	midway         bool
	dropSeen       bool
	ackedAfterDrop int
}

// recordAck stores an acked message; it reports whether this ack is the one
// that reached the midway point.
func (c *conversation) recordAck(id string, m sentMessage) (midwayNow bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acked[id] = m
	c.ackCount++
	if c.dropSeen {
		c.ackedAfterDrop++
	}
	if !c.midway && c.ackCount >= c.users*c.opts.Messages/2 {
		c.midway = true
		return true
	}
	return false
}

// noteDrop records a socket lost after the midway point.
func (c *conversation) noteDrop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.midway {
		c.dropSeen = true
	}
}

// needMore reports whether senders must go on past opts.Messages because the
// expected disconnect has not been seen (or not been followed by enough acks).
func (c *conversation) needMore() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Until != nil && !c.opts.Until() {
		return true
	}
	return c.opts.ExpectDisconnect && !(c.dropSeen && c.ackedAfterDrop >= c.opts.AfterDrop)
}

func (c *conversation) senderDone(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendersDone[user] = true
}

// final returns the acked messages once every sender is done; ok is false
// before that.
func (c *conversation) final() (acked map[string]sentMessage, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sendersDone) < c.users {
		return nil, false
	}
	return c.acked, true
}

func (c *conversation) status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprintf("%d acked, midway=%t, socket dropped after midway=%t, acked after drop=%d, senders done=%d/%d",
		c.ackCount, c.midway, c.dropSeen, c.ackedAfterDrop, len(c.sendersDone), c.users)
}

// Converse has the participants chat in opts.Channel until each sent its
// messages and every participant received every acked message, then checks
// each participant saw every acked message exactly once and in id order.
// It returns the reports and an error describing every violation.
func Converse(ctx context.Context, opts Options, ps ...Participant) ([]Report, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	conv := &conversation{opts: opts, users: len(ps), acked: map[string]sentMessage{}, sendersDone: map[string]bool{}}
	names := map[string]bool{}
	for _, p := range ps {
		names[p.Name] = true
	}
	chatters := make([]*chatter, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, p := range ps {
		chatters[i] = &chatter{p: p, conv: conv, names: names, pending: map[string]*outgoing{}, settled: map[string]sentAck{}, seen: map[string]bool{}, events: make(chan event), stop: make(chan struct{})}
	}
	// Everyone is connected before anyone sends, so each participant's
	// first resume point precedes every message of the conversation.
	for i, c := range chatters {
		if errs[i] = c.connect(ctx); errs[i] != nil {
			cancel()
			break
		}
	}
	for i, c := range chatters {
		if c.conn != nil {
			wg.Go(func() { errs[i] = c.run(ctx) })
		}
	}
	wg.Wait()

	reports := make([]Report, len(ps))
	for i, c := range chatters {
		c.report.User = c.p.Name
		c.report.Received = len(c.received)
		reports[i] = c.report
	}
	if err := errors.Join(errs...); err != nil {
		return reports, fmt.Errorf("%w (%s)", err, conv.status())
	}
	acked, _ := conv.final()
	var problems []error
	for _, c := range chatters {
		problems = append(problems, c.verify(acked)...)
	}
	return reports, errors.Join(problems...)
}

// outgoing is a send not yet acked.
type outgoing struct {
	clientID, text string
	seq            int       // creation order: retries go out oldest first
	sentAt         time.Time // zero: (re)send at the next tick
}

// sentAck is a settled send.
type sentAck struct{ id, text string }

// event is what a connection's reader goroutine hands to its chatter.
type event struct {
	gen    int // which connection it came from
	frames []Frame
	err    error
}

// chatter is one participant's client: one socket at a time, one goroutine
// driving it plus one reader goroutine per socket.
type chatter struct {
	p     Participant
	conv  *conversation
	names map[string]bool // the participants: messages from anyone else are ignored

	conn    *websocket.Conn
	gen     int
	events  chan event
	stop    chan struct{} // closed when run returns: readers stop handing over events
	readers sync.WaitGroup

	next        int // messages created so far
	pending     map[string]*outgoing
	settled     map[string]sentAck // clientId -> what it was acked as
	doneSending bool
	settleStart time.Time // when every sender was done

	lastID   MessageID
	haveLast bool
	seen     map[string]bool
	received []Frame
	orderErr []error
	report   Report
}

func (c *chatter) logf(format string, args ...any) {
	c.conv.opts.Logf(c.p.Name+": "+format, args...)
}

func (c *chatter) run(ctx context.Context) error {
	defer c.readers.Wait() // after the readers are told to stop and the socket is closed
	defer c.closeConn()
	defer close(c.stop)

	tick := time.NewTicker(c.conv.opts.Interval)
	defer tick.Stop()
	for {
		if done, err := c.finished(); done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w: %d messages created, %d unacked, %d received", c.p.Name, ctx.Err(), c.next, len(c.pending), len(c.received))
		case ev := <-c.events:
			if ev.gen != c.gen {
				continue // from a socket already given up
			}
			for _, f := range ev.frames {
				if f.Type == "reconnect" {
					c.report.Drains++
					// The server is draining: it closes the socket soon.
					// Leave now and come back (to any server) with resume.
					ev.err = fmt.Errorf("server asked to reconnect (%s)", f.Reason)
					continue
				}
				c.handle(f)
			}
			if ev.err != nil {
				if err := c.reconnect(ctx, ev.err); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := c.sendOne(); err != nil {
				if err := c.reconnect(ctx, err); err != nil {
					return err
				}
			}
		}
	}
}

// finished reports whether this participant is done: it has nothing left to
// send, every sender is done, and it received every acked message.
func (c *chatter) finished() (bool, error) {
	if !c.doneSending && len(c.pending) == 0 && c.next >= c.conv.opts.Messages && !c.conv.needMore() {
		c.doneSending = true
		c.conv.senderDone(c.p.Name)
		c.logf("done sending: %d acked", c.report.Acked)
	}
	acked, ok := c.conv.final()
	if !ok {
		return false, nil
	}
	if c.settleStart.IsZero() {
		c.settleStart = time.Now()
	}
	for id := range acked {
		if !c.seen[id] {
			// Still on its way, or lost: verify tells which once the wait is over.
			return time.Since(c.settleStart) > c.conv.opts.SettleTimeout, nil
		}
	}
	return true, nil
}

// connect opens a socket, reads its hello and resumes the channel from the
// last message seen, or, on the first connect, from the last message hello
// names: a message committed between the server's hello and its subscribing
// this socket is then replayed instead of lost.
func (c *chatter) connect(ctx context.Context) error {
	conn, err := c.p.API.Dial(ctx, c.p.Token)
	if err != nil {
		return err
	}
	hello, rest, err := readHello(conn)
	if err != nil {
		conn.Close()
		return err
	}
	if !c.haveLast {
		c.haveLast = true
		for _, ch := range hello.Channels {
			if ch.Name == c.conv.opts.Channel && ch.LastID != "" {
				if c.lastID, err = ParseMessageID(ch.LastID); err != nil {
					conn.Close()
					return fmt.Errorf("hello: %w", err)
				}
			}
		}
	}
	c.conn = conn
	c.gen++
	for _, f := range rest {
		if f.Type == "reconnect" {
			c.closeConn()
			return fmt.Errorf("server asked to reconnect (%s) right after hello", f.Reason)
		}
		c.handle(f)
	}
	gen := c.gen
	c.readers.Add(1)
	go func() {
		defer c.readers.Done()
		for {
			_, data, err := conn.ReadMessage()
			var frames []Frame
			if err == nil {
				frames, err = SplitFrame(data)
			}
			select {
			case c.events <- event{gen: gen, frames: frames, err: err}:
			case <-c.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// Ask for what was missed; duplicates are dropped by id.
	since := map[string]string{c.conv.opts.Channel: c.lastIDString()}
	if err := c.write(resumeFrame{Type: "resume", Since: since}); err != nil {
		c.closeConn()
		return err
	}
	// Every unacked send goes again, same clientId, oldest first.
	for _, o := range c.pending {
		o.sentAt = time.Time{}
	}
	return nil
}

// readHello reads the first message of a new socket, which must start with
// hello; it returns hello and whatever the server coalesced after it.
func readHello(conn *websocket.Conn) (Frame, []Frame, error) {
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return Frame{}, nil, err
	}
	_, data, err := conn.ReadMessage()
	if err != nil {
		return Frame{}, nil, fmt.Errorf("waiting for hello: %w", err)
	}
	frames, err := SplitFrame(data)
	if err != nil {
		return Frame{}, nil, err
	}
	if len(frames) == 0 || frames[0].Type != "hello" {
		return Frame{}, nil, fmt.Errorf("first server object is %q, want hello", data)
	}
	return frames[0], frames[1:], conn.SetReadDeadline(time.Time{})
}

func (c *chatter) closeConn() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// reconnect replaces a lost socket, with exponential backoff and jitter,
// until ctx ends.
func (c *chatter) reconnect(ctx context.Context, cause error) error {
	c.logf("socket lost (%v); reconnecting", cause)
	c.closeConn()
	c.report.Reconnects++
	c.conv.noteDrop()
	backoff := 100 * time.Millisecond
	for {
		err := c.connect(ctx)
		if err == nil {
			c.logf("reconnected")
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: reconnecting: %w (last error: %v)", c.p.Name, ctx.Err(), err)
		}
		wait := backoff/2 + rand.N(backoff) // jitter: 0.5x..1.5x
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (c *chatter) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	return c.conn.WriteMessage(websocket.TextMessage, data)
}

// sendOne sends, in this order of preference: the oldest send due for a
// retry, the next new message, or nothing.
func (c *chatter) sendOne() error {
	var due []*outgoing
	for _, o := range c.pending {
		if o.sentAt.IsZero() || time.Since(o.sentAt) > c.conv.opts.AckTimeout {
			due = append(due, o)
		}
	}
	var o *outgoing
	if len(due) > 0 {
		o = slices.MinFunc(due, func(a, b *outgoing) int { return a.seq - b.seq })
		if !o.sentAt.IsZero() {
			c.logf("no ack for %s after %s; sending again", o.clientID, c.conv.opts.AckTimeout)
		}
		c.report.Retries++
	} else if c.next < c.conv.opts.Messages || c.conv.needMore() {
		id := crand.Text()[:20]
		o = &outgoing{clientID: id, seq: c.next, text: fmt.Sprintf("%s says #%d (%s)", c.p.Name, c.next, id)}
		c.pending[id] = o
		c.next++
	} else {
		return nil
	}
	o.sentAt = time.Now()
	return c.write(sendFrame{Type: "send", Channel: c.conv.opts.Channel, Text: o.text, ClientID: o.clientID})
}

// handle applies one server object.
func (c *chatter) handle(f Frame) {
	switch f.Type {
	case "ack":
		c.acked(f.ClientID, f.ID)
	case "message":
		if f.Channel != c.conv.opts.Channel || !c.names[f.From] {
			return // another channel, or someone else in the room
		}
		id, err := ParseMessageID(f.ID)
		if err != nil {
			c.orderErr = append(c.orderErr, fmt.Errorf("%s: message with a bad id: %w", c.p.Name, err))
			return
		}
		if c.seen[f.ID] {
			c.report.Replayed++ // a resume replays what may already be here
			return
		}
		if c.haveLast && !c.lastID.Less(id) {
			c.orderErr = append(c.orderErr, fmt.Errorf("%s: message %s arrived after %s: out of order", c.p.Name, f.ID, c.lastIDString()))
			return
		}
		c.seen[f.ID] = true
		c.received = append(c.received, f)
		c.lastID, c.haveLast = id, true
		if f.From == c.p.Name {
			// Our own message coming back settles a send whose ack was
			// lost with its socket: no need to send it again.
			for cid, o := range c.pending {
				if o.text == f.Text {
					c.acked(cid, f.ID)
				}
			}
		}
	case "resumed":
		if whole, ok := f.Recovered[c.conv.opts.Channel]; ok && !whole {
			c.report.Unrecovered++
		}
	case "error":
		if o := c.pending[f.ClientID]; o != nil && f.ClientID != "" {
			c.logf("send %s refused (%s: %s); will retry", f.ClientID, f.Code, f.Message)
			o.sentAt = time.Time{}
			return
		}
		c.logf("server error %s: %s", f.Code, f.Message)
	}
}

// acked settles the send clientID as committed under id.
func (c *chatter) acked(clientID, id string) {
	o := c.pending[clientID]
	if o == nil {
		if prev, ok := c.settled[clientID]; ok && prev.id != id {
			// A retry of a send that had been committed after all. It is a
			// second, acked message: everyone must get it too.
			c.report.DoubleCommits++
			c.logf("send %s was stored twice, as %s and %s", clientID, prev.id, id)
			c.conv.recordAck(id, sentMessage{from: c.p.Name, text: prev.text})
		}
		return
	}
	delete(c.pending, clientID)
	c.settled[clientID] = sentAck{id: id, text: o.text}
	c.report.Acked++
	if c.conv.recordAck(id, sentMessage{from: c.p.Name, text: o.text}) {
		c.logf("midway: %s", c.conv.status())
		if c.conv.opts.Midway != nil {
			c.conv.opts.Midway()
		}
	}
}

func (c *chatter) lastIDString() string {
	return fmt.Sprintf("%d-%d", c.lastID.ms, c.lastID.seq)
}

// verify checks this participant received every acked message, in id order,
// with the text that was sent. Duplicates were already dropped by id as they
// arrived (what a person sees is exactly once), and an id arriving after a
// later one was recorded as out of order.
func (c *chatter) verify(acked map[string]sentMessage) []error {
	problems := slices.Clone(c.orderErr)
	got := map[string]int{}
	for _, m := range c.received {
		got[m.ID]++
		if want, ok := acked[m.ID]; ok && (want.text != m.Text || want.from != m.From) {
			problems = append(problems, fmt.Errorf("%s: message %s is %q from %s, but %q from %s was acked", c.p.Name, m.ID, m.Text, m.From, want.text, want.from))
		}
	}
	var missing []string
	for id := range acked {
		if got[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		problems = append(problems, fmt.Errorf("%s: %d acked messages never arrived: %v", c.p.Name, len(missing), missing))
	}
	return problems
}

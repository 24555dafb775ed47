package chat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/wsconn"
)

// Connection timing, as in gorilla's chat example: the read deadline is
// renewed by every pong, pings go out at 9/10 of it, every write has a deadline.
const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second // the default of Options.PongWait
	maxFrameBytes  = 64 << 10         // a coalesced frame is split past this
	storageTimeout = 5 * time.Second
	typingInterval = time.Second
)

// ReadLimit is the largest client frame accepted for a given text limit: the
// text may grow up to 6x when JSON-escaped (\u00XX), plus the envelope.
// Larger frames close the socket with 1009.
func ReadLimit(maxMessageBytes int) int64 { return int64(maxMessageBytes)*6 + 1024 }

// Peer is the authenticated person behind a socket.
type Peer struct {
	User    string
	Session string // session id, for revocation
	// Check re-validates the session (and slides its expiry); an error wrapping
	// ErrSessionGone closes the socket with 4401.
	Check func(ctx context.Context) error
}

// ErrSessionGone says a session expired or was revoked.
var ErrSessionGone = errors.New("session expired or revoked")

// outMsg is a committed message with its encoding, shared by all sockets.
type outMsg struct {
	id    protocol.ID
	m     protocol.Message
	frame []byte
}

type heldBatch struct {
	channel string
	msgs    []outMsg
}

// resumeWindow is how long a new socket holds live messages back waiting for
// the client's first frame. A reconnecting client sends "resume" first; had
// live messages gone out before its replay, it would see them out of order.
const resumeWindow = 2 * time.Second

type conn struct {
	s       *Service
	ws      *wsconn.Conn
	user    string
	session string
	check   func(ctx context.Context) error // re-validates the session; nil = never
	dms     map[string]struct{}             // guarded by s.mu

	// Used only by the Service's keepalive goroutine (set before the conn
	// is registered): when this socket is next pinged and its session checked.
	nextPing, nextCheck time.Time

	mu    sync.Mutex
	queue [][]byte
	spare [][]byte // the writer's last, emptied queue, reused by the next batch
	// writing says a writer goroutine runs. It is started on demand and exits
	// when the queue is empty, so an idle socket holds no writer goroutine
	// and no write buffer (wsconn lends those from a pool per frame).
	writing    bool
	pingDue    bool
	pongDue    []byte // payload of the ping to answer; nil = none
	paced      bool   // on the pacer's waiting list
	lastFrame  int64  // pacer clock at the last frame written
	closing    bool
	peerClosed bool // the client began the closing handshake
	closeSent  bool // a close frame went out already (gorilla sends one on a read-limit error)
	closeCode  int
	closeText  string
	last       map[string]protocol.ID // per channel: newest id queued
	resuming   map[string][]outMsg    // per channel: live messages held back while a resume replays
	greeted    bool                   // hello is queued; until then the writer is not started
	holding    bool                   // until the client's first frame: live messages wait in held
	held       []heldBatch
	typingAt   map[string]time.Time // per channel: last typing event sent
	done       signal               // the socket is fully closed
	readDone   signal               // the reader has stopped
	wdone      signal               // the writer that closed the socket is done
	releaseT   *time.Timer          // ends the resume window; nil once ended

	// Rate limits, used only by the reading goroutine: the room's send
	// limit, and the budget for every frame (limit.go).
	sends     bucket
	frames    bucket
	refused   int // frames refused in a row
	readLimit int64
}

// Start serves ws on goroutines of the Service and returns at once. The HTTP
// handler that upgraded ws should return: net/http then frees the
// connection's 4 KB read buffer and the handler's deep stack, which an idle
// socket would otherwise keep for its whole life. The Service owns the
// goroutines: they end when the socket closes (Drain closes every socket).
func (s *Service) Start(ctx context.Context, ws *wsconn.Conn, p Peer) {
	go func() {
		if c := s.open(ctx, ws, p); c != nil {
			// The socket's long, mostly idle life gets a fresh goroutine:
			// the storage calls of its setup grew this one's stack, and a
			// parked goroutine keeps its stack.
			go c.run(ctx)
		}
	}()
}

// open registers a new socket and queues its hello. It returns nil when the
// socket was refused (and closed).
func (s *Service) open(ctx context.Context, ws *wsconn.Conn, p Peer) *conn {
	now := time.Now()
	c := &conn{
		s: s, ws: ws, user: p.User, session: p.Session, check: p.Check,
		nextPing:  now.Add(s.pingPeriod()),
		nextCheck: now.Add(s.opts.SessionCheck),
		readLimit: ReadLimit(s.opts.MaxMessageBytes),
		holding:   true,
		sends:     newBucket(s.pace.now(), float64(s.opts.MessageBurst)),
		frames:    newBucket(s.pace.now(), s.frameBurst),
	}
	c.mu.Lock()
	c.releaseT = time.AfterFunc(resumeWindow, c.release)
	c.mu.Unlock()
	refuse := func(code int, text string) *conn {
		c.stopReleaseTimer()
		c.abort(code, text)
		c.fire(&c.done)
		return nil
	}

	// DM channels are followed from their last id, read before registering so
	// that nothing committed in between is missed (the feed replays after it).
	dms, err := s.b.DMs(ctx, c.user, maxDMs)
	if err != nil {
		s.backendError("dms", err)
		return refuse(protocol.CloseTryAgainLater, "storage unavailable")
	}
	lastIDs := make(map[string]string, len(dms))
	for _, ch := range dms {
		if lastIDs[ch], err = s.b.LastID(ctx, ch); err != nil {
			s.backendError("last_id", err)
			return refuse(protocol.CloseTryAgainLater, "storage unavailable")
		}
	}
	first, err := s.register(c, lastIDs)
	switch {
	case errors.Is(err, errDraining):
		return refuse(protocol.CloseServiceRestart, "server restarting")
	case errors.Is(err, errServerFull):
		s.m.Errors.WithLabelValues("server_full").Inc()
		return refuse(protocol.CloseTryAgainLater, "server full")
	case err != nil:
		s.m.Errors.WithLabelValues("too_many_connections").Inc()
		return refuse(protocol.CloseTooManyConnections, "too many connections")
	}

	if first {
		if err := s.b.Join(ctx, s.opts.Pod, c.user, s.opts.PresenceTTL); err != nil {
			s.backendError("presence_join", err)
		}
		s.publish(ctx, Event{Kind: EventPresence, User: c.user, Status: "online"})
	}
	hello, err := s.hello(ctx, c.user, dms, lastIDs)
	if err != nil {
		s.backendError("hello", err)
		c.mu.Lock()
		c.greeted = true // no hello coming: let the close frame out
		c.mu.Unlock()
		c.close(protocol.CloseTryAgainLater, "storage unavailable")
	} else {
		c.mu.Lock()
		c.queue = append([][]byte{hello}, c.queue...)
		c.greeted = true
		c.kickLocked()
		c.mu.Unlock()
		s.objectsOut(protocol.TypeHello).Inc()
	}
	return c
}

// run reads the socket until it closes, then unregisters it.
func (c *conn) run(ctx context.Context) {
	defer c.fire(&c.done)
	defer c.stopReleaseTimer()
	defer func() {
		c.close(protocol.CloseNormal, "")
		<-c.wait(&c.wdone)
		if c.s.unregister(c) {
			c.s.userLeft(c.user)
		}
	}()
	c.readLoop(ctx)
	c.fire(&c.readDone)
}

// signal is a one-shot event whose channel is made only when someone waits
// before it fires. Most sockets live and die with nobody waiting, and an
// idle socket should not hold channels it will never need. Guarded by the
// conn's mu.
type signal struct {
	fired bool
	ch    chan struct{}
}

var firedC = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (c *conn) fire(e *signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.fired {
		return
	}
	e.fired = true
	if e.ch != nil {
		close(e.ch)
	}
}

// wait returns a channel that is closed when e has fired.
func (c *conn) wait(e *signal) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.fired {
		return firedC
	}
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

func (c *conn) stopReleaseTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopReleaseTimerLocked()
}

// stopReleaseTimerLocked drops the resume-window timer, so a socket holds
// it only for its first moments. Caller holds c.mu.
func (c *conn) stopReleaseTimerLocked() {
	if c.releaseT != nil {
		c.releaseT.Stop()
		c.releaseT = nil
	}
}

// userLeft runs after a user's last local socket closed.
func (s *Service) userLeft(user string) {
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	offline, err := s.b.Leave(ctx, s.opts.Pod, user)
	if err != nil {
		s.backendError("presence_leave", err)
		return
	}
	if offline {
		s.publish(ctx, Event{Kind: EventPresence, User: user, Status: "offline"})
	}
}

func (s *Service) hello(ctx context.Context, user string, dms []string, lastIDs map[string]string) ([]byte, error) {
	chans, err := s.channelInfos(ctx, user, dms, lastIDs)
	if err != nil {
		return nil, err
	}
	online, err := s.b.Online(ctx, maxOnline)
	if err != nil {
		return nil, fmt.Errorf("listing online users: %w", err)
	}
	if online == nil {
		online = []string{}
	}
	return protocol.Encode(protocol.Hello{Type: protocol.TypeHello, User: user, Channels: chans, Online: online}), nil
}

// abort closes a socket that never got going.
func (c *conn) abort(code int, text string) {
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(writeWait))
	_ = c.ws.Close()
}

// kickLocked starts the writer unless one runs or the socket is finished.
// Caller holds c.mu.
func (c *conn) kickLocked() {
	// Nothing may go out before hello: events queued while it is being
	// computed wait for it.
	if c.writing || !c.greeted || c.holdLocked() {
		return
	}
	c.writing = true
	c.s.startWriter(c)
}

// enqueue queues one server object for the socket. A socket whose queue is
// full is too slow to keep up: it is closed rather than allowed to hold
// memory or block fan-out to everyone else.
func (c *conn) enqueue(typ string, obj []byte) {
	c.mu.Lock()
	ok := c.enqueueLocked(obj)
	c.mu.Unlock()
	if ok {
		c.s.objectsOut(typ).Inc()
	}
}

// enqueueLocked reports whether obj was queued; the caller counts it (in
// bulk, on the fan-out path). Caller holds c.mu.
func (c *conn) enqueueLocked(obj []byte) bool {
	if c.closing {
		return false
	}
	if len(c.queue) >= c.s.opts.SendQueueMax {
		c.s.m.SlowConsumers.Inc()
		c.queue = nil
		c.closeLocked(protocol.CloseTooSlow, "too slow")
		if !c.ws.WriteBlockedSince().IsZero() {
			// The writer is stuck on a client that does not read: it would
			// take the close frame no sooner. Cut the connection now rather
			// than after the write timeout.
			_ = c.ws.Close()
		}
		return false
	}
	c.queue = append(c.queue, obj)
	c.kickLocked()
	return true
}

// requestPing asks the writer to send a ping (the keepalive loop calls it).
func (c *conn) requestPing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.pingDue = true
	c.kickLocked()
}

// deliver queues committed messages of one channel, in id order, skipping
// any at or below what this socket already got (resume and live overlap).
// It returns how many it queued now (the caller counts them in bulk).
func (c *conn) deliver(channel string, msgs []outMsg) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding {
		c.held = append(c.held, heldBatch{channel, msgs})
		return 0
	}
	if held, ok := c.resuming[channel]; ok {
		c.resuming[channel] = append(held, msgs...)
		return 0
	}
	return c.deliverLocked(channel, msgs)
}

func (c *conn) deliverLocked(channel string, msgs []outMsg) int {
	last, seen := c.last[channel]
	queued := 0
	for _, om := range msgs {
		if seen && om.id.Compare(last) <= 0 {
			continue
		}
		last, seen = om.id, true
		if c.enqueueLocked(om.frame) {
			queued++
		}
	}
	if seen {
		if c.last == nil {
			c.last = map[string]protocol.ID{}
		}
		c.last[channel] = last
	}
	return queued
}

// release ends the hold on live messages: they go out now, minus whatever
// a resume already replayed.
func (c *conn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holding {
		return
	}
	c.holding = false
	c.stopReleaseTimerLocked()
	queued := 0
	for _, h := range c.held {
		if buf, ok := c.resuming[h.channel]; ok {
			c.resuming[h.channel] = append(buf, h.msgs...)
		} else {
			queued += c.deliverLocked(h.channel, h.msgs)
		}
	}
	c.held = nil
	c.s.objMessage.Add(float64(queued))
}

// close asks the writer to flush what is queued, then close with code.
func (c *conn) close(code int, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, text)
}

func (c *conn) closeLocked(code int, text string) {
	if c.closing {
		return
	}
	c.closing, c.closeCode, c.closeText = true, code, text
	c.kickLocked()
}

// Bounds on the queue memory a socket keeps between batches.
const (
	maxSpareQueue = 64 // a larger emptied queue is left to the GC
	maxIdleQueue  = 8  // an idle socket keeps at most this much queue capacity
)

// writeLoop is the socket's writer, run on demand by kickLocked. It
// writes whatever is queued, coalesced, until the queue is empty, then exits;
// the writer that sees the socket closing sends the close frame and closes it.
func (c *conn) writeLoop() {
	frames := 0
	defer func() { c.s.m.FramesOut.Add(float64(frames)) }()
	for {
		c.mu.Lock()
		if len(c.queue) > 0 && c.holdLocked() {
			// Paced: the pacer starts a writer when the gap has passed.
			c.writing = false
			c.mu.Unlock()
			return
		}
		q := c.queue
		c.queue, c.spare = c.spare, nil
		ping, pong := c.pingDue, c.pongDue
		c.pingDue, c.pongDue = false, nil
		closing, code, text, closeSent := c.closing, c.closeCode, c.closeText, c.closeSent
		if len(q) == 0 && !ping && pong == nil && !closing {
			c.writing = false
			if cap(q) <= maxIdleQueue {
				c.queue = q
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		var err error
		if pong != nil {
			err = c.ws.WriteControlFrame(websocket.PongMessage, pong)
		}
		if ping && err == nil {
			err = c.ws.WriteControlFrame(websocket.PingMessage, nil)
		}
		if err == nil {
			var n int
			n, err = c.write(q)
			frames += n
		}
		clear(q)
		c.mu.Lock()
		if cap(q) <= maxSpareQueue && c.spare == nil {
			c.spare = q[:0]
		}
		if len(q) > 0 {
			c.lastFrame = c.s.pace.now()
		}
		c.mu.Unlock()
		if err != nil {
			c.close(protocol.CloseGoingAway, "")
			c.finish()
			return
		}
		if closing {
			if code != protocol.CloseNormal && !c.peerClosed {
				c.s.m.Errors.WithLabelValues(protocol.CloseLabel(code)).Inc()
			}
			if !closeSent {
				_ = c.ws.WriteControlFrame(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
			}
			// The closing handshake: give the client a moment to answer (the
			// reader then stops) before dropping TCP, so the close frame is
			// not lost to a reset.
			t := time.NewTimer(time.Second)
			select {
			case <-c.wait(&c.readDone):
			case <-t.C:
			}
			t.Stop()
			c.finish()
			return
		}
	}
}

// finish closes the socket (which also unblocks the reader). Only the last
// writer calls it: once closing, no other writer starts.
func (c *conn) finish() {
	_ = c.ws.Close()
	c.fire(&c.wdone)
}

// write sends queued objects, coalescing them into as few frames as the
// frame size cap allows, separated by newlines. Per-frame cost dominates
// fan-out, so this is what makes broadcast cheap. It returns the frames sent.
func (c *conn) write(q [][]byte) (frames int, err error) {
	for len(q) > 0 {
		n, i := len(q[0]), 1
		for ; i < len(q) && n+1+len(q[i]) <= maxFrameBytes; i++ {
			n += 1 + len(q[i])
		}
		if err := c.ws.WriteText(q[:i]); err != nil {
			return frames, err
		}
		frames++
		q = q[i:]
	}
	return frames, nil
}

// checkSession re-validates the session (the keepalive loop calls it), so an
// expired session (or a revocation whose event was lost) still ends the socket.
func (c *conn) checkSession(ctx context.Context) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, storageTimeout)
	err := c.check(cctx)
	cancel()
	if errors.Is(err, ErrSessionGone) {
		c.close(protocol.CloseUnauthorized, "session expired")
		return
	}
	if err != nil {
		c.s.backendError("session_check", err)
	}
}

// readLoop reads client frames until the socket fails or closes. This
// goroutine lives as long as the socket and mostly waits, and a parked
// goroutine keeps its stack: so it only waits (WaitReadable parks right
// here, on a minimal stack), and each burst of input is read and handled on
// a short-lived goroutine, whose deep stack (frame parsing, JSON decoding,
// storage calls) is gone again when it ends. Frames are still handled one at
// a time, in order.
func (c *conn) readLoop(ctx context.Context) {
	c.ws.SetReadLimit(c.readLimit)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.opts.PongWait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(c.s.opts.PongWait)) })
	// Replies go through the writer: only it writes to the socket.
	c.ws.SetPingHandler(func(data string) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closing {
			c.pongDue = []byte(data) // a pong answers the latest ping only
			c.kickLocked()
		}
		return nil
	})
	c.ws.SetCloseHandler(func(code int, _ string) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.closing {
			c.peerClosed = true
			c.closeLocked(code, "") // echo the client's code, as RFC 6455 asks
		}
		return nil
	})
	for {
		if err := c.ws.WaitReadable(); err != nil {
			return
		}
		more := true
		onFreshStack(func() { more = c.readInput(ctx) })
		if !more {
			return
		}
	}
}

func onFreshStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// readInput handles what has arrived: ping and pong frames, then at most
// one message. It reports whether the socket is still readable.
func (c *conn) readInput(ctx context.Context) bool {
	for {
		handled, err := c.ws.HandleControl()
		if err != nil {
			return false
		}
		if !handled {
			break
		}
		if c.ws.Buffered() == 0 {
			return true // back to waiting: ReadMessage would wait in here
		}
	}
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			c.s.m.FramesIn.WithLabelValues("too_large").Inc()
			c.s.m.Errors.WithLabelValues(protocol.CodeTooLarge).Inc()
			c.mu.Lock()
			c.closeLocked(protocol.CloseTooLarge, "frame too large")
			c.closeSent = true // gorilla has written the 1009 close frame
			c.mu.Unlock()
			// Swallow the rest of the oversize frame (bounded) so closing
			// TCP with it unread does not reset away our close frame.
			nc := c.ws.NetConn()
			_ = nc.SetReadDeadline(time.Now().Add(time.Second))
			_, _ = io.Copy(io.Discard, io.LimitReader(nc, 4<<20))
		}
		return false
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.opts.PongWait))
	c.handleFrame(ctx, typ, data)
	return true
}

func (c *conn) handleFrame(ctx context.Context, typ int, data []byte) {
	var f protocol.ClientFrame
	var perr *protocol.Error
	if typ != websocket.TextMessage {
		perr = &protocol.Error{Code: protocol.CodeBadRequest, Message: "only text frames are accepted"}
	} else {
		f, perr = protocol.Decode(data, c.s.opts.MaxMessageBytes)
	}
	label := f.Type
	if !knownType(label) {
		label = "invalid"
	}
	c.s.m.FramesIn.WithLabelValues(label).Inc()
	// Every frame spends the budget, a bad one too: each costs an answer.
	if !c.frames.take(c.s.pace.now(), c.s.frameRate, c.s.frameBurst) {
		c.refused++
		if c.refused >= floodLimit {
			// Frames already read still come through here: close once,
			// answer none of them.
			if c.refused == floodLimit {
				c.s.m.Errors.WithLabelValues("flooding").Inc()
				c.close(protocol.ClosePolicy, "flooding")
			}
			return
		}
		c.sendError(&protocol.Error{Code: protocol.CodeRateLimited, Message: "too many frames, slow down", ClientID: f.ClientID})
		return
	}
	c.refused = 0
	if perr != nil {
		c.sendError(perr)
		return
	}
	switch f.Type {
	case protocol.TypeSend:
		c.handleSend(ctx, f)
	case protocol.TypeResume:
		c.handleResume(ctx, f)
	case protocol.TypeTyping:
		c.handleTyping(ctx, f)
	case protocol.TypeRead:
		c.handleRead(ctx, f)
	}
	c.release()
}

func knownType(t string) bool {
	switch t {
	case protocol.TypeSend, protocol.TypeResume, protocol.TypeTyping, protocol.TypeRead:
		return true
	}
	return false
}

func (c *conn) sendError(e *protocol.Error) {
	c.s.m.Errors.WithLabelValues(e.Code).Inc()
	c.enqueue(protocol.TypeError, protocol.Encode(protocol.ErrorFrame{Type: protocol.TypeError, Error: *e}))
}

func accessError(err error, channel, clientID string) *protocol.Error {
	if errors.Is(err, ErrForbidden) {
		return &protocol.Error{Code: protocol.CodeForbidden, Message: fmt.Sprintf("you are not a member of %q", channel), ClientID: clientID}
	}
	return &protocol.Error{Code: protocol.CodeUnknownChannel, Message: fmt.Sprintf("no channel %q", channel), ClientID: clientID}
}

func unavailable(clientID string) *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "message not stored: storage unavailable, retry", ClientID: clientID}
}

// allowSend spends a token of the socket's send rate limit: MessageBurst
// sends at once, refilled at MessagesPerSecond.
func (c *conn) allowSend() bool {
	return c.sends.take(c.s.pace.now(), c.s.opts.MessagesPerSecond, float64(c.s.opts.MessageBurst))
}

func (c *conn) handleSend(ctx context.Context, f protocol.ClientFrame) {
	if !c.allowSend() {
		c.sendError(&protocol.Error{Code: protocol.CodeRateLimited, Message: "sending too fast, slow down", ClientID: f.ClientID})
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	s := c.s
	channel := f.Channel
	if f.To != "" {
		to := strings.ToLower(f.To)
		if !protocol.ValidUsername(to) || to == c.user {
			c.sendError(&protocol.Error{Code: protocol.CodeUnknownChannel, Message: fmt.Sprintf("cannot message %q", protocol.Truncate(f.To, 40)), ClientID: f.ClientID})
			return
		}
		exists, err := s.b.UserExists(ctx, to)
		if err != nil {
			s.backendError("user_exists", err)
			c.sendError(unavailable(f.ClientID))
			return
		}
		if !exists {
			c.sendError(&protocol.Error{Code: protocol.CodeUnknownChannel, Message: fmt.Sprintf("no user %q", to), ClientID: f.ClientID})
			return
		}
		channel = protocol.DMChannel(c.user, to)
		created, err := s.b.AddDM(ctx, channel)
		if err != nil {
			s.backendError("add_dm", err)
			c.sendError(unavailable(f.ClientID))
			return
		}
		if created {
			// Join locally at once (our own socket must see the message),
			// and tell the other servers so the recipient's sockets join too.
			s.handleEvent(Event{Kind: EventDM, Channel: channel})
			s.publish(ctx, Event{Kind: EventDM, Channel: channel})
		}
	} else if err := s.access(c.user, channel); err != nil {
		c.sendError(accessError(err, channel, f.ClientID))
		return
	}
	m, err := s.b.Append(ctx, protocol.Message{Channel: channel, From: c.user, Text: f.Text}, dedupKey(c.user, f.ClientID), s.opts.HistoryMax)
	if err != nil {
		s.backendError("append", err)
		c.sendError(unavailable(f.ClientID))
		return
	}
	c.enqueue(protocol.TypeAck, protocol.Encode(protocol.Ack{Type: protocol.TypeAck, ClientID: f.ClientID, ID: m.ID}))
	s.m.AckLatency.Observe(time.Since(start).Seconds())
}

func (c *conn) handleResume(ctx context.Context, f protocol.ClientFrame) {
	s := c.s
	var unknown []string
	recovered := map[string]bool{}
	for channel, since := range f.Since {
		if err := s.access(c.user, channel); err != nil {
			c.sendError(accessError(err, channel, ""))
			continue
		}
		if !s.public[channel] {
			// The socket follows every DM of its person: those that existed
			// when it connected and those created since (EventDM). A DM it
			// does not follow does not exist; following it would cost a
			// subscription and stream reads per made-up name.
			s.mu.Lock()
			_, ok := c.dms[channel]
			s.mu.Unlock()
			if !ok {
				unknown = append(unknown, channel)
				continue
			}
		}
		c.mu.Lock()
		if c.resuming == nil {
			c.resuming = map[string][]outMsg{}
		}
		c.resuming[channel] = c.resuming[channel][:0]
		c.mu.Unlock()
		complete, err := c.replay(ctx, channel, since)
		c.mu.Lock()
		held := c.resuming[channel]
		delete(c.resuming, channel)
		queued := c.deliverLocked(channel, held)
		c.mu.Unlock()
		s.objMessage.Add(float64(queued))
		if err != nil {
			s.backendError("resume", err)
			c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: fmt.Sprintf("could not resume %q: storage unavailable, resume again", channel)})
			continue
		}
		recovered[channel] = complete
	}
	// After the replays (queued above, in order): the client learns which
	// channels it now holds whole, and reloads the others' history.
	c.enqueue(protocol.TypeResumed, protocol.Encode(protocol.Resumed{Type: protocol.TypeResumed, Recovered: recovered}))
	if len(unknown) > 0 {
		// One error for them all: a made-up list must not buy a flood back.
		slices.Sort(unknown)
		c.sendError(&protocol.Error{Code: protocol.CodeUnknownChannel,
			Message: fmt.Sprintf("no such direct message channel: %s", strings.Join(unknown[:min(len(unknown), 3)], ", ")) + more(len(unknown)-3)})
	}
}

// more says how many more there were, if any.
func more(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(" and %d more", n)
}

// replay queues channel's messages after since, in pages, holding live
// messages back (in c.resuming) so the socket sees one ordered stream. It
// reports whether the client now has everything after since: not when the
// channel no longer keeps since (what followed it may have been trimmed
// too), nor when the replay stopped at its cap.
func (c *conn) replay(ctx context.Context, channel, since string) (complete bool, err error) {
	c.mu.Lock()
	if since != "" {
		// The client has everything up to since: do not send it again.
		id, _ := protocol.ParseID(since)
		if cur, ok := c.last[channel]; !ok || id.Compare(cur) > 0 {
			if c.last == nil {
				c.last = map[string]protocol.ID{}
			}
			c.last[channel] = id
		}
	}
	c.mu.Unlock()
	complete = true
	if since != "" {
		// The oldest message kept: past since, the client may have missed
		// trimmed ones (the stream cannot say whether any came between).
		cctx, cancel := context.WithTimeout(ctx, storageTimeout)
		oldest, err := c.s.b.After(cctx, channel, "", 1)
		cancel()
		if err != nil {
			return false, err
		}
		if len(oldest) > 0 && oldest[0].ID != since && !idBefore(oldest[0].ID, since) {
			complete = false
		}
	}
	after := since
	for total := 0; ; {
		if total >= maxResumeTotal {
			return false, nil // more may follow than one resume replays
		}
		cctx, cancel := context.WithTimeout(ctx, storageTimeout)
		msgs, err := c.s.b.After(cctx, channel, after, maxResumeBatch)
		cancel()
		if err != nil {
			return false, err
		}
		if len(msgs) == 0 {
			return complete, nil
		}
		out := make([]outMsg, len(msgs))
		for i, m := range msgs {
			id, _ := protocol.ParseID(m.ID)
			out[i] = outMsg{id: id, m: m, frame: protocol.EncodeMessage(nil, m)}
		}
		c.mu.Lock()
		queued := c.deliverLocked(channel, out)
		c.mu.Unlock()
		c.s.objMessage.Add(float64(queued))
		total += len(msgs)
		after = msgs[len(msgs)-1].ID
		if len(msgs) < maxResumeBatch {
			return complete, nil
		}
	}
}

// idBefore reports whether message id a comes before b (both well formed:
// stored ids, and since as Decode checked it).
func idBefore(a, b string) bool {
	x, _ := protocol.ParseID(a)
	y, _ := protocol.ParseID(b)
	return x.Compare(y) < 0
}

func (c *conn) handleTyping(ctx context.Context, f protocol.ClientFrame) {
	if err := c.s.access(c.user, f.Channel); err != nil {
		c.sendError(accessError(err, f.Channel, ""))
		return
	}
	// Typing is advisory: at most one event per channel per second per
	// socket; the rest are dropped silently.
	now := time.Now()
	c.mu.Lock()
	if now.Sub(c.typingAt[f.Channel]) < typingInterval {
		c.mu.Unlock()
		return
	}
	if c.typingAt == nil {
		c.typingAt = map[string]time.Time{}
	}
	c.typingAt[f.Channel] = now
	c.mu.Unlock()
	c.s.publish(ctx, Event{Kind: EventTyping, User: c.user, Channel: f.Channel})
}

func (c *conn) handleRead(ctx context.Context, f protocol.ClientFrame) {
	if err := c.s.access(c.user, f.Channel); err != nil {
		c.sendError(accessError(err, f.Channel, ""))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	// A marker past the channel's last message would mark messages read
	// before they exist.
	last, err := c.s.b.LastID(ctx, f.Channel)
	if err != nil {
		c.s.backendError("last_id", err)
		c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: "read marker not stored: storage unavailable"})
		return
	}
	id, _ := protocol.ParseID(f.ID) // Decode checked its form
	lastID, perr := protocol.ParseID(last)
	if last == "" || perr != nil || id.Compare(lastID) > 0 {
		c.sendError(&protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("read marker %s is past the last message of %q", protocol.Truncate(f.ID, 40), f.Channel)})
		return
	}
	if err := c.s.b.SetRead(ctx, c.user, f.Channel, f.ID); err != nil {
		c.s.backendError("set_read", err)
		c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: "read marker not stored: storage unavailable"})
		return
	}
	c.s.publish(ctx, Event{Kind: EventRead, User: c.user, Channel: f.Channel, ID: f.ID})
}

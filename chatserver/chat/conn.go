package chat

import (
	"context"
	"errors"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// conn is one client's socket: whose it is, what it has yet to write
// (outbox), the order of what it receives (order) and its reader's own
// state (inbound). Its goroutines: the reader, for its whole life, and a
// writer from the pool while it has something to write.
type conn struct {
	s       *Service
	ws      Socket
	user    string
	session string
	check   func(ctx context.Context) error // re-validates the session; nil = never
	joined  map[string]struct{}             // DM and created channels followed; guarded by the hub (its user's shard)
	// Used only by the keepalive goroutine (set before the conn is
	// registered): when this socket is next pinged and its session checked.
	nextPing, nextCheck time.Time
	out                 outbox
	ord                 order // guarded by out.mu
	in                  inbound
}

// inbound is the reader's own state, used by the reading goroutine alone:
// the room's send limit, the budget for every frame (limit.go), and the
// typing throttle.
type inbound struct {
	sends bucket
	gate  frameGate
	// reg is the hub's registration count once this socket was
	// registered: a shared replay read that began later is whole for it
	// (replayshare.go). Set before the reader starts.
	reg      uint32
	typingAt map[string]time.Time // per channel: last typing event sent
}

// Start serves ws on goroutines the Service owns and returns at once. The
// HTTP handler that upgraded ws should return: net/http then frees the
// connection's 4 KB read buffer and the handler's deep stack, which an idle
// socket would otherwise keep for its whole life. The goroutines end when
// the socket closes; Drain and Run's end close every socket and wait.
func (s *Service) Start(ws Socket, p Peer) {
	if !s.hub.start() {
		abort(ws, protocol.CloseServiceRestart, "server restarting")
		return
	}
	go func() {
		select {
		case <-s.following:
		case <-s.life.Done():
			abort(ws, protocol.CloseServiceRestart, "server restarting")
			s.hub.done()
			return
		}
		c := s.open(s.life, ws, p)
		if c == nil {
			s.hub.done()
			return
		}
		// The socket's long, mostly idle life gets a fresh goroutine: the
		// storage calls of its setup grew this one's stack, and a parked
		// goroutine keeps its stack.
		go func() {
			defer s.hub.done()
			c.run(s.life)
		}()
	}()
}

// open registers a new socket and queues its hello. It returns nil when the
// socket was refused (and closed).
func (s *Service) open(ctx context.Context, ws Socket, p Peer) *conn {
	now := time.Now()
	c := &conn{
		s: s, ws: ws, user: p.User, session: p.Session, check: p.Check,
		nextPing:  now.Add(s.pingPeriod()),
		nextCheck: now.Add(s.opts.SessionCheck),
		out:       newOutbox(ws, s.wire),
		ord:       order{holding: true},
		in: inbound{
			sends: newBucket(s.wire.pace.now(), float64(s.opts.MessageBurst)),
			gate:  newFrameGate(s.wire.pace.now(), s.budget),
		},
	}
	refuse := func(code int, text string) *conn {
		abort(ws, code, text)
		return nil
	}

	// DM and created channels are followed from their last id, read before
	// registering so that nothing committed in between is missed (the feed
	// replays after it). The same read makes the hello.
	epoch := s.hub.epoch(c.user)
	sn, err := s.snapshot(ctx, c.user)
	if err != nil {
		s.backendError("connect_snapshot", err)
		return refuse(protocol.CloseTryAgainLater, "storage unavailable")
	}
	lastIDs := make(map[string]string, len(sn.Created)+len(sn.DMs))
	for _, ch := range sn.Channels(nil) {
		lastIDs[ch] = sn.LastIDs[ch]
	}
	first, err := s.hub.register(c, lastIDs)
	switch {
	case errors.Is(err, errDraining):
		return refuse(protocol.CloseServiceRestart, "server restarting")
	case errors.Is(err, errServerFull):
		s.m.Errors.WithLabelValues(protocol.CodeServerFull).Inc()
		return refuse(protocol.CloseTryAgainLater, "server full")
	case err != nil:
		s.m.Errors.WithLabelValues(protocol.CodeTooManyConnections).Inc()
		return refuse(protocol.CloseTooManyConnections, "too many connections")
	}

	if s.hub.epoch(c.user) != epoch {
		// A membership change came between reading the channels and
		// registering, and found no socket of this one's to apply to.
		if err := s.syncMembership(ctx, c); err != nil {
			s.backendError("membership_check", err)
		}
	}
	if first {
		if err := s.b.Join(ctx, s.opts.Pod, c.user, s.opts.PresenceTTL); err != nil {
			s.backendError("presence_join", err)
		}
		s.publish(ctx, Event{Kind: EventPresence, User: c.user, Status: "online"})
	}
	hello := s.hello(c.user, sn)
	c.out.greet(hello)
	s.objs.out(protocol.TypeHello).Inc()
	return c
}

// abort closes a socket that never got going: no writer runs yet.
func abort(ws Socket, code int, text string) {
	_ = ws.WriteControlFrame(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
	_ = ws.Close()
}

// run reads the socket until it closes, then unregisters it.
func (c *conn) run(ctx context.Context) {
	defer c.stopReleaseTimer()
	defer func() {
		c.out.close(protocol.CloseNormal, "")
		<-c.out.wait(&c.out.wdone)
		c.s.watch.drop(c)
		if c.s.hub.unregister(c) {
			c.s.userLeft(c.user)
		}
	}()
	c.readLoop(ctx)
	c.out.fire(&c.out.readDone)
}

func (c *conn) stopReleaseTimer() {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	c.ord.stopTimer()
}

// awaitFirstFrame runs the resume window while the server waits for input:
// until end, then live messages go out without a replay. It reports whether
// live messages are still held (no data frame has come yet).
func (c *conn) awaitFirstFrame(end time.Time) bool {
	left := time.Until(end)
	c.out.mu.Lock()
	holding := c.ord.holding
	if holding && left > 0 && c.ord.releaseT == nil {
		c.ord.releaseT = time.AfterFunc(left, c.release)
	}
	c.out.mu.Unlock()
	if holding && left <= 0 {
		c.release()
		return false
	}
	return holding
}

// enqueue queues one server object of type typ for the socket.
func (c *conn) enqueue(typ string, obj []byte) {
	if c.out.enqueue(obj) {
		c.s.objs.out(typ).Inc()
	}
}

// deliver queues committed messages of one channel, fanned out as they were
// committed, in the socket's order. It returns how many it queued now (the
// caller counts them in bulk).
func (c *conn) deliver(channel string, msgs []outMsg) int {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return c.ord.live(&c.out, channel, msgs)
}

// leave queues removed after whatever of channel the socket was given,
// and nothing of channel after it.
func (c *conn) leave(channel string, removed []byte) {
	c.membershipChanged(protocol.TypeRemoved, removed, func(o *order) { o.leave(channel) })
}

// rejoin lets channel through again, from after on (its last id when the
// person joined: what was committed before is history, not news, even if
// its fan-out is still under way), and queues added.
func (c *conn) rejoin(channel, after string, added []byte) {
	c.membershipChanged(protocol.TypeChannel, added, func(o *order) {
		o.rejoin(channel)
		if id, err := protocol.ParseID(after); err == nil {
			o.skipTo(channel, id)
		}
	})
}

// membershipChanged changes the socket's order and queues frame under one
// lock: no message of the channel can come between the two.
func (c *conn) membershipChanged(typ string, frame []byte, change func(*order)) {
	c.out.mu.Lock()
	change(&c.ord)
	ok := c.out.enqueueLocked(frame)
	c.out.mu.Unlock()
	if ok {
		c.s.objs.out(typ).Inc()
	}
}

// release ends the hold on live messages (the client's first frame came,
// or the resume window ended).
func (c *conn) release() {
	c.out.mu.Lock()
	queued := c.ord.release(&c.out)
	c.out.mu.Unlock()
	c.s.objs.message.Add(float64(queued))
}

// checkSession re-validates the session (the keepalive loop calls it), so an
// expired session (or a revocation whose event was lost) still ends the
// socket, and the socket's channels (so a membership event that was lost
// still takes effect).
func (c *conn) checkSession(ctx context.Context) {
	if c.out.closing() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, storageTimeout)
	err := c.check(cctx)
	cancel()
	if errors.Is(err, ErrSessionGone) {
		c.out.close(protocol.CloseUnauthorized, "session expired")
		return
	}
	if err != nil {
		c.s.backendError("session_check", err)
		return
	}
	cctx, cancel = context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	if err := c.s.syncMembership(cctx, c); err != nil {
		c.s.backendError("membership_check", err)
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

func (s *Service) hello(user string, sn Snapshot) []byte {
	return protocol.Encode(protocol.Hello{Type: protocol.TypeHello, User: user, Admin: s.roomAdmin(user), Channels: s.channelInfos(sn), Limits: protocol.Limits{
		MaxMessageBytes: s.opts.MaxMessageBytes, MessagesPerSecond: s.opts.MessagesPerSecond, MessageBurst: s.opts.MessageBurst,
		MaxWatch: protocol.MaxWatch,
	}})
}

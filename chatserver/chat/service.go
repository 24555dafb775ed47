// Package chat is the real-time core of the chat server: the local hub of
// WebSocket connections, what each client frame does, and the fan-out of
// committed messages and room events from the backend to local sockets.
//
// Storage and cross-server fan-out are behind the interfaces in backend.go,
// implemented by chatserver/backend/memory and chatserver/backend/redis.
package chat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/chatserver/metrics"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Options configure a Service.
type Options struct {
	// Pod identifies this server in presence marks and events.
	Pod               string
	Channels          []string
	HistoryMax        int
	MaxMessageBytes   int
	MessagesPerSecond float64
	MessageBurst      int
	MaxConnsPerUser   int
	// MaxConns bounds all sockets on this server (0: unbounded).
	MaxConns int
	// PresenceTTL is how long a server's presence marks live without a
	// heartbeat; heartbeats run every third of it. A crashed server's users go
	// offline within about PresenceTTL plus one sweep.
	PresenceTTL time.Duration
	// SessionCheck is how often a connection re-validates its session (which
	// also slides the session's expiry while the person is connected).
	SessionCheck time.Duration
	// SendQueueMax bounds the objects queued for one socket; past it the
	// client is too slow and is disconnected.
	SendQueueMax int
	// WriteTimeout is how long a write to a socket may block (the client
	// stopped reading) before the socket is closed.
	WriteTimeout time.Duration
	// PongWait is how long a socket may stay silent: pings go out at 9/10 of
	// it, and a peer that answers neither them nor anything else is closed.
	PongWait time.Duration
	Logger   *slog.Logger
	Metrics  *metrics.Metrics
}

// Limits on what one request may ask of storage.
const (
	maxDMs         = 1000
	maxOnline      = 1000
	maxUnread      = 1000
	maxResumeBatch = 500
	maxResumeTotal = 10000
	// MaxHistoryPage bounds GET .../messages?limit.
	MaxHistoryPage = 200
)

// Service is one server's chat core.
type Service struct {
	b      Backend
	opts   Options
	log    *slog.Logger
	m      *metrics.Metrics
	public map[string]bool
	// Every socket's budget for all frames (limit.go).
	frameRate, frameBurst float64
	// Counters resolved once: WithLabelValues hashes its labels on every
	// call, too slow for once per object per socket.
	objMessage prometheus.Counter
	objByType  map[string]prometheus.Counter
	writers    writerPool
	stopped    chan struct{} // closed when Run returns: idle writers exit
	stopOne    sync.Once
	pace       pacer

	// Presence changes wait here for the next batch (user -> status).
	presMu      sync.Mutex
	presPending map[string]string

	mu      sync.RWMutex
	conns   map[*conn]struct{}
	byUser  map[string]map[*conn]struct{}
	members map[string]map[*conn]struct{} // DM channel -> local member sockets
	closing bool
}

// New returns a Service over b.
func New(b Backend, opts Options) *Service {
	if opts.PresenceTTL <= 0 {
		opts.PresenceTTL = 30 * time.Second
	}
	if opts.SessionCheck <= 0 {
		opts.SessionCheck = time.Minute
	}
	if opts.SendQueueMax <= 0 {
		opts.SendQueueMax = 4096
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = writeWait
	}
	if opts.PongWait <= 0 {
		opts.PongWait = pongWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	s := &Service{
		b: b, opts: opts, log: opts.Logger, m: opts.Metrics,
		public:  map[string]bool{},
		conns:   map[*conn]struct{}{},
		byUser:  map[string]map[*conn]struct{}{},
		members: map[string]map[*conn]struct{}{},
		stopped: make(chan struct{}),
	}
	s.pace.epoch = time.Now()
	s.writers.init(maxWriters())
	for _, c := range opts.Channels {
		s.public[c] = true
	}
	s.frameRate, s.frameBurst = frameBudget(opts)
	s.objByType = map[string]prometheus.Counter{}
	for _, t := range []string{protocol.TypeHello, protocol.TypeAck, protocol.TypeMessage, protocol.TypePresence,
		protocol.TypeTyping, protocol.TypeRead, protocol.TypeNotification, protocol.TypeError, protocol.TypeReconnect, protocol.TypeResumed} {
		s.objByType[t] = s.m.ObjectsOut.WithLabelValues(t)
	}
	s.objMessage = s.objByType[protocol.TypeMessage]
	return s
}

// objectsOut is the counter of queued objects of type typ.
func (s *Service) objectsOut(typ string) prometheus.Counter {
	if c, ok := s.objByType[typ]; ok {
		return c
	}
	return s.m.ObjectsOut.WithLabelValues(typ)
}

// Run follows the public channels, delivers what the backend feeds, and keeps
// presence fresh, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	for _, ch := range s.opts.Channels {
		last, err := s.b.LastID(ctx, ch)
		if err != nil {
			// Follow from the start of what is kept: better a few replayed
			// (clients drop duplicates by id) than a gap.
			s.log.Warn("reading last id; following from the start", "channel", ch, "err", err)
			last = ""
		}
		s.b.Follow(ch, last)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.presenceLoop(ctx) })
	wg.Go(func() { s.keepaliveLoop(ctx) })
	wg.Go(func() { s.paceLoop(ctx) })
	err := s.b.Run(ctx, handler{s})
	wg.Wait()
	s.stopOne.Do(func() { close(s.stopped) })
	return err
}

// presenceLoop refreshes this server's presence marks every third of the TTL
// and sweeps expired ones (other servers' that crashed) every 1-2 s, so
// a crashed server's users go offline within TTL plus one sweep.
func (s *Service) presenceLoop(ctx context.Context) {
	heartbeat := time.NewTicker(s.opts.PresenceTTL / 3)
	defer heartbeat.Stop()
	sweep := time.NewTicker(max(time.Second, min(2*time.Second, s.opts.PresenceTTL/10)))
	defer sweep.Stop()
	batch := time.NewTicker(presenceBatch)
	defer batch.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-batch.C:
			s.flushPresence()
		case <-heartbeat.C:
			if err := s.b.Heartbeat(ctx, s.opts.Pod, s.localUsers(), s.opts.PresenceTTL); err != nil {
				s.backendError("presence_heartbeat", err)
			}
		case <-sweep.C:
			offline, err := s.b.Sweep(ctx)
			if err != nil {
				s.backendError("presence_sweep", err)
				continue
			}
			for _, u := range offline {
				s.publish(ctx, Event{Kind: EventPresence, User: u, Status: "offline"})
			}
		}
	}
}

// Presence is batched: every presenceBatch the changes since the last batch
// (each user's latest status) go to every socket as presence objects that
// are encoded once and pre-joined with newlines, so a batch costs each
// socket one queue entry and usually one frame, however many people it
// names. One queued object per change would cost a room of 10,000 sockets
// 10^8 queue entries and frames while 10,000 people connect.
const (
	presenceBatch = 250 * time.Millisecond
	// maxPresenceChunk bounds the objects pre-joined into one entry, so an
	// entry stays within about one frame (a frame is capped near 64 KB).
	maxPresenceChunk = 500
)

// notePresence keeps a user's latest status for the next batch.
func (s *Service) notePresence(user, status string) {
	s.presMu.Lock()
	defer s.presMu.Unlock()
	if s.presPending == nil {
		s.presPending = map[string]string{}
	}
	s.presPending[user] = status
}

// flushPresence sends the pending batch to every socket.
func (s *Service) flushPresence() {
	s.presMu.Lock()
	pending := s.presPending
	s.presPending = nil
	s.presMu.Unlock()
	if len(pending) == 0 {
		return
	}
	var entries [][]byte
	var sizes []int // objects in each entry
	for chunk := range slices.Chunk(slices.Sorted(maps.Keys(pending)), maxPresenceChunk) {
		var e []byte
		for i, u := range chunk {
			if i > 0 {
				e = append(e, '\n')
			}
			e = append(e, protocol.Encode(protocol.Presence{Type: protocol.TypePresence, User: u, Status: pending[u]})...)
		}
		entries, sizes = append(entries, e), append(sizes, len(chunk))
	}
	queued := 0 // objects
	s.mu.RLock()
	for c := range s.conns {
		c.mu.Lock()
		for i, e := range entries {
			if c.enqueueLocked(e) {
				queued += sizes[i]
			}
		}
		c.mu.Unlock()
	}
	s.mu.RUnlock()
	s.objectsOut(protocol.TypePresence).Add(float64(queued))
}

// maxSessionChecks bounds the session checks the keepalive loop runs at once.
const maxSessionChecks = 16

// pingPeriod is how often sockets are pinged: often enough that a live
// peer's pong renews the read deadline before it passes.
func (s *Service) pingPeriod() time.Duration { return s.opts.PongWait * 9 / 10 }

// keepaliveLoop pings every socket every pingPeriod and re-validates its
// session every SessionCheck: one goroutine and one timer for the whole
// server instead of a ticker (and a goroutine) per socket. Each socket's
// times count from its connect, so the work is spread as connects were.
func (s *Service) keepaliveLoop(ctx context.Context) {
	tick := min(time.Second, s.opts.SessionCheck/4)
	t := time.NewTicker(tick)
	defer t.Stop()
	sem := make(chan struct{}, maxSessionChecks)
	var wg sync.WaitGroup
	defer wg.Wait()
	var pings, checks, stuck []*conn
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		pings, checks, stuck = pings[:0], checks[:0], stuck[:0]
		s.mu.RLock()
		for c := range s.conns {
			// Writes have no deadline (a timer per frame costs CPU on the
			// hot path); a write stuck this long means a client that
			// stopped reading, and closing the socket ends it.
			if since := c.ws.WriteBlockedSince(); !since.IsZero() && now.Sub(since) > s.opts.WriteTimeout {
				stuck = append(stuck, c)
			}
			if !now.Before(c.nextPing) {
				c.nextPing = now.Add(s.pingPeriod())
				pings = append(pings, c)
			}
			if c.check != nil && !now.Before(c.nextCheck) {
				checks = append(checks, c)
			}
		}
		s.mu.RUnlock()
		for _, c := range stuck {
			s.m.Errors.WithLabelValues("write_timeout").Inc()
			_ = c.ws.Close()
		}
		for _, c := range pings {
			c.requestPing()
		}
		for _, c := range checks {
			select {
			case sem <- struct{}{}:
			default:
				continue // every slot is busy (storage is slow): this one waits a tick
			}
			c.nextCheck = now.Add(s.opts.SessionCheck)
			wg.Go(func() {
				defer func() { <-sem }()
				c.checkSession(ctx)
			})
		}
		clear(pings)
		clear(checks)
		clear(stuck)
	}
}

func (s *Service) backendError(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.m.BackendErrors.WithLabelValues(op).Inc()
	s.log.Warn("backend error", "op", op, "err", err)
}

func (s *Service) publish(ctx context.Context, e Event) {
	e.Origin = s.opts.Pod
	if err := s.b.Publish(ctx, e); err != nil {
		s.backendError("publish_"+e.Kind, err)
	}
}

func (s *Service) localUsers() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.byUser))
	for u := range s.byUser {
		out = append(out, u)
	}
	sort.Strings(out)
	return out
}

// ConnectionCount is the number of open sockets on this server.
func (s *Service) ConnectionCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.conns)
}

// ErrForbidden and ErrUnknownChannel are returned for channels a user may not read.
var (
	ErrForbidden      = errors.New("not a member of this channel")
	ErrUnknownChannel = errors.New("no such channel")
)

// access checks that user may read and write channel.
func (s *Service) access(user, channel string) error {
	if s.public[channel] {
		return nil
	}
	a, b, ok := protocol.SplitDM(channel)
	if !ok {
		return ErrUnknownChannel
	}
	if user != a && user != b {
		return ErrForbidden
	}
	return nil
}

// Channels returns the user's channels (public ones, then DMs) with last id and unread count.
func (s *Service) Channels(ctx context.Context, user string) ([]protocol.ChannelInfo, error) {
	dms, err := s.b.DMs(ctx, user, maxDMs)
	if err != nil {
		return nil, fmt.Errorf("listing DMs: %w", err)
	}
	return s.channelInfos(ctx, user, dms, nil)
}

// channelInfos describes the public channels and the given DMs. lastIDs
// holds last ids already read (a new socket reads its DMs' to follow them),
// so they are not read again.
func (s *Service) channelInfos(ctx context.Context, user string, dms []string, lastIDs map[string]string) ([]protocol.ChannelInfo, error) {
	reads, err := s.b.ReadMarkers(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("reading read markers: %w", err)
	}
	names := append(append([]string(nil), s.opts.Channels...), dms...)
	out := make([]protocol.ChannelInfo, 0, len(names))
	for _, name := range names {
		last, known := lastIDs[name]
		if !known {
			if last, err = s.b.LastID(ctx, name); err != nil {
				return nil, fmt.Errorf("reading last id of %s: %w", name, err)
			}
		}
		info := protocol.ChannelInfo{Name: name, LastID: last}
		if last != "" && protocol.CompareIDs(last, reads[name]) > 0 {
			if info.Unread, err = s.b.CountAfter(ctx, name, reads[name], maxUnread); err != nil {
				return nil, fmt.Errorf("counting unread in %s: %w", name, err)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// History returns a page of channel's messages older than before ("" = newest), newest last.
func (s *Service) History(ctx context.Context, user, channel, before string, limit int) ([]protocol.Message, error) {
	if err := s.access(user, channel); err != nil {
		return nil, err
	}
	limit = max(1, min(limit, MaxHistoryPage))
	msgs, err := s.b.Before(ctx, channel, before, limit)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	return msgs, nil
}

// RevokeSessions closes, on every server, the sockets of user's listed
// sessions (all of them when ids is empty) with close code 4401.
func (s *Service) RevokeSessions(ctx context.Context, user string, ids []string) error {
	e := Event{Kind: EventRevoke, User: user, Sessions: ids, Origin: s.opts.Pod}
	// Close local sockets now rather than waiting for our own event: the
	// person who pressed "log out everywhere" sees it take effect at once.
	s.handleEvent(e)
	if err := s.b.Publish(ctx, e); err != nil {
		return fmt.Errorf("publishing revocation: %w", err)
	}
	return nil
}

// Drain tells every client to reconnect elsewhere, spread evenly over
// spread so they do not all come back at once, then waits until they are
// gone or ctx ends. New connections are refused from the start.
func (s *Service) Drain(ctx context.Context, spread time.Duration) {
	s.mu.Lock()
	s.closing = true
	all := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()

	reconnect := protocol.Encode(protocol.Reconnect{Type: protocol.TypeReconnect, Reason: "draining"})
	var step time.Duration
	if len(all) > 1 {
		step = spread / time.Duration(len(all))
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for _, c := range all {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.enqueue(protocol.TypeReconnect, reconnect)
		c.close(protocol.CloseServiceRestart, "server restarting")
		t.Reset(step)
	}
	for _, c := range all {
		select {
		case <-c.wait(&c.done):
		case <-ctx.Done():
			return
		}
	}
}

// dedupKey turns (user, clientId) into a storage-safe key: the clientId is
// client-chosen, so it is hashed rather than embedded.
func dedupKey(user, clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return user + ":" + hex.EncodeToString(sum[:16])
}

// mentions returns the distinct @usernames in text.
func mentions(text string) []string {
	var out []string
	for i := 0; i < len(text); i++ {
		if text[i] != '@' || (i > 0 && isNameByte(text[i-1])) {
			continue
		}
		j := i + 1
		for j < len(text) && isNameByte(text[j]|0x20) {
			j++
		}
		name := strings.ToLower(strings.TrimRight(text[i+1:j], "."))
		if protocol.ValidUsername(name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
		i = j - 1
	}
	return out
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// handler adapts Service to the Feed's Handler without exporting its methods.
type handler struct{ s *Service }

func (h handler) Messages(channel string, msgs []protocol.Message) { h.s.deliver(channel, msgs) }
func (h handler) Event(e Event)                                    { h.s.handleEvent(e) }

// deliver fans committed messages out to local sockets. Each message is
// encoded once per server, not once per socket.
func (s *Service) deliver(channel string, msgs []protocol.Message) {
	now := time.Now().UnixMilli()
	out := make([]outMsg, len(msgs))
	for i, m := range msgs {
		id, _ := protocol.ParseID(m.ID)
		out[i] = outMsg{id: id, m: m, frame: protocol.EncodeMessage(nil, m)}
		s.m.DeliveryLatency.Observe(float64(max(0, now-m.TS)) / 1000)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	targets := s.members[channel]
	if s.public[channel] {
		targets = s.conns
	}
	queued := 0
	for c := range targets {
		queued += c.deliver(channel, out)
	}
	s.objMessage.Add(float64(queued))
	s.pace.queued.Add(int64(queued))
	s.notify(channel, out)
}

// notify sends DM and @mention notifications to local sockets. Caller holds s.mu.
func (s *Service) notify(channel string, msgs []outMsg) {
	a, b, isDM := protocol.SplitDM(channel)
	for _, om := range msgs {
		m := om.m
		var targets []string
		kind := "mention"
		if isDM {
			kind = "dm"
			targets = []string{a}
			if m.From == a {
				targets = []string{b}
			}
		} else {
			targets = mentions(m.Text)
		}
		for _, u := range targets {
			if u == m.From {
				continue
			}
			conns := s.byUser[u]
			if len(conns) == 0 {
				continue
			}
			frame := protocol.Encode(protocol.Notification{
				Type: protocol.TypeNotification, Kind: kind, Channel: channel, From: m.From, ID: m.ID, Text: m.Text,
			})
			for c := range conns {
				c.enqueue(protocol.TypeNotification, frame)
			}
		}
	}
}

func (s *Service) handleEvent(e Event) {
	switch e.Kind {
	case EventPresence:
		s.notePresence(e.User, e.Status)
	case EventTyping:
		frame := protocol.Encode(protocol.Typing{Type: protocol.TypeTyping, Channel: e.Channel, User: e.User})
		s.mu.RLock()
		defer s.mu.RUnlock()
		targets := s.members[e.Channel]
		if s.public[e.Channel] {
			targets = s.conns
		}
		for c := range targets {
			if c.user != e.User {
				c.enqueue(protocol.TypeTyping, frame)
			}
		}
	case EventRead:
		frame := protocol.Encode(protocol.Read{Type: protocol.TypeRead, Channel: e.Channel, ID: e.ID})
		s.mu.RLock()
		defer s.mu.RUnlock()
		for c := range s.byUser[e.User] {
			c.enqueue(protocol.TypeRead, frame)
		}
	case EventRevoke:
		s.mu.RLock()
		defer s.mu.RUnlock()
		for c := range s.byUser[e.User] {
			if len(e.Sessions) == 0 || slices.Contains(e.Sessions, c.session) {
				c.close(protocol.CloseUnauthorized, "session revoked")
			}
		}
	case EventDM:
		a, b, ok := protocol.SplitDM(e.Channel)
		if !ok {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, u := range []string{a, b} {
			for c := range s.byUser[u] {
				// A DM created after these sockets connected: follow it from
				// the start, it holds at most the few messages sent so far.
				s.joinLocked(c, e.Channel, "")
			}
		}
	}
}

// joinLocked makes c a member of DM channel ch. Caller holds s.mu for writing.
func (s *Service) joinLocked(c *conn, ch, after string) {
	set := s.members[ch]
	if set == nil {
		set = map[*conn]struct{}{}
		s.members[ch] = set
		s.b.Follow(ch, after)
	}
	set[c] = struct{}{}
	if c.dms == nil {
		c.dms = map[string]struct{}{}
	}
	c.dms[ch] = struct{}{}
}

// register adds c to the hub with its DM channels; lastIDs holds each DM's
// last id read before registering, the point to follow from.
func (s *Service) register(c *conn, lastIDs map[string]string) (first bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, errDraining
	}
	if s.opts.MaxConns > 0 && len(s.conns) >= s.opts.MaxConns {
		return false, errServerFull
	}
	if len(s.byUser[c.user]) >= s.opts.MaxConnsPerUser {
		return false, errTooManyConns
	}
	s.conns[c] = struct{}{}
	u := s.byUser[c.user]
	if u == nil {
		u = map[*conn]struct{}{}
		s.byUser[c.user] = u
		first = true
	}
	u[c] = struct{}{}
	for ch, last := range lastIDs {
		s.joinLocked(c, ch, last)
	}
	s.m.Connections.Set(float64(len(s.conns)))
	return first, nil
}

// unregister removes c; it reports whether c was the user's last local socket.
func (s *Service) unregister(c *conn) (last bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return false
	}
	delete(s.conns, c)
	if u := s.byUser[c.user]; u != nil {
		delete(u, c)
		if len(u) == 0 {
			delete(s.byUser, c.user)
			last = true
		}
	}
	for ch := range c.dms {
		set := s.members[ch]
		delete(set, c)
		if len(set) == 0 {
			delete(s.members, ch)
			s.b.Unfollow(ch)
		}
	}
	s.m.Connections.Set(float64(len(s.conns)))
	return last
}

var (
	errDraining     = errors.New("server is draining")
	errTooManyConns = errors.New("too many connections for this user")
	errServerFull   = errors.New("server has no room for more connections")
)

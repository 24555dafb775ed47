package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The storm and dm workloads hold their sockets the way a chat client does:
// each remembers, per conversation, the last message id it saw, and comes
// back after a close (its own, or a draining server's) with a resume from
// those ids. A socket's place in the job (its user, its conversations and
// their last ids) is a slot, which outlives its connections; each
// connection is an edgeConn. Deliveries are told apart by message id per
// slot and conversation, as a client drops what it has seen: a sequence
// number per sender says nothing once one worker sends into many
// conversations, or a replay repeats what arrived live.

// edgeJob is what a storm or dm worker needs beyond a job.
type edgeJob struct {
	Workload string     `json:"workload"` // "storm" or "dm"
	Servers  []string   `json:"servers"`  // every server's /ws URL: a socket whose server goes away moves to the next
	Slots    []slotSpec `json:"slots"`    // one per job.Conns entry
	Users    int        `json:"users"`    // people in the room: user i is userName(i)
	Watch    int        `json:"watch"`    // people each socket watches after hello (0: no watch frame)
	// Password, when set, makes each user log in once per worker, at the
	// cost its account was hashed with, before its first socket dials;
	// job.Conns then carry no token.
	Password             string `json:"password,omitempty"`
	ReconnectConcurrency int    `json:"reconnectConcurrency"`
	Missed               int    `json:"missed"`            // storm: messages sent while the sockets are away
	ChannelSize          int    `json:"channelSize"`       // dm: people per created channel
	ChannelsPerPerson    int    `json:"channelsPerPerson"` // dm: created channels each person is in (1 or 2)
	SocketsPerPerson     int    `json:"socketsPerPerson"`  // dm
}

type slotSpec struct {
	User   int `json:"user"`
	Server int `json:"server"` // index in edgeJob.Servers
}

const (
	workloadStorm = "storm"
	workloadDM    = "dm"
)

// The prefixes the line handler tells objects by (see deliveries.go for why
// it does not decode them): the server writes each object's fields in one
// order (protocol.EncodeMessage).
var (
	markMessageObj   = []byte(`{"type":"message","id":"`)
	markChannelKey   = []byte(`","channel":"`)
	markTextKey      = []byte(`"text":"`)
	markPresence     = []byte(`{"type":"presence"`)
	markResumed      = []byte(`{"type":"resumed"`)
	markReconnect    = []byte(`{"type":"reconnect"`)
	markUnknown      = []byte(`"code":"unknown_channel"`)
	markNotRecovered = []byte(`":false`)
	markEdgeClient   = []byte(`"clientId":"x`)
	markMissed       = []byte("hbmissed ")
	markDM           = []byte("hbx ")
)

type edgeWorker struct {
	w     *worker
	job   *edgeJob
	ctx   context.Context // the worker's: moves outlive the command that started them
	d     *websocket.Dialer
	slots []*slot
	round atomic.Pointer[edgeRound] // the round under way: the connect, a reconnect storm, or a dm sending's moves

	dm      dmCounters
	persons []*person // dm: the people this worker sends for

	http     *http.Client
	loginMu  sync.Mutex
	loginsBy map[int]*login
}

// slot is one socket of the job, across its connections.
type slot struct {
	e      *edgeWorker
	i      int // in job.Conns
	spec   slotSpec
	server int // where it connects next; only its dialing goroutine uses it
	conn   atomic.Pointer[wconn]
	// moving is set by the server's reconnect object: the sender leaves the
	// socket alone until its next connection.
	moving atomic.Bool

	mu     sync.Mutex
	convs  []conv
	seeded bool // the first hello (Centrifugo: subscribe reply) gave the conversations' last ids
	// Centrifugo's position in the storm's one channel (its stream's epoch,
	// and the offset of the last publication seen) instead of convs' ids.
	epoch  string
	offset uint64
	// unacked holds the dm sends made on this slot that no ack or error
	// has answered yet, by clientId: a client sends them again, with the
	// same clientId, once the slot has a connection again (stored once).
	unacked map[string][]byte
}

// conv is a conversation a slot's person is in, and the last id it saw
// there (zero: none).
type conv struct {
	name string
	last protocol.ID
}

// edgeConn is one connection of a slot: touched by its reader goroutine
// only, once dialFirst has handed it over.
type edgeConn struct {
	s                        *slot
	rnd                      *edgeRound
	dialAt                   time.Time
	helloed, resumed, closed bool
	missed                   int
}

// edgeRound counts one connect, one reconnect storm, or the moves of a dm
// run: each connection counts towards the round it was dialed in.
type edgeRound struct {
	wantMissed                           int // a connection is complete once resumed with this many missed messages
	start                                time.Time
	hello, resumed, login                hist
	dialed, connected, failed, completed atomic.Uint64
	missed, dups                         atomic.Uint64
	presence, errors, unknown, notices   atomic.Uint64
	notRecovered                         atomic.Uint64 // conversations a resumed said were not replayed whole
	lost                                 atomic.Uint64
	logins, loginRetries                 atomic.Uint64
	lastDone, lastLogin                  atomic.Int64
	errMu                                sync.Mutex
	dialErrors                           []string
}

type dmCounters struct {
	sent, sentDM, sentChannel, writeErrors, skipped atomic.Uint64
	resent                                          atomic.Uint64
	ackedDM, ackedChannel, errFrames, expected      atomic.Uint64
	delivered, dups                                 atomic.Uint64
	lastRecv                                        atomic.Int64
	hist                                            hist
}

// edgeStats is a worker's answer to the storm and dm commands.
type edgeStats struct {
	StartNS      int64          `json:"startNs"`
	LastDoneNS   int64          `json:"lastDoneNs"`
	Dialed       uint64         `json:"dialed"`
	Connected    uint64         `json:"connected"`
	Failed       uint64         `json:"failed"`
	Completed    uint64         `json:"completed"`
	Missed       uint64         `json:"missed"`
	MissedDups   uint64         `json:"missedDups"`
	Presence     uint64         `json:"presence"`
	Errors       uint64         `json:"errors"`
	Unknown      uint64         `json:"unknownChannel"`
	NotRecovered uint64         `json:"notRecovered"`
	Notices      uint64         `json:"reconnectNotices"`
	Lost         uint64         `json:"lost"`
	Hello        map[int]uint64 `json:"hello"`
	Resumed      map[int]uint64 `json:"resumed"`
	Logins       uint64         `json:"logins"`
	LoginRetries uint64         `json:"loginRetries"`
	Login        map[int]uint64 `json:"login"`
	LastLoginNS  int64          `json:"lastLoginNs"`
	DialErrors   []string       `json:"dialErrors,omitempty"`
	DM           *dmStats       `json:"dm,omitempty"`
}

type dmStats struct {
	Sent         uint64         `json:"sent"`
	SentDM       uint64         `json:"sentDm"`
	SentChannel  uint64         `json:"sentChannel"`
	WriteErrors  uint64         `json:"writeErrors"`
	Skipped      uint64         `json:"skipped"` // no socket of the person's was open
	Resent       uint64         `json:"resent"`  // unanswered when their socket closed
	AckedDM      uint64         `json:"ackedDm"`
	AckedChannel uint64         `json:"ackedChannel"`
	ErrFrames    uint64         `json:"errFrames"`
	Expected     uint64         `json:"expected"`
	Delivered    uint64         `json:"delivered"`
	Duplicates   uint64         `json:"duplicates"`
	LastRecvNS   int64          `json:"lastRecvNs"`
	Hist         map[int]uint64 `json:"hist"`
}

func newEdgeRound(wantMissed int) *edgeRound {
	return &edgeRound{wantMissed: wantMissed, start: time.Now()}
}

// dmChannel is the created channel of the dm workload's channel i.
func dmChannel(i int) string { return fmt.Sprintf("c%03d", i) }

// dmPeer is the person user shares a DM with (-1: none, an odd one out).
func dmPeer(user, users int) int {
	if p := user ^ 1; p < users {
		return p
	}
	return -1
}

// newEdgeWorker is nil unless the job is a storm or dm one.
func newEdgeWorker(w *worker) *edgeWorker {
	j := w.job.Edge
	if j == nil {
		return nil
	}
	e := &edgeWorker{w: w, job: j, d: w.dialer(), loginsBy: map[int]*login{}}
	var local net.Addr
	if w.job.LocalIP != "" {
		local = &net.TCPAddr{IP: net.ParseIP(w.job.LocalIP)}
	}
	e.http = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext:         (&net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: max(64, j.ReconnectConcurrency, w.job.DialConcurrency),
	}}
	byUser := map[int]*person{}
	for i, spec := range j.Slots {
		s := &slot{e: e, i: i, spec: spec, server: spec.Server}
		names := []string{w.job.Channel}
		if j.Workload == workloadDM {
			names = append(names, j.channelsOf(spec.User)...)
			if peer := dmPeer(spec.User, j.Users); peer >= 0 {
				names = append(names, protocol.DMChannel(userName(spec.User), userName(peer)))
			}
			p := byUser[spec.User]
			if p == nil {
				p = newPerson(spec.User, j)
				byUser[spec.User] = p
				e.persons = append(e.persons, p)
			}
			p.slots = append(p.slots, s)
		}
		for _, n := range names {
			s.convs = append(s.convs, conv{name: n})
		}
		e.slots = append(e.slots, s)
	}
	return e
}

// connect is the first connect of every slot: each resumes nothing, and
// learns its conversations' last ids from its hello.
func (e *edgeWorker) connect(ctx context.Context) ([]*wconn, []string) {
	e.ctx = ctx
	rnd := newEdgeRound(0)
	e.round.Store(rnd)
	ctx, cancel := context.WithTimeout(ctx, e.w.job.ConnectTimeout)
	defer cancel()
	conns, errs := dialEach(ctx, len(e.slots), e.w.job.DialConcurrency, e.w.job.DialRate, func(i int) (*wconn, error) {
		return e.open(ctx, e.slots[i], rnd)
	})
	rnd.await(ctx)
	return conns, errs
}

// open dials s (logging its user in first when the job says so), resumes
// from its last ids, and watches people when the job says so.
func (e *edgeWorker) open(ctx context.Context, s *slot, rnd *edgeRound) (*wconn, error) {
	rnd.dialed.Add(1)
	c, err := e.dialSlot(ctx, s, rnd)
	if err != nil {
		rnd.failed.Add(1)
		rnd.noteError(err)
		return nil, err
	}
	rnd.connected.Add(1)
	// Before the sender may write on c too (gorilla allows one writer).
	for _, f := range s.takeUnacked() {
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if c.ws.WriteMessage(websocket.TextMessage, f) == nil {
			e.dm.resent.Add(1)
		}
	}
	s.moving.Store(false)
	s.conn.Store(c)
	if c.gone.Load() && s.conn.CompareAndSwap(c, nil) {
		// Lost while it was being handed over: lost() found no slot to move.
		rnd.lost.Add(1)
		e.afterLoss(s)
	}
	return c, nil
}

func (e *edgeWorker) dialSlot(ctx context.Context, s *slot, rnd *edgeRound) (*wconn, error) {
	token, err := e.token(ctx, s)
	if err != nil {
		return nil, err
	}
	x := &edgeConn{s: s, rnd: rnd, dialAt: time.Now()}
	c, err := e.w.dialFirst(ctx, e.d, connSpec{URL: e.job.Servers[s.server], Token: token}, s.resumeFrame(), x)
	if err != nil {
		return nil, err
	}
	if c.gone.Load() {
		return nil, fmt.Errorf("%s closed the socket before hello", e.job.Servers[s.server])
	}
	if e.job.Watch > 0 {
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.ws.WriteMessage(websocket.TextMessage, e.watchFrame(s.spec.User)); err != nil {
			closeNormal(c)
			return nil, fmt.Errorf("sending watch: %w", err)
		}
	}
	return c, nil
}

// watchFrame asks for the presence of the job's Watch people after user.
func (e *edgeWorker) watchFrame(user int) []byte {
	b := []byte(`{"type":"watch","users":[`)
	for k := 1; k <= e.job.Watch; k++ {
		if k > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, userName((user+k)%e.job.Users))
	}
	return append(b, "]}"...)
}

// resumeFrame names every conversation's last id once the first hello gave
// them (before it: nothing, as run's sockets do).
func (s *slot) resumeFrame() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := []byte(`{"type":"resume","since":{`)
	for i, cv := range s.convs {
		if !s.seeded {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, cv.name)
		b = append(b, ':')
		b = strconv.AppendQuote(b, idString(cv.last))
	}
	return append(b, "}}"...)
}

// idString is a message id as the protocol writes it; "" for none (a
// resume from "" replays all that is kept, which is all the socket missed).
func idString(id protocol.ID) string {
	if id == (protocol.ID{}) {
		return ""
	}
	return strconv.FormatUint(id.Ms, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// seed takes the conversations' last ids from the slot's first hello: the
// client has "seen" a channel up to there, live messages follow. Later
// hellos change nothing: the slot's own ids are what it has.
func (s *slot) seed(line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seeded {
		return
	}
	s.seeded = true
	var h helloObject
	if err := json.Unmarshal(line, &h); err != nil {
		return
	}
	for _, ch := range h.Channels {
		for i := range s.convs {
			if s.convs[i].name == ch.Name {
				s.convs[i].last = protocol.IDOrZero(ch.LastID)
			}
		}
	}
}

// saw records id in channel and reports whether it is new to the slot (ids
// of a conversation arrive in order, so anything not past the last is a
// repeat).
func (s *slot) saw(channel []byte, id protocol.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.convs {
		if s.convs[i].name == string(channel) {
			if id.Compare(s.convs[i].last) <= 0 {
				return false
			}
			s.convs[i].last = id
			return true
		}
	}
	return true // not one of the slot's conversations: counted, not tracked
}

// line handles one server object. What times or completes a connection
// counts towards the round it was dialed in; what merely arrives
// (presence, errors, a drain's notice) towards the round under way.
func (x *edgeConn) line(c *wconn, line []byte, now time.Time) {
	e, r := x.s.e, x.rnd
	switch {
	case bytes.HasPrefix(line, markMessageObj):
		x.message(line[len(markMessageObj):], now)
	case bytes.HasPrefix(line, markPresence):
		e.round.Load().presence.Add(1)
	case bytes.HasPrefix(line, markAck):
		if cid := edgeClientID(line); cid != nil && x.s.answered(cid) {
			e.dm.ack(cid, e.job)
		}
	case bytes.HasPrefix(line, markResumed):
		// A conversation not replayed whole (trimmed, or storage failed):
		// a client reloads its history; this one counts it, and what it
		// lacks shows as a shortfall.
		e.round.Load().notRecovered.Add(uint64(bytes.Count(line, markNotRecovered)))
		if !x.resumed {
			x.resumed = true
			r.resumed.record(now.Sub(x.dialAt))
			x.check(now)
		}
	case bytes.HasPrefix(line, markHello):
		if !x.helloed {
			x.helloed = true
			r.hello.record(now.Sub(x.dialAt))
			x.s.seed(line)
		}
		c.gotHello()
	case bytes.HasPrefix(line, markError):
		switch {
		case bytes.Contains(line, markEdgeClient):
			if cid := edgeClientID(line); cid != nil && x.s.answered(cid) {
				e.dm.errFrames.Add(1)
			}
		case bytes.Contains(line, markUnknown):
			// A resume naming a DM nobody has written in yet.
			e.round.Load().unknown.Add(1)
		default:
			e.round.Load().errors.Add(1)
		}
	case bytes.HasPrefix(line, markReconnect):
		x.s.moving.Store(true)
		e.round.Load().notices.Add(1)
	}
}

// message handles the rest of a message object after `{"type":"message","id":"`.
func (x *edgeConn) message(b []byte, now time.Time) {
	j := bytes.IndexByte(b, '"')
	if j < 0 {
		return
	}
	id, ok := parseIDBytes(b[:j])
	rest, found := bytes.CutPrefix(b[j:], markChannelKey)
	if !ok || !found {
		return
	}
	k := bytes.IndexByte(rest, '"')
	t := bytes.Index(rest, markTextKey)
	if k < 0 || t < 0 {
		return
	}
	fresh := x.s.saw(rest[:k], id)
	text := rest[t+len(markTextKey):]
	e, r := x.s.e, x.rnd
	switch {
	case bytes.HasPrefix(text, markMissed):
		if !fresh {
			r.dups.Add(1)
			return
		}
		x.missed++
		r.missed.Add(1)
		x.check(now)
	case bytes.HasPrefix(text, markDM):
		if !fresh {
			e.dm.dups.Add(1)
			return
		}
		e.dm.deliver(text[len(markDM):], now)
	}
}

// check counts the connection complete once it is resumed and holds every
// missed message.
func (x *edgeConn) check(now time.Time) {
	if x.closed || !x.resumed || x.missed < x.rnd.wantMissed {
		return
	}
	x.closed = true
	x.rnd.completed.Add(1)
	storeMax(&x.rnd.lastDone, now.UnixNano())
}

// parseIDBytes is protocol.ParseID without a string per message.
func parseIDBytes(b []byte) (protocol.ID, bool) {
	var id protocol.ID
	i := bytes.IndexByte(b, '-')
	if i <= 0 || i == len(b)-1 {
		return id, false
	}
	for _, part := range []struct {
		digits []byte
		v      *uint64
	}{{b[:i], &id.Ms}, {b[i+1:], &id.Seq}} {
		for _, d := range part.digits {
			if d < '0' || d > '9' {
				return id, false
			}
			*part.v = *part.v*10 + uint64(d-'0')
		}
	}
	return id, true
}

// leadingInt reads the decimal number b starts with.
func leadingInt(b []byte) (int64, bool) {
	var v int64
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		v = v*10 + int64(b[j]-'0')
		j++
	}
	return v, j > 0
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func (r *edgeRound) noteError(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.dialErrors) < 5 {
		r.dialErrors = append(r.dialErrors, err.Error())
	}
}

// await waits until every connection that opened is complete, nothing has
// completed for 10 s, or ctx ends.
func (r *edgeRound) await(ctx context.Context) {
	last, since := r.completed.Load(), time.Now()
	for r.completed.Load() < r.connected.Load() && ctx.Err() == nil && time.Since(since) < 10*time.Second {
		time.Sleep(10 * time.Millisecond)
		if n := r.completed.Load(); n != last {
			last, since = n, time.Now()
		}
	}
}

func (r *edgeRound) stats() *edgeStats {
	r.errMu.Lock()
	errs := append([]string(nil), r.dialErrors...)
	r.errMu.Unlock()
	return &edgeStats{
		StartNS: r.start.UnixNano(), LastDoneNS: r.lastDone.Load(),
		Dialed: r.dialed.Load(), Connected: r.connected.Load(), Failed: r.failed.Load(), Completed: r.completed.Load(),
		Missed: r.missed.Load(), MissedDups: r.dups.Load(),
		Presence: r.presence.Load(), Errors: r.errors.Load(), Unknown: r.unknown.Load(), NotRecovered: r.notRecovered.Load(), Notices: r.notices.Load(), Lost: r.lost.Load(),
		Hello: r.hello.snapshot(), Resumed: r.resumed.snapshot(),
		Logins: r.logins.Load(), LoginRetries: r.loginRetries.Load(), Login: r.login.snapshot(), LastLoginNS: r.lastLogin.Load(),
		DialErrors: errs,
	}
}

// command runs the storm and dm commands (RunWorker's own are step, stats
// and quit).
func (e *edgeWorker) command(ctx context.Context, cmd command) (event, error) {
	ev := event{Worker: e.w.job.Worker, Step: cmd.Step}
	switch cmd.Cmd {
	case "report":
		ev.Event = "report"
	case "drop":
		ev.Event = "dropped"
		for _, s := range e.slots {
			if c := s.conn.Swap(nil); c != nil {
				closeNormal(c)
			}
		}
	case "reconnect":
		ev.Event = "reconnected"
		rnd := newEdgeRound(e.job.Missed)
		e.round.Store(rnd)
		ctx, cancel := context.WithTimeout(ctx, cmd.Duration)
		defer cancel()
		dialEach(ctx, len(e.slots), e.job.ReconnectConcurrency, 0, func(i int) (*wconn, error) {
			return e.open(ctx, e.slots[i], rnd)
		})
		rnd.await(ctx)
	case "dmsend":
		ev.Event = "sent"
		// Moves during the sends count on their own.
		e.round.Store(newEdgeRound(0))
		e.send(ctx, cmd)
	default:
		return ev, fmt.Errorf("unknown command %q", cmd.Cmd)
	}
	ev.Edge = e.round.Load().stats()
	if e.job.Workload == workloadDM {
		ev.Edge.DM = e.dm.stats()
	}
	return ev, nil
}

// closeNormal closes c from the client's side, as a person leaving does.
func closeNormal(c *wconn) {
	c.forget()
	if !c.gone.Swap(true) {
		c.w.open.Add(-1)
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// lost is told of a connection the server closed (or that broke).
func (e *edgeWorker) lost(c *wconn) {
	x := c.edge
	if x == nil || !x.s.conn.CompareAndSwap(c, nil) {
		return // not handed over yet, or closed on purpose
	}
	e.round.Load().lost.Add(1)
	e.afterLoss(x.s)
}

// afterLoss moves a dm socket to the next server, as a client told to
// reconnect does, resuming from its last ids. The storm counts its losses
// and leaves them.
func (e *edgeWorker) afterLoss(s *slot) {
	if e.job.Workload != workloadDM {
		return
	}
	go func() {
		rnd := e.round.Load()
		for attempt := range 10 {
			s.server = (s.server + 1) % len(e.job.Servers)
			ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
			_, err := e.open(ctx, s, rnd)
			cancel()
			if err == nil || e.ctx.Err() != nil {
				return
			}
			time.Sleep(time.Duration(rand.Int64N(int64(100*time.Millisecond) << attempt)))
		}
	}()
}

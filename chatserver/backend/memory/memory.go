// Package memory is the in-process backend: every storage and fan-out
// contract of the chat server, held in one process's memory. It is what
// `make run` uses, and the second implementation the behaviour suite
// (chatserver/backend/backendtest) holds the Redis backend to.
package memory

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var (
	_ chat.Backend = (*Backend)(nil)
	_ auth.Store   = (*Backend)(nil)
)

// dedupTTL is how long a clientId is remembered (the Log contract's 24 hours).
const dedupTTL = 24 * time.Hour

// store is the state that peers share, as servers share one Redis.
type store struct {
	mu       sync.Mutex
	now      func() time.Time
	channels map[string]*channelLog
	dedup    map[string]dedupEntry
	feeds    map[*Backend]struct{}
	presence map[string]time.Time // "<pod>/<user>" -> expiry
	reads    map[string]map[string]string
	dms      map[string]map[string]struct{}
	users    map[string]auth.User
	sessions map[string]sessionEntry // token hash -> session
	throttle map[string]throttleEntry
}

type channelLog struct {
	msgs []protocol.Message
	last protocol.ID
}

type dedupEntry struct {
	msg     protocol.Message
	expires time.Time
}

type sessionEntry struct {
	s       auth.Session
	expires time.Time
}

type throttleEntry struct {
	count int
	ends  time.Time
}

// Backend is one server's handle on a memory store.
type Backend struct {
	st *store

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []delivery
	follows  map[string]protocol.ID
	stopping bool
}

type delivery struct {
	channel string
	msgs    []protocol.Message
	event   *chat.Event
}

// New returns a backend with a fresh, empty store.
func New() *Backend {
	return newBackend(&store{
		now:      time.Now,
		channels: map[string]*channelLog{},
		dedup:    map[string]dedupEntry{},
		feeds:    map[*Backend]struct{}{},
		presence: map[string]time.Time{},
		reads:    map[string]map[string]string{},
		dms:      map[string]map[string]struct{}{},
		users:    map[string]auth.User{},
		sessions: map[string]sessionEntry{},
		throttle: map[string]throttleEntry{},
	})
}

func newBackend(st *store) *Backend {
	b := &Backend{st: st, follows: map[string]protocol.ID{}}
	b.cond = sync.NewCond(&b.mu)
	st.mu.Lock()
	st.feeds[b] = struct{}{}
	st.mu.Unlock()
	return b
}

// Peer returns another handle on the same store: a second "server" in the
// same process, as two pods share one Redis.
func (b *Backend) Peer() *Backend { return newBackend(b.st) }

// Ping always succeeds: memory is always reachable.
func (b *Backend) Ping(context.Context) error { return nil }

// Close detaches this handle from the store.
func (b *Backend) Close() error {
	b.st.mu.Lock()
	delete(b.st.feeds, b)
	b.st.mu.Unlock()
	return nil
}

// --- Log ---

// Append implements chat.Log.
func (b *Backend) Append(_ context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	if dedupKey != "" {
		if e, ok := st.dedup[dedupKey]; ok && now.Before(e.expires) {
			return e.msg, nil
		}
	}
	cl := st.channels[m.Channel]
	if cl == nil {
		cl = &channelLog{}
		st.channels[m.Channel] = cl
	}
	ms := uint64(now.UnixMilli())
	id := protocol.ID{Ms: ms}
	if ms <= cl.last.Ms {
		id = protocol.ID{Ms: cl.last.Ms, Seq: cl.last.Seq + 1}
	}
	cl.last = id
	m.ID = id.String()
	m.TS = now.UnixMilli()
	cl.msgs = append(cl.msgs, m)
	// Trim in batches (like XADD MAXLEN ~) so appends stay O(1) amortized.
	if maxLen > 0 && len(cl.msgs) > maxLen+maxLen/8+1 {
		cl.msgs = append([]protocol.Message(nil), cl.msgs[len(cl.msgs)-maxLen:]...)
	}
	if dedupKey != "" {
		st.dedup[dedupKey] = dedupEntry{msg: m, expires: now.Add(dedupTTL)}
		if len(st.dedup) > 1<<16 && len(st.dedup)%1024 == 0 {
			for k, e := range st.dedup {
				if !now.Before(e.expires) {
					delete(st.dedup, k)
				}
			}
		}
	}
	for f := range st.feeds {
		f.offer(m)
	}
	return m, nil
}

// index returns the position of the first message with ID > id.
func (cl *channelLog) after(id protocol.ID) int {
	return sort.Search(len(cl.msgs), func(i int) bool {
		x, _ := protocol.ParseID(cl.msgs[i].ID)
		return x.Compare(id) > 0
	})
}

func parseOrZero(s string) protocol.ID {
	id, _ := protocol.ParseID(s)
	return id
}

// After implements chat.Log.
func (b *Backend) After(_ context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil, nil
	}
	i := cl.after(parseOrZero(after))
	j := min(len(cl.msgs), i+limit)
	return append([]protocol.Message(nil), cl.msgs[i:j]...), nil
}

// Before implements chat.Log.
func (b *Backend) Before(_ context.Context, channel, before string, limit int) ([]protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil, nil
	}
	j := len(cl.msgs)
	if before != "" {
		id := parseOrZero(before)
		j = sort.Search(len(cl.msgs), func(i int) bool {
			x, _ := protocol.ParseID(cl.msgs[i].ID)
			return x.Compare(id) >= 0
		})
	}
	i := max(0, j-limit)
	return append([]protocol.Message(nil), cl.msgs[i:j]...), nil
}

// LastID implements chat.Log.
func (b *Backend) LastID(_ context.Context, channel string) (string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || len(cl.msgs) == 0 {
		return "", nil
	}
	return cl.msgs[len(cl.msgs)-1].ID, nil
}

// CountAfter implements chat.Log.
func (b *Backend) CountAfter(_ context.Context, channel, after string, limit int) (int, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil {
		return 0, nil
	}
	return min(limit, len(cl.msgs)-cl.after(parseOrZero(after))), nil
}

// --- Feed ---

// offer queues m if this handle follows its channel. Called with st.mu held,
// which orders appends, follows and deliveries consistently.
func (b *Backend) offer(m protocol.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, ok := b.follows[m.Channel]
	if !ok {
		return
	}
	id := parseOrZero(m.ID)
	if id.Compare(last) <= 0 {
		return
	}
	b.follows[m.Channel] = id
	b.push(delivery{channel: m.Channel, msgs: []protocol.Message{m}})
}

func (b *Backend) push(d delivery) {
	// Coalesce with the previous delivery of the same channel: fewer handler calls under load.
	if n := len(b.queue); n > 0 && d.event == nil && b.queue[n-1].event == nil && b.queue[n-1].channel == d.channel {
		b.queue[n-1].msgs = append(b.queue[n-1].msgs, d.msgs...)
	} else {
		b.queue = append(b.queue, d)
	}
	b.cond.Signal()
}

// Run implements chat.Feed.
func (b *Backend) Run(ctx context.Context, h chat.Handler) error {
	b.mu.Lock()
	b.stopping = false
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.stopping = true
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.stopping {
			b.cond.Wait()
		}
		if b.stopping {
			b.mu.Unlock()
			return nil
		}
		q := b.queue
		b.queue = nil
		b.mu.Unlock()
		for _, d := range q {
			if d.event != nil {
				h.Event(*d.event)
			} else {
				h.Messages(d.channel, d.msgs)
			}
		}
	}
}

// Follow implements chat.Feed.
func (b *Backend) Follow(channel, after string) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.follows[channel]; ok {
		return
	}
	from := parseOrZero(after)
	b.follows[channel] = from
	cl := b.st.channels[channel]
	if cl == nil {
		return
	}
	if i := cl.after(from); i < len(cl.msgs) {
		msgs := append([]protocol.Message(nil), cl.msgs[i:]...)
		b.follows[channel] = parseOrZero(msgs[len(msgs)-1].ID)
		b.push(delivery{channel: channel, msgs: msgs})
	}
}

// Unfollow implements chat.Feed.
func (b *Backend) Unfollow(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.follows, channel)
}

// Publish implements chat.Feed.
func (b *Backend) Publish(_ context.Context, e chat.Event) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	for f := range b.st.feeds {
		f.mu.Lock()
		ev := e
		f.push(delivery{event: &ev})
		f.mu.Unlock()
	}
	return nil
}

// --- Presence ---

// Join implements chat.Presence.
func (b *Backend) Join(_ context.Context, pod, user string, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	b.st.presence[keys.PresenceMember(pod, user)] = b.st.now().Add(ttl)
	return nil
}

// Heartbeat implements chat.Presence.
func (b *Backend) Heartbeat(_ context.Context, pod string, users []string, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	exp := b.st.now().Add(ttl)
	for _, u := range users {
		b.st.presence[keys.PresenceMember(pod, u)] = exp
	}
	return nil
}

// Leave implements chat.Presence.
func (b *Backend) Leave(_ context.Context, pod, user string) (bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	delete(b.st.presence, keys.PresenceMember(pod, user))
	if b.st.onlineLocked(user) {
		return false, nil
	}
	// Offline now, and reported so by this call: drop the user's expired
	// marks too, or a later Sweep would report them offline a second time.
	for m := range b.st.presence {
		if keys.PresenceUser(m) == user {
			delete(b.st.presence, m)
		}
	}
	return true, nil
}

func (st *store) onlineLocked(user string) bool {
	now := st.now()
	for m, exp := range st.presence {
		if keys.PresenceUser(m) == user && now.Before(exp) {
			return true
		}
	}
	return false
}

// Online implements chat.Presence.
func (b *Backend) Online(_ context.Context, limit int) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	seen := map[string]bool{}
	var out []string
	for m, exp := range b.st.presence {
		u := keys.PresenceUser(m)
		if now.Before(exp) && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Sweep implements chat.Presence.
func (b *Backend) Sweep(context.Context) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	candidates := map[string]bool{}
	for m, exp := range b.st.presence {
		if !now.Before(exp) {
			delete(b.st.presence, m)
			candidates[keys.PresenceUser(m)] = true
		}
	}
	var out []string
	for u := range candidates {
		if !b.st.onlineLocked(u) {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out, nil
}

// --- State ---

// SetRead implements chat.State.
func (b *Backend) SetRead(_ context.Context, user, channel, id string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	r := b.st.reads[user]
	if r == nil {
		r = map[string]string{}
		b.st.reads[user] = r
	}
	if cur, ok := r[channel]; !ok || protocol.CompareIDs(id, cur) > 0 {
		r[channel] = id
	}
	return nil
}

// ReadMarkers implements chat.State.
func (b *Backend) ReadMarkers(_ context.Context, user string) (map[string]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	out := map[string]string{}
	for k, v := range b.st.reads[user] {
		out[k] = v
	}
	return out, nil
}

// AddDM implements chat.State.
func (b *Backend) AddDM(_ context.Context, channel string) (bool, error) {
	x, y, ok := protocol.SplitDM(channel)
	if !ok {
		return false, nil
	}
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	created := false
	for _, u := range []string{x, y} {
		set := b.st.dms[u]
		if set == nil {
			set = map[string]struct{}{}
			b.st.dms[u] = set
		}
		if _, ok := set[channel]; !ok {
			set[channel] = struct{}{}
			created = true
		}
	}
	return created, nil
}

// DMs implements chat.State.
func (b *Backend) DMs(_ context.Context, user string, limit int) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []string
	for c := range b.st.dms[user] {
		out = append(out, c)
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// UserExists implements chat.Users.
func (b *Backend) UserExists(_ context.Context, username string) (bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	_, ok := b.st.users[username]
	return ok, nil
}

// --- auth.Store ---

// CreateUser implements auth.Store.
func (b *Backend) CreateUser(_ context.Context, u auth.User) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	if _, ok := b.st.users[u.Username]; ok {
		return auth.ErrUserExists
	}
	b.st.users[u.Username] = u
	return nil
}

// GetUser implements auth.Store.
func (b *Backend) GetUser(_ context.Context, username string) (auth.User, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	u, ok := b.st.users[username]
	if !ok {
		return auth.User{}, auth.ErrNotFound
	}
	return u, nil
}

// CreateSession implements auth.Store.
func (b *Backend) CreateSession(_ context.Context, s auth.Session, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	b.st.sessions[s.TokenHash] = sessionEntry{s: s, expires: b.st.now().Add(ttl)}
	return nil
}

// TouchSession implements auth.Store.
func (b *Backend) TouchSession(_ context.Context, tokenHash string, ttl time.Duration) (auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	e, ok := b.st.sessions[tokenHash]
	if !ok || !now.Before(e.expires) {
		delete(b.st.sessions, tokenHash)
		return auth.Session{}, auth.ErrNotFound
	}
	e.s.LastSeenAt = now
	e.expires = now.Add(ttl)
	b.st.sessions[tokenHash] = e
	return e.s, nil
}

// Sessions implements auth.Store.
func (b *Backend) Sessions(_ context.Context, username string) ([]auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	var out []auth.Session
	for h, e := range b.st.sessions {
		if !now.Before(e.expires) {
			delete(b.st.sessions, h)
			continue
		}
		if e.s.Username == username {
			out = append(out, e.s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// DeleteSession implements auth.Store.
func (b *Backend) DeleteSession(_ context.Context, username, id string) (auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	for h, e := range b.st.sessions {
		if e.s.Username == username && e.s.ID == id {
			delete(b.st.sessions, h)
			return e.s, nil
		}
	}
	return auth.Session{}, auth.ErrNotFound
}

// DeleteSessions implements auth.Store.
func (b *Backend) DeleteSessions(_ context.Context, username string) ([]auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []auth.Session
	for h, e := range b.st.sessions {
		if e.s.Username == username {
			delete(b.st.sessions, h)
			out = append(out, e.s)
		}
	}
	return out, nil
}

// CountLogin implements auth.Store.
func (b *Backend) CountLogin(_ context.Context, key string, window time.Duration) (int, time.Duration, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	e := b.st.throttle[key]
	if !now.Before(e.ends) {
		e = throttleEntry{ends: now.Add(window)}
	}
	e.count++
	b.st.throttle[key] = e
	return e.count, e.ends.Sub(now), nil
}

// ForgiveLogin implements auth.Store.
func (b *Backend) ForgiveLogin(_ context.Context, key string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	e, ok := b.st.throttle[key]
	if !ok || !b.st.now().Before(e.ends) {
		delete(b.st.throttle, key)
		return nil
	}
	e.count = max(e.count-1, 0)
	b.st.throttle[key] = e
	return nil
}

// ResetLogin implements auth.Store.
func (b *Backend) ResetLogin(_ context.Context, key string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	delete(b.st.throttle, key)
	return nil
}

package chat

import (
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
)

// hubShards spreads the registry's locks: a socket connecting or leaving
// locks its user's shard and its channels' shards, not the whole server.
const hubShards = 16

// hub is one server's registry of its sockets, by user and by followed DM
// and created channel, and the one path that fans anything out to them: messages,
// notifications, events and presence all go through fanout. It also owns
// the sockets' goroutines, so that stopping waits for them.
type hub struct {
	users    [hubShards]userShard
	channels [hubShards]channelShard
	public   map[string]bool // read-only after newHub
	follow   follower
	limits   hubLimits
	count    atomic.Int64
	// regs counts registrations, each after its socket is in the hub: a
	// read that began once regs reached a socket's count began after the
	// socket could receive live messages.
	regs   atomic.Uint32
	epochs [epochShards]atomic.Uint64
	// onCount reports each change in the number of registered sockets (+1
	// or -1): a gauge that adds them is right whatever order concurrent
	// changes report in.
	onCount func(delta int)

	life     sync.Mutex // guards draining against sockets starting
	draining bool
	sockets  sync.WaitGroup
}

// follower is what the hub tells the feed: follow a DM or created channel while it
// has local members.
type follower interface {
	Follow(channel, after string)
	Unfollow(channel string)
}

// hubLimits bound the sockets a hub takes.
type hubLimits struct {
	perUser int
	total   int // 0: unbounded
}

// userShard holds the sockets of the users that hash to it.
type userShard struct {
	mu     sync.RWMutex
	conns  map[*conn]struct{}
	byUser map[string]map[*conn]struct{}
}

// channelShard holds the local members of the DM and created channels that
// hash to it. The default channels are everyone's: they need no sets.
type channelShard struct {
	mu      sync.RWMutex
	members map[string]map[*conn]struct{}
}

var shardSeed = maphash.MakeSeed()

func shardOf(key string) int { return int(maphash.String(shardSeed, key) % hubShards) }

func newHub(public []string, f follower, limits hubLimits, onCount func(delta int)) *hub {
	h := &hub{public: map[string]bool{}, follow: f, limits: limits, onCount: onCount}
	for _, ch := range public {
		h.public[ch] = true
	}
	for i := range h.users {
		h.users[i].conns = map[*conn]struct{}{}
		h.users[i].byUser = map[string]map[*conn]struct{}{}
		h.channels[i].members = map[string]map[*conn]struct{}{}
	}
	return h
}

var (
	errDraining     = errors.New("server is draining")
	errTooManyConns = errors.New("too many connections for this user")
	errServerFull   = errors.New("server has no room for more connections")
)

// start counts a socket's goroutines in. It reports false once the hub
// drains or has stopped: the socket must not be served.
func (h *hub) start() bool {
	h.life.Lock()
	defer h.life.Unlock()
	if h.draining {
		return false
	}
	h.sockets.Add(1)
	return true
}

// done counts a socket's goroutines out.
func (h *hub) done() { h.sockets.Done() }

// register adds c with its DM and created channels; lastIDs holds the last id of each,
// read before registering, to follow it from. It reports whether c is its
// user's first socket here.
func (h *hub) register(c *conn, lastIDs map[string]string) (first bool, err error) {
	us := &h.users[shardOf(c.user)]
	us.mu.Lock()
	defer us.mu.Unlock()
	// Checked under the shard's lock: drain collects each shard under it,
	// after setting draining, so it sees every socket that got past here.
	h.life.Lock()
	draining := h.draining
	h.life.Unlock()
	if draining {
		return false, errDraining
	}
	if len(us.byUser[c.user]) >= h.limits.perUser {
		return false, errTooManyConns
	}
	n := h.count.Add(1)
	if h.limits.total > 0 && n > int64(h.limits.total) {
		h.count.Add(-1)
		return false, errServerFull
	}
	us.conns[c] = struct{}{}
	set := us.byUser[c.user]
	if set == nil {
		set = map[*conn]struct{}{}
		us.byUser[c.user] = set
		first = true
	}
	set[c] = struct{}{}
	for ch, last := range lastIDs {
		h.joinLocked(c, ch, last)
	}
	c.in.reg = h.regs.Add(1)
	h.onCount(1)
	return first, nil
}

// unregister removes c; it reports whether c was its user's last socket here.
func (h *hub) unregister(c *conn) (last bool) {
	us := &h.users[shardOf(c.user)]
	us.mu.Lock()
	defer us.mu.Unlock()
	if _, ok := us.conns[c]; !ok {
		return false
	}
	delete(us.conns, c)
	if set := us.byUser[c.user]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(us.byUser, c.user)
			last = true
		}
	}
	for ch := range c.joined {
		h.dropLocked(c, ch)
	}
	h.count.Add(-1)
	h.onCount(-1)
	return last
}

// joinDM makes every local socket of the DM's two members a member of it:
// a DM created after they connected is followed from its start (it holds
// at most the few messages sent so far).
func (h *hub) joinDM(channel, a, b string) {
	for _, u := range []string{a, b} {
		us := &h.users[shardOf(u)]
		us.mu.Lock()
		for c := range us.byUser[u] {
			h.joinLocked(c, channel, "")
		}
		us.mu.Unlock()
	}
}

// joinLocked makes c a member of DM or created channel ch. Caller holds the
// lock of c's user shard (which guards c.joined).
func (h *hub) joinLocked(c *conn, ch, after string) {
	cs := &h.channels[shardOf(ch)]
	cs.mu.Lock()
	set := cs.members[ch]
	if set == nil {
		set = map[*conn]struct{}{}
		cs.members[ch] = set
		h.follow.Follow(ch, after)
	}
	set[c] = struct{}{}
	cs.mu.Unlock()
	if c.joined == nil {
		c.joined = map[string]struct{}{}
	}
	c.joined[ch] = struct{}{}
}

// joinUser makes every local socket of user a member of created channel
// ch, following it after after if nobody here did, and queues added for
// each socket that was not in it yet.
func (h *hub) joinUser(ch, user, after string, added []byte) (sockets int) {
	us := &h.users[shardOf(user)]
	us.mu.Lock()
	defer us.mu.Unlock()
	h.bumpEpoch(user)
	for c := range us.byUser[user] {
		if _, in := c.joined[ch]; in {
			continue
		}
		// Let the channel through first: a message fanned out as soon as
		// the socket is in the channel's set must not meet the mark of an
		// earlier leave, nor go out before "channel".
		c.rejoin(ch, after, added)
		h.joinLocked(c, ch, after)
		sockets++
	}
	return sockets
}

// epochShards spread the membership epochs: a collision only costs a
// connecting socket one needless storage read.
const epochShards = 1024

// epoch counts the membership changes applied here to user (and to the
// users that share its shard). A socket that read its channels and then
// registered compares it: a change in between, which found no socket of
// its to apply to, is caught up from storage.
func (h *hub) epoch(user string) uint64 {
	return h.epochs[maphash.String(shardSeed, user)%epochShards].Load()
}

func (h *hub) bumpEpoch(user string) {
	h.epochs[maphash.String(shardSeed, user)%epochShards].Add(1)
}

// leaveUser ends the membership of ch of every local socket of user, and
// queues removed for each. Whatever of ch was fanned out to a socket before
// is queued before removed, and nothing of ch after: fan-out reads the
// channel's members under its shard's lock, which this takes to drop them.
func (h *hub) leaveUser(ch, user string, removed []byte) (sockets int) {
	us := &h.users[shardOf(user)]
	us.mu.Lock()
	defer us.mu.Unlock()
	h.bumpEpoch(user)
	for c := range us.byUser[user] {
		if _, in := c.joined[ch]; !in {
			continue
		}
		delete(c.joined, ch)
		h.dropLocked(c, ch)
		c.leave(ch, removed)
		sockets++
	}
	return sockets
}

// dropLocked takes c out of channel ch's local members, and stops
// following ch when nobody here is left in it. Caller holds the lock of c's
// user shard.
func (h *hub) dropLocked(c *conn, ch string) {
	cs := &h.channels[shardOf(ch)]
	cs.mu.Lock()
	defer cs.mu.Unlock()
	set := cs.members[ch]
	delete(set, c)
	if len(set) == 0 {
		delete(cs.members, ch)
		h.follow.Unfollow(ch)
	}
}

// joinedSet is a copy of the DM and created channels c is in.
func (h *hub) joinedSet(c *conn) map[string]bool {
	us := &h.users[shardOf(c.user)]
	us.mu.RLock()
	defer us.mu.RUnlock()
	out := make(map[string]bool, len(c.joined))
	for ch := range c.joined {
		out[ch] = true
	}
	return out
}

// follows reports whether c is a member of DM or created channel ch.
func (h *hub) follows(c *conn, ch string) bool {
	us := &h.users[shardOf(c.user)]
	us.mu.RLock()
	defer us.mu.RUnlock()
	_, ok := c.joined[ch]
	return ok
}

// audience names whom a fan-out reaches: everyone on this server, the
// members of a channel, or one user's sockets.
type audience struct {
	channel string
	user    string
}

func everyone() audience                { return audience{} }
func inChannel(channel string) audience { return audience{channel: channel} }
func ofUser(user string) audience       { return audience{user: user} }

// fanout calls f for every local socket in to. f runs under a registry read
// lock: it must not block, nor register or unregister sockets.
func (h *hub) fanout(to audience, f func(*conn)) {
	switch {
	case to.user != "":
		us := &h.users[shardOf(to.user)]
		us.mu.RLock()
		for c := range us.byUser[to.user] {
			f(c)
		}
		us.mu.RUnlock()
	case to.channel != "" && !h.public[to.channel]:
		cs := &h.channels[shardOf(to.channel)]
		cs.mu.RLock()
		for c := range cs.members[to.channel] {
			f(c)
		}
		cs.mu.RUnlock()
	default:
		for i := range h.users {
			us := &h.users[i]
			us.mu.RLock()
			for c := range us.conns {
				f(c)
			}
			us.mu.RUnlock()
		}
	}
}

// localUsers lists, sorted, the users with a socket here.
func (h *hub) localUsers() []string {
	var out []string
	for i := range h.users {
		us := &h.users[i]
		us.mu.RLock()
		for u := range us.byUser {
			out = append(out, u)
		}
		us.mu.RUnlock()
	}
	slices.Sort(out)
	return out
}

// drain refuses new sockets from now on and returns every registered one.
func (h *hub) drain() []*conn {
	h.life.Lock()
	h.draining = true
	h.life.Unlock()
	var all []*conn
	h.fanout(everyone(), func(c *conn) { all = append(all, c) })
	return all
}

// stop refuses sockets from now on, closes every registered one at once,
// and waits until every socket's goroutines have returned.
func (h *hub) stop() {
	h.life.Lock()
	h.draining = true
	h.life.Unlock()
	h.fanout(everyone(), func(c *conn) { _ = c.ws.Close() })
	h.sockets.Wait()
}

// wait returns a channel closed when every socket's goroutines have
// returned (call it only after drain or stop: no socket starts after).
func (h *hub) wait() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		h.sockets.Wait()
		close(ch)
	}()
	return ch
}

// len is the number of registered sockets.
func (h *hub) len() int { return int(h.count.Load()) }

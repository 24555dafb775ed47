package redisbackend

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The feed has one pub/sub connection per Backend, owned by the receiver
// goroutine; a subscriber goroutine keeps its subscriptions equal to the
// followed channels; shard workers deliver, one worker per channel, so
// Handler.Messages for a channel is never concurrent; a ticker retries failed
// stream reads and re-reads every channel now and then.
//
// On a Redis Cluster the subscriptions are sharded (SSUBSCRIBE, on the
// primary of the room's slot) and so are the publications (SPUBLISH); the
// guarantees are the same, see cluster.go.
type feed struct {
	b       *Backend
	seed    maphash.Seed
	shards  []*shard
	sharded bool // SSUBSCRIBE and SPUBLISH (Redis Cluster) rather than SUBSCRIBE and PUBLISH

	mu      sync.Mutex
	running bool
	ps      *redis.PubSub // the current connection; replaced when it stalls
	psGen   uint64
	pending map[string]struct{} // topics whose subscription may need to change
	subWake chan struct{}

	connLog, readLog, subLog logOnce
	pubLog                   logOnce // publishing confirmed messages (replication.go)

	// eventsSubscribed: the events topic was subscribed on some connection
	// before, so a subscription to it now follows a time without one, when
	// events went unheard. Only the receiver goroutine uses it.
	eventsSubscribed bool
}

// shard holds the state of the channels that hash to it and the work queued
// for them.
type shard struct {
	mu     sync.Mutex
	chans  map[string]*chanState
	queue  []item
	queued int // message items in queue (sync items are not counted)
	wake   chan struct{}
}

type chanState struct {
	following  bool
	gen        uint64 // bumped by every Follow and Unfollow
	last       string // last id delivered ("" = none yet)
	active     bool   // Redis confirmed the subscription on the current connection
	syncQueued bool
	retry      bool // a stream read failed; the ticker queues a sync
}

// item is a unit of delivery work: a published message, or a request to
// re-read the channel from its last delivered id to the end of the stream.
type item struct {
	channel string
	sync    bool
	prev    string
	msg     protocol.Message
}

func (f *feed) init(b *Backend) {
	f.b = b
	f.seed = maphash.MakeSeed()
	f.sharded = b.cluster() != nil
	f.pending = map[string]struct{}{}
	f.subWake = make(chan struct{}, 1)
	f.shards = make([]*shard, b.opt.Shards)
	for i := range f.shards {
		f.shards[i] = &shard{chans: map[string]*chanState{}, wake: make(chan struct{}, 1)}
	}
}

func (f *feed) shard(channel string) *shard {
	return f.shards[maphash.String(f.seed, channel)%uint64(len(f.shards))]
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Follow implements chat.Feed.
func (b *Backend) Follow(channel, after string) {
	f := &b.feed
	s := f.shard(channel)
	s.mu.Lock()
	st := s.chans[channel]
	if st != nil && st.following {
		s.mu.Unlock()
		return
	}
	if st == nil {
		st = &chanState{}
		s.chans[channel] = st
	}
	st.following, st.last, st.retry = true, after, false
	st.gen++
	if st.active {
		// Still subscribed (an Unfollow's UNSUBSCRIBE has not taken effect):
		// read what came since after now. If the UNSUBSCRIBE does take
		// effect, the subscriber subscribes again and its confirmation
		// triggers another read.
		s.syncLocked(channel, st)
	}
	s.mu.Unlock()
	f.requestSub(b.topicPrefix + channel)
}

// Unfollow implements chat.Feed.
func (b *Backend) Unfollow(channel string) {
	f := &b.feed
	s := f.shard(channel)
	s.mu.Lock()
	st := s.chans[channel]
	if st == nil || !st.following {
		s.mu.Unlock()
		return
	}
	st.following = false
	st.gen++
	if !st.active {
		delete(s.chans, channel)
	}
	s.mu.Unlock()
	f.requestSub(b.topicPrefix + channel)
}

// Publish implements chat.Feed. The event's Origin defaults to this PodID.
func (b *Backend) Publish(ctx context.Context, e chat.Event) error {
	if e.Origin == "" {
		e.Origin = b.opt.PodID
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if b.feed.sharded {
		return b.wrap("publish", b.client.SPublish(ctx, b.eventsTopic, data).Err())
	}
	return b.wrap("publish", b.client.Publish(ctx, b.eventsTopic, data).Err())
}

func (f *feed) requestSub(topic string) {
	f.mu.Lock()
	f.pending[topic] = struct{}{}
	f.mu.Unlock()
	signal(f.subWake)
}

func (f *feed) following(channel string) bool {
	s := f.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[channel]
	return st != nil && st.following
}

// syncLocked queues a re-read of the channel from its last delivered id.
func (s *shard) syncLocked(channel string, st *chanState) {
	if st.syncQueued {
		return
	}
	st.syncQueued = true
	s.queue = append(s.queue, item{channel: channel, sync: true})
	signal(s.wake)
}

// Run implements chat.Feed.
func (b *Backend) Run(ctx context.Context, h chat.Handler) error {
	f := &b.feed
	f.mu.Lock()
	if f.running {
		f.mu.Unlock()
		return errors.New("redis feed: already running")
	}
	f.running = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running = false
		f.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range f.shards {
		wg.Go(func() { f.runShard(ctx, s, h) })
	}
	wg.Go(func() { f.runSubscriber(ctx) })
	wg.Go(func() { f.runTicker(ctx) })
	f.runReceiver(ctx, h)
	cancel()
	wg.Wait()
	return nil
}

// runReceiver reads the pub/sub connection until ctx ends, replacing the
// connection when it goes silent.
func (f *feed) runReceiver(ctx context.Context, h chat.Handler) {
	// A blocked read does not notice ctx ending; closing the connection
	// ends it.
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.ps != nil {
			_ = f.ps.Close() // shutting down: a close error changes nothing
		}
	})
	defer stop()
	backoff := minBackoff
	for {
		ps, node := f.open(ctx)
		f.mu.Lock()
		if ctx.Err() != nil {
			f.ps = nil
			f.mu.Unlock()
			_ = ps.Close() // never used
			return
		}
		f.ps = ps
		f.psGen++
		f.mu.Unlock()
		signal(f.subWake) // subscribe everything on the new connection
		f.receive(ctx, ps, node, h, &backoff)
		f.markInactive()
		if err := ps.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			f.b.log.Debug("closing pub/sub connection", "err", err)
		}
	}
}

// open makes a new pub/sub connection. On a cluster it is a connection to
// the primary of the room's slot (node), found outside f.mu as that takes
// round trips, and subscribes the events topic right away.
func (f *feed) open(ctx context.Context) (ps *redis.PubSub, node *redis.Client) {
	if !f.sharded {
		return f.b.client.Subscribe(ctx), nil
	}
	if node = f.b.slotPrimary(ctx); node != nil {
		return node.SSubscribe(ctx, f.b.eventsTopic), node
	}
	// No slot map (no node answers): go-redis dials the slot's primary once
	// it has one, or any node; a failure replaces the connection.
	return f.b.cluster().SSubscribe(ctx, f.b.eventsTopic), nil
}

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// receive handles what arrives on ps until ctx ends or ps stalls; on a
// cluster, also until ps is lost or refused, or its node (node) is not the
// primary of the room's slot. backoff is the reconnection delay, kept across
// connections.
func (f *feed) receive(ctx context.Context, ps *redis.PubSub, node *redis.Client, h chat.Handler, backoff *time.Duration) {
	interval := f.b.opt.PingInterval
	lastRx := time.Now()
	lost := false
	eventsUp := false // the events topic is subscribed on this connection
	for {
		msg, err := ps.ReceiveTimeout(ctx, interval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() && !lost {
				if time.Since(lastRx) >= 3*interval {
					f.b.st.reconnects.Add(1)
					f.connLog.fail(f.b.log, "redis pub/sub connection went silent; replacing it", err)
					f.b.clusterTrouble(err) // a frozen primary may have been replaced
					return
				}
				// Idle: a PING proves the connection (its PONG arrives here).
				if err := ps.Ping(ctx); err != nil && ctx.Err() == nil {
					f.b.st.errors.Add(1)
				}
				continue
			}
			if f.sharded {
				// Lost (go-redis would dial the same node again, which may be
				// dead or demoted), or refused: MOVED (the slot has another
				// primary now), CLUSTERDOWN (no node serves it), LOADING...
				// Replace the connection, on the slot's primary as a fresh
				// map names it (open); messages published meanwhile are read
				// from the stream when the new subscriptions are confirmed.
				f.b.st.reconnects.Add(1)
				f.b.st.errors.Add(1)
				f.connLog.fail(f.b.log, "redis pub/sub connection lost or refused; reconnecting to the primary of the room's slot", err)
				f.b.clusterTrouble(err)
				pause(ctx, backoff)
				return
			}
			// The connection is gone. go-redis dials again and re-subscribes
			// every channel on the next call; messages published meanwhile
			// are lost to pub/sub, so every channel is re-read from the stream
			// when its subscription is confirmed again.
			if !lost {
				lost = true
				eventsUp = false
				f.b.st.reconnects.Add(1)
				f.markInactive()
			}
			f.b.st.errors.Add(1)
			f.connLog.fail(f.b.log, "redis pub/sub connection lost; reconnecting", err)
			if !pause(ctx, backoff) {
				return
			}
			continue
		}
		lastRx = time.Now()
		if lost {
			lost = false
			*backoff = minBackoff
			f.connLog.ok(f.b.log, "redis pub/sub connection restored")
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if !eventsUp && m.Channel == f.b.eventsTopic && (m.Kind == "subscribe" || m.Kind == "ssubscribe") {
				eventsUp = true
				if f.eventsSubscribed {
					h.EventsMissed()
				}
				f.eventsSubscribed = true
			}
			if f.onSubscription(m) {
				// The node no longer serves the room's slot (a failover
				// demoted it, or the slot migrated) and ended its sharded
				// subscriptions. Subscribe again on the slot's new primary;
				// its confirmations re-read every channel from the stream.
				f.b.st.reconnects.Add(1)
				f.b.log.Info("the room's hash slot left the redis node; subscribing on its new primary")
				return
			}
			if m.Kind == "ssubscribe" && m.Channel == f.b.eventsTopic {
				// Confirmed on a (re)connection. A replica confirms too, but
				// hears the slot's messages only once its primary counts it
				// as a replica: subscriptions belong on the primary.
				*backoff = minBackoff
				f.connLog.ok(f.b.log, "redis pub/sub connection restored")
				if node != nil && !f.b.isSlotPrimary(ctx, node) {
					f.b.st.reconnects.Add(1)
					f.b.log.Info("subscribed on a redis node that is not the primary of the room's slot; moving to the primary")
					return
				}
			}
		case *redis.Message:
			f.onMessage(m, h)
		}
	}
}

// pause waits a random part of *backoff (full jitter, so many pods do not
// reconnect in step) and doubles *backoff, up to maxBackoff. It reports
// false if ctx ended first.
func pause(ctx context.Context, backoff *time.Duration) bool {
	d := time.Duration(rand.Int64N(int64(*backoff)) + 1)
	*backoff = min(2**backoff, maxBackoff)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// markInactive forgets which subscriptions Redis confirmed: a new connection
// confirms them again.
func (f *feed) markInactive() {
	for _, s := range f.shards {
		s.mu.Lock()
		for ch, st := range s.chans {
			st.active = false
			if !st.following {
				delete(s.chans, ch)
			}
		}
		s.mu.Unlock()
	}
}

// onSubscription notes a (un)subscribe confirmation. It reports whether the
// node ended the subscriptions of the room's slot (cluster only).
func (f *feed) onSubscription(m *redis.Subscription) (slotMoved bool) {
	channel, ok := strings.CutPrefix(m.Channel, f.b.topicPrefix)
	if !ok {
		// The events topic. The feed never unsubscribes it, so an
		// sunsubscribe comes from Redis: a node that stops serving a slot
		// (demoted by a failover, or the slot migrated) ends every sharded
		// subscription of the slot, this one among them.
		return m.Kind == "sunsubscribe" && m.Channel == f.b.eventsTopic
	}
	s := f.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[channel]
	switch m.Kind {
	case "subscribe", "ssubscribe":
		if st == nil {
			st = &chanState{}
			s.chans[channel] = st
		}
		st.active = true
		if st.following {
			// Subscribed (first time, or again after a reconnect): anything
			// committed before this moment is read from the stream, anything
			// after arrives by pub/sub.
			s.syncLocked(channel, st)
		}
	case "unsubscribe", "sunsubscribe":
		if st != nil {
			st.active = false
			if !st.following {
				delete(s.chans, channel)
			}
		}
	}
	return false
}

func (f *feed) onMessage(m *redis.Message, h chat.Handler) {
	if m.Channel == f.b.eventsTopic {
		var e chat.Event
		if err := json.Unmarshal([]byte(m.Payload), &e); err != nil {
			f.b.log.Warn("malformed event on pub/sub", "err", err)
			return
		}
		h.Event(e)
		return
	}
	channel, ok := strings.CutPrefix(m.Channel, f.b.topicPrefix)
	if !ok {
		return
	}
	prev, msg, err := parsePublished(channel, m.Payload)
	if err != nil {
		f.b.log.Warn("malformed message publication", "channel", channel, "err", err)
		return
	}
	s := f.shard(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.chans[channel]
	if st == nil || !st.following {
		return
	}
	if s.queued >= f.b.opt.QueueLimit {
		// The handler is behind: drop the publication and read the channel
		// from the stream when the worker gets to it.
		f.b.st.overflows.Add(1)
		s.syncLocked(channel, st)
		return
	}
	s.queued++
	s.queue = append(s.queue, item{channel: channel, prev: prev, msg: msg})
	signal(s.wake)
}

// runSubscriber keeps the pub/sub subscriptions equal to the followed
// channels plus the events topic.
func (f *feed) runSubscriber(ctx context.Context) {
	var gen uint64
	subscribed := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.subWake:
		}
		f.mu.Lock()
		ps, psGen, pending := f.ps, f.psGen, f.pending
		f.pending = map[string]struct{}{}
		f.mu.Unlock()
		if ps == nil {
			continue
		}
		var sub, unsub []string
		if psGen != gen {
			// A new connection: subscribe to everything followed.
			gen = psGen
			clear(subscribed)
			sub = append(sub, f.b.eventsTopic)
			for _, s := range f.shards {
				s.mu.Lock()
				for ch, st := range s.chans {
					if st.following {
						sub = append(sub, f.b.topicPrefix+ch)
					}
				}
				s.mu.Unlock()
			}
			for _, t := range sub {
				subscribed[t] = true
			}
		}
		for topic := range pending {
			want := f.following(strings.TrimPrefix(topic, f.b.topicPrefix))
			switch {
			case want && !subscribed[topic]:
				subscribed[topic] = true
				sub = append(sub, topic)
			case !want && subscribed[topic]:
				delete(subscribed, topic)
				unsub = append(unsub, topic)
			}
		}
		// go-redis remembers the set even when a call fails and re-subscribes
		// it on its next connection, so a failure here needs no retry.
		for chunk := range chunks(sub, 500) {
			if err := f.subscribe(ctx, ps, chunk); err != nil && ctx.Err() == nil {
				f.b.st.errors.Add(1)
				f.subLog.fail(f.b.log, "redis subscribe failed; will subscribe on reconnect", err)
			} else {
				f.subLog.ok(f.b.log, "redis subscribe works again")
			}
		}
		for chunk := range chunks(unsub, 500) {
			if err := f.unsubscribe(ctx, ps, chunk); err != nil && ctx.Err() == nil {
				f.b.st.errors.Add(1)
				f.subLog.fail(f.b.log, "redis unsubscribe failed", err)
			}
		}
	}
}

// subscribe and unsubscribe change ps's subscriptions. On a cluster they
// are sharded; Redis takes only channels of one slot in one command, and a
// room's topics all are in its slot.
func (f *feed) subscribe(ctx context.Context, ps *redis.PubSub, topics []string) error {
	if f.sharded {
		return ps.SSubscribe(ctx, topics...)
	}
	return ps.Subscribe(ctx, topics...)
}

func (f *feed) unsubscribe(ctx context.Context, ps *redis.PubSub, topics []string) error {
	if f.sharded {
		return ps.SUnsubscribe(ctx, topics...)
	}
	return ps.Unsubscribe(ctx, topics...)
}

func chunks(s []string, n int) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// runTicker retries failed stream reads and periodically re-reads every
// followed channel (a safety net: gaps are normally found by prev ids and
// subscribe confirmations).
func (f *feed) runTicker(ctx context.Context) {
	retry := time.NewTicker(f.b.opt.RetryInterval)
	defer retry.Stop()
	var resync <-chan time.Time
	if f.b.opt.ResyncInterval > 0 {
		t := time.NewTicker(f.b.opt.ResyncInterval)
		defer t.Stop()
		resync = t.C
	}
	for {
		all := false
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
		case <-resync:
			all = true
		}
		for _, s := range f.shards {
			s.mu.Lock()
			for ch, st := range s.chans {
				if st.following && (all || st.retry) {
					st.retry = false
					s.syncLocked(ch, st)
				}
			}
			s.mu.Unlock()
		}
	}
}

// runShard delivers the shard's queued work until ctx ends.
func (f *feed) runShard(ctx context.Context, s *shard, h chat.Handler) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		q := s.queue
		s.queue, s.queued = nil, 0
		s.mu.Unlock()
		// Group by channel, keeping each channel's order.
		var order []string
		byChan := map[string][]item{}
		for _, it := range q {
			if _, ok := byChan[it.channel]; !ok {
				order = append(order, it.channel)
			}
			byChan[it.channel] = append(byChan[it.channel], it)
		}
		for _, ch := range order {
			if ctx.Err() != nil {
				return
			}
			f.deliver(ctx, s, h, ch, byChan[ch])
		}
	}
}

// delivery is one pass over a channel's queued work.
type delivery struct {
	f     *feed
	s     *shard
	h     chat.Handler
	ch    string
	st    *chanState
	gen   uint64
	cur   string // last id taken into out (or delivered)
	out   []protocol.Message
	ended bool // the Follow this pass served has ended: drop the rest
}

func (f *feed) deliver(ctx context.Context, s *shard, h chat.Handler, ch string, items []item) {
	s.mu.Lock()
	st := s.chans[ch]
	if st == nil || !st.following {
		s.mu.Unlock()
		return
	}
	for _, it := range items {
		if it.sync {
			st.syncQueued = false
		}
	}
	d := &delivery{f: f, s: s, h: h, ch: ch, st: st, gen: st.gen, cur: st.last}
	s.mu.Unlock()

	for _, it := range items {
		if it.sync {
			f.b.st.resyncs.Add(1)
			if !d.read(ctx, "+") {
				return
			}
			continue
		}
		m := it.msg
		if d.cur != "" && protocol.CompareIDs(m.ID, d.cur) <= 0 {
			continue // already delivered (read from the stream earlier)
		}
		if it.prev != d.cur {
			// Pub/sub skipped something: read (cur, m.ID] from the stream.
			f.b.st.gapFills.Add(1)
			if !d.read(ctx, m.ID) {
				return
			}
			if d.cur != "" && protocol.CompareIDs(m.ID, d.cur) <= 0 {
				continue
			}
		}
		d.out = append(d.out, m)
		d.cur = m.ID
		if len(d.out) >= f.b.opt.PageSize && !d.flush() {
			return
		}
	}
	d.flush()
}

// read appends the stream's messages after d.cur up to upTo ("+" = the end)
// to d.out, flushing page by page. It returns false when the pass must stop
// (the read failed and a retry is queued, or the Follow ended).
func (d *delivery) read(ctx context.Context, upTo string) bool {
	page := d.f.b.opt.PageSize
	for {
		msgs, err := d.f.b.readRange(ctx, d.ch, d.cur, upTo, page)
		if err != nil {
			d.flush()
			if ctx.Err() == nil {
				d.s.mu.Lock()
				if d.st.gen == d.gen {
					d.st.retry = true
				}
				d.s.mu.Unlock()
				d.f.readLog.fail(d.f.b.log, "reading a followed channel from redis failed; retrying", err)
			}
			return false
		}
		d.f.readLog.ok(d.f.b.log, "reading followed channels from redis works again")
		if len(msgs) > 0 {
			d.out = append(d.out, msgs...)
			d.cur = msgs[len(msgs)-1].ID
		}
		if len(d.out) >= page && !d.flush() {
			return false
		}
		if len(msgs) < page {
			return true
		}
	}
}

// flush hands d.out to the handler if the Follow it serves still stands.
func (d *delivery) flush() bool {
	if d.ended {
		return false
	}
	d.s.mu.Lock()
	ok := d.st.following && d.st.gen == d.gen && d.s.chans[d.ch] == d.st
	if ok {
		d.st.last = d.cur
	}
	d.s.mu.Unlock()
	if !ok {
		d.ended = true
		d.out = nil
		return false
	}
	if len(d.out) > 0 {
		d.h.Messages(d.ch, d.out)
		d.f.b.st.delivered.Add(uint64(len(d.out)))
		d.out = nil
	}
	return true
}

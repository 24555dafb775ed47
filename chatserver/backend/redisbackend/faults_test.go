package redisbackend_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

const waitTimeout = 20 * time.Second

// collector is a chat.Handler that keeps delivered ids per channel; it fails
// the test on an out-of-order or duplicate delivery.
type collector struct {
	t       *testing.T
	mu      sync.Mutex
	ids     map[string][]string
	changed chan struct{}
	block   chan struct{} // if set, the first Messages call waits for it
	missed  int           // EventsMissed calls
}

func newCollector(t *testing.T) *collector {
	return &collector{t: t, ids: map[string][]string{}, changed: make(chan struct{})}
}

// EventsMissed is counted: the feed tests kill pub/sub connections.
func (c *collector) EventsMissed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.missed++
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *collector) missedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.missed
}

func (c *collector) Messages(channel string, msgs []protocol.Message) {
	c.mu.Lock()
	block := c.block
	c.block = nil
	c.mu.Unlock()
	if block != nil {
		<-block
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	have := c.ids[channel]
	for _, m := range msgs {
		if len(have) > 0 && protocol.CompareIDs(m.ID, have[len(have)-1]) <= 0 {
			c.t.Errorf("%s: %s delivered after %s", channel, m.ID, have[len(have)-1])
		}
		have = append(have, m.ID)
	}
	c.ids[channel] = have
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *collector) Event(chat.Event) {}

// until waits until done holds for what channel has delivered, and
// returns that; waiting too long fails t, saying what is missing (missing).
func (c *collector) until(t *testing.T, channel string, done func(got []string) bool, missing func(got []string) string) []string {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		got := slices.Clone(c.ids[channel])
		ch := c.changed
		c.mu.Unlock()
		if done(got) {
			return got
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out: %s", missing(got))
		}
	}
}

// waitFor waits until channel has delivered as many messages as want, and
// checks they are want.
func (c *collector) waitFor(t *testing.T, channel string, want []string) {
	t.Helper()
	got := c.until(t, channel, func(got []string) bool { return len(got) >= len(want) },
		func(got []string) string { return fmt.Sprintf("%d of %d messages delivered", len(got), len(want)) })
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("delivered (-acked +delivered):\n%s", diff)
	}
}

func runFeed(t *testing.T, b *redisbackend.Backend, h chat.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func send(ctx context.Context, b *redisbackend.Backend, channel string, i int) (protocol.Message, error) {
	return b.Append(ctx, protocol.Message{Channel: channel, From: "alice", Text: fmt.Sprint(i)}, fmt.Sprintf("c-%d", i), 10000)
}

func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// followingGeneral starts a Redis and two backends of one room on it: a
// reader whose feed follows general into a collector, and a writer.
func followingGeneral(t *testing.T) (srv *redistest.Server, reader, writer *redisbackend.Backend, c *collector) {
	t.Helper()
	srv = redistest.Start(t)
	room := newRoom()
	reader = newBackend(t, srv.URL(), room)
	writer = newBackend(t, srv.URL(), room)
	c = newCollector(t)
	runFeed(t, reader, c)
	reader.Follow("general", "")
	return srv, reader, writer, c
}

// Killing the pub/sub connection again and again while messages flow loses
// nothing: every re-subscription re-reads the stream.
func TestFeedSurvivesPubSubKills(t *testing.T) {
	srv, reader, writer, c := followingGeneral(t)
	ctx := t.Context()
	admin := rawClient(t, srv)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
				t.Errorf("CLIENT KILL: %v", err)
				return
			}
		}
	})
	// Send until the connection has been lost several times.
	var acked []string
	deadline := time.Now().Add(waitTimeout)
	for i := 0; i < 400 || reader.Stats().Reconnects < 5; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d reconnects after %d messages", reader.Stats().Reconnects, i)
		}
		m, err := send(ctx, writer, "general", i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m.ID)
	}
	close(stop)
	wg.Wait()
	c.waitFor(t, "general", acked)
	st := reader.Stats()
	if st.Reconnects == 0 {
		t.Errorf("no reconnect counted: %+v", st)
	}
	t.Logf("stats: %+v", st)
}

// A feed whose pub/sub connection is killed tells its handler, once it is
// subscribed again, that events may have been missed (events are not in
// any stream to re-read); before any loss it never says so.
func TestFeedSaysEventsMissedAfterPubSubLoss(t *testing.T) {
	srv, _, writer, c := followingGeneral(t)
	ctx := t.Context()
	var acked []string
	sendOne := func(i int) {
		t.Helper()
		m, err := send(ctx, writer, "general", i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m.ID)
		c.waitFor(t, "general", acked)
	}
	sendOne(0) // delivered: the feed is subscribed, the events topic first
	if n := c.missedCount(); n != 0 {
		t.Fatalf("told %d times that events were missed before any loss", n)
	}
	if err := rawClient(t, srv).ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	c.until(t, "general", func([]string) bool { return c.missedCount() > 0 },
		func([]string) string { return "no EventsMissed after the pub/sub connection was killed" })
	sendOne(1) // and the feed delivers again
	if n := c.missedCount(); n != 1 {
		t.Errorf("told %d times that events were missed after one loss, want once", n)
	}
}

// While Redis is down, operations fail with chat.ErrUnavailable (never
// auth.ErrNotFound); after it restarts, the feed resumes from the last id it
// delivered and nothing acknowledged is lost.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	url := srv.URL() + "?max_retries=-1"
	reader := newBackend(t, url, room, func(o *redisbackend.Options) { o.RetryInterval = 50 * time.Millisecond })
	writer := newBackend(t, url, room)
	c := newCollector(t)
	runFeed(t, reader, c)
	reader.Follow("general", "")
	ctx := t.Context()
	var acked []string
	for i := range 20 {
		m, err := send(ctx, writer, "general", i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m.ID)
	}
	c.waitFor(t, "general", acked)

	t.Log("stopping redis")
	srv.Stop()
	t.Log("stopped")
	ops := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Ping", writer.Ping},
		{"Append", func(ctx context.Context) error { _, err := send(ctx, writer, "general", 99); return err }},
		{"After", func(ctx context.Context) error { _, err := writer.After(ctx, "general", "", 10); return err }},
		{"Before", func(ctx context.Context) error { _, err := writer.Before(ctx, "general", "", 10); return err }},
		{"LastID", func(ctx context.Context) error { _, err := writer.LastID(ctx, "general"); return err }},
		{"CountAfter", func(ctx context.Context) error { _, err := writer.CountAfter(ctx, "general", "1-0", 10); return err }},
		{"LastIDs", func(ctx context.Context) error { _, err := writer.LastIDs(ctx, []string{"general"}); return err }},
		{"CountsAfter", func(ctx context.Context) error {
			_, err := writer.CountsAfter(ctx, map[string]string{"general": "1-0", "random": ""}, 10)
			return err
		}},
		{"Publish", func(ctx context.Context) error { return writer.Publish(ctx, chat.Event{Kind: chat.EventTyping}) }},
		{"Join", func(ctx context.Context) error { return writer.Join(ctx, "p", "alice", time.Minute) }},
		{"Leave", func(ctx context.Context) error { _, err := writer.Leave(ctx, "p", "alice"); return err }},
		{"Online", func(ctx context.Context) error { _, err := writer.Online(ctx, 10); return err }},
		{"OnlineAmong", func(ctx context.Context) error { _, err := writer.OnlineAmong(ctx, []string{"alice"}); return err }},
		{"Sweep", func(ctx context.Context) error { _, err := writer.Sweep(ctx); return err }},
		{"SetRead", func(ctx context.Context) error { return writer.SetRead(ctx, "alice", "general", "1-0") }},
		{"ReadMarkers", func(ctx context.Context) error { _, err := writer.ReadMarkers(ctx, "alice"); return err }},
		{"AddDM", func(ctx context.Context) error { _, err := writer.AddDM(ctx, "dm:alice:bob"); return err }},
		{"DMs", func(ctx context.Context) error { _, err := writer.DMs(ctx, "alice", 10); return err }},
		{"UserExists", func(ctx context.Context) error { _, err := writer.UserExists(ctx, "alice"); return err }},
		{"ListUsers", func(ctx context.Context) error { _, err := writer.ListUsers(ctx, "", "", 10); return err }},
		{"CreateChannel", func(ctx context.Context) error {
			return writer.CreateChannel(ctx, chat.ChannelMeta{Name: "team", Creator: "alice"}, chat.MemberLimits{PerUser: 10, Members: 10})
		}},
		{"GetChannel", func(ctx context.Context) error { _, err := writer.GetChannel(ctx, "team"); return err }},
		{"PublicChannels", func(ctx context.Context) error { _, err := writer.PublicChannels(ctx, "", "", 10); return err }},
		{"AddMember", func(ctx context.Context) error {
			_, _, err := writer.AddMember(ctx, "team", "bob", false, chat.MemberLimits{PerUser: 10, Members: 10})
			return err
		}},
		{"RemoveMember", func(ctx context.Context) error { _, err := writer.RemoveMember(ctx, "team", "bob"); return err }},
		{"Membership", func(ctx context.Context) error { _, _, err := writer.Membership(ctx, "team", "bob"); return err }},
		{"Members", func(ctx context.Context) error { _, err := writer.Members(ctx, "team", "", 10); return err }},
		{"MemberCounts", func(ctx context.Context) error { _, err := writer.MemberCounts(ctx, []string{"team"}); return err }},
		{"UserChannels", func(ctx context.Context) error { _, err := writer.UserChannels(ctx, "bob", 10); return err }},
		{"AppendMember", func(ctx context.Context) error {
			_, err := writer.AppendMember(ctx, protocol.Message{Channel: "team", From: "alice", Text: "x"}, "", 0)
			return err
		}},
		{"CreateUser", func(ctx context.Context) error { return writer.CreateUser(ctx, auth.User{Username: "zed"}) }},
		{"GetUser", func(ctx context.Context) error { _, err := writer.GetUser(ctx, "alice"); return err }},
		{"CreateSession", func(ctx context.Context) error {
			return writer.CreateSession(ctx, auth.Session{ID: "x", TokenHash: "xy", Username: "alice"}, time.Minute)
		}},
		{"TouchSession", func(ctx context.Context) error { _, err := writer.TouchSession(ctx, "xy", time.Minute); return err }},
		{"Sessions", func(ctx context.Context) error { _, err := writer.Sessions(ctx, "alice"); return err }},
		{"DeleteSession", func(ctx context.Context) error { _, err := writer.DeleteSession(ctx, "alice", "x"); return err }},
		{"DeleteSessions", func(ctx context.Context) error { _, err := writer.DeleteSessions(ctx, "alice"); return err }},
		{"CountLogin", func(ctx context.Context) error { _, _, err := writer.CountLogin(ctx, "k", time.Minute); return err }},
		{"ForgiveLogin", func(ctx context.Context) error { return writer.ForgiveLogin(ctx, "k") }},
		{"ResetLogin", func(ctx context.Context) error { return writer.ResetLogin(ctx, "k") }},
	}
	for _, op := range ops {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op.call(octx)
		cancel()
		if !errors.Is(err, chat.ErrUnavailable) || errors.Is(err, auth.ErrNotFound) {
			t.Errorf("%s with Redis down: error %v, want one wrapping chat.ErrUnavailable (and not ErrNotFound)", op.name, err)
		}
	}

	t.Log("restarting")
	srv.Restart()
	t.Log("restarted")
	deadline := time.Now().Add(waitTimeout)
	for i := 20; i < 40; i++ {
		for {
			m, err := send(ctx, writer, "general", i)
			if err == nil {
				acked = append(acked, m.ID)
				break
			}
			if !errors.Is(err, chat.ErrUnavailable) || time.Now().After(deadline) {
				t.Fatalf("send %d after restart: %v", i, err)
			}
		}
	}
	c.waitFor(t, "general", acked)
}

// A message that reached the stream without a publication (here: a raw
// XADD) is found by the next publication's prev id and read from the stream.
func TestGapFilledFromStream(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	b := newBackend(t, srv.URL(), room)
	c := newCollector(t)
	runFeed(t, b, c)
	b.Follow("general", "")
	ctx := t.Context()
	first, err := send(ctx, b, "general", 1)
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "general", []string{first.ID})
	raw, err := rawClient(t, srv).XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream(room, "general"), Values: []any{"f", "bob", "t", "unannounced"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	last, err := send(ctx, b, "general", 2)
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "general", []string{first.ID, raw, last.ID})
	if st := b.Stats(); st.GapFills == 0 {
		t.Errorf("gap not counted: %+v", st)
	}
}

// A handler that falls behind makes the shard queue overflow; the feed drops
// publications and reads the stream instead, still in order and complete.
func TestQueueOverflowFallsBackToStream(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	b := newBackend(t, srv.URL(), room, func(o *redisbackend.Options) {
		o.QueueLimit = 2
		o.Shards = 1
		o.PageSize = 7
	})
	c := newCollector(t)
	release := make(chan struct{})
	c.block = release
	runFeed(t, b, c)
	b.Follow("general", "")
	ctx := t.Context()
	var acked []string
	for i := range 60 {
		m, err := send(ctx, b, "general", i)
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, m.ID)
	}
	// The worker is blocked in the first delivery; wait until publications
	// have overflowed the queue, then let it go.
	deadline := time.Now().Add(waitTimeout)
	for b.Stats().Overflows == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no overflow counted: %+v", b.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	c.waitFor(t, "general", acked)
}

// A pub/sub connection that stops answering (CLIENT PAUSE) is replaced, and
// delivery goes on.
func TestSilentConnectionReplaced(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	b := newBackend(t, srv.URL(), room, func(o *redisbackend.Options) { o.PingInterval = 100 * time.Millisecond })
	c := newCollector(t)
	runFeed(t, b, c)
	b.Follow("general", "")
	ctx := t.Context()
	m1, err := send(ctx, b, "general", 1)
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "general", []string{m1.ID})
	if err := rawClient(t, srv).Do(ctx, "CLIENT", "PAUSE", "1500", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	m2, err := send(ctx, b, "general", 2) // waits for the pause to end
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "general", []string{m1.ID, m2.ID})
	if st := b.Stats(); st.Reconnects == 0 {
		t.Errorf("the silent connection was not replaced: %+v", st)
	}
}

// The operator counts online users from the presence sorted set: members
// "<pod>/<user>" scored by expiry in Unix ms.
func TestPresenceKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	b := newBackend(t, srv.URL(), room)
	ctx := t.Context()
	before := time.Now()
	if err := b.Join(ctx, "pod-a", "alice", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	zs, err := rawClient(t, srv).ZRangeWithScores(ctx, keys.Presence(room), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 1 || zs[0].Member != keys.PresenceMember("pod-a", "alice") {
		t.Fatalf("presence set = %v, want one member %q", zs, keys.PresenceMember("pod-a", "alice"))
	}
	exp := time.UnixMilli(int64(zs[0].Score))
	if lo, hi := before.Add(29*time.Second), time.Now().Add(31*time.Second); exp.Before(lo) || exp.After(hi) {
		t.Errorf("score is %v, want the expiry (about now+30s)", exp)
	}
}

// Every key the backend writes carries the room's hash tag.
func TestKeysCarryRoomHashTag(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	b := newBackend(t, srv.URL(), room)
	ctx := t.Context()
	steps := []error{
		func() error { _, err := send(ctx, b, "general", 1); return err }(),
		b.Join(ctx, "p", "alice", time.Minute),
		b.SetRead(ctx, "alice", "general", "1-0"),
		func() error { _, err := b.AddDM(ctx, "dm:alice:bob"); return err }(),
		b.CreateUser(ctx, auth.User{Username: "alice"}),
		b.CreateSession(ctx, auth.Session{ID: "ab", TokenHash: "abcd", Username: "alice"}, time.Minute),
		func() error { _, _, err := b.CountLogin(ctx, "ip:1", time.Minute); return err }(),
		func() error { _, err := b.ListUsers(ctx, "", "", 10); return err }(),
		b.CreateChannel(ctx, chat.ChannelMeta{Name: "team", Creator: "alice"}, chat.MemberLimits{PerUser: 10, Members: 10}),
		func() error {
			_, _, err := b.AddMember(ctx, "team", "bob", true, chat.MemberLimits{PerUser: 10, Members: 10})
			return err
		}(),
		func() error {
			_, err := b.AppendMember(ctx, protocol.Message{Channel: "team", From: "bob", Text: "x"}, "c-1", 0)
			return err
		}(),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	all, err := rawClient(t, srv).Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 17 {
		t.Errorf("only %d keys written: %v", len(all), all)
	}
	for _, k := range all {
		if len(k) < len(keys.Prefix(room)) || k[:len(keys.Prefix(room))] != keys.Prefix(room) {
			t.Errorf("key %q lacks the room prefix %q", k, keys.Prefix(room))
		}
	}
}

package redisbackend_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/backend/backendtest"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// The behaviour suite passes on a Redis Cluster too (sharded pub/sub).
func TestClusterBehaviour(t *testing.T) {
	cl := redistest.StartCluster(t)
	backendtest.Run(t, func(t *testing.T) func() backendtest.Backend {
		room := newRoom()
		return func() backendtest.Backend { return newBackend(t, cl.URL(), room) }
	})
	// SCAN sees one node's keys: the backfill must walk the room's.
	t.Run("ListUsersBackfill", func(t *testing.T) { testListUsersBackfill(t, cl.URL()) })
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clusterRoom is one room of TestClusterRooms: its own Backend (storage and
// feed), the ids its sender got acked, and what its feed delivered.
type clusterRoom struct {
	name  string
	slot  int
	log   *lockedBuffer // the backend's log, shown when the room fails
	b     *redisbackend.Backend
	c     *collector
	acks  atomic.Int64
	retry atomic.Int64 // appends that failed "unavailable" and were sent again

	mu        sync.Mutex
	acked     map[string][]string // channel -> ids acked, in order
	firstAck  time.Time           // the first ack after ackWatch
	ackWatch  time.Time
	clientIDs map[string]string // id -> the clientId it was acked for
}

var clusterChannels = []string{"general", "random"}

// 100 rooms on a 3-primary Redis Cluster, each with its own Backend: a
// room's keys and topics share one slot, rooms spread over the primaries,
// each room's topics are subscribed (sharded) on its slot's primary only and
// nowhere with classic pub/sub, and no message crosses the cluster bus but
// to its shard. Messages flow in every room while a primary is SIGKILLed
// (its replica takes over; it comes back as a replica) and then another is
// failed over by hand (it stays up, demoted): every acked message is in its
// room's stream and delivered by its feed, exactly once, and the
// subscriptions follow the slots to their new primaries. Last, both nodes
// of a shard die: its slots go unserved, and Ping says so.
func TestClusterRooms(t *testing.T) {
	awaitRedials(t)
	start := time.Now()
	cl := redistest.StartCluster(t)
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	admin := cl.Client(cl.Nodes()[0])

	// A room's keys and topics share its slot.
	rooms := make([]*clusterRoom, 100)
	pipe := admin.Pipeline()
	slotCmds := make([][]*redis.IntCmd, len(rooms))
	for i := range rooms {
		r := &clusterRoom{name: fmt.Sprintf("cluster/room-%03d", i), acked: map[string][]string{}, clientIDs: map[string]string{}}
		rooms[i] = r
		names := []string{keys.Events(r.name), keys.Presence(r.name), keys.User(r.name, "alice"),
			keys.Dedup(r.name, "alice", "c-0"), keys.ReadMarkers(r.name, "alice"), keys.Session(r.name, "abcd")}
		for _, ch := range clusterChannels {
			names = append(names, keys.Stream(r.name, ch), keys.Topic(r.name, ch))
		}
		for _, n := range names {
			slotCmds[i] = append(slotCmds[i], pipe.ClusterKeySlot(ctx, n))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	perPrimary := map[*redistest.Server][]*clusterRoom{}
	for i, r := range rooms {
		r.slot = int(slotCmds[i][0].Val())
		for _, c := range slotCmds[i] {
			if int(c.Val()) != r.slot {
				t.Fatalf("room %s: %v is in slot %d, its events topic in %d", r.name, c.Args(), c.Val(), r.slot)
			}
		}
		p := cl.PrimaryForSlot(r.slot)
		perPrimary[p] = append(perPrimary[p], r)
	}
	primaries := cl.Primaries()
	if len(primaries) != 3 {
		t.Fatalf("%d primaries, want 3", len(primaries))
	}
	for _, p := range primaries {
		if len(perPrimary[p]) == 0 {
			t.Fatalf("primary %s holds no room: rooms do not spread", p.Addr())
		}
		t.Logf("primary %s holds %d rooms", p.Addr(), len(perPrimary[p]))
	}

	// Every room follows its channels.
	for _, r := range rooms {
		r.b = newBackend(t, cl.URL(), r.name, func(o *redisbackend.Options) {
			o.MinReplicaAcks = redisbackend.AutoReplicaAcks
			o.RetryInterval = 100 * time.Millisecond
			r.log = &lockedBuffer{}
			o.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})
		r.c = newCollector(t)
		runFeed(t, r.b, r.c)
		for _, ch := range clusterChannels {
			r.b.Follow(ch, "")
		}
	}
	waitSubscriptions(t, cl, rooms)
	t.Logf("%d rooms subscribed, each on its slot's primary only, in %v", len(rooms), time.Since(start).Round(time.Millisecond))

	// Traffic in every room, until stop: a sender resends an append that
	// was unavailable with the same clientId (dedup key), as a client does.
	stop := make(chan struct{})
	var senders sync.WaitGroup
	for _, r := range rooms {
		senders.Go(func() { r.send(t, stop) })
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		senders.Wait()
	}()
	waitAcks(t, cl, rooms, 5)

	// SIGKILL a primary during traffic; its replica takes over. Having had
	// a replica, a room's appends need one to confirm them (auto replica
	// acks), so the victim's rooms are writable again once it is back, as a
	// replica of the new primary (as its pod would be restarted).
	victim := primaries[0]
	for _, r := range perPrimary[victim] {
		r.watchFirstAck()
	}
	killedAt := time.Now()
	victim.Kill()
	promoted := cl.WaitFailover(victim, 30*time.Second)
	failover := time.Since(killedAt)
	victim.Restart()
	cl.WaitSettled(30 * time.Second)
	rejoined := time.Since(killedAt)
	waitAcks(t, cl, rooms, 5)
	var recovery time.Duration
	for _, r := range perPrimary[victim] {
		r.mu.Lock()
		recovery = max(recovery, r.firstAck.Sub(killedAt))
		r.mu.Unlock()
	}
	t.Logf("killed primary %s: %s took over after %v (cluster_state:ok everywhere); %s back as its replica after %v; the victim's rooms acked again after %v",
		victim.Addr(), promoted.Addr(), failover.Round(time.Millisecond), victim.Addr(), rejoined.Round(time.Millisecond), recovery.Round(time.Millisecond))

	// Fail over another primary by hand: it stays up, demoted to replica,
	// and ends its rooms' sharded subscriptions (sunsubscribe).
	var manual *redistest.Server
	for _, p := range primaries {
		if p != victim {
			manual = p
			break
		}
	}
	replicas := cl.Replicas(manual)
	if len(replicas) == 0 {
		t.Fatalf("primary %s has no replica", manual.Addr())
	}
	if err := cl.Client(replicas[0]).Do(ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
		t.Fatal(err)
	}
	manualAt := time.Now()
	promoted2 := cl.WaitFailover(manual, 30*time.Second)
	t.Logf("manual failover: %s took over from %s after %v", promoted2.Addr(), manual.Addr(), time.Since(manualAt).Round(time.Millisecond))
	waitAcks(t, cl, rooms, 5)
	close(stop)
	senders.Wait()

	// Every acked message is stored once and delivered once.
	var acked, retries, delivered, lost, dups, phantoms int
	for _, r := range rooms {
		a, rt, d, l, du, ph := r.check(t)
		acked, retries, delivered, lost, dups, phantoms = acked+a, retries+rt, delivered+d, lost+l, dups+du, phantoms+ph
	}
	t.Logf("acked %d, unavailable and resent %d, delivered %d, lost %d, duplicates %d, delivered but not stored %d; failover %v",
		acked, retries, delivered, lost, dups, phantoms, failover.Round(time.Millisecond))
	if lost != 0 || dups != 0 || phantoms != 0 {
		t.Errorf("lost %d, duplicates %d, delivered but not stored %d: want none", lost, dups, phantoms)
	}
	if delivered != acked {
		t.Errorf("delivered %d of %d acked", delivered, acked)
	}

	// After both failovers, each room is subscribed on its slot's new
	// primary and nowhere else; and no message went cluster-wide.
	waitSubscriptions(t, cl, rooms)
	shardSent := 0
	for _, n := range cl.Nodes() {
		if !n.Running() {
			continue
		}
		info, err := cl.Client(n).ClusterInfo(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if v := infoValue(info, "cluster_stats_messages_publish_sent"); v != "" && v != "0" {
			t.Errorf("node %s sent %s classic PUBLISH messages over the cluster bus, want none", n.Addr(), v)
		}
		k, _ := strconv.Atoi(infoValue(info, "cluster_stats_messages_publishshard_sent"))
		shardSent += k
	}
	if shardSent == 0 {
		t.Error("no node sent a sharded publication to its replica over the cluster bus")
	}
	t.Logf("cluster bus: %d sharded publications sent (primary to its replica), no classic ones", shardSent)

	// Kill the promoted replica and its replica (the first victim): its
	// slots have no node left. Ping (readiness) fails, for its rooms at once
	// (their primary is down), for every room once the cluster holds it
	// failed (cluster-require-full-coverage).
	orphan := perPrimary[victim][0]
	var other *clusterRoom
	for _, r := range rooms {
		if cl.PrimaryForSlot(r.slot) != promoted {
			other = r
			break
		}
	}
	victim.Kill()
	promoted.Kill()
	lostAt := time.Now()
	for _, r := range []*clusterRoom{orphan, other} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := r.b.Ping(pctx)
			cancel()
			if err != nil && (r == orphan || strings.Contains(err.Error(), "CLUSTERDOWN")) {
				if !errors.Is(err, chat.ErrUnavailable) || !strings.Contains(err.Error(), "hash slot") {
					t.Errorf("Ping: %v, want chat.ErrUnavailable naming the hash slot", err)
				}
				t.Logf("%v after the last primary of %d slots died, Ping of room %s: %v",
					time.Since(lostAt).Round(time.Millisecond), r.slot, r.name, err)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("room %s: Ping %v, 20 s after the cluster lost slots", r.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// send appends messages in turn on the room's channels until stop, pacing
// them; an unavailable append is sent again, with the same clientId, until
// acked.
func (r *clusterRoom) send(t *testing.T, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		ch := clusterChannels[i%len(clusterChannels)]
		clientID := "c-" + strconv.Itoa(i)
		m := protocol.Message{Channel: ch, From: "alice", Text: r.name + "#" + strconv.Itoa(i)}
		giveUp := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			got, err := r.b.Append(ctx, m, clientID, 0)
			cancel()
			if err == nil {
				r.mu.Lock()
				r.acked[ch] = append(r.acked[ch], got.ID)
				r.clientIDs[got.ID] = clientID
				if !r.ackWatch.IsZero() && r.firstAck.IsZero() {
					r.firstAck = time.Now()
				}
				r.mu.Unlock()
				r.acks.Add(1)
				break
			}
			if !errors.Is(err, chat.ErrUnavailable) {
				t.Errorf("room %s: append %s: %v (want success or chat.ErrUnavailable)", r.name, clientID, err)
				return
			}
			if time.Now().After(giveUp) {
				t.Errorf("room %s: append %s unavailable for 30 s: %v", r.name, clientID, err)
				return
			}
			r.retry.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (r *clusterRoom) watchFirstAck() {
	r.mu.Lock()
	r.ackWatch = time.Now()
	r.mu.Unlock()
}

// check compares what the room acked, stored and delivered, once the feed
// has delivered the end of every stream.
func (r *clusterRoom) check(t *testing.T) (acked, retries, delivered, lost, dups, phantoms int) {
	t.Helper()
	ctx := t.Context()
	r.mu.Lock()
	defer r.mu.Unlock()
	retries = int(r.retry.Load())
	for _, ch := range clusterChannels {
		stored, err := r.b.After(ctx, ch, "", 1_000_000)
		if err != nil {
			t.Fatalf("room %s: reading %s: %v", r.name, ch, err)
		}
		storedIDs := map[string]bool{}
		texts := map[string]int{}
		for _, m := range stored {
			storedIDs[m.ID] = true
			texts[m.Text]++
		}
		for text, n := range texts {
			if n > 1 {
				t.Errorf("room %s: %q stored %d times", r.name, text, n)
				dups += n - 1
			}
		}
		var got []string
		if len(stored) > 0 {
			got = r.c.waitDelivered(t, fmt.Sprintf("room %s (slot %d) %s, stored %d, last %s\n%s", r.name, r.slot, ch, len(stored), stored[len(stored)-1].ID, r.log), ch, stored[len(stored)-1].ID, r.b)
		}
		deliveredIDs := map[string]int{}
		for _, id := range got {
			deliveredIDs[id]++
			if !storedIDs[id] {
				phantoms++
				t.Errorf("room %s: %s delivered but not stored", r.name, id)
			}
		}
		for id, n := range deliveredIDs {
			if n > 1 {
				t.Errorf("room %s: %s delivered %d times", r.name, id, n)
				dups += n - 1
			}
		}
		delivered += len(got)
		for _, id := range r.acked[ch] {
			acked++
			switch {
			case !storedIDs[id]:
				lost++
				t.Errorf("room %s: %s (%s) acked but not stored", r.name, id, r.clientIDs[id])
			case deliveredIDs[id] == 0:
				lost++
				t.Errorf("room %s: %s (%s) acked but not delivered", r.name, id, r.clientIDs[id])
			}
		}
		if len(stored) != len(r.acked[ch]) {
			t.Errorf("room %s: %s holds %d messages, %d acked", r.name, ch, len(stored), len(r.acked[ch]))
		}
	}
	return acked, retries, delivered, lost, dups, phantoms
}

// waitDelivered waits until id has been delivered on channel and returns
// what was delivered.
func (c *collector) waitDelivered(t *testing.T, what, channel, id string, b *redisbackend.Backend) []string {
	t.Helper()
	return c.until(t, channel,
		func(got []string) bool { return len(got) > 0 && protocol.CompareIDs(got[len(got)-1], id) >= 0 },
		func(got []string) string {
			return fmt.Sprintf("%s: %d messages delivered, not yet %s; feed %+v", what, len(got), id, b.Stats())
		})
}

// waitAcks waits until every room has n more messages acked.
func waitAcks(t *testing.T, cl *redistest.Cluster, rooms []*clusterRoom, n int64) {
	t.Helper()
	want := make([]int64, len(rooms))
	for i, r := range rooms {
		want[i] = r.acks.Load() + n
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, r := range rooms {
		for r.acks.Load() < want[i] {
			if time.Now().After(deadline) {
				t.Fatalf("room %s: %d acks, want %d%s", r.name, r.acks.Load(), want[i], clusterState(cl))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// waitSubscriptions waits until every room's topics (events and channels)
// are subscribed with SSUBSCRIBE on the primary of the room's slot, once,
// and on no other running node; it then checks that no node has a classic
// (cluster-wide) subscription at all.
func waitSubscriptions(t *testing.T, cl *redistest.Cluster, rooms []*clusterRoom) {
	t.Helper()
	ctx := t.Context()
	var nodes []*redistest.Server
	for _, n := range cl.Nodes() {
		if n.Running() {
			nodes = append(nodes, n)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := subscriptionsInPlace(ctx, cl, nodes, rooms)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, n := range nodes {
		classic, err := cl.Client(n).PubSubChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(classic) > 0 {
			t.Errorf("node %s has classic pub/sub subscriptions %v, want none", n.Addr(), classic)
		}
		var topics []string
		for _, r := range rooms {
			topics = append(topics, roomTopics(r.name)...)
		}
		numsub, err := cl.Client(n).PubSubNumSub(ctx, topics...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for topic, k := range numsub {
			if k != 0 {
				t.Errorf("node %s: PUBSUB NUMSUB %s = %d, want 0", n.Addr(), topic, k)
			}
		}
	}
}

func roomTopics(room string) []string {
	out := []string{keys.Events(room)}
	for _, ch := range clusterChannels {
		out = append(out, keys.Topic(room, ch))
	}
	return out
}

func subscriptionsInPlace(ctx context.Context, cl *redistest.Cluster, nodes []*redistest.Server, rooms []*clusterRoom) error {
	owner := map[string]*redistest.Server{}
	var topics []string
	for _, r := range rooms {
		p := cl.PrimaryForSlot(r.slot)
		for _, topic := range roomTopics(r.name) {
			owner[topic] = p
			topics = append(topics, topic)
		}
	}
	for _, n := range nodes {
		got, err := cl.Client(n).PubSubShardNumSub(ctx, topics...).Result()
		if err != nil {
			return fmt.Errorf("%s: PUBSUB SHARDNUMSUB: %w", n.Addr(), err)
		}
		for _, topic := range slices.Sorted(maps.Keys(got)) {
			want := int64(0)
			if owner[topic] == n {
				want = 1
			}
			if got[topic] != want {
				return fmt.Errorf("node %s (primary of the slot: %v): PUBSUB SHARDNUMSUB %s = %d, want %d",
					n.Addr(), owner[topic] == n, topic, got[topic], want)
			}
		}
		all, err := cl.Client(n).PubSubShardChannels(ctx, "*").Result()
		if err != nil {
			return err
		}
		for _, topic := range all {
			if owner[topic] != n {
				return fmt.Errorf("node %s has a sharded subscription to %s, which it does not serve", n.Addr(), topic)
			}
		}
	}
	return nil
}

func infoValue(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// A redis-cluster:// URL to Redis that cannot serve the room fails Ping
// (readiness) clearly and quickly, and a chat server on it starts, logs why
// it is not ready, answers /readyz with 503 and shuts down: no crash, no
// hang.
func TestClusterCannotServe(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, room string) string // returns the URL
		want  string                                 // in Ping's error
	}{
		{"a cluster node with no slots", func(t *testing.T, _ string) string {
			n := redistest.StartClusterNodes(t, 1)[0]
			return "redis-cluster://" + n.Addr()
		}, "CLUSTERDOWN Hash slot not served"},
		{"half the slots assigned, the room's among them", func(t *testing.T, room string) string {
			// As if the primary of the other half were gone for good.
			n := redistest.StartClusterNodes(t, 1)[0]
			c := rawClient(t, n)
			slot, err := c.ClusterKeySlot(t.Context(), keys.Presence(room)).Result()
			if err != nil {
				t.Fatal(err)
			}
			half := redistest.ClusterSlots / 2
			from := int(slot) / half * half
			if err := c.Do(t.Context(), "CLUSTER", "ADDSLOTSRANGE", from, from+half-1).Err(); err != nil {
				t.Fatal(err)
			}
			return "redis-cluster://" + n.Addr()
		}, "CLUSTERDOWN The cluster is down"},
		{"a Redis not in cluster mode", func(t *testing.T, _ string) string {
			return "redis-cluster://" + redistest.Start(t).Addr()
		}, "not in cluster mode"},
		{"nothing listening", func(t *testing.T, _ string) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			return "redis-cluster://" + addr
		}, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			awaitRedials(t)
			room := newRoom()
			url := tc.setup(t, room)
			b := newBackend(t, url, room, func(o *redisbackend.Options) { o.Logger = quiet })
			began := time.Now()
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err := b.Ping(ctx)
			cancel()
			took := time.Since(began)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ping: %v, want an error with %q", err, tc.want)
			}
			if took > 2*time.Second {
				t.Errorf("Ping took %v to fail", took)
			}
			t.Logf("Ping failed in %v: %v", took.Round(time.Millisecond), err)

			// A chat server on it: /readyz is 503, and it stops when told.
			cfg := config.Default()
			cfg.Room, cfg.RedisURL, cfg.Addr, cfg.Channels = room, url, "127.0.0.1:0", []string{"general"}
			cfg.ShutdownGrace = time.Second
			srvCtx, stop := context.WithCancel(context.Background())
			defer stop()
			logs := &lockedBuffer{}
			srv, err := server.New(srvCtx, cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err != nil {
				t.Fatalf("server.New: %v", err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(srvCtx, ln) }()
			resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("/readyz: %d, want 503", resp.StatusCode)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), tc.want) {
				if time.Now().After(deadline) {
					t.Fatalf("the server's log does not say %q:\n%s", tc.want, logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, "not ready") {
					t.Logf("server log: %s", strings.TrimSpace(line))
					break
				}
			}
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the server did not stop within 10 s")
			}
		})
	}
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// awaitRedials makes t's cleanup, once everything else of t is closed, wait
// (at most 5 s) until go-redis has stopped redialing nodes that were down:
// a pool that failed to dial probes again every second in the background
// until it notices it was closed, longer than TestMain's leak check waits.
func awaitRedials(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		buf := make([]byte, 1<<20)
		for {
			n := runtime.Stack(buf, true)
			if !bytes.Contains(buf[:n], []byte("(*ConnPool).tryDial")) || time.Now().After(deadline) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// clusterState describes every running node, for a failure message.
func clusterState(cl *redistest.Cluster) string {
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, n := range cl.Nodes() {
		if !n.Running() {
			fmt.Fprintf(&b, "\n--- %s: not running", n.Addr())
			continue
		}
		nodes, _ := cl.Client(n).ClusterNodes(ctx).Result()
		repl, _ := cl.Client(n).Info(ctx, "replication").Result()
		fmt.Fprintf(&b, "\n--- %s:\n%s%s", n.Addr(), nodes, repl)
	}
	return b.String()
}

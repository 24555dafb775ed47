package redisbackend_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// replicated starts a primary and a replica of it, and waits until the
// replica is in sync.
func replicated(t *testing.T) (primary, replica *redistest.Server) {
	t.Helper()
	// A diskless sync waits 5 s for more replicas to share it by default.
	primary = redistest.Start(t, redistest.WithConfig("repl-diskless-sync-delay", "0"))
	replica = redistest.Start(t, redistest.WithConfig("replicaof", "127.0.0.1", strconv.Itoa(portOf(t, primary))))
	c := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "state=online") {
			return primary, replica
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not sync within 10 s: %v %s", err, info)
		}
		time.Sleep(20 * time.Millisecond) // nothing announces a finished sync: poll
	}
}

func portOf(t *testing.T, s *redistest.Server) int {
	t.Helper()
	_, p, err := net.SplitHostPort(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// onReplica reports whether the replica holds message id of channel.
func onReplica(t *testing.T, replica *redistest.Server, room, channel, id string) bool {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer c.Close()
	xs, err := c.XRange(context.Background(), keys.Stream(room, channel), id, id).Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(xs) == 1
}

func msg(text string) protocol.Message {
	return protocol.Message{Channel: "general", From: "alice", Text: text}
}

// An acked message is on the replica already: had the primary died right
// after the ack, the replica Sentinel promotes would hold it.
func TestAppendIsOnTheReplicaWhenAcked(t *testing.T) {
	primary, replica := replicated(t)
	for _, acks := range []int{redisbackend.AutoReplicaAcks, 1} {
		t.Run(strconv.Itoa(acks), func(t *testing.T) {
			room := newRoom()
			b := newBackend(t, primary.URL(), room, func(o *redisbackend.Options) { o.MinReplicaAcks = acks })
			for i := range 20 {
				m, err := b.Append(context.Background(), msg("hi"), "k"+strconv.Itoa(i), 0)
				if err != nil {
					t.Fatal(err)
				}
				if !onReplica(t, replica, room, "general", m.ID) {
					t.Fatalf("message %d (%s) acked before the replica had it", i, m.ID)
				}
			}
		})
	}
}

// A replica that cannot confirm in time turns the send into "unavailable";
// the client's retry with the same clientId gets the first id, and is acked
// once the replica has that message.
func TestAppendWithoutReplicaAcksIsUnavailableThenRetried(t *testing.T) {
	primary, replica := replicated(t)
	room := newRoom()
	b := newBackend(t, primary.URL(), room, func(o *redisbackend.Options) {
		o.MinReplicaAcks, o.ReplicaAckTimeout = 1, 200*time.Millisecond
	})
	ctx := context.Background()
	replica.Freeze()
	_, err := b.Append(ctx, msg("while the replica is frozen"), "retry-me", 0)
	if !errors.Is(err, chat.ErrUnavailable) {
		t.Fatalf("append with a frozen replica: %v, want ErrUnavailable", err)
	}
	replica.Thaw()
	// The client resends while it is told "unavailable": the thawed replica
	// may take a moment to catch up (it had stopped mid-stream).
	var m protocol.Message
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m, err = b.Append(ctx, msg("while the replica is frozen"), "retry-me", 0); err == nil {
			break
		}
		if !errors.Is(err, chat.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("the retry: %v", err)
		}
	}
	if !onReplica(t, replica, room, "general", m.ID) {
		t.Fatalf("the retry was acked, but the replica lacks %s", m.ID)
	}
	after, err := b.After(ctx, "general", "", 10)
	if err != nil || len(after) != 1 {
		t.Fatalf("the channel holds %d messages (%v), want the one, stored once", len(after), err)
	}
}

func TestAutoReplicaAcksOnALoneRedis(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, srv.URL(), newRoom(), func(o *redisbackend.Options) { o.MinReplicaAcks = redisbackend.AutoReplicaAcks })
	if _, err := b.Append(context.Background(), msg("nobody to wait for"), "k", 0); err != nil {
		t.Fatalf("auto on a lone Redis must not wait for replicas: %v", err)
	}
	forced := newBackend(t, srv.URL(), newRoom(), func(o *redisbackend.Options) {
		o.MinReplicaAcks, o.ReplicaAckTimeout = 1, 50*time.Millisecond
	})
	if _, err := forced.Append(context.Background(), msg("no replica"), "k", 0); !errors.Is(err, chat.ErrUnavailable) {
		t.Fatalf("one replica required on a lone Redis: %v, want ErrUnavailable", err)
	}
}

func TestReplication(t *testing.T) {
	primary, _ := replicated(t)
	b := newBackend(t, primary.URL(), newRoom())
	rep, err := b.Replication(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Primary != primary.Addr() || rep.Replicas != 1 || rep.InSync != 1 {
		t.Fatalf("replication %+v, want primary %s with 1 replica in sync", rep, primary.Addr())
	}
}

func TestMinReplicaAcksBounds(t *testing.T) {
	if _, err := redisbackend.New(redisbackend.Options{Room: "a/b", URL: "redis://x", MinReplicaAcks: -2}); err == nil {
		t.Fatal("MinReplicaAcks -2 accepted")
	}
}

// A message waiting for its replica is not published: live sockets must not
// show what a failover could still take back. Once confirmed (here, by the
// client's retry) it is published, its previous id unknown, so that each
// server reads it from the stream unless it has it already.
func TestPublishedOnlyOnceConfirmed(t *testing.T) {
	primary, replica := replicated(t)
	room := newRoom()
	// Long enough for a live replica on a busy machine; the frozen one
	// costs the test that long.
	b := newBackend(t, primary.URL(), room, func(o *redisbackend.Options) {
		o.MinReplicaAcks, o.ReplicaAckTimeout = 1, time.Second
	})
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	defer c.Close()
	topic := keys.Topic(room, "general")
	sub := c.Subscribe(ctx, topic)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		m, err := sub.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return m.Payload
	}

	first, err := b.Append(ctx, msg("confirmed"), "one", 0)
	if err != nil {
		t.Fatal(err)
	}
	if p := next(); !strings.HasPrefix(p, "\n"+first.ID+"\n") {
		t.Fatalf("publication %q, want the first message (no previous id)", p)
	}

	replica.Freeze()
	if _, err := b.Append(ctx, msg("unconfirmed"), "two", 0); !errors.Is(err, chat.ErrUnavailable) {
		t.Fatalf("append with a frozen replica: %v, want ErrUnavailable", err)
	}
	// Publications arrive in order: had the unconfirmed message been
	// published, it would come before this marker.
	if err := c.Publish(ctx, topic, "marker").Err(); err != nil {
		t.Fatal(err)
	}
	if p := next(); p != "marker" {
		t.Fatalf("published %q before its replica confirmed it", p)
	}

	replica.Thaw()
	var m protocol.Message
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m, err = b.Append(ctx, msg("unconfirmed"), "two", 0); err == nil {
			break
		}
		if !errors.Is(err, chat.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("the retry: %v", err)
		}
	}
	if p := next(); p != "-\n"+m.ID+"\nalice\nunconfirmed" {
		t.Fatalf("publication of the confirmed retry %q, want it with an unknown previous id", p)
	}
}

package redisbackend_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

func TestListUsersBackfill(t *testing.T) {
	srv := redistest.Start(t)
	testListUsersBackfill(t, srv.URL())
}

// testListUsersBackfill: accounts an older version created have no entry in
// the users index; the first ListUsers finds them by their keys (over
// several SCAN steps), and marks the index complete.
func testListUsersBackfill(t *testing.T, url string) {
	ctx := t.Context()
	room, other := newRoom(), newRoom()
	b := newBackend(t, url, room)
	c := b.Client()
	const old = 2500 // more than one SCAN step looks at
	var want []string
	pipe := c.Pipeline()
	for i := range old {
		name := fmt.Sprintf("user%04d", i)
		want = append(want, name)
		pipe.HSet(ctx, keys.User(room, name), "pw", "x", "ct", "0")
	}
	pipe.HSet(ctx, keys.User(other, "mallory"), "pw", "x", "ct", "0")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// Registered by this version before anyone listed: indexed at once.
	if err := b.CreateUser(ctx, auth.User{Username: "zed", PasswordHash: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	want = append(want, "zed")

	got, err := newBackend(t, url, room).ListUsers(ctx, "", "", 2*old)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(want, got) {
		t.Fatalf("ListUsers listed %d accounts (first %q), want the %d there are, in order", len(got), got[:min(3, len(got))], len(want))
	}
	if n, err := c.Exists(ctx, keys.UsersIndexed(room)).Result(); err != nil || n != 1 {
		t.Errorf("the index is not marked complete after the backfill: %v, %v", n, err)
	}
	if n, err := c.Exists(ctx, keys.UsersIndexed(other)).Result(); err != nil || n != 0 {
		t.Errorf("another room's index is marked complete: %v, %v", n, err)
	}
	page, err := b.ListUsers(ctx, "user12", "user1205", 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(page, []string{"user1206", "user1207", "user1208"}) {
		t.Errorf("a page of the backfilled index = %q", page)
	}
}

// Where replicas must confirm an append, AppendMember goes the same way as
// Append (WAIT, then publish): a member's message is on the replica when it
// is acked and reaches the feed; a refusal is a refusal, not "unavailable".
func TestAppendMemberWithReplicaAcks(t *testing.T) {
	primary, replica := replicated(t)
	room := newRoom()
	b := newBackend(t, primary.URL(), room, func(o *redisbackend.Options) { o.MinReplicaAcks = 1 })
	ctx := t.Context()
	c := newCollector(t)
	runFeed(t, b, c)
	b.Follow("team", "")
	if err := b.CreateChannel(ctx, chat.ChannelMeta{Name: "team", Creator: "alice"}, chat.MemberLimits{PerUser: 10, Members: 10}); err != nil {
		t.Fatal(err)
	}
	var acked []string
	for i := range 5 {
		m, err := b.AppendMember(ctx, protocol.Message{Channel: "team", From: "alice", Text: fmt.Sprint(i)}, fmt.Sprint("k", i), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !onReplica(t, replica, room, "team", m.ID) {
			t.Fatalf("message %d (%s) acked before the replica had it", i, m.ID)
		}
		acked = append(acked, m.ID)
	}
	again, err := b.AppendMember(ctx, protocol.Message{Channel: "team", From: "alice", Text: "retry"}, "k0", 0)
	if err != nil || again.ID != acked[0] {
		t.Errorf("a retry with a used dedup key = %s, %v; want %s", again.ID, err, acked[0])
	}
	refused := []struct {
		m    protocol.Message
		want error
	}{
		{protocol.Message{Channel: "team", From: "mallory", Text: "x"}, chat.ErrForbidden},
		{protocol.Message{Channel: "nope", From: "alice", Text: "x"}, chat.ErrUnknownChannel},
	}
	for _, r := range refused {
		if _, err := b.AppendMember(ctx, r.m, "", 0); !errors.Is(err, r.want) || errors.Is(err, chat.ErrUnavailable) {
			t.Errorf("AppendMember(%s to %s) = %v, want %v", r.m.From, r.m.Channel, err, r.want)
		}
	}
	c.waitFor(t, "team", acked)
}

// CountsAfter pipelines a script; a node whose script cache was emptied (a
// restart, a failover) gets it loaded, and the counts are right.
func TestCountsAfterReloadsScript(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, srv.URL(), newRoom())
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		m, err := send(ctx, b, "general", i)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	for range 2 {
		if err := rawClient(t, srv).ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := b.CountsAfter(ctx, map[string]string{"general": ids[1], "random": ""}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if got["general"] != 3 || got["random"] != 0 || len(got) != 2 {
			t.Errorf("CountsAfter after SCRIPT FLUSH = %v, want general 3, random 0", got)
		}
	}
}

// The catalog's refusals are answers, not failures: they are not counted as
// Redis errors.
func TestRefusalsAreNotErrors(t *testing.T) {
	srv := redistest.Start(t)
	b := newBackend(t, srv.URL(), newRoom())
	ctx := t.Context()
	lim := chat.MemberLimits{PerUser: 10, Members: 10}
	if err := b.CreateChannel(ctx, chat.ChannelMeta{Name: "team", Creator: "alice"}, lim); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateChannel(ctx, chat.ChannelMeta{Name: "team", Creator: "bob"}, lim); !errors.Is(err, chat.ErrChannelTaken) {
		t.Fatalf("CreateChannel of a taken name = %v", err)
	}
	if _, err := b.AppendMember(ctx, protocol.Message{Channel: "team", From: "bob", Text: "x"}, "", 0); !errors.Is(err, chat.ErrForbidden) {
		t.Fatalf("AppendMember by a non-member = %v", err)
	}
	if _, _, err := b.AddMember(ctx, "nope", "bob", false, lim); !errors.Is(err, chat.ErrUnknownChannel) {
		t.Fatalf("AddMember to no channel = %v", err)
	}
	if st := b.Stats(); st.Errors != 0 {
		t.Errorf("refusals counted as %d Redis errors", st.Errors)
	}
	// What they say reaches the caller too.
	_, err := b.AppendMember(ctx, protocol.Message{Channel: "team", From: "bob", Text: "x"}, "", 0)
	var rerr redis.Error
	if errors.As(err, &rerr) {
		t.Errorf("a refusal leaks the Redis reply %q", rerr.Error())
	}
}

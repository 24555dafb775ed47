package redisbackend_test

import (
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// A touch extends the user's session set only when the session would
// outlive it, yet never leaves it shorter: "logout everywhere" finds
// sessions through the set. Touches of the same TTL in a row leave the set
// be; a longer TTL (a rolling update that raised it) extends it at once.
func TestSessionSetOutlivesItsSessions(t *testing.T) {
	srv := redistest.Start(t)
	room := newRoom()
	b := newBackend(t, srv.URL(), room)
	raw := rawClient(t, srv)
	ctx := t.Context()
	s := auth.Session{ID: "s1", TokenHash: "hash-1", Username: "alice", CreatedAt: time.Now(), LastSeenAt: time.Now()}
	if err := b.CreateSession(ctx, s, time.Second); err != nil {
		t.Fatal(err)
	}
	ttl := func(key string) time.Duration { return raw.PTTL(ctx, key).Val() }
	for _, step := range []struct {
		name string
		ttl  time.Duration
	}{
		{"a first touch", time.Minute},
		{"the same TTL again", time.Minute},
		{"a longer TTL", time.Hour},
		{"a shorter TTL", time.Second},
	} {
		if _, err := b.TouchSession(ctx, s.TokenHash, step.ttl); err != nil {
			t.Fatal(err)
		}
		session, set := ttl(keys.Session(room, s.TokenHash)), ttl(keys.UserSessions(room, "alice"))
		if set < session {
			t.Errorf("after %s: the session set lives %v, less than its session (%v)", step.name, set, session)
		}
	}
}

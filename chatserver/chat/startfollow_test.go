package chat_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/chat/chattest"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// slowStart is the memory store whose LastID (what Run follows the room's
// channels after) waits until a message was appended, or until a while
// has passed: the order in which a socket's first message could be
// committed before its server follows the channel.
type slowStart struct {
	*memory.Backend
	appended  chan struct{}
	once      sync.Once
	lastAfter time.Duration
}

func (s *slowStart) LastID(ctx context.Context, channel string) (string, error) {
	select {
	case <-s.appended:
	case <-time.After(s.lastAfter):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return s.Backend.LastID(ctx, channel)
}

func (s *slowStart) Append(ctx context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	m, err := s.Backend.Append(ctx, m, dedupKey, maxLen)
	s.once.Do(func() { close(s.appended) })
	return m, err
}

// A socket opened while the server is still starting is served only once
// the server follows the room's channels: its first message is delivered
// back to it. (Before, a message sent then could be committed before the
// id the server then followed after, and was never fanned out here.)
func TestSocketOpenedWhileStartingGetsItsFirstMessage(t *testing.T) {
	mem := memory.New()
	if err := mem.CreateUser(context.Background(), auth.User{Username: "alice", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Were the socket served at once, its message would be appended first
	// and LastID would return its id. Served only once the server follows,
	// nothing is appended before, and LastID goes on after lastAfter: the
	// wait only decides how surely the old order would be caught.
	store := &slowStart{Backend: mem, appended: make(chan struct{}), lastAfter: 100 * time.Millisecond}
	r := runServiceOn(t, store, mem, testOptions())
	alice := chattest.New()
	r.s.Start(alice, chat.Peer{User: "alice", Session: "a"})
	alice.Send(`{"type":"resume","since":{}}`)
	alice.Send(`{"type":"send","channel":"general","text":"first","clientId":"c1"}`)
	alice.Next(t, protocol.TypeHello)
	ack := alice.Next(t, protocol.TypeAck)
	if m := alice.Next(t, protocol.TypeMessage); m["id"] != ack["id"] {
		t.Fatalf("alice got %v, want her own message %v", m, ack["id"])
	}
	if !r.s.Following() {
		t.Error("Following() false while sockets are served")
	}
}

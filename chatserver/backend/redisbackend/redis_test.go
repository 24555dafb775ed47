package redisbackend_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/hubbub-chat/hubbub/chatserver/backend/backendtest"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var rooms atomic.Int64

// newRoom returns a unique room name: rooms sharing one Redis never see each
// other, so each test gets empty storage without a new server.
func newRoom() string { return fmt.Sprintf("test/room-%d", rooms.Add(1)) }

func newBackend(t *testing.T, url, room string, opts ...func(*redisbackend.Options)) *redisbackend.Backend {
	t.Helper()
	o := redisbackend.Options{Room: room, URL: url, PodID: fmt.Sprintf("pod-%d", rooms.Add(1))}
	for _, f := range opts {
		f(&o)
	}
	b, err := redisbackend.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b
}

func TestBehaviour(t *testing.T) {
	srv := redistest.Start(t)
	backendtest.Run(t, func(t *testing.T) func() backendtest.Backend {
		room := newRoom()
		return func() backendtest.Backend { return newBackend(t, srv.URL(), room) }
	})
}

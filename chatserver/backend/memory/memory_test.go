package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/hubbub-chat/hubbub/chatserver/backend/backendtest"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestBehaviour holds the memory backend to the same suite as Redis: each
// subtest gets a fresh store, and every further server on it is a Peer.
func TestBehaviour(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) func() backendtest.Backend {
		var first *memory.Backend
		return func() backendtest.Backend {
			var b *memory.Backend
			if first == nil {
				first = memory.New()
				b = first
			} else {
				b = first.Peer()
			}
			t.Cleanup(func() {
				if err := b.Close(); err != nil {
					t.Error(err)
				}
			})
			return b
		}
	})
}

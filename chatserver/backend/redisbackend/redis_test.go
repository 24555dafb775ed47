package redisbackend_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/hubbub-chat/hubbub/chatserver/backend/backendtest"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The tests that start chat servers link the search index: bleve's
		// analysis workers start with its package and run for the process.
		goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker"),
	)
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

// TestBehaviour runs the suite as a room settles: presence looks people up
// through the pods set alone. (TestClusterBehaviour runs it as a room is
// upgraded: presence also scans, for servers from before the pods set.)
func TestBehaviour(t *testing.T) {
	srv := redistest.Start(t)
	settled := func(o *redisbackend.Options) { o.PresenceUpgradeWindow = -1 }
	backendtest.Run(t, func(t *testing.T) func() backendtest.Backend {
		room := newRoom()
		return func() backendtest.Backend { return newBackend(t, srv.URL(), room, settled) }
	})
}

// TestPresenceDuringUpgrade: a server from before the pods set marks bob
// online without listing its pod there. While the set is new, bob leaving
// a new server does not make him offline; once the room has settled,
// presence no longer looks for such marks. A room nobody was online in
// before (a new room) has no such servers: it is settled from the start,
// and a Leave does not scan everyone online for old marks.
func TestPresenceDuringUpgrade(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		name        string
		oldPod      bool
		window      time.Duration
		wantOffline bool
	}{
		{"within the upgrade window", true, 0 /* the default: 10 minutes */, false},
		{"settled", true, -1, true},
		{"a new room", false, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			room := newRoom()
			b := newBackend(t, srv.URL(), room, func(o *redisbackend.Options) { o.PresenceUpgradeWindow = tc.window })
			old := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer old.Close()
			if tc.oldPod {
				exp := float64(time.Now().Add(time.Minute).UnixMilli())
				if err := old.ZAdd(ctx, keys.Presence(room), redis.Z{Score: exp, Member: keys.PresenceMember("old-pod", "bob")}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Join(ctx, "new-pod", "bob", time.Minute); err != nil {
				t.Fatal(err)
			}
			offline, err := b.Leave(ctx, "new-pod", "bob")
			if err != nil {
				t.Fatal(err)
			}
			if offline != tc.wantOffline {
				t.Errorf("bob offline after leaving the new server: %t, want %t", offline, tc.wantOffline)
			}
			marked := old.Exists(ctx, keys.PresencePodsNew(room)).Val() == 1
			if want := tc.oldPod && tc.window == 0; marked != want {
				t.Errorf("the pods set marked new: %t, want %t", marked, want)
			}
		})
	}
}

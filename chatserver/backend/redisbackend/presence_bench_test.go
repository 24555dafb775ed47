package redisbackend_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
)

// BenchmarkPresenceWith10kOnline is what one person's disconnect (Leave)
// and a people-directory page of 50 (OnlineAmong) cost Redis with 10,000
// people online on 2 servers: while a room's pods set is new, Leave scans
// every mark; settled, it looks the person up on each pod.
//
//	go test -run '^$' -bench PresenceWith10kOnline ./chatserver/backend/redisbackend/
func BenchmarkPresenceWith10kOnline(b *testing.B) {
	srv := redistest.Start(b)
	users := make([]string, 10000)
	for i := range users {
		users[i] = fmt.Sprintf("user%05d", i)
	}
	for _, mode := range []struct {
		name   string
		window time.Duration
	}{{"upgrade-window", 0}, {"settled", -1}} {
		room := newRoom()
		be, err := redisbackend.New(redisbackend.Options{Room: room, URL: srv.URL(), PodID: "bench", PresenceUpgradeWindow: mode.window})
		if err != nil {
			b.Fatal(err)
		}
		ctx := b.Context()
		for i, pod := range []string{"pod-a", "pod-b"} {
			if err := be.Heartbeat(ctx, pod, users[i*5000:(i+1)*5000], time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(mode.name+"/Leave", func(b *testing.B) {
			for b.Loop() {
				if err := be.Join(ctx, "pod-a", "someone", time.Hour); err != nil {
					b.Fatal(err)
				}
				if _, err := be.Leave(ctx, "pod-a", "someone"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(mode.name+"/OnlineAmong50", func(b *testing.B) {
			for b.Loop() {
				if _, err := be.OnlineAmong(ctx, users[4975:5025]); err != nil {
					b.Fatal(err)
				}
			}
		})
		if err := be.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

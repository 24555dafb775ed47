package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// redisForTest starts a redis-server of its own for one test.
func redisForTest(t *testing.T, password string) *redisServer {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server; not run with -short")
	}
	s, err := startRedis(password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestRedisPresenceCountsDistinctUnexpiredUsers(t *testing.T) {
	srv := redisForTest(t, "s3cret")
	ctx := context.Background()
	rdb := srv.client()
	defer rdb.Close()
	now := time.UnixMilli(1_800_000_000_000)
	room := "team-a/lobby"
	var members []redis.Z
	for i := range 25 { // 25 users, each on two pods
		for _, pod := range []string{"lobby-a", "lobby-b"} {
			members = append(members, redis.Z{Score: float64(now.Add(time.Minute).UnixMilli()), Member: keys.PresenceMember(pod, fmt.Sprintf("user%02d", i))})
		}
	}
	members = append(members,
		redis.Z{Score: float64(now.Add(-time.Second).UnixMilli()), Member: keys.PresenceMember("lobby-a", "gone")},
		redis.Z{Score: float64(now.UnixMilli()), Member: keys.PresenceMember("lobby-a", "expiring-now")},
	)
	if err := rdb.ZAdd(ctx, keys.Presence(room), members...).Err(); err != nil {
		t.Fatal(err)
	}
	// Another room in the same Redis is not counted.
	if err := rdb.ZAdd(ctx, keys.Presence("team-b/lobby"), redis.Z{Score: float64(now.Add(time.Minute).UnixMilli()), Member: "p/zed"}).Err(); err != nil {
		t.Fatal(err)
	}
	conn := RedisConn{URL: srv.url(), Password: "s3cret"}
	tests := []struct {
		name string
		p    RedisPresence
		want int
	}{
		{"one page", RedisPresence{}, 25},
		{"many small pages", RedisPresence{PageSize: 3}, 25},
		{"page size dividing the members", RedisPresence{PageSize: 10}, 25},
		// Members sort by score, then name: the first ten are ten users on lobby-a.
		{"capped: a lower bound", RedisPresence{PageSize: 4, MaxMembers: 10}, 10},
	}
	for _, tt := range tests {
		tt.p.Now = func() time.Time { return now }
		got, err := tt.p.OnlineUsers(ctx, conn, room)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: %d users, want %d", tt.name, got, tt.want)
		}
	}
	if got, err := (RedisPresence{}).OnlineUsers(ctx, conn, "nobody/here"); err != nil || got != 0 {
		t.Errorf("empty room: %d, %v", got, err)
	}
	// Each call's connection is closed: only this test's client remains.
	eventually(t, 5*time.Second, func() error {
		list, err := rdb.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		if n := strings.Count(strings.TrimSpace(list), "\n") + 1; n != 1 {
			return fmt.Errorf("%d clients connected, want only the test's:\n%s", n, list)
		}
		return nil
	})
}

func TestRedisPresenceErrors(t *testing.T) {
	srv := redisForTest(t, "s3cret")
	ctx := context.Background()
	closed := redisForTest(t, "")
	if err := closed.stop(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		conn RedisConn
		want string
	}{
		{"wrong password", RedisConn{URL: srv.url(), Password: "nope"}, "WRONGPASS"},
		{"no password", RedisConn{URL: srv.url()}, "NOAUTH"},
		{"nothing listening", RedisConn{URL: closed.url()}, "connection refused"},
		{"bad URL", RedisConn{URL: "http://x"}, "scheme"},
	}
	for _, tt := range tests {
		start := time.Now()
		_, err := RedisPresence{Timeout: 2 * time.Second}.OnlineUsers(ctx, tt.conn, "a/b")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s, bounded by a 2s timeout", tt.name, d)
		}
	}
}

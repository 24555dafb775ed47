package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// TestStatsCarryRedisReplication: on Redis the stats say where the primary
// is and how many replicas follow it (the operator's RedisReady and
// Degraded come from here); on memory they say nothing of Redis.
func TestStatsCarryRedisReplication(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.config(t)
			ts := startServer(t, cfg, server.Options{})
			resp, err := http.Get(ts.URL + protocol.StatsPath)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var st protocol.Stats
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %s, %v", protocol.StatsPath, resp.Status, err)
			}
			switch {
			case cfg.RedisURL == "" && st.Redis != nil:
				t.Fatalf("memory backend: %+v mentions Redis", st)
			case cfg.RedisURL != "" && (st.Redis == nil || st.Redis.Primary != sharedRedis(t).Addr() || st.Redis.Replicas != 0):
				t.Fatalf("redis backend: %+v, want the primary %s with 0 replicas", st.Redis, sharedRedis(t).Addr())
			}
		})
	}
}

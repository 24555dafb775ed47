package server

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redisbackend"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/metrics"
)

func openRedis(cfg config.Config, pod string, log *slog.Logger) (Backend, error) {
	return redisbackend.New(redisbackend.Options{
		Room: cfg.Room, URL: cfg.RedisURL, Password: cfg.RedisPassword, PodID: pod, Logger: log,
		MinReplicaAcks: cfg.RedisMinReplicaAcks, ReplicaAckTimeout: cfg.RedisReplicaAckTimeout,
	})
}

// registerBackendMetrics exports the Redis feed's own counters, so that
// reconnects and recovered gaps show on /metrics rather than only in logs.
func registerBackendMetrics(m *metrics.Metrics, b Backend) {
	rb, ok := b.(interface{ Stats() redisbackend.Stats })
	if !ok {
		return
	}
	counter := func(name, help string, f func(redisbackend.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hubbub_redis_" + name, Help: help},
			func() float64 { return float64(f(rb.Stats())) })
	}
	m.Registry.MustRegister(
		counter("errors_total", "Redis operations that failed.", func(s redisbackend.Stats) uint64 { return s.Errors }),
		counter("reconnects_total", "Pub/sub connections re-established.", func(s redisbackend.Stats) uint64 { return s.Reconnects }),
		counter("gap_fills_total", "Gaps in pub/sub delivery filled from the stream.", func(s redisbackend.Stats) uint64 { return s.GapFills }),
		counter("resyncs_total", "Followed channels re-read from their last delivered id after a resubscribe.", func(s redisbackend.Stats) uint64 { return s.Resyncs }),
		counter("overflows_total", "Delivery queue overflows recovered from the stream.", func(s redisbackend.Stats) uint64 { return s.Overflows }),
		counter("delivered_total", "Messages the feed delivered to this server.", func(s redisbackend.Stats) uint64 { return s.Delivered }),
	)
}

// explainRedis says what a Redis error means where go-redis's own words
// mislead: through Sentinel, a master name no sentinel knows fails as "all
// sentinels specified in configuration are unreachable: redis: nil" (each
// sentinel answered, with no address). No other command answers a PING
// with nil.
func explainRedis(redisURL string, err error) error {
	if !errors.Is(err, redis.Nil) {
		return err
	}
	uo, perr := redisbackend.ParseURL(redisURL)
	if perr != nil || uo.MasterName == "" {
		return err
	}
	return fmt.Errorf("no sentinel knows a master named %q (the ?master= of --redis-url): %w", uo.MasterName, err)
}

package server

import (
	"context"
	"log/slog"

	redisbackend "github.com/hubbub-chat/hubbub/chatserver/backend/redis"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

func openRedis(ctx context.Context, cfg config.Config, pod string, log *slog.Logger) (Backend, error) {
	return redisbackend.New(ctx, redisbackend.Options{
		Room: cfg.Room, URL: cfg.RedisURL, Password: cfg.RedisPassword, PodID: pod, Logger: log,
	})
}

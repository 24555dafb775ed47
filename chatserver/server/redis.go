package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/hubbub-chat/hubbub/chatserver/config"
)

func openRedis(context.Context, config.Config, string, *slog.Logger) (Backend, error) {
	return nil, errors.New("--redis-url: Redis backend not wired yet")
}

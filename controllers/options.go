package controllers

import (
	"errors"
	"time"
)

// Defaults of Options.
const (
	DefaultRedisImage              = "redis:7.2-alpine"
	DefaultPresenceInterval        = 30 * time.Second
	DefaultMaxConcurrentReconciles = 4
)

// Options configure the ChatRoom reconciler.
type Options struct {
	// ChatImage is the chat server image of rooms whose spec.image is empty
	// (the Helm chart sets it to its own image). Required.
	ChatImage string
	// RedisImage is the image of managed Redis StatefulSets; it must run
	// redis-server as UID 999 (the official images do). Default redis:7.2-alpine.
	RedisImage string
	// PresenceInterval is how often an otherwise unchanged room is
	// reconciled again to refresh status.onlineUsers. Default 30s.
	PresenceInterval time.Duration
	// Presence asks chat pods for their room's online count; nil means HTTPPresence{}.
	Presence PresenceCounter
	// MaxConcurrentReconciles is how many rooms are reconciled at once. Default 4.
	MaxConcurrentReconciles int
}

// withDefaults returns o with every unset field defaulted, or an error for a
// field that has no default.
func (o Options) withDefaults() (Options, error) {
	if o.ChatImage == "" {
		return o, errors.New("options: ChatImage is required")
	}
	if o.RedisImage == "" {
		o.RedisImage = DefaultRedisImage
	}
	if o.PresenceInterval <= 0 {
		o.PresenceInterval = DefaultPresenceInterval
	}
	if o.Presence == nil {
		o.Presence = HTTPPresence{}
	}
	if o.MaxConcurrentReconciles <= 0 {
		o.MaxConcurrentReconciles = DefaultMaxConcurrentReconciles
	}
	return o, nil
}

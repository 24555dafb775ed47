package controllers

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	redisbackend "github.com/hubbub-chat/hubbub/chatserver/backend/redis"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// PresenceCounter counts the distinct users online in a room. The reconciler
// calls it once per room every Options.PresenceInterval; an implementation
// bounds its own time and the amount it reads.
type PresenceCounter interface {
	OnlineUsers(ctx context.Context, conn RedisConn, room string) (int, error)
}

// RedisConn says how to reach a room's Redis: the chat server's --redis-url
// and the password from the room's Secret.
type RedisConn struct {
	URL      string
	Password string
}

// Defaults of RedisPresence.
const (
	defaultPresenceTimeout    = 3 * time.Second
	defaultPresencePageSize   = 1000
	defaultPresenceMaxMembers = 100_000
)

// RedisPresence reads presence from the room's Redis sorted set
// keys.Presence(room): members "<pod>/<user>" scored with their expiry in
// Unix milliseconds. A user is online while any of their members has not
// expired. It opens one short-lived connection per call, so rooms that are
// deleted or move to another Redis leave nothing behind.
type RedisPresence struct {
	// Timeout bounds one call (connect and every read). Default 3s.
	Timeout time.Duration
	// PageSize is how many members one ZRANGE reads. Default 1000.
	PageSize int
	// MaxMembers caps the members read per call; past it the count is a
	// lower bound. Default 100000.
	MaxMembers int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var _ PresenceCounter = RedisPresence{}

// OnlineUsers implements PresenceCounter.
func (p RedisPresence) OnlineUsers(ctx context.Context, conn RedisConn, room string) (int, error) {
	timeout := cmpOr(p.Timeout, defaultPresenceTimeout)
	page := cmpOr(p.PageSize, defaultPresencePageSize)
	maxMembers := cmpOr(p.MaxMembers, defaultPresenceMaxMembers)
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}

	opts, err := redisbackend.ParseURL(conn.URL)
	if err != nil {
		return 0, err
	}
	if conn.Password != "" {
		// Like the chat server: the Secret's password overrides the URL's,
		// and also serves the sentinels unless the URL names theirs.
		opts.Password = conn.Password
		if opts.MasterName != "" && opts.SentinelPassword == "" {
			opts.SentinelPassword = conn.Password
		}
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = timeout, timeout, timeout
	opts.PoolSize, opts.MaxRetries = 1, 1
	opts.DisableIdentity = true
	c := redis.NewUniversalClient(opts)
	defer c.Close()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	key := keys.Presence(room)
	// Exclusive lower bound: a member whose expiry is now has expired.
	minScore := "(" + strconv.FormatInt(now().UnixMilli(), 10)
	users := map[string]struct{}{}
	for offset := 0; offset < maxMembers; offset += page {
		members, err := c.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: key, Start: minScore, Stop: "+inf", ByScore: true,
			Offset: int64(offset), Count: int64(min(page, maxMembers-offset)),
		}).Result()
		if err != nil {
			return 0, fmt.Errorf("read presence of %s: %w", room, err)
		}
		for _, m := range members {
			users[keys.PresenceUser(m)] = struct{}{}
		}
		if len(members) < page {
			break
		}
	}
	return len(users), nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

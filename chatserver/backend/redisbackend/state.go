package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// setReadScript: KEYS[1] the user's read markers; ARGV[1] channel, ARGV[2] id.
// Stores id unless the stored marker is newer or equal (ids compare as
// numbers: "10-0" is after "9-0").
var setReadScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local cm, cs = string.match(cur, '^(%d+)-(%d+)$')
  local nm, ns = string.match(ARGV[2], '^(%d+)-(%d+)$')
  if cm then
    cm, cs, nm, ns = tonumber(cm), tonumber(cs), tonumber(nm), tonumber(ns)
    if nm < cm or (nm == cm and ns <= cs) then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// addDMScript: KEYS[1], KEYS[2] the members' DM sets; ARGV[1] the channel.
var addDMScript = redis.NewScript(`
local a = redis.call('SADD', KEYS[1], ARGV[1])
local b = redis.call('SADD', KEYS[2], ARGV[1])
if a == 1 or b == 1 then return 1 end
return 0
`)

// SetRead implements chat.State.
func (b *Backend) SetRead(ctx context.Context, user, channel, id string) error {
	if _, err := protocol.ParseID(id); err != nil {
		return fmt.Errorf("redis set read marker: %w", err)
	}
	err := setReadScript.Run(ctx, b.client, []string{keys.ReadMarkers(b.room, user)}, channel, id).Err()
	return b.wrap("set read marker", err)
}

// ReadMarkers implements chat.State.
func (b *Backend) ReadMarkers(ctx context.Context, user string) (map[string]string, error) {
	m, err := b.client.HGetAll(ctx, keys.ReadMarkers(b.room, user)).Result()
	if err != nil {
		return nil, b.wrap("read markers", err)
	}
	return m, nil
}

// AddDM implements chat.State.
func (b *Backend) AddDM(ctx context.Context, channel string) (bool, error) {
	x, y, ok := protocol.SplitDM(channel)
	if !ok {
		return false, fmt.Errorf("redis add DM: %q is not a DM channel", channel)
	}
	n, err := addDMScript.Run(ctx, b.client, []string{keys.DMs(b.room, x), keys.DMs(b.room, y)}, channel).Int()
	if err != nil {
		return false, b.wrap("add DM", err)
	}
	return n == 1, nil
}

// DMs implements chat.State. The result is sorted.
func (b *Backend) DMs(ctx context.Context, user string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []string
	var cursor uint64
	for {
		page, next, err := b.client.SScan(ctx, keys.DMs(b.room, user), cursor, "", 1000).Result()
		if err != nil {
			return nil, b.wrap("list DMs", err)
		}
		out = append(out, page...)
		cursor = next
		if cursor == 0 || len(out) >= limit {
			break
		}
	}
	slices.Sort(out)
	out = slices.Compact(out) // SSCAN may return an element twice
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// UserExists implements chat.Users.
func (b *Backend) UserExists(ctx context.Context, username string) (bool, error) {
	n, err := b.client.Exists(ctx, keys.User(b.room, username)).Result()
	if err != nil {
		return false, b.wrap("user exists", err)
	}
	return n == 1, nil
}

var errNil = redis.Nil

func isNil(err error) bool { return errors.Is(err, errNil) }

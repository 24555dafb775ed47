package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
	return sortedDMs(out, limit), nil
}

// sortedDMs sorts DM channel names read by SSCAN, which may return one
// twice, and keeps at most limit.
func sortedDMs(out []string, limit int) []string {
	slices.Sort(out)
	out = slices.Compact(out)
	return out[:min(limit, len(out))]
}

// UserExists implements chat.Users.
func (b *Backend) UserExists(ctx context.Context, username string) (bool, error) {
	n, err := b.client.Exists(ctx, keys.User(b.room, username)).Result()
	if err != nil {
		return false, b.wrap("user exists", err)
	}
	return n == 1, nil
}

// ListUsers implements chat.Users: a page of the users index, by name.
func (b *Backend) ListUsers(ctx context.Context, prefix, after string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := b.indexUsers(ctx); err != nil {
		return nil, err
	}
	lo, hi := lexRange(prefix, after)
	names, err := b.client.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: keys.Users(b.room), Start: lo, Stop: hi, ByLex: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, b.wrap("list users", err)
	}
	return names, nil
}

// usersIndex remembers that this process saw the room's users index
// complete (keys.UsersIndexed), so that only the first ListUsers checks.
type usersIndex struct {
	done atomic.Bool
	mu   sync.Mutex // one backfill at a time in this process
}

// backfillScanCount is how many keys one SCAN step looks at: each step is
// short work for Redis, whatever the size of its keyspace.
const backfillScanCount = 1000

// indexUsers makes sure the users index lists the accounts created before
// it existed. Registration indexes an account in the script that creates it
// (createUserScript), but a room that ran an older version has accounts and
// no index. The first ListUsers of such a room walks the keyspace of the
// room's node once with SCAN MATCH <prefix>user:* (backfillScanCount keys a
// step, so Redis never blocks on it, and the work is bounded by that one
// node's keys), adds the names it finds, then sets keys.UsersIndexed, and
// no server walks it again. Servers that race to do it add the same names:
// ZADD is idempotent, and accounts created meanwhile index themselves.
// Accounts an older server registers during a rolling upgrade, after the
// marker is set, are the one gap: deleting the marker walks again.
func (b *Backend) indexUsers(ctx context.Context) error {
	if b.users.done.Load() {
		return nil
	}
	b.users.mu.Lock()
	defer b.users.mu.Unlock()
	if b.users.done.Load() {
		return nil
	}
	marker := keys.UsersIndexed(b.room)
	n, err := b.client.Exists(ctx, marker).Result()
	if err != nil {
		return b.wrap("list users", err)
	}
	if n == 0 {
		if err := b.backfillUsers(ctx); err != nil {
			return b.wrap("index users", err)
		}
		if err := b.client.Set(ctx, marker, "1", 0).Err(); err != nil {
			return b.wrap("index users", err)
		}
	}
	b.users.done.Store(true)
	return nil
}

func (b *Backend) backfillUsers(ctx context.Context) error {
	index := keys.Users(b.room)
	// On a Cluster, SCAN sees one node's keys: those of the room's slot
	// are on its primary.
	node, err := b.primaryFor(ctx, index)
	if err != nil {
		return err
	}
	userPrefix := keys.User(b.room, "")
	match := globEscape(userPrefix) + "*"
	var cursor uint64
	for {
		page, next, err := node.Scan(ctx, cursor, match, backfillScanCount).Result()
		if err != nil {
			return err
		}
		members := make([]redis.Z, 0, len(page))
		for _, k := range page {
			if name, ok := strings.CutPrefix(k, userPrefix); ok && name != "" {
				members = append(members, redis.Z{Member: name})
			}
		}
		if len(members) > 0 {
			if err := node.ZAdd(ctx, index, members...).Err(); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// lexRange is the ZRANGE BYLEX interval of the names that start with prefix
// and sort after after ("" = no bound). It may be empty (lo above hi), which
// Redis answers with nothing.
func lexRange(prefix, after string) (lo, hi string) {
	lo, hi = "-", "+"
	if prefix != "" {
		lo = "[" + prefix
	}
	if after != "" && after >= prefix {
		lo = "(" + after
	}
	// The first string past every one that starts with prefix: prefix with
	// its last byte that can grow grown, and what follows it cut.
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] < 0xff {
			hi = "(" + prefix[:i] + string([]byte{prefix[i] + 1})
			break
		}
	}
	return lo, hi
}

var errNil = redis.Nil

func isNil(err error) bool { return errors.Is(err, errNil) }

// globEscape quotes the characters MATCH patterns treat specially.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var sb strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			sb.WriteByte('\\')
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

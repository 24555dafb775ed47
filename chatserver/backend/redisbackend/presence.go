package redisbackend

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// Presence lives in one sorted set (keys.Presence): member "<pod>/<user>",
// score its expiry in Unix ms. Scripts take "now" from Redis's clock so pods
// with skewed clocks agree on what has expired.

// luaNow is a Lua prelude that sets now (Unix ms, Redis's clock).
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// podsKept is how long a pod whose marks have all expired stays in the
// pods set: long enough for Sweep to remove its marks, which Leave and
// Sweep look up through it.
const podsKept = 10 * time.Minute

// joinScript: KEYS[1] presence, KEYS[2] the pods, KEYS[3] the pods set's
// "new" marker; ARGV[1] ttl ms, ARGV[2] the pod, ARGV[3] how long the pods
// set counts as new (ms; 0 = never), ARGV[4] how long a dead pod is kept
// (ms), ARGV[5..] the pod's members. Marks them online until now+ttl and
// keeps the pod's score the newest of its marks' expiries. The pods set
// counts as new only where people were online before it existed (pods of
// an older version): a room that starts empty has no such pods, and its
// Leaves need not scan everyone online for them.
var joinScript = redis.NewScript(luaNow + `
local exp = now + tonumber(ARGV[1])
if tonumber(ARGV[3]) > 0 and redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[3], 1, 'PX', ARGV[3])
end
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], exp, ARGV[i])
end
redis.call('ZADD', KEYS[2], 'GT', exp, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]))
return exp
`)

// luaMarks is a Lua prelude: marks(user) returns the user's members on
// every pod the pods set (KEYS[2]) lists, with their scores; with the
// "new" marker (KEYS[3]) set, it scans the whole presence set (KEYS[1])
// instead, for pods from before the pods set. Either way a lookup, not a
// pass over everyone online, once the upgrade window is over.
const luaMarks = `
local function marks(user)
  local out = {}
  if redis.call('EXISTS', KEYS[3]) == 1 then
    local pattern = string.gsub(user, '[%*%?%[%]\\]', '\\%0')
    local cursor = '0'
    repeat
      local r = redis.call('ZSCAN', KEYS[1], cursor, 'MATCH', '*/' .. pattern, 'COUNT', 1000)
      cursor = r[1]
      for i = 1, #r[2], 2 do out[#out+1] = {r[2][i], tonumber(r[2][i+1])} end
    until cursor == '0'
    return out
  end
  for _, p in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local m = p .. '/' .. user
    local s = redis.call('ZSCORE', KEYS[1], m)
    if s then out[#out+1] = {m, tonumber(s)} end
  end
  return out
end
`

// leaveScript: KEYS as luaMarks; ARGV[1] the member, ARGV[2] its user.
// Removes the member, and the user's expired members on other pods (so a
// later Sweep does not report the user offline a second time); returns 1
// if the user has no unexpired member left.
var leaveScript = redis.NewScript(luaNow + luaMarks + `
redis.call('ZREM', KEYS[1], ARGV[1])
local online = false
for _, m in ipairs(marks(ARGV[2])) do
  if m[2] > now then
    online = true
  else
    redis.call('ZREM', KEYS[1], m[1])
  end
end
if online then return 0 end
return 1
`)

// sweepScript: KEYS as luaMarks; ARGV[1] batch size. Removes up to that
// many expired members and returns {removed, user...}: the users left with
// no unexpired member.
var sweepScript = redis.NewScript(luaNow + luaMarks + `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #expired == 0 then return {0} end
local gone = {}
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[1], m)
  gone[string.match(m, '[^/]*$')] = true
end
local out = {#expired}
for u in pairs(gone) do
  local online = false
  for _, m in ipairs(marks(u)) do
    if m[2] > now then online = true; break end
  end
  if not online then out[#out+1] = u end
end
return out
`)

// onlineScript: ARGV[1] offset, ARGV[2] count. Unexpired members, one page.
var onlineScript = redis.NewScript(luaNow + `
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', tonumber(ARGV[1]), tonumber(ARGV[2]))
`)

// onlineAmongScript: KEYS[1] presence, KEYS[2] the pods; ARGV the users
// asked about. Returns those of them with an unexpired mark: one ZSCORE per
// user per live pod, however many people are online. (Pods from before the
// pods set existed are not in it: during that rolling upgrade their people
// show offline here, and nowhere else.)
var onlineAmongScript = redis.NewScript(luaNow + `
local pods = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
local out, seen = {}, {}
for i = 1, #ARGV do
  local u = ARGV[i]
  if not seen[u] then
    seen[u] = true
    for _, p in ipairs(pods) do
      local s = redis.call('ZSCORE', KEYS[1], p .. '/' .. u)
      if s and tonumber(s) > now then
        out[#out+1] = u
        break
      end
    end
  end
end
return out
`)

const (
	presenceBatch = 500
	sweepBatch    = 1000
)

// Join implements chat.Presence.
func (b *Backend) Join(ctx context.Context, pod, user string, ttl time.Duration) error {
	return b.Heartbeat(ctx, pod, []string{user}, ttl)
}

// Heartbeat implements chat.Presence.
func (b *Backend) Heartbeat(ctx context.Context, pod string, users []string, ttl time.Duration) error {
	ms := max(ttl.Milliseconds(), 1)
	for batch := range slices.Chunk(users, presenceBatch) {
		args := make([]any, 0, len(batch)+4)
		args = append(args, ms, pod, max(b.opt.PresenceUpgradeWindow.Milliseconds(), 0), podsKept.Milliseconds())
		for _, u := range batch {
			args = append(args, keys.PresenceMember(pod, u))
		}
		if err := joinScript.Run(ctx, b.client, b.presenceKeys(), args...).Err(); err != nil {
			return b.wrap("presence heartbeat", err)
		}
	}
	return nil
}

// Leave implements chat.Presence.
func (b *Backend) Leave(ctx context.Context, pod, user string) (bool, error) {
	n, err := leaveScript.Run(ctx, b.client, b.presenceKeys(), keys.PresenceMember(pod, user), user).Int()
	if err != nil {
		return false, b.wrap("presence leave", err)
	}
	return n == 1, nil
}

// Online implements chat.Presence.
func (b *Backend) Online(ctx context.Context, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, nil
	}
	seen := map[string]bool{}
	var out []string
	for offset := 0; len(out) < limit; offset += presenceBatch {
		members, err := onlineScript.Run(ctx, b.client, []string{keys.Presence(b.room)}, offset, presenceBatch).StringSlice()
		if err != nil {
			return nil, b.wrap("presence list", err)
		}
		for _, m := range members {
			u := keys.PresenceUser(m)
			if !seen[u] && len(out) < limit {
				seen[u] = true
				out = append(out, u)
			}
		}
		if len(members) < presenceBatch {
			break
		}
	}
	slices.Sort(out)
	return out, nil
}

// OnlineAmong implements chat.Presence. The map holds the users online.
func (b *Backend) OnlineAmong(ctx context.Context, users []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(users) == 0 {
		return out, nil
	}
	args := make([]any, len(users))
	for i, u := range users {
		args[i] = u
	}
	online, err := onlineAmongScript.Run(ctx, b.client, b.presenceKeys()[:2], args...).StringSlice()
	if err != nil {
		return nil, b.wrap("presence among", err)
	}
	for _, u := range online {
		out[u] = true
	}
	return out, nil
}

// Sweep implements chat.Presence.
func (b *Backend) Sweep(ctx context.Context) ([]string, error) {
	var out []string
	for {
		res, err := sweepScript.Run(ctx, b.client, b.presenceKeys(), sweepBatch).Slice()
		if err != nil {
			return out, b.wrap("presence sweep", err)
		}
		if len(res) == 0 {
			return out, fmt.Errorf("redis presence sweep: empty reply")
		}
		removed, _ := res[0].(int64)
		for _, u := range res[1:] {
			if s, ok := u.(string); ok {
				out = append(out, s)
			}
		}
		if removed < sweepBatch {
			slices.Sort(out)
			return out, nil
		}
	}
}

// presenceKeys are the presence scripts' KEYS: the marks, the pods, and
// the pods set's "new" marker (luaMarks).
func (b *Backend) presenceKeys() []string {
	return []string{keys.Presence(b.room), keys.PresencePods(b.room), keys.PresencePodsNew(b.room)}
}

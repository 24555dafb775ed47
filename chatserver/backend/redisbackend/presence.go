package redisbackend

import (
	"context"
	"fmt"
	"slices"
	"strings"
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

// joinScript: KEYS[1] presence, KEYS[2] the pods; ARGV[1] ttl ms, ARGV[2]
// the pod, ARGV[3..] its members. Marks them online until now+ttl, keeps
// the pod's expiry the newest of its marks', and forgets pods whose marks
// have all expired.
var joinScript = redis.NewScript(luaNow + `
local exp = now + tonumber(ARGV[1])
for i = 3, #ARGV do
  redis.call('ZADD', KEYS[1], exp, ARGV[i])
end
redis.call('ZADD', KEYS[2], 'GT', exp, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return exp
`)

// leaveScript: ARGV[1] member, ARGV[2] MATCH pattern for the user's members.
// Removes the member, and the user's expired members on other pods (so a
// later Sweep does not report the user offline a second time); returns 1 if
// the user has no unexpired member left.
var leaveScript = redis.NewScript(luaNow + `
redis.call('ZREM', KEYS[1], ARGV[1])
local online = false
local cursor = '0'
repeat
  local r = redis.call('ZSCAN', KEYS[1], cursor, 'MATCH', ARGV[2], 'COUNT', 1000)
  cursor = r[1]
  local kv = r[2]
  for i = 1, #kv, 2 do
    if tonumber(kv[i+1]) > now then
      online = true
    else
      redis.call('ZREM', KEYS[1], kv[i])
    end
  end
until cursor == '0'
if online then return 0 end
return 1
`)

// sweepScript: ARGV[1] batch size. Removes up to that many expired members and
// returns {removed, user...}: the users left with no unexpired member.
var sweepScript = redis.NewScript(luaNow + `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if #expired == 0 then return {0} end
local gone = {}
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[1], m)
  gone[string.match(m, '[^/]*$')] = true
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
for _, m in ipairs(live) do
  gone[string.match(m, '[^/]*$')] = nil
end
local out = {#expired}
for u in pairs(gone) do out[#out+1] = u end
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
	key := []string{keys.Presence(b.room), keys.PresencePods(b.room)}
	ms := max(ttl.Milliseconds(), 1)
	for batch := range slices.Chunk(users, presenceBatch) {
		args := make([]any, 0, len(batch)+2)
		args = append(args, ms, pod)
		for _, u := range batch {
			args = append(args, keys.PresenceMember(pod, u))
		}
		if err := joinScript.Run(ctx, b.client, key, args...).Err(); err != nil {
			return b.wrap("presence heartbeat", err)
		}
	}
	return nil
}

// Leave implements chat.Presence.
func (b *Backend) Leave(ctx context.Context, pod, user string) (bool, error) {
	n, err := leaveScript.Run(ctx, b.client, []string{keys.Presence(b.room)},
		keys.PresenceMember(pod, user), "*/"+globEscape(user)).Int()
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
	online, err := onlineAmongScript.Run(ctx, b.client, []string{keys.Presence(b.room), keys.PresencePods(b.room)}, args...).StringSlice()
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
		res, err := sweepScript.Run(ctx, b.client, []string{keys.Presence(b.room)}, sweepBatch).Slice()
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

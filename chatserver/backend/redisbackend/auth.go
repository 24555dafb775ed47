package redisbackend

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// Accounts are hashes (keys.User): pw the password hash, ct the creation time
// in Unix ns. Sessions are hashes (keys.Session, keyed by token hash) that
// expire on their own: id, u(ser), ct, ls (last seen, Unix ns), ua, ip. Each
// user's set of token hashes (keys.UserSessions) expires no sooner than the
// longest-lived of them; members whose session has expired are pruned when
// the set is read.

// createUserScript: KEYS[1] user, KEYS[2] the users index; ARGV pw, ct,
// username. The account and its index entry are one write: the directory
// lists every account, however it was made.
var createUserScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'pw', ARGV[1], 'ct', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
return 1
`)

// luaExtend is a Lua prelude: extend(key, ttl) makes key live at least ttl
// (ms) more.
const luaExtend = `
local function extend(key, ttl)
  local cur = redis.call('PTTL', key)
  if cur ~= -2 and cur < ttl then redis.call('PEXPIRE', key, ttl) end
end
`

// createSessionScript: KEYS[1] session, KEYS[2] the user's sessions;
// ARGV ttl ms, token hash, id, user, ct, ls, ua, ip.
var createSessionScript = redis.NewScript(luaExtend + `
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'id', ARGV[3], 'u', ARGV[4], 'ct', ARGV[5], 'ls', ARGV[6], 'ua', ARGV[7], 'ip', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('SADD', KEYS[2], ARGV[2])
extend(KEYS[2], ttl)
return 1
`)

// touchSessionScript: KEYS[1] session; ARGV ttl ms, now (Unix ns). Slides
// the session and returns its fields, then "x" and whether the user's
// session set must be extended too: only when the session would now
// outlive it (field "xe", when the set expires, in Redis's clock, which
// extendSessionSetScript writes with each extension). The set is extended
// a slack beyond the session, so most touches are one round trip (a
// reconnect storm is all touches). Nil when the session does not exist.
var touchSessionScript = redis.NewScript(luaNow + `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'ls', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local x = '0'
if now + tonumber(ARGV[1]) > tonumber(redis.call('HGET', KEYS[1], 'xe') or '0') then x = '1' end
local f = redis.call('HGETALL', KEYS[1])
f[#f+1] = 'x'
f[#f+1] = x
return f
`)

// extendSessionSetScript: KEYS[1] session, KEYS[2] its user's session set;
// ARGV[1] ttl ms. Extends the set and records until when ("xe") in one
// step, so a session never says its set lives longer than it does.
var extendSessionSetScript = redis.NewScript(luaNow + luaExtend + `
extend(KEYS[2], tonumber(ARGV[1]))
local left = redis.call('PTTL', KEYS[2])
if left > 0 and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'xe', now + left) end
return 1
`)

// sessionSetSlack is how much longer than a session its user's session
// set is kept alive when extended, so that the next touches of the next
// minute need not extend it again (touchSessionScript).
const sessionSetSlack = time.Minute

// deleteSessionScript: KEYS[1] session, KEYS[2] the user's sessions;
// ARGV token hash, id ("" = any), user. Deletes the session if it is the
// user's (and has that id) and returns its fields; nil otherwise.
var deleteSessionScript = redis.NewScript(`
local f = redis.call('HGETALL', KEYS[1])
if #f == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
  return false
end
local h = {}
for i = 1, #f, 2 do h[f[i]] = f[i+1] end
if h['u'] ~= ARGV[3] or (ARGV[2] ~= '' and h['id'] ~= ARGV[2]) then return false end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return f
`)

// countLoginScript: KEYS[1] counter; ARGV window ms. Returns {count, ttl ms}.
// INCR and PEXPIRE in one script: no pod ever sees a counter without its
// window, and concurrent counts from any number of pods each get their own.
var countLoginScript = redis.NewScript(`
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {c, ttl}
`)

// forgiveLoginScript: KEYS[1] counter. Decrements it when above zero; DECR
// keeps the key's expiry, so the window does not move.
var forgiveLoginScript = redis.NewScript(`
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c > 0 then redis.call('DECR', KEYS[1]) end
return 0
`)

// CreateUser implements auth.Store.
func (b *Backend) CreateUser(ctx context.Context, u auth.User) error {
	n, err := createUserScript.Run(ctx, b.client, []string{keys.User(b.room, u.Username), keys.Users(b.room)},
		u.PasswordHash, nanos(u.CreatedAt), u.Username).Int()
	if err != nil {
		return b.wrap("create user", err)
	}
	if n == 0 {
		return auth.ErrUserExists
	}
	return nil
}

// GetUser implements auth.Store.
func (b *Backend) GetUser(ctx context.Context, username string) (auth.User, error) {
	h, err := b.client.HGetAll(ctx, keys.User(b.room, username)).Result()
	if err != nil {
		return auth.User{}, b.wrap("get user", err)
	}
	if len(h) == 0 {
		return auth.User{}, auth.ErrNotFound
	}
	return auth.User{Username: username, PasswordHash: []byte(h["pw"]), CreatedAt: unixNano(h["ct"])}, nil
}

// CreateSession implements auth.Store.
func (b *Backend) CreateSession(ctx context.Context, s auth.Session, ttl time.Duration) error {
	err := createSessionScript.Run(ctx, b.client,
		[]string{keys.Session(b.room, s.TokenHash), keys.UserSessions(b.room, s.Username)},
		max(ttl.Milliseconds(), 1), s.TokenHash, s.ID, s.Username,
		nanos(s.CreatedAt), nanos(s.LastSeenAt), s.UserAgent, s.IP).Err()
	return b.wrap("create session", err)
}

// TouchSession implements auth.Store.
func (b *Backend) TouchSession(ctx context.Context, tokenHash string, ttl time.Duration) (auth.Session, error) {
	ms := max(ttl.Milliseconds(), 1)
	res, err := touchSessionScript.Run(ctx, b.client, []string{keys.Session(b.room, tokenHash)},
		ms, time.Now().UnixNano()).StringSlice()
	if isNil(err) {
		return auth.Session{}, auth.ErrNotFound
	}
	if err != nil {
		return auth.Session{}, b.wrap("touch session", err)
	}
	s := sessionFromFields(tokenHash, res)
	if len(res) >= 2 && res[len(res)-2] == "x" && res[len(res)-1] == "1" {
		// The user's session set must outlive the session it lists: by
		// the slack, as the next touches within it leave the set be.
		if err := extendSessionSetScript.Run(ctx, b.client, []string{keys.Session(b.room, tokenHash), keys.UserSessions(b.room, s.Username)},
			ms+sessionSetSlack.Milliseconds()).Err(); err != nil {
			return auth.Session{}, b.wrap("touch session", err)
		}
	}
	return s, nil
}

// Sessions implements auth.Store. Oldest first.
func (b *Backend) Sessions(ctx context.Context, username string) ([]auth.Session, error) {
	setKey := keys.UserSessions(b.room, username)
	hashes, err := b.client.SMembers(ctx, setKey).Result()
	if err != nil {
		return nil, b.wrap("list sessions", err)
	}
	if len(hashes) == 0 {
		return nil, nil
	}
	pipe := b.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(hashes))
	for i, h := range hashes {
		cmds[i] = pipe.HGetAll(ctx, keys.Session(b.room, h))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, b.wrap("list sessions", err)
	}
	var out []auth.Session
	var dead []any
	for i, c := range cmds {
		m := c.Val()
		if len(m) == 0 || m["u"] != username {
			dead = append(dead, hashes[i])
			continue
		}
		out = append(out, sessionFromMap(hashes[i], m))
	}
	if len(dead) > 0 {
		if err := b.client.SRem(ctx, setKey, dead...).Err(); err != nil {
			return nil, b.wrap("list sessions", err)
		}
	}
	sortSessions(out)
	return out, nil
}

// DeleteSession implements auth.Store.
func (b *Backend) DeleteSession(ctx context.Context, username, id string) (auth.Session, error) {
	if id == "" {
		return auth.Session{}, auth.ErrNotFound
	}
	hashes, err := b.client.SMembers(ctx, keys.UserSessions(b.room, username)).Result()
	if err != nil {
		return auth.Session{}, b.wrap("delete session", err)
	}
	for _, h := range hashes {
		if !strings.HasPrefix(h, id) {
			continue
		}
		s, ok, err := b.deleteSession(ctx, username, h, id)
		if err != nil {
			return auth.Session{}, err
		}
		if ok {
			return s, nil
		}
	}
	return auth.Session{}, auth.ErrNotFound
}

// DeleteSessions implements auth.Store. Oldest first.
func (b *Backend) DeleteSessions(ctx context.Context, username string) ([]auth.Session, error) {
	hashes, err := b.client.SMembers(ctx, keys.UserSessions(b.room, username)).Result()
	if err != nil {
		return nil, b.wrap("delete sessions", err)
	}
	var out []auth.Session
	for _, h := range hashes {
		s, ok, err := b.deleteSession(ctx, username, h, "")
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, s)
		}
	}
	sortSessions(out)
	return out, nil
}

func (b *Backend) deleteSession(ctx context.Context, username, tokenHash, id string) (auth.Session, bool, error) {
	res, err := deleteSessionScript.Run(ctx, b.client,
		[]string{keys.Session(b.room, tokenHash), keys.UserSessions(b.room, username)},
		tokenHash, id, username).StringSlice()
	if isNil(err) {
		return auth.Session{}, false, nil
	}
	if err != nil {
		return auth.Session{}, false, b.wrap("delete session", err)
	}
	return sessionFromFields(tokenHash, res), true, nil
}

// CountLogin implements auth.Store.
func (b *Backend) CountLogin(ctx context.Context, key string, window time.Duration) (int, time.Duration, error) {
	res, err := countLoginScript.Run(ctx, b.client, []string{keys.Throttle(b.room, key)},
		max(window.Milliseconds(), 1)).Int64Slice()
	if err != nil {
		return 0, 0, b.wrap("count login attempt", err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("redis count login attempt: unexpected reply %v", res)
	}
	return int(res[0]), time.Duration(res[1]) * time.Millisecond, nil
}

// ForgiveLogin implements auth.Store.
func (b *Backend) ForgiveLogin(ctx context.Context, key string) error {
	return b.wrap("forgive login attempt", forgiveLoginScript.Run(ctx, b.client, []string{keys.Throttle(b.room, key)}).Err())
}

// ResetLogin implements auth.Store.
func (b *Backend) ResetLogin(ctx context.Context, key string) error {
	return b.wrap("reset failed logins", b.client.Del(ctx, keys.Throttle(b.room, key)).Err())
}

func sessionFromFields(tokenHash string, kv []string) auth.Session {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return sessionFromMap(tokenHash, m)
}

func sessionFromMap(tokenHash string, m map[string]string) auth.Session {
	return auth.Session{
		ID:         m["id"],
		TokenHash:  tokenHash,
		Username:   m["u"],
		CreatedAt:  unixNano(m["ct"]),
		LastSeenAt: unixNano(m["ls"]),
		UserAgent:  m["ua"],
		IP:         m["ip"],
	}
}

func sortSessions(s []auth.Session) {
	slices.SortFunc(s, func(a, b auth.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
}

// nanos is t in Unix ns, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// unixNano parses a stored Unix-ns time; a missing or zero value is the zero time.
func unixNano(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

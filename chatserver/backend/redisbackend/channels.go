package redisbackend

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The channel catalog. A created channel is its meta hash (keys.Channel),
// its members (keys.ChannelMembers, a sorted set for paging by name), its
// admins (keys.ChannelAdmins, a subset of the members), and, when public,
// its name in keys.PublicChannels; each user's created channels are in
// keys.UserChannels with their flags (userPrivate, userAdmin), which every
// script that changes a membership or an admin writes with it. Every change
// that a limit or a rule guards is one script that checks and writes
// together, so concurrent servers cannot both pass a check that only one of
// them may.
//
// Refusals are error replies whose first word names them (the
// HUBBUB_... codes of refusals): refusal turns them into the chat errors,
// which are answers, not storage failures.

// createChannelScript: KEYS[1] meta, KEYS[2] members, KEYS[3] admins,
// KEYS[4] the creator's channels, KEYS[5] the public channels; ARGV name,
// private (1/0), creator, created, the per-user limit (0 = none).
var createChannelScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('HUBBUB_TAKEN channel name is taken')
end
local lim = tonumber(ARGV[5])
if lim > 0 and redis.call('HLEN', KEYS[4]) >= lim then
  return redis.error_reply('HUBBUB_TOO_MANY_CHANNELS in too many channels')
end
redis.call('HSET', KEYS[1], 'p', ARGV[2], 'c', ARGV[3], 't', ARGV[4])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('SADD', KEYS[3], ARGV[3])
local flags = 2
if ARGV[2] == '1' then
  flags = 3
else
  redis.call('ZADD', KEYS[5], 0, ARGV[1])
end
redis.call('HSET', KEYS[4], ARGV[1], flags)
return 1
`)

// addMemberScript: KEYS[1] meta, KEYS[2] members, KEYS[3] admins, KEYS[4]
// the user's channels, KEYS[5] the stream; ARGV name, user, admin (1/0),
// per-user limit, members limit (0 = none). Returns {added (1/0), the
// stream's last id or ""}: read in the script that adds, it is the last id
// at the moment the user became a member, so live delivery after it misses
// nothing and shows nothing from before.
var addMemberScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('HUBBUB_UNKNOWN_CHANNEL no such channel')
end
local last = ''
local x = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
if x[1] then last = x[1][1] end
local private = 0
if redis.call('HGET', KEYS[1], 'p') == '1' then private = 1 end
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  if ARGV[3] == '1' then
    redis.call('SADD', KEYS[3], ARGV[2])
    redis.call('HSET', KEYS[4], ARGV[1], private + 2)
  end
  return {0, last}
end
local perUser, most = tonumber(ARGV[4]), tonumber(ARGV[5])
if perUser > 0 and redis.call('HLEN', KEYS[4]) >= perUser then
  return redis.error_reply('HUBBUB_TOO_MANY_CHANNELS in too many channels')
end
local n = redis.call('ZCARD', KEYS[2])
if most > 0 and n >= most then
  return redis.error_reply('HUBBUB_TOO_MANY_MEMBERS channel is full')
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
local flags = private
if ARGV[3] == '1' or n == 0 then
  redis.call('SADD', KEYS[3], ARGV[2])
  flags = flags + 2
end
redis.call('HSET', KEYS[4], ARGV[1], flags)
return {1, last}
`)

// removeMemberScript: KEYS[1] members, KEYS[2] admins, KEYS[3] the user's
// channels; ARGV name, user. Returns 1 if the user was a member.
var removeMemberScript = redis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 and redis.call('SCARD', KEYS[2]) == 1
    and redis.call('ZCARD', KEYS[1]) > 1 then
  return redis.error_reply('HUBBUB_LAST_ADMIN the last admin cannot go while others remain')
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
`)

// membersScript: KEYS[1] members, KEYS[2] admins; ARGV ZRANGE BYLEX start,
// count. Returns {name, admin (1/0), ...}: one page with its admin flags in
// one round trip.
var membersScript = redis.NewScript(`
local names = redis.call('ZRANGE', KEYS[1], ARGV[1], '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, n in ipairs(names) do
  out[#out+1] = n
  out[#out+1] = redis.call('SISMEMBER', KEYS[2], n)
end
return out
`)

// refusals are the error replies of the scripts that refuse a change, by
// their first word, and what they mean.
var refusals = []struct {
	code string
	err  error
}{
	{"HUBBUB_TAKEN", chat.ErrChannelTaken},
	{"HUBBUB_TOO_MANY_CHANNELS", chat.ErrTooManyChannels},
	{"HUBBUB_TOO_MANY_MEMBERS", chat.ErrTooManyMembers},
	{"HUBBUB_LAST_ADMIN", chat.ErrLastAdmin},
	{"HUBBUB_UNKNOWN_CHANNEL", chat.ErrUnknownChannel},
	{"HUBBUB_FORBIDDEN", chat.ErrForbidden},
	{"HUBBUB_UNKNOWN_MESSAGE", chat.ErrUnknownMessage},
	{"HUBBUB_TOO_MANY_REACTIONS", chat.ErrTooManyReactions},
	{"HUBBUB_NOT_THREAD_ROOT", chat.ErrNotThreadRoot},
}

// refusal is the chat error a script's refusal means, or nil when err is
// none (another error, or no error).
func refusal(err error) error {
	if err == nil {
		return nil
	}
	for _, r := range refusals {
		if redis.HasErrorPrefix(err, r.code) {
			return r.err
		}
	}
	return nil
}

// scriptErr is err from a catalog script as the caller should see it.
func (b *Backend) scriptErr(op string, err error) error {
	if r := refusal(err); r != nil {
		return r
	}
	return b.wrap(op, err)
}

func flag(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

// CreateChannel implements chat.Channels.
func (b *Backend) CreateChannel(ctx context.Context, meta chat.ChannelMeta, lim chat.MemberLimits) error {
	ks := []string{
		keys.Channel(b.room, meta.Name), keys.ChannelMembers(b.room, meta.Name), keys.ChannelAdmins(b.room, meta.Name),
		keys.UserChannels(b.room, meta.Creator), keys.PublicChannels(b.room),
	}
	err := createChannelScript.Run(ctx, b.client, ks,
		meta.Name, flag(meta.Private), meta.Creator, meta.Created, max(lim.PerUser, 0)).Err()
	return b.scriptErr("create channel", err)
}

// GetChannel implements chat.Channels.
func (b *Backend) GetChannel(ctx context.Context, name string) (chat.ChannelMeta, error) {
	h, err := b.client.HGetAll(ctx, keys.Channel(b.room, name)).Result()
	if err != nil {
		return chat.ChannelMeta{}, b.wrap("get channel", err)
	}
	if len(h) == 0 {
		return chat.ChannelMeta{}, chat.ErrUnknownChannel
	}
	return channelMeta(name, h["p"], h["c"], h["t"]), nil
}

func channelMeta(name, private, creator, created string) chat.ChannelMeta {
	ms, _ := strconv.ParseInt(created, 10, 64)
	return chat.ChannelMeta{Name: name, Private: private == "1", Creator: creator, Created: ms}
}

// PublicChannels implements chat.Channels: a page of the public names, then
// their meta in one pipeline.
func (b *Backend) PublicChannels(ctx context.Context, prefix, after string, limit int) ([]chat.ChannelMeta, error) {
	if limit <= 0 {
		return nil, nil
	}
	lo, hi := lexRange(prefix, after)
	names, err := b.client.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: keys.PublicChannels(b.room), Start: lo, Stop: hi, ByLex: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, b.wrap("list channels", err)
	}
	if len(names) == 0 {
		return nil, nil
	}
	pipe := b.client.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HMGet(ctx, keys.Channel(b.room, n), "p", "c", "t")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, b.wrap("list channels", err)
	}
	out := make([]chat.ChannelMeta, 0, len(names))
	for i, n := range names {
		v := cmds[i].Val()
		if len(v) != 3 || v[0] == nil {
			continue // no meta: not a channel
		}
		private, _ := v[0].(string)
		creator, _ := v[1].(string)
		created, _ := v[2].(string)
		if private == "1" {
			continue // never listed, whatever the index says
		}
		out = append(out, channelMeta(n, private, creator, created))
	}
	return out, nil
}

// AddMember implements chat.Channels.
func (b *Backend) AddMember(ctx context.Context, channel, user string, admin bool, lim chat.MemberLimits) (bool, string, error) {
	ks := []string{
		keys.Channel(b.room, channel), keys.ChannelMembers(b.room, channel), keys.ChannelAdmins(b.room, channel),
		keys.UserChannels(b.room, user), keys.Stream(b.room, channel),
	}
	res, err := addMemberScript.Run(ctx, b.client, ks,
		channel, user, flag(admin), max(lim.PerUser, 0), max(lim.Members, 0)).Slice()
	if err != nil {
		return false, "", b.scriptErr("add member", err)
	}
	if len(res) != 2 {
		return false, "", fmt.Errorf("redis add member: unexpected reply %v", res)
	}
	added, _ := res[0].(int64)
	last, _ := res[1].(string)
	return added == 1, last, nil
}

// RemoveMember implements chat.Channels.
func (b *Backend) RemoveMember(ctx context.Context, channel, user string) (bool, error) {
	ks := []string{keys.ChannelMembers(b.room, channel), keys.ChannelAdmins(b.room, channel), keys.UserChannels(b.room, user)}
	n, err := removeMemberScript.Run(ctx, b.client, ks, channel, user).Int()
	if err != nil {
		return false, b.scriptErr("remove member", err)
	}
	return n == 1, nil
}

// Membership implements chat.Channels: both reads in one pipeline.
// Admins are a subset of the members, so the two cannot disagree.
func (b *Backend) Membership(ctx context.Context, channel, user string) (bool, bool, error) {
	pipe := b.client.Pipeline()
	member := pipe.ZScore(ctx, keys.ChannelMembers(b.room, channel), user)
	admin := pipe.SIsMember(ctx, keys.ChannelAdmins(b.room, channel), user)
	_, _ = pipe.Exec(ctx) // the commands' own errors tell
	if err := admin.Err(); err != nil {
		return false, false, b.wrap("membership", err)
	}
	if err := member.Err(); isNil(err) {
		return false, false, nil
	} else if err != nil {
		return false, false, b.wrap("membership", err)
	}
	return true, admin.Val(), nil
}

// Members implements chat.Channels.
func (b *Backend) Members(ctx context.Context, channel, after string, limit int) ([]chat.Member, error) {
	if limit <= 0 {
		return nil, nil
	}
	start, _ := lexRange("", after)
	res, err := membersScript.Run(ctx, b.client,
		[]string{keys.ChannelMembers(b.room, channel), keys.ChannelAdmins(b.room, channel)}, start, limit).Slice()
	if err != nil {
		return nil, b.wrap("list members", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	out := make([]chat.Member, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		name, _ := res[i].(string)
		admin, _ := res[i+1].(int64)
		out = append(out, chat.Member{Username: name, Admin: admin == 1})
	}
	return out, nil
}

// MemberCounts implements chat.Channels: one pipeline of ZCARDs, to the
// room's node (its keys share a hash tag).
func (b *Backend) MemberCounts(ctx context.Context, channels []string) (map[string]int, error) {
	out := make(map[string]int, len(channels))
	if len(channels) == 0 {
		return out, nil
	}
	pipe := b.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(channels))
	for i, ch := range channels {
		cmds[i] = pipe.ZCard(ctx, keys.ChannelMembers(b.room, ch))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, b.wrap("count members", err)
	}
	for i, ch := range channels {
		out[ch] = int(cmds[i].Val())
	}
	return out, nil
}

// Flags of a channel in a user's list (keys.UserChannels).
const (
	userPrivate = 1
	userAdmin   = 2
)

// UserChannels implements chat.Channels: the user's whole list in one read
// (it holds at most the per-user limit), sorted here.
func (b *Backend) UserChannels(ctx context.Context, user string, limit int) ([]chat.MemberOf, error) {
	if limit <= 0 {
		return nil, nil
	}
	h, err := b.client.HGetAll(ctx, keys.UserChannels(b.room, user)).Result()
	if err != nil {
		return nil, b.wrap("list user channels", err)
	}
	return memberOfs(h, limit), nil
}

// memberOfs reads a person's channel list (keys.UserChannels: channel ->
// flags), sorted by name, at most limit.
func memberOfs(h map[string]string, limit int) []chat.MemberOf {
	if len(h) == 0 {
		return nil
	}
	out := make([]chat.MemberOf, 0, len(h))
	for name, v := range h {
		f, _ := strconv.Atoi(v)
		out = append(out, chat.MemberOf{Channel: name, Private: f&userPrivate != 0, Admin: f&userAdmin != 0})
	}
	slices.SortFunc(out, func(a, b chat.MemberOf) int { return strings.Compare(a.Channel, b.Channel) })
	return out[:min(limit, len(out))]
}

// AppendMember implements chat.Channels: Append's script, guarded by the
// membership check (appendScript).
func (b *Backend) AppendMember(ctx context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	return b.appendMessage(ctx, m, dedupKey, maxLen, true)
}

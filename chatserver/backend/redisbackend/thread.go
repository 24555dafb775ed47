package redisbackend

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// replyScript commits a reply in a thread. KEYS: the stream, its
// MessageState hash and MessagesChanged set, its Threads index; for a
// created channel (ARGV[7] "1") its meta hash and members; then the dedup
// key (absent: no dedup). ARGV: maxLen (0 = keep all), from, text, topic,
// dedup TTL ms, publish command ("" = return the payload), members only,
// the root's id.
//
// As appendScript, and more, all in one script: the root must be a kept
// message of the channel (not a change, not deleted: the stream would not
// hold it) and not itself a reply. The reply is a message with field th
// (its root); the root's state (changeScript) counts it (n) and lists who
// posted in the thread (p: the author, then each replier once), and the
// Threads index holds "<root>|<reply>", ids padded so that one ZRANGE
// BYLEX pages a thread in order.
//
// Replies: {id, 0, payload or "", repliers before this reply, comma-joined}
// for a new reply, {id, 1} for a duplicate. The publication is
// "<prev>\n<id>\n<from>,reply,<root>,0\n<text>" (parsePublished).
var replyScript = redis.NewScript(luaPad + `
local guarded = ARGV[7] == '1'
local dedup = KEYS[5]
if guarded then dedup = KEYS[7] end
if dedup then
  local old = redis.call('GET', dedup)
  if old then
    redis.call('PEXPIRE', dedup, ARGV[5])
    return {old, 1}
  end
end
if guarded then
  if redis.call('EXISTS', KEYS[5]) == 0 then
    return redis.error_reply('HUBBUB_UNKNOWN_CHANNEL no such channel')
  end
  if not redis.call('ZSCORE', KEYS[6], ARGV[2]) then
    return redis.error_reply('HUBBUB_FORBIDDEN not a member of this channel')
  end
end
local from, root = ARGV[2], ARGV[8]
local found = redis.call('XRANGE', KEYS[1], root, root)
if not found[1] or found[1][2][1] == 'k' then
  return redis.error_reply('HUBBUB_UNKNOWN_MESSAGE no such message')
end
local author
local f = found[1][2]
for i = 1, #f, 2 do
  if f[i] == 'f' then author = f[i+1] end
  if f[i] == 'th' then return redis.error_reply('HUBBUB_NOT_THREAD_ROOT a reply cannot start a thread') end
end
local raw = redis.call('HGET', KEYS[2], root)
local st = {}
if raw then st = cjson.decode(raw) end
local before = st.p or {author}
local prev = ''
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then prev = last[1][1] end
local id
if tonumber(ARGV[1]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'f', from, 't', ARGV[3], 'th', root)
else
  id = redis.call('XADD', KEYS[1], '*', 'f', from, 't', ARGV[3], 'th', root)
end
local p, has = {}, false
for _, u in ipairs(before) do
  table.insert(p, u)
  if u == from then has = true end
end
if not has then table.insert(p, from) end
st.p = p
st.n = (st.n or 0) + 1
redis.call('HSET', KEYS[2], root, cjson.encode(st))
redis.call('ZADD', KEYS[3], tonumber(string.match(root, '^(%d+)')), root)
redis.call('ZADD', KEYS[4], 0, pad(root) .. '|' .. pad(id))
-- Threads whose root the stream no longer keeps are let go.
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if first[1] then
  redis.call('ZREMRANGEBYLEX', KEYS[4], '-', '(' .. pad(first[1][1]))
end
if dedup then
  redis.call('SET', dedup, id, 'PX', ARGV[5])
end
local payload = prev .. '\n' .. id .. '\n' .. from .. ',reply,' .. root .. ',0\n' .. ARGV[3]
local repliers = table.concat(before, ',')
if ARGV[6] == '' then
  return {id, 0, payload, repliers}
end
redis.call(ARGV[6], ARGV[4], payload)
return {id, 0, '', repliers}
`)

// replyArgs are replyScript's ARGV.
type replyArgs struct {
	appendArgs
	root string
}

func (a replyArgs) unpublished() committing {
	a.publish = ""
	return a
}

func (a replyArgs) argv() []any { return append(a.appendArgs.argv(), a.root) }

// reply commits m, a reply in the thread of m.Thread (replyScript).
func (b *Backend) reply(ctx context.Context, m protocol.Message, dedupKey string, maxLen int, membersOnly bool) (protocol.Message, error) {
	ks := []string{keys.Stream(b.room, m.Channel), keys.MessageState(b.room, m.Channel),
		keys.MessagesChanged(b.room, m.Channel), keys.Threads(b.room, m.Channel)}
	if membersOnly {
		ks = append(ks, keys.Channel(b.room, m.Channel), keys.ChannelMembers(b.room, m.Channel))
	}
	if dedupKey != "" {
		ks = append(ks, keys.Dedup(b.room, m.From, dedupKey))
	}
	res, err := b.runCommit(ctx, replyScript, ks, replyArgs{appendArgs: appendArgs{
		maxLen: max(maxLen, 0), from: m.From, text: m.Text,
		topic: keys.Topic(b.room, m.Channel), publish: b.publishCommand(), membersOnly: membersOnly,
	}, root: m.Thread})
	if r := refusal(err); r != nil {
		return protocol.Message{}, r
	}
	if err != nil {
		return protocol.Message{}, b.wrap("reply", err)
	}
	id, _ := res[0].(string)
	ts, err := idMillis(id)
	if err != nil {
		return protocol.Message{}, fmt.Errorf("redis reply: %w", err)
	}
	m.ID, m.TS = id, ts
	if len(res) == 4 {
		if s, _ := res[3].(string); s != "" {
			m.Repliers = strings.Split(s, ",")
		}
	}
	return m, nil
}

// luaPad defines pad(id) for the scripts that keep ids in sorted sets
// ordered by text (the threads and change-entries indexes): an id whose text
// sorts as the id does, 20 digits, "-", 20 digits.
const luaPad = `local function pad(x)
  local ms, seq = string.match(x, '^(%d+)-(%d+)$')
  return string.rep('0', 20 - #ms) .. ms .. '-' .. string.rep('0', 20 - #seq) .. seq
end
`

// threadPad is luaPad in Go: an id whose text sorts as the id does.
func threadPad(id protocol.ID) string { return fmt.Sprintf("%020d-%020d", id.Ms, id.Seq) }

// Thread implements chat.Log: the root, and a page of the Threads index,
// each reply read and shown as History shows messages.
func (b *Backend) Thread(ctx context.Context, channel, rootID, after string, limit int) (protocol.Message, []protocol.Message, error) {
	rid, err := protocol.ParseID(rootID)
	if err != nil {
		return protocol.Message{}, nil, chat.ErrUnknownMessage
	}
	start := "[" + threadPad(rid) + "|"
	if after != "" {
		aid, err := protocol.ParseID(after)
		if err != nil {
			return protocol.Message{}, nil, fmt.Errorf("redis thread: %w", err)
		}
		start = "(" + threadPad(rid) + "|" + threadPad(aid)
	}
	stream := keys.Stream(b.room, channel)
	pipe := b.client.Pipeline()
	rootCmd := pipe.XRange(ctx, stream, rootID, rootID)
	page := pipe.ZRangeByLex(ctx, keys.Threads(b.room, channel), &redis.ZRangeBy{
		Min: start, Max: "[" + threadPad(rid) + "|\xff", Count: int64(max(limit, 0)),
	})
	if _, err := pipe.Exec(ctx); err != nil {
		return protocol.Message{}, nil, b.wrap("read thread", err)
	}
	roots, err := toMessages(channel, rootCmd.Val())
	if err != nil {
		return protocol.Message{}, nil, err
	}
	if len(roots) == 0 || roots[0].IsChange() {
		return protocol.Message{}, nil, chat.ErrUnknownMessage
	}
	if roots[0].Thread != "" {
		return protocol.Message{}, nil, chat.ErrNotThreadRoot
	}
	ids := []string{rootID}
	for _, member := range page.Val() {
		_, padded, _ := strings.Cut(member, "|")
		var id protocol.ID
		if _, err := fmt.Sscanf(padded, "%d-%d", &id.Ms, &id.Seq); err != nil {
			return protocol.Message{}, nil, fmt.Errorf("redis thread: index entry %q: %w", member, err)
		}
		ids = append(ids, id.String())
	}
	// Each reply, and the state of all: one more round trip.
	pipe = b.client.Pipeline()
	entries := make([]*redis.XMessageSliceCmd, len(ids))
	for i, id := range ids[1:] {
		entries[i+1] = pipe.XRange(ctx, stream, id, id)
	}
	states := pipe.HMGet(ctx, keys.MessageState(b.room, channel), ids...)
	if _, err := pipe.Exec(ctx); err != nil {
		return protocol.Message{}, nil, b.wrap("read thread", err)
	}
	msgs := []protocol.Message{roots[0]}
	for i, id := range ids[1:] {
		got, err := toMessages(channel, entries[i+1].Val())
		if err != nil {
			return protocol.Message{}, nil, err
		}
		if len(got) == 0 {
			// Deleted: the stream no longer holds it (its id stays in
			// the thread).
			got = []protocol.Message{{ID: id, Channel: channel, Thread: rootID, Deleted: true}}
		}
		msgs = append(msgs, got[0])
	}
	for i, v := range states.Val() {
		if raw, ok := v.(string); ok && !msgs[i].Deleted {
			if err := applyState(&msgs[i], raw); err != nil {
				return protocol.Message{}, nil, fmt.Errorf("redis read thread: state of %s: %w", msgs[i].ID, err)
			}
		}
	}
	return msgs[0], msgs[1:], nil
}

package redisbackend

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// changeScript commits one change (an edit, a delete or a reaction) of a
// message. KEYS: the stream, its MessageState hash, MessagesChanged,
// MessagesDeleted and ChangeEntries sets, then the dedup key (absent: no
// dedup). ARGV: maxLen
// (0 = keep all), from, kind, target id, text (edit), emoji (react), on
// ("1"/"0"), any author ("1": the sender may delete anyone's message), the
// most distinct emoji per message (0 = no bound), topic, dedup TTL ms,
// publish command ("" = return the payload: see appendScript).
//
// The checks and the commit are one script: a message is changed only as
// its state was when checked. The entry's first field is k (countAfterScript
// tells changes from messages by it). A message's state lives in the
// MessageState hash as JSON: t and ea (its text and time, once edited), ed
// (the ids of its edits), r (reactions: [[emoji, [user, ...]], ...]). A
// delete removes the message and its edits from the stream (their text is
// gone from storage, not hidden), drops its state and keeps its id in
// MessagesDeleted, which history reads to show where it was. The state and
// deleted ids of messages trimmed away are let go as changes come.
//
// Replies are as appendScript's: {id, 0} or {id, 0, payload}, and {id, 1}
// for a duplicate. The publication is "<prev>\n<id>\n<from>,<kind>,<target>,<on>\n<text or emoji>"
// (parsePublished).
var changeScript = redis.NewScript(luaPad + `
local dedup = KEYS[6]
if dedup then
  local old = redis.call('GET', dedup)
  if old then
    redis.call('PEXPIRE', dedup, ARGV[11])
    return {old, 1}
  end
end
local from, kind, target = ARGV[2], ARGV[3], ARGV[4]
local found = redis.call('XRANGE', KEYS[1], target, target)
if not found[1] or found[1][2][1] == 'k' then
  return redis.error_reply('HUBBUB_UNKNOWN_MESSAGE no such message')
end
local author, root
local f = found[1][2]
for i = 1, #f, 2 do
  if f[i] == 'f' then author = f[i+1] elseif f[i] == 'th' then root = f[i+1] end
end
local raw = redis.call('HGET', KEYS[2], target)
local st = {}
if raw then st = cjson.decode(raw) end
if kind == 'edit' then
  if author ~= from then return redis.error_reply('HUBBUB_FORBIDDEN not your message') end
elseif kind == 'delete' then
  if author ~= from and ARGV[8] ~= '1' then return redis.error_reply('HUBBUB_FORBIDDEN not your message') end
elseif kind == 'react' then
  local has = false
  for _, r in ipairs(st.r or {}) do
    if r[1] == ARGV[6] then has = true end
  end
  local most = tonumber(ARGV[9])
  if ARGV[7] == '1' and not has and most > 0 and #(st.r or {}) >= most then
    return redis.error_reply('HUBBUB_TOO_MANY_REACTIONS too many different reactions')
  end
else
  return redis.error_reply('ERR unknown change kind')
end
local prev = ''
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then prev = last[1][1] end
local fields = {'k', kind, 'f', from, 'r', target}
local body = ''
if kind == 'edit' then
  table.insert(fields, 't'); table.insert(fields, ARGV[5]); body = ARGV[5]
elseif kind == 'react' then
  table.insert(fields, 'e'); table.insert(fields, ARGV[6])
  table.insert(fields, 'o'); table.insert(fields, ARGV[7]); body = ARGV[6]
end
local id
if tonumber(ARGV[1]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
redis.call('ZADD', KEYS[5], 0, pad(id))
local score = tonumber(string.match(target, '^(%d+)'))
if kind == 'delete' then
  if root then
    -- One reply fewer in its thread (a deleted root has no state).
    local rraw = redis.call('HGET', KEYS[2], root)
    if rraw then
      local rst = cjson.decode(rraw)
      rst.n = math.max((rst.n or 1) - 1, 0)
      redis.call('HSET', KEYS[2], root, cjson.encode(rst))
    end
  end
  redis.call('XDEL', KEYS[1], target, unpack(st.ed or {}))
  for _, e in ipairs(st.ed or {}) do
    redis.call('ZREM', KEYS[5], pad(e))
  end
  redis.call('HDEL', KEYS[2], target)
  redis.call('ZREM', KEYS[3], target)
  redis.call('ZADD', KEYS[4], score, target)
else
  if kind == 'edit' then
    st.t = ARGV[5]
    st.ea = tonumber(string.match(id, '^(%d+)'))
    st.ed = st.ed or {}
    table.insert(st.ed, id)
  else
    local rs, at = st.r or {}, nil
    for i, r in ipairs(rs) do
      if r[1] == ARGV[6] then at = i end
    end
    if ARGV[7] == '1' then
      if not at then
        table.insert(rs, {ARGV[6], {from}})
      else
        local in_ = false
        for _, u in ipairs(rs[at][2]) do
          if u == from then in_ = true end
        end
        if not in_ then table.insert(rs[at][2], from) end
      end
    elseif at then
      local users = {}
      for _, u in ipairs(rs[at][2]) do
        if u ~= from then table.insert(users, u) end
      end
      if #users == 0 then table.remove(rs, at) else rs[at][2] = users end
    end
    if #rs == 0 then st.r = nil else st.r = rs end
  end
  if next(st) == nil then
    redis.call('HDEL', KEYS[2], target)
    redis.call('ZREM', KEYS[3], target)
  else
    redis.call('HSET', KEYS[2], target, cjson.encode(st))
    redis.call('ZADD', KEYS[3], score, target)
  end
end
-- Let go of what trimming left behind. A state is a kept message's: one
-- older than the stream's first entry is of a trimmed message. A deleted
-- id older than it may be of the first message, deleted, not trimmed: only
-- once the stream is full has trimming passed it.
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if first[1] then
  local below = '(' .. string.match(first[1][1], '^(%d+)')
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', below, 'LIMIT', 0, 16)
  if #gone > 0 then
    redis.call('HDEL', KEYS[2], unpack(gone))
    redis.call('ZREM', KEYS[3], unpack(gone))
  end
  redis.call('ZREMRANGEBYLEX', KEYS[5], '-', '(' .. pad(first[1][1]))
  local keep = tonumber(ARGV[1])
  if keep > 0 and redis.call('XLEN', KEYS[1]) >= keep then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', below)
  end
end
if dedup then
  redis.call('SET', dedup, id, 'PX', ARGV[11])
end
local payload = prev .. '\n' .. id .. '\n' .. from .. ',' .. kind .. ',' .. target .. ',' .. ARGV[7] .. '\n' .. body
if ARGV[12] == '' then
  return {id, 0, payload}
end
redis.call(ARGV[12], ARGV[10], payload)
return {id, 0}
`)

// changeArgs are changeScript's ARGV.
type changeArgs struct {
	maxLen         int
	c              protocol.Message
	rules          chat.ChangeRules
	topic, publish string
}

func (a changeArgs) route() (topic, publish string) { return a.topic, a.publish }

func (a changeArgs) unpublished() committing {
	a.publish = ""
	return a
}

func (a changeArgs) argv() []any {
	return []any{max(a.maxLen, 0), a.c.From, a.c.Kind, a.c.Target, a.c.Text, a.c.Emoji, flag(a.c.On),
		flag(a.rules.AnyAuthor), max(a.rules.MaxEmoji, 0), a.topic, dedupTTL.Milliseconds(), a.publish}
}

// Change implements chat.Log (changeScript).
func (b *Backend) Change(ctx context.Context, c protocol.Message, dedupKey string, maxLen int, rules chat.ChangeRules) (protocol.Message, error) {
	if _, err := protocol.ParseID(c.Target); err != nil {
		return protocol.Message{}, chat.ErrUnknownMessage
	}
	ks := []string{keys.Stream(b.room, c.Channel), keys.MessageState(b.room, c.Channel),
		keys.MessagesChanged(b.room, c.Channel), keys.MessagesDeleted(b.room, c.Channel), keys.ChangeEntries(b.room, c.Channel)}
	if dedupKey != "" {
		ks = append(ks, keys.Dedup(b.room, c.From, dedupKey))
	}
	res, err := b.runCommit(ctx, changeScript, ks, changeArgs{maxLen: maxLen, c: c, rules: rules,
		topic: keys.Topic(b.room, c.Channel), publish: b.publishCommand()})
	if r := refusal(err); r != nil {
		return protocol.Message{}, r
	}
	if err != nil {
		return protocol.Message{}, b.wrap("change", err)
	}
	id, _ := res[0].(string)
	ts, err := idMillis(id)
	if err != nil {
		return protocol.Message{}, fmt.Errorf("redis change: %w", err)
	}
	c.ID, c.TS = id, ts
	return c, nil
}

// historyRead is how many entries History reads at first; it reads more
// per round while changes crowd the messages out.
const historyRead = 64

// History implements chat.Log: messages before before, newest last, each
// as it is now. It reads the stream back until it has limit messages (or
// the stream ends), then in one pipeline the state of those it found and
// the deleted ids among them, which it shows where they were.
func (b *Backend) History(ctx context.Context, channel, before string, limit int) ([]protocol.Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	end, beforeMs := "+", "+inf"
	if before != "" {
		id, err := protocol.ParseID(before)
		if err != nil {
			return nil, fmt.Errorf("redis read history: %w", err)
		}
		end, beforeMs = "("+before, strconv.FormatUint(id.Ms, 10)
	}
	stream := keys.Stream(b.room, channel)
	var msgs []protocol.Message // newest first
	exhausted := false
	for count := max(limit, historyRead); len(msgs) < limit; count = min(4*count, 4096) {
		xs, err := b.client.XRevRangeN(ctx, stream, end, "-", int64(count)).Result()
		if err != nil {
			return nil, b.wrap("read history", err)
		}
		got, err := toMessages(channel, xs)
		if err != nil {
			return nil, err
		}
		for _, m := range got {
			if !m.IsChange() && len(msgs) < limit {
				msgs = append(msgs, m)
			}
		}
		if len(xs) < count {
			exhausted = true
			break
		}
		end = "(" + xs[len(xs)-1].ID
	}
	// Deleted ones between the oldest message found (or the stream's
	// start, if it ran out) and before.
	fromMs := "-inf"
	if !exhausted && len(msgs) > 0 {
		fromMs = strconv.FormatInt(msgs[len(msgs)-1].TS, 10)
	}
	pipe := b.client.Pipeline()
	deleted := pipe.ZRangeByScore(ctx, keys.MessagesDeleted(b.room, channel), &redis.ZRangeBy{Min: fromMs, Max: beforeMs})
	var states *redis.SliceCmd
	if len(msgs) > 0 {
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		states = pipe.HMGet(ctx, keys.MessageState(b.room, channel), ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, b.wrap("read history", err)
	}
	if states != nil {
		for i, v := range states.Val() {
			raw, ok := v.(string)
			if !ok {
				continue
			}
			if err := applyState(&msgs[i], raw); err != nil {
				return nil, fmt.Errorf("redis read history: state of %s: %w", msgs[i].ID, err)
			}
		}
	}
	for _, id := range deleted.Val() {
		x, err := protocol.ParseID(id)
		if err != nil {
			continue
		}
		if before != "" && x.Compare(protocol.IDOrZero(before)) >= 0 {
			continue
		}
		if !exhausted && len(msgs) > 0 && x.Compare(protocol.IDOrZero(msgs[len(msgs)-1].ID)) < 0 {
			continue
		}
		msgs = append(msgs, protocol.Message{ID: id, Channel: channel, Deleted: true})
	}
	slices.SortFunc(msgs, func(x, y protocol.Message) int {
		return protocol.IDOrZero(y.ID).Compare(protocol.IDOrZero(x.ID))
	})
	msgs = msgs[:min(len(msgs), limit)]
	slices.Reverse(msgs)
	return msgs, nil
}

// applyState sets m's text, edit time and reactions from its state.
func applyState(m *protocol.Message, raw string) error {
	var st struct {
		Text     *string             `json:"t"`
		EditedAt int64               `json:"ea"`
		R        [][]json.RawMessage `json:"r"`
		Replies  int                 `json:"n"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return err
	}
	m.Replies = st.Replies
	if st.Text != nil {
		m.Text, m.EditedAt = *st.Text, st.EditedAt
	}
	for _, r := range st.R {
		if len(r) != 2 {
			return fmt.Errorf("malformed reaction %s", r)
		}
		var emoji string
		var users []string
		if err := json.Unmarshal(r[0], &emoji); err != nil {
			return err
		}
		if err := json.Unmarshal(r[1], &users); err != nil {
			return err // changeScript drops an emoji nobody holds: never {}
		}
		m.Reactions = append(m.Reactions, protocol.Reaction{Emoji: emoji, Users: users})
	}
	return nil
}

package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// dedupTTL is how long a (user, clientId) is remembered.
const dedupTTL = 24 * time.Hour

// appendScript commits one message. KEYS[1] the stream; for a created
// channel, whose members alone may send (ARGV[7] "1"), KEYS[2] its meta
// hash and KEYS[3] its members; then the dedup key (absent: no dedup).
// ARGV: maxLen (0 = keep all), from, text, topic, dedup TTL ms, publish
// command (PUBLISH, or SPUBLISH on a Redis Cluster: see publishCommand),
// members only. Returns {id, 0} for a new message, {id, 1, from, text} for
// a duplicate whose original is still in the stream, {id, 1} for one already
// trimmed. A sender who is not a member gets the error reply
// HUBBUB_FORBIDDEN, and HUBBUB_UNKNOWN_CHANNEL when there is no such
// channel (refusal maps them).
//
// The membership check and the XADD are one script, so a member removed
// while sending either got the message in before the removal or is
// refused: nothing lands after the removal returned. A duplicate is
// answered before the check: its original was committed while its sender
// was a member, and saying "forbidden" about a stored message would be
// wrong.
//
// The published payload is "<prev id>\n<id>\n<from>\n<text>": prev is the id
// the stream ended with before this message, so a subscriber that did not
// deliver prev knows it missed something.
//
// One script serves both topologies (the command is an argument, not a
// second script), and both kinds of channel (the guard is an argument too):
// runAppend and the script cache know one appendScript, and a node's cache
// holds it once whichever way it is called. The publication comes last,
// after every write, as before. An empty command publishes nothing and
// returns {id, 0, payload}: where replicas must confirm the append,
// runAppend publishes only once they have (replication.go).
var appendScript = redis.NewScript(`
local guarded = ARGV[7] == '1'
local dedup = KEYS[2]
if guarded then dedup = KEYS[4] end
if dedup then
  local old = redis.call('GET', dedup)
  if old then
    -- A write, though nothing new is stored: the WAIT behind a retry must
    -- cover the original append, and replication is ordered.
    redis.call('PEXPIRE', dedup, ARGV[5])
    local e = redis.call('XRANGE', KEYS[1], old, old)
    if e[1] then
      local f = e[1][2]
      local from, text = '', ''
      for i = 1, #f, 2 do
        if f[i] == 'f' then from = f[i+1] elseif f[i] == 't' then text = f[i+1] end
      end
      return {old, 1, from, text}
    end
    return {old, 1}
  end
end
if guarded then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    return redis.error_reply('HUBBUB_UNKNOWN_CHANNEL no such channel')
  end
  if not redis.call('ZSCORE', KEYS[3], ARGV[2]) then
    return redis.error_reply('HUBBUB_FORBIDDEN not a member of this channel')
  end
end
local prev = ''
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then prev = last[1][1] end
local id
if tonumber(ARGV[1]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'f', ARGV[2], 't', ARGV[3])
else
  id = redis.call('XADD', KEYS[1], '*', 'f', ARGV[2], 't', ARGV[3])
end
if dedup then
  redis.call('SET', dedup, id, 'PX', ARGV[5])
end
local payload = prev .. '\n' .. id .. '\n' .. ARGV[2] .. '\n' .. ARGV[3]
if ARGV[6] == '' then
  return {id, 0, payload}
end
redis.call(ARGV[6], ARGV[4], payload)
return {id, 0}
`)

// appendArgs are appendScript's ARGV.
type appendArgs struct {
	maxLen      int
	from, text  string
	topic       string
	publish     string // PUBLISH, SPUBLISH, or "" to return the payload instead
	membersOnly bool   // KEYS[2], KEYS[3] are a created channel's meta and members
}

func (a appendArgs) route() (topic, publish string) { return a.topic, a.publish }

func (a appendArgs) unpublished() committing {
	a.publish = ""
	return a
}

func (a appendArgs) argv() []any {
	guard := "0"
	if a.membersOnly {
		guard = "1"
	}
	return []any{a.maxLen, a.from, a.text, a.topic, dedupTTL.Milliseconds(), a.publish, guard}
}

// countAfterScript counts messages (entries that are not changes: their
// first field is not k) from ARGV[1] (an XRANGE start), at most ARGV[2].
var countAfterScript = redis.NewScript(`
local want = tonumber(ARGV[2])
local n, start = 0, ARGV[1]
while n < want do
  local xs = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', want)
  for _, e in ipairs(xs) do
    if e[2][1] ~= 'k' then
      n = n + 1
      if n == want then return n end
    end
  end
  if #xs < want then return n end
  start = '(' .. xs[#xs][1]
end
return n
`)

// countAllScript counts the messages of a stream from its start: its
// length less its change entries (KEYS[2], ChangeEntries) from its first
// entry on. Constant work, where countAfterScript reads every entry: a
// channel a person never read is counted from its start on every connect.
var countAllScript = redis.NewScript(luaPad + `
local n = redis.call('XLEN', KEYS[1])
if n == 0 then return 0 end
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
return n - redis.call('ZLEXCOUNT', KEYS[2], '[' .. pad(first), '+')
`)

// countCmd queues on pipe the count of channel's messages after after ("":
// from the start; countAllScript, which the reader caps at maxCount).
func (b *Backend) countCmd(ctx context.Context, pipe redis.Scripter, channel, after string, maxCount int) (*redis.Cmd, error) {
	stream := keys.Stream(b.room, channel)
	if after == "" {
		return countAllScript.EvalSha(ctx, pipe, []string{stream, keys.ChangeEntries(b.room, channel)}), nil
	}
	start, err := exclusiveStart(after)
	if err != nil {
		return nil, err
	}
	return countAfterScript.EvalSha(ctx, pipe, []string{stream}, start, maxCount), nil
}

// loadCountScripts puts the count scripts in the node's cache (a restart,
// a failover empties it).
func (b *Backend) loadCountScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{countAllScript, countAfterScript} {
		if err := s.Load(ctx, b.client).Err(); err != nil {
			return b.wrap("count", err)
		}
	}
	return nil
}

// Append implements chat.Log.
func (b *Backend) Append(ctx context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	return b.appendMessage(ctx, m, dedupKey, maxLen, false)
}

// appendMessage commits m; membersOnly refuses a sender who is not a
// member of the created channel m.Channel (AppendMember).
func (b *Backend) appendMessage(ctx context.Context, m protocol.Message, dedupKey string, maxLen int, membersOnly bool) (protocol.Message, error) {
	if m.Thread != "" {
		return b.reply(ctx, m, dedupKey, maxLen, membersOnly)
	}
	ks := []string{keys.Stream(b.room, m.Channel)}
	if membersOnly {
		ks = append(ks, keys.Channel(b.room, m.Channel), keys.ChannelMembers(b.room, m.Channel))
	}
	if dedupKey != "" {
		ks = append(ks, keys.Dedup(b.room, m.From, dedupKey))
	}
	res, err := b.runAppend(ctx, ks, appendArgs{
		maxLen: max(maxLen, 0), from: m.From, text: m.Text,
		topic: keys.Topic(b.room, m.Channel), publish: b.publishCommand(),
		membersOnly: membersOnly,
	})
	if r := refusal(err); r != nil {
		return protocol.Message{}, r
	}
	if err != nil {
		return protocol.Message{}, b.wrap("append", err)
	}
	if len(res) < 2 {
		return protocol.Message{}, fmt.Errorf("redis append: unexpected reply %v", res)
	}
	id, _ := res[0].(string)
	if len(res) == 4 {
		m.From, _ = res[2].(string)
		m.Text, _ = res[3].(string)
	}
	m.ID = id
	if m.TS, err = idMillis(id); err != nil {
		return protocol.Message{}, fmt.Errorf("redis append: %w", err)
	}
	return m, nil
}

// After implements chat.Log.
func (b *Backend) After(ctx context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	start, err := exclusiveStart(after)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	xs, err := b.client.XRangeN(ctx, keys.Stream(b.room, channel), start, "+", int64(limit)).Result()
	if err != nil {
		return nil, b.wrap("read history", err)
	}
	return toMessages(channel, xs)
}

// readRange reads (after, upTo] ("" after = from the start, "+" upTo = to the end).
func (b *Backend) readRange(ctx context.Context, channel, after, upTo string, limit int) ([]protocol.Message, error) {
	start, err := exclusiveStart(after)
	if err != nil {
		return nil, err
	}
	xs, err := b.client.XRangeN(ctx, keys.Stream(b.room, channel), start, upTo, int64(limit)).Result()
	if err != nil {
		return nil, b.wrap("read history", err)
	}
	return toMessages(channel, xs)
}

// Before implements chat.Log.
func (b *Backend) Before(ctx context.Context, channel, before string, limit int) ([]protocol.Message, error) {
	end := "+"
	if before != "" {
		if _, err := protocol.ParseID(before); err != nil {
			return nil, fmt.Errorf("redis read history: %w", err)
		}
		end = "(" + before
	}
	if limit <= 0 {
		return nil, nil
	}
	xs, err := b.client.XRevRangeN(ctx, keys.Stream(b.room, channel), end, "-", int64(limit)).Result()
	if err != nil {
		return nil, b.wrap("read history", err)
	}
	slices.Reverse(xs)
	return toMessages(channel, xs)
}

// LastID implements chat.Log.
func (b *Backend) LastID(ctx context.Context, channel string) (string, error) {
	xs, err := b.client.XRevRangeN(ctx, keys.Stream(b.room, channel), "+", "-", 1).Result()
	if err != nil {
		return "", b.wrap("last id", err)
	}
	if len(xs) == 0 {
		return "", nil
	}
	return xs[0].ID, nil
}

// CountAfter implements chat.Log.
func (b *Backend) CountAfter(ctx context.Context, channel, after string, maxCount int) (int, error) {
	counts, err := b.CountsAfter(ctx, map[string]string{channel: after}, maxCount)
	if err != nil {
		return 0, err
	}
	return counts[channel], nil
}

// LastIDs implements chat.Log: one pipeline of XREVRANGEs (lastAndCounts).
func (b *Backend) LastIDs(ctx context.Context, channels []string) (map[string]string, error) {
	last, _, err := b.lastAndCounts(ctx, channels, nil, 0)
	return last, err
}

// CountsAfter implements chat.Log: one pipeline (lastAndCounts).
func (b *Backend) CountsAfter(ctx context.Context, after map[string]string, maxCount int) (map[string]int, error) {
	_, counts, err := b.lastAndCounts(ctx, nil, after, maxCount)
	return counts, err
}

// lastAndCounts reads in one pipeline the last id of each of channels ("" =
// none), and for each channel in after how many messages follow after[ch]
// (countAllScript, countAfterScript: changes are not counted), at most
// maxCount. A
// room's streams share its hash tag, so on a Cluster too the pipeline goes
// to one node in one round trip. Pipelined commands leave other clients
// room between them, where one script reading every channel would hold
// Redis for all of them at once.
func (b *Backend) lastAndCounts(ctx context.Context, channels []string, after map[string]string, maxCount int) (map[string]string, map[string]int, error) {
	last := make(map[string]string, len(channels))
	counts := make(map[string]int, len(after))
	if maxCount <= 0 {
		for ch := range after {
			counts[ch] = 0
		}
		after = nil
	}
	if len(channels) == 0 && len(after) == 0 {
		return last, counts, nil
	}
	for attempt := 0; ; attempt++ {
		pipe := b.client.Pipeline()
		lasts := make([]*redis.XMessageSliceCmd, len(channels))
		for i, ch := range channels {
			lasts[i] = pipe.XRevRangeN(ctx, keys.Stream(b.room, ch), "+", "-", 1)
		}
		scripts := make(map[string]*redis.Cmd, len(after))
		for ch, a := range after {
			c, err := b.countCmd(ctx, pipe, ch, a, maxCount)
			if err != nil {
				return nil, nil, err
			}
			scripts[ch] = c
		}
		_, err := pipe.Exec(ctx)
		if attempt == 0 && len(scripts) > 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A script is not in the node's cache: load them and go again.
			if err := b.loadCountScripts(ctx); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err != nil {
			return nil, nil, b.wrap("last ids and counts", err)
		}
		for i, ch := range channels {
			last[ch] = ""
			if xs := lasts[i].Val(); len(xs) > 0 {
				last[ch] = xs[0].ID
			}
		}
		for ch, c := range scripts {
			n, err := c.Int()
			if err != nil {
				return nil, nil, b.wrap("count", err)
			}
			counts[ch] = min(n, maxCount)
		}
		return last, counts, nil
	}
}

// exclusiveStart is the XRANGE start for "after id" ("" = from the start).
func exclusiveStart(after string) (string, error) {
	if after == "" {
		return "-", nil
	}
	if _, err := protocol.ParseID(after); err != nil {
		return "", fmt.Errorf("redis read history: %w", err)
	}
	return "(" + after, nil
}

func toMessages(channel string, xs []redis.XMessage) ([]protocol.Message, error) {
	if len(xs) == 0 {
		return nil, nil
	}
	out := make([]protocol.Message, 0, len(xs))
	for _, x := range xs {
		ts, err := idMillis(x.ID)
		if err != nil {
			return nil, fmt.Errorf("redis read history: %w", err)
		}
		m := protocol.Message{ID: x.ID, Channel: channel, TS: ts}
		m.From, _ = x.Values["f"].(string)
		m.Text, _ = x.Values["t"].(string)
		m.Kind, _ = x.Values["k"].(string)
		m.Target, _ = x.Values["r"].(string)
		m.Emoji, _ = x.Values["e"].(string)
		m.On = x.Values["o"] == "1"
		m.Thread, _ = x.Values["th"].(string)
		out = append(out, m)
	}
	return out, nil
}

// idMillis is the commit time of a stream id: its milliseconds part.
func idMillis(id string) (int64, error) {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return 0, fmt.Errorf("%q is not a stream id", id)
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a stream id", id)
	}
	return n, nil
}

// parsePublished decodes a publication "<prev>\n<id>\n<from>\n<text>" of
// a message (Append), "<prev>\n<id>\n<from>,<kind>,<target>,<on>\n<text
// or emoji>" of a change (Change), or the same with kind "reply" and the
// thread's root as target of a reply: a username holds no comma.
func parsePublished(channel, payload string) (prev string, m protocol.Message, err error) {
	parts := strings.SplitN(payload, "\n", 4)
	if len(parts) != 4 {
		return "", m, errors.New("malformed message publication")
	}
	id, err := protocol.ParseID(parts[1])
	if err != nil {
		return "", m, fmt.Errorf("publication of %q: %w", protocol.Truncate(parts[1], 40), err)
	}
	m = protocol.Message{ID: parts[1], Channel: channel, From: parts[2], Text: parts[3], TS: int64(id.Ms)}
	if from, change, ok := strings.Cut(parts[2], ","); ok {
		f := strings.Split(change, ",")
		if len(f) != 3 {
			return "", m, errors.New("malformed change publication")
		}
		m.From, m.Kind, m.Target, m.On = from, f[0], f[1], f[2] == "1"
		switch m.Kind {
		case protocol.KindEdit, protocol.KindDelete:
		case protocol.KindReact:
			m.Emoji, m.Text = m.Text, ""
		case "reply": // a message, in a thread (replyScript)
			m.Kind, m.Target, m.Thread = "", "", f[1]
		default:
			return "", m, fmt.Errorf("publication of an unknown change %q", protocol.Truncate(m.Kind, 20))
		}
	}
	return parts[0], m, nil
}

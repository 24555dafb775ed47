package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/hubbub-chat/hubbub/chatserver/chat"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Append implements chat.Log.
func (b *Backend) Append(_ context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.appendLocked(m, dedupKey, maxLen, nil, nil)
}

// Change implements chat.Log. The checks run under the same lock as the
// append; the changed message is rewritten in the same journal commit as
// the change entry, so the file never holds one without the other.
func (b *Backend) Change(_ context.Context, c protocol.Message, dedupKey string, maxLen int, rules chat.ChangeRules) (protocol.Message, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	target := protocol.IDOrZero(c.Target)
	admit := func() error {
		t, ok := st.channels[c.Channel].find(target)
		if !ok || t.IsChange() || t.Deleted {
			return chat.ErrUnknownMessage
		}
		switch c.Kind {
		case protocol.KindEdit:
			if t.From != c.From {
				return chat.ErrForbidden
			}
		case protocol.KindDelete:
			if t.From != c.From && !rules.AnyAuthor {
				return chat.ErrForbidden
			}
		case protocol.KindReact:
			if c.On && rules.MaxEmoji > 0 && len(t.Reactions) >= rules.MaxEmoji &&
				!slices.ContainsFunc(t.Reactions, func(r protocol.Reaction) bool { return r.Emoji == c.Emoji }) {
				return chat.ErrTooManyReactions
			}
		default:
			return fmt.Errorf("memory change: unknown kind %q", c.Kind)
		}
		return nil
	}
	return st.appendLocked(c, dedupKey, maxLen, admit, st.applyChange)
}

// applyChange records, in tx, what change c (committed) does to its target,
// and returns what it does to memory once tx is committed.
func (st *store) applyChange(tx *batch, c protocol.Message) func() {
	cl := st.channels[c.Channel]
	target := protocol.IDOrZero(c.Target)
	t, _ := cl.find(target)    // admit found it
	var drop []protocol.ID     // entries that go with it (a deleted message's edits)
	var root *protocol.Message // a deleted reply's root, one reply fewer
	switch c.Kind {
	case protocol.KindEdit:
		t.Text, t.EditedAt = c.Text, c.TS
	case protocol.KindDelete:
		if r, ok := cl.find(protocol.IDOrZero(t.Thread)); t.Thread != "" && ok && !r.Deleted {
			r.Replies--
			tx.put(bucketMessages, msgKey(c.Channel, protocol.IDOrZero(r.ID)), r)
			root = &r
		}
		// A deleted reply stays in its thread, as deleted.
		t = protocol.Message{ID: t.ID, Channel: t.Channel, Thread: t.Thread, Deleted: true}
		for _, e := range cl.msgs {
			if e.Kind == protocol.KindEdit && e.Target == c.Target {
				drop = append(drop, protocol.IDOrZero(e.ID))
				tx.del(bucketMessages, msgKey(c.Channel, protocol.IDOrZero(e.ID)))
			}
		}
	case protocol.KindReact:
		t.Reactions = protocol.React(cloneReactions(t.Reactions), c.Emoji, c.From, c.On)
	}
	tx.put(bucketMessages, msgKey(c.Channel, target), t)
	return func() {
		cl := st.channels[c.Channel]
		cl.replace(t)
		if root != nil {
			cl.replace(*root)
		}
		if len(drop) > 0 {
			cl.msgs = slices.DeleteFunc(cl.msgs, func(e protocol.Message) bool {
				return e.Kind == protocol.KindEdit && e.Target == c.Target
			})
		}
	}
}

func cloneReactions(rs []protocol.Reaction) []protocol.Reaction {
	out := make([]protocol.Reaction, len(rs))
	for i, r := range rs {
		out[i] = protocol.Reaction{Emoji: r.Emoji, Users: slices.Clone(r.Users)}
	}
	return out
}

// appendLocked is Append with st.mu held. admit, when set, is asked after
// the dedup check and before anything changes: a retry of a committed
// message gets that message back even if admit would now refuse it, as it
// adds nothing. change, when set, records in the same commit what the new
// entry (a change) does to its target, and returns what to do in memory.
func (st *store) appendLocked(m protocol.Message, dedupKey string, maxLen int, admit func() error, change func(*batch, protocol.Message) func()) (protocol.Message, error) {
	now := st.now()
	if dedupKey != "" {
		if e, ok := st.dedup[dedupKey]; ok && now.Before(e.expires) {
			return st.withText(e.msg), nil
		}
	}
	if admit != nil {
		if err := admit(); err != nil {
			return protocol.Message{}, err
		}
	}
	cl := st.channels[m.Channel]
	var root protocol.Message // the thread's root, for a reply
	if m.Thread != "" {
		t, ok := cl.find(protocol.IDOrZero(m.Thread))
		switch {
		case !ok || t.IsChange() || t.Deleted:
			return protocol.Message{}, chat.ErrUnknownMessage
		case t.Thread != "":
			return protocol.Message{}, chat.ErrNotThreadRoot
		}
		root = t
	}
	if cl == nil {
		cl = &channelLog{}
	}
	ms := uint64(now.UnixMilli())
	id := protocol.ID{Ms: ms}
	if ms <= cl.last.Ms {
		id = protocol.ID{Ms: cl.last.Ms, Seq: cl.last.Seq + 1}
	}
	m.ID = id.String()
	m.TS = now.UnixMilli()

	tx := st.batch()
	tx.put(bucketMessages, msgKey(m.Channel, id), m)
	var changed func()
	if change != nil {
		changed = change(tx, m)
	}
	if m.Thread != "" {
		m.Repliers = root.Repliers
		if len(m.Repliers) == 0 {
			m.Repliers = []string{root.From}
		}
		root.Replies++
		root.Repliers = m.Repliers
		if !slices.Contains(root.Repliers, m.From) {
			root.Repliers = append(slices.Clone(root.Repliers), m.From)
		}
		tx.put(bucketMessages, msgKey(m.Channel, protocol.IDOrZero(root.ID)), root)
		changed = func() { cl.replace(root) }
	}
	// Trim in batches (like XADD MAXLEN ~) so appends stay O(1) amortized;
	// the journal drops the same messages in the same commit, so the file
	// holds what memory does and never grows past the history limit.
	trim := 0
	if n := len(cl.msgs) + 1; maxLen > 0 && n > maxLen+maxLen/8+1 {
		trim = n - maxLen
		for _, old := range cl.msgs[:trim] {
			tx.del(bucketMessages, msgKey(m.Channel, protocol.IDOrZero(old.ID)))
		}
	}
	var sweep []string
	// The dedup record keeps no text: a deleted message's text must go
	// with it, and a retry gets the text from the log (withText).
	rec := m
	rec.Text, rec.Repliers = "", nil
	if dedupKey != "" {
		if len(st.dedup) >= 1<<16 && len(st.dedup)%1024 == 0 {
			for k, e := range st.dedup {
				if !now.Before(e.expires) {
					sweep = append(sweep, k)
					tx.del(bucketDedup, k)
				}
			}
		}
		tx.put(bucketDedup, dedupKey, dedupRecord{Msg: rec, Expires: now.Add(dedupTTL)})
	}
	if err := tx.commit(); err != nil {
		return protocol.Message{}, err
	}

	st.channels[m.Channel] = cl
	cl.last = id
	stored := m
	stored.Repliers = nil // the root keeps them
	cl.msgs = append(cl.msgs, stored)
	if trim > 0 {
		cl.msgs = append([]protocol.Message(nil), cl.msgs[trim:]...)
	}
	if changed != nil {
		changed()
	}
	for _, k := range sweep {
		delete(st.dedup, k)
	}
	if dedupKey != "" {
		st.dedup[dedupKey] = dedupEntry{msg: rec, expires: now.Add(dedupTTL)}
	}
	for f := range st.feeds {
		f.offer(stored)
	}
	return m, nil
}

// replace puts m in the place of the entry with its id, if still kept.
func (cl *channelLog) replace(m protocol.Message) {
	if i, ok := cl.index(protocol.IDOrZero(m.ID)); ok {
		cl.msgs[i] = m
	}
}

// withText is a deduplicated entry with its text, if the log still keeps
// it (a trimmed or deleted one comes back without).
func (st *store) withText(m protocol.Message) protocol.Message {
	if e, ok := st.channels[m.Channel].find(protocol.IDOrZero(m.ID)); ok && !e.Deleted {
		m.Text = e.Text
	}
	return m
}

// after returns the position of the first entry with ID > id.
func (cl *channelLog) after(id protocol.ID) int {
	return sort.Search(len(cl.msgs), func(i int) bool {
		x, _ := protocol.ParseID(cl.msgs[i].ID)
		return x.Compare(id) > 0
	})
}

// index returns the position of the entry with ID id.
func (cl *channelLog) index(id protocol.ID) (int, bool) {
	if cl == nil {
		return 0, false
	}
	i := sort.Search(len(cl.msgs), func(i int) bool {
		x, _ := protocol.ParseID(cl.msgs[i].ID)
		return x.Compare(id) >= 0
	})
	return i, i < len(cl.msgs) && cl.msgs[i].ID == id.String()
}

// find returns the entry with ID id.
func (cl *channelLog) find(id protocol.ID) (protocol.Message, bool) {
	i, ok := cl.index(id)
	if !ok {
		return protocol.Message{}, false
	}
	return cl.msgs[i], true
}

// After implements chat.Log.
func (b *Backend) After(_ context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil, nil
	}
	var out []protocol.Message
	for _, m := range cl.msgs[cl.after(protocol.IDOrZero(after)):] {
		if len(out) == limit {
			break
		}
		if !m.Deleted {
			out = append(out, m)
		}
	}
	return out, nil
}

// Before implements chat.Log.
func (b *Backend) Before(_ context.Context, channel, before string, limit int) ([]protocol.Message, error) {
	return b.back(channel, before, limit, func(m protocol.Message) bool { return !m.Deleted }), nil
}

// History implements chat.Log. A memory store changes a message in place
// (applyChange): it is kept as it is now.
func (b *Backend) History(_ context.Context, channel, before string, limit int) ([]protocol.Message, error) {
	out := b.back(channel, before, limit, func(m protocol.Message) bool { return !m.IsChange() })
	for i, m := range out {
		out[i] = shown(m)
	}
	return out, nil
}

// back returns up to limit of channel's entries before before ("" = the
// newest) that keep takes, oldest first.
func (b *Backend) back(channel, before string, limit int, keep func(protocol.Message) bool) []protocol.Message {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil
	}
	j := len(cl.msgs)
	if before != "" {
		j, _ = cl.index(protocol.IDOrZero(before))
	}
	return cl.backFrom(j, limit, keep)
}

// Thread implements chat.Log.
func (b *Backend) Thread(_ context.Context, channel, rootID, after string, limit int) (protocol.Message, []protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	root, ok := cl.find(protocol.IDOrZero(rootID))
	switch {
	case !ok || root.IsChange() || root.Deleted:
		return protocol.Message{}, nil, chat.ErrUnknownMessage
	case root.Thread != "":
		return protocol.Message{}, nil, chat.ErrNotThreadRoot
	}
	from, _ := cl.index(protocol.IDOrZero(rootID))
	if after != "" {
		from = max(from, cl.after(protocol.IDOrZero(after)))
	}
	var replies []protocol.Message
	for _, m := range cl.msgs[from:] {
		if len(replies) == limit {
			break
		}
		if m.Thread == rootID && !m.IsChange() {
			replies = append(replies, shown(m))
		}
	}
	return shown(root), replies, nil
}

// shown is a kept message as History returns it: its own copy of its
// reactions, and no repliers.
func shown(m protocol.Message) protocol.Message {
	rs := m.Reactions
	m.Repliers, m.Reactions = nil, nil
	if len(rs) > 0 {
		m.Reactions = cloneReactions(rs)
	}
	return m
}

// backFrom returns up to limit entries before position j that keep takes,
// oldest first.
func (cl *channelLog) backFrom(j, limit int, keep func(protocol.Message) bool) []protocol.Message {
	var out []protocol.Message
	for i := j - 1; i >= 0 && len(out) < limit; i-- {
		if keep(cl.msgs[i]) {
			out = append(out, cl.msgs[i])
		}
	}
	slices.Reverse(out)
	return out
}

// LastID implements chat.Log.
func (b *Backend) LastID(_ context.Context, channel string) (string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.lastIDLocked(channel), nil
}

// CountAfter implements chat.Log.
func (b *Backend) CountAfter(_ context.Context, channel, after string, limit int) (int, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.countAfterLocked(channel, after, limit), nil
}

// LastIDs implements chat.Log.
func (b *Backend) LastIDs(_ context.Context, channels []string) (map[string]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	out := make(map[string]string, len(channels))
	for _, c := range channels {
		out[c] = b.st.lastIDLocked(c)
	}
	return out, nil
}

func (st *store) lastIDLocked(channel string) string {
	cl := st.channels[channel]
	if cl == nil || len(cl.msgs) == 0 {
		return ""
	}
	return cl.msgs[len(cl.msgs)-1].ID
}

// CountsAfter implements chat.Log.
func (b *Backend) CountsAfter(_ context.Context, after map[string]string, limit int) (map[string]int, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	out := make(map[string]int, len(after))
	for c, a := range after {
		out[c] = b.st.countAfterLocked(c, a, limit)
	}
	return out, nil
}

func (st *store) countAfterLocked(channel, after string, limit int) int {
	cl := st.channels[channel]
	if cl == nil {
		return 0
	}
	n := 0
	for _, m := range cl.msgs[cl.after(protocol.IDOrZero(after)):] {
		if n >= limit {
			break
		}
		if !m.IsChange() && !m.Deleted {
			n++
		}
	}
	return n
}

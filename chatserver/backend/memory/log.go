package memory

import (
	"context"
	"sort"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Append implements chat.Log.
func (b *Backend) Append(_ context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.appendLocked(m, dedupKey, maxLen, nil)
}

// appendLocked is Append with st.mu held. admit, when set, is asked after
// the dedup check and before anything changes: a retry of a committed
// message gets that message back even if admit would now refuse it, as it
// adds nothing.
func (st *store) appendLocked(m protocol.Message, dedupKey string, maxLen int, admit func() error) (protocol.Message, error) {
	now := st.now()
	if dedupKey != "" {
		if e, ok := st.dedup[dedupKey]; ok && now.Before(e.expires) {
			return e.msg, nil
		}
	}
	if admit != nil {
		if err := admit(); err != nil {
			return protocol.Message{}, err
		}
	}
	cl := st.channels[m.Channel]
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
	if dedupKey != "" {
		if len(st.dedup) >= 1<<16 && len(st.dedup)%1024 == 0 {
			for k, e := range st.dedup {
				if !now.Before(e.expires) {
					sweep = append(sweep, k)
					tx.del(bucketDedup, k)
				}
			}
		}
		tx.put(bucketDedup, dedupKey, dedupRecord{Msg: m, Expires: now.Add(dedupTTL)})
	}
	if err := tx.commit(); err != nil {
		return protocol.Message{}, err
	}

	st.channels[m.Channel] = cl
	cl.last = id
	cl.msgs = append(cl.msgs, m)
	if trim > 0 {
		cl.msgs = append([]protocol.Message(nil), cl.msgs[trim:]...)
	}
	for _, k := range sweep {
		delete(st.dedup, k)
	}
	if dedupKey != "" {
		st.dedup[dedupKey] = dedupEntry{msg: m, expires: now.Add(dedupTTL)}
	}
	for f := range st.feeds {
		f.offer(m)
	}
	return m, nil
}

// after returns the position of the first message with ID > id.
func (cl *channelLog) after(id protocol.ID) int {
	return sort.Search(len(cl.msgs), func(i int) bool {
		x, _ := protocol.ParseID(cl.msgs[i].ID)
		return x.Compare(id) > 0
	})
}

// After implements chat.Log.
func (b *Backend) After(_ context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil, nil
	}
	i := cl.after(protocol.IDOrZero(after))
	j := min(len(cl.msgs), i+limit)
	return append([]protocol.Message(nil), cl.msgs[i:j]...), nil
}

// Before implements chat.Log.
func (b *Backend) Before(_ context.Context, channel, before string, limit int) ([]protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil, nil
	}
	j := len(cl.msgs)
	if before != "" {
		id := protocol.IDOrZero(before)
		j = sort.Search(len(cl.msgs), func(i int) bool {
			x, _ := protocol.ParseID(cl.msgs[i].ID)
			return x.Compare(id) >= 0
		})
	}
	i := max(0, j-limit)
	return append([]protocol.Message(nil), cl.msgs[i:j]...), nil
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
	return max(0, min(limit, len(cl.msgs)-cl.after(protocol.IDOrZero(after))))
}

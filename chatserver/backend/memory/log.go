package memory

import (
	"context"
	"sort"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Append implements chat.Log.
func (b *Backend) Append(_ context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	if dedupKey != "" {
		if e, ok := st.dedup[dedupKey]; ok && now.Before(e.expires) {
			return e.msg, nil
		}
	}
	cl := st.channels[m.Channel]
	if cl == nil {
		cl = &channelLog{}
		st.channels[m.Channel] = cl
	}
	ms := uint64(now.UnixMilli())
	id := protocol.ID{Ms: ms}
	if ms <= cl.last.Ms {
		id = protocol.ID{Ms: cl.last.Ms, Seq: cl.last.Seq + 1}
	}
	cl.last = id
	m.ID = id.String()
	m.TS = now.UnixMilli()
	cl.msgs = append(cl.msgs, m)
	// Trim in batches (like XADD MAXLEN ~) so appends stay O(1) amortized.
	if maxLen > 0 && len(cl.msgs) > maxLen+maxLen/8+1 {
		cl.msgs = append([]protocol.Message(nil), cl.msgs[len(cl.msgs)-maxLen:]...)
	}
	if dedupKey != "" {
		st.dedup[dedupKey] = dedupEntry{msg: m, expires: now.Add(dedupTTL)}
		if len(st.dedup) > 1<<16 && len(st.dedup)%1024 == 0 {
			for k, e := range st.dedup {
				if !now.Before(e.expires) {
					delete(st.dedup, k)
				}
			}
		}
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

func parseOrZero(s string) protocol.ID {
	id, _ := protocol.ParseID(s)
	return id
}

// After implements chat.Log.
func (b *Backend) After(_ context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil || limit <= 0 {
		return nil, nil
	}
	i := cl.after(parseOrZero(after))
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
		id := parseOrZero(before)
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
	cl := b.st.channels[channel]
	if cl == nil || len(cl.msgs) == 0 {
		return "", nil
	}
	return cl.msgs[len(cl.msgs)-1].ID, nil
}

// CountAfter implements chat.Log.
func (b *Backend) CountAfter(_ context.Context, channel, after string, limit int) (int, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	cl := b.st.channels[channel]
	if cl == nil {
		return 0, nil
	}
	return min(limit, len(cl.msgs)-cl.after(parseOrZero(after))), nil
}

package memory

import (
	"context"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// offer queues m if this handle follows its channel. Called with st.mu held,
// which orders appends, follows and deliveries consistently.
func (b *Backend) offer(m protocol.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	last, ok := b.follows[m.Channel]
	if !ok {
		return
	}
	id := protocol.IDOrZero(m.ID)
	if id.Compare(last) <= 0 {
		return
	}
	b.follows[m.Channel] = id
	b.push(delivery{channel: m.Channel, msgs: []protocol.Message{m}})
}

func (b *Backend) push(d delivery) {
	// Coalesce with the previous delivery of the same channel: fewer handler calls under load.
	if n := len(b.queue); n > 0 && d.event == nil && b.queue[n-1].event == nil && b.queue[n-1].channel == d.channel {
		b.queue[n-1].msgs = append(b.queue[n-1].msgs, d.msgs...)
	} else {
		b.queue = append(b.queue, d)
	}
	b.cond.Signal()
}

// Run implements chat.Feed.
func (b *Backend) Run(ctx context.Context, h chat.Handler) error {
	b.mu.Lock()
	b.stopping = false
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.stopping = true
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.stopping {
			b.cond.Wait()
		}
		if b.stopping {
			b.mu.Unlock()
			return nil
		}
		q := b.queue
		b.queue = nil
		b.mu.Unlock()
		for _, d := range q {
			if d.event != nil {
				h.Event(*d.event)
			} else {
				h.Messages(d.channel, d.msgs)
			}
		}
	}
}

// Follow implements chat.Feed.
func (b *Backend) Follow(channel, after string) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.follows[channel]; ok {
		return
	}
	from := protocol.IDOrZero(after)
	b.follows[channel] = from
	cl := b.st.channels[channel]
	if cl == nil {
		return
	}
	if i := cl.after(from); i < len(cl.msgs) {
		msgs := append([]protocol.Message(nil), cl.msgs[i:]...)
		b.follows[channel] = protocol.IDOrZero(msgs[len(msgs)-1].ID)
		b.push(delivery{channel: channel, msgs: msgs})
	}
}

// Unfollow implements chat.Feed.
func (b *Backend) Unfollow(channel string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.follows, channel)
}

// Publish implements chat.Feed.
func (b *Backend) Publish(_ context.Context, e chat.Event) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	for f := range b.st.feeds {
		f.mu.Lock()
		ev := e
		f.push(delivery{event: &ev})
		f.mu.Unlock()
	}
	return nil
}

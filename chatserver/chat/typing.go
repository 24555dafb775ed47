package chat

import (
	"context"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// handleTyping tells the channel's other members, on every server, that
// this person is typing. Typing is advisory: at most one event per channel
// per second per socket; the rest are dropped silently.
func (c *conn) handleTyping(ctx context.Context, f protocol.ClientFrame) {
	if err := c.may(f.Channel); err != nil {
		c.sendError(accessError(err, f.Channel, ""))
		return
	}
	now := time.Now()
	if now.Sub(c.in.typingAt[f.Channel]) < typingInterval {
		return
	}
	if c.in.typingAt == nil {
		c.in.typingAt = map[string]time.Time{}
	}
	c.in.typingAt[f.Channel] = now
	c.s.publish(ctx, Event{Kind: EventTyping, User: c.user, Channel: f.Channel})
}

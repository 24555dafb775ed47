package chat

import (
	"context"
	"fmt"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Read markers: how far each person has read each channel, shared by their
// devices.

// handleRead stores the person's read marker for a channel and tells their
// other sockets, on every server. A marker past the channel's last message
// would mark messages read before they exist: it is refused.
func (c *conn) handleRead(ctx context.Context, f protocol.ClientFrame) {
	if err := c.may(f.Channel); err != nil {
		c.sendError(accessError(err, f.Channel, ""))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	last, err := c.s.b.LastID(ctx, f.Channel)
	if err != nil {
		c.s.backendError("last_id", err)
		c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: "read marker not stored: storage unavailable"})
		return
	}
	id, _ := protocol.ParseID(f.ID) // Decode checked its form
	lastID, perr := protocol.ParseID(last)
	if last == "" || perr != nil || id.Compare(lastID) > 0 {
		c.sendError(&protocol.Error{Code: protocol.CodeBadRequest, Message: fmt.Sprintf("read marker %s is past the last message of %q", protocol.Truncate(f.ID, 40), f.Channel)})
		return
	}
	if err := c.s.b.SetRead(ctx, c.user, f.Channel, f.ID); err != nil {
		c.s.backendError("set_read", err)
		c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: "read marker not stored: storage unavailable"})
		return
	}
	c.s.publish(ctx, Event{Kind: EventRead, User: c.user, Channel: f.Channel, ID: f.ID})
}

// MarkAllRead moves the user's read markers on every public channel to its
// newest message. New accounts start here: history written before someone
// joined is there to scroll back through, not hundreds of "unread" messages.
func (s *Service) MarkAllRead(ctx context.Context, user string) error {
	for _, ch := range s.opts.Channels {
		last, err := s.b.LastID(ctx, ch)
		if err != nil {
			return fmt.Errorf("reading last id of %s: %w", ch, err)
		}
		if last == "" {
			continue
		}
		if err := s.b.SetRead(ctx, user, ch, last); err != nil {
			return fmt.Errorf("setting read marker on %s: %w", ch, err)
		}
	}
	return nil
}

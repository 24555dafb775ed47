package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// maxEmojiPerMessage bounds the distinct emoji on one message: a reaction
// row, not a second conversation.
const maxEmojiPerMessage = 20

// changeKinds maps a client frame type to the change it commits.
var changeKinds = map[string]string{
	protocol.TypeEdit:   protocol.KindEdit,
	protocol.TypeDelete: protocol.KindDelete,
	protocol.TypeReact:  protocol.KindReact,
}

// handleChange commits an edit, a delete or a reaction as an entry of the
// channel's stream, acked like a send once stored: every member's sockets
// get it as they get messages (edited, deleted, reaction), and a resume
// replays it in order. It is paid for from the send budget.
func (c *conn) handleChange(ctx context.Context, f protocol.ClientFrame) {
	if !c.allowSend() {
		c.sendError(&protocol.Error{Code: protocol.CodeRateLimited, Message: "changing messages too fast, slow down", ClientID: f.ClientID})
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	s := c.s
	if err := c.may(f.Channel); err != nil {
		c.sendError(accessError(err, f.Channel, f.ClientID))
		return
	}
	change := protocol.Message{Kind: changeKinds[f.Type], Channel: f.Channel, From: c.user, Target: f.ID, Text: f.Text, Emoji: f.Emoji}
	if f.On != nil {
		change.On = *f.On
	}
	rules := ChangeRules{MaxEmoji: maxEmojiPerMessage}
	if change.Kind == protocol.KindDelete {
		admin, err := s.mayDeleteAny(ctx, c.user, f.Channel)
		if err != nil {
			s.backendError("membership", err)
			c.sendError(unavailable(f.ClientID))
			return
		}
		rules.AnyAuthor = admin
	}
	m, err := s.b.Change(ctx, change, dedupKey(c.user, "\x00change\x00"+f.ClientID), s.opts.HistoryMax, rules)
	if err != nil {
		if perr := changeError(err, f); perr != nil {
			c.sendError(perr)
			return
		}
		s.backendError("change", err)
		c.sendError(unavailable(f.ClientID))
		return
	}
	c.ack(f.ClientID, m.ID, start)
}

// mayDeleteAny reports whether user may delete anyone's message in
// channel: a room admin anywhere, a channel's admin in a created channel.
func (s *Service) mayDeleteAny(ctx context.Context, user, channel string) (bool, error) {
	if s.roomAdmin(user) {
		return true, nil
	}
	if !errors.Is(s.access(user, channel), errCreated) {
		return false, nil
	}
	_, admin, err := s.b.Membership(ctx, channel, user)
	return admin, err
}

// changeError is the error frame for a change the store refused, or nil
// when it failed for another reason.
func changeError(err error, f protocol.ClientFrame) *protocol.Error {
	switch {
	case errors.Is(err, ErrUnknownMessage):
		return &protocol.Error{Code: protocol.CodeUnknownMessage, ClientID: f.ClientID,
			Message: fmt.Sprintf("no message %s in %q (or it was deleted, or is no longer kept)", f.ID, f.Channel)}
	case errors.Is(err, ErrForbidden):
		what := "edit"
		if f.Type == protocol.TypeDelete {
			what = "delete"
		}
		return &protocol.Error{Code: protocol.CodeForbidden, ClientID: f.ClientID,
			Message: fmt.Sprintf("you may %s only your own messages", what)}
	case errors.Is(err, ErrTooManyReactions):
		return &protocol.Error{Code: protocol.CodeTooLarge, ClientID: f.ClientID,
			Message: fmt.Sprintf("a message holds at most %d different reactions", maxEmojiPerMessage)}
	}
	return nil
}

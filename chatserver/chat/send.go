package chat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// handleSend commits a message (to a channel, or to a person: their DM
// channel, made on the first message) and acks it with its id. Nothing is
// acked that is not stored: a failure gets an error naming the clientId.
func (c *conn) handleSend(ctx context.Context, f protocol.ClientFrame) {
	if !c.allowSend() {
		c.sendError(&protocol.Error{Code: protocol.CodeRateLimited, Message: "sending too fast, slow down", ClientID: f.ClientID})
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	s := c.s
	channel := f.Channel
	commit := s.b.Append
	if f.To != "" {
		var perr *protocol.Error
		if channel, perr = c.dmChannel(ctx, f); perr != nil {
			c.sendError(perr)
			return
		}
	} else {
		switch err := s.access(c.user, channel); {
		case errors.Is(err, errCreated):
			if !s.hub.follows(c, channel) {
				if err := s.catchUp(ctx, c.user, channel); err != nil {
					if !errors.Is(err, ErrUnknownChannel) {
						s.backendError("membership", err)
						c.sendError(unavailable(f.ClientID))
						return
					}
					c.sendError(accessError(err, channel, f.ClientID))
					return
				}
			}
			// Checked again with the append, atomically: someone removed
			// while sending gets nothing in.
			commit = s.b.AppendMember
		case err != nil:
			c.sendError(accessError(err, channel, f.ClientID))
			return
		}
	}
	m, err := commit(ctx, protocol.Message{Channel: channel, From: c.user, Text: f.Text, Thread: f.Thread}, dedupKey(c.user, f.ClientID), s.opts.HistoryMax)
	switch {
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrUnknownChannel):
		c.sendError(accessError(ErrUnknownChannel, channel, f.ClientID))
		return
	case errors.Is(err, ErrUnknownMessage):
		c.sendError(&protocol.Error{Code: protocol.CodeUnknownMessage, ClientID: f.ClientID,
			Message: fmt.Sprintf("no message %s in %q to reply to (or it was deleted, or is no longer kept)", f.Thread, channel)})
		return
	case errors.Is(err, ErrNotThreadRoot):
		c.sendError(&protocol.Error{Code: protocol.CodeBadRequest, ClientID: f.ClientID,
			Message: fmt.Sprintf("%s is a reply: reply in its thread instead", f.Thread)})
		return
	case err != nil:
		s.backendError("append", err)
		c.sendError(unavailable(f.ClientID))
		return
	}
	c.ack(f.ClientID, m.ID, start)
	if _, _, dm := protocol.SplitDM(channel); len(m.Repliers) > 0 && !dm {
		// Those who posted in the thread are told, on every server (in a
		// DM the other person is told of every message anyway).
		s.publish(ctx, Event{Kind: EventThread, Channel: channel, ID: m.ID, User: c.user,
			Users: m.Repliers, Text: m.Text, Thread: m.Thread})
	}
}

// dmChannel is the DM channel between the sender and f.To, made (and
// followed by both people's sockets on every server) if it is new.
func (c *conn) dmChannel(ctx context.Context, f protocol.ClientFrame) (string, *protocol.Error) {
	s := c.s
	to := strings.ToLower(f.To)
	if !protocol.ValidUsername(to) || to == c.user {
		return "", &protocol.Error{Code: protocol.CodeUnknownChannel, Message: fmt.Sprintf("cannot message %q", protocol.Truncate(f.To, 40)), ClientID: f.ClientID}
	}
	channel := protocol.DMChannel(c.user, to)
	if s.hub.follows(c, channel) {
		// The socket is in the DM: it exists, and so do both of its people
		// (a DM is made only between accounts). Most DM sends are these.
		return channel, nil
	}
	exists, err := s.b.UserExists(ctx, to)
	if err != nil {
		s.backendError("user_exists", err)
		return "", unavailable(f.ClientID)
	}
	if !exists {
		return "", &protocol.Error{Code: protocol.CodeUnknownChannel, Message: fmt.Sprintf("no user %q", to), ClientID: f.ClientID}
	}
	created, err := s.b.AddDM(ctx, channel)
	if err != nil {
		s.backendError("add_dm", err)
		return "", unavailable(f.ClientID)
	}
	if created {
		// Join locally at once (our own socket must see the message),
		// and tell the other servers so the recipient's sockets join too.
		s.handleEvent(Event{Kind: EventDM, Channel: channel})
		s.publish(ctx, Event{Kind: EventDM, Channel: channel})
	}
	return channel, nil
}

// allowSend spends a token of the socket's send rate limit: MessageBurst
// sends at once, refilled at MessagesPerSecond.
func (c *conn) allowSend() bool {
	return c.in.sends.take(c.s.wire.pace.now(), c.s.opts.MessagesPerSecond, float64(c.s.opts.MessageBurst))
}

// dedupKey turns (user, clientId) into a storage-safe key: the clientId is
// client-chosen, so it is hashed rather than embedded.
func dedupKey(user, clientID string) string {
	sum := sha256.Sum256([]byte(clientID))
	return user + ":" + hex.EncodeToString(sum[:16])
}

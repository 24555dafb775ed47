package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// handleResume replays, per channel, what the client missed after the last
// id it saw, ahead of the live messages that arrive meanwhile, then says
// which channels it now holds whole (resumed).
func (c *conn) handleResume(ctx context.Context, f protocol.ClientFrame) {
	s := c.s
	var unknown []string
	recovered := map[string]bool{}
	for channel, since := range f.Since {
		err := c.may(channel)
		if err == nil && !s.hub.public[channel] && !s.hub.follows(c, channel) {
			// The socket follows every DM of its person: those that existed
			// when it connected and those created since (EventDM). A DM it
			// does not follow does not exist; following it would cost a
			// subscription and stream reads per made-up name.
			err = ErrUnknownChannel
		}
		if errors.Is(err, ErrUnknownChannel) {
			unknown = append(unknown, channel)
			continue
		}
		if err != nil {
			c.sendError(accessError(err, channel, ""))
			continue
		}
		sinceID, err := protocol.ParseID(since) // Decode checked its form
		c.out.mu.Lock()
		ahead, isAhead := c.ord.beginReplay(channel, sinceID, since != "" && err == nil)
		c.out.mu.Unlock()
		var queuedUpTo *protocol.ID
		if isAhead {
			queuedUpTo = &ahead
		}
		complete, err := c.replay(ctx, channel, since, queuedUpTo)
		c.out.mu.Lock()
		queued := c.ord.endReplay(&c.out, channel)
		c.out.mu.Unlock()
		s.objs.message.Add(float64(queued))
		if err != nil {
			// The live messages held behind the replay went out (endReplay)
			// and moved the socket past the gap: resuming again could not
			// fill it. Not recovered: the client reloads the channel.
			s.backendError("resume", err)
			c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: fmt.Sprintf("could not replay %q: storage unavailable; reload its history", channel)})
			recovered[channel] = false
			continue
		}
		recovered[channel] = complete
	}
	// After the replays (queued above, in order): the client learns which
	// channels it now holds whole, and reloads the others' history.
	c.enqueue(protocol.TypeResumed, protocol.Encode(protocol.Resumed{Type: protocol.TypeResumed, Recovered: recovered}))
	if len(unknown) > 0 {
		// One error for them all: a made-up list must not buy a flood back.
		slices.Sort(unknown)
		c.sendError(&protocol.Error{Code: protocol.CodeUnknownChannel,
			Message: fmt.Sprintf("no such channel, or not one of yours: %s", strings.Join(unknown[:min(len(unknown), 3)], ", ")) + more(len(unknown)-3)})
	}
}

// more says how many more there were, if any.
func more(n int) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(" and %d more", n)
}

// replay queues channel's messages after since, in pages, while its live
// messages wait (order.beginReplay). It reports whether the client now has
// everything after since: not when the channel no longer keeps since (what
// followed it may have been trimmed too), nor when the replay stopped at
// its cap, nor when the socket had already queued the channel up to
// queuedUpTo (non-nil) and something between since and that comes back:
// the client may lack it, and it cannot go out in order any more. The first page starts at since itself, which says whether it is
// still kept: one storage read where asking for the oldest message took
// another (a reconnect storm is mostly resumes).
func (c *conn) replay(ctx context.Context, channel, since string, queuedUpTo *protocol.ID) (complete bool, err error) {
	complete = true
	after, checkFirst := since, false
	if id, err := protocol.ParseID(since); err == nil && id != (protocol.ID{}) {
		after, checkFirst = justBefore(id).String(), true
	}
	for total := 0; ; {
		if total >= maxResumeTotal {
			return false, nil // more may follow than one resume replays
		}
		page := after
		msgs, err := c.s.replays.after(ctx, func(ctx context.Context) ([]outMsg, error) {
			msgs, err := c.s.b.After(ctx, channel, page, maxResumeBatch)
			if err != nil {
				return nil, err
			}
			out := make([]outMsg, len(msgs))
			for i, m := range msgs {
				out[i] = newOutMsg(m)
			}
			return out, nil
		}, replayKey{channel, page}, c.in.reg, c.s.hub.regs.Load)
		if err != nil {
			return false, err
		}
		full := len(msgs) == maxResumeBatch
		if checkFirst {
			checkFirst = false
			switch {
			case len(msgs) == 0:
				// Nothing kept from since on: nothing to miss that the
				// stream could still say.
			case msgs[0].m.ID == since:
				msgs = msgs[1:]
			default:
				// since is gone: trimmed (the client may have missed
				// messages trimmed with it), or deleted (a message, or
				// the edit of one, since deleted), which left the rest
				// in place: the stream still holds an older entry.
				older, err := c.s.b.Before(ctx, channel, since, 1)
				if err != nil {
					return false, err
				}
				complete = len(older) > 0
			}
		}
		if queuedUpTo != nil && len(msgs) > 0 && msgs[0].id.Compare(*queuedUpTo) <= 0 {
			complete = false
		}
		if len(msgs) > 0 {
			c.out.mu.Lock()
			queued := c.ord.queue(&c.out, channel, msgs)
			c.out.mu.Unlock()
			c.s.objs.message.Add(float64(queued))
			total += len(msgs)
			after = msgs[len(msgs)-1].m.ID
		}
		if !full {
			return complete, nil
		}
	}
}

// justBefore is the id right before id (which is not 0-0): reading after
// it reads from id on.
func justBefore(id protocol.ID) protocol.ID {
	if id.Seq > 0 {
		return protocol.ID{Ms: id.Ms, Seq: id.Seq - 1}
	}
	return protocol.ID{Ms: id.Ms - 1, Seq: ^uint64(0)}
}

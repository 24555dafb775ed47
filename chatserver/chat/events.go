package chat

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// feedHandler adapts Service to the Feed's Handler without exporting its
// methods.
type feedHandler struct{ s *Service }

func (h feedHandler) Messages(channel string, msgs []protocol.Message) { h.s.deliver(channel, msgs) }
func (h feedHandler) Event(e Event)                                    { h.s.handleEvent(e) }
func (h feedHandler) EventsMissed()                                    { h.s.eventsMissed() }

// eventsMissed: the feed lost events that would have told this server of a
// removal, a revoked session, someone going offline or a new DM. Every
// socket checks its session and channels within MissedEventsCheck, not at
// its next check up to SessionCheck away; the statuses of the people
// watched here are read again; and the DMs of the people connected here.
// No loop is blocked: a request already pending covers this one.
func (s *Service) eventsMissed() {
	for _, c := range []chan struct{}{s.recheck, s.presenceLost, s.dmsLost} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// dmsLoop reads, each time the feed missed events, the DMs of everyone
// connected here and joins their sockets to those they are not in: a DM
// made on another server reaches its recipient's sockets here by an event
// (send.go), and without it they would hear nothing of the DM until they
// connect again. A loss while it reads makes one more read.
func (s *Service) dmsLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dmsLost:
			s.rejoinDMs(ctx)
		}
	}
}

func (s *Service) rejoinDMs(ctx context.Context) {
	for _, u := range s.hub.localUsers() {
		cctx, cancel := context.WithTimeout(ctx, storageTimeout)
		dms, err := s.b.DMs(cctx, u, maxDMs)
		cancel()
		if err != nil {
			s.backendError("dm_rejoin", err)
			return
		}
		for _, ch := range dms {
			if a, b, ok := protocol.SplitDM(ch); ok {
				s.hub.joinDM(ch, a, b)
			}
		}
	}
}

// deliver fans committed messages out to the channel's local sockets, then
// notifications to the people they name. Each message is encoded once per
// server, not once per socket.
func (s *Service) deliver(channel string, msgs []protocol.Message) {
	now := time.Now().UnixMilli()
	out := make([]outMsg, len(msgs))
	for i, m := range msgs {
		out[i] = newOutMsg(m)
		s.m.DeliveryLatency.Observe(float64(max(0, now-m.TS)) / 1000)
	}
	queued := 0
	s.hub.fanout(inChannel(channel), func(c *conn) { queued += c.deliver(channel, out) })
	s.objs.message.Add(float64(queued))
	s.wire.pace.queued.Add(int64(queued))
	s.notify(channel, out)
}

// notify sends DM and @mention notifications to the local sockets of the
// people they are for.
func (s *Service) notify(channel string, msgs []outMsg) {
	a, b, isDM := protocol.SplitDM(channel)
	// In a created channel only its members are told: the sockets in it.
	// (A default channel is everyone's; a DM's other member is in it.)
	members := !isDM && !s.hub.public[channel]
	for _, om := range msgs {
		m := om.m
		if m.IsChange() {
			continue // an edit that adds a mention does not notify again
		}
		var targets []string
		kind := "mention"
		if isDM {
			kind = "dm"
			targets = []string{a}
			if m.From == a {
				targets = []string{b}
			}
		} else {
			targets = mentions(m.Text)
		}
		for _, u := range targets {
			if u == m.From {
				continue
			}
			var frame []byte // encoded only if u has a socket here
			s.hub.fanout(ofUser(u), func(c *conn) {
				if members {
					if _, in := c.joined[channel]; !in {
						return
					}
				}
				if frame == nil {
					frame = protocol.Encode(protocol.Notification{
						Type: protocol.TypeNotification, Kind: kind, Channel: channel, From: m.From, ID: m.ID, Text: m.Text,
					})
				}
				c.enqueue(protocol.TypeNotification, frame)
			})
		}
	}
}

// notifyThread tells the people who posted in a thread of a new reply, on
// their sockets here that are in the channel.
func (s *Service) notifyThread(e Event) {
	members := !s.hub.public[e.Channel]
	var frame []byte
	for _, u := range e.Users {
		if u == e.User {
			continue
		}
		s.hub.fanout(ofUser(u), func(c *conn) {
			if members {
				if _, in := c.joined[e.Channel]; !in {
					return
				}
			}
			if frame == nil {
				frame = protocol.Encode(protocol.Notification{Type: protocol.TypeNotification, Kind: "thread",
					Channel: e.Channel, From: e.User, ID: e.ID, Text: e.Text, Thread: e.Thread})
			}
			c.enqueue(protocol.TypeNotification, frame)
		})
	}
}

// handleEvent acts on a room event from any server, this one included.
func (s *Service) handleEvent(e Event) {
	switch e.Kind {
	case EventPresence:
		s.pres.note(e.User, e.Status)
	case EventTyping:
		frame := protocol.Encode(protocol.Typing{Type: protocol.TypeTyping, Channel: e.Channel, User: e.User})
		s.hub.fanout(inChannel(e.Channel), func(c *conn) {
			if c.user != e.User {
				c.enqueue(protocol.TypeTyping, frame)
			}
		})
	case EventRead:
		frame := protocol.Encode(protocol.Read{Type: protocol.TypeRead, Channel: e.Channel, ID: e.ID})
		s.hub.fanout(ofUser(e.User), func(c *conn) { c.enqueue(protocol.TypeRead, frame) })
	case EventRevoke:
		s.hub.fanout(ofUser(e.User), func(c *conn) {
			if len(e.Sessions) == 0 || slices.Contains(e.Sessions, c.session) {
				c.out.close(protocol.CloseUnauthorized, "session revoked")
			}
		})
	case EventDM:
		if a, b, ok := protocol.SplitDM(e.Channel); ok {
			s.hub.joinDM(e.Channel, a, b)
		}
	case EventThread:
		s.notifyThread(e)
	case EventMember:
		// This server applied its own change when it made it: applying
		// it again as it comes back could undo a later one.
		if e.Origin != s.opts.Pod || e.Origin == "" {
			s.memberEvent(e)
		}
	}
}

// mentions returns the distinct @usernames in text.
func mentions(text string) []string {
	var out []string
	for i := 0; i < len(text); i++ {
		if text[i] != '@' || (i > 0 && isNameByte(lower(text[i-1]))) {
			continue
		}
		j := i + 1
		for j < len(text) && isNameByte(lower(text[j])) {
			j++
		}
		name := strings.ToLower(strings.TrimRight(text[i+1:j], "."))
		if protocol.ValidUsername(name) && !slices.Contains(out, name) {
			out = append(out, name)
		}
		i = j - 1
	}
	return out
}

// lower folds an ASCII letter to lower case. (c|0x20 would too, but it
// also turns '_' into DEL: @under_score was never mentioned.)
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

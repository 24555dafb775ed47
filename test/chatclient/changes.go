package chatclient

import (
	"slices"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// ChangeOf is what a change (Client.Change) does to message Target.
type ChangeOf struct {
	Kind   string // protocol.KindEdit, KindDelete or KindReact
	Target string
	Emoji  string
	On     bool
}

func (ch *ChangeOf) frame(s *Send) map[string]any {
	f := map[string]any{"type": ch.Kind, "channel": s.Channel, "id": ch.Target, "clientId": s.ClientID}
	switch ch.Kind {
	case protocol.KindEdit:
		f["text"] = s.Text
	case protocol.KindReact:
		f["emoji"], f["on"] = ch.Emoji, ch.On
	}
	return f
}

// Change sends an edit (text), a delete or a reaction of message target in
// channel, and returns its clientId. Like a send, it is retried until
// acknowledged, unless refused for good (Send.Refused).
func (c *Client) Change(channel string, change ChangeOf, text string) string {
	return c.send(&Send{Channel: channel, Text: text, Change: &change})
}

// State is a message as a client holds it after the changes it received.
type State struct {
	Text      string
	EditedAt  int64
	Deleted   bool
	Reactions []protocol.Reaction
}

func (c *Client) stateLocked(ch, id string) *State {
	if c.states[ch] == nil {
		c.states[ch] = map[string]*State{}
	}
	st := c.states[ch][id]
	if st == nil {
		st = &State{}
		c.states[ch][id] = st
	}
	return st
}

// applyLocked applies an edited, deleted or reaction object, once. A change
// of a message the client never got is kept too: a delete is how a message
// deleted while the client was away reaches it (the stream no longer
// holds the message).
func (c *Client) applyLocked(o Object) {
	if !c.takeLocked(o.Channel, o.Entry) {
		return
	}
	st := c.stateLocked(o.Channel, o.ID)
	switch o.Type {
	case "edited":
		st.Text, st.EditedAt = o.Text, o.EditedAt
	case "deleted":
		*st = State{Deleted: true}
	case "reaction":
		st.Reactions = protocol.React(st.Reactions, o.Emoji, o.User, o.On)
	}
}

// States returns every message of channel the client knows, as it is
// now: by id.
func (c *Client) States(channel string) map[string]State {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]State, len(c.states[channel]))
	for id, st := range c.states[channel] {
		cp := *st
		cp.Reactions = nil
		for _, r := range st.Reactions {
			cp.Reactions = append(cp.Reactions, protocol.Reaction{Emoji: r.Emoji, Users: slices.Clone(r.Users)})
		}
		out[id] = cp
	}
	return out
}

// Known returns the ids of channel's messages the client got, in the order
// it got them, then those it only learnt were deleted (in id order).
func (c *Client) Known(channel string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.states[channel]))
	got := make(map[string]bool, len(c.msgs[channel]))
	for _, m := range c.msgs[channel] {
		out = append(out, m.ID)
		got[m.ID] = true
	}
	var deleted []string
	for id := range c.states[channel] {
		if !got[id] {
			deleted = append(deleted, id)
		}
	}
	slices.SortFunc(deleted, protocol.CompareIDs)
	return append(out, deleted...)
}

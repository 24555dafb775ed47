package protocol

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Message is a committed chat message.
type Message struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	From    string `json:"from"`
	Text    string `json:"text"`
	TS      int64  `json:"ts"` // Unix milliseconds, set when committed
	// Thread is the id of the thread's first message (its root) when this
	// message is a reply in a thread.
	Thread string `json:"thread,omitempty"`

	// Kind marks an entry of the channel's stream that changes its earlier
	// message Target ("" = a message): an edit (Text is the new text), a
	// delete, or a reaction (Emoji, On). Changes share the stream with
	// messages, so a resume replays them in order.
	Kind   string `json:"kind,omitempty"`
	Target string `json:"target,omitempty"`
	Emoji  string `json:"emoji,omitempty"`
	On     bool   `json:"on,omitempty"`

	// A message as it is now (history): when its text was last edited,
	// whether it was deleted (its text is then gone), and its reactions.
	EditedAt  int64      `json:"editedAt,omitempty"`
	Deleted   bool       `json:"deleted,omitempty"`
	Reactions []Reaction `json:"reactions,omitempty"`
	// Replies counts the replies in the thread a message is the root of.
	Replies int `json:"replies,omitempty"`
	// Repliers is, on a thread's root, who posted in the thread: its
	// author, then each person who replied, once, in order. Kept by the
	// store, never sent: Append returns the list as it was before the
	// reply it committed, who to notify of it.
	Repliers []string `json:"repliers,omitempty"`
}

// Kinds of change entries (Message.Kind).
const (
	KindEdit   = "edit"
	KindDelete = "delete"
	KindReact  = "react"
)

// IsChange reports whether m changes an earlier message rather than being one.
func (m Message) IsChange() bool { return m.Kind != "" }

// Reaction is one emoji on a message and who reacted with it, in the order
// they did.
type Reaction struct {
	Emoji string   `json:"emoji"`
	Users []string `json:"users"`
}

// React applies a reaction by user to reactions (emoji in the order they
// were first used) and returns the result; an emoji nobody holds any more
// is dropped.
func React(reactions []Reaction, emoji, user string, on bool) []Reaction {
	i := slices.IndexFunc(reactions, func(r Reaction) bool { return r.Emoji == emoji })
	if i < 0 {
		if !on {
			return reactions
		}
		return append(reactions, Reaction{Emoji: emoji, Users: []string{user}})
	}
	r := &reactions[i]
	j := slices.Index(r.Users, user)
	switch {
	case on && j < 0:
		r.Users = append(r.Users, user)
	case !on && j >= 0:
		r.Users = slices.Delete(r.Users, j, j+1)
		if len(r.Users) == 0 {
			return slices.Delete(reactions, i, i+1)
		}
	}
	return reactions
}

// ChannelInfo describes one channel in hello and GET /api/v1/channels.
type ChannelInfo struct {
	Name   string `json:"name"`
	LastID string `json:"lastId"`
	Unread int    `json:"unread"`
	// Default marks the room's default channels (everyone is in them);
	// Private and Admin describe a channel people created.
	Default bool `json:"default,omitempty"`
	Private bool `json:"private,omitempty"`
	Admin   bool `json:"admin,omitempty"`
}

// Hello is the first object on every connection.
type Hello struct {
	Type string `json:"type"`
	User string `json:"user"`
	// Admin marks a room admin (--admins), so a client can offer what the
	// server lets them do: delete anyone's message, run any created channel.
	Admin    bool          `json:"admin,omitempty"`
	Channels []ChannelInfo `json:"channels"`
	Limits   Limits        `json:"limits"`
}

// Limits tell a client what the server refuses, so it can say so first
// (a length counter, a send queue paced to the rate).
type Limits struct {
	MaxMessageBytes   int     `json:"maxMessageBytes"`
	MessagesPerSecond float64 `json:"messagesPerSecond"`
	MessageBurst      int     `json:"messageBurst"`
	MaxWatch          int     `json:"maxWatch"`
}

// ChannelAdded tells a person they joined or were added to a channel.
type ChannelAdded struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Private bool   `json:"private"`
}

// Removed tells a person they left or were removed from a channel: nothing
// more of it follows.
type Removed struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
}

// Ack tells the sender its message is committed, and under which id.
type Ack struct {
	Type     string `json:"type"`
	ClientID string `json:"clientId"`
	ID       string `json:"id"`
}

// Presence says a user came online or went offline.
type Presence struct {
	Type   string `json:"type"`
	User   string `json:"user"`
	Status string `json:"status"`
}

// Typing says a user is typing in a channel.
type Typing struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	User    string `json:"user"`
}

// Read tells a user's other devices how far they have read.
type Read struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	ID      string `json:"id"`
}

// Edited says a message's text changed. Entry is the change's own id in
// the channel's stream: a client resumes from the newest id it has seen,
// message or change.
type Edited struct {
	Type     string `json:"type"`
	Channel  string `json:"channel"`
	ID       string `json:"id"`
	Text     string `json:"text"`
	EditedAt int64  `json:"editedAt"`
	Entry    string `json:"entry"`
}

// Deleted says a message was deleted.
type Deleted struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	ID      string `json:"id"`
	Entry   string `json:"entry"`
}

// ReactionFrame says user put an emoji on a message (On) or took it off.
type ReactionFrame struct {
	Type    string `json:"type"`
	Channel string `json:"channel"`
	ID      string `json:"id"`
	Emoji   string `json:"emoji"`
	User    string `json:"user"`
	On      bool   `json:"on"`
	Entry   string `json:"entry"`
}

// EncodeEntry encodes a stream entry as the object a client gets: a
// message, or the edited, deleted or reaction object of a change.
func EncodeEntry(m Message) []byte {
	switch m.Kind {
	case KindEdit:
		return Encode(Edited{Type: TypeEdited, Channel: m.Channel, ID: m.Target, Text: m.Text, EditedAt: m.TS, Entry: m.ID})
	case KindDelete:
		return Encode(Deleted{Type: TypeDeleted, Channel: m.Channel, ID: m.Target, Entry: m.ID})
	case KindReact:
		return Encode(ReactionFrame{Type: TypeReaction, Channel: m.Channel, ID: m.Target, Emoji: m.Emoji, User: m.From, On: m.On, Entry: m.ID})
	}
	return EncodeMessage(nil, m)
}

// HistoryEntry is m as history shows it: a deleted message only as
// {id, deleted}.
func HistoryEntry(m Message) any {
	if m.Deleted {
		return struct {
			ID      string `json:"id"`
			Deleted bool   `json:"deleted"`
			Thread  string `json:"thread,omitempty"`
		}{m.ID, true, m.Thread}
	}
	m.Repliers = nil
	return m
}

// Notification points a user at a DM or a mention of them.
type Notification struct {
	Type    string `json:"type"`
	Kind    string `json:"kind"` // "dm", "mention" or "thread"
	Channel string `json:"channel"`
	From    string `json:"from"`
	ID      string `json:"id"`
	Text    string `json:"text"`
	// Thread is the root of the thread a "thread" notification's reply is in.
	Thread string `json:"thread,omitempty"`
}

// ErrorFrame carries an Error to the client.
type ErrorFrame struct {
	Type string `json:"type"`
	Error
}

// Reconnect asks the client to come back (to any server) and resume.
type Reconnect struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Resumed follows a resume's replay: per channel, whether everything after
// the id the client gave was still kept (false: some was trimmed, or the
// replay hit its cap; the client reloads that channel's history).
type Resumed struct {
	Type      string          `json:"type"`
	Recovered map[string]bool `json:"recovered"`
}

// Encode marshals a server object. The server's own types cannot fail to
// marshal, so a failure is a programming error and panics.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encoding server object: " + err.Error())
	}
	return b
}

// EncodeMessage appends the "message" object for m to dst. It is the hot
// path of fan-out (once per message per server), so it avoids reflection.
func EncodeMessage(dst []byte, m Message) []byte {
	dst = append(dst, `{"type":"message","id":`...)
	dst = appendString(dst, m.ID)
	dst = append(dst, `,"channel":`...)
	dst = appendString(dst, m.Channel)
	dst = append(dst, `,"from":`...)
	dst = appendString(dst, m.From)
	dst = append(dst, `,"text":`...)
	dst = appendString(dst, m.Text)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	if m.Thread != "" {
		dst = append(dst, `,"thread":`...)
		dst = appendString(dst, m.Thread)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping like encoding/json
// (including <, >, & and U+2028/9, so output is safe to embed anywhere).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

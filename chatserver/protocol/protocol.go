// Package protocol is the WebSocket wire format: the frames a client sends,
// the objects the server sends back, and message ids.
//
// Decode is the one entry point for untrusted client bytes; it is fuzzed.
package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Client frame types.
const (
	TypeSend   = "send"
	TypeResume = "resume"
	TypeTyping = "typing"
	TypeRead   = "read"
	TypeWatch  = "watch"
	TypeEdit   = "edit"
	TypeDelete = "delete"
	TypeReact  = "react"
)

// Server object types.
const (
	TypeHello        = "hello"
	TypeAck          = "ack"
	TypeMessage      = "message"
	TypePresence     = "presence"
	TypeNotification = "notification"
	TypeError        = "error"
	TypeReconnect    = "reconnect"
	TypeResumed      = "resumed"
	TypeChannel      = "channel"
	TypeRemoved      = "removed"
	TypeEdited       = "edited"
	TypeDeleted      = "deleted"
	TypeReaction     = "reaction"
)

// ServerTypes is every object type the server sends.
var ServerTypes = []string{TypeHello, TypeAck, TypeMessage, TypePresence, TypeTyping, TypeRead,
	TypeNotification, TypeError, TypeReconnect, TypeResumed, TypeChannel, TypeRemoved,
	TypeEdited, TypeDeleted, TypeReaction}

// StatsPath is the room's presence summary, GET {"onlineUsers": N}, which
// needs no login: the operator reads it from a chat pod for the room's
// status.onlineUsers, holding no Redis password.
const StatsPath = "/api/v1/stats"

// Stats is the answer at StatsPath.
type Stats struct {
	OnlineUsers int `json:"onlineUsers"`
	// Redis is the room's Redis replication as the chat pod sees it;
	// absent on the memory backend, or when it could not be read.
	Redis *RedisStats `json:"redis,omitempty"`
}

// RedisStats describes the room's Redis primary and its replicas.
type RedisStats struct {
	// Primary is the primary's address ("host:port"); through Sentinel,
	// the one Sentinel announces. Empty on a Redis Cluster.
	Primary string `json:"primary,omitempty"`
	// Replicas is how many replicas are connected to the primary.
	Replicas int `json:"replicas"`
	// ReplicasInSync is how many are online and acknowledged the
	// replication stream within the last 10 s.
	ReplicasInSync int `json:"replicasInSync"`
}

// MaxClientIDLen bounds a clientId (a UUID is 36 bytes).
const MaxClientIDLen = 64

// MaxResumeChannels bounds how many channels one resume frame may name.
const MaxResumeChannels = 1000

// MaxWatch bounds the people one socket watches the presence of: about
// what a client shows at once (its DMs and a page of people). Presence is
// scoped so that a person connecting costs the sockets that show them, not
// every socket in the room.
const MaxWatch = 100

// MaxEmojiBytes bounds a reaction's emoji: a few code points (a flag, a
// skin tone, a joined family), not text.
const MaxEmojiBytes = 32

// ClientFrame is a decoded client frame. Which fields are set depends on Type.
type ClientFrame struct {
	Type     string            `json:"type"`
	Channel  string            `json:"channel,omitempty"`
	To       string            `json:"to,omitempty"`
	Text     string            `json:"text,omitempty"`
	ClientID string            `json:"clientId,omitempty"`
	ID       string            `json:"id,omitempty"`
	Since    map[string]string `json:"since,omitempty"`
	Users    []string          `json:"users,omitempty"`
	Emoji    string            `json:"emoji,omitempty"`
	On       *bool             `json:"on,omitempty"`
	Thread   string            `json:"thread,omitempty"`
}

// Error is a client-visible protocol error.
type Error struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	ClientID string `json:"clientId,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, clientID, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...), ClientID: clientID}
}

// Decode parses and validates one client frame. maxText bounds a send's text
// in bytes. Channel names are checked for shape only; whether a channel
// exists, or a user may use it, is the caller's business.
func Decode(data []byte, maxText int) (ClientFrame, *Error) {
	var f ClientFrame
	if !utf8.Valid(data) {
		return f, errorf(CodeBadRequest, "", "frame is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return ClientFrame{}, errorf(CodeBadRequest, "", "malformed frame: %s", jsonProblem(err))
	}
	if dec.More() {
		return ClientFrame{}, errorf(CodeBadRequest, "", "one JSON object per frame")
	}
	if len(f.ClientID) > MaxClientIDLen {
		return ClientFrame{}, errorf(CodeBadRequest, "", "clientId longer than %d bytes", MaxClientIDLen)
	}
	switch f.Type {
	case TypeSend:
		if f.ClientID == "" {
			return f, errorf(CodeBadRequest, "", "send needs a clientId")
		}
		if (f.Channel == "") == (f.To == "") {
			return f, errorf(CodeBadRequest, f.ClientID, "send needs exactly one of channel or to")
		}
		if strings.TrimSpace(f.Text) == "" {
			return f, errorf(CodeBadRequest, f.ClientID, "text is empty")
		}
		if len(f.Text) > maxText {
			return f, errorf(CodeTooLarge, f.ClientID, "text is %d bytes, the limit is %d", len(f.Text), maxText)
		}
		if f.Channel != "" && !ValidChannel(f.Channel) {
			return f, errorf(CodeUnknownChannel, f.ClientID, "no channel %q", f.Channel)
		}
		if f.Thread != "" {
			if _, err := ParseID(f.Thread); err != nil {
				return f, errorf(CodeBadRequest, f.ClientID, "thread: %v", err)
			}
		}
	case TypeEdit, TypeDelete, TypeReact:
		if perr := decodeChange(&f, maxText); perr != nil {
			return f, perr
		}
	case TypeResume:
		if len(f.Since) > MaxResumeChannels {
			return f, errorf(CodeBadRequest, "", "resume names more than %d channels", MaxResumeChannels)
		}
		for ch, id := range f.Since {
			if !ValidChannel(ch) {
				return f, errorf(CodeUnknownChannel, "", "no channel %q", ch)
			}
			if id != "" {
				if _, err := ParseID(id); err != nil {
					return f, errorf(CodeBadRequest, "", "since[%q]: %v", ch, err)
				}
			}
		}
	case TypeTyping:
		if !ValidChannel(f.Channel) {
			return f, errorf(CodeUnknownChannel, "", "no channel %q", f.Channel)
		}
	case TypeRead:
		if !ValidChannel(f.Channel) {
			return f, errorf(CodeUnknownChannel, "", "no channel %q", f.Channel)
		}
		if _, err := ParseID(f.ID); err != nil {
			return f, errorf(CodeBadRequest, "", "id: %v", err)
		}
	case TypeWatch:
		if len(f.Users) > MaxWatch {
			return f, errorf(CodeBadRequest, "", "watch names more than %d people", MaxWatch)
		}
		for i, u := range f.Users {
			f.Users[i] = strings.ToLower(u)
			if !ValidUsername(f.Users[i]) {
				return f, errorf(CodeBadRequest, "", "users[%d]: %q is not a username", i, Truncate(u, 40))
			}
		}
		slices.Sort(f.Users)
		f.Users = slices.Compact(f.Users)
	case "":
		return f, errorf(CodeBadRequest, f.ClientID, "frame has no type")
	default:
		return f, errorf(CodeBadRequest, f.ClientID, "unknown frame type %q", Truncate(f.Type, 32))
	}
	return f, nil
}

// decodeChange checks an edit, delete or react frame: each names a message
// of a channel and carries a clientId, to be acked like a send.
func decodeChange(f *ClientFrame, maxText int) *Error {
	if f.ClientID == "" {
		return errorf(CodeBadRequest, "", "%s needs a clientId", f.Type)
	}
	if !ValidChannel(f.Channel) {
		return errorf(CodeUnknownChannel, f.ClientID, "no channel %q", Truncate(f.Channel, 80))
	}
	if _, err := ParseID(f.ID); err != nil {
		return errorf(CodeBadRequest, f.ClientID, "id: %v", err)
	}
	switch f.Type {
	case TypeEdit:
		if strings.TrimSpace(f.Text) == "" {
			return errorf(CodeBadRequest, f.ClientID, "text is empty (delete the message instead)")
		}
		if len(f.Text) > maxText {
			return errorf(CodeTooLarge, f.ClientID, "text is %d bytes, the limit is %d", len(f.Text), maxText)
		}
	case TypeReact:
		if f.On == nil {
			return errorf(CodeBadRequest, f.ClientID, "react needs on (true or false)")
		}
		if len(f.Emoji) > MaxEmojiBytes {
			return errorf(CodeTooLarge, f.ClientID, "emoji is %d bytes, the limit is %d", len(f.Emoji), MaxEmojiBytes)
		}
		if !validEmoji(f.Emoji) {
			return errorf(CodeBadRequest, f.ClientID, "emoji %q is empty or holds spaces or control characters", Truncate(f.Emoji, 40))
		}
	}
	return nil
}

// validEmoji reports whether e is something to show as a reaction: not
// empty, and no spaces or control characters.
func validEmoji(e string) bool {
	if e == "" {
		return false
	}
	for _, r := range e {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func jsonProblem(err error) string {
	// encoding/json errors can quote the offending input; keep them short.
	return Truncate(err.Error(), 120)
}

// Truncate shortens s to at most n bytes (on a rune boundary), marking a cut
// with an ellipsis: for echoing client input in error messages.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// ValidChannel reports whether name has the shape of a public channel
// ("general") or a DM channel ("dm:alice:bob" with alice < bob).
func ValidChannel(name string) bool {
	if a, b, ok := SplitDM(name); ok {
		return ValidUsername(a) && ValidUsername(b)
	}
	return validPublicChannel(name)
}

func validPublicChannel(name string) bool {
	if len(name) == 0 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidUsername reports whether name is 3–32 of [a-z0-9_.-] (already case-folded).
func ValidUsername(name string) bool {
	if len(name) < 3 || len(name) > 32 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// DMChannel names the direct-message channel of two users.
func DMChannel(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return "dm:" + a + ":" + b
}

// SplitDM returns the two members of a DM channel name; ok is false for
// anything that is not a well-formed DM name (members ordered, distinct).
func SplitDM(name string) (a, b string, ok bool) {
	rest, found := strings.CutPrefix(name, "dm:")
	if !found {
		return "", "", false
	}
	a, b, found = strings.Cut(rest, ":")
	if !found || a >= b {
		return "", "", false
	}
	return a, b, true
}

// ID is a message id: a Redis stream id "<ms>-<seq>". Ids compare by (Ms, Seq).
type ID struct{ Ms, Seq uint64 }

// ParseID parses "<ms>-<seq>".
func ParseID(s string) (ID, error) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return ID{}, fmt.Errorf("%q is not a message id", Truncate(s, 40))
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return ID{}, fmt.Errorf("%q is not a message id", Truncate(s, 40))
	}
	return ID{a, b}, nil
}

func (id ID) String() string {
	return strconv.FormatUint(id.Ms, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// Compare returns -1, 0 or +1.
func (id ID) Compare(o ID) int {
	switch {
	case id.Ms < o.Ms:
		return -1
	case id.Ms > o.Ms:
		return 1
	case id.Seq < o.Seq:
		return -1
	case id.Seq > o.Seq:
		return 1
	}
	return 0
}

// CompareIDs compares two id strings; an empty or malformed id sorts first.
func CompareIDs(a, b string) int {
	return IDOrZero(a).Compare(IDOrZero(b))
}

// IDOrZero parses s, or is the zero id when s is empty or malformed. ""
// (no read marker yet, an empty channel, from the start) is common, and
// skips ParseID's error: a person in 1,000 channels connected with 1,000
// error messages built and thrown away.
func IDOrZero(s string) ID {
	if s == "" {
		return ID{}
	}
	id, _ := ParseID(s)
	return id
}

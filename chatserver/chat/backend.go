package chat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// ErrUnavailable wraps every backend failure that means "could not reach
// storage" (Redis down, timeout). A send that fails with it gets an
// "unavailable" error frame; the client retries with the same clientId.
var ErrUnavailable = errors.New("storage unavailable")

// Log is the durable per-channel message history (a Redis stream per channel).
//
// Contract, checked by chatserver/backend/backendtest on every implementation:
//   - Append commits m (From, Channel, Text set by the caller) and returns it with
//     ID and TS assigned. IDs are "<ms>-<seq>" and strictly increase per channel.
//     The channel keeps at least maxLen of its newest messages (older ones may be trimmed).
//   - m.Thread, when set, makes m a reply in the thread of that message (its
//     root), checked atomically with the append: the root must be a kept
//     message of m.Channel, not deleted and not itself a reply
//     (ErrUnknownMessage, ErrNotThreadRoot). The root's Replies then counts
//     it, and its Repliers (author first, then each replier once) include
//     m.From; the Message returned carries Repliers as they were before m
//     (who is told of the reply).
//   - dedupKey ("" = none) makes Append idempotent: a second Append with the same
//     key returns the first call's message (same ID) and commits nothing. Keys are
//     remembered for at least 24 hours.
//   - After returns up to limit messages with ID > after (after "" = from the start),
//     oldest first. Before returns up to limit messages with ID < before (before "" =
//     the newest), oldest first (newest last).
//   - After and Before return the stream's entries: messages and changes
//     (Message.Kind), without deleted messages. History returns messages
//     only, like Before, each as it is now (edited text and EditedAt,
//     Reactions), a deleted one as {ID, Channel, Deleted}.
//   - LastID is the newest ID of the channel (a message or a change), ""
//     when it is empty.
//   - CountAfter counts messages (not changes, nor deleted ones) with ID >
//     after, stopping at max.
//   - Errors reaching storage wrap ErrUnavailable.
type Log interface {
	Append(ctx context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error)
	After(ctx context.Context, channel, after string, limit int) ([]protocol.Message, error)
	Before(ctx context.Context, channel, before string, limit int) ([]protocol.Message, error)
	LastID(ctx context.Context, channel string) (string, error)
	CountAfter(ctx context.Context, channel, after string, max int) (int, error)
	// LastIDs is LastID of many channels in one round trip: a person in
	// 1,000 channels connects with one read, not 1,000. The map has every
	// channel asked for ("" for an empty one).
	LastIDs(ctx context.Context, channels []string) (map[string]string, error)
	// CountsAfter is CountAfter of many channels in one round trip:
	// after maps channel -> read marker; the result has every channel asked for.
	CountsAfter(ctx context.Context, after map[string]string, max int) (map[string]int, error)

	History(ctx context.Context, channel, before string, limit int) ([]protocol.Message, error)
	// Thread returns the root message of a thread as it is now (with
	// Replies; ErrUnknownMessage when it is not a kept, undeleted message
	// of channel), and up to limit of its replies after after ("" = from
	// the first), oldest first, each as History has it.
	Thread(ctx context.Context, channel, root, after string, limit int) (protocol.Message, []protocol.Message, error)
	// Change commits c, a change entry (Kind, Channel, From, Target; Text
	// for an edit, Emoji and On for a reaction), as the channel's next
	// entry, checked atomically with the commit, and returns it with ID
	// and TS set. dedupKey and maxLen are as for Append.
	Change(ctx context.Context, c protocol.Message, dedupKey string, maxLen int, rules ChangeRules) (protocol.Message, error)
}

// ChangeRules are what a change is checked against, atomically with it:
//   - the target must be a kept message of the channel (not a change) that
//     is not deleted, else ErrUnknownMessage;
//   - an edit must be by its author, a delete by its author or AnyAuthor
//     (a channel or room admin), else ErrForbidden;
//   - a reaction may not bring a message's distinct emoji past MaxEmoji,
//     else ErrTooManyReactions.
//
// A delete removes the message's text from storage, with the text of its
// edits: History then returns it as {ID, Deleted}, and neither After nor a
// feed returns it or its edits again.
type ChangeRules struct {
	AnyAuthor bool
	MaxEmoji  int
}

// Errors of Change.
var (
	ErrUnknownMessage   = errors.New("no such message")
	ErrTooManyReactions = errors.New("too many different reactions")
	ErrNotThreadRoot    = errors.New("a reply cannot start a thread")
)

// Handler receives what a Feed delivers. Calls for one channel are never
// concurrent and come in stream order; implementations must not block for long.
type Handler interface {
	// Messages delivers committed messages of a followed channel, oldest first,
	// each exactly once per Follow (ids strictly increasing per channel).
	Messages(channel string, msgs []protocol.Message)
	// Event delivers an ephemeral room-wide event published by any server,
	// this one included.
	Event(e Event)
	// EventsMissed says events published meanwhile may never come: the
	// feed's subscription was lost and is back. What an event would have
	// told (a removal, a revoked session) must be read from storage.
	EventsMissed()
}

// Feed brings committed messages and events from every server of the room to
// this one. One subscription per server, never per socket.
//
// Contract:
//   - Run delivers to h until ctx ends, then returns nil (or an error if it could
//     not start at all). Follow/Unfollow/Publish may be called before or while Run runs.
//   - Follow(channel, after) makes the feed deliver every message with ID > after
//     (after "" = from the start of the stream), in order, without gaps or
//     duplicates, surviving lost storage connections: after a reconnect it
//     resumes from the last ID it delivered. Following a followed channel is a no-op.
//   - Unfollow stops delivery for the channel (soon; a few in-flight messages may still arrive).
//   - Publish sends e to every server's Handler.Event, at most once, best effort
//     (events are ephemeral). Errors wrap ErrUnavailable.
//   - A feed that may have lost events (its subscription was lost, then
//     restored) calls Handler.EventsMissed once the subscription is back; a
//     feed that cannot lose them never calls it.
type Feed interface {
	Run(ctx context.Context, h Handler) error
	Follow(channel, after string)
	Unfollow(channel string)
	Publish(ctx context.Context, e Event) error
}

// Event kinds.
const (
	EventPresence = "presence" // User, Status
	EventTyping   = "typing"   // User, Channel
	EventRead     = "read"     // User, Channel, ID
	EventRevoke   = "revoke"   // User, Sessions (session ids; empty = all of the user's)
	EventDM       = "dm"       // Channel (a DM channel was created: servers with a member follow it)
	// EventMember: User joined (Status "joined", ID the channel's last id
	// then, Private) or left (Status "left") created channel Channel.
	EventMember = "member"
	// EventThread: User replied (message ID, Text) in the thread of Thread
	// in Channel; Users posted in it before, and are told.
	EventThread = "thread"
)

// Event is an ephemeral room-wide notice, sent over pub/sub.
type Event struct {
	Kind     string   `json:"k"`
	User     string   `json:"u,omitempty"`
	Channel  string   `json:"c,omitempty"`
	Status   string   `json:"s,omitempty"`
	ID       string   `json:"i,omitempty"`
	Sessions []string `json:"ss,omitempty"`
	Private  bool     `json:"p,omitempty"`
	Users    []string `json:"us,omitempty"`
	Text     string   `json:"t,omitempty"`
	Thread   string   `json:"th,omitempty"`
	// Origin is the id of the server that published the event.
	Origin string `json:"o,omitempty"`
}

// Presence tracks who is online across servers, surviving a server crash by expiry.
//
// Contract:
//   - Join(pod, user, ttl) marks user online on pod until now+ttl; calling it again extends.
//     Heartbeat(pod, users, ttl) extends all of them at once.
//   - Leave(pod, user) removes that mark and reports whether the user is now offline
//     everywhere.
//   - Online lists users with an unexpired mark on any pod (each once, at most limit).
//     OnlineAmong answers the same for the given users only (the people
//     directory's page), in one round trip: the set of those online.
//   - Sweep removes expired marks and returns the users that it made offline
//     (each such user is returned by exactly one of concurrent Sweep callers).
type Presence interface {
	Join(ctx context.Context, pod, user string, ttl time.Duration) error
	Heartbeat(ctx context.Context, pod string, users []string, ttl time.Duration) error
	Leave(ctx context.Context, pod, user string) (offline bool, err error)
	Online(ctx context.Context, limit int) ([]string, error)
	OnlineAmong(ctx context.Context, users []string) (map[string]bool, error)
	Sweep(ctx context.Context) (offline []string, err error)
}

// State is per-user chat state shared by all servers.
//
// Contract:
//   - SetRead records the user's read marker for a channel; it never moves
//     backwards (an older id than the stored one is ignored). ReadMarkers returns all.
//   - AddDM records a DM channel for both of its members and reports whether it
//     is new. DMs lists a user's DM channels (at most limit).
type State interface {
	SetRead(ctx context.Context, user, channel, id string) error
	ReadMarkers(ctx context.Context, user string) (map[string]string, error)
	AddDM(ctx context.Context, channel string) (created bool, err error)
	DMs(ctx context.Context, user string, limit int) ([]string, error)
}

// Users answers whether an account exists (for DMs and mentions) and lists
// accounts for the people directory.
//
// Contract:
//   - ListUsers returns up to limit usernames that start with prefix ("" = all)
//     and sort after after ("" = from the first), in byte order. Every account
//     CreateUser made is listed, however it was made (registration or bootstrap).
type Users interface {
	UserExists(ctx context.Context, username string) (bool, error)
	ListUsers(ctx context.Context, prefix, after string, limit int) ([]string, error)
}

// ChannelMeta is a channel people created. The room's default channels
// (everyone is in them) and DM channels (two people are) are not in the
// catalog.
type ChannelMeta struct {
	Name    string `json:"name"`
	Private bool   `json:"private"`
	Creator string `json:"creator"`
	Created int64  `json:"created"` // Unix milliseconds
}

// Member is one member of a created channel.
type Member struct {
	Username string `json:"username"`
	Admin    bool   `json:"admin"`
}

// MemberOf is one created channel a person is in, as the person's own
// list holds it: a person in 1,000 channels connects with one read.
type MemberOf struct {
	Channel string
	Private bool
	Admin   bool
}

// MemberLimits bound membership; each is checked atomically with the change.
type MemberLimits struct {
	PerUser int // created channels one person may be in
	Members int // members one channel may have
}

// Errors of the channel catalog.
var (
	ErrChannelTaken    = errors.New("channel name is taken")
	ErrTooManyChannels = errors.New("in too many channels")
	ErrTooManyMembers  = errors.New("channel is full")
	ErrLastAdmin       = errors.New("the channel's last admin cannot go while others remain")
)

// Channels is the catalog of created channels and their members.
//
// Contract (errors from storage wrap ErrUnavailable):
//   - CreateChannel records meta with meta.Creator as its only member, an
//     admin. Of two creates of one name exactly one wins; the other gets
//     ErrChannelTaken. ErrTooManyChannels when the creator already is in
//     lim.PerUser created channels.
//   - GetChannel returns the channel, or ErrUnknownChannel.
//   - PublicChannels returns up to limit public channels whose names start
//     with prefix and sort after after, by name. Private ones never appear.
//   - AddMember makes user a member (an admin if admin, or if the channel has
//     no members: the first to join an empty channel runs it). Adding a
//     member again changes nothing but may grant admin; added reports whether
//     user was not a member before. lastID is the channel's last id at the
//     moment user became a member (live delivery starts after it).
//     ErrUnknownChannel, ErrTooManyChannels (user's PerUser), ErrTooManyMembers.
//   - RemoveMember ends user's membership; removed is false when user was not
//     a member. ErrLastAdmin when user is the only admin and other members
//     remain (nothing changes).
//   - Membership reports whether user is a member, and an admin.
//   - Members returns up to limit members sorting after after, by name, and
//     MemberCounts the number of members of each channel asked for.
//   - UserChannels lists the created channels user is a member of, sorted by
//     name, at most limit, each with its Private flag and whether user is an
//     admin of it (kept in step with Membership by every change).
type Channels interface {
	CreateChannel(ctx context.Context, meta ChannelMeta, lim MemberLimits) error
	GetChannel(ctx context.Context, name string) (ChannelMeta, error)
	PublicChannels(ctx context.Context, prefix, after string, limit int) ([]ChannelMeta, error)
	AddMember(ctx context.Context, channel, user string, admin bool, lim MemberLimits) (added bool, lastID string, err error)
	RemoveMember(ctx context.Context, channel, user string) (removed bool, err error)
	Membership(ctx context.Context, channel, user string) (member, admin bool, err error)
	Members(ctx context.Context, channel, after string, limit int) ([]Member, error)
	MemberCounts(ctx context.Context, channels []string) (map[string]int, error)
	UserChannels(ctx context.Context, user string, limit int) ([]MemberOf, error)
	// AppendMember is Log.Append for a created channel: it commits m only
	// if m.From is a member at that moment, checked atomically with the
	// append (a person removed while sending never gets a message in).
	// ErrForbidden when not a member, ErrUnknownChannel when no such channel.
	AppendMember(ctx context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error)
}

// Snapshot is what a connecting socket needs of storage: the created
// channels the person is in and their DMs, their read markers, and for the
// default channels and all of theirs the last id ("" = no message yet) and
// how many messages follow the read marker (all of them where there is
// none), at most SnapshotLimits.Unread.
type Snapshot struct {
	Created []MemberOf
	DMs     []string
	Reads   map[string]string
	LastIDs map[string]string
	Unread  map[string]int
}

// SnapshotLimits bound a Snapshot: created channels, DMs, and the count of
// unread messages per channel.
type SnapshotLimits struct{ Created, DMs, Unread int }

// Snapshotter is a Backend that reads a Snapshot in fewer round trips than
// the calls it stands for (Redis: two, where the calls take six): a
// reconnect storm is mostly these reads. For a backend without it, the chat
// core makes one with ComposeSnapshot.
type Snapshotter interface {
	Snapshot(ctx context.Context, user string, defaults []string, lim SnapshotLimits) (Snapshot, error)
}

// ComposeSnapshot reads a Snapshot call by call: what a Snapshotter's
// answer must equal.
func ComposeSnapshot(ctx context.Context, b Backend, user string, defaults []string, lim SnapshotLimits) (Snapshot, error) {
	var sn Snapshot
	var err error
	if sn.Created, err = b.UserChannels(ctx, user, lim.Created); err != nil {
		return Snapshot{}, fmt.Errorf("listing channels: %w", err)
	}
	if sn.DMs, err = b.DMs(ctx, user, lim.DMs); err != nil {
		return Snapshot{}, fmt.Errorf("listing DMs: %w", err)
	}
	if sn.Reads, err = b.ReadMarkers(ctx, user); err != nil {
		return Snapshot{}, fmt.Errorf("reading read markers: %w", err)
	}
	names := sn.Channels(defaults)
	if sn.LastIDs, err = b.LastIDs(ctx, names); err != nil {
		return Snapshot{}, fmt.Errorf("reading last ids: %w", err)
	}
	behind := map[string]string{}
	for _, ch := range names {
		if protocol.CompareIDs(sn.LastIDs[ch], sn.Reads[ch]) > 0 {
			behind[ch] = sn.Reads[ch]
		}
	}
	counts, err := b.CountsAfter(ctx, behind, lim.Unread)
	if err != nil {
		return Snapshot{}, fmt.Errorf("counting unread: %w", err)
	}
	sn.Unread = make(map[string]int, len(names))
	for _, ch := range names {
		sn.Unread[ch] = counts[ch]
	}
	return sn, nil
}

// Channels names every channel of the snapshot: the defaults, then the
// created channels, then the DMs.
func (sn Snapshot) Channels(defaults []string) []string {
	out := make([]string, 0, len(defaults)+len(sn.Created)+len(sn.DMs))
	out = append(out, defaults...)
	for _, c := range sn.Created {
		out = append(out, c.Channel)
	}
	return append(out, sn.DMs...)
}

// Backend is everything the chat core needs from storage.
type Backend interface {
	Log
	Feed
	Presence
	State
	Users
	Channels
}

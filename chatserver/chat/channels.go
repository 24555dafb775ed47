package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Channels people create, and the people directory: what the HTTP API asks
// of the chat core. Membership changes are stored first, then told to the
// person's sockets on every server (EventMember), this server's at once.

// Errors of channel operations, besides the catalog's (backend.go) and
// ErrForbidden / ErrUnknownChannel.
var (
	ErrBadChannelName = errors.New("bad channel name")
	ErrDefaultChannel = errors.New("everyone is in the room's default channels")
	ErrUnknownUser    = errors.New("no such person")
	ErrNotMember      = errors.New("not a member of the channel")
)

// Directory limits: a page of people or channels.
const (
	// MaxPage bounds ?limit= of the directory and member lists.
	MaxPage = 200
)

// Person is one entry of the people directory or a member list.
type Person struct {
	Username string `json:"username"`
	Online   bool   `json:"online"`
	Admin    bool   `json:"admin,omitempty"`
}

// PublicChannel is one entry of the channel browser.
type PublicChannel struct {
	Name    string `json:"name"`
	Members int    `json:"members"`
	Member  bool   `json:"member"`
}

// People returns up to limit people whose names start with prefix, after
// after, by name, each with whether they are online.
func (s *Service) People(ctx context.Context, prefix, after string, limit int) ([]Person, error) {
	names, err := s.b.ListUsers(ctx, prefix, after, clampPage(limit))
	if err != nil {
		return nil, fmt.Errorf("listing people: %w", err)
	}
	online, err := s.b.OnlineAmong(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("reading presence: %w", err)
	}
	out := make([]Person, len(names))
	for i, n := range names {
		out[i] = Person{Username: n, Online: online[n]}
	}
	return out, nil
}

// OnlinePeople returns up to limit of the people online whose names start
// with prefix, after after, by name. It reads at most maxOnline people
// online: in a room with more, the list is some of them, not all, and
// paging through it is not exact. (Clients show presence through watch;
// this list is what a people panel shows first.)
func (s *Service) OnlinePeople(ctx context.Context, prefix, after string, limit int) ([]Person, error) {
	names, err := s.b.Online(ctx, maxOnline)
	if err != nil {
		return nil, fmt.Errorf("listing people online: %w", err)
	}
	out := []Person{}
	for _, n := range names {
		if n > after && strings.HasPrefix(n, prefix) && len(out) < clampPage(limit) {
			out = append(out, Person{Username: n, Online: true})
		}
	}
	return out, nil
}

// BrowseChannels returns up to limit public created channels whose names
// start with prefix, after after, by name: their member counts, and
// whether user is in each.
func (s *Service) BrowseChannels(ctx context.Context, user, prefix, after string, limit int) ([]PublicChannel, error) {
	metas, err := s.b.PublicChannels(ctx, prefix, after, clampPage(limit))
	if err != nil {
		return nil, fmt.Errorf("listing channels: %w", err)
	}
	names := make([]string, len(metas))
	for i, m := range metas {
		names[i] = m.Name
	}
	counts, err := s.b.MemberCounts(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("counting members: %w", err)
	}
	mine, err := s.b.UserChannels(ctx, user, maxJoined)
	if err != nil {
		return nil, fmt.Errorf("listing channels: %w", err)
	}
	out := make([]PublicChannel, len(names))
	for i, n := range names {
		_, in := slices.BinarySearchFunc(mine, n, func(m MemberOf, n string) int { return strings.Compare(m.Channel, n) })
		out[i] = PublicChannel{Name: n, Members: counts[n], Member: in}
	}
	return out, nil
}

// CreateChannel makes channel name, with user its member and admin.
func (s *Service) CreateChannel(ctx context.Context, user, name string, private bool) (ChannelMeta, error) {
	if err := checkChannelName(name); err != nil {
		return ChannelMeta{}, err
	}
	if s.hub.public[name] {
		return ChannelMeta{}, ErrChannelTaken
	}
	meta := ChannelMeta{Name: name, Private: private, Creator: user, Created: time.Now().UnixMilli()}
	if err := s.b.CreateChannel(ctx, meta, s.opts.Membership); err != nil {
		return ChannelMeta{}, err
	}
	s.memberChanged(ctx, Event{Kind: EventMember, Channel: name, User: user, Status: memberJoined, Private: private})
	return meta, nil
}

// checkChannelName says what is wrong with a new channel's name.
func checkChannelName(name string) error {
	switch {
	case strings.Contains(name, ":"):
		return fmt.Errorf("%w: names with ':' are kept for direct messages (dm:…)", ErrBadChannelName)
	case len(name) > 63:
		return fmt.Errorf("%w: at most 63 characters, got %d", ErrBadChannelName, len(name))
	case !protocol.ValidChannel(name):
		return fmt.Errorf("%w: use lower-case letters, digits and '-', not at the start or end", ErrBadChannelName)
	}
	return nil
}

// JoinChannel makes user a member of a public created channel.
func (s *Service) JoinChannel(ctx context.Context, user, channel string) error {
	meta, err := s.created(ctx, channel)
	if err != nil {
		return err
	}
	if meta.Private {
		// Uninvited, a private channel does not exist: the same answer
		// as for a name nobody took.
		member, _, err := s.b.Membership(ctx, channel, user)
		if err != nil {
			return err
		}
		if !member {
			return ErrUnknownChannel
		}
		return nil
	}
	return s.addMember(ctx, meta, user, false)
}

// LeaveChannel ends user's membership of a created channel.
func (s *Service) LeaveChannel(ctx context.Context, user, channel string) error {
	err := s.RemoveMember(ctx, user, channel, user)
	if errors.Is(err, ErrNotMember) {
		return ErrUnknownChannel
	}
	return err
}

// AddMember adds username to channel on by's behalf: any member may add
// people; making someone an admin takes an admin. Room admins may do both
// anywhere.
func (s *Service) AddMember(ctx context.Context, by, channel, username string, admin bool) error {
	meta, role, err := s.actor(ctx, by, channel)
	if err != nil {
		return err
	}
	if !role.member || (admin && !role.admin) {
		return ErrForbidden
	}
	exists, err := s.b.UserExists(ctx, username)
	if err != nil {
		return fmt.Errorf("looking up %s: %w", username, err)
	}
	if !exists {
		return ErrUnknownUser
	}
	return s.addMember(ctx, meta, username, admin)
}

// RemoveMember removes username from channel on by's behalf: channel and
// room admins may remove anyone, anyone themselves.
func (s *Service) RemoveMember(ctx context.Context, by, channel, username string) error {
	_, role, err := s.actor(ctx, by, channel)
	if err != nil {
		return err
	}
	if by != username && !role.admin {
		return ErrForbidden
	}
	removed, err := s.b.RemoveMember(ctx, channel, username)
	if err != nil {
		return err
	}
	if !removed {
		return ErrNotMember
	}
	s.memberChanged(ctx, Event{Kind: EventMember, Channel: channel, User: username, Status: memberLeft})
	return nil
}

// Members lists channel's members for user, who must be allowed to read it.
func (s *Service) Members(ctx context.Context, user, channel, after string, limit int) ([]Person, error) {
	meta, err := s.created(ctx, channel)
	if err != nil {
		return nil, err
	}
	if err := s.mayReadCreated(ctx, user, meta); err != nil {
		return nil, err
	}
	ms, err := s.b.Members(ctx, channel, after, clampPage(limit))
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Username
	}
	online, err := s.b.OnlineAmong(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("reading presence: %w", err)
	}
	out := make([]Person, len(ms))
	for i, m := range ms {
		out[i] = Person{Username: m.Username, Admin: m.Admin, Online: online[m.Username]}
	}
	return out, nil
}

// roomAdmin reports whether user is one of the room's admins (--admins).
func (s *Service) roomAdmin(user string) bool { return slices.Contains(s.opts.Admins, user) }

// role is what someone may do in a channel.
type role struct{ member, admin bool }

// actor looks up channel and by's role in it. A private channel by is not
// in does not exist for them, unless they are a room admin.
func (s *Service) actor(ctx context.Context, by, channel string) (ChannelMeta, role, error) {
	meta, err := s.created(ctx, channel)
	if err != nil {
		return ChannelMeta{}, role{}, err
	}
	member, admin, err := s.b.Membership(ctx, channel, by)
	if err != nil {
		return ChannelMeta{}, role{}, fmt.Errorf("reading membership: %w", err)
	}
	if s.roomAdmin(by) {
		return meta, role{member: true, admin: true}, nil
	}
	if meta.Private && !member {
		return ChannelMeta{}, role{}, ErrUnknownChannel
	}
	return meta, role{member: member, admin: admin}, nil
}

// created looks up a created channel, refusing the default ones and DMs.
func (s *Service) created(ctx context.Context, channel string) (ChannelMeta, error) {
	if s.hub.public[channel] {
		return ChannelMeta{}, ErrDefaultChannel
	}
	if _, _, dm := protocol.SplitDM(channel); dm || !protocol.ValidChannel(channel) {
		return ChannelMeta{}, ErrUnknownChannel
	}
	return s.b.GetChannel(ctx, channel)
}

func (s *Service) addMember(ctx context.Context, meta ChannelMeta, user string, admin bool) error {
	added, lastID, err := s.b.AddMember(ctx, meta.Name, user, admin, s.opts.Membership)
	if err != nil {
		return err
	}
	e := Event{Kind: EventMember, Channel: meta.Name, User: user, Status: memberJoined, ID: lastID, Private: meta.Private}
	if !added {
		// Nothing changed; but a socket of theirs here that missed the
		// event (events are at most once) catches up.
		s.memberEvent(e)
		return nil
	}
	s.memberChanged(ctx, e)
	return nil
}

// catchUp joins user's local sockets to channel if storage says they are
// in it: the event that should have done so was lost (events are at most
// once). ErrUnknownChannel when they are not in it.
func (s *Service) catchUp(ctx context.Context, user, channel string) error {
	member, _, err := s.b.Membership(ctx, channel, user)
	if err != nil {
		return err
	}
	if !member {
		return ErrUnknownChannel
	}
	meta, err := s.b.GetChannel(ctx, channel)
	if err != nil {
		return err
	}
	last, err := s.b.LastID(ctx, channel)
	if err != nil {
		return err
	}
	s.memberEvent(Event{Kind: EventMember, Channel: channel, User: user, Status: memberJoined, ID: last, Private: meta.Private})
	return nil
}

// syncMembership makes c's created channels what storage says they are:
// membership events are at most once, and one lost would leave a removed
// person reading, or an added one deaf, until they reconnect. The
// keepalive loop runs it with each session check.
func (s *Service) syncMembership(ctx context.Context, c *conn) error {
	// A change whose event lands while storage is read is left to that
	// event: only channels this socket was in (or not) both before and
	// after the read are corrected. A join decided here is verified once
	// more after it is applied (verifyJoined), so a removal stored
	// meanwhile still wins.
	before := s.hub.joinedSet(c)
	stored, err := s.b.UserChannels(ctx, c.user, maxJoined)
	if err != nil {
		return fmt.Errorf("listing channels: %w", err)
	}
	after := s.hub.joinedSet(c)
	member := make(map[string]MemberOf, len(stored))
	for _, m := range stored {
		member[m.Channel] = m
	}
	var added []string
	for ch := range member {
		if !before[ch] && !after[ch] {
			added = append(added, ch)
		}
	}
	for ch := range before {
		if _, ok := member[ch]; !ok && after[ch] && !s.isDM(ch) {
			s.memberEvent(Event{Kind: EventMember, Channel: ch, User: c.user, Status: memberLeft})
		}
	}
	if len(added) == 0 {
		return nil
	}
	last, err := s.b.LastIDs(ctx, added)
	if err != nil {
		return fmt.Errorf("reading last ids: %w", err)
	}
	for _, ch := range added {
		s.memberEvent(Event{Kind: EventMember, Channel: ch, User: c.user, Status: memberJoined, ID: last[ch], Private: member[ch].Private})
	}
	return nil
}

func (s *Service) isDM(channel string) bool {
	_, _, ok := protocol.SplitDM(channel)
	return ok
}

// verifyJoined reads user's membership of channel once more, after
// sockets here joined it on a decision made from an earlier read (an
// event, a catch-up, a reconciliation): a removal stored in between, whose
// "left" was applied here first or overtook the "joined" between servers,
// would otherwise leave them reading until the next session check. A
// removal stored after this read sends its own "left", which comes after.
func (s *Service) verifyJoined(user, channel string) {
	if !s.hub.start() {
		return // stopping: the sockets are going anyway
	}
	go func() {
		defer s.hub.done()
		ctx, cancel := context.WithTimeout(s.life, storageTimeout)
		defer cancel()
		member, _, err := s.b.Membership(ctx, channel, user)
		if err != nil {
			s.backendError("membership_check", err)
			return
		}
		if !member {
			s.memberEvent(Event{Kind: EventMember, Channel: channel, User: user, Status: memberLeft})
		}
	}()
}

// Status of an EventMember.
const (
	memberJoined = "joined"
	memberLeft   = "left"
)

// memberChanged acts on a membership change here at once (the person who
// pressed "join" sees it take effect), then tells the other servers.
func (s *Service) memberChanged(ctx context.Context, e Event) {
	s.memberEvent(e)
	// Stored already: the other servers must hear of it even if the
	// request that made it is gone or out of time.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
	defer cancel()
	s.publish(ctx, e)
}

// memberEvent applies a membership change to the person's local sockets.
func (s *Service) memberEvent(e Event) {
	switch e.Status {
	case memberJoined:
		frame := protocol.Encode(protocol.ChannelAdded{Type: protocol.TypeChannel, Name: e.Channel, Private: e.Private})
		if s.hub.joinUser(e.Channel, e.User, e.ID, frame) > 0 {
			s.verifyJoined(e.User, e.Channel)
		}
	case memberLeft:
		frame := protocol.Encode(protocol.Removed{Type: protocol.TypeRemoved, Channel: e.Channel})
		s.hub.leaveUser(e.Channel, e.User, frame)
	}
}

// clampPage bounds a page: MaxPage, plus the one more a caller reads to
// know whether another page follows.
func clampPage(limit int) int { return max(1, min(limit, MaxPage+1)) }

package chat

import (
	"context"
	"errors"
	"fmt"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// What the HTTP API asks of the chat core, and who may read what.

// ErrForbidden and ErrUnknownChannel are returned for channels a user may not read.
var (
	ErrForbidden      = errors.New("not a member of this channel")
	ErrUnknownChannel = errors.New("no such channel")
)

// errCreated says a channel name is neither a default channel nor a DM:
// whether it exists, and who may use it, is the channel catalog's business.
var errCreated = errors.New("a channel people created")

// access checks channel by its name alone: a default channel (everyone's)
// or one of user's DMs. Any other well-formed name may be a created
// channel: errCreated, and the caller checks membership.
func (s *Service) access(user, channel string) error {
	if s.hub.public[channel] {
		return nil
	}
	a, b, ok := protocol.SplitDM(channel)
	if !ok {
		if protocol.ValidChannel(channel) {
			return errCreated
		}
		return ErrUnknownChannel
	}
	if user != a && user != b {
		return ErrForbidden
	}
	return nil
}

// may checks that c's person may use channel on this socket: a created
// channel only if the socket is in it. A channel one is not in is "unknown"
// whether it exists or not, so a private channel's name gives nothing away,
// and checking costs no storage read.
func (c *conn) may(channel string) error {
	err := c.s.access(c.user, channel)
	if errors.Is(err, errCreated) {
		if c.s.hub.follows(c, channel) {
			return nil
		}
		return ErrUnknownChannel
	}
	return err
}

// mayRead checks in storage that user may read channel: anyone a public
// created channel, only its members a private one (which, to everyone
// else, does not exist).
func (s *Service) mayRead(ctx context.Context, user, channel string) error {
	err := s.access(user, channel)
	if !errors.Is(err, errCreated) {
		return err
	}
	meta, err := s.b.GetChannel(ctx, channel)
	if err != nil {
		return err
	}
	return s.mayReadCreated(ctx, user, meta)
}

// mayReadCreated is mayRead for a created channel already looked up.
func (s *Service) mayReadCreated(ctx context.Context, user string, meta ChannelMeta) error {
	if !meta.Private {
		return nil
	}
	member, _, err := s.b.Membership(ctx, meta.Name, user)
	if err != nil {
		return fmt.Errorf("reading membership: %w", err)
	}
	if !member {
		return ErrUnknownChannel
	}
	return nil
}

// snapshot reads what a connecting socket (or a channel list) needs of
// storage, in as few round trips as the backend can.
func (s *Service) snapshot(ctx context.Context, user string) (Snapshot, error) {
	lim := SnapshotLimits{Created: maxJoined, DMs: maxDMs, Unread: maxUnread}
	if sn, ok := s.b.(Snapshotter); ok {
		return sn.Snapshot(ctx, user, s.opts.Channels, lim)
	}
	return ComposeSnapshot(ctx, s.b, user, s.opts.Channels, lim)
}

// Channels returns the user's channels (default ones, created ones they are
// in, then DMs) with last id and unread count.
func (s *Service) Channels(ctx context.Context, user string) ([]protocol.ChannelInfo, error) {
	sn, err := s.snapshot(ctx, user)
	if err != nil {
		return nil, err
	}
	return s.channelInfos(sn), nil
}

// channelInfos describes the default channels and the person's own.
func (s *Service) channelInfos(sn Snapshot) []protocol.ChannelInfo {
	out := make([]protocol.ChannelInfo, 0, len(s.opts.Channels)+len(sn.Created)+len(sn.DMs))
	for _, name := range s.opts.Channels {
		out = append(out, protocol.ChannelInfo{Name: name, Default: true})
	}
	for _, m := range sn.Created {
		out = append(out, protocol.ChannelInfo{Name: m.Channel, Private: m.Private, Admin: m.Admin})
	}
	for _, name := range sn.DMs {
		out = append(out, protocol.ChannelInfo{Name: name})
	}
	for i := range out {
		out[i].LastID = sn.LastIDs[out[i].Name]
		out[i].Unread = sn.Unread[out[i].Name]
	}
	return out
}

// Thread returns a thread's root and a page of its replies after after
// ("" = from the first), oldest first, each as it is now.
func (s *Service) Thread(ctx context.Context, user, channel, root, after string, limit int) (protocol.Message, []protocol.Message, error) {
	if err := s.mayRead(ctx, user, channel); err != nil {
		return protocol.Message{}, nil, err
	}
	limit = max(1, min(limit, MaxHistoryPage))
	r, replies, err := s.b.Thread(ctx, channel, root, after, limit)
	if err != nil {
		return protocol.Message{}, nil, fmt.Errorf("reading thread: %w", err)
	}
	return r, replies, nil
}

// History returns a page of channel's messages older than before ("" =
// newest), newest last, each as it is now (edited, reacted to, deleted).
func (s *Service) History(ctx context.Context, user, channel, before string, limit int) ([]protocol.Message, error) {
	if err := s.mayRead(ctx, user, channel); err != nil {
		return nil, err
	}
	limit = max(1, min(limit, MaxHistoryPage))
	msgs, err := s.b.History(ctx, channel, before, limit)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	return msgs, nil
}

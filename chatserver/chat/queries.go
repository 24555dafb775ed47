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

// access checks that user may read and write channel.
func (s *Service) access(user, channel string) error {
	if s.hub.public[channel] {
		return nil
	}
	a, b, ok := protocol.SplitDM(channel)
	if !ok {
		return ErrUnknownChannel
	}
	if user != a && user != b {
		return ErrForbidden
	}
	return nil
}

// Channels returns the user's channels (public ones, then DMs) with last id and unread count.
func (s *Service) Channels(ctx context.Context, user string) ([]protocol.ChannelInfo, error) {
	dms, err := s.b.DMs(ctx, user, maxDMs)
	if err != nil {
		return nil, fmt.Errorf("listing DMs: %w", err)
	}
	return s.channelInfos(ctx, user, dms, nil)
}

// channelInfos describes the public channels and the given DMs. lastIDs
// holds last ids already read (a new socket reads its DMs' to follow them),
// so they are not read again.
func (s *Service) channelInfos(ctx context.Context, user string, dms []string, lastIDs map[string]string) ([]protocol.ChannelInfo, error) {
	reads, err := s.b.ReadMarkers(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("reading read markers: %w", err)
	}
	names := append(append([]string(nil), s.opts.Channels...), dms...)
	out := make([]protocol.ChannelInfo, 0, len(names))
	for _, name := range names {
		last, known := lastIDs[name]
		if !known {
			if last, err = s.b.LastID(ctx, name); err != nil {
				return nil, fmt.Errorf("reading last id of %s: %w", name, err)
			}
		}
		info := protocol.ChannelInfo{Name: name, LastID: last}
		if last != "" && protocol.CompareIDs(last, reads[name]) > 0 {
			if info.Unread, err = s.b.CountAfter(ctx, name, reads[name], maxUnread); err != nil {
				return nil, fmt.Errorf("counting unread in %s: %w", name, err)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// History returns a page of channel's messages older than before ("" = newest), newest last.
func (s *Service) History(ctx context.Context, user, channel, before string, limit int) ([]protocol.Message, error) {
	if err := s.access(user, channel); err != nil {
		return nil, err
	}
	limit = max(1, min(limit, MaxHistoryPage))
	msgs, err := s.b.Before(ctx, channel, before, limit)
	if err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	return msgs, nil
}

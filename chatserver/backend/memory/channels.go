package memory

import (
	"context"
	"slices"
	"strings"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// A limit of zero or less is no limit: the zero MemberLimits must not lock
// everyone out.
func overLimit(n, limit int) bool { return limit > 0 && n >= limit }

// setMemberLocked records user as a member of channel, in both indexes.
func (st *store) setMemberLocked(channel, user string, admin bool) {
	ms := st.members[channel]
	if ms == nil {
		ms = map[string]bool{}
		st.members[channel] = ms
	}
	ms[user] = admin
	js := st.joined[user]
	if js == nil {
		js = map[string]struct{}{}
		st.joined[user] = js
	}
	js[channel] = struct{}{}
}

func (st *store) removeMemberLocked(channel, user string) {
	delete(st.members[channel], user)
	if len(st.members[channel]) == 0 {
		delete(st.members, channel)
	}
	delete(st.joined[user], channel)
	if len(st.joined[user]) == 0 {
		delete(st.joined, user)
	}
}

// CreateChannel implements chat.Channels.
func (b *Backend) CreateChannel(_ context.Context, meta chat.ChannelMeta, lim chat.MemberLimits) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.catalog[meta.Name]; ok {
		return chat.ErrChannelTaken
	}
	if overLimit(len(st.joined[meta.Creator]), lim.PerUser) {
		return chat.ErrTooManyChannels
	}
	tx := st.batch()
	tx.put(bucketChannels, meta.Name, meta)
	tx.put(bucketMembers, pairKey(meta.Name, meta.Creator), true)
	if err := tx.commit(); err != nil {
		return err
	}
	st.catalog[meta.Name] = meta
	st.setMemberLocked(meta.Name, meta.Creator, true)
	return nil
}

// GetChannel implements chat.Channels.
func (b *Backend) GetChannel(_ context.Context, name string) (chat.ChannelMeta, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	meta, ok := b.st.catalog[name]
	if !ok {
		return chat.ChannelMeta{}, chat.ErrUnknownChannel
	}
	return meta, nil
}

// PublicChannels implements chat.Channels.
func (b *Backend) PublicChannels(_ context.Context, prefix, after string, limit int) ([]chat.ChannelMeta, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []chat.ChannelMeta
	for name, meta := range b.st.catalog {
		if !meta.Private && strings.HasPrefix(name, prefix) && name > after {
			out = append(out, meta)
		}
	}
	slices.SortFunc(out, func(x, y chat.ChannelMeta) int { return strings.Compare(x.Name, y.Name) })
	return out[:min(len(out), max(limit, 0))], nil
}

// AddMember implements chat.Channels.
func (b *Backend) AddMember(_ context.Context, channel, user string, admin bool, lim chat.MemberLimits) (bool, string, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.catalog[channel]; !ok {
		return false, "", chat.ErrUnknownChannel
	}
	last := st.lastIDLocked(channel)
	ms := st.members[channel]
	wasAdmin, member := ms[user]
	if member {
		if admin && !wasAdmin {
			tx := st.batch()
			tx.put(bucketMembers, pairKey(channel, user), true)
			if err := tx.commit(); err != nil {
				return false, "", err
			}
			st.setMemberLocked(channel, user, true)
		}
		return false, last, nil
	}
	if overLimit(len(st.joined[user]), lim.PerUser) {
		return false, "", chat.ErrTooManyChannels
	}
	if overLimit(len(ms), lim.Members) {
		return false, "", chat.ErrTooManyMembers
	}
	admin = admin || len(ms) == 0
	tx := st.batch()
	tx.put(bucketMembers, pairKey(channel, user), admin)
	if err := tx.commit(); err != nil {
		return false, "", err
	}
	st.setMemberLocked(channel, user, admin)
	return true, last, nil
}

// RemoveMember implements chat.Channels.
func (b *Backend) RemoveMember(_ context.Context, channel, user string) (bool, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ms := st.members[channel]
	admin, member := ms[user]
	if !member {
		return false, nil
	}
	if admin && len(ms) > 1 {
		admins := 0
		for _, a := range ms {
			if a {
				admins++
			}
		}
		if admins == 1 {
			return false, chat.ErrLastAdmin
		}
	}
	tx := st.batch()
	tx.del(bucketMembers, pairKey(channel, user))
	if err := tx.commit(); err != nil {
		return false, err
	}
	st.removeMemberLocked(channel, user)
	return true, nil
}

// Membership implements chat.Channels.
func (b *Backend) Membership(_ context.Context, channel, user string) (bool, bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	admin, member := b.st.members[channel][user]
	return member, admin, nil
}

// Members implements chat.Channels.
func (b *Backend) Members(_ context.Context, channel, after string, limit int) ([]chat.Member, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []chat.Member
	for u, admin := range b.st.members[channel] {
		if u > after {
			out = append(out, chat.Member{Username: u, Admin: admin})
		}
	}
	slices.SortFunc(out, func(x, y chat.Member) int { return strings.Compare(x.Username, y.Username) })
	return out[:min(len(out), max(limit, 0))], nil
}

// MemberCounts implements chat.Channels.
func (b *Backend) MemberCounts(_ context.Context, channels []string) (map[string]int, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	out := make(map[string]int, len(channels))
	for _, c := range channels {
		out[c] = len(b.st.members[c])
	}
	return out, nil
}

// UserChannels implements chat.Channels.
func (b *Backend) UserChannels(_ context.Context, user string, limit int) ([]chat.MemberOf, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]chat.MemberOf, 0, len(st.joined[user]))
	for c := range st.joined[user] {
		out = append(out, chat.MemberOf{Channel: c, Private: st.catalog[c].Private, Admin: st.members[c][user]})
	}
	slices.SortFunc(out, func(x, y chat.MemberOf) int { return strings.Compare(x.Channel, y.Channel) })
	return out[:min(len(out), max(limit, 0))], nil
}

// AppendMember implements chat.Channels. The membership check runs under the
// same lock as the append, so a removal either precedes it (refused) or
// follows the committed message.
func (b *Backend) AppendMember(_ context.Context, m protocol.Message, dedupKey string, maxLen int) (protocol.Message, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.appendLocked(m, dedupKey, maxLen, func() error {
		if _, ok := st.catalog[m.Channel]; !ok {
			return chat.ErrUnknownChannel
		}
		if _, ok := st.members[m.Channel][m.From]; !ok {
			return chat.ErrForbidden
		}
		return nil
	}, nil)
}

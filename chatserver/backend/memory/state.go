package memory

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// SetRead implements chat.State.
func (b *Backend) SetRead(_ context.Context, user, channel, id string) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if cur, ok := st.reads[user][channel]; ok && protocol.CompareIDs(id, cur) <= 0 {
		return nil
	}
	tx := st.batch()
	tx.put(bucketReads, pairKey(user, channel), id)
	if err := tx.commit(); err != nil {
		return err
	}
	r := st.reads[user]
	if r == nil {
		r = map[string]string{}
		st.reads[user] = r
	}
	r[channel] = id
	return nil
}

// ReadMarkers implements chat.State.
func (b *Backend) ReadMarkers(_ context.Context, user string) (map[string]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	out := map[string]string{}
	for k, v := range b.st.reads[user] {
		out[k] = v
	}
	return out, nil
}

// AddDM implements chat.State.
func (b *Backend) AddDM(_ context.Context, channel string) (bool, error) {
	x, y, ok := protocol.SplitDM(channel)
	if !ok {
		return false, nil
	}
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.dms[x][channel]; ok {
		if _, ok := st.dms[y][channel]; ok {
			return false, nil
		}
	}
	tx := st.batch()
	tx.put(bucketDMs, channel, struct{}{})
	if err := tx.commit(); err != nil {
		return false, err
	}
	return st.addDMLocked(channel), nil
}

// addDMLocked records a DM channel for both of its members and reports
// whether that changed anything (false too when channel is not a DM).
func (st *store) addDMLocked(channel string) bool {
	x, y, ok := protocol.SplitDM(channel)
	if !ok {
		return false
	}
	created := false
	for _, u := range []string{x, y} {
		set := st.dms[u]
		if set == nil {
			set = map[string]struct{}{}
			st.dms[u] = set
		}
		if _, ok := set[channel]; !ok {
			set[channel] = struct{}{}
			created = true
		}
	}
	return created
}

// DMs implements chat.State.
func (b *Backend) DMs(_ context.Context, user string, limit int) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []string
	for c := range b.st.dms[user] {
		out = append(out, c)
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// UserExists implements chat.Users.
func (b *Backend) UserExists(_ context.Context, username string) (bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	_, ok := b.st.users[username]
	return ok, nil
}

// ListUsers implements chat.Users.
func (b *Backend) ListUsers(_ context.Context, prefix, after string, limit int) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []string
	for u := range b.st.users {
		if strings.HasPrefix(u, prefix) && u > after {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out[:min(len(out), max(limit, 0))], nil
}

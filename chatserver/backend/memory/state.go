package memory

import (
	"context"
	"sort"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// SetRead implements chat.State.
func (b *Backend) SetRead(_ context.Context, user, channel, id string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	r := b.st.reads[user]
	if r == nil {
		r = map[string]string{}
		b.st.reads[user] = r
	}
	if cur, ok := r[channel]; !ok || protocol.CompareIDs(id, cur) > 0 {
		r[channel] = id
	}
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
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	created := false
	for _, u := range []string{x, y} {
		set := b.st.dms[u]
		if set == nil {
			set = map[string]struct{}{}
			b.st.dms[u] = set
		}
		if _, ok := set[channel]; !ok {
			set[channel] = struct{}{}
			created = true
		}
	}
	return created, nil
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

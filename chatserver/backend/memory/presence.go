package memory

import (
	"context"
	"sort"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

// Join implements chat.Presence.
func (b *Backend) Join(_ context.Context, pod, user string, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	b.st.presence[keys.PresenceMember(pod, user)] = b.st.now().Add(ttl)
	return nil
}

// Heartbeat implements chat.Presence.
func (b *Backend) Heartbeat(_ context.Context, pod string, users []string, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	exp := b.st.now().Add(ttl)
	for _, u := range users {
		b.st.presence[keys.PresenceMember(pod, u)] = exp
	}
	return nil
}

// Leave implements chat.Presence.
func (b *Backend) Leave(_ context.Context, pod, user string) (bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	delete(b.st.presence, keys.PresenceMember(pod, user))
	if b.st.onlineLocked(user) {
		return false, nil
	}
	// Offline now, and reported so by this call: drop the user's expired
	// marks too, or a later Sweep would report them offline a second time.
	for m := range b.st.presence {
		if keys.PresenceUser(m) == user {
			delete(b.st.presence, m)
		}
	}
	return true, nil
}

func (st *store) onlineLocked(user string) bool {
	now := st.now()
	for m, exp := range st.presence {
		if keys.PresenceUser(m) == user && now.Before(exp) {
			return true
		}
	}
	return false
}

// Online implements chat.Presence.
func (b *Backend) Online(_ context.Context, limit int) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	seen := map[string]bool{}
	var out []string
	for m, exp := range b.st.presence {
		u := keys.PresenceUser(m)
		if now.Before(exp) && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// OnlineAmong implements chat.Presence.
func (b *Backend) OnlineAmong(_ context.Context, users []string) (map[string]bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	asked := make(map[string]bool, len(users))
	for _, u := range users {
		asked[u] = true
	}
	now := b.st.now()
	out := map[string]bool{}
	for m, exp := range b.st.presence {
		if u := keys.PresenceUser(m); asked[u] && now.Before(exp) {
			out[u] = true
		}
	}
	return out, nil
}

// Sweep implements chat.Presence.
func (b *Backend) Sweep(context.Context) ([]string, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	candidates := map[string]bool{}
	for m, exp := range b.st.presence {
		if !now.Before(exp) {
			delete(b.st.presence, m)
			candidates[keys.PresenceUser(m)] = true
		}
	}
	var out []string
	for u := range candidates {
		if !b.st.onlineLocked(u) {
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out, nil
}

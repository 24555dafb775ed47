package memory

import (
	"context"
	"sort"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

// CreateUser implements auth.Store.
func (b *Backend) CreateUser(_ context.Context, u auth.User) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	if _, ok := b.st.users[u.Username]; ok {
		return auth.ErrUserExists
	}
	b.st.users[u.Username] = u
	return nil
}

// GetUser implements auth.Store.
func (b *Backend) GetUser(_ context.Context, username string) (auth.User, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	u, ok := b.st.users[username]
	if !ok {
		return auth.User{}, auth.ErrNotFound
	}
	return u, nil
}

// CreateSession implements auth.Store.
func (b *Backend) CreateSession(_ context.Context, s auth.Session, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	b.st.sessions[s.TokenHash] = sessionEntry{s: s, expires: b.st.now().Add(ttl)}
	return nil
}

// TouchSession implements auth.Store.
func (b *Backend) TouchSession(_ context.Context, tokenHash string, ttl time.Duration) (auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	e, ok := b.st.sessions[tokenHash]
	if !ok || !now.Before(e.expires) {
		delete(b.st.sessions, tokenHash)
		return auth.Session{}, auth.ErrNotFound
	}
	e.s.LastSeenAt = now
	e.expires = now.Add(ttl)
	b.st.sessions[tokenHash] = e
	return e.s, nil
}

// Sessions implements auth.Store.
func (b *Backend) Sessions(_ context.Context, username string) ([]auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	var out []auth.Session
	for h, e := range b.st.sessions {
		if !now.Before(e.expires) {
			delete(b.st.sessions, h)
			continue
		}
		if e.s.Username == username {
			out = append(out, e.s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// DeleteSession implements auth.Store.
func (b *Backend) DeleteSession(_ context.Context, username, id string) (auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	for h, e := range b.st.sessions {
		if e.s.Username == username && e.s.ID == id {
			delete(b.st.sessions, h)
			return e.s, nil
		}
	}
	return auth.Session{}, auth.ErrNotFound
}

// DeleteSessions implements auth.Store.
func (b *Backend) DeleteSessions(_ context.Context, username string) ([]auth.Session, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	var out []auth.Session
	for h, e := range b.st.sessions {
		if e.s.Username == username {
			delete(b.st.sessions, h)
			out = append(out, e.s)
		}
	}
	return out, nil
}

// CountLogin implements auth.Store.
func (b *Backend) CountLogin(_ context.Context, key string, window time.Duration) (int, time.Duration, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	now := b.st.now()
	e := b.st.throttle[key]
	if !now.Before(e.ends) {
		e = throttleEntry{ends: now.Add(window)}
	}
	e.count++
	b.st.throttle[key] = e
	return e.count, e.ends.Sub(now), nil
}

// ForgiveLogin implements auth.Store.
func (b *Backend) ForgiveLogin(_ context.Context, key string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	e, ok := b.st.throttle[key]
	if !ok || !b.st.now().Before(e.ends) {
		delete(b.st.throttle, key)
		return nil
	}
	e.count = max(e.count-1, 0)
	b.st.throttle[key] = e
	return nil
}

// ResetLogin implements auth.Store.
func (b *Backend) ResetLogin(_ context.Context, key string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	delete(b.st.throttle, key)
	return nil
}

package memory

import (
	"context"
	"sort"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

// CreateUser implements auth.Store.
func (b *Backend) CreateUser(_ context.Context, u auth.User) error {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.users[u.Username]; ok {
		return auth.ErrUserExists
	}
	tx := st.batch()
	tx.put(bucketUsers, u.Username, userRecord{Username: u.Username, PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt})
	if err := tx.commit(); err != nil {
		return err
	}
	st.users[u.Username] = u
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

// putSessionLocked stores e, journaled first.
func (st *store) putSessionLocked(e sessionEntry) error {
	tx := st.batch()
	tx.put(bucketSessions, e.s.TokenHash, sessionToRecord(e))
	if err := tx.commit(); err != nil {
		return err
	}
	e.stored = e.expires
	st.sessions[e.s.TokenHash] = e
	return nil
}

// deleteSessionsLocked deletes the sessions of these token hashes, journaled first.
func (st *store) deleteSessionsLocked(hashes []string) error {
	tx := st.batch()
	for _, h := range hashes {
		tx.del(bucketSessions, h)
	}
	if err := tx.commit(); err != nil {
		return err
	}
	for _, h := range hashes {
		delete(st.sessions, h)
	}
	return nil
}

// CreateSession implements auth.Store.
func (b *Backend) CreateSession(_ context.Context, s auth.Session, ttl time.Duration) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	return b.st.putSessionLocked(sessionEntry{s: s, expires: b.st.now().Add(ttl)})
}

// TouchSession implements auth.Store.
func (b *Backend) TouchSession(_ context.Context, tokenHash string, ttl time.Duration) (auth.Session, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	e, ok := st.sessions[tokenHash]
	if !ok {
		return auth.Session{}, auth.ErrNotFound
	}
	if !now.Before(e.expires) {
		if err := st.deleteSessionsLocked([]string{tokenHash}); err != nil {
			return auth.Session{}, err
		}
		return auth.Session{}, auth.ErrNotFound
	}
	e.s.LastSeenAt = now
	e.expires = now.Add(ttl)
	if e.expires.Sub(e.stored) < touchSlack {
		st.sessions[tokenHash] = e
		return e.s, nil
	}
	if err := st.putSessionLocked(e); err != nil {
		return auth.Session{}, err
	}
	return e.s, nil
}

// Sessions implements auth.Store.
func (b *Backend) Sessions(_ context.Context, username string) ([]auth.Session, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	now := st.now()
	var (
		out     []auth.Session
		expired []string
	)
	for h, e := range st.sessions {
		if !now.Before(e.expires) {
			expired = append(expired, h)
			continue
		}
		if e.s.Username == username {
			out = append(out, e.s)
		}
	}
	if err := st.deleteSessionsLocked(expired); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// DeleteSession implements auth.Store.
func (b *Backend) DeleteSession(_ context.Context, username, id string) (auth.Session, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	for h, e := range st.sessions {
		if e.s.Username == username && e.s.ID == id {
			if err := st.deleteSessionsLocked([]string{h}); err != nil {
				return auth.Session{}, err
			}
			return e.s, nil
		}
	}
	return auth.Session{}, auth.ErrNotFound
}

// DeleteSessions implements auth.Store.
func (b *Backend) DeleteSessions(_ context.Context, username string) ([]auth.Session, error) {
	st := b.st
	st.mu.Lock()
	defer st.mu.Unlock()
	var (
		out    []auth.Session
		hashes []string
	)
	for h, e := range st.sessions {
		if e.s.Username == username {
			hashes = append(hashes, h)
			out = append(out, e.s)
		}
	}
	if err := st.deleteSessionsLocked(hashes); err != nil {
		return nil, err
	}
	return out, nil
}

// CountLogin implements auth.Store. Throttling windows are not journaled:
// they last minutes, and a restart forgetting them costs nothing.
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

package auth

import (
	"context"
	"errors"
	"time"
)

// Store errors.
var (
	ErrUserExists = errors.New("username is taken")
	ErrNotFound   = errors.New("not found")
)

// User is a stored account.
type User struct {
	Username     string
	PasswordHash []byte
	CreatedAt    time.Time
}

// Session is a stored login session. The token itself is never stored:
// TokenHash is the hex SHA-256 of it, and ID (a prefix of TokenHash) is the
// public handle used to list and revoke sessions.
type Session struct {
	ID         string    `json:"id"`
	TokenHash  string    `json:"-"`
	Username   string    `json:"-"`
	CreatedAt  time.Time `json:"createdAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
	UserAgent  string    `json:"userAgent"`
	IP         string    `json:"ip"`
}

// Store keeps accounts, sessions and login throttling state.
//
// Contract, checked by chatserver/backend/backendtest on every implementation:
//   - CreateUser fails with ErrUserExists when the username is taken (atomically:
//     of two concurrent creates exactly one wins). GetUser fails with ErrNotFound.
//   - CreateSession stores s until now+ttl. TouchSession returns the session with
//     that token hash and slides its expiry to now+ttl (LastSeenAt = now); an
//     expired or deleted session is ErrNotFound.
//   - Sessions lists a user's live sessions. DeleteSession deletes the user's session
//     with that ID (ErrNotFound if none). DeleteSessions deletes all of the user's
//     sessions and returns them.
//   - CountLogin counts a login attempt for key in a fixed window that starts at
//     the key's first attempt, returning the new count and the time until the
//     window ends. Counting is atomic across servers: of n concurrent counts
//     of one key, each sees a different count. Login counts before it checks
//     the password, so this is what makes throttling impossible to race.
//   - ForgiveLogin takes back one attempt of key's current window (the attempt
//     succeeded); it never goes below zero, never moves the window, and does
//     nothing when key has no window. ResetLogin clears key.
//   - Errors reaching storage are returned wrapped; they are never ErrNotFound.
type Store interface {
	CreateUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, username string) (User, error)
	CreateSession(ctx context.Context, s Session, ttl time.Duration) error
	TouchSession(ctx context.Context, tokenHash string, ttl time.Duration) (Session, error)
	Sessions(ctx context.Context, username string) ([]Session, error)
	DeleteSession(ctx context.Context, username, id string) (Session, error)
	DeleteSessions(ctx context.Context, username string) ([]Session, error)
	CountLogin(ctx context.Context, key string, window time.Duration) (count int, retryAfter time.Duration, err error)
	ForgiveLogin(ctx context.Context, key string) error
	ResetLogin(ctx context.Context, key string) error
}

// Package auth is accounts and login sessions: registration, bcrypt password
// checks with bounded concurrency and uniform failures, login throttling, and
// session tokens of which only a hash is ever stored.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Errors the HTTP layer maps to statuses. Their messages are shown to people.
var (
	ErrInvalidCredentials = errors.New("invalid username or password")
	ErrRegistrationClosed = errors.New("registration is closed")
	ErrUnauthenticated    = errors.New("not logged in, or the session expired")
	ErrBusy               = errors.New("server is busy, try again")
	ErrInvalidUsername    = errors.New("username must be 3 to 32 of a-z, 0-9, '_', '.', '-'")
	ErrPasswordTooShort   = errors.New("password must be at least 8 bytes")
	ErrPasswordTooLong    = errors.New("password must be at most 72 bytes (bcrypt's limit); it is never truncated")
	ErrSessionNotFound    = errors.New("no such session")
)

// ThrottledError says how long to wait before trying to log in again.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed logins, try again in %s", e.RetryAfter.Round(time.Second))
}

// Options configure a Service.
type Options struct {
	BcryptCost        int
	BcryptConcurrency int
	SessionTTL        time.Duration
	RegistrationOpen  bool
	// MaxFailures is how many failed logins as one username from one client
	// address ThrottleWindow allows; past it, that username is refused from
	// that address (and only from there: its owner can still log in from
	// anywhere else). Zero means 10.
	MaxFailures int
	// MaxFailuresPerIP is how many failed logins one client address may make
	// in ThrottleWindow, whatever the usernames. Keep it above MaxFailures: an
	// address may be a whole office behind NAT. Zero means 5 × MaxFailures.
	MaxFailuresPerIP int
	// ThrottleWindow is the fixed window of both counts, starting at a
	// budget's first attempt. Zero means a minute.
	ThrottleWindow time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service implements accounts and sessions over a Store.
type Service struct {
	store Store
	opts  Options
	sem   chan struct{}
	dummy []byte
	// hashNS is how long a bcrypt comparison took lately (nanoseconds, a
	// moving average), which withBcrypt reserves of a request's time.
	hashNS atomic.Int64
}

// New returns a Service. It computes one dummy bcrypt hash at the configured
// cost, compared against when a username is unknown so that failures for
// unknown users and wrong passwords take the same time.
func New(store Store, opts Options) (*Service, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BcryptConcurrency < 1 {
		opts.BcryptConcurrency = 1
	}
	if opts.ThrottleWindow <= 0 {
		opts.ThrottleWindow = time.Minute
	}
	if opts.MaxFailures < 1 {
		opts.MaxFailures = 10
	}
	if opts.MaxFailuresPerIP < 1 {
		opts.MaxFailuresPerIP = 5 * opts.MaxFailures
	}
	start := time.Now()
	dummy, err := bcrypt.GenerateFromPassword([]byte("hubbub-dummy-password"), opts.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("computing dummy hash: %w", err)
	}
	s := &Service{store: store, opts: opts, sem: make(chan struct{}, opts.BcryptConcurrency), dummy: dummy}
	s.hashNS.Store(int64(time.Since(start)))
	return s, nil
}

// NormalizeUsername case-folds and validates a username.
func NormalizeUsername(name string) (string, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if !protocol.ValidUsername(name) {
		return "", ErrInvalidUsername
	}
	return name, nil
}

// ValidatePassword enforces 8..72 bytes. bcrypt ignores bytes past 72, so
// longer passwords are refused rather than silently truncated.
func ValidatePassword(pw string) error {
	switch {
	case len(pw) < 8:
		return ErrPasswordTooShort
	case len(pw) > 72:
		return ErrPasswordTooLong
	}
	return nil
}

// withBcrypt runs f while holding one of the bounded bcrypt slots, so a flood
// of logins queues here instead of starving message delivery of CPU.
//
// A request takes a slot only while it has time left for a comparison and
// for what follows it (reserve): one that got a slot later would spend a
// comparison and then reach its deadline while storing its session. In a
// reconnect storm with logins that was nearly all of them (1,907
// comparisons wasted to 50 sessions made in 7 minutes). Such a request is
// refused as busy as soon as it can no longer make it, and its client tries
// again.
func (s *Service) withBcrypt(ctx context.Context, f func()) error {
	wait := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, dl.Add(-s.reserve()))
		defer cancel()
	}
	select {
	case s.sem <- struct{}{}:
	case <-wait.Done():
		return busy(ctx)
	}
	defer func() { <-s.sem }()
	if wait.Err() != nil {
		// There was no time to begin with, or the slot came as it ran out.
		return busy(ctx)
	}
	start := time.Now()
	f()
	took := int64(time.Since(start))
	// A moving average over about eight comparisons: it follows the CPU a
	// loaded server has left for bcrypt. Two slots finishing at once may
	// lose one sample; it is an estimate.
	s.hashNS.Store((7*s.hashNS.Load() + took) / 8)
	return nil
}

// busy is withBcrypt's refusal: the request's own end, or too little time
// left before it.
func busy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return fmt.Errorf("%w: no time left for a password check", ErrBusy)
}

// reserve is the time a request needs left to take a bcrypt slot: twice a
// recent comparison (the one to come, and the writes after it on a server
// as loaded), and at least 100 ms.
func (s *Service) reserve() time.Duration {
	return max(2*time.Duration(s.hashNS.Load()), 100*time.Millisecond)
}

// Register creates an account. It returns the normalized username.
func (s *Service) Register(ctx context.Context, username, password string) (string, error) {
	if !s.opts.RegistrationOpen {
		return "", ErrRegistrationClosed
	}
	return s.CreateUser(ctx, username, password)
}

// CreateUser creates an account regardless of the registration mode (for
// bootstrap users). It fails with ErrUserExists when the name is taken.
func (s *Service) CreateUser(ctx context.Context, username, password string) (string, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return "", err
	}
	if err := ValidatePassword(password); err != nil {
		return "", err
	}
	var hash []byte
	var herr error
	if err := s.withBcrypt(ctx, func() { hash, herr = bcrypt.GenerateFromPassword([]byte(password), s.opts.BcryptCost) }); err != nil {
		return "", err
	}
	if herr != nil {
		return "", fmt.Errorf("hashing password: %w", herr)
	}
	if err := s.store.CreateUser(ctx, User{Username: name, PasswordHash: hash, CreatedAt: s.opts.Now()}); err != nil {
		return "", err
	}
	return name, nil
}

// LoginRequest carries what a login needs besides credentials.
type LoginRequest struct {
	Username, Password string
	IP, UserAgent      string
}

// Login checks credentials and creates a session. It returns the new
// session and its token (shown to the client once, never stored).
// Unknown users and wrong passwords fail alike with ErrInvalidCredentials;
// a client over its login budget gets a *ThrottledError.
func (s *Service) Login(ctx context.Context, req LoginRequest) (Session, string, error) {
	if len(req.Password) > 72 {
		return Session{}, "", ErrPasswordTooLong
	}
	name := strings.ToLower(strings.TrimSpace(req.Username))
	keys := throttleKeysFor(name, req.IP)
	if err := s.countAttempt(ctx, keys); err != nil {
		return Session{}, "", err
	}
	ok, err := s.checkPassword(ctx, name, req.Password)
	if err != nil {
		return Session{}, "", err
	}
	if !ok {
		// The attempt was counted before the check; it stays counted.
		return Session{}, "", ErrInvalidCredentials
	}
	if err := s.forgiveAttempt(ctx, keys); err != nil {
		return Session{}, "", err
	}

	token, tokenHash, err := newToken()
	if err != nil {
		return Session{}, "", err
	}
	now := s.opts.Now()
	sess := Session{
		ID: SessionID(tokenHash), TokenHash: tokenHash, Username: name,
		CreatedAt: now, LastSeenAt: now, UserAgent: protocol.Truncate(req.UserAgent, 200), IP: req.IP,
	}
	if err := s.store.CreateSession(ctx, sess, s.opts.SessionTTL); err != nil {
		return Session{}, "", fmt.Errorf("storing session: %w", err)
	}
	return sess, token, nil
}

// throttleKeys are the budgets one login attempt spends.
type throttleKeys struct {
	// addr is the client address's budget, shared by every username.
	addr string
	// user is the (username, client address) budget; empty when the name
	// cannot be a username, as no such login can succeed anyway.
	user string
}

// throttleKeysFor keys a login by client address and by (username, address),
// never by username alone: a flood against a name from one address must not
// stop its owner logging in from another.
func throttleKeysFor(name, ip string) throttleKeys {
	addr := throttleAddr(ip)
	k := throttleKeys{addr: "ip:" + addr}
	if protocol.ValidUsername(name) {
		// A username holds no ':', so the key is unambiguous.
		k.user = "user:" + name + ":" + addr
	}
	return k
}

// throttleAddr is the client address as throttling counts it. An IPv6
// client counts by its /64: a single host commonly holds a whole /64 and
// could otherwise step through it for fresh budgets.
func throttleAddr(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// countAttempt spends one attempt of the address's budget, then one of the
// (username, address) budget, and refuses the login once either is over.
// It runs before bcrypt and the count is the store's atomic increment, so
// however many guesses arrive at once, at most the limit of them are
// checked. A refused attempt still counts against the address (one that
// keeps trying stays refused) but, being refused there first, not against
// the username.
func (s *Service) countAttempt(ctx context.Context, k throttleKeys) error {
	if err := s.spend(ctx, k.addr, s.opts.MaxFailuresPerIP); err != nil {
		return err
	}
	if k.user == "" {
		return nil
	}
	return s.spend(ctx, k.user, s.opts.MaxFailures)
}

func (s *Service) spend(ctx context.Context, key string, limit int) error {
	n, retry, err := s.store.CountLogin(ctx, key, s.opts.ThrottleWindow)
	if err != nil {
		return fmt.Errorf("counting login attempt: %w", err)
	}
	if n > limit {
		return &ThrottledError{RetryAfter: max(retry, time.Second)}
	}
	return nil
}

// forgiveAttempt settles a successful login. Its (username, address) budget
// starts over: the owner has shown they know the password from there. The
// address's budget gets back only this attempt, so that logging in to an
// account of one's own never buys guesses at anybody else's.
func (s *Service) forgiveAttempt(ctx context.Context, k throttleKeys) error {
	if err := s.store.ResetLogin(ctx, k.user); err != nil {
		return fmt.Errorf("resetting login throttle: %w", err)
	}
	if err := s.store.ForgiveLogin(ctx, k.addr); err != nil {
		return fmt.Errorf("forgiving login attempt: %w", err)
	}
	return nil
}

// checkPassword compares password with name's hash, or with the dummy hash
// when there is no such user, so that both cost one bcrypt comparison.
func (s *Service) checkPassword(ctx context.Context, name, password string) (bool, error) {
	hash, known := s.dummy, false
	if protocol.ValidUsername(name) {
		u, err := s.store.GetUser(ctx, name)
		switch {
		case err == nil:
			hash, known = u.PasswordHash, true
		case !errors.Is(err, ErrNotFound):
			return false, fmt.Errorf("loading user: %w", err)
		}
	}
	var cmpErr error
	if err := s.withBcrypt(ctx, func() { cmpErr = bcrypt.CompareHashAndPassword(hash, []byte(password)) }); err != nil {
		return false, err
	}
	return known && cmpErr == nil, nil
}

// Authenticate resolves a token to its session and slides its expiry. It is
// the one session check behind both HTTP requests and WebSocket handshakes.
func (s *Service) Authenticate(ctx context.Context, token string) (Session, error) {
	if token == "" || len(token) > 128 {
		return Session{}, ErrUnauthenticated
	}
	sess, err := s.store.TouchSession(ctx, HashToken(token), s.opts.SessionTTL)
	if errors.Is(err, ErrNotFound) {
		return Session{}, ErrUnauthenticated
	}
	if err != nil {
		return Session{}, fmt.Errorf("loading session: %w", err)
	}
	return sess, nil
}

// Sessions lists a user's sessions.
func (s *Service) Sessions(ctx context.Context, username string) ([]Session, error) {
	return s.store.Sessions(ctx, username)
}

// Revoke deletes one of the user's sessions.
func (s *Service) Revoke(ctx context.Context, username, id string) (Session, error) {
	sess, err := s.store.DeleteSession(ctx, username, id)
	if errors.Is(err, ErrNotFound) {
		return Session{}, ErrSessionNotFound
	}
	return sess, err
}

// RevokeAll deletes all of the user's sessions.
func (s *Service) RevokeAll(ctx context.Context, username string) ([]Session, error) {
	return s.store.DeleteSessions(ctx, username)
}

// HashToken is the hex SHA-256 of a token: what the store keys sessions by.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// SessionID is the public id of a session: a prefix of its token hash, which
// reveals nothing usable about the token.
func SessionID(tokenHash string) string { return tokenHash[:16] }

func newToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generating token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

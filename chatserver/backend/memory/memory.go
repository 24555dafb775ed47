// Package memory is the in-process backend: every storage and fan-out
// contract of the chat server, held in one process's memory. It is the
// single-process server's store (made durable by a Journal: see journal.go
// and chatserver/backend/embedded), and the second implementation the
// behaviour suite (chatserver/backend/backendtest) holds the Redis backend to.
package memory

import (
	"context"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var (
	_ chat.Backend = (*Backend)(nil)
	_ auth.Store   = (*Backend)(nil)
)

// dedupTTL is how long a clientId is remembered (the Log contract's 24 hours).
const dedupTTL = 24 * time.Hour

// store is the state that peers share, as servers share one Redis.
type store struct {
	mu       sync.Mutex
	now      func() time.Time
	channels map[string]*channelLog
	dedup    map[string]dedupEntry
	feeds    map[*Backend]struct{}
	presence map[string]time.Time // "<pod>/<user>" -> expiry
	reads    map[string]map[string]string
	dms      map[string]map[string]struct{}
	users    map[string]auth.User
	sessions map[string]sessionEntry // token hash -> session
	throttle map[string]throttleEntry
	catalog  map[string]chat.ChannelMeta
	members  map[string]map[string]bool     // channel -> member -> admin
	joined   map[string]map[string]struct{} // user -> created channels (members, inverted)
	// journal, when set, receives every durable change before it takes
	// effect here (see journal.go); nil keeps the store in memory only.
	journal Journal
}

type channelLog struct {
	msgs []protocol.Message
	last protocol.ID
}

type dedupEntry struct {
	msg     protocol.Message
	expires time.Time
}

type sessionEntry struct {
	s       auth.Session
	expires time.Time
	// stored is the expiry the journal last wrote: a touch that slides the
	// expiry by less than touchSlack is kept in memory only.
	stored time.Time
}

// touchSlack bounds how far a session's expiry in memory may run ahead of
// the journal's. Every authenticated request slides its session; written
// through, each would be a disk sync. A restart may so end a session up
// to this much early.
const touchSlack = time.Minute

type throttleEntry struct {
	count int
	ends  time.Time
}

// Backend is one server's handle on a memory store.
type Backend struct {
	st *store

	mu       sync.Mutex
	cond     *sync.Cond
	queue    []delivery
	follows  map[string]protocol.ID
	stopping bool
}

type delivery struct {
	channel string
	msgs    []protocol.Message
	event   *chat.Event
}

// New returns a backend with a fresh, empty store.
func New() *Backend {
	return newBackend(newStore(time.Now))
}

func newStore(now func() time.Time) *store {
	return &store{
		now:      now,
		channels: map[string]*channelLog{},
		dedup:    map[string]dedupEntry{},
		feeds:    map[*Backend]struct{}{},
		presence: map[string]time.Time{},
		reads:    map[string]map[string]string{},
		dms:      map[string]map[string]struct{}{},
		users:    map[string]auth.User{},
		sessions: map[string]sessionEntry{},
		throttle: map[string]throttleEntry{},
		catalog:  map[string]chat.ChannelMeta{},
		members:  map[string]map[string]bool{},
		joined:   map[string]map[string]struct{}{},
	}
}

func newBackend(st *store) *Backend {
	b := &Backend{st: st, follows: map[string]protocol.ID{}}
	b.cond = sync.NewCond(&b.mu)
	st.mu.Lock()
	st.feeds[b] = struct{}{}
	st.mu.Unlock()
	return b
}

// Peer returns another handle on the same store: a second "server" in the
// same process, as two pods share one Redis.
func (b *Backend) Peer() *Backend { return newBackend(b.st) }

// Ping always succeeds: memory is always reachable.
func (b *Backend) Ping(context.Context) error { return nil }

// Close detaches this handle from the store.
func (b *Backend) Close() error {
	b.st.mu.Lock()
	delete(b.st.feeds, b)
	b.st.mu.Unlock()
	return nil
}

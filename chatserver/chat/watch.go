package chat

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Presence is scoped: a socket receives presence only for the people it
// watches (a watch frame names them, at most protocol.MaxWatch), which is
// about what a client shows: its DMs and a page of the people list. So a
// person connecting costs the sockets that show them, not every socket in
// the room: with presence for everyone, a drain that moved 10,000 sockets of
// 1,000 people cost each of them 1,000 presence objects, 10^7 in all, and
// each hello listed up to 1,000 names.

// watchers is the index of who watches whom on this server: watched user ->
// the sockets watching them, and each socket's own list to undo it.
type watchers struct {
	mu    sync.RWMutex
	by    map[string]map[*conn]struct{}
	lists map[*conn][]string
}

// set replaces the people c watches with users (sorted, distinct).
func (w *watchers) set(c *conn, users []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropLocked(c)
	if len(users) == 0 {
		return
	}
	if w.by == nil {
		w.by, w.lists = map[string]map[*conn]struct{}{}, map[*conn][]string{}
	}
	for _, u := range users {
		set := w.by[u]
		if set == nil {
			set = map[*conn]struct{}{}
			w.by[u] = set
		}
		set[c] = struct{}{}
	}
	w.lists[c] = users
}

// watched lists the people some socket here watches.
func (w *watchers) watched() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return slices.Collect(maps.Keys(w.by))
}

// drop forgets c (its socket closed).
func (w *watchers) drop(c *conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.dropLocked(c)
}

func (w *watchers) dropLocked(c *conn) {
	for _, u := range w.lists[c] {
		set := w.by[u]
		delete(set, c)
		if len(set) == 0 {
			delete(w.by, u)
		}
	}
	delete(w.lists, c)
}

// batch sorts a presence batch (user -> status) out per socket: each
// watching socket's objects, pre-joined with newlines (one queue entry, and
// usually one frame, however many of its people changed), and how many.
func (w *watchers) batch(pending map[string]string) map[*conn]presenceEntry {
	out := map[*conn]presenceEntry{}
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, u := range slices.Sorted(maps.Keys(pending)) {
		set := w.by[u]
		if len(set) == 0 {
			continue
		}
		obj := protocol.Encode(protocol.Presence{Type: protocol.TypePresence, User: u, Status: pending[u]})
		for c := range set {
			e := out[c]
			e.add(obj)
			out[c] = e
		}
	}
	return out
}

// presenceEntry is one socket's share of a presence batch.
type presenceEntry struct {
	b []byte
	n int
}

func (e *presenceEntry) add(obj []byte) {
	if e.n > 0 {
		e.b = append(e.b, '\n')
	}
	e.b = append(e.b, obj...)
	e.n++
}

// handleWatch replaces the people this socket receives presence for, and
// answers with each one's status now. The socket is registered as a
// watcher before storage is read, so a change that lands in between
// arrives after the answer: what the client is left with is current.
func (c *conn) handleWatch(ctx context.Context, f protocol.ClientFrame) {
	c.s.watch.set(c, f.Users)
	if len(f.Users) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	online, err := c.s.b.OnlineAmong(cctx, f.Users)
	if err != nil {
		c.s.backendError("presence_watch", err)
		c.sendError(&protocol.Error{Code: protocol.CodeUnavailable, Message: "presence unavailable, watch again later"})
		return
	}
	var e presenceEntry
	for _, u := range f.Users {
		status := "offline"
		if online[u] {
			status = "online"
		}
		e.add(protocol.Encode(protocol.Presence{Type: protocol.TypePresence, User: u, Status: status}))
	}
	if c.out.enqueue(e.b) {
		c.s.objs.out(protocol.TypePresence).Add(float64(e.n))
	}
}

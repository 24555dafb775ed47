// The people directory and the channel browser: paged lists by name.

package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// page is a list request: ?q=PREFIX&after=NAME&limit=N (and for people,
// &online=true).
type page struct {
	prefix, after string
	limit         int
	online        bool
}

// readPage parses a list request; names are compared case-folded, and may
// hold only what a username or channel name may.
func readPage(w http.ResponseWriter, r *http.Request) (page, bool) {
	q := r.URL.Query()
	p := page{prefix: strings.ToLower(q.Get("q")), after: strings.ToLower(q.Get("after")), limit: 50}
	for _, f := range []struct{ name, v string }{{"q", p.prefix}, {"after", p.after}} {
		if len(f.v) > 64 || strings.Trim(f.v, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != "" {
			WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, fmt.Sprintf("%s: at most 64 of a-z 0-9 _ . -", f.name))
			return page{}, false
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > chat.MaxPage {
			WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, fmt.Sprintf("limit must be 1..%d", chat.MaxPage))
			return page{}, false
		}
		p.limit = n
	}
	switch q.Get("online") {
	case "", "false":
	case "true":
		p.online = true
	default:
		WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, "online must be true or false")
		return page{}, false
	}
	return p, true
}

// paged answers a page of items under key, with "next": the after of the
// next page, "" on the last. items holds up to one more than the page: the
// sign that another follows.
func paged[T any](w http.ResponseWriter, p page, key string, items []T, name func(T) string) {
	next := ""
	if len(items) > p.limit {
		items = items[:p.limit]
		next = name(items[len(items)-1])
	}
	if items == nil {
		items = []T{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{key: items, "next": next})
}

// listHandler answers a paged list: list reads up to p.limit+1 items (one
// more says another page follows), name names an item for "next".
func listHandler[T any](a *API, key string, name func(T) string, list func(r *http.Request, p page) ([]T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := readPage(w, r)
		if !ok {
			return
		}
		items, err := list(r, p)
		if err != nil {
			a.channelError(w, r, err, channelParam(r), "")
			return
		}
		paged(w, p, key, items, name)
	}
}

func personName(x chat.Person) string { return x.Username }

func (a *API) handleUsers() http.HandlerFunc {
	return listHandler(a, "users", personName, func(r *http.Request, p page) ([]chat.Person, error) {
		if p.online {
			return a.opts.Chat.OnlinePeople(r.Context(), p.prefix, p.after, p.limit+1)
		}
		return a.opts.Chat.People(r.Context(), p.prefix, p.after, p.limit+1)
	})
}

func (a *API) handleBrowse() http.HandlerFunc {
	return listHandler(a, "channels", func(x chat.PublicChannel) string { return x.Name }, func(r *http.Request, p page) ([]chat.PublicChannel, error) {
		return a.opts.Chat.BrowseChannels(r.Context(), sessionFrom(r).Username, p.prefix, p.after, p.limit+1)
	})
}

func (a *API) handleMembers() http.HandlerFunc {
	return listHandler(a, "members", personName, func(r *http.Request, p page) ([]chat.Person, error) {
		return a.opts.Chat.Members(r.Context(), sessionFrom(r).Username, channelParam(r), p.after, p.limit+1)
	})
}

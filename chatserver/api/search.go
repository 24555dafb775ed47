package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/search"
)

// handleSearch answers GET /api/v1/search?q=&channel=&limit=&before=: the
// messages containing every word of q, newest first, in the channel named
// or in every channel the person is in.
func (a *API) handleSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	text := strings.TrimSpace(q.Get("q"))
	switch {
	case text == "":
		WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, "q: say what to search for")
		return
	case len(text) > chat.MaxSearchBytes:
		WriteError(w, http.StatusBadRequest, protocol.CodeTooLarge, fmt.Sprintf("q: at most %d bytes", chat.MaxSearchBytes))
		return
	}
	before := q.Get("before")
	if before != "" {
		if err := search.ParseCursor(before); err != nil {
			WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, "before: "+err.Error()+" (pass the next of a previous page)")
			return
		}
	}
	limit, ok := pageLimit(w, q.Get("limit"))
	if !ok {
		return
	}
	channel := strings.ToLower(q.Get("channel"))
	page, err := a.opts.Chat.Search(r.Context(), sessionFrom(r).Username, channel, text, before, limit)
	switch {
	case errors.Is(err, search.ErrIndexing):
		// A channel's first search on this server indexes its history:
		// that goes on, and a search in a moment finds it done.
		w.Header().Set("Retry-After", "2")
		WriteError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "the search index of these channels is being built: try again in a few seconds")
		return
	case errors.Is(err, chat.ErrNoSearch):
		a.log.Error("search failed", "err", err)
		WriteError(w, http.StatusNotImplemented, protocol.CodeUnavailable, chat.ErrNoSearch.Error())
		return
	case err != nil:
		a.channelError(w, r, err, channel, "")
		return
	}
	out := make([]any, len(page.Messages))
	for i, m := range page.Messages {
		out[i] = protocol.HistoryEntry(m)
	}
	body := map[string]any{"messages": out}
	if page.Next != "" {
		body["next"] = page.Next
	}
	WriteJSON(w, http.StatusOK, body)
}

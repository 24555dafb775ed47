// Channel handlers: the user's channels and a channel's history pages.

package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

func (a *API) handleChannels(w http.ResponseWriter, r *http.Request) {
	chans, err := a.opts.Chat.Channels(r.Context(), sessionFrom(r).Username)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"channels": chans})
}

func (a *API) handleHistory(w http.ResponseWriter, r *http.Request) {
	channel := r.PathValue("channel")
	q := r.URL.Query()
	before := q.Get("before")
	if before != "" {
		if _, err := protocol.ParseID(before); err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", "before: "+err.Error())
			return
		}
	}
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > chat.MaxHistoryPage {
			WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit must be 1..%d", chat.MaxHistoryPage))
			return
		}
		limit = n
	}
	msgs, err := a.opts.Chat.History(r.Context(), sessionFrom(r).Username, channel, before, limit)
	switch {
	case errors.Is(err, chat.ErrForbidden):
		WriteError(w, http.StatusForbidden, "forbidden", "you are not a member of this channel")
		return
	case errors.Is(err, chat.ErrUnknownChannel):
		WriteError(w, http.StatusNotFound, "unknown_channel", "no such channel")
		return
	case err != nil:
		a.internalError(w, r, err)
		return
	}
	if msgs == nil {
		msgs = []protocol.Message{}
	}
	WriteJSON(w, http.StatusOK, map[string]any{"messages": msgs})
}

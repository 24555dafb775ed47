// Session handlers: list the user's sessions, revoke one or all of them.

package api

import (
	"errors"
	"net/http"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

type sessionView struct {
	auth.Session
	Current bool `json:"current"`
}

func (a *API) handleSessions(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r)
	list, err := a.opts.Auth.Sessions(r.Context(), me.Username)
	if err != nil {
		a.internalError(w, r, err)
		return
	}
	out := make([]sessionView, 0, len(list))
	for _, s := range list {
		out = append(out, sessionView{Session: s, Current: s.ID == me.ID})
	}
	WriteJSON(w, http.StatusOK, map[string]any{"sessions": out})
}

func (a *API) handleRevoke(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r)
	id := r.PathValue("id")
	if _, err := a.opts.Auth.Revoke(r.Context(), me.Username, id); errors.Is(err, auth.ErrSessionNotFound) {
		WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	} else if err != nil {
		a.internalError(w, r, err)
		return
	}
	if err := a.opts.Chat.RevokeSessions(r.Context(), me.Username, []string{id}); err != nil {
		// The session is gone from storage; sockets elsewhere still close at
		// their next session check.
		a.log.Warn("announcing revocation", "err", err)
	}
	if id == me.ID {
		a.clearCookie(w, r)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) handleRevokeAll(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r)
	if _, err := a.opts.Auth.RevokeAll(r.Context(), me.Username); err != nil {
		a.internalError(w, r, err)
		return
	}
	if err := a.opts.Chat.RevokeSessions(r.Context(), me.Username, nil); err != nil {
		a.log.Warn("announcing revocation", "err", err)
	}
	a.clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

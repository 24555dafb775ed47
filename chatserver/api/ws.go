// The /ws handshake: origin and session checks, the upgrade, and the hand-off
// of the socket to the chat service.

package api

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/wsconn"
)

// writeBufferPool lends WebSocket write buffers for the length of one write.
var writeBufferPool sync.Pool

func (a *API) handleWS(w http.ResponseWriter, r *http.Request) {
	if !a.wsOriginAllowed(r) {
		a.m.Auth.WithLabelValues("bad_origin").Inc()
		WriteError(w, http.StatusForbidden, "bad_origin", "WebSocket origin not allowed")
		return
	}
	sess, ok := a.authenticate(w, r, false)
	if !ok {
		return
	}
	// Over the per-user connection limit the upgrade still happens: the
	// client then sees the documented close code 4429, not a bare HTTP error.
	ws, err := wsconn.Upgrade(&a.upgrader, w, r, nil)
	if err != nil {
		return // the upgrader has written the HTTP error
	}
	user, id := sess.Username, sess.ID
	token, _ := credentials(r)
	// The socket runs on the chat service's goroutine; returning here lets
	// net/http free this request's buffers and stack.
	a.opts.Chat.Start(ws, chat.Peer{
		User: user, Session: id,
		Check: func(ctx context.Context) error {
			_, err := a.opts.Auth.Authenticate(ctx, token)
			if errors.Is(err, auth.ErrUnauthenticated) {
				return chat.ErrSessionGone
			}
			return err
		},
	})
}

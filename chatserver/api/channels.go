// Channel handlers: the user's channels, a channel's history pages, and
// the channels people create: create, join, leave, add and remove members.

package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

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
	channel := channelParam(r)
	q := r.URL.Query()
	before := q.Get("before")
	if before != "" {
		if _, err := protocol.ParseID(before); err != nil {
			WriteError(w, http.StatusBadRequest, "bad_request", "before: "+err.Error())
			return
		}
	}
	limit, ok := pageLimit(w, q.Get("limit"))
	if !ok {
		return
	}
	msgs, err := a.opts.Chat.History(r.Context(), sessionFrom(r).Username, channel, before, limit)
	if err != nil {
		a.channelError(w, r, err, channel, "")
		return
	}
	out := make([]any, len(msgs))
	for i, m := range msgs {
		out[i] = protocol.HistoryEntry(m)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"messages": out})
}

func (a *API) handleThread(w http.ResponseWriter, r *http.Request) {
	channel, root := channelParam(r), r.PathValue("id")
	if _, err := protocol.ParseID(root); err != nil {
		WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, "id: "+err.Error())
		return
	}
	q := r.URL.Query()
	after := q.Get("after")
	if after != "" {
		if _, err := protocol.ParseID(after); err != nil {
			WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, "after: "+err.Error())
			return
		}
	}
	limit, ok := pageLimit(w, q.Get("limit"))
	if !ok {
		return
	}
	rootMsg, replies, err := a.opts.Chat.Thread(r.Context(), sessionFrom(r).Username, channel, root, after, limit)
	switch {
	case errors.Is(err, chat.ErrUnknownMessage):
		WriteError(w, http.StatusNotFound, protocol.CodeUnknownMessage, fmt.Sprintf("no message %s in %q (or it was deleted, or is no longer kept)", root, channel))
		return
	case errors.Is(err, chat.ErrNotThreadRoot):
		WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, fmt.Sprintf("%s is a reply, not a thread's first message", root))
		return
	case err != nil:
		a.channelError(w, r, err, channel, "")
		return
	}
	out := make([]any, len(replies))
	for i, m := range replies {
		out[i] = protocol.HistoryEntry(m)
	}
	WriteJSON(w, http.StatusOK, map[string]any{"root": protocol.HistoryEntry(rootMsg), "replies": out})
}

// pageLimit parses a page's limit (default 50); false when it wrote the error.
func pageLimit(w http.ResponseWriter, s string) (int, bool) {
	if s == "" {
		return 50, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > chat.MaxHistoryPage {
		WriteError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit must be 1..%d", chat.MaxHistoryPage))
		return 0, false
	}
	return n, true
}

type createChannelRequest struct {
	Name    string `json:"name"`
	Private bool   `json:"private"`
}

func (a *API) handleCreateChannel(w http.ResponseWriter, r *http.Request) {
	var req createChannelRequest
	if !decodeBody(w, r, &req) {
		return
	}
	name := strings.ToLower(req.Name)
	meta, err := a.opts.Chat.CreateChannel(r.Context(), sessionFrom(r).Username, name, req.Private)
	if err != nil {
		a.channelError(w, r, err, name, "")
		return
	}
	WriteJSON(w, http.StatusCreated, map[string]any{"name": meta.Name, "private": meta.Private})
}

func (a *API) handleJoin(w http.ResponseWriter, r *http.Request) {
	a.ownMembership(w, r, a.opts.Chat.JoinChannel)
}

func (a *API) handleLeave(w http.ResponseWriter, r *http.Request) {
	a.ownMembership(w, r, a.opts.Chat.LeaveChannel)
}

// ownMembership answers a change of the person's own membership (join,
// leave): an empty JSON body, 204 or the change's error.
func (a *API) ownMembership(w http.ResponseWriter, r *http.Request, change func(ctx context.Context, user, channel string) error) {
	if !decodeBody(w, r, &struct{}{}) {
		return
	}
	channel, me := channelParam(r), sessionFrom(r).Username
	if err := change(r.Context(), me, channel); err != nil {
		a.channelError(w, r, err, channel, me)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type addMemberRequest struct {
	Username string `json:"username"`
	Admin    bool   `json:"admin"`
}

func (a *API) handleAddMember(w http.ResponseWriter, r *http.Request) {
	var req addMemberRequest
	if !decodeBody(w, r, &req) {
		return
	}
	channel, who := channelParam(r), strings.ToLower(req.Username)
	if !protocol.ValidUsername(who) {
		WriteError(w, http.StatusBadRequest, protocol.CodeBadRequest, "username: 3–32 of a-z 0-9 _ . -")
		return
	}
	if err := a.opts.Chat.AddMember(r.Context(), sessionFrom(r).Username, channel, who, req.Admin); err != nil {
		a.channelError(w, r, err, channel, who)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) handleRemoveMember(w http.ResponseWriter, r *http.Request) {
	channel, who := channelParam(r), strings.ToLower(r.PathValue("username"))
	if err := a.opts.Chat.RemoveMember(r.Context(), sessionFrom(r).Username, channel, who); err != nil {
		a.channelError(w, r, err, channel, who)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// channelError answers a channel operation's failure: each error its one
// status and code (docs/protocol.md), with a message that names what was
// wrong.
func (a *API) channelError(w http.ResponseWriter, r *http.Request, err error, channel, user string) {
	var status int
	var code, msg string
	switch {
	case errors.Is(err, chat.ErrBadChannelName):
		status, code, msg = http.StatusBadRequest, protocol.CodeBadRequest, "name: "+err.Error()
	case errors.Is(err, chat.ErrDefaultChannel):
		status, code, msg = http.StatusBadRequest, protocol.CodeBadRequest, fmt.Sprintf("%q is a default channel: everyone is in it", channel)
	case errors.Is(err, chat.ErrChannelTaken):
		status, code, msg = http.StatusConflict, protocol.CodeChannelTaken, fmt.Sprintf("a channel named %q exists", channel)
	case errors.Is(err, chat.ErrTooManyChannels):
		status, code, msg = http.StatusConflict, protocol.CodeLimitReached, fmt.Sprintf("in too many channels (at most %d each)", a.opts.MaxChannelsPerUser)
	case errors.Is(err, chat.ErrTooManyMembers):
		status, code, msg = http.StatusConflict, protocol.CodeLimitReached, fmt.Sprintf("%q is full (at most %d members)", channel, a.opts.MaxChannelMembers)
	case errors.Is(err, chat.ErrLastAdmin):
		status, code, msg = http.StatusConflict, protocol.CodeLastAdmin, fmt.Sprintf("%s is the only admin of %q: make someone else admin first", user, channel)
	case errors.Is(err, chat.ErrUnknownUser):
		status, code, msg = http.StatusNotFound, protocol.CodeUnknownUser, fmt.Sprintf("no user %q", user)
	case errors.Is(err, chat.ErrNotMember):
		status, code, msg = http.StatusNotFound, protocol.CodeUnknownUser, fmt.Sprintf("%s is not a member of %q", user, channel)
	case errors.Is(err, chat.ErrForbidden):
		status, code, msg = http.StatusForbidden, protocol.CodeForbidden, fmt.Sprintf("you may not do that in %q", channel)
	case errors.Is(err, chat.ErrUnknownChannel):
		status, code, msg = http.StatusNotFound, protocol.CodeUnknownChannel, fmt.Sprintf("no channel %q", protocol.Truncate(channel, 64))
	default:
		a.internalError(w, r, err)
		return
	}
	WriteError(w, status, code, msg)
}

// channelParam is the {channel} of a path, case-folded as names are
// everywhere ("Ops" and "ops" are one channel).
func channelParam(r *http.Request) string { return strings.ToLower(r.PathValue("channel")) }

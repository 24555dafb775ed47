// JSON in and out: the API's error body, its answers, and the one way a
// request body is read.

package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

const maxBodyBytes = 16 << 10

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WriteError answers with the API's error body, {"error":{"code","message"}}.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	WriteJSON(w, status, b)
}

// WriteJSON answers v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// internalError answers 503 for storage trouble and 500 otherwise, logging once.
func (a *API) internalError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, chat.ErrUnavailable) || errors.Is(err, auth.ErrBusy) || errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("request failed: storage unavailable", "path", r.URL.Path, "err", err)
		WriteError(w, http.StatusServiceUnavailable, "unavailable", "storage unavailable, try again")
		return
	}
	a.log.Error("request failed", "path", r.URL.Path, "err", err)
	WriteError(w, http.StatusInternalServerError, "internal", "internal error")
}

// decodeBody reads a JSON body into v: only application/json, bounded size,
// no unknown fields.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
		return false
	}
	// Only here, where a body is read: a deadline left on a connection that
	// /ws then hijacks would cut the socket.
	// A writer without a connection (a test's recorder) has no deadline to set.
	if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		WriteError(w, http.StatusInternalServerError, "internal", "internal error")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", maxBodyBytes))
			return false
		}
		WriteError(w, http.StatusBadRequest, "bad_request", "malformed JSON body: "+protocol.Truncate(err.Error(), 120))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		WriteError(w, http.StatusBadRequest, "bad_request", "one JSON object per body")
		return false
	}
	return true
}

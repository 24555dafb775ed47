// Account handlers: register, log in, log out, and who am I.

package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
)

type credentialsBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// credentialsRequest decodes a register or login body. A cross-origin one
// is refused: a login sets a cookie, so a cross-site login (login CSRF)
// would sign the victim into the attacker's account.
func (a *API) credentialsRequest(w http.ResponseWriter, r *http.Request) (credentialsBody, bool) {
	var body credentialsBody
	if !decodeBody(w, r, &body) {
		return body, false
	}
	if present, ok := a.originAllowed(r); present && !ok {
		WriteError(w, http.StatusForbidden, "bad_origin", "cross-origin request refused")
		return body, false
	}
	return body, true
}

func (a *API) handleRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := a.credentialsRequest(w, r)
	if !ok {
		return
	}
	name, err := a.opts.Auth.Register(r.Context(), body.Username, body.Password)
	switch {
	case err == nil:
		a.m.Auth.WithLabelValues("registered").Inc()
		if err := a.opts.Chat.MarkAllRead(r.Context(), name); err != nil {
			// The account exists; at worst old messages show as unread.
			a.log.Warn("marking history read for a new account", "err", err)
		}
		WriteJSON(w, http.StatusCreated, map[string]string{"username": name})
	case errors.Is(err, auth.ErrRegistrationClosed):
		WriteError(w, http.StatusForbidden, "registration_closed", err.Error())
	case errors.Is(err, auth.ErrUserExists):
		WriteError(w, http.StatusConflict, "username_taken", "that username is taken")
	case errors.Is(err, auth.ErrInvalidUsername), errors.Is(err, auth.ErrPasswordTooShort), errors.Is(err, auth.ErrPasswordTooLong):
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		a.internalError(w, r, err)
	}
}

func (a *API) handleLogin(w http.ResponseWriter, r *http.Request) {
	body, ok := a.credentialsRequest(w, r)
	if !ok {
		return
	}
	sess, token, err := a.opts.Auth.Login(r.Context(), auth.LoginRequest{
		Username: body.Username, Password: body.Password, IP: a.clientIP(r), UserAgent: r.UserAgent(),
	})
	var throttled *auth.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &throttled):
		a.m.Auth.WithLabelValues("throttled").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int((throttled.RetryAfter+time.Second-1)/time.Second)))
		WriteError(w, http.StatusTooManyRequests, "rate_limited", throttled.Error())
		return
	case errors.Is(err, auth.ErrInvalidCredentials):
		a.m.Auth.WithLabelValues("login_failed").Inc()
		WriteError(w, http.StatusUnauthorized, "invalid_credentials", err.Error())
		return
	case errors.Is(err, auth.ErrPasswordTooLong):
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	case errors.Is(err, auth.ErrBusy):
		// Load shed, not a fault: counted, not logged (a flood of logins
		// would be a flood of log lines).
		a.m.Auth.WithLabelValues("busy").Inc()
		w.Header().Set("Retry-After", "1")
		WriteError(w, http.StatusServiceUnavailable, "unavailable", "the server is busy checking passwords, try again")
		return
	default:
		a.internalError(w, r, err)
		return
	}
	a.m.Auth.WithLabelValues("login").Inc()
	http.SetCookie(w, a.sessionCookie(r, token, int(a.opts.SessionTTL/time.Second)))
	WriteJSON(w, http.StatusOK, map[string]string{"username": sess.Username, "token": token})
}

func (a *API) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r)
	if _, err := a.opts.Auth.Revoke(r.Context(), sess.Username, sess.ID); err != nil && !errors.Is(err, auth.ErrSessionNotFound) {
		a.internalError(w, r, err)
		return
	}
	if err := a.opts.Chat.RevokeSessions(r.Context(), sess.Username, []string{sess.ID}); err != nil {
		a.log.Warn("announcing logout", "err", err)
	}
	a.clearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) handleMe(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"username": sessionFrom(r).Username})
}

// Package chatclient is a small Hubbub client for tests and the load tool:
// the HTTP account calls, and a WebSocket client that survives its server
// going away. It reconnects (to any of the servers it knows) with
// exponential backoff and full jitter, resumes every channel from the last
// id it saw, resends unacknowledged messages with the same clientId (the
// server deduplicates), drops redelivered messages by id, and keeps what it
// needs to check "every acknowledged message exactly once, in order".
package chatclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// ErrTaken is returned by Register when the username exists.
var ErrTaken = errors.New("username is taken")

// APIError is a non-2xx answer of the HTTP API.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func call(ctx context.Context, method, url, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(data, &e) // a body that is not the error shape still has a status
		return &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding %q: %w", method, url, data, err)
		}
	}
	return nil
}

// Register creates an account on the server at base ("http://host:port").
func Register(ctx context.Context, base, username, password string) error {
	err := call(ctx, http.MethodPost, base+"/api/v1/register", "", map[string]string{"username": username, "password": password}, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict {
		return ErrTaken
	}
	return err
}

// Login returns a session token.
func Login(ctx context.Context, base, username, password string) (string, error) {
	var out struct {
		Username string `json:"username"`
		Token    string `json:"token"`
	}
	if err := call(ctx, http.MethodPost, base+"/api/v1/login", "", map[string]string{"username": username, "password": password}, &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", errors.New("login answered no token")
	}
	return out.Token, nil
}

// Me returns the username a token belongs to.
func Me(ctx context.Context, base, token string) (string, error) {
	var out struct {
		Username string `json:"username"`
	}
	err := call(ctx, http.MethodGet, base+"/api/v1/me", token, nil, &out)
	return out.Username, err
}

// RevokeAll revokes every session of the token's user.
func RevokeAll(ctx context.Context, base, token string) error {
	return call(ctx, http.MethodDelete, base+"/api/v1/sessions", token, nil, nil)
}

// HistoryEntry is a message as history shows it now.
type HistoryEntry struct {
	ID        string              `json:"id"`
	Text      string              `json:"text"`
	EditedAt  int64               `json:"editedAt"`
	Deleted   bool                `json:"deleted"`
	Reactions []protocol.Reaction `json:"reactions"`
}

// History reads the whole of channel's kept history, newest page first,
// and returns it oldest first.
func History(ctx context.Context, base, token, channel string) ([]HistoryEntry, error) {
	var all []HistoryEntry
	before := ""
	for {
		u := base + "/api/v1/channels/" + url.PathEscape(channel) + "/messages?limit=200"
		if before != "" {
			u += "&before=" + url.QueryEscape(before)
		}
		var page struct {
			Messages []HistoryEntry `json:"messages"`
		}
		if err := call(ctx, http.MethodGet, u, token, nil, &page); err != nil {
			return nil, err
		}
		all = append(page.Messages, all...)
		if len(page.Messages) < 200 {
			return all, nil
		}
		before = page.Messages[0].ID
	}
}

// Package e2e is Hubbub's end-to-end chat client: it drives a running chat
// deployment through its public HTTP and WebSocket API only, exactly as
// written in DESIGN.md §3, and checks that nothing a user sent is lost,
// duplicated or reordered while servers come and go.
//
// `make kind-e2e` runs TestChat (build tag e2e) against chat pods on a kind
// cluster. The client deliberately does not import the chat server's
// packages: it is a second, independent reading of the wire contract.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// Frame is any object a server sends over the WebSocket; which fields are set
// depends on Type.
type Frame struct {
	Type     string `json:"type"`
	ID       string `json:"id,omitempty"`
	Channel  string `json:"channel,omitempty"`
	From     string `json:"from,omitempty"`
	Text     string `json:"text,omitempty"`
	ClientID string `json:"clientId,omitempty"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"message,omitempty"`
	Reason   string `json:"reason,omitempty"`
	User     string `json:"user,omitempty"`
	Status   string `json:"status,omitempty"` // presence: online or offline
	Kind     string `json:"kind,omitempty"`   // notification: dm or mention
	Name     string `json:"name,omitempty"`   // channel: the channel one was added to
	// Recovered is set on resumed: per channel, whether the replay was whole.
	Recovered map[string]bool `json:"recovered,omitempty"`
	// Channels is set on hello: the channels with their last message id.
	Channels []ChannelInfo `json:"channels,omitempty"`
}

// ChannelInfo is a channel as hello lists it.
type ChannelInfo struct {
	Name   string `json:"name"`
	LastID string `json:"lastId"`
}

// sendFrame and resumeFrame are what the client sends.
type sendFrame struct {
	Type     string `json:"type"`
	Channel  string `json:"channel"`
	Text     string `json:"text"`
	ClientID string `json:"clientId"`
}

type resumeFrame struct {
	Type  string            `json:"type"`
	Since map[string]string `json:"since"`
}

// SplitFrame decodes one WebSocket message from the server. The server
// coalesces queued objects into one message separated by newlines, so a
// message holds one or more objects.
func SplitFrame(data []byte) ([]Frame, error) {
	var out []Frame
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var f Frame
		if err := json.Unmarshal(line, &f); err != nil {
			return out, fmt.Errorf("decoding server object %q: %w", line, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// MessageID is a message id, a Redis stream id "<ms>-<seq>"; ids of one
// channel are ordered by (ms, seq).
type MessageID struct{ ms, seq uint64 }

// ParseMessageID parses "<ms>-<seq>".
func ParseMessageID(s string) (MessageID, error) {
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return MessageID{}, fmt.Errorf("%q is not a message id", s)
	}
	return MessageID{ms, seq}, nil
}

// Less reports whether id comes before o.
func (id MessageID) Less(o MessageID) bool {
	return id.ms < o.ms || (id.ms == o.ms && id.seq < o.seq)
}

// API talks to one chat server's HTTP API.
type API struct {
	// BaseURL is the server's root, e.g. http://127.0.0.1:18080.
	BaseURL string
	Client  *http.Client
}

// apiError is the body of every HTTP API error.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// Register creates an account.
func (a API) Register(ctx context.Context, username, password string) error {
	_, err := a.post(ctx, "/api/v1/register", map[string]string{"username": username, "password": password}, http.StatusCreated)
	return err
}

// Login returns a session token for Bearer authentication.
func (a API) Login(ctx context.Context, username, password string) (string, error) {
	body, err := a.post(ctx, "/api/v1/login", map[string]string{"username": username, "password": password}, http.StatusOK)
	if err != nil {
		return "", err
	}
	var r struct {
		Username string `json:"username"`
		Token    string `json:"token"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("login response %q: %w", body, err)
	}
	if r.Token == "" || r.Username != username {
		return "", fmt.Errorf("login response %q: want username %q and a token", body, username)
	}
	return r.Token, nil
}

func (a API) post(ctx context.Context, path string, v any, want int) ([]byte, error) {
	return a.Call(ctx, http.MethodPost, path, "", v, want)
}

// Call makes an API request (with a Bearer token unless token is empty, and
// v, unless nil, as its JSON body) and returns the body of an answer with
// status want; any other status is an error naming the API's error code.
func (a API) Call(ctx context.Context, method, path, token string, v any, want int) ([]byte, error) {
	var rd io.Reader
	if v != nil {
		payload, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if v != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != want {
		var e apiError
		_ = json.Unmarshal(body, &e) // best effort: the status alone is the error
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s %s", method, path, resp.StatusCode, want, e.Error.Code, e.Error.Message)
	}
	return body, nil
}

// Dial opens the chat WebSocket with a Bearer token. Origin is the server's
// own URL, as a browser on the chat page would send.
func (a API) Dial(ctx context.Context, token string) (*websocket.Conn, error) {
	u, err := url.Parse(a.BaseURL)
	if err != nil {
		return nil, err
	}
	origin := u.Scheme + "://" + u.Host
	u.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	u.Path = "/ws"
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	h.Set("Origin", origin)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", u, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	return conn, nil
}

package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// patience is how long the tests below wait for an answer: far more than the
// server's 3 s request bound, far less than what a frozen Redis cost before
// it (12 s for a login: four storage calls, each waiting out its own read
// timeout).
const patience = 8 * time.Second

// TestFrozenRedisAnswers503: with Redis frozen (SIGSTOP: connections open,
// nothing answered), every Redis-bound request gets 503 unavailable in
// bounded time instead of hanging; after a thaw the same requests succeed.
func TestFrozenRedisAnswers503(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	cfg := testConfig()
	cfg.RedisURL = rs.URL()
	ts := startServer(t, cfg, server.Options{})
	token := login(t, ts, "alice")
	creds := map[string]string{"username": "alice", "password": "password-alice"}
	requests := []struct {
		name, method, path, token string
		body                      any
		after                     int // status once Redis is back
	}{
		{"login", "POST", "/api/v1/login", "", creds, 200},
		{"register", "POST", "/api/v1/register", "", map[string]string{"username": "bob", "password": "password-bob"}, 201},
		{"me", "GET", "/api/v1/me", token, nil, 200},
		{"channels", "GET", "/api/v1/channels", token, nil, 200},
		{"history", "GET", "/api/v1/channels/general/messages", token, nil, 200},
	}
	rs.Freeze()
	for _, r := range requests {
		t.Run("frozen/"+r.name, func(t *testing.T) {
			status, code, err := boundedCall(ts.URL, r.method, r.path, r.token, r.body)
			if err != nil {
				t.Fatalf("no answer within %s: %v", patience, err)
			}
			if status != http.StatusServiceUnavailable || code != "unavailable" {
				t.Fatalf("status %d code %q, want 503 unavailable", status, code)
			}
		})
	}
	rs.Thaw()
	// A request that timed out may still complete once Redis answers: a
	// 503 says "not known to be done", so a retry must be safe. Register
	// someone new after the thaw.
	requests[1].body = map[string]string{"username": "carol", "password": "password-carol"}
	for _, r := range requests {
		t.Run("thawed/"+r.name, func(t *testing.T) {
			status, code, err := boundedCall(ts.URL, r.method, r.path, r.token, r.body)
			if err != nil || status != r.after {
				t.Fatalf("status %d code %q err %v, want %d", status, code, err, r.after)
			}
		})
	}
}

func boundedCall(base, method, path, token string, body any) (status int, code string, err error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: patience}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	_ = json.Unmarshal(raw, &e) // success bodies have no error: code stays ""
	return resp.StatusCode, e.Error.Code, nil
}

// TestDrippingBodyIsCut: a client that sends its headers, then its body a
// byte at a time and stalls, does not hold the handler: the server gives up
// on the body after its body timeout and the connection ends.
func TestDrippingBodyIsCut(t *testing.T) {
	t.Parallel()
	ts := startServer(t, testConfig(), server.Options{})
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	head := "POST /api/v1/login HTTP/1.1\r\nHost: hubbub.test\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{"
	if _, err := conn.Write([]byte(head)); err != nil {
		t.Fatal(err)
	}
	// The server's body timeout is 10 s; wait a little longer for its answer.
	if err := conn.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Fatal("the server still waits for the stalled body after 15 s")
	case err == nil:
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a stalled body got status %d", resp.StatusCode)
		}
	default:
		// The server closed the connection without an answer: also cut.
	}
}

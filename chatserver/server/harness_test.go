package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/chatserver/backend/redistest"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// testServer is a real chat server on a loopback port.
type testServer struct {
	URL    string
	stop   context.CancelFunc
	done   chan error
	Server *server.Server
}

// backend is one storage the contract tests run on. Its config is a server
// configuration for one test (testConfig, on this storage); the test
// adjusts it and starts its servers with it.
type backend struct {
	name   string
	config func(testing.TB) config.Config
}

// backends are what the contract tests run on: the in-memory backend, the
// embedded store (a data dir per test), and a real redis-server. Every
// test gets a room of its own (testConfig), so
// its Redis keys ("hb:{room}:...") and topics are its own, and the tests
// share one redis-server (sharedRedis) without seeing each other's data.
// A test that kills, freezes or restarts Redis starts its own
// (redistest.Start) instead.
var backends = []backend{
	{"memory", func(testing.TB) config.Config { return testConfig() }},
	// make run's store: memory journaled to a bbolt file, one per test.
	{"embedded", func(t testing.TB) config.Config {
		cfg := testConfig()
		cfg.DataDir = t.TempDir()
		return cfg
	}},
	{"redis", func(t testing.TB) config.Config {
		cfg := testConfig()
		cfg.RedisURL = sharedRedis(t).URL()
		return cfg
	}},
}

// The redis-server of the redis backend, started by the first test that
// needs it and stopped by TestMain once every test has run.
var (
	sharedRedisOnce sync.Once
	sharedRedisSrv  *redistest.Server
	sharedRedisErr  error
)

func sharedRedis(t testing.TB) *redistest.Server {
	t.Helper()
	sharedRedisOnce.Do(func() { sharedRedisSrv, sharedRedisErr = redistest.New() })
	if sharedRedisErr != nil {
		t.Fatal(sharedRedisErr)
	}
	return sharedRedisSrv
}

// stopSharedRedis stops the shared redis-server if a test started it.
func stopSharedRedis() error {
	if sharedRedisSrv == nil {
		return nil
	}
	return sharedRedisSrv.Close()
}

var roomSeq atomic.Int64

// testConfig is a server configuration for tests, on the in-memory backend,
// with a room of its own.
func testConfig() config.Config {
	cfg := config.Default()
	cfg.Room = fmt.Sprintf("test/room-%d-%d", time.Now().UnixNano(), roomSeq.Add(1))
	cfg.Addr = "127.0.0.1:0"
	cfg.BcryptCost = 4
	cfg.Channels = []string{"general", "random"}
	cfg.ShutdownGrace = 3 * time.Second
	cfg.MessagesPerSecond = 1000
	cfg.MessageBurst = 1000
	return cfg
}

func startServer(t testing.TB, cfg config.Config, opts server.Options) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg, opts)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ts := &testServer{URL: "http://" + ln.Addr().String(), stop: cancel, done: make(chan error, 1), Server: srv}
	go func() { ts.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(ts.Stop)
	return ts
}

// Stop drains the server and waits for Serve to return.
func (ts *testServer) Stop() {
	ts.stop()
	<-ts.done
	ts.done <- nil // later Stops return at once
}

type apiResult struct {
	Status int
	Header http.Header
	Body   map[string]any
}

func (r apiResult) errCode() string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func (r apiResult) errMessage() string {
	e, _ := r.Body["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

// call makes an API request. token, if set, goes in a Bearer header.
func call(t testing.TB, method, url, token string, body any, hdr ...string) apiResult {
	t.Helper()
	return callVia(t, http.DefaultClient, method, url, token, body, hdr...)
}

// callVia is call through client (one bound to another source address, say).
func callVia(t testing.TB, client *http.Client, method, url, token string, body any, hdr ...string) apiResult {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	res := apiResult{Status: resp.StatusCode, Header: resp.Header}
	raw, _ := io.ReadAll(resp.Body)
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &res.Body); err != nil {
			t.Fatalf("%s %s: bad JSON %q: %v", method, url, raw, err)
		}
	}
	return res
}

// login registers (if needed) and logs a user in, returning the token.
func login(t testing.TB, ts *testServer, user string) string {
	t.Helper()
	pw := "password-" + user
	if r := call(t, "POST", ts.URL+"/api/v1/register", "", map[string]string{"username": user, "password": pw}); r.Status != 201 && r.Status != 409 {
		t.Fatalf("register %s: %d %v", user, r.Status, r.Body)
	}
	r := call(t, "POST", ts.URL+"/api/v1/login", "", map[string]string{"username": user, "password": pw})
	if r.Status != 200 {
		t.Fatalf("login %s: %d %v", user, r.Status, r.Body)
	}
	return r.Body["token"].(string)
}

// client is a WebSocket client that splits server frames into objects.
type client struct {
	t    *testing.T
	ws   *websocket.Conn
	objs chan map[string]any
	// backlog holds objects received but not yet matched by expect.
	backlog []map[string]any
	// closeErr is set when the read loop ends.
	closed   chan struct{}
	closeErr error
	// pongs receives the payload of every pong the server sends.
	pongs chan string
}

func dial(t *testing.T, ts *testServer, token string) *client {
	t.Helper()
	// Like every real client: say what we have (nothing) at once, so the
	// server starts live delivery without waiting out its resume window.
	return dialResuming(t, ts, token, map[string]string{})
}

// dialResuming connects like a client coming back: its first frame is a
// resume from since, before any live message can pass it.
func dialResuming(t *testing.T, ts *testServer, token string, since map[string]string) *client {
	t.Helper()
	c, resp, err := dialRaw(ts, token, ts.URL)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	cl := &client{t: t, ws: c, objs: make(chan map[string]any, 10000), closed: make(chan struct{}), pongs: make(chan string, 16)}
	c.SetPongHandler(func(s string) error {
		select {
		case cl.pongs <- s:
		default:
		}
		return nil
	})
	// Written before the reader starts: a server that refuses the socket
	// closes it at once, and a reader that had answered that close would
	// make this write fail (close sent) before the test reads the code.
	if err := c.WriteJSON(map[string]any{"type": "resume", "since": since}); err != nil {
		_ = c.Close()
		t.Fatalf("first frame: %v", err)
	}
	go cl.readLoop()
	t.Cleanup(func() { _ = c.Close(); <-cl.closed })
	return cl
}

func dialRaw(ts *testServer, token, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", h)
}

func (c *client) readLoop() {
	defer close(c.closed)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.closeErr = err
			return
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var obj map[string]any
			if err := json.Unmarshal(line, &obj); err != nil {
				c.closeErr = fmt.Errorf("server sent bad JSON %q: %w", line, err)
				return
			}
			c.objs <- obj
		}
	}
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) sendRaw(typ int, data []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(typ, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

const waitFor = 5 * time.Second

// expect returns the first object, old or new, matching match. Objects that
// do not match stay in the backlog for later expects: a message may, for
// example, legitimately arrive before the ack of its own send.
func (c *client) expect(what string, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	for i, o := range c.backlog {
		if match(o) {
			c.backlog = append(c.backlog[:i:i], c.backlog[i+1:]...)
			return o
		}
	}
	// matched reports whether o is the one; if not, it waits in the backlog.
	matched := func(o map[string]any) bool {
		if match(o) {
			return true
		}
		c.backlog = append(c.backlog, o)
		return false
	}
	deadline := time.After(waitFor)
	for {
		select {
		case o := <-c.objs:
			if matched(o) {
				return o
			}
		case <-c.closed:
			// Take what was read before the close.
			for {
				select {
				case o := <-c.objs:
					if matched(o) {
						return o
					}
				default:
					c.t.Fatalf("waiting for %s: connection closed: %v; unmatched %v", what, c.closeErr, c.backlog)
				}
			}
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s; unmatched %v", what, c.backlog)
		}
	}
}

func typeIs(typ string, kv ...string) func(map[string]any) bool {
	return func(o map[string]any) bool {
		if o["type"] != typ {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(o[kv[i]]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// backlogged counts the objects already received, and not taken by an
// expect, that match.
func (c *client) backlogged(match func(map[string]any) bool) int {
	n := 0
	for _, o := range c.backlog {
		if match(o) {
			n++
		}
	}
	for {
		select {
		case o := <-c.objs:
			c.backlog = append(c.backlog, o)
			if match(o) {
				n++
			}
		default:
			return n
		}
	}
}

// closeCode waits for the server to close the socket and returns the code.
func (c *client) closeCode() int {
	c.t.Helper()
	select {
	case <-c.closed:
	case <-time.After(waitFor):
		c.t.Fatal("timed out waiting for the server to close the socket")
	}
	var ce *websocket.CloseError
	if errors.As(c.closeErr, &ce) {
		return ce.Code
	}
	c.t.Fatalf("socket ended without a close frame: %v", c.closeErr)
	return 0
}

// sendAndAck sends a message and returns its committed id.
func (c *client) sendAndAck(channel, to, text, clientID string) string {
	c.t.Helper()
	f := map[string]any{"type": "send", "text": text, "clientId": clientID}
	if to != "" {
		f["to"] = to
	} else {
		f["channel"] = channel
	}
	c.send(f)
	ack := c.expect("ack "+clientID, typeIs("ack", "clientId", clientID))
	return ack["id"].(string)
}

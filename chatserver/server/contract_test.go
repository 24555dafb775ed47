package server_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
	"github.com/hubbub-chat/hubbub/test/chart"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(thenStopSharedRedis{m},
		// http.DefaultClient's idle keep-alive connections outlive single tests.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		// bleve's analysis workers start with the package and run for the
		// process's life, shared by every index.
		goleak.IgnoreTopFunction("github.com/blevesearch/bleve_index_api.AnalysisWorker"),
	)
}

// thenStopSharedRedis runs the tests, then stops the redis-server they
// shared, before goleak looks for goroutines left behind.
type thenStopSharedRedis struct{ m *testing.M }

func (r thenStopSharedRedis) Run() int {
	code := r.m.Run()
	if err := stopSharedRedis(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the shared redis-server:", err)
		code = max(code, 1)
	}
	return code
}

// contractTest is one test of the contract, run once per backend.
type contractTest struct {
	name string
	fn   func(*testing.T, backend)
}

// The contract holds on every backend: each test below runs against the
// in-memory backend, make run's embedded store and a real redis-server
// (backends), in
// parallel, each on servers and a room of its own.
var contractTests = []contractTest{
	{"Accounts", testAccounts},
	{"RegistrationClosed", testRegistrationClosed},
	{"LoginThrottling", testLoginThrottling},
	{"TrustedProxies", testTrustedProxies},
	{"Sessions", testSessions},
	{"CSRFAndOrigins", testCSRFAndOrigins},
	{"Chat", testChat},
	{"PresenceOffline", testPresenceOffline},
	{"BadInput", testBadInput},
	{"RateLimit", testRateLimit},
	{"FrameBudget", testFrameBudget},
	{"ResumeOnlyOwnChannels", testResumeOnlyOwnChannels},
	{"ReadMarkerBounded", testReadMarkerBounded},
	{"ResumedSaysWhatWasKept", testResumedSaysWhatWasKept},
	{"LateResume", testLateResume},
	{"Changes", testChanges},
	{"Threads", testThreads},
	{"Search", testSearch},
	{"ConnectionLimit", testConnectionLimit},
	{"Drain", testDrain},
	{"Health", testHealth},
	{"DeadPeer", testDeadPeer},
	{"HelloFirst", testHelloFirst},
	{"ServerFull", testServerFull},
	{"SlowConsumer", testSlowConsumer},
	{"PresenceBatch", testPresenceBatch},
	{"WriteTimeout", testWriteTimeout},
}

// aloneContractTests are the contract tests that count what the whole
// process holds (goroutines, open files), which tests running beside them
// would change: they run one at a time, with no other test running.
var aloneContractTests = []contractTest{
	{"ConnectionChurn", testConnectionChurn},
}

// TestContract runs contractTests, all in parallel.
func TestContract(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, ct := range contractTests {
				t.Run(ct.name, func(t *testing.T) {
					t.Parallel()
					ct.fn(t, b)
				})
			}
		})
	}
}

// TestContractAlone runs aloneContractTests, one at a time. It must not
// call t.Parallel: the testing package starts parallel tests (TestContract's
// and the rest) only once every sequential top-level test, this one
// included, has returned, so nothing else runs meanwhile.
func TestContractAlone(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, ct := range aloneContractTests {
				t.Run(ct.name, func(t *testing.T) { ct.fn(t, b) })
			}
		})
	}
}

func testAccounts(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	reg := func(u, p string) apiResult {
		return call(t, "POST", ts.URL+"/api/v1/register", "", map[string]string{"username": u, "password": p})
	}
	logIn := func(u, p string) apiResult {
		return call(t, "POST", ts.URL+"/api/v1/login", "", map[string]string{"username": u, "password": p})
	}
	if r := reg("Alice", "correct horse"); r.Status != 201 || r.Body["username"] != "alice" {
		t.Fatalf("register: %d %v", r.Status, r.Body)
	}
	tests := []struct {
		name       string
		do         func() apiResult
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{"taken, case-folded", func() apiResult { return reg("ALICE", "another password") }, 409, "username_taken", ""},
		{"short username", func() apiResult { return reg("al", "password1") }, 400, "bad_request", "username must be"},
		{"bad username chars", func() apiResult { return reg("al ice", "password1") }, 400, "bad_request", "username must be"},
		{"short password", func() apiResult { return reg("bob", "1234567") }, 400, "bad_request", "at least 8"},
		{"73-byte password refused, not truncated", func() apiResult { return reg("bob", strings.Repeat("x", 73)) }, 400, "bad_request", "at most 72"},
		{"72-byte password ok", func() apiResult { return reg("carol", strings.Repeat("x", 72)) }, 201, "", ""},
		{"wrong password", func() apiResult { return logIn("alice", "wrong password") }, 401, "invalid_credentials", "invalid username or password"},
		{"unknown user, same message", func() apiResult { return logIn("nobody", "wrong password") }, 401, "invalid_credentials", "invalid username or password"},
		{"long password at login", func() apiResult { return logIn("carol", strings.Repeat("x", 73)) }, 400, "bad_request", "at most 72"},
		{"login ok", func() apiResult { return logIn("alice", "correct horse") }, 200, "", ""},
		{"unknown field", func() apiResult {
			return call(t, "POST", ts.URL+"/api/v1/register", "", map[string]any{"username": "dave", "password": "password1", "admin": true})
		}, 400, "bad_request", "unknown field"},
		{"not JSON", func() apiResult {
			return call(t, "POST", ts.URL+"/api/v1/register", "", nil, "Content-Type", "text/plain")
		}, 415, "unsupported_media_type", ""},
		{"unauthenticated me", func() apiResult { return call(t, "GET", ts.URL+"/api/v1/me", "", nil) }, 401, "unauthorized", ""},
		{"bogus token", func() apiResult { return call(t, "GET", ts.URL+"/api/v1/me", "bogus", nil) }, 401, "unauthorized", ""},
		{"unknown endpoint", func() apiResult { return call(t, "GET", ts.URL+"/api/v1/nope", "", nil) }, 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.do()
			if r.Status != tt.wantStatus || r.errCode() != tt.wantCode || !strings.Contains(r.errMessage(), tt.wantMsg) {
				t.Errorf("got %d %q %q, want %d %q containing %q", r.Status, r.errCode(), r.errMessage(), tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
		})
	}

	t.Run("me, logout", func(t *testing.T) {
		tok := login(t, ts, "erin")
		if r := call(t, "GET", ts.URL+"/api/v1/me", tok, nil); r.Status != 200 || r.Body["username"] != "erin" {
			t.Fatalf("me: %d %v", r.Status, r.Body)
		}
		if r := call(t, "POST", ts.URL+"/api/v1/logout", tok, map[string]string{}); r.Status != 204 {
			t.Fatalf("logout: %d %v", r.Status, r.Body)
		}
		if r := call(t, "GET", ts.URL+"/api/v1/me", tok, nil); r.Status != 401 {
			t.Fatalf("me after logout: %d", r.Status)
		}
	})
}

func testRegistrationClosed(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.Registration = config.RegistrationClosed
	ts := startServer(t, cfg, server.Options{})
	r := call(t, "POST", ts.URL+"/api/v1/register", "", map[string]string{"username": "alice", "password": "password1"})
	if r.Status != 403 || r.errCode() != "registration_closed" {
		t.Fatalf("got %d %v", r.Status, r.Body)
	}
}

func testSessions(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	phone := login(t, ts, "alice")
	laptop := login(t, ts, "alice")
	r := call(t, "GET", ts.URL+"/api/v1/sessions", laptop, nil, "User-Agent", "laptop-browser")
	list, _ := r.Body["sessions"].([]any)
	if r.Status != 200 || len(list) != 2 {
		t.Fatalf("sessions: %d %v", r.Status, r.Body)
	}
	var phoneID string
	currents := 0
	for _, s := range list {
		m := s.(map[string]any)
		if m["current"] == true {
			currents++
		} else {
			phoneID = m["id"].(string)
		}
		if _, leaked := m["tokenHash"]; leaked {
			t.Errorf("session listing leaks the token hash: %v", m)
		}
	}
	if currents != 1 {
		t.Fatalf("want exactly one current session, got %d", currents)
	}
	ws := dial(t, ts, phone)
	ws.expect("hello", typeIs("hello"))

	if r := call(t, "DELETE", ts.URL+"/api/v1/sessions/"+phoneID, laptop, map[string]string{}); r.Status != 204 {
		t.Fatalf("revoke: %d %v", r.Status, r.Body)
	}
	if got := ws.closeCode(); got != 4401 {
		t.Fatalf("revoked socket closed with %d, want 4401", got)
	}
	if r := call(t, "GET", ts.URL+"/api/v1/me", phone, nil); r.Status != 401 {
		t.Fatalf("revoked token still works: %d", r.Status)
	}
	if r := call(t, "DELETE", ts.URL+"/api/v1/sessions/"+phoneID, laptop, map[string]string{}); r.Status != 404 {
		t.Fatalf("revoking twice: %d", r.Status)
	}

	t.Run("revoke all closes every socket with 4401", func(t *testing.T) {
		tabs := []*client{dial(t, ts, laptop), dial(t, ts, login(t, ts, "alice"))}
		for _, c := range tabs {
			c.expect("hello", typeIs("hello"))
		}
		if r := call(t, "DELETE", ts.URL+"/api/v1/sessions", laptop, map[string]string{}); r.Status != 204 {
			t.Fatalf("revoke all: %d", r.Status)
		}
		for i, c := range tabs {
			if got := c.closeCode(); got != 4401 {
				t.Errorf("socket %d closed with %d, want 4401", i, got)
			}
		}
	})
}

func testCSRFAndOrigins(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.AllowedOrigins = []string{"https://chat.example.com"}
	ts := startServer(t, cfg, server.Options{})
	tok := login(t, ts, "alice")
	cookie := "hubbub_session=" + tok
	tests := []struct {
		name   string
		method string
		path   string
		hdr    []string
		want   int
	}{
		{"cookie change from a foreign origin", "DELETE", "/api/v1/sessions", []string{"Cookie", cookie, "Origin", "https://evil.example"}, 403},
		{"cookie change without origin", "DELETE", "/api/v1/sessions", []string{"Cookie", cookie}, 403},
		{"cookie read without origin", "GET", "/api/v1/me", []string{"Cookie", cookie}, 200},
		{"foreign-origin login", "POST", "/api/v1/login", []string{"Origin", "https://evil.example"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.method != "GET" {
				body = map[string]string{"username": "alice", "password": "password-alice"}
			}
			if r := call(t, tt.method, ts.URL+tt.path, "", body, tt.hdr...); r.Status != tt.want {
				t.Fatalf("got %d %v, want %d", r.Status, r.Body, tt.want)
			}
		})
	}

	wsTests := []struct {
		name   string
		token  string
		hdr    http.Header
		origin string
		want   int
	}{
		{"own origin", tok, nil, ts.URL, 101},
		{"allowed origin", tok, nil, "https://chat.example.com", 101},
		{"bearer without origin", tok, nil, "", 101},
		{"foreign origin", tok, nil, "https://evil.example", 403},
		{"no credentials", "", nil, ts.URL, 401},
	}
	for _, tt := range wsTests {
		t.Run("ws "+tt.name, func(t *testing.T) {
			c, resp, err := dialRaw(ts, tt.token, tt.origin)
			if c != nil {
				defer c.Close()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	t.Run("ws cookie without origin", func(t *testing.T) {
		h := http.Header{"Cookie": {cookie}}
		c, resp, _ := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", h)
		if c != nil {
			c.Close()
		}
		if resp == nil || resp.StatusCode != 403 {
			t.Fatalf("got %v, want 403", resp)
		}
	})
}

func testChat(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	aliceTok, bobTok, carolTok := login(t, ts, "alice"), login(t, ts, "bob"), login(t, ts, "carol")

	alice := dial(t, ts, aliceTok)
	hello := alice.expect("hello", typeIs("hello"))
	if hello["user"] != "alice" {
		t.Fatalf("hello user = %v", hello["user"])
	}
	var names []string
	for _, c := range hello["channels"].([]any) {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	if diff := cmp.Diff([]string{"general", "random"}, names); diff != "" {
		t.Fatalf("hello channels (-want +got):\n%s", diff)
	}

	alice.send(map[string]any{"type": "watch", "users": []string{"bob"}})
	alice.expect("bob offline, as she starts watching", typeIs("presence", "user", "bob", "status", "offline"))
	bob := dial(t, ts, bobTok)
	bob.expect("hello", typeIs("hello"))
	alice.expect("bob online", typeIs("presence", "user", "bob", "status", "online"))

	t.Run("channel message reaches everyone, sender included", func(t *testing.T) {
		id := alice.sendAndAck("general", "", "hello everyone", "c1")
		for name, c := range map[string]*client{"alice": alice, "bob": bob} {
			m := c.expect(name+" gets message", typeIs("message", "id", id, "channel", "general"))
			if m["from"] != "alice" || m["text"] != "hello everyone" || m["channel"] != "general" {
				t.Errorf("%s got %v", name, m)
			}
		}
	})

	t.Run("clientId de-duplicates a retried send", func(t *testing.T) {
		first := alice.sendAndAck("general", "", "once", "dup-1")
		second := alice.sendAndAck("general", "", "once", "dup-1")
		if first != second {
			t.Fatalf("retry got id %s, first %s", second, first)
		}
		r := call(t, "GET", ts.URL+"/api/v1/channels/general/messages", bobTok, nil)
		count := 0
		for _, m := range r.Body["messages"].([]any) {
			if m.(map[string]any)["text"] == "once" {
				count++
			}
		}
		if count != 1 {
			t.Fatalf("stored %d copies", count)
		}
	})

	t.Run("mention notifies", func(t *testing.T) {
		id := alice.sendAndAck("general", "", "hey @Bob, look", "c2")
		n := bob.expect("mention", typeIs("notification", "id", id))
		if n["kind"] != "mention" || n["from"] != "alice" || n["channel"] != "general" {
			t.Fatalf("notification %v", n)
		}
	})

	t.Run("direct message", func(t *testing.T) {
		id := alice.sendAndAck("", "bob", "psst", "c3")
		for name, c := range map[string]*client{"alice": alice, "bob": bob} {
			m := c.expect(name+" gets DM", typeIs("message", "id", id, "channel", "dm:alice:bob"))
			if m["channel"] != "dm:alice:bob" {
				t.Errorf("%s: DM channel %v", name, m["channel"])
			}
		}
		n := bob.expect("dm notification", typeIs("notification", "id", id, "channel", "dm:alice:bob"))
		if n["kind"] != "dm" {
			t.Fatalf("notification %v", n)
		}
		// Only the two members may read it.
		if r := call(t, "GET", ts.URL+"/api/v1/channels/dm:alice:bob/messages", carolTok, nil); r.Status != 403 {
			t.Fatalf("carol reading the DM: %d", r.Status)
		}
		carol := dial(t, ts, carolTok)
		carol.expect("hello", typeIs("hello"))
		carol.send(map[string]any{"type": "resume", "since": map[string]string{"dm:alice:bob": ""}})
		carol.expect("forbidden", typeIs("error", "code", "forbidden"))
		carol.send(map[string]any{"type": "send", "channel": "dm:alice:bob", "text": "hi", "clientId": "x"})
		carol.expect("forbidden send", typeIs("error", "code", "forbidden", "clientId", "x"))
		carol.send(map[string]any{"type": "send", "to": "nobody", "text": "hi", "clientId": "y"})
		carol.expect("unknown user", typeIs("error", "code", "unknown_channel", "clientId", "y"))
		// A newcomer starts with the history read, not hundreds of unread.
		dave := login(t, ts, "dave")
		r0 := call(t, "GET", ts.URL+"/api/v1/channels", dave, nil)
		for _, c := range r0.Body["channels"].([]any) {
			if m := c.(map[string]any); m["unread"] != float64(0) {
				t.Errorf("new account: %v unread in %v", m["unread"], m["name"])
			}
		}
		// Bob's channel list now has the DM, with one unread.
		r := call(t, "GET", ts.URL+"/api/v1/channels", bobTok, nil)
		found := false
		for _, c := range r.Body["channels"].([]any) {
			m := c.(map[string]any)
			if m["name"] == "dm:alice:bob" {
				found = true
				if m["unread"] != float64(1) || m["lastId"] != id {
					t.Errorf("dm channel info %v", m)
				}
			}
		}
		if !found {
			t.Fatalf("bob's channels lack the DM: %v", r.Body)
		}
	})

	t.Run("typing and read markers", func(t *testing.T) {
		alice.send(map[string]any{"type": "typing", "channel": "general"})
		bob.expect("typing", typeIs("typing", "user", "alice", "channel", "general"))
		bob2 := dial(t, ts, bobTok)
		bob2.expect("hello", typeIs("hello"))
		id := alice.sendAndAck("general", "", "read me", "c4")
		bob.expect("message", typeIs("message", "id", id))
		bob.send(map[string]any{"type": "read", "channel": "general", "id": id})
		bob2.expect("read on other device", typeIs("read", "channel", "general", "id", id))
		r := call(t, "GET", ts.URL+"/api/v1/channels", bobTok, nil)
		for _, c := range r.Body["channels"].([]any) {
			if m := c.(map[string]any); m["name"] == "general" && m["unread"] != float64(0) {
				t.Errorf("general unread after read = %v", m["unread"])
			}
		}
	})

	t.Run("resume replays what was missed, in order", func(t *testing.T) {
		last := alice.sendAndAck("general", "", "before", "r0")
		bob.expect("before", typeIs("message", "id", last))
		_ = bob.ws.Close()
		<-bob.closed
		var want []string
		for i := 0; i < 5; i++ {
			want = append(want, alice.sendAndAck("general", "", fmt.Sprint("missed ", i), fmt.Sprint("r", i+1)))
		}
		// Its first frame: live messages whose fan-out is still under way
		// wait behind the replay.
		bob = dialResuming(t, ts, bobTok, map[string]string{"general": last})
		bob.expect("hello", typeIs("hello"))
		var got []string
		for range want {
			got = append(got, bob.expect("replayed", typeIs("message", "channel", "general"))["id"].(string))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("replayed ids (-want +got):\n%s", diff)
		}
		if r := bob.expect("resumed", typeIs("resumed")); r["recovered"].(map[string]any)["general"] != true {
			t.Errorf("resumed %v, want general recovered", r)
		}
		live := alice.sendAndAck("general", "", "live", "r9")
		if m := bob.expect("live after replay", typeIs("message", "channel", "general")); m["id"] != live {
			t.Fatalf("after replay got %v, want live %s", m["id"], live)
		}
	})

	t.Run("history pages newest last", func(t *testing.T) {
		r := call(t, "GET", ts.URL+"/api/v1/channels/general/messages?limit=3", bobTok, nil)
		page := r.Body["messages"].([]any)
		if len(page) != 3 || page[2].(map[string]any)["text"] != "live" {
			t.Fatalf("newest page %v", page)
		}
		oldest := page[0].(map[string]any)["id"].(string)
		r = call(t, "GET", ts.URL+"/api/v1/channels/general/messages?limit=2&before="+oldest, bobTok, nil)
		older := r.Body["messages"].([]any)
		if len(older) != 2 || older[1].(map[string]any)["text"] != "missed 2" {
			t.Fatalf("older page %v", older)
		}
		for _, q := range []string{"?limit=0", "?limit=abc", "?before=xyz"} {
			if r := call(t, "GET", ts.URL+"/api/v1/channels/general/messages"+q, bobTok, nil); r.Status != 400 {
				t.Errorf("%s: %d", q, r.Status)
			}
		}
		if r := call(t, "GET", ts.URL+"/api/v1/channels/nope/messages", bobTok, nil); r.Status != 404 {
			t.Errorf("unknown channel: %d", r.Status)
		}
	})

}

func testPresenceOffline(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	alice := dial(t, ts, login(t, ts, "alice"))
	alice.expect("hello", typeIs("hello"))
	alice.send(map[string]any{"type": "watch", "users": []string{"bob"}})
	alice.expect("bob offline, as she starts watching", typeIs("presence", "user", "bob", "status", "offline"))
	bobTok := login(t, ts, "bob")
	bob1, bob2 := dial(t, ts, bobTok), dial(t, ts, bobTok)
	bob1.expect("hello", typeIs("hello"))
	bob2.expect("hello", typeIs("hello"))
	alice.expect("bob online", typeIs("presence", "user", "bob", "status", "online"))
	_ = bob1.ws.Close()
	_ = bob2.ws.Close()
	alice.expect("bob offline", typeIs("presence", "user", "bob", "status", "offline"))
}

func testBadInput(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxMessageBytes = 100
	cfg.MessageBurst = 100
	ts := startServer(t, cfg, server.Options{})
	c := dial(t, ts, login(t, ts, "alice"))
	c.expect("hello", typeIs("hello"))
	tests := []struct {
		name     string
		typ      int
		frame    string
		wantCode string
	}{
		{"malformed JSON", websocket.TextMessage, `{"type":"send",`, "bad_request"},
		{"not an object", websocket.TextMessage, `[1,2]`, "bad_request"},
		{"unknown type", websocket.TextMessage, `{"type":"shout"}`, "bad_request"},
		{"no type", websocket.TextMessage, `{}`, "bad_request"},
		{"unknown field", websocket.TextMessage, `{"type":"typing","channel":"general","x":1}`, "bad_request"},
		{"invalid UTF-8", websocket.TextMessage, "{\"type\":\"send\",\"channel\":\"general\",\"text\":\"\xff\xfe\",\"clientId\":\"u\"}", "bad_request"},
		{"binary frame", websocket.BinaryMessage, `{"type":"typing","channel":"general"}`, "bad_request"},
		{"send without clientId", websocket.TextMessage, `{"type":"send","channel":"general","text":"hi"}`, "bad_request"},
		{"send without text", websocket.TextMessage, `{"type":"send","channel":"general","clientId":"a"}`, "bad_request"},
		{"send with channel and to", websocket.TextMessage, `{"type":"send","channel":"general","to":"bob","text":"x","clientId":"a"}`, "bad_request"},
		{"text over the limit", websocket.TextMessage, `{"type":"send","channel":"general","text":"` + strings.Repeat("x", 101) + `","clientId":"a"}`, "too_large"},
		{"unknown channel", websocket.TextMessage, `{"type":"send","channel":"nope","text":"x","clientId":"a"}`, "unknown_channel"},
		{"bad channel name", websocket.TextMessage, `{"type":"typing","channel":"../../etc"}`, "unknown_channel"},
		{"bad resume id", websocket.TextMessage, `{"type":"resume","since":{"general":"abc"}}`, "bad_request"},
		{"bad read id", websocket.TextMessage, `{"type":"read","channel":"general","id":"1"}`, "bad_request"},
		{"watch of a bad name", websocket.TextMessage, `{"type":"watch","users":["bob","../x"]}`, "bad_request"},
		{"watch of too many", websocket.TextMessage, `{"type":"watch","users":["u00"` + strings.Repeat(`,"u00"`, protocol.MaxWatch) + `]}`, "bad_request"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.sendRaw(tt.typ, []byte(tt.frame))
			c.expect("error "+tt.wantCode, typeIs("error", "code", tt.wantCode))
			// The connection is still usable.
			c.sendAndAck("general", "", "still here", fmt.Sprint("ok-", i))
		})
	}
	t.Run("ping and pong frames between messages", func(t *testing.T) {
		// The server handles control frames itself, outside gorilla's
		// ReadMessage (chatserver/wsconn): a ping is answered with its
		// payload, a pong is accepted, and messages around them still flow.
		ctl := func(typ int, payload string) {
			if err := c.ws.WriteControl(typ, []byte(payload), time.Now().Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		ctl(websocket.PingMessage, "are you there")
		if got := <-c.pongs; got != "are you there" {
			t.Fatalf("pong %q, want the ping's payload", got)
		}
		ctl(websocket.PongMessage, "unasked")
		c.sendAndAck("general", "", "after a pong", "ctl-1")
		ctl(websocket.PingMessage, "")
		ctl(websocket.PongMessage, "x")
		c.sendAndAck("general", "", "after both", "ctl-2")
		if got := <-c.pongs; got != "" {
			t.Fatalf("pong %q, want an empty one", got)
		}
	})
	t.Run("frame over the read limit closes with 1009", func(t *testing.T) {
		// The server may stop reading mid-frame, so the write itself may fail.
		_ = c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"send","channel":"general","clientId":"a","text":"`+strings.Repeat("y", 100000)+`"}`))
		if got := c.closeCode(); got != 1009 {
			t.Fatalf("close code %d, want 1009", got)
		}
	})
}

func testRateLimit(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MessagesPerSecond = 0.001 // no refill during the test
	cfg.MessageBurst = 3
	ts := startServer(t, cfg, server.Options{})
	c := dial(t, ts, login(t, ts, "alice"))
	c.expect("hello", typeIs("hello"))
	for i := 0; i < 3; i++ {
		c.sendAndAck("general", "", "burst", fmt.Sprint("b", i))
	}
	c.send(map[string]any{"type": "send", "channel": "general", "text": "one too many", "clientId": "b3"})
	c.expect("rate limited", typeIs("error", "code", "rate_limited", "clientId", "b3"))
}

// Every frame type spends one budget per socket (the room's send limit comes
// on top): past it frames get rate_limited, and a socket that keeps flooding
// is closed with 1008. Other people's sockets are not touched.
func testFrameBudget(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MessagesPerSecond, cfg.MessageBurst = 5, 10 // the defaults: the frame budget is 20/s, burst 60
	ts := startServer(t, cfg, server.Options{})
	bob := dial(t, ts, login(t, ts, "bob"))
	bob.expect("hello", typeIs("hello"))
	c := dial(t, ts, login(t, ts, "alice"))
	c.expect("hello", typeIs("hello"))
	// Typing frames cost no storage write each, but they cost fan-out:
	// 61 at once is one past the burst (80 leave the server a second to
	// read them, as the budget refills meanwhile).
	for range 80 {
		c.send(map[string]any{"type": "typing", "channel": "general"})
	}
	c.expect("rate limited typing", typeIs("error", "code", "rate_limited"))
	// Undecodable frames spend the budget too, and flooding ends the socket
	// (about 100 refusals on; more are written in case the server reads
	// slowly, as refusals refill meanwhile): once the server's close has
	// come in, writing fails, as it should.
	for range 1000 {
		if err := c.ws.WriteMessage(websocket.TextMessage, []byte("{nonsense")); err != nil {
			break
		}
	}
	if got := c.closeCode(); got != 1008 {
		t.Fatalf("flooding socket closed with %d, want 1008", got)
	}
	if !strings.Contains(metrics(t, ts), `hubbub_errors_total{code="flooding"} 1`) {
		t.Errorf("/metrics does not count the flooding close (hubbub_errors_total{code=\"flooding\"}); close: %v", c.closeErr)
	}
	bob.sendAndAck("general", "", "still here", "b1")
}

// A resume may name only channels the person may read: a made-up DM with
// their own name in it is refused, in one error for the lot, and costs no
// subscription; their real DMs and public channels resume.
func testResumeOnlyOwnChannels(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	alice := dial(t, ts, login(t, ts, "alice"))
	alice.expect("hello", typeIs("hello"))
	login(t, ts, "bob")
	dm := alice.sendAndAck("", "bob", "a real DM", "d1")
	since := map[string]string{"general": "", "dm:alice:bob": ""}
	for i := range 998 { // a resume names at most 1000 channels
		since[fmt.Sprintf("dm:alice:ghost%04d", i)] = ""
	}
	alice.send(map[string]any{"type": "resume", "since": since})
	e := alice.expect("one unknown_channel error", typeIs("error", "code", "unknown_channel"))
	if msg, _ := e["message"].(string); !strings.Contains(msg, "dm:alice:ghost0000") || !strings.Contains(msg, "and 995 more") {
		t.Errorf("error message %q: want the first made-up channels named and the rest counted", msg)
	}
	alice.expect("the real DM replayed", typeIs("message", "id", dm, "channel", "dm:alice:bob"))
	// The socket is still fine, and no second error came for the rest:
	// they would have come before this ack.
	alice.sendAndAck("general", "", "after the resume", "g1")
	if n := alice.backlogged(typeIs("error")); n != 0 {
		t.Errorf("%d more error objects, want 1 for the whole resume", n)
	}
}

// After a resume's replay, resumed says per channel whether the client now
// holds everything after the id it gave: not when that id was trimmed away.
func testResumedSaysWhatWasKept(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.HistoryMax = 5
	ts := startServer(t, cfg, server.Options{})
	tok := login(t, ts, "alice")
	a := dial(t, ts, tok)
	a.expect("hello", typeIs("hello"))
	a.expect("resumed, for the empty resume every client sends first", typeIs("resumed"))
	// Redis trims its streams in whole nodes (100 entries): send enough
	// that the first messages are surely gone on every backend.
	var ids []string
	for i := range 300 {
		ids = append(ids, a.sendAndAck("general", "", fmt.Sprint("m", i), fmt.Sprint("c", i)))
	}
	for _, tc := range []struct {
		name, since string
		want        bool
	}{
		{"since a trimmed message", ids[0], false},
		{"since the newest but one", ids[len(ids)-2], true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := dialResuming(t, ts, tok, map[string]string{"general": tc.since, "random": ""})
			b.expect("hello", typeIs("hello"))
			r := b.expect("resumed", typeIs("resumed"))
			rec, _ := r["recovered"].(map[string]any)
			if rec["general"] != tc.want || rec["random"] != true {
				t.Errorf("recovered %v, want general %t and random true", rec, tc.want)
			}
			// The newest message was replayed before resumed came.
			if b.backlogged(typeIs("message", "id", ids[len(ids)-1])) != 1 {
				t.Errorf("the newest message was not replayed before resumed")
			}
		})
	}
}

// A resume that is not the socket's first frame comes after live messages
// went out: if the replay holds anything between its id and what went out
// live, it cannot go out in order, so the channel is not recovered (the
// client reloads its history), and nothing is sent twice.
func testLateResume(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	alice := dial(t, ts, login(t, ts, "alice"))
	alice.expect("hello", typeIs("hello"))
	bobTok := login(t, ts, "bob")
	old := alice.sendAndAck("general", "", "old", "a0")
	gap := alice.sendAndAck("general", "", "before bob came", "a1")
	bob := dial(t, ts, bobTok)
	bob.expect("hello", typeIs("hello"))
	bob.expect("resumed, for the empty first resume", typeIs("resumed"))
	live := alice.sendAndAck("general", "", "live", "a2")
	bob.expect("live", typeIs("message", "id", live))
	for _, tc := range []struct {
		name, since string
		want        bool
	}{
		{"from before what went out live", old, false},
		{"from the newest it has", live, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The gap may have reached bob live too, if its fan-out was
			// under way when bob came: count what it had before.
			had := map[string]int{}
			for _, id := range []string{gap, live} {
				had[id] = bob.backlogged(typeIs("message", "id", id))
			}
			bob.send(map[string]any{"type": "resume", "since": map[string]string{"general": tc.since}})
			r := bob.expect("resumed", typeIs("resumed"))
			if got := r["recovered"].(map[string]any)["general"]; got != tc.want {
				t.Errorf("recovered %v, want %t", got, tc.want)
			}
			for _, id := range []string{gap, live} {
				if n := bob.backlogged(typeIs("message", "id", id)) - had[id]; n != 0 {
					t.Errorf("%d more copies of %s: sent out of order, or twice", n, id)
				}
			}
		})
	}
}

// A read marker cannot move past the channel's last message.
func testReadMarkerBounded(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	token := login(t, ts, "alice")
	phone := dial(t, ts, token)
	phone.expect("hello", typeIs("hello"))
	laptop := dial(t, ts, token)
	laptop.expect("hello", typeIs("hello"))
	id := phone.sendAndAck("general", "", "hello", "m1")
	phone.send(map[string]any{"type": "read", "channel": "general", "id": "99999999999999-0"})
	phone.expect("refused future marker", typeIs("error", "code", "bad_request"))
	phone.send(map[string]any{"type": "read", "channel": "general", "id": id})
	laptop.expect("the marker at the last message", typeIs("read", "channel", "general", "id", id))
}

func testConnectionLimit(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxConnectionsPerUser = 2
	ts := startServer(t, cfg, server.Options{})
	tok := login(t, ts, "alice")
	for i := 0; i < 2; i++ {
		dial(t, ts, tok).expect("hello", typeIs("hello"))
	}
	if got := dial(t, ts, tok).closeCode(); got != 4429 {
		t.Fatalf("third socket closed with %d, want 4429 (too many connections)", got)
	}
}

func testServerFull(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxConnections = 2
	ts := startServer(t, cfg, server.Options{})
	for _, u := range []string{"alice", "bob"} {
		dial(t, ts, login(t, ts, u)).expect("hello", typeIs("hello"))
	}
	if got := dial(t, ts, login(t, ts, "carol")).closeCode(); got != 1013 {
		t.Fatalf("socket over the server's limit closed with %d, want 1013", got)
	}
}

func testDrain(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	c := dial(t, ts, login(t, ts, "alice"))
	c.expect("hello", typeIs("hello"))
	stopped := make(chan struct{})
	go func() { ts.Stop(); close(stopped) }()
	c.expect("reconnect", typeIs("reconnect", "reason", "draining"))
	if got := c.closeCode(); got != 1012 {
		t.Fatalf("close code %d, want 1012", got)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop after its clients left")
	}
}

func testHealth(t *testing.T, b backend) {
	cfg := b.config(t)
	ts := startServer(t, cfg, server.Options{})
	status := func(p string) int {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := status("/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	// Ready once the room's channels are followed: "starting" (503) until
	// then, as a probe would see it.
	deadline := time.Now().Add(5 * time.Second)
	for code := status("/readyz"); code != 200; code = status("/readyz") {
		if code != 503 || time.Now().After(deadline) {
			t.Fatalf("/readyz: %d, want 200 (or 503 while starting)", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := dial(t, ts, login(t, ts, "alice"))
	c.expect("hello", typeIs("hello"))
	c.sendRaw(websocket.TextMessage, []byte("nonsense"))
	c.expect("error", typeIs("error"))
	c.sendAndAck("general", "", "counted", "m1")
	body := metrics(t, ts)
	want := []string{`hubbub_connections 1`, `hubbub_frames_in_total{type="invalid"} 1`, `hubbub_errors_total{code="bad_request"} 1`, `hubbub_auth_total{outcome="login"} 1`,
		"hubbub_delivery_latency_seconds_bucket", "hubbub_ack_latency_seconds_count 1"}
	if cfg.RedisURL != "" {
		want = append(want, "hubbub_redis_reconnects_total 0", "hubbub_redis_delivered_total")
		// Every chat-server metric the chart's dashboard reads (the rest
		// are the operator's) exists on a production chat server.
		names, err := chart.DashboardMetrics("../../charts/hubbub/dashboards/hubbub.json")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !strings.HasPrefix(n, "hubbub_chatroom_") && !strings.HasPrefix(n, "controller_runtime_") {
				want = append(want, "\n"+n)
			}
		}
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}

// Connections that come and go leave nothing behind: the hub forgets them
// (and TestMain's goleak check finds no goroutine left over). It counts the
// goroutines and open files of the whole process, which any other test
// running meanwhile would move: it is one of aloneContractTests.
func testConnectionChurn(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	tok := login(t, ts, "alice")
	warm := dial(t, ts, tok)
	warm.expect("hello", typeIs("hello"))
	// A first round of churn grows what stays for the server's life (its
	// storage pool, feed subscriptions) to its steady size; the second must
	// then leave nothing behind.
	churn(t, ts, tok)
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	churn(t, ts, tok)
	// Nothing announces that the last goroutine of a socket has returned
	// or its descriptor is closed: poll, with a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, g, f := ts.Server.ConnectionCount(), runtime.NumGoroutine(), openFDs(t)
		// A leak would show once per socket (50 of them); the Redis pool may
		// still grow by a connection or two between rounds.
		if n == 1 && g <= goroutines+2 && f <= fds+2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 50 sockets came and went: %d connections registered (want 1), %d goroutines (baseline %d), %d open files (baseline %d)",
				n, g, goroutines, f, fds)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// churn opens 50 sockets and drops them, half politely, and waits until
// the server has forgotten them. Each socket reads its first frame before
// it goes: the server registers a socket after the upgrade, and a socket
// dropped before that could register after the count was checked.
func churn(t *testing.T, ts *testServer, tok string) {
	t.Helper()
	base := ts.Server.ConnectionCount()
	for i := 0; i < 50; i++ {
		c, _, err := dialRaw(ts, tok, ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatalf("socket %d: reading hello: %v", i, err)
		}
		if i%2 == 0 {
			// Half leave politely, half just drop the TCP connection.
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
		_ = c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for ts.Server.ConnectionCount() != base {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still registered, want %d", ts.Server.ConnectionCount(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(entries)
}

// A peer that never answers pings (nor sends anything) is closed once the
// pong wait passes, and forgotten.
func testDeadPeer(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.PongWait = time.Second
	ts := startServer(t, cfg, server.Options{})
	c, _, err := dialRaw(ts, login(t, ts, "alice"), ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Not reading is what keeps gorilla from answering the pings: the test
	// must not read until the server has given up on the socket. The server
	// registers a socket after the upgrade; wait for that, then for its end.
	deadline := time.Now().Add(10 * time.Second)
	for ts.Server.ConnectionCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the socket was never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for ts.Server.ConnectionCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a silent peer is still connected 10 s after a 1 s pong wait")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Its TCP connection is gone too: reading finds the end.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the server forgot the socket but did not close it: %v", err)
			}
			return
		}
	}
}

// hello is always a socket's first object, even while other sockets open
// beside it.
func testHelloFirst(t *testing.T, b backend) {
	cfg := b.config(t)
	ts := startServer(t, cfg, server.Options{})
	var toks []string
	for i := 0; i < 12; i++ {
		toks = append(toks, login(t, ts, fmt.Sprintf("user%d", i)))
	}
	firsts := make(chan string, len(toks))
	for _, tok := range toks {
		go func() {
			c, _, err := dialRaw(ts, tok, ts.URL)
			if err != nil {
				firsts <- "dial: " + err.Error()
				return
			}
			defer c.Close()
			_, data, err := c.ReadMessage()
			if err != nil {
				firsts <- "read: " + err.Error()
				return
			}
			first, _, _ := strings.Cut(string(data), "\n")
			firsts <- first
		}()
	}
	for range toks {
		if f := <-firsts; !strings.HasPrefix(f, `{"type":"hello"`) {
			t.Errorf("first object %.80s, want hello", f)
		}
	}
}

// testSlowConsumer: a client that stops reading is cut off once its send
// queue overflows, and nobody else is held up meanwhile.
func testSlowConsumer(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxMessageBytes = 60000
	cfg.SendQueueMax = 32
	cfg.MessagesPerSecond, cfg.MessageBurst = 10000, 10000
	ts := startServer(t, cfg, server.Options{})

	stalled := stalledClient(t, ts, "bob")

	alice := dial(t, ts, login(t, ts, "alice"))
	alice.expect("hello", typeIs("hello"))
	const sends = 400 // 20 MB: more than loopback's socket buffers (≤ 10 MB) and the queue hold
	ids := sendBig(alice, sends)

	// Everything alice was sent reached her...
	for _, id := range ids {
		alice.expect("message "+id, typeIs("message", "id", id))
	}
	// ...while the stalled socket was cut: reading it now drains what the
	// buffers held, then fails, well short of every message.
	got, err := drainUntilClosed(t, stalled)
	// The close frame says why (4408), unless the connection was cut
	// because the writer was stuck on it (1006: no close frame).
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code != 4408 && ce.Code != 1006 {
		t.Errorf("closed with %d, want 4408 (too slow) or 1006", ce.Code)
	}
	if got >= sends {
		t.Fatalf("the stalled socket got all %d messages", got)
	}
	if !strings.Contains(metrics(t, ts), "hubbub_slow_consumers_total 1") {
		t.Error("/metrics does not count the slow consumer")
	}
}

// testPresenceBatch: many people coming online at once reach a socket that
// watches them as one presence object each (batches are pre-joined
// objects, which the client splits like any coalesced frame), none lost,
// none malformed; a socket that watches none of them hears nothing. The
// largest watch there is fits however small the room's text limit.
func testPresenceBatch(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxMessageBytes = 100
	ts := startServer(t, cfg, server.Options{})
	observer := dial(t, ts, login(t, ts, "observer"))
	observer.expect("hello", typeIs("hello"))
	bystander := dial(t, ts, login(t, ts, "bystander"))
	bystander.expect("hello", typeIs("hello"))
	const n = 40
	watched := make([]string, protocol.MaxWatch)
	for i := range watched {
		watched[i] = fmt.Sprintf("crowd%d%s", i, strings.Repeat("x", 32))[:32]
	}
	observer.send(map[string]any{"type": "watch", "users": watched})
	for _, u := range watched {
		observer.expect(u+" offline, as watching starts", typeIs("presence", "user", u, "status", "offline"))
	}
	for _, u := range watched[:n] {
		c := dial(t, ts, login(t, ts, u))
		c.expect("hello", typeIs("hello"))
	}
	for _, u := range watched[:n] {
		observer.expect(u+" online", typeIs("presence", "user", u, "status", "online"))
	}
	// What the bystander was sent before this answer is all in its backlog
	// once the answer is read: none of it may be presence.
	bystander.send(map[string]any{"type": "watch", "users": []string{"observer"}})
	bystander.expect("observer online", typeIs("presence", "user", "observer", "status", "online"))
	if got := bystander.backlogged(typeIs("presence")); got != 0 {
		t.Errorf("a socket watching nobody got %d presence objects", got)
	}
}

// testWriteTimeout: a client that stops reading in a quiet room (its queue
// never overflows) is closed once a write to it has blocked for
// --write-timeout.
func testWriteTimeout(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxMessageBytes = 60000
	cfg.WriteTimeout = time.Second
	cfg.MessagesPerSecond, cfg.MessageBurst = 10000, 10000
	ts := startServer(t, cfg, server.Options{})
	stalled := stalledClient(t, ts, "bob")
	alice := dial(t, ts, login(t, ts, "alice"))
	alice.expect("hello", typeIs("hello"))
	sendBig(alice, 300) // 15 MB: more than loopback's socket buffers, far less than the queue
	// Nothing to await but the server's own count: poll it.
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(metrics(t, ts), `hubbub_errors_total{code="write_timeout"} 1`) {
		if time.Now().After(deadline) {
			t.Fatal("the blocked write was not timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
	drainUntilClosed(t, stalled)
	if strings.Contains(metrics(t, ts), "hubbub_slow_consumers_total 1") {
		t.Error("closed as a slow consumer, not by the write timeout")
	}
}

func metrics(t *testing.T, ts *testServer) string {
	t.Helper()
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// stalledClient connects as user, sends its resume, and never reads again.
func stalledClient(t *testing.T, ts *testServer, user string) *websocket.Conn {
	t.Helper()
	ws, _, err := dialRaw(ts, login(t, ts, user), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if err := ws.WriteJSON(map[string]any{"type": "resume", "since": map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	return ws
}

// sendBig sends n 50 KB messages to #general and returns their ids.
func sendBig(c *client, n int) []string {
	c.t.Helper()
	big := strings.Repeat("x", 50000)
	ids := make([]string, n)
	for i := range n {
		ids[i] = c.sendAndAck("general", "", big, fmt.Sprint("big-", i))
	}
	return ids
}

// drainUntilClosed reads ws until the server has closed it, returning the
// message objects read before and the error that ended it; it fails the
// test if ws is still open after waitFor.
func drainUntilClosed(t *testing.T, ws *websocket.Conn) (messages int, err error) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	for {
		_, data, err := ws.ReadMessage()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the socket is still open after %d messages", messages)
		}
		if err != nil {
			return messages, err
		}
		messages += strings.Count(string(data), `"type":"message"`)
	}
}

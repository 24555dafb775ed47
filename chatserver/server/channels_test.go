package server_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/backend/embedded"
	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// People and channels (docs/protocol.md): the directory, channels people
// create, membership and who may read what. Each runs on every backend.
var channelContractTests = []contractTest{
	{"PeopleDirectory", testPeopleDirectory},
	{"DMToSomeoneOffline", testDMToSomeoneOffline},
	{"ChannelLifecycle", testChannelLifecycle},
	{"ChannelBadInput", testChannelBadInput},
	{"ChannelLimits", testChannelLimits},
	{"PrivateChannelInvisible", testPrivateChannelInvisible},
	{"RemovedOnEveryServer", testRemovedOnEveryServer},
}

func init() { contractTests = append(contractTests, channelContractTests...) }

// startPair starts two servers of one room on one storage, as two pods.
func startPair(t *testing.T, b backend, cfg config.Config) (*testServer, *testServer) {
	var first *memory.Backend
	switch b.name {
	case "redis":
		return startServer(t, cfg, server.Options{}), startServer(t, cfg, server.Options{})
	case "embedded":
		// One process holds a data dir: the second server is a peer on it.
		e, err := embedded.Open(cfg.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		first = e.Backend
	default:
		first = memory.New()
		t.Cleanup(func() { _ = first.Close() })
	}
	second := first.Peer()
	t.Cleanup(func() { _ = second.Close() })
	// Servers stop (their Cleanup) before the backends close: Cleanups run last-in first-out.
	return startServer(t, cfg, server.Options{Backend: first}), startServer(t, cfg, server.Options{Backend: second})
}

// want checks a result's status and, for an error, its code.
func want(t *testing.T, what string, r apiResult, status int, code string) {
	t.Helper()
	if r.Status != status || r.errCode() != code {
		t.Errorf("%s: %d %q (%s), want %d %q", what, r.Status, r.errCode(), r.errMessage(), status, code)
	}
}

// names lists the values of key in the objects of list r.Body[field].
func names(r apiResult, field, key string) []string {
	out := []string{}
	list, _ := r.Body[field].([]any)
	for _, x := range list {
		out = append(out, fmt.Sprint(x.(map[string]any)[key]))
	}
	return out
}

func testPeopleDirectory(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	tok := login(t, ts, "alice")
	for _, u := range []string{"bob", "bobby", "carol", "dave"} {
		login(t, ts, u)
	}
	alice := dial(t, ts, tok)
	alice.expect("hello", typeIs("hello"))
	for _, tc := range []struct {
		query    string
		want     []string
		wantNext string
	}{
		{"", []string{"alice", "bob", "bobby", "carol", "dave"}, ""},
		{"?limit=2", []string{"alice", "bob"}, "bob"},
		{"?limit=2&after=bob", []string{"bobby", "carol"}, "carol"},
		{"?limit=2&after=carol", []string{"dave"}, ""},
		{"?q=bo", []string{"bob", "bobby"}, ""},
		{"?q=BO", []string{"bob", "bobby"}, ""}, // names are case-folded
		{"?q=bo&after=bob", []string{"bobby"}, ""},
		{"?q=zed", []string{}, ""},
	} {
		r := call(t, "GET", ts.URL+"/api/v1/users"+tc.query, tok, nil)
		if r.Status != 200 {
			t.Fatalf("GET /users%s: %d %v", tc.query, r.Status, r.Body)
		}
		if diff := cmp.Diff(tc.want, names(r, "users", "username")); diff != "" {
			t.Errorf("GET /users%s (-want +got):\n%s", tc.query, diff)
		}
		if r.Body["next"] != tc.wantNext {
			t.Errorf("GET /users%s: next %q, want %q", tc.query, r.Body["next"], tc.wantNext)
		}
	}
	r := call(t, "GET", ts.URL+"/api/v1/users", tok, nil)
	online := map[string]bool{}
	for _, x := range r.Body["users"].([]any) {
		u := x.(map[string]any)
		online[u["username"].(string)] = u["online"].(bool)
	}
	if !online["alice"] || online["bob"] {
		t.Errorf("online: %v, want alice (connected) only", online)
	}
	bobby := dial(t, ts, login(t, ts, "bobby"))
	bobby.expect("hello", typeIs("hello"))
	for _, tc := range []struct {
		query    string
		want     []string
		wantNext string
	}{
		{"?online=true", []string{"alice", "bobby"}, ""},
		{"?online=true&limit=1", []string{"alice"}, "alice"},
		{"?online=true&after=alice", []string{"bobby"}, ""},
		{"?online=true&q=bo", []string{"bobby"}, ""},
		{"?online=false&q=bo", []string{"bob", "bobby"}, ""},
	} {
		r := call(t, "GET", ts.URL+"/api/v1/users"+tc.query, tok, nil)
		if diff := cmp.Diff(tc.want, names(r, "users", "username")); diff != "" {
			t.Errorf("GET /users%s (-want +got):\n%s", tc.query, diff)
		}
		if r.Body["next"] != tc.wantNext {
			t.Errorf("GET /users%s: next %q, want %q", tc.query, r.Body["next"], tc.wantNext)
		}
	}
	for _, q := range []string{"?online=yes", "?limit=0", "?limit=201", "?limit=x", "?q=" + url.QueryEscape("a b"), "?after=" + strings.Repeat("a", 65)} {
		want(t, "GET /users"+q, call(t, "GET", ts.URL+"/api/v1/users"+q, tok, nil), 400, "bad_request")
	}
	want(t, "without a session", call(t, "GET", ts.URL+"/api/v1/users", "", nil), 401, "unauthorized")
}

// A DM to someone who is not connected is stored and waits for them: their
// hello counts it unread.
func testDMToSomeoneOffline(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	alice := dial(t, ts, login(t, ts, "alice"))
	alice.expect("hello", typeIs("hello"))
	carolTok := login(t, ts, "carol")
	id := alice.sendAndAck("", "carol", "ping me when you are back", "dm1")
	carol := dial(t, ts, carolTok)
	hello := carol.expect("hello", typeIs("hello"))
	found := false
	for _, x := range hello["channels"].([]any) {
		c := x.(map[string]any)
		if c["name"] == "dm:alice:carol" {
			found = true
			if c["unread"] != 1.0 || c["lastId"] != id {
				t.Errorf("carol's DM in hello: %v, want 1 unread, last id %s", c, id)
			}
		}
	}
	if !found {
		t.Fatalf("carol's hello has no dm:alice:carol: %v", hello["channels"])
	}
}

func testChannelLifecycle(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	aliceTok, bobTok := login(t, ts, "alice"), login(t, ts, "bob")
	login(t, ts, "carol")
	alice, bob := dial(t, ts, aliceTok), dial(t, ts, bobTok)
	alice.expect("hello", typeIs("hello"))
	bob.expect("hello", typeIs("hello"))
	api := func(tok, method, path string, body any) apiResult {
		return call(t, method, ts.URL+"/api/v1/channels"+path, tok, body)
	}

	r := api(aliceTok, "POST", "", map[string]any{"name": "Ops", "private": false})
	if r.Status != 201 || r.Body["name"] != "ops" || r.Body["private"] != false {
		t.Fatalf("create: %d %v, want 201 ops (names are case-folded)", r.Status, r.Body)
	}
	alice.expect("alice is in #ops", typeIs("channel", "name", "ops", "private", "false"))
	want(t, "create it again", api(bobTok, "POST", "", map[string]any{"name": "ops"}), 409, "channel_taken")
	want(t, "create a default channel", api(bobTok, "POST", "", map[string]any{"name": "general"}), 409, "channel_taken")

	r = api(aliceTok, "GET", "", nil)
	if diff := cmp.Diff([]string{"general", "random", "ops"}, names(r, "channels", "name")); diff != "" {
		t.Errorf("alice's channels (-want +got):\n%s", diff)
	}
	if chans := r.Body["channels"].([]any); chans[2].(map[string]any)["admin"] != true || chans[0].(map[string]any)["default"] != true {
		t.Errorf("alice's channels: %v, want general default and ops admin", chans)
	}

	// bob is not in #ops: he may read its history (it is public) but not post.
	first := alice.sendAndAck("ops", "", "before bob", "o1")
	if r := api(bobTok, "GET", "/ops/messages", nil); r.Status != 200 || len(r.Body["messages"].([]any)) != 1 {
		t.Errorf("bob reads public #ops: %d %v", r.Status, r.Body)
	}
	bob.send(map[string]any{"type": "send", "channel": "ops", "text": "let me in", "clientId": "b1"})
	bob.expect("bob may not post in #ops", typeIs("error", "code", "unknown_channel", "clientId", "b1"))

	r = api(bobTok, "GET", "/browse", nil)
	if r.Status != 200 || fmt.Sprint(r.Body["channels"]) != "[map[member:false members:1 name:ops]]" {
		t.Errorf("browse: %d %v", r.Status, r.Body)
	}
	want(t, "bob joins", api(bobTok, "POST", "/ops/join", map[string]any{}), 204, "")
	bob.expect("bob is in #ops", typeIs("channel", "name", "ops"))
	want(t, "bob joins again, in capitals", api(bobTok, "POST", "/OPS/join", map[string]any{}), 204, "")
	id := bob.sendAndAck("ops", "", "hi ops", "b2")
	alice.expect("alice gets bob's message", typeIs("message", "id", id, "channel", "ops"))
	bob.expect("bob gets his own", typeIs("message", "id", id, "channel", "ops"))
	if bob.backlogged(typeIs("message", "id", first)) != 0 {
		t.Error("bob was sent a message from before he joined as if live")
	}

	r = api(bobTok, "GET", "/ops/members", nil)
	if fmt.Sprint(r.Body["members"]) != "[map[admin:true online:true username:alice] map[online:true username:bob]]" {
		t.Errorf("members: %d %v", r.Status, r.Body)
	}
	want(t, "bob (not an admin) removes alice", api(bobTok, "DELETE", "/ops/members/alice", nil), 403, "forbidden")
	want(t, "bob grants himself admin", api(bobTok, "POST", "/ops/members", map[string]any{"username": "bob", "admin": true}), 403, "forbidden")
	r = api(aliceTok, "POST", "/ops/leave", map[string]any{})
	want(t, "the only admin leaves while bob is in", r, 409, "last_admin")
	if !strings.HasPrefix(r.errMessage(), "alice is the only admin") {
		t.Errorf("last admin message %q does not name her", r.errMessage())
	}
	want(t, "bob adds carol", api(bobTok, "POST", "/ops/members", map[string]any{"username": "carol"}), 204, "")
	want(t, "inviting nobody", api(bobTok, "POST", "/ops/members", map[string]any{"username": "nobody"}), 404, "unknown_user")

	want(t, "alice removes bob", api(aliceTok, "DELETE", "/ops/members/bob", nil), 204, "")
	bob.expect("bob is told", typeIs("removed", "channel", "ops"))
	bob.send(map[string]any{"type": "send", "channel": "ops", "text": "still here?", "clientId": "b3"})
	bob.expect("bob can no longer post", typeIs("error", "code", "unknown_channel", "clientId", "b3"))
	want(t, "remove bob again", api(aliceTok, "DELETE", "/ops/members/bob", nil), 404, "unknown_user")

	want(t, "alice makes carol admin", api(aliceTok, "POST", "/ops/members", map[string]any{"username": "carol", "admin": true}), 204, "")
	want(t, "now alice may leave", api(aliceTok, "POST", "/ops/leave", map[string]any{}), 204, "")
	alice.expect("alice is told she left", typeIs("removed", "channel", "ops"))
	want(t, "leave again", api(aliceTok, "POST", "/ops/leave", map[string]any{}), 404, "unknown_channel")
	want(t, "leave a default channel", api(aliceTok, "POST", "/general/leave", map[string]any{}), 400, "bad_request")
	want(t, "join a default channel", api(aliceTok, "POST", "/general/join", map[string]any{}), 400, "bad_request")
	want(t, "join nothing", api(aliceTok, "POST", "/nosuch/join", map[string]any{}), 404, "unknown_channel")
}

func testChannelBadInput(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	tok := login(t, ts, "alice")
	create := func(body any) apiResult { return call(t, "POST", ts.URL+"/api/v1/channels", tok, body) }
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"too long", map[string]any{"name": strings.Repeat("a", 64)}, 400, "bad_request"},
		{"reserved for DMs", map[string]any{"name": "dm:alice:bob"}, 400, "bad_request"},
		{"a colon", map[string]any{"name": "a:b"}, 400, "bad_request"},
		{"a space", map[string]any{"name": "two words"}, 400, "bad_request"},
		{"leading dash", map[string]any{"name": "-x"}, 400, "bad_request"},
		{"empty", map[string]any{"name": ""}, 400, "bad_request"},
		{"unknown field", map[string]any{"name": "x", "owner": "bob"}, 400, "bad_request"},
		{"not an object", []int{1}, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) { want(t, tc.name, create(tc.body), tc.status, tc.code) })
	}
	r := call(t, "POST", ts.URL+"/api/v1/channels", tok, nil, "Content-Type", "text/plain")
	want(t, "not JSON", r, 415, "unsupported_media_type")
	if r := call(t, "GET", ts.URL+"/api/v1/channels", tok, nil); len(r.Body["channels"].([]any)) != 2 {
		t.Errorf("refused creates made channels: %v", r.Body)
	}
}

func testChannelLimits(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.MaxChannelsPerUser = 2
	cfg.MaxChannelMembers = 2
	ts := startServer(t, cfg, server.Options{})
	aliceTok, bobTok, carolTok := login(t, ts, "alice"), login(t, ts, "bob"), login(t, ts, "carol")
	create := func(tok, name string) apiResult {
		return call(t, "POST", ts.URL+"/api/v1/channels", tok, map[string]any{"name": name})
	}
	want(t, "first", create(aliceTok, "one"), 201, "")
	want(t, "second", create(aliceTok, "two"), 201, "")
	r := create(aliceTok, "three")
	want(t, "third", r, 409, "limit_reached")
	if !strings.Contains(r.errMessage(), "2") {
		t.Errorf("limit message %q does not say the limit", r.errMessage())
	}
	want(t, "bob joins one", call(t, "POST", ts.URL+"/api/v1/channels/one/join", bobTok, map[string]any{}), 204, "")
	r = call(t, "POST", ts.URL+"/api/v1/channels/one/join", carolTok, map[string]any{})
	want(t, "carol joins a full one", r, 409, "limit_reached")
	want(t, "carol is invited to a full one", call(t, "POST", ts.URL+"/api/v1/channels/one/members", aliceTok, map[string]any{"username": "carol"}), 409, "limit_reached")
	if r := call(t, "GET", ts.URL+"/api/v1/channels/one/members", aliceTok, nil); len(r.Body["members"].([]any)) != 2 {
		t.Errorf("members after refusals: %v", r.Body)
	}
}

// A private channel does not exist for those not in it: not listed, not
// readable, not resumable, no typing, markers or notifications from it.
func testPrivateChannelInvisible(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.Admins = []string{"root"}
	ts := startServer(t, cfg, server.Options{})
	aliceTok, bobTok, rootTok := login(t, ts, "alice"), login(t, ts, "bob"), login(t, ts, "root")
	alice, bob := dial(t, ts, aliceTok), dial(t, ts, bobTok)
	alice.expect("hello", typeIs("hello"))
	bob.expect("hello", typeIs("hello"))
	ch := func(tok, method, path string, body any) apiResult {
		return call(t, method, ts.URL+"/api/v1/channels"+path, tok, body)
	}
	want(t, "create", ch(aliceTok, "POST", "", map[string]any{"name": "secret", "private": true}), 201, "")
	alice.expect("alice is in #secret", typeIs("channel", "name", "secret", "private", "true"))
	id := alice.sendAndAck("secret", "", "@bob is not here", "s1")

	for _, tc := range []struct {
		what, method, path string
		body               any
	}{
		{"history", "GET", "/secret/messages", nil},
		{"members", "GET", "/secret/members", nil},
		{"join uninvited", "POST", "/secret/join", map[string]any{}},
		{"invite", "POST", "/secret/members", map[string]any{"username": "bob"}},
		{"remove", "DELETE", "/secret/members/alice", nil},
	} {
		want(t, "bob: "+tc.what, ch(bobTok, tc.method, tc.path, tc.body), 404, "unknown_channel")
	}
	if r := ch(bobTok, "GET", "/browse", nil); len(r.Body["channels"].([]any)) != 0 {
		t.Errorf("bob browses %v", r.Body)
	}
	want(t, "its name is taken", ch(bobTok, "POST", "", map[string]any{"name": "secret"}), 409, "channel_taken")

	bob.send(map[string]any{"type": "resume", "since": map[string]string{"secret": ""}})
	bob.expect("resume refused", typeIs("error", "code", "unknown_channel"))
	bob.send(map[string]any{"type": "typing", "channel": "secret"})
	bob.expect("typing refused", typeIs("error", "code", "unknown_channel"))
	bob.send(map[string]any{"type": "read", "channel": "secret", "id": id})
	bob.expect("read refused", typeIs("error", "code", "unknown_channel"))
	// A DM after the mention: had the mention reached bob, it would have come first.
	dm := alice.sendAndAck("", "bob", "after", "d1")
	bob.expect("the DM", typeIs("message", "id", dm, "channel", "dm:alice:bob"))
	if n := bob.backlogged(typeIs("notification", "kind", "mention")) + bob.backlogged(typeIs("message", "channel", "secret")); n != 0 {
		t.Errorf("bob got %d objects from #secret", n)
	}

	// Invited, bob sees it; a room admin may remove anyone from it.
	want(t, "alice invites bob", ch(aliceTok, "POST", "/secret/members", map[string]any{"username": "bob"}), 204, "")
	bob.expect("bob is in #secret", typeIs("channel", "name", "secret", "private", "true"))
	if r := ch(bobTok, "GET", "/secret/messages", nil); r.Status != 200 || len(r.Body["messages"].([]any)) != 1 {
		t.Errorf("bob reads #secret: %d %v", r.Status, r.Body)
	}
	mention := alice.sendAndAck("secret", "", "now @bob is", "s2")
	bob.expect("the mention", typeIs("notification", "kind", "mention", "id", mention))
	want(t, "the room admin removes bob", ch(rootTok, "DELETE", "/secret/members/bob", nil), 204, "")
	bob.expect("bob is told", typeIs("removed", "channel", "secret"))
	want(t, "bob reads it again", ch(bobTok, "GET", "/secret/messages", nil), 404, "unknown_channel")
}

// A removed person's sockets on every server get removed, then nothing
// more of the channel: a message committed as they are removed reaches
// them before removed or not at all.
func testRemovedOnEveryServer(t *testing.T, b backend) {
	a, z := startPair(t, b, b.config(t))
	aliceTok, bobTok := login(t, a, "alice"), login(t, a, "bob")
	alice := dial(t, a, aliceTok)
	alice.expect("hello", typeIs("hello"))
	bobHere, bobThere := dial(t, a, bobTok), dial(t, z, bobTok)
	bobHere.expect("hello", typeIs("hello"))
	bobThere.expect("hello", typeIs("hello"))
	want(t, "create", call(t, "POST", a.URL+"/api/v1/channels", aliceTok, map[string]any{"name": "ops"}), 201, "")
	want(t, "invite bob", call(t, "POST", a.URL+"/api/v1/channels/ops/members", aliceTok, map[string]any{"username": "bob"}), 204, "")
	bobHere.expect("bob here is in #ops", typeIs("channel", "name", "ops"))
	bobThere.expect("bob on the other server is in #ops", typeIs("channel", "name", "ops"))

	// alice keeps sending while she removes bob.
	stop, sent := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := alice.ws.WriteJSON(map[string]any{"type": "send", "channel": "ops", "text": fmt.Sprint("m", n), "clientId": fmt.Sprint("c", n)}); err != nil {
				return
			}
			n++
			time.Sleep(time.Millisecond) // pacing only: the test awaits events, not this
		}
	}()
	bobThere.expect("the stream reaches bob", typeIs("message", "channel", "ops"))
	start := time.Now()
	want(t, "remove bob", call(t, "DELETE", a.URL+"/api/v1/channels/ops/members/bob", aliceTok, nil), 204, "")
	removedAt := float64(time.Now().UnixMilli())
	for name, c := range map[string]*client{"here": bobHere, "there": bobThere} {
		c.expect("removed on the server "+name, typeIs("removed", "channel", "ops"))
		if d := time.Since(start); d > time.Second {
			t.Errorf("removed reached bob's socket %s after %v, want within 1 s", name, d)
		}
		// Everything after removed: nothing of #ops may be among it.
		c.backlog = nil
	}
	// The stream goes on past the removal: alice sees 20 more of her own,
	// committed after it.
	for i := range 20 {
		alice.expect(fmt.Sprint("alice's message ", i, " after the removal"), func(o map[string]any) bool {
			ts, _ := o["ts"].(float64)
			return typeIs("message", "channel", "ops")(o) && ts > removedAt
		})
	}
	close(stop)
	n := <-sent
	// A DM after every send: once it arrives, anything of #ops sent before it would have too.
	dm := alice.sendAndAck("", "bob", "done", "dm")
	for name, c := range map[string]*client{"here": bobHere, "there": bobThere} {
		c.expect("the DM "+name, typeIs("message", "id", dm, "channel", "dm:alice:bob"))
		if k := c.backlogged(typeIs("message", "channel", "ops")); k != 0 {
			t.Errorf("bob's socket %s got %d messages of #ops after removed (of %d sent)", name, k, n)
		}
	}
}

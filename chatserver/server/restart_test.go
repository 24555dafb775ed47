package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// TestRestartKeepsData is the single-process server (`make run`) restarted
// on its data dir: people stay logged in, their passwords still work, and
// what they said, and read, is still there.
func TestRestartKeepsData(t *testing.T) {
	cfg := testConfig()
	cfg.DataDir = t.TempDir()

	ts := startServer(t, cfg, server.Options{})
	aliceTok := login(t, ts, "alice")
	bobTok := login(t, ts, "bob")
	alice := dial(t, ts, aliceTok)
	alice.expect("hello", typeIs("hello"))
	bob := dial(t, ts, bobTok)
	bob.expect("hello", typeIs("hello"))
	bob2 := dial(t, ts, bobTok)
	bob2.expect("hello", typeIs("hello"))

	said := alice.sendAndAck("general", "", "kept across restarts", "k1")
	bob.expect("message", typeIs("message", "id", said))
	bob.send(map[string]any{"type": "read", "channel": "general", "id": said})
	// The other device hears of the read once it is stored.
	bob2.expect("read on other device", typeIs("read", "channel", "general", "id", said))
	dm := alice.sendAndAck("", "bob", "psst", "k2")
	want(t, "create #plans", call(t, "POST", ts.URL+"/api/v1/channels", aliceTok, map[string]any{"name": "plans", "private": true}), 201, "")
	want(t, "invite bob", call(t, "POST", ts.URL+"/api/v1/channels/plans/members", aliceTok, map[string]any{"username": "bob"}), 204, "")
	planned := alice.sendAndAck("plans", "", "between us", "k4")
	ts.Stop()

	ts = startServer(t, cfg, server.Options{})
	t.Run("the session token still works", func(t *testing.T) {
		r := call(t, "GET", ts.URL+"/api/v1/me", aliceTok, nil)
		if r.Status != 200 || r.Body["username"] != "alice" {
			t.Errorf("GET /api/v1/me with the old token: %d %v", r.Status, r.Body)
		}
	})
	t.Run("the password still logs in", func(t *testing.T) {
		r := call(t, "POST", ts.URL+"/api/v1/login", "", map[string]string{"username": "alice", "password": "password-alice"})
		if r.Status != 200 {
			t.Errorf("login after restart: %d %v", r.Status, r.Body)
		}
		if r := call(t, "POST", ts.URL+"/api/v1/register", "", map[string]string{"username": "alice", "password": "someone-else"}); r.Status != 409 {
			t.Errorf("registering a kept username: %d, want 409", r.Status)
		}
	})
	t.Run("the message is in history", func(t *testing.T) {
		r := call(t, "GET", ts.URL+"/api/v1/channels/general/messages", bobTok, nil)
		msgs, _ := r.Body["messages"].([]any)
		if r.Status != 200 || len(msgs) != 1 {
			t.Fatalf("general history after restart: %d %v", r.Status, r.Body)
		}
		if m := msgs[0].(map[string]any); m["id"] != said || m["text"] != "kept across restarts" || m["from"] != "alice" {
			t.Errorf("general history after restart: %v", m)
		}
	})
	t.Run("the DM and the read marker are kept", func(t *testing.T) {
		r := call(t, "GET", ts.URL+"/api/v1/channels", bobTok, nil)
		chans, _ := r.Body["channels"].([]any)
		got := map[string]map[string]any{}
		for _, c := range chans {
			m := c.(map[string]any)
			got[m["name"].(string)] = m
		}
		if g := got["general"]; g == nil || g["lastId"] != said || g["unread"] != float64(0) {
			t.Errorf("bob's general after restart: %v (want lastId %s, nothing unread)", g, said)
		}
		if d := got["dm:alice:bob"]; d == nil || d["lastId"] != dm || d["unread"] != float64(1) {
			t.Errorf("bob's DM after restart: %v (want lastId %s, one unread)", d, dm)
		}
		if p := got["plans"]; p == nil || p["lastId"] != planned || p["private"] != true || p["admin"] != nil {
			t.Errorf("bob's #plans after restart: %v (want it private, lastId %s, bob no admin)", p, planned)
		}
	})
	t.Run("the private channel stays private", func(t *testing.T) {
		carolTok := login(t, ts, "carol")
		want(t, "carol reads #plans", call(t, "GET", ts.URL+"/api/v1/channels/plans/messages", carolTok, nil), 404, "unknown_channel")
		r := call(t, "GET", ts.URL+"/api/v1/channels/plans/members", aliceTok, nil)
		if fmt.Sprint(r.Body["members"]) != "[map[admin:true online:false username:alice] map[online:false username:bob]]" {
			t.Errorf("#plans members after restart: %v", r.Body)
		}
	})
	t.Run("sending goes on", func(t *testing.T) {
		alice := dial(t, ts, aliceTok)
		alice.expect("hello", typeIs("hello"))
		if id := alice.sendAndAck("general", "", "after", "k3"); protocol.CompareIDs(id, said) <= 0 {
			t.Errorf("id after restart %s is not after %s", id, said)
		}
	})
}

// TestDataDirInUse: a second server on a data dir another one is using
// does not start, and says why.
func TestDataDirInUse(t *testing.T) {
	cfg := testConfig()
	cfg.DataDir = t.TempDir()
	startServer(t, cfg, server.Options{})
	b, err := server.OpenBackend(cfg, "second", nil)
	if err == nil {
		t.Errorf("a second backend opened a data dir in use")
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		return
	}
	if want := "is in use by another chatserver"; !strings.Contains(err.Error(), want) {
		t.Errorf("second server: %v, want an error saying %q", err, want)
	}
}

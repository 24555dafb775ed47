package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/server"
)

// change sends an edit, delete or react frame and returns the ack's id.
func (c *client) change(f map[string]any) string {
	c.t.Helper()
	c.send(f)
	return c.expect("ack "+f["clientId"].(string), typeIs("ack", "clientId", f["clientId"].(string)))["id"].(string)
}

func editFrame(id, text, cid string) map[string]any {
	return map[string]any{"type": "edit", "channel": "general", "id": id, "text": text, "clientId": cid}
}

func deleteFrame(id, cid string) map[string]any {
	return map[string]any{"type": "delete", "channel": "general", "id": id, "clientId": cid}
}

func reactFrame(id, emoji string, on bool, cid string) map[string]any {
	return map[string]any{"type": "react", "channel": "general", "id": id, "emoji": emoji, "on": on, "clientId": cid}
}

// Edits, deletes and reactions reach every member's sockets as they are
// committed, history shows each message as it is now, and the refusals
// name what was wrong.
func testChanges(t *testing.T, b backend) {
	cfg := b.config(t)
	cfg.Admins = []string{"root"}
	ts := startServer(t, cfg, server.Options{})
	aliceTok, bobTok := login(t, ts, "alice"), login(t, ts, "bob")
	alice, bob := dial(t, ts, aliceTok), dial(t, ts, bobTok)
	alice.expect("hello", typeIs("hello"))
	bob.expect("hello", typeIs("hello"))
	root := dial(t, ts, login(t, ts, "root"))
	root.expect("hello", typeIs("hello"))

	m := alice.sendAndAck("general", "", "helo", "m1")
	keep := alice.sendAndAck("general", "", "keep me", "m2")
	bob.expect("keep me", typeIs("message", "id", keep))

	entry := alice.change(editFrame(m, "hello", "e1"))
	ed := bob.expect("edited", typeIs("edited", "id", m, "channel", "general", "text", "hello", "entry", entry))
	if ed["editedAt"] == nil {
		t.Errorf("edited %v has no editedAt", ed)
	}
	r := bob.change(reactFrame(keep, "🎉", true, "r1"))
	alice.expect("reaction", typeIs("reaction", "id", keep, "emoji", "🎉", "user", "bob", "on", "true", "entry", r))
	bob.change(reactFrame(keep, "👍", true, "r2"))
	alice.change(reactFrame(keep, "👍", true, "r3"))
	d := root.change(deleteFrame(m, "d1"))
	bob.expect("deleted by a room admin", typeIs("deleted", "id", m, "entry", d))

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name string
			by   *client
			f    map[string]any
			code string
		}{
			{"editing someone else's message", bob, editFrame(keep, "mine", "x1"), "forbidden"},
			{"deleting someone else's message", bob, deleteFrame(keep, "x2"), "forbidden"},
			{"editing a deleted message", alice, editFrame(m, "back", "x3"), "unknown_message"},
			{"reacting to a deleted message", bob, reactFrame(m, "👍", true, "x4"), "unknown_message"},
			{"a message that never was", alice, editFrame("1-0", "x", "x5"), "unknown_message"},
			{"an over-long emoji", bob, reactFrame(keep, strings.Repeat("🎉", 9), true, "x6"), "too_large"},
			{"an emoji with a space", bob, reactFrame(keep, "a b", true, "x7"), "bad_request"},
			{"react without on", bob, map[string]any{"type": "react", "channel": "general", "id": keep, "emoji": "👍", "clientId": "x8"}, "bad_request"},
			{"an empty edit", alice, editFrame(keep, "  ", "x9"), "bad_request"},
			{"a channel one is not in", alice, map[string]any{"type": "edit", "channel": "dm:bob:root", "id": keep, "text": "x", "clientId": "x10"}, "forbidden"},
			{"an id that is not one", alice, editFrame("nope", "x", "x11"), "bad_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.by.send(tt.f)
				cid := tt.f["clientId"].(string)
				e := tt.by.expect("error", typeIs("error", "clientId", cid))
				if e["code"] != tt.code {
					t.Errorf("error %v, want code %s", e, tt.code)
				}
			})
		}
		// Nothing refused reached anyone: the next change is the next thing bob gets.
		next := alice.change(editFrame(keep, "keep me, edited", "e2"))
		if got := bob.expect("the next change", typeIs("edited")); got["entry"] != next {
			t.Errorf("bob got %v, want the edit %s", got, next)
		}
	})

	t.Run("history shows each message as it is now", func(t *testing.T) {
		res := call(t, "GET", ts.URL+"/api/v1/channels/general/messages", bobTok, nil)
		var got []map[string]any
		for _, o := range res.Body["messages"].([]any) {
			got = append(got, o.(map[string]any))
		}
		if len(got) != 2 {
			t.Fatalf("history %v, want 2 entries", got)
		}
		if diff := cmp.Diff(map[string]any{"id": m, "deleted": true}, got[0]); diff != "" {
			t.Errorf("the deleted message (-want +got):\n%s", diff)
		}
		kept := got[1]
		if kept["text"] != "keep me, edited" || kept["editedAt"] == nil {
			t.Errorf("the edited message %v", kept)
		}
		want := []any{
			map[string]any{"emoji": "🎉", "users": []any{"bob"}},
			map[string]any{"emoji": "👍", "users": []any{"bob", "alice"}},
		}
		if diff := cmp.Diff(want, kept["reactions"]); diff != "" {
			t.Errorf("reactions (-want +got):\n%s", diff)
		}
	})

	t.Run("a resume replays changes in order", func(t *testing.T) {
		last := alice.change(reactFrame(keep, "👍", false, "r4"))
		bob.expect("the reaction off", typeIs("reaction", "entry", last))
		_ = bob.ws.Close()
		<-bob.closed
		var want []string
		for i := range 3 {
			want = append(want, alice.change(editFrame(keep, fmt.Sprint("version ", i), fmt.Sprint("v", i))))
		}
		want = append(want, alice.change(reactFrame(keep, "🎉", true, "r5")))
		bob = dialResuming(t, ts, bobTok, map[string]string{"general": last})
		var got []string
		for range want {
			o := bob.expect("a replayed change", func(o map[string]any) bool { return o["entry"] != nil })
			got = append(got, o["entry"].(string))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("replayed changes (-want +got):\n%s", diff)
		}
		if r := bob.expect("resumed", typeIs("resumed")); r["recovered"].(map[string]any)["general"] != true {
			t.Errorf("resumed %v", r)
		}
	})

	t.Run("a resume from a message deleted meanwhile", func(t *testing.T) {
		bob := dial(t, ts, bobTok)
		bob.expect("hello", typeIs("hello"))
		newest := alice.sendAndAck("general", "", "soon deleted", "m3")
		bob.expect("the newest", typeIs("message", "id", newest))
		_ = bob.ws.Close()
		<-bob.closed
		d := alice.change(deleteFrame(newest, "d2"))
		after := alice.sendAndAck("general", "", "after it", "m4")
		bob = dialResuming(t, ts, bobTok, map[string]string{"general": newest})
		bob.expect("the delete", typeIs("deleted", "id", newest, "entry", d))
		bob.expect("what followed", typeIs("message", "id", after))
		if r := bob.expect("resumed", typeIs("resumed")); r["recovered"].(map[string]any)["general"] != true {
			t.Errorf("resumed %v: the id was deleted, not trimmed", r)
		}
	})
}

// A send with a thread replies in it: the reply reaches every member as a
// message with its thread, the people who posted in the thread are told,
// the thread endpoint pages it, and history counts the root's replies.
func testThreads(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	toks := map[string]string{}
	people := map[string]*client{}
	for _, u := range []string{"alice", "bob", "carol"} {
		toks[u] = login(t, ts, u)
		people[u] = dial(t, ts, toks[u])
		people[u].expect("hello", typeIs("hello"))
	}
	alice, bob, carol := people["alice"], people["bob"], people["carol"]
	root := alice.sendAndAck("general", "", "lunch?", "q")
	replyFrame := func(text, cid, thread string) map[string]any {
		return map[string]any{"type": "send", "channel": "general", "text": text, "clientId": cid, "thread": thread}
	}
	r1 := bob.change(replyFrame("yes", "r1", root))
	if m := alice.expect("bob's reply", typeIs("message", "id", r1)); m["thread"] != root {
		t.Errorf("the reply %v does not name its thread %s", m, root)
	}
	alice.expect("told of bob's reply", typeIs("notification", "kind", "thread", "id", r1, "from", "bob", "thread", root))
	r2 := carol.change(replyFrame("me too", "r2", root))
	for _, p := range []*client{alice, bob} {
		p.expect("told of carol's reply", typeIs("notification", "kind", "thread", "id", r2, "from", "carol"))
	}

	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name, thread, code string
		}{
			{"a reply to a reply", r1, "bad_request"},
			{"a reply to nothing", "1-0", "unknown_message"},
			{"a thread that is not an id", "nope", "bad_request"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				cid := "x-" + tt.name
				carol.send(replyFrame("x", cid, tt.thread))
				if e := carol.expect("error", typeIs("error", "clientId", cid)); e["code"] != tt.code {
					t.Errorf("error %v, want %s", e, tt.code)
				}
			})
		}
	})

	t.Run("the thread endpoint", func(t *testing.T) {
		url := ts.URL + "/api/v1/channels/general/messages/" + root + "/thread"
		r := call(t, "GET", url, toks["carol"], nil)
		if r.Status != 200 {
			t.Fatalf("thread: %d %v", r.Status, r.Body)
		}
		if rt := r.Body["root"].(map[string]any); rt["id"] != root || rt["replies"] != float64(2) {
			t.Errorf("root %v, want %s with 2 replies", rt, root)
		}
		var got []string
		for _, o := range r.Body["replies"].([]any) {
			got = append(got, o.(map[string]any)["id"].(string))
		}
		if diff := cmp.Diff([]string{r1, r2}, got); diff != "" {
			t.Errorf("replies (-want +got):\n%s", diff)
		}
		if r := call(t, "GET", url+"?after="+r1+"&limit=1", toks["carol"], nil); len(r.Body["replies"].([]any)) != 1 {
			t.Errorf("the page after the first reply: %v", r.Body)
		}
		for _, tc := range []struct {
			name, url string
			status    int
			code      string
		}{
			{"no such message", ts.URL + "/api/v1/channels/general/messages/1-0/thread", 404, "unknown_message"},
			{"a reply", ts.URL + "/api/v1/channels/general/messages/" + r1 + "/thread", 400, "bad_request"},
			{"a bad limit", url + "?limit=0", 400, "bad_request"},
			{"someone else's DM", ts.URL + "/api/v1/channels/dm:alice:bob/messages/" + root + "/thread", 403, "forbidden"},
		} {
			r := call(t, "GET", tc.url, toks["carol"], nil)
			if r.Status != tc.status || r.Body["error"].(map[string]any)["code"] != tc.code {
				t.Errorf("%s: %d %v, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
	})

	t.Run("history counts the replies", func(t *testing.T) {
		r := call(t, "GET", ts.URL+"/api/v1/channels/general/messages", toks["bob"], nil)
		for _, o := range r.Body["messages"].([]any) {
			if m := o.(map[string]any); m["id"] == root && m["replies"] != float64(2) {
				t.Errorf("history's root %v, want 2 replies", m)
			}
		}
	})
}

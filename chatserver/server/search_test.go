package server_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/server"
)

type idIn struct{ id, channel string }

func mustParseID(t *testing.T, s string) protocol.ID {
	t.Helper()
	id, err := protocol.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Search finds the messages containing every word asked, newest first and
// paged, only in channels the person may read, as they are now: edited
// text is found, deleted text is not. Bad queries are refused by name.
func testSearch(t *testing.T, b backend) {
	ts := startServer(t, b.config(t), server.Options{})
	aliceTok, bobTok := login(t, ts, "alice"), login(t, ts, "bob")
	alice := dial(t, ts, aliceTok)
	alice.expect("hello", typeIs("hello"))
	if r := call(t, "POST", ts.URL+"/api/v1/channels", aliceTok, map[string]any{"name": "plans", "private": true}); r.Status != 201 {
		t.Fatalf("creating plans: %d %v", r.Status, r.Body)
	}
	alice.expect("in plans", typeIs("channel", "name", "plans"))

	deploy := alice.sendAndAck("general", "", "Deploy the API today", "m1")
	lunch := alice.sendAndAck("general", "", "lunch time", "m2")
	docs := alice.sendAndAck("random", "", "the API docs are ready", "m3")
	secret := alice.sendAndAck("plans", "", "secret API plans", "m4")

	// Results are newest first by id, and ids of different channels
	// can be equal: the channel's name orders those.
	newestFirst := func(ms ...idIn) []string {
		slices.SortFunc(ms, func(a, b idIn) int {
			if c := mustParseID(t, b.id).Compare(mustParseID(t, a.id)); c != 0 {
				return c
			}
			return strings.Compare(b.channel, a.channel)
		})
		var out []string
		for _, m := range ms {
			out = append(out, m.id)
		}
		return out
	}
	deployIn, lunchIn, docsIn, secretIn := idIn{deploy, "general"}, idIn{lunch, "general"}, idIn{docs, "random"}, idIn{secret, "plans"}

	search := func(tok string, params ...string) apiResult {
		t.Helper()
		v := url.Values{}
		for i := 0; i+1 < len(params); i += 2 {
			v.Set(params[i], params[i+1])
		}
		return call(t, "GET", ts.URL+"/api/v1/search?"+v.Encode(), tok, nil)
	}
	ids := func(r apiResult) []string {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("search: %d %v", r.Status, r.Body)
		}
		var out []string
		for _, m := range r.Body["messages"].([]any) {
			out = append(out, m.(map[string]any)["id"].(string))
		}
		return out
	}

	t.Run("finds", func(t *testing.T) {
		tests := []struct {
			name   string
			tok    string
			params []string
			want   []string
		}{
			{"every channel one may read, newest first", bobTok, []string{"q", "api"}, newestFirst(docsIn, deployIn)},
			{"a private channel, for its member", aliceTok, []string{"q", "api"}, newestFirst(secretIn, docsIn, deployIn)},
			{"every word", bobTok, []string{"q", "API docs"}, []string{docs}},
			{"whatever their case", bobTok, []string{"q", "DEPLOY"}, []string{deploy}},
			{"one channel", bobTok, []string{"q", "api", "channel", "general"}, []string{deploy}},
			{"nothing", bobTok, []string{"q", "nowhere"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if diff := cmp.Diff(tt.want, ids(search(tt.tok, tt.params...))); diff != "" {
					t.Errorf("results (-want +got):\n%s", diff)
				}
			})
		}
		r := search(bobTok, "q", "docs")
		got := r.Body["messages"].([]any)[0].(map[string]any)
		want := map[string]any{"id": docs, "channel": "random", "from": "alice", "text": "the API docs are ready", "ts": got["ts"]}
		if diff := cmp.Diff(want, got); diff != "" || got["ts"] == nil {
			t.Errorf("a result (-want +got):\n%s", diff)
		}
	})

	t.Run("pages", func(t *testing.T) {
		all := newestFirst(secretIn, docsIn, deployIn)
		first := search(aliceTok, "q", "api", "limit", "2")
		next, _ := first.Body["next"].(string)
		if diff := cmp.Diff(all[:2], ids(first)); diff != "" || next == "" {
			t.Fatalf("first page (-want +got):\n%s\nnext %q", diff, next)
		}
		second := search(aliceTok, "q", "api", "limit", "2", "before", next)
		if diff := cmp.Diff(all[2:], ids(second)); diff != "" || second.Body["next"] != nil {
			t.Errorf("second page (-want +got):\n%s\nnext %v", diff, second.Body["next"])
		}
	})

	t.Run("as messages are now", func(t *testing.T) {
		alice.change(editFrame(lunch, "lunch with the API team", "e1"))
		alice.change(deleteFrame(deploy, "d1"))
		if diff := cmp.Diff(newestFirst(lunchIn, docsIn), ids(search(bobTok, "q", "api"))); diff != "" {
			t.Errorf("after an edit and a delete (-want +got):\n%s", diff)
		}
		if got := ids(search(bobTok, "q", "time")); got != nil {
			t.Errorf("the edited message's old text found: %v", got)
		}
		if got := ids(search(bobTok, "q", "deploy")); got != nil {
			t.Errorf("the deleted message found: %v", got)
		}
		r := search(bobTok, "q", "team")
		if m := r.Body["messages"].([]any)[0].(map[string]any); m["editedAt"] == nil {
			t.Errorf("an edited result %v has no editedAt", m)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			name   string
			params []string
			status int
			code   string
		}{
			{"no words", []string{"q", "  "}, 400, "bad_request"},
			{"no q", nil, 400, "bad_request"},
			{"over 256 bytes", []string{"q", strings.Repeat("a", 257)}, 400, "too_large"},
			{"a private channel one is not in", []string{"q", "api", "channel", "plans"}, 404, "unknown_channel"},
			{"a DM of others", []string{"q", "api", "channel", "dm:alice:carol"}, 403, "forbidden"},
			{"a cursor that is not one", []string{"q", "api", "before", "1-0"}, 400, "bad_request"},
			{"a limit out of range", []string{"q", "api", "limit", "0"}, 400, "bad_request"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := search(bobTok, tt.params...)
				if r.Status != tt.status || r.errCode() != tt.code {
					t.Errorf("%d %v, want %d %s", r.Status, r.Body, tt.status, tt.code)
				}
			})
		}
		if r := call(t, "GET", ts.URL+"/api/v1/search?q=api", "", nil); r.Status != 401 {
			t.Errorf("without a session: %d %v", r.Status, r.Body)
		}
	})
}

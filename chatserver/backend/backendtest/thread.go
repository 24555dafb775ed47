package backendtest

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var threadTests = []test{
	{"RepliesAndRepliers", testThreadReplies},
	{"Refusals", testThreadRefusals},
	{"ChangedReplies", testThreadChangedReplies},
	{"FeedCarriesTheThread", testThreadFeed},
}

func reply(t *testing.T, b Backend, root, from, text, dedup string) protocol.Message {
	t.Helper()
	return must[protocol.Message](t)(b.Append(testContext(t), protocol.Message{Channel: "general", From: from, Text: text, Thread: root}, dedup, 0))
}

func threadOf(t *testing.T, b Backend, root, after string, limit int) (protocol.Message, []protocol.Message) {
	t.Helper()
	r, replies, err := b.Thread(testContext(t), "general", root, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	return r, replies
}

func testThreadReplies(t *testing.T, newBackend func() Backend) {
	b := newBackend()
	root := post(t, b, "alice", "a question")
	other := post(t, b, "dave", "something else")
	var replies []protocol.Message
	for _, tc := range []struct {
		from         string
		wantRepliers []string
	}{
		{"bob", []string{"alice"}},
		{"carol", []string{"alice", "bob"}},
		{"bob", []string{"alice", "bob", "carol"}},
		{"alice", []string{"alice", "bob", "carol"}},
	} {
		r := reply(t, b, root.ID, tc.from, "an answer from "+tc.from, "")
		if r.Thread != root.ID {
			t.Errorf("reply %+v: thread %q, want %s", r, r.Thread, root.ID)
		}
		if diff := cmp.Diff(tc.wantRepliers, r.Repliers); diff != "" {
			t.Errorf("a reply by %s: repliers before it (-want +got):\n%s", tc.from, diff)
		}
		r.Repliers = nil
		replies = append(replies, r)
	}
	again := reply(t, b, root.ID, "bob", "retried", "bob\x00r1")
	if dup := reply(t, b, root.ID, "bob", "retried", "bob\x00r1"); dup.ID != again.ID {
		t.Errorf("a retried reply got %s, want %s", dup.ID, again.ID)
	}
	again.Repliers = nil
	replies = append(replies, again)

	gotRoot, got := threadOf(t, b, root.ID, "", 10)
	wantRoot := root
	wantRoot.Replies = len(replies)
	if diff := cmp.Diff(wantRoot, gotRoot); diff != "" {
		t.Errorf("root (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(replies, got); diff != "" {
		t.Errorf("replies (-want +got):\n%s", diff)
	}
	if _, page := threadOf(t, b, root.ID, replies[0].ID, 2); len(page) != 2 || page[0].ID != replies[1].ID || page[1].ID != replies[2].ID {
		t.Errorf("the page of 2 after the first reply: %+v", page)
	}
	if _, none := threadOf(t, b, other.ID, "", 10); len(none) != 0 {
		t.Errorf("a message without replies has %+v", none)
	}
	// History has the replies too (they are the channel's messages), and
	// the root's count.
	for _, m := range history(t, b, "", 100) {
		if m.ID == root.ID && m.Replies != len(replies) {
			t.Errorf("history's root: %d replies, want %d", m.Replies, len(replies))
		}
	}
}

func testThreadRefusals(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	root := post(t, b, "alice", "root")
	r := reply(t, b, root.ID, "bob", "a reply", "")
	gone := post(t, b, "alice", "gone")
	must[protocol.Message](t)(b.Change(ctx, del(gone.ID, "alice"), "", 0, rules))
	change := must[protocol.Message](t)(b.Change(ctx, edit(root.ID, "alice", "root!"), "", 0, rules))
	// Ids are per channel, from one clock: another channel's message may
	// share an id with one of this channel; take one that does not.
	inGeneral := map[string]bool{}
	for _, m := range must[[]protocol.Message](t)(b.After(ctx, "general", "", 100)) {
		inGeneral[m.ID] = true
	}
	var elsewhere protocol.Message
	for i := 0; i == 0 || inGeneral[elsewhere.ID]; i++ {
		if i == 1000 {
			t.Fatal("1000 messages of random share ids with general")
		}
		elsewhere = must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "random", From: "alice", Text: "x"}, "", 0))
	}
	tests := []struct {
		name string
		root string
		want error
	}{
		{"a reply to a reply", r.ID, chat.ErrNotThreadRoot},
		{"a reply to a deleted message", gone.ID, chat.ErrUnknownMessage},
		{"a reply to a change", change.ID, chat.ErrUnknownMessage},
		{"a reply to another channel's message", elsewhere.ID, chat.ErrUnknownMessage},
		{"a reply to nothing", "1-0", chat.ErrUnknownMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := must[string](t)(b.LastID(ctx, "general"))
			_, err := b.Append(ctx, protocol.Message{Channel: "general", From: "carol", Text: "x", Thread: tt.root}, "", 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got := must[string](t)(b.LastID(ctx, "general")); got != last {
				t.Errorf("a refused reply committed %s", got)
			}
			if _, _, err := b.Thread(ctx, "general", tt.root, "", 10); !errors.Is(err, tt.want) {
				t.Errorf("Thread: err = %v, want %v", err, tt.want)
			}
		})
	}
}

func testThreadChangedReplies(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	root := post(t, b, "alice", "root")
	r1 := reply(t, b, root.ID, "bob", "frist", "")
	r2 := reply(t, b, root.ID, "carol", "to go", "")
	must[protocol.Message](t)(b.Change(ctx, edit(r1.ID, "bob", "first"), "", 0, rules))
	must[protocol.Message](t)(b.Change(ctx, react(r1.ID, "alice", "👍", true), "", 0, rules))
	must[protocol.Message](t)(b.Change(ctx, del(r2.ID, "carol"), "", 0, rules))
	gotRoot, got := threadOf(t, b, root.ID, "", 10)
	if gotRoot.Replies != 1 {
		t.Errorf("root counts %d replies, want 1 (one was deleted)", gotRoot.Replies)
	}
	if len(got) != 2 {
		t.Fatalf("replies %+v, want 2", got)
	}
	if g := got[0]; g.Text != "first" || g.EditedAt == 0 || len(g.Reactions) != 1 || g.Thread != root.ID {
		t.Errorf("the edited reply %+v", g)
	}
	if g := got[1]; g.ID != r2.ID || !g.Deleted || g.Text != "" || g.Thread != root.ID {
		t.Errorf("the deleted reply %+v, want it deleted, in its thread", g)
	}
	// A deleted root has no thread to show.
	must[protocol.Message](t)(b.Change(ctx, del(root.ID, "alice"), "", 0, rules))
	if _, _, err := b.Thread(ctx, "general", root.ID, "", 10); !errors.Is(err, chat.ErrUnknownMessage) {
		t.Errorf("the thread of a deleted root: err = %v, want %v", err, chat.ErrUnknownMessage)
	}
}

func testThreadFeed(t *testing.T, newBackend func() Backend) {
	sender, receiver := newBackend(), newBackend()
	r := runFeed(t, receiver)
	root := post(t, sender, "alice", "root")
	receiver.Follow("general", root.ID)
	rep := reply(t, sender, root.ID, "bob", "a reply,\nwith a comma", "")
	r.waitID(t, "general", rep.ID)
	got := r.messages("general")
	rep.Repliers = nil
	if diff := cmp.Diff(rep, got[len(got)-1]); diff != "" {
		t.Errorf("the reply the feed delivered (-want +got):\n%s", diff)
	}
}

package backendtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var changeTests = []test{
	{"Refusals", testChangeRefusals},
	{"EditShowsInHistory", testEdit},
	{"DeleteRemovesTheText", testDelete},
	{"DeletingTheOldestKeepsItsPlace", testDeleteOldest},
	{"Reactions", testReactions},
	{"ChangesAreNotUnread", testChangesNotCounted},
	{"Dedup", testChangeDedup},
	{"Feed", testChangeFeed},
	{"HistoryPagesPastChanges", testHistoryPastChanges},
}

func edit(target, from, text string) protocol.Message {
	return protocol.Message{Kind: protocol.KindEdit, Channel: "general", From: from, Target: target, Text: text}
}

func del(target, from string) protocol.Message {
	return protocol.Message{Kind: protocol.KindDelete, Channel: "general", From: from, Target: target}
}

func react(target, from, emoji string, on bool) protocol.Message {
	return protocol.Message{Kind: protocol.KindReact, Channel: "general", From: from, Target: target, Emoji: emoji, On: on}
}

var rules = chat.ChangeRules{MaxEmoji: 3}

func post(t *testing.T, b Backend, from, text string) protocol.Message {
	t.Helper()
	return must[protocol.Message](t)(b.Append(testContext(t), protocol.Message{Channel: "general", From: from, Text: text}, "", 0))
}

func history(t *testing.T, b Backend, before string, limit int) []protocol.Message {
	t.Helper()
	return must[[]protocol.Message](t)(b.History(testContext(t), "general", before, limit))
}

func testChangeRefusals(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	m := post(t, b, "alice", "hello")
	gone := post(t, b, "alice", "soon gone")
	must[protocol.Message](t)(b.Change(ctx, del(gone.ID, "alice"), "", 0, rules))
	ed := must[protocol.Message](t)(b.Change(ctx, edit(m.ID, "alice", "hello!"), "", 0, rules))
	for _, e := range []string{"a", "b", "c"} {
		must[protocol.Message](t)(b.Change(ctx, react(m.ID, "bob", e, true), "", 0, rules))
	}
	tests := []struct {
		name  string
		c     protocol.Message
		rules chat.ChangeRules
		want  error
	}{
		{"editing someone else's message", edit(m.ID, "bob", "mine now"), rules, chat.ErrForbidden},
		{"editing, even as an admin", edit(m.ID, "bob", "mine now"), chat.ChangeRules{AnyAuthor: true}, chat.ErrForbidden},
		{"deleting someone else's message", del(m.ID, "bob"), rules, chat.ErrForbidden},
		{"editing a deleted message", edit(gone.ID, "alice", "back"), rules, chat.ErrUnknownMessage},
		{"deleting it again", del(gone.ID, "alice"), rules, chat.ErrUnknownMessage},
		{"reacting to it", react(gone.ID, "bob", "x", true), rules, chat.ErrUnknownMessage},
		{"a message that never was", edit("1-0", "alice", "x"), rules, chat.ErrUnknownMessage},
		{"a change is not a message", edit(ed.ID, "alice", "x"), rules, chat.ErrUnknownMessage},
		{"a message of another channel", func() protocol.Message { c := edit(m.ID, "alice", "x"); c.Channel = "random"; return c }(), rules, chat.ErrUnknownMessage},
		{"a fourth emoji", react(m.ID, "carol", "d", true), rules, chat.ErrTooManyReactions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last := must[string](t)(b.LastID(ctx, tt.c.Channel))
			_, err := b.Change(ctx, tt.c, "", 0, tt.rules)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got := must[string](t)(b.LastID(ctx, tt.c.Channel)); got != last {
				t.Errorf("a refused change committed %s", got)
			}
		})
	}
	// At the bound, an emoji already there still takes more people.
	must[protocol.Message](t)(b.Change(ctx, react(m.ID, "carol", "a", true), "", 0, rules))
}

func testEdit(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	m := post(t, b, "alice", "helo")
	other := post(t, b, "bob", "untouched")
	e1 := must[protocol.Message](t)(b.Change(ctx, edit(m.ID, "alice", "hello"), "", 0, rules))
	e2 := must[protocol.Message](t)(b.Change(ctx, edit(m.ID, "alice", "hello, world"), "", 0, rules))
	if e1.ID == "" || protocol.IDOrZero(e2.ID).Compare(protocol.IDOrZero(e1.ID)) <= 0 {
		t.Fatalf("change ids %q then %q: want increasing ids of the channel", e1.ID, e2.ID)
	}
	if got := must[string](t)(b.LastID(ctx, "general")); got != e2.ID {
		t.Errorf("LastID %s, want the last change %s", got, e2.ID)
	}
	want := []protocol.Message{
		{ID: m.ID, Channel: "general", From: "alice", Text: "hello, world", TS: m.TS, EditedAt: e2.TS},
		other,
	}
	if diff := cmp.Diff(want, history(t, b, "", 10)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	// The stream holds the changes, in order, for a resume to replay.
	entries := must[[]protocol.Message](t)(b.After(ctx, "general", other.ID, 10))
	if diff := cmp.Diff([]protocol.Message{e1, e2}, entries); diff != "" {
		t.Errorf("entries after the messages (-want +got):\n%s", diff)
	}
}

func testDelete(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	first := post(t, b, "alice", "first")
	m := post(t, b, "alice", "a secret")
	must[protocol.Message](t)(b.Change(ctx, edit(m.ID, "alice", "a bigger secret"), "", 0, rules))
	must[protocol.Message](t)(b.Change(ctx, react(m.ID, "bob", "x", true), "", 0, rules))
	last := post(t, b, "bob", "last")
	d := must[protocol.Message](t)(b.Change(ctx, del(m.ID, "carol"), "", 0, chat.ChangeRules{AnyAuthor: true}))
	want := []protocol.Message{first, {ID: m.ID, Channel: "general", Deleted: true}, last}
	if diff := cmp.Diff(want, history(t, b, "", 10)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[1:2], history(t, b, last.ID, 1)); diff != "" {
		t.Errorf("history page of one before the last (-want +got):\n%s", diff)
	}
	// Gone from storage: no entry holds either text, and the delete
	// itself is kept for a resume.
	entries := must[[]protocol.Message](t)(b.After(ctx, "general", "", 100))
	for _, e := range entries {
		if strings.Contains(e.Text, "secret") {
			t.Errorf("entry %+v still holds the deleted text", e)
		}
		if e.ID == m.ID {
			t.Errorf("After returned the deleted message %+v", e)
		}
	}
	if got := entries[len(entries)-1]; got.ID != d.ID || got.Kind != protocol.KindDelete || got.Target != m.ID || got.From != "carol" {
		t.Errorf("last entry %+v, want the delete %+v", got, d)
	}
}

// The oldest message, deleted, is older than anything the stream holds;
// it was not trimmed, and history still shows it.
func testDeleteOldest(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	first := post(t, b, "alice", "first")
	next := post(t, b, "alice", "next")
	for i := 0; next.TS == first.TS; i++ { // ids a millisecond apart
		if i == 10000 {
			t.Fatal("10000 messages in one millisecond")
		}
		next = post(t, b, "alice", "next")
	}
	// History keeps far more than this: nothing is trimmed.
	const keep = 100000
	must[protocol.Message](t)(b.Change(ctx, del(first.ID, "alice"), "", keep, rules))
	must[protocol.Message](t)(b.Change(ctx, react(next.ID, "bob", "x", true), "", keep, rules))
	got := history(t, b, "", 1000)
	if len(got) == 0 || got[0].ID != first.ID || !got[0].Deleted {
		t.Errorf("history starts %+v, want the deleted %s", got[:min(len(got), 1)], first.ID)
	}
}

func testReactions(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	m := post(t, b, "alice", "react to me")
	for _, c := range []protocol.Message{
		react(m.ID, "bob", "👍", true),
		react(m.ID, "carol", "🎉", true),
		react(m.ID, "carol", "👍", true),
		react(m.ID, "bob", "👍", true), // again: no change
		react(m.ID, "dave", "🎉", true),
		react(m.ID, "carol", "🎉", false),
		react(m.ID, "dave", "🎉", false), // the last one: the emoji goes
		react(m.ID, "erin", "🙂", false), // never on: no change
	} {
		got := must[protocol.Message](t)(b.Change(ctx, c, "", 0, rules))
		if got.Emoji != c.Emoji || got.On != c.On || got.From != c.From {
			t.Fatalf("Change returned %+v for %+v", got, c)
		}
	}
	want := []protocol.Reaction{{Emoji: "👍", Users: []string{"bob", "carol"}}}
	if diff := cmp.Diff(want, history(t, b, "", 1)[0].Reactions); diff != "" {
		t.Errorf("reactions (-want +got):\n%s", diff)
	}
}

func testChangesNotCounted(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	var ms []protocol.Message
	for i := range 4 {
		ms = append(ms, post(t, b, "alice", fmt.Sprint("m", i)))
	}
	for range 5 {
		must[protocol.Message](t)(b.Change(ctx, react(ms[0].ID, "bob", "x", true), "", 0, rules))
	}
	must[protocol.Message](t)(b.Change(ctx, edit(ms[1].ID, "alice", "edited"), "", 0, rules))
	must[protocol.Message](t)(b.Change(ctx, del(ms[2].ID, "alice"), "", 0, rules))
	tests := []struct {
		after    string
		max      int
		want     int
		whatFrom string
	}{
		{"", 100, 3, "the start"},
		{ms[0].ID, 100, 2, "the first message"},
		{ms[1].ID, 100, 1, "the second (the third is deleted)"},
		{"", 2, 2, "the start, at most 2"},
	}
	for _, tt := range tests {
		if got := must[int](t)(b.CountAfter(ctx, "general", tt.after, tt.max)); got != tt.want {
			t.Errorf("CountAfter from %s = %d, want %d", tt.whatFrom, got, tt.want)
		}
		got := must[map[string]int](t)(b.CountsAfter(ctx, map[string]string{"general": tt.after}, tt.max))
		if got["general"] != tt.want {
			t.Errorf("CountsAfter from %s = %d, want %d", tt.whatFrom, got["general"], tt.want)
		}
	}
	// An edited message deleted: its edits go with it, and neither they nor
	// the delete count.
	must[protocol.Message](t)(b.Change(ctx, edit(ms[3].ID, "alice", "edited"), "", 0, rules))
	must[protocol.Message](t)(b.Change(ctx, edit(ms[3].ID, "alice", "edited again"), "", 0, rules))
	must[protocol.Message](t)(b.Change(ctx, del(ms[3].ID, "alice"), "", 0, rules))
	for after, want := range map[string]int{"": 2, ms[0].ID: 1} {
		if got := must[int](t)(b.CountAfter(ctx, "general", after, 100)); got != want {
			t.Errorf("after deleting an edited message, CountAfter from %q = %d, want %d", after, got, want)
		}
	}
}

func testChangeDedup(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	m := post(t, b, "alice", "hi")
	first := must[protocol.Message](t)(b.Change(ctx, edit(m.ID, "alice", "hi!"), "alice\x00e1", 0, rules))
	again := must[protocol.Message](t)(b.Change(ctx, edit(m.ID, "alice", "hi!"), "alice\x00e1", 0, rules))
	if again.ID != first.ID {
		t.Errorf("a retried change got id %s, want the first's %s", again.ID, first.ID)
	}
	if n := len(must[[]protocol.Message](t)(b.After(ctx, "general", m.ID, 10))); n != 1 {
		t.Errorf("%d changes stored, want 1", n)
	}
}

func testChangeFeed(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	sender, receiver := newBackend(), newBackend()
	r := runFeed(t, receiver)
	m := post(t, sender, "alice", "hi")
	// From m on: whatever follows reaches the receiver, whether it was
	// committed before the feed followed or after.
	receiver.Follow("general", m.ID)
	var want []protocol.Message
	for _, c := range []protocol.Message{
		edit(m.ID, "alice", "hi\nthere, with, commas"),
		react(m.ID, "bob", "👍", true),
		react(m.ID, "bob", "👍", false),
	} {
		want = append(want, must[protocol.Message](t)(sender.Change(ctx, c, "", 0, rules)))
	}
	// A delete takes the message's edits out of the stream: a feed that
	// has not delivered them yet never will.
	r.waitID(t, "general", want[len(want)-1].ID)
	want = append(want, must[protocol.Message](t)(sender.Change(ctx, del(m.ID, "alice"), "", 0, rules)))
	r.waitID(t, "general", want[len(want)-1].ID)
	var changes []protocol.Message
	for _, g := range r.messages("general") {
		if g.IsChange() {
			changes = append(changes, g)
		}
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("changes the feed delivered (-want +got):\n%s", diff)
	}
}

func testHistoryPastChanges(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	old := post(t, b, "alice", "old")
	gone := post(t, b, "alice", "gone")
	mid := post(t, b, "alice", "mid")
	must[protocol.Message](t)(b.Change(ctx, del(gone.ID, "alice"), "", 0, rules))
	for range 300 { // more changes than one read of the stream
		must[protocol.Message](t)(b.Change(ctx, react(mid.ID, "bob", "x", true), "", 0, rules))
	}
	newest := post(t, b, "alice", "newest")
	tests := []struct {
		name   string
		before string
		limit  int
		want   []string
	}{
		{"the newest two", "", 2, []string{mid.ID, newest.ID}},
		{"all", "", 10, []string{old.ID, gone.ID, mid.ID, newest.ID}},
		{"before the newest, past 300 changes", newest.ID, 1, []string{mid.ID}},
		{"a deleted one has its place", mid.ID, 1, []string{gone.ID}},
		{"and pages on", gone.ID, 5, []string{old.ID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range history(t, b, tt.before, tt.limit) {
				got = append(got, m.ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

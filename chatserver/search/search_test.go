package search_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
	"github.com/hubbub-chat/hubbub/chatserver/search"
)

// The index over the memory store: the server's contract test covers the
// search endpoint on every store; these cover what only the index decides.

func newIndex(t *testing.T, src search.Source) *search.Index {
	t.Helper()
	x := search.New(src)
	t.Cleanup(func() {
		if err := x.Close(); err != nil {
			t.Error(err)
		}
	})
	return x
}

type log struct {
	t     *testing.T
	mem   *memory.Backend
	max   int    // messages kept per channel
	probe func() // when set, called after each entry
}

func (l log) probed() {
	if l.probe != nil {
		l.probe()
	}
}

func (l log) send(channel, text string) protocol.Message {
	l.t.Helper()
	m, err := l.mem.Append(context.Background(), protocol.Message{Channel: channel, From: "alice", Text: text}, "", l.max)
	if err != nil {
		l.t.Fatal(err)
	}
	l.probed()
	return m
}

func (l log) change(kind, channel, target, text string) protocol.Message {
	l.t.Helper()
	c := protocol.Message{Kind: kind, Channel: channel, From: "alice", Target: target, Text: text}
	if kind == protocol.KindReact {
		c.Emoji, c.On = "👍", true
	}
	m, err := l.mem.Change(context.Background(), c, "", l.max, chat.ChangeRules{MaxEmoji: 20})
	if err != nil {
		l.t.Fatal(err)
	}
	l.probed()
	return m
}

func (l log) last(channel string) string {
	l.t.Helper()
	id, err := l.mem.LastID(context.Background(), channel)
	if err != nil {
		l.t.Fatal(err)
	}
	return id
}

func find(t *testing.T, x *search.Index, l log, text string, channels ...string) []string {
	t.Helper()
	q := chat.SearchQuery{Text: text, Channels: map[string]string{}, Limit: 50}
	for _, ch := range channels {
		q.Channels[ch] = l.last(ch)
	}
	page, err := x.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range page.Messages {
		got = append(got, m.Text)
	}
	return got
}

// What a channel's stream holds reaches the index in order, in one catch-up
// or across several: edits replace a message's text, deletes remove it,
// reactions change nothing searched.
func TestIndexFollowsTheStream(t *testing.T) {
	tests := []struct {
		name  string
		steps func(l log) // each step, then a search
		want  []string
	}{
		{"an edit", func(l log) {
			m := l.send("general", "teh plan")
			l.change(protocol.KindEdit, "general", m.ID, "the plan")
		}, []string{"the plan"}},
		{"two edits", func(l log) {
			m := l.send("general", "plan a")
			l.change(protocol.KindEdit, "general", m.ID, "plan b")
			l.change(protocol.KindEdit, "general", m.ID, "plan c")
		}, []string{"plan c"}},
		{"a delete", func(l log) {
			m := l.send("general", "secret plan")
			l.send("general", "public plan")
			l.change(protocol.KindDelete, "general", m.ID, "")
		}, []string{"public plan"}},
		{"a reaction", func(l log) {
			m := l.send("general", "plan")
			l.change(protocol.KindReact, "general", m.ID, "")
		}, []string{"plan"}},
	}
	for _, tt := range tests {
		for _, between := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, searched between: %v", tt.name, between), func(t *testing.T) {
				l := log{t: t, mem: memory.New(), max: 100}
				x := newIndex(t, l.mem)
				if between {
					// A search after each entry: every change meets a
					// message indexed by an earlier catch-up.
					l.probe = func() { find(t, x, l, "plan", "general") }
				}
				tt.steps(l)
				if diff := cmp.Diff(tt.want, find(t, x, l, "plan", "general")); diff != "" {
					t.Errorf("found (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// Only the kept history is searched: what storage trimmed leaves the index.
func TestTrimmedMessagesAreNotFound(t *testing.T) {
	l := log{t: t, mem: memory.New(), max: 3}
	x := newIndex(t, l.mem)
	l.send("general", "word 0")
	find(t, x, l, "word", "general") // indexed, then trimmed
	var want []string
	for i := 1; i <= 6; i++ {
		l.send("general", fmt.Sprint("word ", i))
	}
	kept, err := l.mem.After(context.Background(), "general", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(kept) - 1; i >= 0; i-- {
		want = append(want, kept[i].Text)
	}
	if len(want) >= 7 {
		t.Fatalf("the store kept all %d messages: nothing was trimmed", len(want))
	}
	if diff := cmp.Diff(want, find(t, x, l, "word", "general")); diff != "" {
		t.Errorf("found (-want +got), want what is kept, newest first:\n%s", diff)
	}
}

// Only the channels asked for are searched, and words are matched whole,
// whatever their case, every word of the query.
func TestSearchMatches(t *testing.T) {
	l := log{t: t, mem: memory.New(), max: 100}
	x := newIndex(t, l.mem)
	l.send("general", "Deploy the API")
	l.send("general", "deployment notes")
	l.send("random", "api lunch")
	l.send("dm:alice:bob", "the api key")
	tests := []struct {
		text     string
		channels []string
		want     []string
	}{
		{"api", []string{"general", "random"}, []string{"api lunch", "Deploy the API"}},
		{"API", []string{"general"}, []string{"Deploy the API"}},
		{"deploy", []string{"general"}, []string{"Deploy the API"}},
		{"api deploy", []string{"general", "random"}, []string{"Deploy the API"}},
		{"api", []string{"dm:alice:bob"}, []string{"the api key"}},
		{"the", []string{"general"}, nil}, // a stop word alone matches nothing
		{"api", nil, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.text, tt.channels), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, find(t, x, l, tt.text, tt.channels...)); diff != "" {
				t.Errorf("found (-want +got):\n%s", diff)
			}
		})
	}
}

// Pages follow one another by cursor, newest first, with nothing missed or
// repeated, across channels whose ids are equal.
func TestPages(t *testing.T) {
	l := log{t: t, mem: memory.New(), max: 1000}
	x := newIndex(t, l.mem)
	for i := range 25 {
		l.send("general", fmt.Sprint("page ", i))
		l.send("random", fmt.Sprint("page ", i))
	}
	q := chat.SearchQuery{Text: "page", Channels: map[string]string{"general": l.last("general"), "random": l.last("random")}, Limit: 7}
	seen := map[string]bool{}
	var prev protocol.ID
	for pages := 0; ; pages++ {
		page, err := x.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			id, _ := protocol.ParseID(m.ID)
			if pages+len(seen) > 0 && prev.Compare(id) < 0 {
				t.Errorf("%s after %s: not newest first", id, prev)
			}
			prev = id
			k := m.Channel + " " + m.ID
			if seen[k] {
				t.Errorf("%s twice", k)
			}
			seen[k] = true
		}
		if page.Next == "" {
			break
		}
		if err := search.ParseCursor(page.Next); err != nil {
			t.Fatalf("the next page's cursor: %v", err)
		}
		q.Before = page.Next
	}
	if len(seen) != 50 {
		t.Errorf("%d messages over the pages, want 50", len(seen))
	}
}

// heldSource is a store whose reads wait for the test once armed, or fail.
type heldSource struct {
	*memory.Backend
	armed atomic.Bool
	fail  atomic.Bool
	gate  chan struct{}
}

func (h *heldSource) After(ctx context.Context, channel, after string, limit int) ([]protocol.Message, error) {
	if h.fail.Load() {
		return nil, fmt.Errorf("%w: storage down", chat.ErrUnavailable)
	}
	if h.armed.Load() {
		select {
		case <-h.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Backend.After(ctx, channel, after, limit)
}

// A search that must answer before its channels are indexed says so
// (ErrIndexing), and the indexing goes on: a later search finds it done.
// A catch-up that storage fails is reported, and the next search retries.
func TestSlowAndFailingCatchUps(t *testing.T) {
	l := log{t: t, mem: memory.New(), max: 100}
	src := &heldSource{Backend: l.mem, gate: make(chan struct{})}
	x := newIndex(t, src)
	l.send("general", "slow words")
	src.armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := x.Search(ctx, chat.SearchQuery{Text: "slow", Channels: map[string]string{"general": l.last("general")}, Limit: 5})
	if !errors.Is(err, search.ErrIndexing) || !errors.Is(err, chat.ErrUnavailable) {
		t.Fatalf("search during indexing: %v, want ErrIndexing", err)
	}
	close(src.gate) // the indexing the first search started goes on
	if diff := cmp.Diff([]string{"slow words"}, find(t, x, l, "slow", "general")); diff != "" {
		t.Errorf("after indexing (-want +got):\n%s", diff)
	}

	src.fail.Store(true)
	l.send("general", "more slow words")
	_, err = x.Search(context.Background(), chat.SearchQuery{Text: "slow", Channels: map[string]string{"general": l.last("general")}, Limit: 5})
	if !errors.Is(err, chat.ErrUnavailable) {
		t.Fatalf("search with storage down: %v, want ErrUnavailable", err)
	}
	src.fail.Store(false)
	if diff := cmp.Diff([]string{"more slow words", "slow words"}, find(t, x, l, "slow", "general")); diff != "" {
		t.Errorf("after storage came back (-want +got):\n%s", diff)
	}
}

func TestParseCursor(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"00000001796208421532-00000000000000000000|plans", true},
		{"00000001796208421532-00000000000000000003|dm:alice:bob", true},
		{"1-0", false},
		{"00000001796208421532-00000000000000000000", false},
		{"0000000179620842153x-00000000000000000000|plans", false},
		{"00000001796208421532-00000000000000000000|Not A Channel", false},
		{"", false},
		{strings.Repeat("0", 20) + "-" + strings.Repeat("9", 20) + "|plans", false}, // past uint64
	}
	for _, tt := range tests {
		if err := search.ParseCursor(tt.in); (err == nil) != tt.ok {
			t.Errorf("ParseCursor(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

// FuzzParseCursor: a cursor comes from a query string. Whatever it is, the
// parse does not panic, and what it accepts is a cursor the index could
// have made: two 20-digit numbers and a channel.
func FuzzParseCursor(f *testing.F) {
	f.Add("00000001796208421532-00000000000000000000|plans")
	f.Add("1-0|general")
	f.Fuzz(func(t *testing.T, s string) {
		if search.ParseCursor(s) != nil {
			return
		}
		ids, ch, _ := strings.Cut(s, "|")
		if len(ids) != 41 || ch == "" {
			t.Errorf("accepted %q", s)
		}
	})
}

// Without a directory for the index, search says it cannot search; the
// rest of the server is not concerned (the index is made on first use).
func TestNoDirectoryForTheIndex(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	x := newIndex(t, memory.New())
	_, err := x.Search(context.Background(), chat.SearchQuery{Text: "x", Channels: map[string]string{"general": "1-0"}, Limit: 1})
	if !errors.Is(err, chat.ErrNoSearch) {
		t.Fatalf("search: %v, want ErrNoSearch", err)
	}
}

// A newest id the stream no longer holds (deleted or trimmed after the
// search read it) does not hold the search up: reading to the stream's end
// is enough.
func TestNewestNoLongerInTheStream(t *testing.T) {
	l := log{t: t, mem: memory.New(), max: 100}
	x := newIndex(t, l.mem)
	l.send("general", "lighthouse keeper")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	page, err := x.Search(ctx, chat.SearchQuery{Text: "lighthouse", Channels: map[string]string{"general": "99999999999999-0"}, Limit: 5})
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("search: %v, %v; want the one message", page.Messages, err)
	}
}

// FuzzSearchText: whatever words a person types (the API bounds them to 256
// bytes), the search answers without an error, and every message it finds
// is one of the channel's.
func FuzzSearchText(f *testing.F) {
	for _, s := range []string{"zebra", "Zebra report", "the", "é 🎉", "a*b?c", `"quoted" +must -not`, "\x00\xff", "field:text"} {
		f.Add(s)
	}
	mem := memory.New()
	var last string
	for _, text := range []string{"zebra report", "café au lait 🎉", "field:text a*b?c"} {
		m, err := mem.Append(context.Background(), protocol.Message{Channel: "general", From: "alice", Text: text}, "", 100)
		if err != nil {
			f.Fatal(err)
		}
		last = m.ID
	}
	x := search.New(mem)
	f.Cleanup(func() { _ = x.Close() })
	f.Fuzz(func(t *testing.T, q string) {
		if len(q) > chat.MaxSearchBytes {
			return
		}
		page, err := x.Search(context.Background(), chat.SearchQuery{Text: q, Channels: map[string]string{"general": last}, Limit: 10})
		if err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		for _, m := range page.Messages {
			if m.Channel != "general" || m.From != "alice" {
				t.Errorf("search %q found %+v", q, m)
			}
		}
	})
}

// A search after Close (a request still running as the server stops) is
// told the server cannot search, rather than finding no index.
func TestSearchAfterClose(t *testing.T) {
	x := search.New(memory.New())
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := x.Search(context.Background(), chat.SearchQuery{Text: "x", Channels: map[string]string{"general": "1-0"}, Limit: 1})
	if !errors.Is(err, chat.ErrNoSearch) {
		t.Fatalf("search after Close: %v, want ErrNoSearch", err)
	}
}

package backendtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

var logTests = []test{
	{"AppendAssignsIncreasingIDs", testAppendIDs},
	{"TrimKeepsNewest", testTrim},
	{"Dedup", testDedup},
	{"Paging", testPaging},
	{"LastID", testLastID},
	{"CountAfter", testCountAfter},
	{"LastIDs", testLastIDs},
	{"CountsAfter", testCountsAfter},
}

func testAppendIDs(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	before := time.Now().Add(-time.Second).UnixMilli()
	var prev protocol.ID
	for i := range 50 {
		in := protocol.Message{Channel: "general", From: "alice", Text: fmt.Sprintf("hello\nworld %d ünïcode", i)}
		m := must[protocol.Message](t)(b.Append(ctx, in, "", 0))
		id, err := protocol.ParseID(m.ID)
		if err != nil {
			t.Fatalf("Append returned id %q: %v", m.ID, err)
		}
		if i > 0 && id.Compare(prev) <= 0 {
			t.Fatalf("id %s after %s: ids must strictly increase", id, prev)
		}
		prev = id
		if after := time.Now().Add(time.Second).UnixMilli(); m.TS < before || m.TS > after {
			t.Errorf("TS %d is not the commit time (between %d and %d)", m.TS, before, after)
		}
		if diff := cmp.Diff(in, m, cmpopts.IgnoreFields(protocol.Message{}, "ID", "TS")); diff != "" {
			t.Errorf("Append changed the message (-in +out):\n%s", diff)
		}
		got := must[[]protocol.Message](t)(b.After(ctx, "general", "", 1000))
		if diff := cmp.Diff(m, got[len(got)-1]); diff != "" {
			t.Fatalf("stored message differs from the returned one (-returned +stored):\n%s", diff)
		}
	}
	if got := must[string](t)(b.LastID(ctx, "random")); got != "" {
		t.Errorf("another channel's LastID = %q, want \"\" (channels are independent)", got)
	}
}

func testTrim(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	const maxLen, n = 10, 300
	var appended []string
	for i := range n {
		m := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: fmt.Sprint(i)}, "", maxLen))
		appended = append(appended, m.ID)
	}
	kept := ids(must[[]protocol.Message](t)(b.After(ctx, "general", "", 2*n)))
	if len(kept) < maxLen {
		t.Fatalf("kept %d messages, want at least maxLen=%d", len(kept), maxLen)
	}
	if len(kept) > n {
		t.Fatalf("kept %d messages of %d appended", len(kept), n)
	}
	// What is kept is the newest, in order, without holes.
	if diff := cmp.Diff(appended[n-len(kept):], kept); diff != "" {
		t.Errorf("kept messages are not the newest %d (-want +got):\n%s", len(kept), diff)
	}
}

func testDedup(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	peer := newBackend()
	first := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "once"}, "client-1", 100))
	// A retry (here through another server, with the text edited) returns
	// the first message and commits nothing.
	again := must[protocol.Message](t)(peer.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "once, edited"}, "client-1", 100))
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("second Append with the same dedup key (-first +second):\n%s", diff)
	}
	other := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "twice"}, "client-2", 100))
	if other.ID == first.ID {
		t.Errorf("a different dedup key returned the same id %s", other.ID)
	}
	// No key: no dedup.
	n1 := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "plain"}, "", 100))
	n2 := must[protocol.Message](t)(b.Append(ctx, protocol.Message{Channel: "general", From: "alice", Text: "plain"}, "", 100))
	if n1.ID == n2.ID {
		t.Errorf("two Appends without a dedup key share id %s", n1.ID)
	}
	got := ids(must[[]protocol.Message](t)(b.After(ctx, "general", "", 100)))
	if diff := cmp.Diff([]string{first.ID, other.ID, n1.ID, n2.ID}, got); diff != "" {
		t.Errorf("stored messages (-want +got):\n%s", diff)
	}
}

func testPaging(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	ms := appendN(t, ctx, b, "general", 10)
	id := ids(ms)
	tests := []struct {
		name  string
		call  func() ([]protocol.Message, error)
		wantN []int // indexes into ms
	}{
		{"after start", func() ([]protocol.Message, error) { return b.After(ctx, "general", "", 3) }, []int{0, 1, 2}},
		{"after is exclusive", func() ([]protocol.Message, error) { return b.After(ctx, "general", id[2], 3) }, []int{3, 4, 5}},
		{"after near the end", func() ([]protocol.Message, error) { return b.After(ctx, "general", id[8], 5) }, []int{9}},
		{"after the newest", func() ([]protocol.Message, error) { return b.After(ctx, "general", id[9], 5) }, nil},
		{"after all", func() ([]protocol.Message, error) { return b.After(ctx, "general", "", 100) }, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"before newest end", func() ([]protocol.Message, error) { return b.Before(ctx, "general", "", 3) }, []int{7, 8, 9}},
		{"before is exclusive", func() ([]protocol.Message, error) { return b.Before(ctx, "general", id[5], 3) }, []int{2, 3, 4}},
		{"before near the start", func() ([]protocol.Message, error) { return b.Before(ctx, "general", id[1], 5) }, []int{0}},
		{"before the oldest", func() ([]protocol.Message, error) { return b.Before(ctx, "general", id[0], 5) }, nil},
		{"empty channel after", func() ([]protocol.Message, error) { return b.After(ctx, "empty", "", 5) }, nil},
		{"empty channel before", func() ([]protocol.Message, error) { return b.Before(ctx, "empty", "", 5) }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			check(t, err)
			var want []protocol.Message
			for _, i := range tc.wantN {
				want = append(want, ms[i])
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func testLastID(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	if got := must[string](t)(b.LastID(ctx, "general")); got != "" {
		t.Errorf("LastID of an empty channel = %q, want \"\"", got)
	}
	ms := appendN(t, ctx, b, "general", 3)
	if got := must[string](t)(b.LastID(ctx, "general")); got != ms[2].ID {
		t.Errorf("LastID = %q, want the newest %q", got, ms[2].ID)
	}
}

func testCountAfter(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	id := ids(appendN(t, ctx, b, "general", 10))
	tests := []struct {
		channel, after string
		max, want      int
	}{
		{"general", "", 100, 10},
		{"general", "", 4, 4},
		{"general", id[6], 100, 3},
		{"general", id[6], 2, 2},
		{"general", id[9], 100, 0},
		{"empty", "", 100, 0},
	}
	for _, tc := range tests {
		got := must[int](t)(b.CountAfter(ctx, tc.channel, tc.after, tc.max))
		if got != tc.want {
			t.Errorf("CountAfter(%q, %q, %d) = %d, want %d", tc.channel, tc.after, tc.max, got, tc.want)
		}
	}
}

func testLastIDs(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	general := appendN(t, ctx, b, "general", 3)
	random := appendN(t, ctx, b, "random", 1)
	tests := []struct {
		name     string
		channels []string
		want     map[string]string
	}{
		{"several", []string{"general", "random", "empty"}, map[string]string{"general": general[2].ID, "random": random[0].ID, "empty": ""}},
		{"one", []string{"random"}, map[string]string{"random": random[0].ID}},
		{"only empty ones", []string{"empty", "void"}, map[string]string{"empty": "", "void": ""}},
		{"none", nil, map[string]string{}},
	}
	for _, tc := range tests {
		got := must[map[string]string](t)(peer.LastIDs(ctx, tc.channels))
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: LastIDs(%q) (-want +got):\n%s", tc.name, tc.channels, diff)
		}
		for _, ch := range tc.channels {
			if _, ok := got[ch]; !ok {
				t.Errorf("%s: LastIDs has no entry for %q; want every channel asked for", tc.name, ch)
			}
		}
	}
}

func testCountsAfter(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	general := ids(appendN(t, ctx, b, "general", 10))
	random := ids(appendN(t, ctx, b, "random", 10))
	news := ids(appendN(t, ctx, b, "news", 3))
	markers := map[string]string{"general": "", "random": random[6], "news": news[2], "empty": "", "quiet": general[0]}
	tests := []struct {
		max  int
		want map[string]int
	}{
		{100, map[string]int{"general": 10, "random": 3, "news": 0, "empty": 0, "quiet": 0}},
		{4, map[string]int{"general": 4, "random": 3, "news": 0, "empty": 0, "quiet": 0}},
		{2, map[string]int{"general": 2, "random": 2, "news": 0, "empty": 0, "quiet": 0}},
	}
	for _, tc := range tests {
		got := must[map[string]int](t)(peer.CountsAfter(ctx, markers, tc.max))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("CountsAfter(%v, %d) (-want +got):\n%s", markers, tc.max, diff)
		}
		// The batch agrees with one channel at a time.
		for ch, after := range markers {
			if one := must[int](t)(b.CountAfter(ctx, ch, after, tc.max)); one != got[ch] {
				t.Errorf("CountsAfter gives %s %d, CountAfter %d", ch, got[ch], one)
			}
		}
	}
	if got := must[map[string]int](t)(peer.CountsAfter(ctx, nil, 10)); len(got) != 0 {
		t.Errorf("CountsAfter of no channels = %v", got)
	}
}

package chat

import (
	"errors"
	"slices"
	"testing"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

func TestMentions(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"hi @bob", []string{"bob"}},
		{"@Alice and @bob.", []string{"alice", "bob"}},
		{"@bob @bob @BOB", []string{"bob"}},
		{"mail me at carol@example.com", nil},
		{"mail me at CAROL@example.com", nil},
		{"@x is too short, @ alone is nothing", nil},
		{"(@dave) and @erin, @frank!", []string{"dave", "erin", "frank"}},
		{"@under_score-dash.dot", []string{"under_score-dash.dot"}},
		{"@" + string(make([]byte, 40)), nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			if got := mentions(tt.text); !slices.Equal(got, tt.want) {
				t.Errorf("mentions(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestDedupKey(t *testing.T) {
	a, b := dedupKey("alice", "c1"), dedupKey("alice", "c2")
	if a == b || a != dedupKey("alice", "c1") {
		t.Fatalf("keys %q, %q: want stable and distinct per clientId", a, b)
	}
	if dedupKey("bob", "c1") == a {
		t.Fatal("two people's clientIds share a key")
	}
	// The clientId is client-chosen: it is hashed, never embedded.
	if k := dedupKey("alice", "hb:{other/room}:x"); len(k) != len("alice:")+32 {
		t.Fatalf("key %q embeds the clientId", k)
	}
}

func TestAccess(t *testing.T) {
	s := New(nil, Options{Channels: []string{"general"}, MaxConnsPerUser: 1})
	tests := []struct {
		user, channel string
		want          error
	}{
		{"alice", "general", nil},
		{"alice", "dm:alice:bob", nil},
		{"bob", "dm:alice:bob", nil},
		{"carol", "dm:alice:bob", ErrForbidden},
		{"alice", "random", errCreated}, // membership is the catalog's to say
		{"alice", "Bad Name", ErrUnknownChannel},
		{"alice", "dm:alice", ErrUnknownChannel},
		{"alice", "dm:bob:alice", ErrUnknownChannel}, // not in canonical order: no such channel
	}
	for _, tt := range tests {
		if err := s.access(tt.user, tt.channel); !errors.Is(err, tt.want) {
			t.Errorf("access(%s, %s) = %v, want %v", tt.user, tt.channel, err, tt.want)
		}
	}
}

func TestJustBeforeAndMore(t *testing.T) {
	tests := []struct{ id, want string }{
		{"5-3", "5-2"},
		{"5-0", "4-18446744073709551615"}, // the last id of the millisecond before
		{"0-1", "0-0"},
	}
	for _, tt := range tests {
		id, err := protocol.ParseID(tt.id)
		if err != nil {
			t.Fatal(err)
		}
		got := justBefore(id)
		if got.String() != tt.want || protocol.CompareIDs(got.String(), tt.id) >= 0 {
			t.Errorf("justBefore(%s) = %s, want %s", tt.id, got, tt.want)
		}
	}
	for n, want := range map[int]string{-2: "", 0: "", 1: " and 1 more", 5: " and 5 more"} {
		if got := more(n); got != want {
			t.Errorf("more(%d) = %q, want %q", n, got, want)
		}
	}
}

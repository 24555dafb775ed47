package chat

import (
	"errors"
	"strings"
	"testing"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

func TestCheckChannelName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
		says string // in the error, when refused
	}{
		{"ops", true, ""},
		{"a", true, ""},
		{"team-2", true, ""},
		{strings.Repeat("a", 63), true, ""},
		{strings.Repeat("a", 64), false, "at most 63"},
		{"dm:alice:bob", false, "direct messages"},
		{"a:b", false, "direct messages"},
		{"", false, "lower-case"},
		{"-ops", false, "not at the start or end"},
		{"ops-", false, "not at the start or end"},
		{"Ops", false, "lower-case"}, // the API folds case before it gets here
		{"two words", false, "lower-case"},
		{"ünï", false, "lower-case"},
	}
	for _, tt := range tests {
		err := checkChannelName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("checkChannelName(%q) = %v, want ok %t", tt.name, err, tt.ok)
			continue
		}
		if err != nil && (!errors.Is(err, ErrBadChannelName) || !strings.Contains(err.Error(), tt.says)) {
			t.Errorf("checkChannelName(%q) = %v, want ErrBadChannelName saying %q", tt.name, err, tt.says)
		}
	}
}

// FuzzCheckChannelName: whatever a client sends as a new channel's name, an
// accepted one is a channel name that no DM can have, and nothing panics.
func FuzzCheckChannelName(f *testing.F) {
	for _, s := range []string{"ops", "dm:a:b", "", "-", strings.Repeat("z", 70), "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if checkChannelName(name) != nil {
			return
		}
		if _, _, dm := protocol.SplitDM(name); dm || !protocol.ValidChannel(name) || strings.Contains(name, ":") || len(name) > 63 {
			t.Fatalf("accepted %q", name)
		}
	})
}

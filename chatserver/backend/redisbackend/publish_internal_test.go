package redisbackend

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The publications appendScript and changeScript make decode to the entry
// they committed.
func TestParsePublished(t *testing.T) {
	tests := []struct {
		name     string
		payload  string
		wantPrev string
		want     protocol.Message
		wantErr  bool
	}{
		{"a message", "1-0\n2-0\nalice\nhi,\nthere", "1-0",
			protocol.Message{ID: "2-0", Channel: "general", From: "alice", Text: "hi,\nthere", TS: 2}, false},
		{"the first message", "\n5-1\nbob\n", "",
			protocol.Message{ID: "5-1", Channel: "general", From: "bob", TS: 5}, false},
		{"an edit", "2-0\n3-0\nalice,edit,2-0,0\nnew, text\n", "2-0",
			protocol.Message{ID: "3-0", Channel: "general", From: "alice", Text: "new, text\n", TS: 3, Kind: protocol.KindEdit, Target: "2-0"}, false},
		{"a reaction", "3-0\n4-0\nbob,react,2-0,1\n👍", "3-0",
			protocol.Message{ID: "4-0", Channel: "general", From: "bob", TS: 4, Kind: protocol.KindReact, Target: "2-0", Emoji: "👍", On: true}, false},
		{"a delete", "4-0\n5-0\nbob,delete,2-0,0\n", "4-0",
			protocol.Message{ID: "5-0", Channel: "general", From: "bob", TS: 5, Kind: protocol.KindDelete, Target: "2-0"}, false},
		{"too few lines", "1-0\n2-0\nalice", "", protocol.Message{}, true},
		{"not an id", "1-0\nxyz\nalice\nhi", "", protocol.Message{}, true},
		{"a change of too few fields", "1-0\n2-0\nalice,edit\nhi", "", protocol.Message{}, true},
		{"a change of no known kind", "1-0\n2-0\nalice,nuke,1-0,0\nhi", "", protocol.Message{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, m, err := parsePublished("general", tt.payload)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want an error: %t", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if prev != tt.wantPrev {
				t.Errorf("prev %q, want %q", prev, tt.wantPrev)
			}
			if diff := cmp.Diff(tt.want, m); diff != "" {
				t.Errorf("entry (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParsePublished: a publication (from any client of the Redis, so not
// to be trusted) never panics the feed, and a change it accepts names its
// kind and target.
func FuzzParsePublished(f *testing.F) {
	for _, s := range []string{"1-0\n2-0\nalice\nhi", "2-0\n3-0\nalice,edit,2-0,0\nx", "3-0\n4-0\nbob,react,2-0,1\n👍", "\n\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		_, m, err := parsePublished("general", payload)
		if err != nil {
			return
		}
		id, err := protocol.ParseID(m.ID)
		if err != nil || int64(id.Ms) != m.TS {
			t.Fatalf("accepted id %q with ts %d", m.ID, m.TS)
		}
		switch m.Kind {
		case "", protocol.KindEdit, protocol.KindDelete, protocol.KindReact:
		default:
			t.Fatalf("accepted a change of kind %q", m.Kind)
		}
	})
}

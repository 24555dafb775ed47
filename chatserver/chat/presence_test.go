package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func TestPresenceBatcher(t *testing.T) {
	tests := []struct {
		name   string
		notes  [][2]string // user, status, in order
		sizes  []int       // objects per entry
		latest map[string]string
	}{
		{"nothing noted, nothing sent", nil, nil, nil},
		{"a user's latest status wins", [][2]string{{"bob", "online"}, {"bob", "offline"}, {"alice", "online"}},
			[]int{2}, map[string]string{"alice": "online", "bob": "offline"}},
		{"large batches are chunked", notesFor(maxPresenceChunk + 1), []int{maxPresenceChunk, 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p presenceBatcher
			for _, n := range tt.notes {
				p.note(n[0], n[1])
			}
			entries, sizes := p.take()
			if fmt.Sprint(sizes) != fmt.Sprint(tt.sizes) {
				t.Fatalf("entry sizes %v, want %v", sizes, tt.sizes)
			}
			got := map[string]string{}
			for i, e := range entries {
				lines := bytes.Split(e, []byte("\n"))
				if len(lines) != sizes[i] {
					t.Fatalf("entry %d holds %d objects, says %d", i, len(lines), sizes[i])
				}
				for _, l := range lines {
					var o struct{ Type, User, Status string }
					if err := json.Unmarshal(l, &o); err != nil || o.Type != "presence" {
						t.Fatalf("entry %d: %q is not a presence object (%v)", i, l, err)
					}
					got[o.User] = o.Status
				}
			}
			for u, s := range tt.latest {
				if got[u] != s {
					t.Errorf("%s: %q, want %q", u, got[u], s)
				}
			}
			if again, _ := p.take(); len(again) != 0 {
				t.Errorf("a second take returned %d entries: the batch was not emptied", len(again))
			}
		})
	}
}

func notesFor(n int) [][2]string {
	out := make([][2]string, n)
	for i := range out {
		out[i] = [2]string{fmt.Sprintf("user%04d", i), "online"}
	}
	return out
}

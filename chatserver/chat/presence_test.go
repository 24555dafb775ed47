package chat

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPresenceBatcher(t *testing.T) {
	tests := []struct {
		name   string
		notes  [][2]string       // user, status, in order
		during [][2]string       // noted while a refresh reads storage
		read   map[string]string // what the refresh read (nil: no refresh)
		want   map[string]string
	}{
		{"nothing noted, nothing sent", nil, nil, nil, nil},
		{"a user's latest status wins", [][2]string{{"bob", "online"}, {"bob", "offline"}, {"alice", "online"}}, nil, nil,
			map[string]string{"alice": "online", "bob": "offline"}},
		{"a refresh sends what it read", nil, nil, map[string]string{"bob": "offline", "carol": "online"},
			map[string]string{"bob": "offline", "carol": "online"}},
		{"a refresh's read is newer than what was noted before it", [][2]string{{"bob", "online"}}, nil, map[string]string{"bob": "offline"},
			map[string]string{"bob": "offline"}},
		{"an event noted while a refresh reads wins over the read", nil, [][2]string{{"bob", "online"}}, map[string]string{"bob": "offline", "carol": "online"},
			map[string]string{"bob": "online", "carol": "online"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p presenceBatcher
			for _, n := range tt.notes {
				p.note(n[0], n[1])
			}
			if tt.read != nil {
				p.refreshing()
				for _, n := range tt.during {
					p.note(n[0], n[1])
				}
				p.refreshed(tt.read)
			}
			if diff := cmp.Diff(tt.want, p.take()); diff != "" {
				t.Errorf("batch (-want +got):\n%s", diff)
			}
			if again := p.take(); len(again) != 0 {
				t.Errorf("a second take returned %v: the batch was not emptied", again)
			}
		})
	}
}

// TestWatchersBatch: a presence batch reaches only the sockets watching the
// people in it, each socket's share as one entry, and a socket's watch can
// be replaced and dropped.
func TestWatchersBatch(t *testing.T) {
	a, b, c := &conn{user: "a"}, &conn{user: "b"}, &conn{user: "c"}
	tests := []struct {
		name    string
		watch   map[*conn][]string // applied in order a, b, c; nil list = drop
		pending map[string]string
		want    map[*conn]map[string]string // per socket: user -> status it gets
	}{
		{
			name:    "nobody watches: nothing to send",
			pending: map[string]string{"bob": "online"},
			want:    map[*conn]map[string]string{},
		},
		{
			name:    "each socket gets its own people only",
			watch:   map[*conn][]string{a: {"bob", "carol"}, b: {"carol"}, c: {"dave"}},
			pending: map[string]string{"bob": "online", "carol": "offline", "erin": "online"},
			want: map[*conn]map[string]string{
				a: {"bob": "online", "carol": "offline"},
				b: {"carol": "offline"},
			},
		},
		{
			name:    "a new watch replaces the old one",
			watch:   map[*conn][]string{a: {"bob"}, b: {"carol"}},
			pending: map[string]string{"bob": "online", "carol": "online"},
			want:    map[*conn]map[string]string{a: {"bob": "online"}, b: {"carol": "online"}},
		},
		{
			name:    "an empty watch or a closed socket watches nobody",
			watch:   map[*conn][]string{a: {}, b: nil, c: nil},
			pending: map[string]string{"bob": "online", "carol": "online"},
			want:    map[*conn]map[string]string{},
		},
	}
	var w watchers
	w.set(a, []string{"carol"}) // replaced by the steps below
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []*conn{a, b, c} {
				users, ok := tt.watch[s]
				switch {
				case !ok:
				case users == nil:
					w.drop(s)
				default:
					w.set(s, users)
				}
			}
			got := map[*conn]map[string]string{}
			for s, e := range w.batch(tt.pending) {
				lines := bytes.Split(e.b, []byte("\n"))
				if len(lines) != e.n {
					t.Fatalf("%s's entry holds %d objects, says %d", s.user, len(lines), e.n)
				}
				got[s] = map[string]string{}
				for _, l := range lines {
					var o struct{ Type, User, Status string }
					if err := json.Unmarshal(l, &o); err != nil || o.Type != "presence" {
						t.Fatalf("%q is not a presence object (%v)", l, err)
					}
					got[s][o.User] = o.Status
				}
			}
			if !maps.EqualFunc(got, tt.want, maps.Equal) {
				t.Errorf("got %v, want %v", named(got), named(tt.want))
			}
		})
	}
	if len(w.by) != 0 || len(w.lists) != 0 {
		t.Errorf("index not empty after every socket stopped watching: %v %v", w.by, w.lists)
	}
}

func named(m map[*conn]map[string]string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for c, v := range m {
		out[c.user] = v
	}
	return out
}

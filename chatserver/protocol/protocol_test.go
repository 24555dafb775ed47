package protocol

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     ClientFrame
		wantCode string
	}{
		{"send", `{"type":"send","channel":"general","text":"hi","clientId":"c1"}`, ClientFrame{Type: "send", Channel: "general", Text: "hi", ClientID: "c1"}, ""},
		{"dm send", `{"type":"send","to":"bob","text":"hi","clientId":"c1"}`, ClientFrame{Type: "send", To: "bob", Text: "hi", ClientID: "c1"}, ""},
		{"resume", `{"type":"resume","since":{"general":"1-0","dm:alice:bob":""}}`, ClientFrame{Type: "resume", Since: map[string]string{"general": "1-0", "dm:alice:bob": ""}}, ""},
		{"typing", `{"type":"typing","channel":"general"}`, ClientFrame{Type: "typing", Channel: "general"}, ""},
		{"read", `{"type":"read","channel":"general","id":"17-3"}`, ClientFrame{Type: "read", Channel: "general", ID: "17-3"}, ""},
		{"watch, folded, sorted and distinct", `{"type":"watch","users":["carol","Bob","bob"]}`, ClientFrame{Type: "watch", Users: []string{"bob", "carol"}}, ""},
		{"watch nobody", `{"type":"watch","users":[]}`, ClientFrame{Type: "watch", Users: []string{}}, ""},
		{"watch the most", `{"type":"watch","users":["u00"` + strings.Repeat(`,"u00"`, MaxWatch-1) + `]}`, ClientFrame{Type: "watch", Users: []string{"u00"}}, ""},
		{"watch too many", `{"type":"watch","users":["u00"` + strings.Repeat(`,"u00"`, MaxWatch) + `]}`, ClientFrame{}, CodeBadRequest},
		{"watch a bad name", `{"type":"watch","users":["bob","a b"]}`, ClientFrame{}, CodeBadRequest},
		{"watch a name not a string", `{"type":"watch","users":[1]}`, ClientFrame{}, CodeBadRequest},
		{"empty", ``, ClientFrame{}, CodeBadRequest},
		{"truncated", `{"type":"send"`, ClientFrame{}, CodeBadRequest},
		{"two objects", `{"type":"typing","channel":"general"}{"type":"typing","channel":"general"}`, ClientFrame{}, CodeBadRequest},
		{"array", `[]`, ClientFrame{}, CodeBadRequest},
		{"wrong field type", `{"type":"send","text":5}`, ClientFrame{}, CodeBadRequest},
		{"unknown field", `{"type":"typing","channel":"general","evil":true}`, ClientFrame{}, CodeBadRequest},
		{"no type", `{"channel":"general"}`, ClientFrame{Channel: "general"}, CodeBadRequest},
		{"unknown type", `{"type":"nuke"}`, ClientFrame{Type: "nuke"}, CodeBadRequest},
		{"invalid utf8", "{\"type\":\"typing\",\"channel\":\"gen\xffal\"}", ClientFrame{}, CodeBadRequest},
		{"send no clientId", `{"type":"send","channel":"general","text":"hi"}`, ClientFrame{Type: "send", Channel: "general", Text: "hi"}, CodeBadRequest},
		{"send long clientId", `{"type":"send","channel":"general","text":"hi","clientId":"` + strings.Repeat("a", 65) + `"}`, ClientFrame{}, CodeBadRequest},
		{"send blank text", `{"type":"send","channel":"general","text":"  \n","clientId":"c"}`, ClientFrame{Type: "send", Channel: "general", Text: "  \n", ClientID: "c"}, CodeBadRequest},
		{"send too large", `{"type":"send","channel":"general","text":"` + strings.Repeat("é", 6) + `","clientId":"c"}`, ClientFrame{Type: "send", Channel: "general", Text: strings.Repeat("é", 6), ClientID: "c"}, CodeTooLarge},
		{"send both targets", `{"type":"send","channel":"general","to":"bob","text":"x","clientId":"c"}`, ClientFrame{Type: "send", Channel: "general", To: "bob", Text: "x", ClientID: "c"}, CodeBadRequest},
		{"send bad channel", `{"type":"send","channel":"Gen eral","text":"x","clientId":"c"}`, ClientFrame{Type: "send", Channel: "Gen eral", Text: "x", ClientID: "c"}, CodeUnknownChannel},
		{"resume bad id", `{"type":"resume","since":{"general":"x"}}`, ClientFrame{Type: "resume", Since: map[string]string{"general": "x"}}, CodeBadRequest},
		{"resume bad channel", `{"type":"resume","since":{"dm:bob:alice":"1-1"}}`, ClientFrame{Type: "resume", Since: map[string]string{"dm:bob:alice": "1-1"}}, CodeUnknownChannel},
		{"read no id", `{"type":"read","channel":"general"}`, ClientFrame{Type: "read", Channel: "general"}, CodeBadRequest},
		{"typing redis key chars", `{"type":"typing","channel":"general}:x"}`, ClientFrame{Type: "typing", Channel: "general}:x"}, CodeUnknownChannel},
		{"reply", `{"type":"send","channel":"general","text":"hi","clientId":"c1","thread":"5-1"}`, ClientFrame{Type: "send", Channel: "general", Text: "hi", ClientID: "c1", Thread: "5-1"}, ""},
		{"reply to no id", `{"type":"send","channel":"general","text":"hi","clientId":"c1","thread":"x"}`, ClientFrame{Type: "send", Channel: "general", Text: "hi", ClientID: "c1", Thread: "x"}, CodeBadRequest},
		{"edit", `{"type":"edit","channel":"general","id":"5-1","text":"fixed","clientId":"e"}`, ClientFrame{Type: "edit", Channel: "general", ID: "5-1", Text: "fixed", ClientID: "e"}, ""},
		{"edit no clientId", `{"type":"edit","channel":"general","id":"5-1","text":"x"}`, ClientFrame{Type: "edit", Channel: "general", ID: "5-1", Text: "x"}, CodeBadRequest},
		{"edit blank", `{"type":"edit","channel":"general","id":"5-1","text":" ","clientId":"e"}`, ClientFrame{Type: "edit", Channel: "general", ID: "5-1", Text: " ", ClientID: "e"}, CodeBadRequest},
		{"edit too large", `{"type":"edit","channel":"general","id":"5-1","text":"` + strings.Repeat("x", 11) + `","clientId":"e"}`, ClientFrame{Type: "edit", Channel: "general", ID: "5-1", Text: strings.Repeat("x", 11), ClientID: "e"}, CodeTooLarge},
		{"edit bad id", `{"type":"edit","channel":"general","id":"five","text":"x","clientId":"e"}`, ClientFrame{Type: "edit", Channel: "general", ID: "five", Text: "x", ClientID: "e"}, CodeBadRequest},
		{"delete", `{"type":"delete","channel":"dm:alice:bob","id":"5-1","clientId":"d"}`, ClientFrame{Type: "delete", Channel: "dm:alice:bob", ID: "5-1", ClientID: "d"}, ""},
		{"delete bad channel", `{"type":"delete","channel":"","id":"5-1","clientId":"d"}`, ClientFrame{Type: "delete", ID: "5-1", ClientID: "d"}, CodeUnknownChannel},
		{"react", `{"type":"react","channel":"general","id":"5-1","emoji":"👍🏽","on":false,"clientId":"r"}`, ClientFrame{Type: "react", Channel: "general", ID: "5-1", Emoji: "👍🏽", On: new(bool), ClientID: "r"}, ""},
		{"react without on", `{"type":"react","channel":"general","id":"5-1","emoji":"👍","clientId":"r"}`, ClientFrame{Type: "react", Channel: "general", ID: "5-1", Emoji: "👍", ClientID: "r"}, CodeBadRequest},
		{"react no emoji", `{"type":"react","channel":"general","id":"5-1","emoji":"","on":true,"clientId":"r"}`, ClientFrame{Type: "react", Channel: "general", ID: "5-1", On: ptr(true), ClientID: "r"}, CodeBadRequest},
		{"react emoji with a newline", `{"type":"react","channel":"general","id":"5-1","emoji":"a\nb","on":true,"clientId":"r"}`, ClientFrame{Type: "react", Channel: "general", ID: "5-1", Emoji: "a\nb", On: ptr(true), ClientID: "r"}, CodeBadRequest},
		{"react emoji too long", `{"type":"react","channel":"general","id":"5-1","emoji":"` + strings.Repeat("🎉", 9) + `","on":true,"clientId":"r"}`, ClientFrame{Type: "react", Channel: "general", ID: "5-1", Emoji: strings.Repeat("🎉", 9), On: ptr(true), ClientID: "r"}, CodeTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in), 10)
			code := ""
			if err != nil {
				code = err.Code
				if err.Message == "" {
					t.Error("error without a message")
				}
			}
			if code != tt.wantCode {
				t.Fatalf("code = %q (%v), want %q", code, err, tt.wantCode)
			}
			if err == nil || tt.want.Type != "" {
				if diff := cmp.Diff(tt.want, got); diff != "" && err == nil {
					t.Errorf("frame (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestValidChannel(t *testing.T) {
	tests := map[string]bool{
		"general": true, "a": true, "release-2026": true, strings.Repeat("a", 63): true,
		"": false, "-x": false, "x-": false, "Gen": false, "a_b": false, strings.Repeat("a", 64): false,
		"dm:alice:bob": true, "dm:bob:alice": false, "dm:alice:alice": false, "dm:al:bob": false, "dm:alice": false,
		"dm:alice:bob:carol": false, "hb:{x}:y": false,
	}
	for name, want := range tests {
		if got := ValidChannel(name); got != want {
			t.Errorf("ValidChannel(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestIDs(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0}, {"1-0", "1-1", -1}, {"2-0", "1-9", 1}, {"10-0", "9-0", 1}, {"", "0-1", -1},
	}
	for _, tt := range tests {
		if got := CompareIDs(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareIDs(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
	for _, bad := range []string{"", "1", "a-1", "1-b", "-1", "1-", "1-2-3", "18446744073709551616-0"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded", bad)
		}
	}
	if id, err := ParseID("1700000000000-42"); err != nil || id.String() != "1700000000000-42" {
		t.Errorf("round trip: %v %v", id, err)
	}
}

func TestEncodeMessageMatchesEncodingJSON(t *testing.T) {
	texts := []string{"plain", `quote " backslash \ slash /`, "<script>alert(1)</script> & co", "tab\tnl\ncr\r\x00\x1f",
		"emoji 😀 and é", "line sep \u2028 para \u2029", "bad utf8 \xff end"}
	for i, text := range texts {
		m := Message{ID: "1-2", Channel: "general", From: "alice", Text: text, TS: 1700000000000}
		if i%2 == 1 {
			m.Thread = "1-1" // a reply
		}
		got := EncodeMessage(nil, m)
		want, _ := json.Marshal(struct {
			Type string `json:"type"`
			Message
		}{"message", m})
		// The same JSON value, not the same bytes: Go's encoding/json itself
		// changed how it writes invalid UTF-8 (1.27: a raw U+FFFD; 1.26 and
		// ours: \ufffd), and both are the same string.
		var gotV, wantV any
		if err := json.Unmarshal(got, &gotV); err != nil {
			t.Fatalf("text %q: EncodeMessage wrote invalid JSON %s: %v", text, got, err)
		}
		if err := json.Unmarshal(want, &wantV); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("text %q:\n got %s\nwant %s", text, got, want)
		}
		// Like encoding/json, nothing that could end a <script> or a JS
		// string when a page inlines the object.
		if strings.ContainsAny(string(got), "<>&\u2028\u2029") {
			t.Errorf("text %q: %s holds an unescaped <, >, &, U+2028 or U+2029", text, got)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDMChannel(t *testing.T) {
	if got := DMChannel("bob", "alice"); got != "dm:alice:bob" {
		t.Fatalf("DMChannel = %q", got)
	}
	a, b, ok := SplitDM("dm:alice:bob")
	if !ok || a != "alice" || b != "bob" {
		t.Fatalf("SplitDM = %q %q %v", a, b, ok)
	}
}

// FuzzDecode: Decode never panics, and what it accepts is well-formed.
// The seed corpus under testdata/fuzz runs as a normal test.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"send","channel":"general","text":"hi","clientId":"c1"}`,
		`{"type":"send","to":"bob","text":"hi","clientId":"c1"}`,
		`{"type":"resume","since":{"general":"1-0"}}`,
		`{"type":"typing","channel":"general"}`,
		`{"type":"read","channel":"dm:alice:bob","id":"5-5"}`,
		`{"type":"watch","users":["bob","Carol"]}`,
		`{"type":"send","text":"\u0000","clientId":"` + "\xff" + `"}`,
		`{"type":"edit","channel":"general","id":"5-1","text":"fixed","clientId":"e"}`,
		`{"type":"delete","channel":"general","id":"5-1","clientId":"d"}`,
		`{"type":"react","channel":"general","id":"5-1","emoji":"👍","on":true,"clientId":"r"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data, 4096)
		if err != nil {
			if err.Code == "" || err.Message == "" || !utf8.ValidString(err.Message) {
				t.Fatalf("bad error %+v", err)
			}
			// Error frames must always encode.
			_ = Encode(ErrorFrame{Type: TypeError, Error: *err})
			return
		}
		switch fr.Type {
		case TypeSend:
			if fr.ClientID == "" || len(fr.Text) > 4096 || (fr.Channel == "") == (fr.To == "") {
				t.Fatalf("accepted bad send %+v", fr)
			}
			if _, err := ParseID(fr.Thread); fr.Thread != "" && err != nil {
				t.Fatalf("accepted a reply in thread %q", fr.Thread)
			}
			if fr.Channel != "" && !ValidChannel(fr.Channel) {
				t.Fatalf("accepted bad channel %q", fr.Channel)
			}
		case TypeResume:
			for ch := range fr.Since {
				if !ValidChannel(ch) {
					t.Fatalf("accepted bad resume channel %q", ch)
				}
			}
		case TypeTyping, TypeRead:
			if !ValidChannel(fr.Channel) {
				t.Fatalf("accepted bad channel %q", fr.Channel)
			}
		case TypeWatch:
			if len(fr.Users) > MaxWatch || !slices.IsSorted(fr.Users) || len(slices.Compact(slices.Clone(fr.Users))) != len(fr.Users) {
				t.Fatalf("accepted bad watch %q", fr.Users)
			}
			for _, u := range fr.Users {
				if !ValidUsername(u) {
					t.Fatalf("accepted watch of %q", u)
				}
			}
		case TypeEdit, TypeDelete, TypeReact:
			if fr.ClientID == "" || !ValidChannel(fr.Channel) {
				t.Fatalf("accepted bad change %+v", fr)
			}
			if _, err := ParseID(fr.ID); err != nil {
				t.Fatalf("accepted change of id %q", fr.ID)
			}
			if fr.Type == TypeEdit && (len(fr.Text) > 4096 || strings.TrimSpace(fr.Text) == "") {
				t.Fatalf("accepted bad edit %+v", fr)
			}
			if fr.Type == TypeReact && (fr.On == nil || !validEmoji(fr.Emoji) || len(fr.Emoji) > MaxEmojiBytes) {
				t.Fatalf("accepted bad react %+v", fr)
			}
			// What is accepted must reach a client intact.
			m := Message{Kind: KindReact, Channel: fr.Channel, ID: "1-0", Target: fr.ID, Emoji: fr.Emoji, From: "alice"}
			if !json.Valid(EncodeEntry(m)) {
				t.Fatalf("reaction %q does not encode", fr.Emoji)
			}
		default:
			t.Fatalf("accepted unknown type %q", fr.Type)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	frame := []byte(`{"type":"send","channel":"general","text":"hello there, how is everyone doing today?","clientId":"6f1c2f7e-5d43-4a51-9d9b-0e6c1b2f9a10"}`)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frame, 4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := Message{ID: "1700000000000-0", Channel: "general", From: "alice", Text: "hello there, how is everyone doing today?", TS: 1700000000000}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = EncodeMessage(buf[:0], m)
	}
}

package protocol

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

func readProtocolDoc(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// TestClosesDocumented: docs/protocol.md's close table names every close
// code the server sends, with its metrics label, and no other.
func TestClosesDocumented(t *testing.T) {
	doc := readProtocolDoc(t)
	rows := regexp.MustCompile("(?m)^\\| \\*\\*(\\d{4})\\*\\* \\| `([a-z_]+)` \\|").FindAllStringSubmatch(doc, -1)
	documented := map[string]string{}
	for _, r := range rows {
		documented[r[1]] = r[2]
	}
	labels := map[string]bool{}
	for _, c := range Closes {
		code := fmt.Sprint(c.Code)
		if got, ok := documented[code]; !ok || got != c.Label {
			t.Errorf("docs/protocol.md: close %s should be documented with label %s (found %q)", code, c.Label, got)
		}
		if labels[c.Label] {
			t.Errorf("label %s names two close codes", c.Label)
		}
		labels[c.Label] = true
		if CloseLabel(c.Code) != c.Label {
			t.Errorf("CloseLabel(%d) = %s, want %s", c.Code, CloseLabel(c.Code), c.Label)
		}
	}
	if len(documented) != len(Closes) {
		t.Errorf("docs/protocol.md documents %d close codes, the server sends %d: %v", len(documented), len(Closes), documented)
	}
}

// TestErrorsDocumented: docs/protocol.md's error table names every error
// code, with what carries it, and no other.
func TestErrorsDocumented(t *testing.T) {
	doc := readProtocolDoc(t)
	start := strings.Index(doc, "### Error codes")
	if start < 0 {
		t.Fatal("docs/protocol.md has no \"### Error codes\" section")
	}
	section := doc[start:]
	if end := strings.Index(section[1:], "\n#"); end >= 0 {
		section = section[:end+1]
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([A-Za-z, ]+) \\|").FindAllStringSubmatch(section, -1)
	documented := map[string]string{}
	for _, r := range rows {
		if _, dup := documented[r[1]]; dup {
			t.Errorf("docs/protocol.md lists %s twice", r[1])
		}
		documented[r[1]] = r[2]
	}
	seen := map[string]bool{}
	for _, e := range Errors {
		if seen[e.Code] {
			t.Errorf("Errors lists %s twice", e.Code)
		}
		seen[e.Code] = true
		if got, ok := documented[e.Code]; !ok || got != e.By.String() {
			t.Errorf("docs/protocol.md: error %s should be documented as carried by %q (found %q)", e.Code, e.By, got)
		}
	}
	if len(documented) != len(Errors) {
		t.Errorf("docs/protocol.md documents %d error codes, Errors has %d: %v", len(documented), len(Errors), documented)
	}
}

func TestCarrierString(t *testing.T) {
	tests := []struct {
		c    Carrier
		want string
	}{
		{InFrame, "WebSocket"},
		{InFrame | InHTTP, "WebSocket, HTTP"},
		{OnlyCount, "metric"},
		{0, ""},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("Carrier(%d) = %q, want %q", tt.c, got, tt.want)
		}
	}
}

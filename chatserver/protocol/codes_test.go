package protocol

import (
	"fmt"
	"os"
	"regexp"
	"testing"
)

// TestClosesDocumented: docs/protocol.md's close table names every close
// code the server sends, with its metrics label, and no other.
func TestClosesDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| \\*\\*(\\d{4})\\*\\* \\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1)
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

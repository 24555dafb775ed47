package e2e

import (
	"os/exec"
	"testing"
)

// TestChatCompiles vets TestChat, which only builds with the e2e tag and so
// is left out of plain `go test ./...` and `go vet ./...`: a change that
// breaks it fails here, not first on a kind cluster.
func TestChatCompiles(t *testing.T) {
	out, err := exec.Command("go", "vet", "-tags", "e2e", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go vet -tags e2e: %v\n%s", err, out)
	}
}

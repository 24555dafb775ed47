// Package load runs the load tool (cmd/hubbub-bench, implemented in
// internal/loadtest) small, to prove that it works end to end and reports
// sane numbers; it reads the tool's --json file as loadtest.Results. Real
// benchmark runs are manual: see docs/benchmarks.md.
package load

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hubbub-chat/hubbub/internal/loadtest"
)

// build compiles the chat server and the load tool once per test binary.
func build(t *testing.T) (bench, chatserver string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "github.com/hubbub-chat/hubbub/cmd/chatserver", "github.com/hubbub-chat/hubbub/cmd/hubbub-bench")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "hubbub-bench"), filepath.Join(dir, "chatserver")
}

func run(t *testing.T, bench string, args ...string) loadtest.Results {
	t.Helper()
	var r loadtest.Results
	runTool(t, bench, "run", &r, args...)
	return r
}

// runTool runs hubbub-bench's subcommand with args and reads its --json
// file into out.
func runTool(t *testing.T, bench, subcommand string, out any, args ...string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "results.json")
	args = append([]string{subcommand, "--json", file, "--workdir", t.TempDir(), "--timeout", "60s"}, args...)
	cmd := exec.Command(bench, args...)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hubbub-bench %v: %v\n%s", args, err, b)
	} else {
		t.Logf("hubbub-bench %v (%s):\n%s", args, time.Since(start).Round(time.Millisecond), b)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, r loadtest.Results, conns int, rate float64, seconds float64) {
	t.Helper()
	if r.Idle.Connected != conns || r.Idle.Failed != 0 {
		t.Errorf("connected %d, failed %d; want %d, 0", r.Idle.Connected, r.Idle.Failed, conns)
	}
	if r.Idle.RSSPerConn <= 0 || r.Idle.RSSPerConn > 1<<20 {
		t.Errorf("RSS per connection %.0f bytes: not a plausible figure", r.Idle.RSSPerConn)
	}
	if len(r.Steps) != 1 {
		t.Fatalf("%d steps reported, want 1", len(r.Steps))
	}
	s := r.Steps[0]
	if want := uint64(rate*seconds + 0.5); s.Sent != want {
		t.Errorf("sent %d, want %d", s.Sent, want)
	}
	if s.Conns != conns || s.Expected != s.Sent*uint64(conns) {
		t.Errorf("expected %d deliveries to %d sockets after %d sends: want sends × sockets", s.Expected, s.Conns, s.Sent)
	}
	if s.Delivered != s.Expected || s.Duplicates != 0 || s.Dropped != 0 || s.SendErrors != 0 {
		t.Errorf("delivered %d/%d, %d duplicates, %d dropped sockets, %d send errors", s.Delivered, s.Expected, s.Duplicates, s.Dropped, s.SendErrors)
	}
	if s.P50ms <= 0 || s.P99ms < s.P50ms || s.P99ms > 10000 {
		t.Errorf("latency p50 %.2f ms, p99 %.2f ms: not plausible", s.P50ms, s.P99ms)
	}
	if s.ServerCPUs <= 0 || s.CPUPerMsgUs <= 0 {
		t.Errorf("server CPU %.2f s, %.2f µs per message: not measured", s.ServerCPUs, s.CPUPerMsgUs)
	}
}

// 200 sockets over two chat servers sharing a real Redis, two load worker
// processes: every message reaches every socket, and the figures are sane.
func TestSmokeTwoServersRedis(t *testing.T) {
	needRedis(t)
	bench, chatserver := build(t)
	r := run(t, bench, "--chatserver", chatserver, "--servers", "2", "--workers", "2", "--conns", "200", "--users", "50",
		"--steps", "20", "--step-duration", "2s", "--repeat", "1", "--settle", "500ms")
	check(t, r, 200, 20, 2)
}

// Edits and reactions as the step's sends (--kind): each sender posts one
// message, then changes it; every change reaches every socket. An edit
// carries its send time in its text and is timed; a reaction is counted.
func TestSmokeChanges(t *testing.T) {
	needRedis(t)
	bench, chatserver := build(t)
	for _, kind := range []string{loadtest.KindEdit, loadtest.KindReact} {
		t.Run(kind, func(t *testing.T) {
			r := run(t, bench, "--kind", kind, "--chatserver", chatserver, "--servers", "2", "--workers", "2", "--conns", "100", "--users", "20",
				"--steps", "20", "--step-duration", "2s", "--repeat", "1", "--settle", "200ms")
			if kind == loadtest.KindEdit {
				check(t, r, 100, 20, 2)
				return
			}
			s := r.Steps[0]
			if s.Sent != 40 || s.Delivered != s.Sent*100 || s.SendErrors != 0 || s.Dropped != 0 {
				t.Errorf("sent %d, delivered %d (want 40 and 4000), %d send errors, %d dropped", s.Sent, s.Delivered, s.SendErrors, s.Dropped)
			}
			if s.CPUPerMsgUs <= 0 {
				t.Errorf("%.2f µs per reaction: not measured", s.CPUPerMsgUs)
			}
		})
	}
}

// The baseline (gorilla's chat example shape) under the same tool.
func TestSmokeBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts servers")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the load tool reads /proc")
	}
	bench, _ := build(t)
	r := run(t, bench, "--target", "baseline", "--conns", "100", "--steps", "20", "--step-duration", "1s", "--repeat", "1", "--settle", "200ms")
	check(t, r, 100, 20, 1)
}

// linkCentrifugo puts bin/centrifugo beside bench, where the tool looks for
// it.
func linkCentrifugo(t *testing.T, bench string) {
	t.Helper()
	centrifugo, err := filepath.Abs(filepath.Join("..", "..", "bin", "centrifugo"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(centrifugo); errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s is not built: run `make centrifugo` (make test builds it)", centrifugo)
	}
	if err := os.Symlink(centrifugo, filepath.Join(filepath.Dir(bench), "centrifugo")); err != nil {
		t.Fatal(err)
	}
}

// Centrifugo (--target centrifugo) under the same tool, one node on its
// memory engine and two on its Redis engine: every published message
// reaches every subscribed socket. It needs bin/centrifugo, which `make
// test` builds (make tools, or make centrifugo).
func TestSmokeCentrifugo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and starts servers")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the load tool reads /proc")
	}
	bench, _ := build(t)
	linkCentrifugo(t, bench)
	r := run(t, bench, "--target", "centrifugo", "--backend", "memory", "--conns", "100", "--users", "20",
		"--steps", "20", "--step-duration", "1s", "--repeat", "1", "--settle", "200ms")
	check(t, r, 100, 20, 1)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: run `make deps`")
	}
	// Two nodes on its Redis engine, as the benchmark runs it: a publication
	// reaches the other node's sockets through Redis PUB/SUB.
	r = run(t, bench, "--target", "centrifugo", "--servers", "2", "--conns", "100", "--users", "20",
		"--steps", "20", "--step-duration", "1s", "--repeat", "1", "--settle", "200ms")
	check(t, r, 100, 20, 1)
}

package chart

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Docker is not available where these tests run, so the image itself is not
// built here. TestImageEntrypoints builds what the image would hold by running
// the Dockerfile's own `go build` line (parsed from the Dockerfile, so the two
// cannot drift), then checks each file the final stage copies exists, is a
// static executable (distroless/static has no libc) and is the right program.

// dockerfile is the part of the Dockerfile this test relies on.
type dockerfile struct {
	buildStage string            // name of the stage that runs go build
	env        map[string]string // ENV of that stage, ARG defaults expanded
	buildCmds  []string          // its RUN commands that contain "go build"
	copies     map[string]string // final stage: image path -> build stage path
	user       string            // final stage USER
	entrypoint string            // final stage ENTRYPOINT (exec form, first word)
}

func parseDockerfile(t *testing.T, file string, argOverrides map[string]string) dockerfile {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	// Join continuation lines and drop comments, as Docker does.
	var instrs []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		instrs = append(instrs, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	d := dockerfile{env: map[string]string{}, copies: map[string]string{}}
	args := map[string]string{}
	stage, final := "", false
	for _, in := range instrs {
		op, rest, _ := strings.Cut(in, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(op) {
		case "FROM":
			f := strings.Fields(rest)
			stage = ""
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				stage = f[n-1]
			}
			final = stage == ""
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			if v, ok := argOverrides[name]; ok {
				def = v
			}
			args[name] = def
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("Dockerfile: ENV %q: use the KEY=value form", rest)
				}
				d.env[k] = os.Expand(v, func(s string) string { return args[s] })
			}
		case "RUN":
			if !strings.Contains(rest, "go build") {
				continue
			}
			// Drop RUN's own flags (--mount=...): they do not change what is built.
			f := strings.Fields(rest)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			d.buildStage = stage
			d.buildCmds = append(d.buildCmds, strings.Join(f, " "))
		case "COPY":
			if !final {
				continue
			}
			f := strings.Fields(rest)
			if len(f) != 3 || !strings.HasPrefix(f[0], "--from=") {
				t.Fatalf("Dockerfile: final stage COPY %q: expected COPY --from=STAGE SRC DST", rest)
			}
			if from := strings.TrimPrefix(f[0], "--from="); from != d.buildStage {
				t.Fatalf("Dockerfile: final stage copies from %q, not the go build stage %q", from, d.buildStage)
			}
			d.copies[f[2]] = f[1]
		case "USER":
			if final {
				d.user = rest
			}
		case "ENTRYPOINT":
			if final {
				f := strings.Fields(strings.Trim(rest, "[]"))
				if len(f) > 0 {
					d.entrypoint = strings.Trim(f[0], `",`)
				}
			}
		}
	}
	return d
}

func TestImageEntrypoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries from scratch flags (CGO off, -trimpath): not a short test")
	}
	root := repoRoot(t)
	// Build for this machine, as `docker build` does by default.
	d := parseDockerfile(t, filepath.Join(root, "Dockerfile"), map[string]string{"TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH})

	if d.user != "65532:65532" {
		t.Errorf("final stage USER = %q, want 65532:65532 (numeric, so runAsNonRoot can verify it)", d.user)
	}
	if d.env["CGO_ENABLED"] != "0" {
		t.Errorf("build stage ENV CGO_ENABLED = %q, want 0 (distroless/static has no libc)", d.env["CGO_ENABLED"])
	}
	wantCopies := []string{"/chatserver", "/operator"}
	var gotCopies []string
	for dst := range d.copies {
		gotCopies = append(gotCopies, dst)
	}
	slices.Sort(gotCopies)
	if diff := cmp.Diff(wantCopies, gotCopies); diff != "" {
		t.Fatalf("files the final stage copies (-want +got):\n%s", diff)
	}
	if _, ok := d.copies[d.entrypoint]; !ok {
		t.Errorf("ENTRYPOINT %q is not a file the final stage copies", d.entrypoint)
	}
	if len(d.buildCmds) != 1 {
		t.Fatalf("want exactly one RUN ... go build in the Dockerfile, found %d: %q", len(d.buildCmds), d.buildCmds)
	}

	// Run the build with the stage's output directory moved to a temp dir.
	outDir := path.Dir(d.copies["/operator"])
	if path.Dir(d.copies["/chatserver"]) != outDir || !strings.Contains(d.buildCmds[0], outDir+"/") {
		t.Fatalf("build command %q does not write both copied files under %s", d.buildCmds[0], outDir)
	}
	tmp := t.TempDir()
	script := strings.ReplaceAll(d.buildCmds[0], outDir+"/", tmp+"/")
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = root
	cmd.Env = os.Environ()
	for k, v := range d.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}

	// Each binary must be static and be the program its path says: its
	// --help names it.
	tests := []struct {
		image    string
		wantHelp string
	}{
		{"/operator", "chat-image"},
		{"/chatserver", "Usage: chatserver"},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.image, "/"), func(t *testing.T) {
			bin := filepath.Join(tmp, path.Base(d.copies[tc.image]))
			if err := checkStatic(bin); err != nil {
				t.Fatal(err)
			}
			out, _ := exec.Command(bin, "--help").CombinedOutput() // flag packages exit 0 or 2 on --help
			if !strings.Contains(string(out), tc.wantHelp) {
				t.Errorf("%s --help does not mention %q:\n%s", tc.image, tc.wantHelp, out)
			}
		})
	}
}

// checkStatic reports an error unless file is an ELF executable for this
// machine with no dynamic loader and no shared libraries.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (has an ELF interpreter)", file)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v", file, libs)
	}
	return nil
}

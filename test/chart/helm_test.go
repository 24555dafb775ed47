package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository's top directory, found from this file's path so
// the tests work from any working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func chartDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "charts", "hubbub")
}

// helmBinary is the helm that `make helm` built. A missing binary fails the
// test: a skipped chart test would pass CI without testing the chart.
func helmBinary(t testing.TB) string {
	t.Helper()
	return toolBinary(t, "HUBBUB_HELM", "helm", "make helm")
}

// toolBinary is the tool the Makefile built and exported as env (its path),
// failing the test, with how to build it, when it is missing.
func toolBinary(t testing.TB, env, name, build string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run the tests through `make test`, or `%s` and export %s=$PWD/bin/%s", env, build, env, name)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s binary %s: %v; run `%s`", name, p, err, build)
	}
	return p
}

// runHelm runs helm with args and returns its stdout. Helm's caches and
// config go to a temp dir so the tests neither read nor write the user's.
func runHelm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// monitoringAPIs tells helm template the Prometheus Operator's CRDs exist,
// as they would in a cluster running it: without them the chart refuses its
// monitoring objects (TestBadValuesFail).
const monitoringAPIs = "--api-versions=monitoring.coreos.com/v1/ServiceMonitor,monitoring.coreos.com/v1/PodMonitor,monitoring.coreos.com/v1/PrometheusRule"

// renderChart runs `helm template` for release hubbub in namespace
// hubbub-system with the given extra flags.
func renderChart(t testing.TB, flags ...string) string {
	t.Helper()
	args := append([]string{"template", "hubbub", chartDir(t), "--namespace", "hubbub-system", monitoringAPIs}, flags...)
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func decodeObjects(t testing.TB, manifest string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("reading YAML stream: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatalf("decoding YAML document: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// findObjects returns the objects of the given kind, in stream order.
func findObjects(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

package chart

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current `helm template` output")

// goldenCases are the value sets whose full rendering is pinned.
var goldenCases = []struct {
	name  string
	flags []string
}{
	{name: "default"},
	{name: "custom", flags: []string{"--values", "testdata/custom-values.yaml"}},
	{name: "minimal", flags: []string{"--values", "testdata/minimal-values.yaml"}},
}

// TestTemplateGolden pins the chart's whole rendered output, so every change
// to what users get shows up as a reviewed diff of testdata/*.golden.
func TestTemplateGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			got := renderChart(t, tc.flags...)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (create it with: go test ./test/chart -run TestTemplateGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("helm template output differs from %s (-want +got); if the change is intended, run\n"+
					"  go test ./test/chart -run TestTemplateGolden -update\n%s", path, diff)
			}
		})
	}
}

// TestLint runs `helm lint --strict` with each golden value set.
func TestLint(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir(t)}, tc.flags...)
			if _, err := runHelm(t, args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestBadValuesFail checks that values.schema.json and the templates refuse
// bad values with a message that names the culprit, instead of rendering
// something broken.
func TestBadValuesFail(t *testing.T) {
	tests := []struct {
		name    string
		flags   []string
		wantErr string
	}{
		{"unknown top-level field", []string{"--set", "replicas=2"}, "additional properties 'replicas' not allowed"},
		{"unknown nested field", []string{"--set", "image.name=x"}, "at '/image': additional properties 'name' not allowed"},
		{"pull policy", []string{"--set", "image.pullPolicy=Sometimes"}, "/image/pullPolicy"},
		{"digest", []string{"--set", "image.digest=sha256:abc"}, "/image/digest"},
		{"tag with a colon", []string{"--set", "image.tag=a:b"}, "/image/tag"},
		{"namespace not a DNS label", []string{"--set", "watchNamespaces[0]=Team_A"}, "/watchNamespaces/0"},
		{"port out of range", []string{"--set", "metrics.port=70000"}, "/metrics/port"},
		{"replica count type", []string{"--set-string", "replicaCount=two"}, "/replicaCount"},
		{"log level", []string{"--set", "logLevel=verbose"}, "/logLevel"},
		{"presence interval not a duration", []string{"--set", "presenceInterval=30"}, "/presenceInterval"},
		{"no concurrent reconciles", []string{"--set", "maxConcurrentReconciles=0"}, "/maxConcurrentReconciles"},
		{"sample room name", []string{"--set", "sampleChatRoom.name=Lobby"}, "/sampleChatRoom/name"},
		{"sample room named like the operator", []string{"--set", "sampleChatRoom.enabled=true", "--set", "sampleChatRoom.name=hubbub"}, "the room's ServiceAccount and the operator's would collide"},
		{"extra arg not a flag", []string{"--set", "extraArgs[0]=oops"}, "/extraArgs/0"},
		{"service monitor without service", []string{monitoringAPIs, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"}, "metrics.service.enabled"},
		{"service monitor without its CRD", []string{"--set", "metrics.serviceMonitor.enabled=true"}, "needs the Prometheus Operator's ServiceMonitor CRD"},
		{"pod monitor without its CRD", []string{"--set", "metrics.podMonitor.enabled=true"}, "needs the Prometheus Operator's PodMonitor CRD"},
		{"rules without their CRD", []string{"--set", "prometheusRule.enabled=true"}, "needs the Prometheus Operator's PrometheusRule CRD"},
		{"threshold not a number", []string{"--set-string", "prometheusRule.thresholds.ackErrorsPerSecond=lots"}, "/prometheusRule/thresholds/ackErrorsPerSecond"},
		{"threshold duration", []string{"--set", "prometheusRule.thresholds.degradedFor=10"}, "/prometheusRule/thresholds/degradedFor"},
		{"existing service account unnamed", []string{"--set", "serviceAccount.create=false"}, "serviceAccount.name is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", "hubbub", chartDir(t)}, tc.flags...)
			out, err := runHelm(t, args...)
			if err == nil {
				t.Fatalf("helm template accepted %v; rendered:\n%s", tc.flags, out)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error does not mention %q:\n%v", tc.wantErr, err)
			}
		})
	}
}

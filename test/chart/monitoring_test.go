package chart

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtoolBinary is the promtool `make tools` built from hack/promtool.
func promtoolBinary(t *testing.T) string {
	t.Helper()
	return toolBinary(t, "HUBBUB_PROMTOOL", "promtool", "make tools")
}

// ruleGroups is a PrometheusRule's spec, as promtool reads a rules file.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func renderedRules(t *testing.T, flags ...string) ruleGroups {
	t.Helper()
	args := append([]string{"--set", "prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"}, flags...)
	objs := decodeObjects(t, renderChart(t, args...))
	if len(objs) != 1 || objs[0].GetKind() != "PrometheusRule" {
		t.Fatalf("want one PrometheusRule, got %d objects", len(objs))
	}
	raw, err := json.Marshal(objs[0].Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	var g ruleGroups
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestAlertRules: the chart's alerts pass `promtool check rules`, and
// `promtool test rules` shows each firing on made-up series that should fire
// it and quiet on series that should not (testdata/rules/alerts_test.yaml).
// Every alert has both kinds of case, a severity, a summary and a runbook
// that docs/runbooks.md has a section for.
func TestAlertRules(t *testing.T) {
	promtool := promtoolBinary(t)
	groups := renderedRules(t)
	dir := t.TempDir()
	write := func(name string, v any) string {
		t.Helper()
		out, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("promtool %s: %v", args[0]+" "+args[1], err)
		}
	}
	run("check", "rules", write("checked.yaml", groups))

	// The unit tests compare labels only (see the test file's header).
	runbooks, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for gi := range groups.Groups {
		for ri := range groups.Groups[gi].Rules {
			r := &groups.Groups[gi].Rules[ri]
			alerts = append(alerts, r.Alert)
			checkAnnotations(t, r, runbooks)
			r.Annotations = nil
		}
	}
	write("rules.yaml", groups)
	tests, err := os.ReadFile("testdata/rules/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	testFile := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(testFile, tests, 0o644); err != nil {
		t.Fatal(err)
	}
	run("test", "rules", testFile)

	var cases struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(tests, &cases); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range cases.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a] || !quiet[a] {
			t.Errorf("alert %s: want promtool cases where it fires (%t) and where it does not (%t)", a, fires[a], quiet[a])
		}
	}
	t.Logf("%d alerts, each tested firing and quiet", len(alerts))
}

// checkAnnotations: a page an on-call engineer gets says what broke, how
// bad it is, and where the runbook is; runbooks (docs/runbooks.md) has that
// section.
func checkAnnotations(t *testing.T, r *rule, runbooks []byte) {
	t.Helper()
	if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" {
		t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, sev)
	}
	for _, k := range []string{"summary", "description", "runbook_url"} {
		if r.Annotations[k] == "" {
			t.Errorf("alert %s: no %s", r.Alert, k)
		}
	}
	anchor := strings.ToLower(r.Alert)
	if want := "https://github.com/hubbub-chat/hubbub/blob/main/docs/runbooks.md#" + anchor; r.Annotations["runbook_url"] != want {
		t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
	}
	if !regexp.MustCompile(`(?m)^## ` + r.Alert + `$`).Match(runbooks) {
		t.Errorf("docs/runbooks.md has no section \"## %s\" for the alert's runbook_url", r.Alert)
	}
}

// TestAlertThresholdsFromValues: the thresholds are the chart's values.
func TestAlertThresholdsFromValues(t *testing.T) {
	groups := renderedRules(t,
		"--set", "prometheusRule.thresholds.deliveryLatencyP99Seconds=0.25",
		"--set", "prometheusRule.thresholds.degradedFor=30m",
		"--set", "prometheusRule.runbookBaseURL=https://wiki.example.com/hubbub")
	found := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			switch r.Alert {
			case "HubbubDeliveryLatencyHigh":
				found++
				if !strings.Contains(r.Expr, "> 0.25") {
					t.Errorf("HubbubDeliveryLatencyHigh expr does not use the threshold 0.25:\n%s", r.Expr)
				}
			case "HubbubRoomDegraded":
				found++
				if r.For != "30m" {
					t.Errorf("HubbubRoomDegraded for = %q, want 30m", r.For)
				}
				if r.Annotations["runbook_url"] != "https://wiki.example.com/hubbub#hubbubroomdegraded" {
					t.Errorf("runbook_url = %q", r.Annotations["runbook_url"])
				}
			}
		}
	}
	if found != 2 {
		t.Fatalf("found %d of the 2 alerts looked for", found)
	}
}

// TestDashboardConfigMap: the dashboard ships as a ConfigMap Grafana's
// sidecar finds, holding exactly the file.
func TestDashboardConfigMap(t *testing.T) {
	objs := decodeObjects(t, renderChart(t, "--set", "grafanaDashboard.enabled=true", "--show-only", "templates/dashboard.yaml"))
	if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" {
		t.Fatalf("want one ConfigMap, got %d objects", len(objs))
	}
	cm := objs[0]
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("labels %v: want grafana_dashboard=1 for Grafana's sidecar", cm.GetLabels())
	}
	data, _ := cm.Object["data"].(map[string]any)
	want, err := os.ReadFile(filepath.Join(chartDir(t), "dashboards", "hubbub.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := data["hubbub.json"].(string); got != strings.TrimRight(string(want), "\n") {
		t.Errorf("the ConfigMap's hubbub.json differs from dashboards/hubbub.json")
	}
	names, err := DashboardMetrics(filepath.Join(chartDir(t), "dashboards", "hubbub.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 10 {
		t.Errorf("the dashboard reads %d metrics: %v", len(names), names)
	}
}

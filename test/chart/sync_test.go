package chart

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// The chart ships copies of two generated files; `make chart-sync` makes
// them. These tests fail when a copy is stale, so the chart can never install
// a CRD or grant rules other than what controller-gen produced.

// TestCRDsMatchConfig checks charts/hubbub/crds holds exactly the CRDs of
// config/crd/bases, byte for byte.
func TestCRDsMatchConfig(t *testing.T) {
	root := repoRoot(t)
	want := readDir(t, filepath.Join(root, "config", "crd", "bases"))
	if len(want) == 0 {
		t.Fatal("config/crd/bases holds no CRD: run `make manifests`")
	}
	got := readDir(t, filepath.Join(root, "charts", "hubbub", "crds"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("charts/hubbub/crds differs from config/crd/bases (-config +chart); run `make chart-sync`:\n%s", diff)
	}
}

// TestOperatorRulesMatchConfig checks the chart's copy of the operator's
// ClusterRole is controller-gen's config/rbac/role.yaml.
func TestOperatorRulesMatchConfig(t *testing.T) {
	root := repoRoot(t)
	want := readFile(t, filepath.Join(root, "config", "rbac", "role.yaml"))
	got := readFile(t, filepath.Join(root, "charts", "hubbub", "files", "operator-role.yaml"))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("charts/hubbub/files/operator-role.yaml differs from config/rbac/role.yaml (-config +chart); run `make chart-sync`:\n%s", diff)
	}
}

// TestRenderedRulesMatchConfig checks the rendered ClusterRole (cluster-wide
// install) and every per-namespace Role (watchNamespaces install) grant
// exactly config/rbac/role.yaml's rules: the chart's wiring of the copied
// file, not just the copy.
func TestRenderedRulesMatchConfig(t *testing.T) {
	var role rbacv1.ClusterRole
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(repoRoot(t), "config", "rbac", "role.yaml"))), &role); err != nil {
		t.Fatalf("config/rbac/role.yaml: %v", err)
	}
	if len(role.Rules) == 0 {
		t.Fatal("config/rbac/role.yaml has no rules")
	}
	tests := []struct {
		name           string
		flags          []string
		wantKind       string
		wantNamespaces []string // of the Roles; "" for the ClusterRole
	}{
		{"cluster-wide", nil, "ClusterRole", []string{""}},
		{"watched namespaces", []string{"--set", "watchNamespaces={team-a,team-b}"}, "Role", []string{"team-a", "team-b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeObjects(t, renderChart(t, tc.flags...))
			var namespaces []string
			for _, o := range findObjects(objs, tc.wantKind) {
				if o.GetName() != "hubbub-operator" {
					continue // the leader-election Role has rules of its own
				}
				namespaces = append(namespaces, o.GetNamespace())
				if diff := cmp.Diff(role.Rules, policyRules(t, o)); diff != "" {
					t.Errorf("%s %s/%s rules differ from config/rbac/role.yaml (-want +got):\n%s", tc.wantKind, o.GetNamespace(), o.GetName(), diff)
				}
			}
			if diff := cmp.Diff(tc.wantNamespaces, namespaces); diff != "" {
				t.Errorf("%s objects named hubbub-operator, by namespace (-want +got):\n%s", tc.wantKind, diff)
			}
			if other := map[string]string{"ClusterRole": "Role", "Role": "ClusterRole"}[tc.wantKind]; len(findNamed(objs, other, "hubbub-operator")) > 0 {
				t.Errorf("a %s hubbub-operator was rendered too: the operator would get more than it needs", other)
			}
		})
	}
}

func policyRules(t *testing.T, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole // a Role's rules have the same shape
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return role.Rules
}

func findNamed(objs []*unstructured.Unstructured, kind, name string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range findObjects(objs, kind) {
		if o.GetName() == name {
			out = append(out, o)
		}
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readDir maps each *.yaml file name in dir to its content.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, p := range paths {
		files[filepath.Base(p)] = readFile(t, p)
	}
	return files
}

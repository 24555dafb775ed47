package chart

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestRenderedRBACReadsNoSecrets: whatever the install (cluster-wide or
// per watched namespace), no Role or ClusterRole the chart renders lets
// anyone get, list or watch Secrets; the operator's may only create them
// (the managed Redis password). Wildcards count.
func TestRenderedRBACReadsNoSecrets(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"cluster-wide", nil},
		{"watched namespaces", []string{"--set", "watchNamespaces={team-a,team-b}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeObjects(t, renderChart(t, tc.flags...))
			roles := append(findObjects(objs, "ClusterRole"), findObjects(objs, "Role")...)
			operator := 0
			for _, o := range roles {
				var verbs []string
				for _, r := range policyRules(t, o) {
					group := slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, rbacv1.APIGroupAll)
					resource := slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, rbacv1.ResourceAll)
					if group && resource {
						verbs = append(verbs, r.Verbs...)
					}
				}
				for _, v := range verbs {
					if v == "get" || v == "list" || v == "watch" || v == rbacv1.VerbAll {
						t.Errorf("%s %s/%s grants %q on secrets", o.GetKind(), o.GetNamespace(), o.GetName(), v)
					}
				}
				if o.GetName() == "hubbub-operator" {
					operator++
					if !slices.Equal(verbs, []string{"create"}) {
						t.Errorf("%s %s/%s: verbs on secrets %v, want only create", o.GetKind(), o.GetNamespace(), o.GetName(), verbs)
					}
				}
			}
			if operator == 0 {
				t.Fatal("no operator Role or ClusterRole rendered")
			}
		})
	}
}

package controllers

import (
	"path/filepath"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

// secretVerbs are the verbs rules grant on core Secrets, wildcards
// included, so that a "*" cannot slip a read past the check.
func secretVerbs(rules []rbacv1.PolicyRule) []string {
	var verbs []string
	for _, r := range rules {
		group := slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, rbacv1.APIGroupAll)
		resource := slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, rbacv1.ResourceAll)
		if group && resource && len(r.ResourceNames) == 0 {
			verbs = append(verbs, r.Verbs...)
		}
	}
	slices.Sort(verbs)
	return slices.Compact(verbs)
}

// TestOperatorRoleReadsNoSecrets: the generated ClusterRole (the one the
// envtest operator runs with, and the chart's copy) lets the operator create
// the managed Redis password and nothing more: no get, list or watch of
// anyone's Secrets, no patch or delete of them.
func TestOperatorRoleReadsNoSecrets(t *testing.T) {
	objs, err := decodeFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role, ok := objs[0].(*rbacv1.ClusterRole)
	if !ok {
		t.Fatalf("role.yaml holds a %T", objs[0])
	}
	if got := secretVerbs(role.Rules); !slices.Equal(got, []string{"create"}) {
		t.Errorf("verbs on secrets: %v, want only create", got)
	}
}

func TestSecretVerbsSeesWildcards(t *testing.T) {
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"secrets", "pods"}, Verbs: []string{"watch", "create"}},
		{APIGroups: []string{"apps"}, Resources: []string{"secrets"}, Verbs: []string{"list"}},
	}
	if got := secretVerbs(rules); !slices.Equal(got, []string{"create", "get", "watch"}) {
		t.Errorf("secretVerbs = %v", got)
	}
}

package controllers

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestKustomizations checks that every resource a config/ kustomization
// lists exists (no kustomize binary is needed to catch a broken layout).
func TestKustomizations(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "config", "*", "kustomization.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("kustomizations %v, %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			Resources []string `json:"resources"`
		}
		// Other kustomize fields are fine; only resources matter here.
		if err := yaml.Unmarshal(data, &k); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(k.Resources) == 0 {
			t.Errorf("%s lists no resources", f)
		}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), r)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}

// TestManagerManifests has the API server validate the operator's own
// manifests (config/manager, config/rbac) and judge its pod against the
// restricted Pod Security profile.
func TestManagerManifests(t *testing.T) {
	tc := cluster(t)
	ctx := context.Background()
	var objs []client.Object
	for _, f := range []string{"manager/manager.yaml", "rbac/service_account.yaml", "rbac/role_binding.yaml", "rbac/leader_election_role.yaml", "rbac/leader_election_role_binding.yaml"} {
		o, err := decodeFile(filepath.Join("..", "config", f))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	for _, o := range objs {
		if ns, ok := o.(*corev1.Namespace); ok {
			// Created for real: the rest are namespaced in it.
			if err := tc.c.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := tc.c.Create(ctx, o, client.DryRunAll); err != nil {
			t.Errorf("%T %s: %v", o, o.GetName(), err)
		}
		if d, ok := o.(*appsv1.Deployment); ok {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: "operator"}, Spec: d.Spec.Template.Spec}
			if err := tc.c.Create(ctx, pod, client.DryRunAll); err != nil {
				t.Errorf("operator pod refused (restricted Pod Security): %v", err)
			}
		}
	}
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// otherWriter is the field manager of the tests' competing writer: a person
// with `kubectl edit`, or another controller, changing what the operator owns.
const otherWriter = "other-writer"

// TestConflictingWritersConverge: while another writer keeps changing the
// chat Deployment's replicas and the ConfigMap's data with plain updates
// (read, modify, write with the read resourceVersion, so it races the
// operator and sometimes loses), the room's spec changes several times. Once
// the other writer stops, the owned objects match the room's last spec and
// status.observedGeneration has caught up. The operator's forced server-side
// apply must win each field back instead of giving up on a conflict.
func TestConflictingWritersConverge(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns, _ := tc.minimalRoom(t)
	d, cm := &appsv1.Deployment{}, &corev1.ConfigMap{}
	eventually(t, waitFor, func() error { return firstErr(tc.get(ns, "lobby", d), tc.get(ns, "lobby-config", cm)) })

	// The resourceVersion is what makes these writes conflict: an update
	// sent with one that is no longer current is refused, not merged.
	stale := d.DeepCopy()
	d.Spec.Replicas = ptr.To[int32](7)
	if err := tc.c.Update(ctx, d, client.FieldOwner(otherWriter)); err != nil {
		t.Fatal(err)
	}
	stale.Spec.Replicas = ptr.To[int32](8)
	if err := tc.c.Update(ctx, stale, client.FieldOwner(otherWriter)); !apierrors.IsConflict(err) {
		t.Fatalf("update with a stale resourceVersion: got %v, want a conflict", err)
	}

	// The other writer runs until the spec changes are done. It counts its
	// writes that landed: without any, nothing raced.
	var landed, conflicts atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			var err error
			if i%2 == 0 {
				err = tc.updateDeployment(ctx, ns, "lobby", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](9) })
			} else {
				err = tc.updateConfigMap(ctx, ns, "lobby-config", func(cm *corev1.ConfigMap) { cm.Data["HUBBUB_ROOM"] = "other/room" })
			}
			switch {
			case err == nil:
				landed.Add(1)
			case apierrors.IsConflict(err):
				conflicts.Add(1)
			default:
				t.Errorf("other writer: %v", err)
				return
			}
		}
	})
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriter) // also when a check below fails

	// Each spec change is written with retry on conflict (the operator's
	// status writes move the room's resourceVersion too), and is reconciled
	// under fire before the next: the room's observedGeneration says so.
	for replicas := int32(3); replicas <= 6; replicas++ {
		if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			room := tc.room(t, ns, "lobby")
			room.Spec.Replicas = ptr.To(replicas)
			return tc.c.Update(ctx, room)
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitFor, func() error {
			room := tc.room(t, ns, "lobby")
			return eq("status.observedGeneration", room.Status.ObservedGeneration, room.Generation)
		})
	}
	stopWriter()
	t.Logf("other writer: %d writes landed, %d lost to a conflict", landed.Load(), conflicts.Load())
	if landed.Load() == 0 {
		t.Fatal("the other writer never changed anything: the test raced nothing")
	}

	eventually(t, waitFor, func() error {
		room := tc.room(t, ns, "lobby")
		want := room.DeepCopy()
		chatv1alpha1.SetDefaults(want)
		if err := firstErr(tc.get(ns, "lobby", d), tc.get(ns, "lobby-config", cm)); err != nil {
			return err
		}
		if diff := cmp.Diff(configEnv(chatConfig(want)), cm.Data); diff != "" {
			return fmt.Errorf("ConfigMap data (-want +got):\n%s", diff)
		}
		return firstErr(
			eq("deployment replicas", ptr.Deref(d.Spec.Replicas, 0), 6),
			eq("status.observedGeneration", room.Status.ObservedGeneration, room.Generation),
		)
	})
}

// updateDeployment reads the Deployment, changes it with mutate and writes
// it back as otherWriter, with the resourceVersion it read.
func (tc *testCluster) updateDeployment(ctx context.Context, ns, name string, mutate func(*appsv1.Deployment)) error {
	d := &appsv1.Deployment{}
	if err := tc.get(ns, name, d); err != nil {
		return err
	}
	mutate(d)
	return tc.c.Update(ctx, d, client.FieldOwner(otherWriter))
}

// updateConfigMap is updateDeployment for a ConfigMap.
func (tc *testCluster) updateConfigMap(ctx context.Context, ns, name string, mutate func(*corev1.ConfigMap)) error {
	cm := &corev1.ConfigMap{}
	if err := tc.get(ns, name, cm); err != nil {
		return err
	}
	if cm.Data == nil {
		return errors.New("ConfigMap has no data")
	}
	mutate(cm)
	return tc.c.Update(ctx, cm, client.FieldOwner(otherWriter))
}

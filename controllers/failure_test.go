package controllers

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// TestUnsatisfiableRoomSettles: a room the operator cannot satisfy is
// Degraded with the reason, and then costs a bounded number of reconciles
// and no writes while nothing changes. A reconciler that requeued at once
// on the problem (or rewrote its status or objects each pass, which its own
// watches would answer) would reconcile the room hundreds of times in the
// window. The room runs on an operator of the test's own, so its reconciles
// can be counted.
func TestUnsatisfiableRoomSettles(t *testing.T) {
	t.Parallel()
	tc := isolatedCluster(t)
	var counter *reconcileCounter
	op := startOperator(t, tc.cfg, ctrl.Options{}, func(c client.Client) client.Client {
		counter = newReconcileCounter(c)
		return counter
	})

	const (
		// window is how long the settled room is watched; maxReconciles is
		// what it may cost meanwhile. A problem the pods report is seen
		// every PresenceInterval (2s here: three reconciles). A failing
		// reconcile is retried with controller-runtime's exponential backoff,
		// 5ms doubling: at most log2(6s/5ms)+1, about 11, retries fall in
		// any 6s window. A hot loop (a short RequeueAfter, or a write each
		// pass that the operator's own watches answer) costs hundreds.
		window        = 6 * time.Second
		maxReconciles = 15
	)
	for _, tt := range []struct {
		name string
		// before runs before the room is created; after, once its
		// Deployment exists (if it can).
		before, after func(t *testing.T, ns string)
		reason        string
	}{{
		// The room's ConfigMap name is taken by an object the operator will
		// not take over: the reconcile fails, every time.
		name: "name taken",
		before: func(t *testing.T, ns string) {
			tc.createAll(t, ns, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "lobby-config"}, Data: map[string]string{"owner": "someone else"}})
		},
		reason: chatv1alpha1.ReasonApplyFailed,
	}, {
		// The image cannot be pulled: the reconcile succeeds, and the pods
		// say what is wrong.
		name: "image pull back-off",
		after: func(t *testing.T, ns string) {
			d := &appsv1.Deployment{}
			eventually(t, waitFor, func() error { return tc.get(ns, "lobby", d) })
			pod := tc.podFromTemplate(t, ns, "lobby-7d4b9-x2x", d.Spec.Template)
			tc.setPodWaiting(t, pod, "ImagePullBackOff", "Back-off pulling image")
		},
		reason: chatv1alpha1.ReasonImagePullBackOff,
	}} {
		// Not parallel: the windows must not overlap, or one room's writes
		// would count against the other's.
		t.Run(tt.name, func(t *testing.T) {
			ns := tc.newNamespace(t)
			if tt.before != nil {
				tt.before(t, ns)
			}
			room := roomOf(t, loadSample(t, "chat_v1alpha1_chatroom_minimal.yaml"))
			tc.createAll(t, ns, room)
			if tt.after != nil {
				tt.after(t, ns)
			}
			eventually(t, waitFor, func() error {
				return wantCondition(tc.room(t, ns, "lobby"), chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, tt.reason)
			})

			// The window starts once the operator has settled: its cache
			// holds the condition it wrote, and a reconcile has started since
			// (reconciles of one room never overlap, so the one that wrote is
			// done). Before that, a reconcile reading the room from a cache
			// that lags its own status write rightly writes it again.
			key := client.ObjectKeyFromObject(room)
			eventually(t, waitFor, func() error {
				cached := &chatv1alpha1.ChatRoom{}
				if err := op.mgr.GetCache().Get(context.Background(), key, cached); err != nil {
					return err
				}
				return wantCondition(cached, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, tt.reason)
			})
			seen := counter.reconciles(key)
			eventually(t, waitFor, func() error {
				return eq("a reconcile after the cache caught up", counter.reconciles(key) > seen, true)
			})
			before := counter.reconciles(key)
			counter.take()
			// Not synchronisation: the test watches what happens while
			// nothing changes, which takes the time it takes.
			time.Sleep(window)
			n := counter.reconciles(key) - before
			t.Logf("%d reconciles in %s", n, window)
			if n < 1 || n > maxReconciles {
				t.Errorf("%d reconciles in %s with nothing changing, want 1 to %d (none: the counter is broken; more: a hot loop)", n, window, maxReconciles)
			}
			if w := counter.take(); len(w) > 0 {
				t.Errorf("writes while nothing changed: %v", w)
			}
			// Still degraded, for the same reason: the window did not end
			// the problem.
			if err := wantCondition(tc.room(t, ns, "lobby"), chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, tt.reason); err != nil {
				t.Error(err)
			}
		})
	}
}

// leaderElectionID is the Lease cmd/operator elects its leader with.
const leaderElectionID = "hubbub-operator.chat.hubbub.dev"

// TestLeaderFailover runs two operators with leader election as
// cmd/operator configures it (short timings, to keep the test fast). Only
// the leader reconciles; once it stops, the other takes the Lease and
// applies a change to the room within 30s.
//
// The operators run on an API server of the test's own (isolatedCluster):
// on the shared one the suite's operator, which runs without leader
// election and watches every namespace, would apply the change itself and
// prove nothing about the failover.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	tc := isolatedCluster(t)
	ctx := context.Background()
	leaseNS := tc.newNamespace(t)
	opts := ctrl.Options{
		LeaderElection:                true,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       leaseNS,
		LeaderElectionReleaseOnCancel: true, // as cmd/operator
		LeaseDuration:                 ptr.To(4 * time.Second),
		RenewDeadline:                 ptr.To(3 * time.Second),
		RetryPeriod:                   ptr.To(500 * time.Millisecond),
	}
	ops := [2]*operatorProcess{startOperator(t, tc.cfg, opts, nil), startOperator(t, tc.cfg, opts, nil)}

	var leader, follower *operatorProcess
	eventually(t, waitFor, func() error {
		switch a, b := ops[0].elected(), ops[1].elected(); {
		case a && b:
			return errors.New("both operators are leaders")
		case a:
			leader, follower = ops[0], ops[1]
		case b:
			leader, follower = ops[1], ops[0]
		default:
			return errors.New("no leader elected")
		}
		return nil
	})
	firstHolder := tc.leaseHolder(t, leaseNS)
	if firstHolder == "" {
		t.Fatal("a leader is elected but the Lease names no holder")
	}

	ns, _ := tc.minimalRoom(t)
	replicas := func(want int32) func() error {
		return func() error {
			d := &appsv1.Deployment{}
			if err := tc.get(ns, "lobby", d); err != nil {
				return err
			}
			room := tc.room(t, ns, "lobby")
			return firstErr(
				eq("deployment replicas", ptr.Deref(d.Spec.Replicas, 0), want),
				eq("status.observedGeneration", room.Status.ObservedGeneration, room.Generation),
			)
		}
	}
	eventually(t, waitFor, replicas(2))
	if follower.elected() {
		t.Fatal("the follower was elected while the leader runs")
	}

	leader.stop(t)
	stopped := time.Now()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		room := tc.room(t, ns, "lobby")
		room.Spec.Replicas = ptr.To[int32](5)
		return tc.c.Update(ctx, room)
	}); err != nil {
		t.Fatal(err)
	}
	// Only the follower runs now: the change is its reconcile.
	eventually(t, 30*time.Second, replicas(5))
	t.Logf("the follower applied the change %s after the leader stopped", time.Since(stopped).Round(100*time.Millisecond))
	if !follower.elected() {
		t.Error("the change was applied but the follower is not the leader")
	}
	if h := tc.leaseHolder(t, leaseNS); h == "" || h == firstHolder {
		t.Errorf("Lease holder is %q after the failover, want a new one (was %q)", h, firstHolder)
	}
}

// leaseHolder is the holder of the operator's leader election Lease.
func (tc *testCluster) leaseHolder(t *testing.T, ns string) string {
	t.Helper()
	lease := &coordinationv1.Lease{}
	if err := tc.get(ns, leaderElectionID, lease); err != nil {
		t.Fatal(fmt.Errorf("leader election Lease: %w", err))
	}
	return ptr.Deref(lease.Spec.HolderIdentity, "")
}

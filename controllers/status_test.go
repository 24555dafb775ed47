package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// deployment is a chat Deployment wanting n pods with ready of them ready.
func deployment(n, ready int32, conds ...appsv1.DeploymentCondition) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Generation: 3},
		Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(n)},
		Status: appsv1.DeploymentStatus{
			ObservedGeneration: 3, Replicas: n, UpdatedReplicas: n, ReadyReplicas: ready, AvailableReplicas: ready,
			Conditions: conds,
		},
	}
	return d
}

var (
	depAvailable = appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}
	depStuck     = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet lobby-1 has timed out progressing."}
)

func TestComputeStatusConditions(t *testing.T) {
	read := presenceResult{state: presenceRead, count: 7}
	tests := []struct {
		name string
		in   statusInputs
		// want maps condition type to "Status/Reason".
		want map[string]string
	}{{
		name: "healthy",
		in:   statusInputs{deployment: deployment(2, 2, depAvailable), presence: read},
		want: map[string]string{"Available": "True/DeploymentAvailable", "Progressing": "False/RolloutComplete", "RedisReady": "True/RedisReachable", "Degraded": "False/AsExpected"},
	}, {
		name: "just created",
		in:   statusInputs{presence: presenceResult{state: presenceRedisStarting}},
		want: map[string]string{"Available": "False/DeploymentUnavailable", "Progressing": "True/RollingOut", "RedisReady": "False/RedisStarting", "Degraded": "False/AsExpected"},
	}, {
		name: "rolling out",
		in: statusInputs{deployment: func() *appsv1.Deployment {
			d := deployment(3, 2, depAvailable)
			d.Status.UpdatedReplicas = 1
			return d
		}(), presence: read},
		want: map[string]string{"Available": "True/DeploymentAvailable", "Progressing": "True/RollingOut", "Degraded": "False/AsExpected"},
	}, {
		name: "deployment controller behind",
		in: statusInputs{deployment: func() *appsv1.Deployment {
			d := deployment(2, 2, depAvailable)
			d.Generation = 4
			return d
		}(), presence: read},
		want: map[string]string{"Progressing": "True/RollingOut"},
	}, {
		name: "rollout stuck",
		in:   statusInputs{deployment: deployment(2, 1, depAvailable, depStuck), presence: read},
		want: map[string]string{"Progressing": "False/RolloutStuck", "Degraded": "True/RolloutStuck"},
	}, {
		name: "scaled to zero",
		in:   statusInputs{deployment: deployment(0, 0), scaledToZero: true, presence: read},
		want: map[string]string{"Available": "False/ScaledToZero", "Progressing": "False/RolloutComplete", "Degraded": "False/AsExpected"},
	}, {
		name: "secret missing outranks everything",
		in: statusInputs{
			deployment: deployment(2, 0, depStuck), presence: presenceResult{state: presenceSecretMissing},
			secretProblems: []string{"Secret pw not found"}, podProblem: "pod x cannot pull",
		},
		want: map[string]string{"RedisReady": "False/SecretNotFound", "Degraded": "True/SecretNotFound", "Available": "False/DeploymentUnavailable"},
	}, {
		name: "image pull",
		in:   statusInputs{deployment: deployment(2, 0), podProblem: "pod x cannot pull", presence: read},
		want: map[string]string{"Degraded": "True/ImagePullBackOff"},
	}, {
		name: "redis unreachable",
		in:   statusInputs{deployment: deployment(2, 2, depAvailable), presence: presenceResult{state: presenceFailed, err: errors.New("dial tcp: refused")}},
		want: map[string]string{"RedisReady": "False/RedisUnreachable", "Degraded": "True/RedisUnreachable", "Available": "True/DeploymentAvailable"},
	}, {
		// The operator could not ask: that says nothing about Redis, and
		// the room may serve everyone well.
		name: "chat pod unreachable",
		in:   statusInputs{deployment: deployment(2, 2, depAvailable), presence: presenceResult{state: presenceUnasked, err: errors.New("dial tcp: i/o timeout")}},
		want: map[string]string{"RedisReady": "Unknown/ChatUnreachable", "Degraded": "False/AsExpected", "Available": "True/DeploymentAvailable"},
	}, {
		name: "no chat pod to ask",
		in:   statusInputs{deployment: deployment(2, 0), presence: presenceResult{state: presenceNoChatPods}},
		want: map[string]string{"RedisReady": "Unknown/NoChatPods", "Degraded": "False/AsExpected"},
	}, {
		name: "bootstrap users missing: not the Redis password",
		in:   statusInputs{deployment: deployment(2, 0), presence: presenceResult{state: presenceNoChatPods}, secretProblems: []string{"Secret users not found"}},
		want: map[string]string{"RedisReady": "Unknown/NoChatPods", "Degraded": "True/SecretNotFound"},
	}}
	now := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.generation = 5
			st := computeStatus(tt.in, chatv1alpha1.ChatRoomStatus{}, now)
			got := map[string]string{}
			for _, c := range st.Conditions {
				if _, ok := tt.want[c.Type]; ok {
					got[c.Type] = string(c.Status) + "/" + c.Reason
				}
				if c.ObservedGeneration != 5 || !c.LastTransitionTime.Equal(&now) || c.Message == "" {
					t.Errorf("condition %+v: want generation 5, transition now and a message", c)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Error(diff)
			}
			if st.ObservedGeneration != 5 {
				t.Errorf("observedGeneration %d", st.ObservedGeneration)
			}
		})
	}
}

func TestComputeStatusFields(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	prev := chatv1alpha1.ChatRoomStatus{OnlineUsers: 4}
	in := statusInputs{generation: 2, deployment: deployment(3, 1, depAvailable), selector: "a=b", url: "http://x/", presence: presenceResult{state: presenceRead, count: 9}}
	st := computeStatus(in, prev, now)
	if err := firstErr(eq("replicas", st.Replicas, 3), eq("ready", st.ReadyReplicas, 1), eq("selector", st.Selector, "a=b"), eq("url", st.URL, "http://x/"), eq("online", st.OnlineUsers, 9)); err != nil {
		t.Error(err)
	}
	// Unreadable Redis keeps the last count (RedisReady says it is stale).
	in.presence = presenceResult{state: presenceFailed, err: errors.New("timeout")}
	if got := computeStatus(in, prev, now).OnlineUsers; got != 4 {
		t.Errorf("onlineUsers after a failed read: %d, want the previous 4", got)
	}
	in.presence = presenceResult{state: presenceUnasked, err: errors.New("refused")}
	if got := computeStatus(in, prev, now).OnlineUsers; got != 4 {
		t.Errorf("onlineUsers when the chat pod could not be asked: %d, want the previous 4", got)
	}
	// With no chat pod running, no one can be connected.
	in.presence = presenceResult{state: presenceNoChatPods}
	if got := computeStatus(in, prev, now).OnlineUsers; got != 0 {
		t.Errorf("onlineUsers with no chat pod: %d, want 0", got)
	}
}

func TestComputeStatusAfterReconcileError(t *testing.T) {
	then := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(then.Add(time.Hour))
	prev := computeStatus(statusInputs{generation: 1, deployment: deployment(2, 2, depAvailable), presence: presenceResult{state: presenceRead, count: 2}}, chatv1alpha1.ChatRoomStatus{}, then)
	st := computeStatus(statusInputs{generation: 2, reconcileErr: errors.New("apply Deployment lobby: forbidden")}, prev, now)
	if err := firstErr(
		eq("observedGeneration not advanced", st.ObservedGeneration, int64(1)),
		eq("replicas kept", st.Replicas, int32(2)),
		eq("online kept", st.OnlineUsers, int32(2)),
	); err != nil {
		t.Error(err)
	}
	d := findCondition(st.Conditions, chatv1alpha1.ConditionDegraded)
	if d.Status != metav1.ConditionTrue || d.Reason != chatv1alpha1.ReasonApplyFailed || d.Message != "apply Deployment lobby: forbidden" || !d.LastTransitionTime.Equal(&now) {
		t.Errorf("Degraded %+v", d)
	}
	if a := findCondition(st.Conditions, chatv1alpha1.ConditionAvailable); a.Status != metav1.ConditionTrue || !a.LastTransitionTime.Equal(&then) {
		t.Errorf("Available changed by an error: %+v", a)
	}
}

func TestSetConditionTransitionTime(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	t2 := metav1.NewTime(t0.Add(2 * time.Minute))
	var conds []metav1.Condition
	setCondition(&conds, metav1.Condition{Type: "A", Status: metav1.ConditionFalse, Reason: "R1", Message: "m1"}, t0)
	setCondition(&conds, metav1.Condition{Type: "A", Status: metav1.ConditionFalse, Reason: "R2", Message: "m2"}, t1)
	if c := conds[0]; !c.LastTransitionTime.Equal(&t0) || c.Reason != "R2" || c.Message != "m2" {
		t.Errorf("same status: %+v, want transition time kept and reason updated", c)
	}
	setCondition(&conds, metav1.Condition{Type: "A", Status: metav1.ConditionTrue, Reason: "R3"}, t2)
	setCondition(&conds, metav1.Condition{Type: "B", Status: metav1.ConditionTrue, Reason: "R"}, t2)
	if len(conds) != 2 || !conds[0].LastTransitionTime.Equal(&t2) || conds[0].Status != metav1.ConditionTrue {
		t.Errorf("flip: %+v", conds)
	}
}

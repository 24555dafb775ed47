package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// TestFindSecretProblem matches the kubelet's own messages (v1.37 wording)
// to the Secrets a room names, and only to those.
func TestFindSecretProblem(t *testing.T) {
	external := defaulted(&chatv1alpha1.ChatRoom{
		ObjectMeta: metaNS("team-a", "team"),
		Spec: chatv1alpha1.ChatRoomSpec{
			Redis:                   &chatv1alpha1.RedisSpec{URL: "redis://r:6379", PasswordSecretRef: &chatv1alpha1.SecretKeySelector{Name: "team"}},
			BootstrapUsersSecretRef: &chatv1alpha1.SecretKeySelector{Name: "team-users", Key: "list"},
		},
	})
	managed := defaulted(&chatv1alpha1.ChatRoom{ObjectMeta: metaNS("team-a", "lobby")})
	tests := []struct {
		name string
		room *chatv1alpha1.ChatRoom
		msg  string
		want string // secretFinding.String(), or "" for no match
		// wantManaged: the finding is the operator's own Secret to create.
		wantManaged bool
	}{
		{"env: secret missing (kubelet cache)", external, `secret "team" not found`, "Secret team not found", false},
		{"env: secret missing (API)", external, `secrets "team" not found`, "Secret team not found", false},
		{"env: key missing", external, "couldn't find key password in Secret team-a/team", `Secret team has no key "password"`, false},
		{"env: key missing in another namespace's Secret", external, "couldn't find key password in Secret team-b/team", "", false},
		// "team" is a prefix of "team-users": names must match whole.
		{"volume: secret missing", external, `MountVolume.SetUp failed for volume "bootstrap-users" : secret "team-users" not found`, "Secret team-users not found", false},
		{"volume: key missing", external, `MountVolume.SetUp failed for volume "bootstrap-users" : references non-existent secret key: list`, `Secret team-users has no key "list"`, false},
		{"volume: another volume's key", external, `MountVolume.SetUp failed for volume "tls" : references non-existent secret key: list`, "", false},
		{"a Secret the room does not name", external, `secret "team-old" not found`, "", false},
		{"a ConfigMap", external, `configmap "team" not found`, "", false},
		{"not about Secrets", external, "container has runAsNonRoot and image will run as root", "", false},
		{"managed password missing", managed, `secret "lobby-redis" not found`, "Secret lobby-redis not found", true},
		{"managed password lacks its key", managed, "couldn't find key password in Secret team-a/lobby-redis", `Secret lobby-redis has no key "password"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := findSecretProblem(tt.msg, "team-a", podSecretRefs(tt.room))
			got := ""
			if ok {
				got = f.String()
			}
			if err := firstErr(eq("finding", got, tt.want), eq("managed", ok && f.ref.managed, tt.wantManaged)); err != nil {
				t.Error(err)
			}
		})
	}
}

func metaNS(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

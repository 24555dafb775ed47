package controllers

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

func room(spec chatv1alpha1.ChatRoomSpec) *chatv1alpha1.ChatRoom {
	return defaulted(&chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lobby", UID: "uid-1"}, Spec: spec})
}

func TestDesiredDeploymentReplicas(t *testing.T) {
	tests := []struct {
		name string
		spec chatv1alpha1.ChatRoomSpec
		want *int32 // nil: left to the HorizontalPodAutoscaler
	}{
		{"default", chatv1alpha1.ChatRoomSpec{}, ptr.To[int32](2)},
		{"scaled to zero", chatv1alpha1.ChatRoomSpec{Replicas: ptr.To[int32](0)}, ptr.To[int32](0)},
		{"autoscaling", chatv1alpha1.ChatRoomSpec{Replicas: ptr.To[int32](5), Autoscaling: &chatv1alpha1.AutoscalingSpec{MaxReplicas: 9}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := room(tt.spec)
			d, err := desiredDeployment(r, "img", "hash", chatConfig(r))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, d.Spec.Replicas); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestDesiredPodDisruptionBudget(t *testing.T) {
	tests := []struct {
		name string
		spec chatv1alpha1.ChatRoomSpec
		want bool
	}{
		{"two replicas", chatv1alpha1.ChatRoomSpec{}, true},
		{"one replica", chatv1alpha1.ChatRoomSpec{Replicas: ptr.To[int32](1)}, false},
		{"zero replicas", chatv1alpha1.ChatRoomSpec{Replicas: ptr.To[int32](0)}, false},
		{"autoscaling from one", chatv1alpha1.ChatRoomSpec{Autoscaling: &chatv1alpha1.AutoscalingSpec{MinReplicas: 1, MaxReplicas: 5}}, false},
		{"autoscaling from three", chatv1alpha1.ChatRoomSpec{Replicas: ptr.To[int32](1), Autoscaling: &chatv1alpha1.AutoscalingSpec{MinReplicas: 3, MaxReplicas: 5}}, true},
	}
	for _, tt := range tests {
		if got := desiredPodDisruptionBudget(room(tt.spec)) != nil; got != tt.want {
			t.Errorf("%s: budget=%v, want %v", tt.name, got, tt.want)
		}
	}
}

// restrictedProblems lists what keeps a pod spec from the restricted Pod
// Security profile (the envtest suite also has the API server judge it).
func restrictedProblems(p *corev1ac.PodSpecApplyConfiguration) []string {
	var out []string
	bad := func(ok bool, what string) {
		if !ok {
			out = append(out, what)
		}
	}
	bad(p.SecurityContext != nil && ptr.Deref(p.SecurityContext.RunAsNonRoot, false), "pod runAsNonRoot")
	bad(p.SecurityContext != nil && ptr.Deref(p.SecurityContext.RunAsUser, 0) > 0, "pod runAsUser non-zero")
	bad(p.SecurityContext != nil && p.SecurityContext.SeccompProfile != nil && ptr.Deref(p.SecurityContext.SeccompProfile.Type, "") == corev1.SeccompProfileTypeRuntimeDefault, "seccomp RuntimeDefault")
	bad(ptr.Deref(p.AutomountServiceAccountToken, true) == false, "no service account token")
	for _, c := range slices.Concat(p.InitContainers, p.Containers) {
		sc := c.SecurityContext
		bad(sc != nil && ptr.Deref(sc.AllowPrivilegeEscalation, true) == false, *c.Name+" allowPrivilegeEscalation=false")
		bad(sc != nil && ptr.Deref(sc.ReadOnlyRootFilesystem, false), *c.Name+" readOnlyRootFilesystem")
		bad(sc != nil && ptr.Deref(sc.Privileged, false) == false, *c.Name+" not privileged")
		bad(sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Drop) == 1 && sc.Capabilities.Drop[0] == "ALL" && len(sc.Capabilities.Add) == 0, *c.Name+" drops ALL capabilities")
		bad(c.Resources != nil && c.Resources.Requests != nil && c.Resources.Limits != nil, *c.Name+" resources")
	}
	for _, c := range p.Containers {
		bad(c.ReadinessProbe != nil && c.LivenessProbe != nil, *c.Name+" probes")
	}
	return out
}

func TestPodsAreRestricted(t *testing.T) {
	for name, r := range testRooms() {
		r := defaulted(r)
		d, err := desiredDeployment(r, "img", "h", chatConfig(r))
		if err != nil {
			t.Fatal(err)
		}
		if p := restrictedProblems(d.Spec.Template.Spec); len(p) > 0 {
			t.Errorf("%s: chat pod: %v", name, p)
		}
		if !r.Spec.Redis.ManagedRedis() {
			continue
		}
		s, err := desiredRedisStatefulSet(r, DefaultRedisImage, "h")
		if err != nil {
			t.Fatal(err)
		}
		if p := restrictedProblems(s.Spec.Template.Spec); len(p) > 0 {
			t.Errorf("%s: redis pod: %v", name, p)
		}
	}
}

func TestChatProbesAndResources(t *testing.T) {
	custom := &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	tests := []struct {
		name    string
		spec    chatv1alpha1.ChatRoomSpec
		wantCPU string
	}{
		{"default resources", chatv1alpha1.ChatRoomSpec{}, "100m"},
		{"room's resources", chatv1alpha1.ChatRoomSpec{Resources: custom}, "1"},
	}
	for _, tt := range tests {
		r := room(tt.spec)
		d, err := desiredDeployment(r, "img", "h", chatConfig(r))
		if err != nil {
			t.Fatal(err)
		}
		c := d.Spec.Template.Spec.Containers[0]
		cpu := (*c.Resources.Requests)[corev1.ResourceCPU]
		if err := firstErr(
			eq("cpu", cpu.String(), tt.wantCPU),
			eq("readiness", *c.ReadinessProbe.HTTPGet.Path, "/readyz"),
			eq("liveness", *c.LivenessProbe.HTTPGet.Path, "/healthz"),
			eq("probe port", c.ReadinessProbe.HTTPGet.Port.String(), chatPortName),
			eq("grace", *d.Spec.Template.Spec.TerminationGracePeriodSeconds, int64(config.Default().ShutdownGrace.Seconds())+terminationGraceMargin),
			eq("service links", *d.Spec.Template.Spec.EnableServiceLinks, false),
			eq("hash", d.Spec.Template.Annotations[ConfigHashAnnotation], "h"),
		); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestPassThroughScheduling(t *testing.T) {
	r := room(chatv1alpha1.ChatRoomSpec{
		NodeSelector: map[string]string{"pool": "chat"},
		Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "chat", Effect: corev1.TaintEffectNoSchedule, TolerationSeconds: ptr.To[int64](30)}},
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}},
		}}},
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{
			{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.ScheduleAnyway},
			{MaxSkew: 2, TopologyKey: "host", WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": "y"}}},
		},
	})
	d, err := desiredDeployment(r, "img", "h", chatConfig(r))
	if err != nil {
		t.Fatal(err)
	}
	// What is applied must be exactly the room's scheduling, in the API's JSON.
	var got corev1.PodSpec
	b, _ := json.Marshal(d.Spec.Template.Spec)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := r.Spec.TopologySpreadConstraints[0].DeepCopy()
	want.LabelSelector = &metav1.LabelSelector{MatchLabels: selectorLabels(r, ComponentChat)}
	if diff := cmp.Diff(
		[]any{r.Spec.NodeSelector, r.Spec.Tolerations, r.Spec.Affinity, []corev1.TopologySpreadConstraint{*want, r.Spec.TopologySpreadConstraints[1]}},
		[]any{got.NodeSelector, got.Tolerations, got.Affinity, got.TopologySpreadConstraints},
	); diff != "" {
		t.Error(diff)
	}
}

func TestDesiredIngress(t *testing.T) {
	tests := []struct {
		name  string
		spec  *chatv1alpha1.IngressSpec
		check func(t *testing.T, in *ingressView)
	}{
		{"none", nil, nil},
		{"plain", &chatv1alpha1.IngressSpec{Host: "a.example.com"}, func(t *testing.T, in *ingressView) {
			if err := firstErr(eq("host", in.host, "a.example.com"), eq("class", in.class, ""), eq("tls", in.tls, ""), eq("backend", in.backend, "lobby:http")); err != nil {
				t.Error(err)
			}
		}},
		{"class, TLS, annotations", &chatv1alpha1.IngressSpec{Host: "b.example.com", ClassName: "nginx", TLSSecretName: "b-tls", Annotations: map[string]string{"k": "v"}}, func(t *testing.T, in *ingressView) {
			if err := firstErr(eq("class", in.class, "nginx"), eq("tls", in.tls, "b-tls b.example.com"), eq("annotation", in.annotations["k"], "v")); err != nil {
				t.Error(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := desiredIngress(room(chatv1alpha1.ChatRoomSpec{Ingress: tt.spec}))
			if (in == nil) != (tt.check == nil) {
				t.Fatalf("ingress %v, want one: %v", in, tt.check != nil)
			}
			if in == nil {
				return
			}
			rule := in.Spec.Rules[0]
			v := &ingressView{
				host:        *rule.Host,
				class:       ptr.Deref(in.Spec.IngressClassName, ""),
				backend:     *rule.HTTP.Paths[0].Backend.Service.Name + ":" + *rule.HTTP.Paths[0].Backend.Service.Port.Name,
				annotations: in.Annotations,
			}
			if len(in.Spec.TLS) > 0 {
				v.tls = *in.Spec.TLS[0].SecretName + " " + in.Spec.TLS[0].Hosts[0]
			}
			tt.check(t, v)
		})
	}
}

type ingressView struct {
	host, class, tls, backend string
	annotations               map[string]string
}

func TestDesiredHorizontalPodAutoscaler(t *testing.T) {
	if h := desiredHorizontalPodAutoscaler(room(chatv1alpha1.ChatRoomSpec{})); h != nil {
		t.Errorf("HPA without autoscaling: %+v", h)
	}
	h := desiredHorizontalPodAutoscaler(room(chatv1alpha1.ChatRoomSpec{Autoscaling: &chatv1alpha1.AutoscalingSpec{MaxReplicas: 8}}))
	if err := firstErr(
		eq("min (defaulted)", *h.Spec.MinReplicas, chatv1alpha1.DefaultMinReplicas),
		eq("max", *h.Spec.MaxReplicas, 8),
		eq("target", *h.Spec.Metrics[0].Resource.Target.AverageUtilization, chatv1alpha1.DefaultTargetCPUUtilization),
		eq("kind", *h.Spec.ScaleTargetRef.Kind, "Deployment"),
		eq("name", *h.Spec.ScaleTargetRef.Name, "lobby"),
	); err != nil {
		t.Error(err)
	}
}

func TestDesiredRedis(t *testing.T) {
	class := "fast"
	tests := []struct {
		name        string
		redis       *chatv1alpha1.RedisSpec
		wantStorage string
		wantClass   string
	}{
		{"defaults", nil, "1Gi", ""},
		{"explicit empty redis", &chatv1alpha1.RedisSpec{}, "1Gi", ""},
		{"storage and class", &chatv1alpha1.RedisSpec{Managed: &chatv1alpha1.ManagedRedisSpec{Storage: ptr.To(resource.MustParse("10Gi")), StorageClassName: &class}}, "10Gi", "fast"},
	}
	for _, tt := range tests {
		r := room(chatv1alpha1.ChatRoomSpec{Redis: tt.redis})
		s, err := desiredRedisStatefulSet(r, "redis:x", "h")
		if err != nil {
			t.Fatal(err)
		}
		claim := s.Spec.VolumeClaimTemplates[0].Spec
		storage := (*claim.Resources.Requests)[corev1.ResourceStorage]
		c := s.Spec.Template.Spec.Containers[0]
		if err := firstErr(
			eq("storage", storage.String(), tt.wantStorage),
			eq("class", ptr.Deref(claim.StorageClassName, ""), tt.wantClass),
			eq("image", *c.Image, "redis:x"),
			eq("password env", *c.Env[0].ValueFrom.SecretKeyRef.Name, "lobby-redis"),
			eq("AOF", c.Args[0]+" "+c.Args[1], "--appendonly yes"),
			eq("user", *s.Spec.Template.Spec.SecurityContext.RunAsUser, int64(redisUID)),
			eq("claims deleted with the set", *s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted, "Delete"),
		); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}

	pw, err := newRedisPassword()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newRedisPassword()
	if len(pw) != 64 || pw == other {
		t.Errorf("passwords %q, %q: want 64 random hex characters each", pw, other)
	}

	set := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "lobby-redis", UID: "set-uid"}}
	secret := desiredRedisSecret(room(chatv1alpha1.ChatRoomSpec{}), set, pw)
	owner := metav1.GetControllerOf(secret)
	if err := firstErr(
		eq("password", string(secret.Data[chatv1alpha1.DefaultRedisPasswordKey]), pw),
		eq("immutable", ptr.Deref(secret.Immutable, false), true),
		eq("owner", owner != nil && owner.Kind == "StatefulSet" && owner.UID == "set-uid", true),
		// Blocking the set's deletion would need a right on statefulsets/finalizers.
		eq("does not block deletion", ptr.Deref(owner.BlockOwnerDeletion, false), false),
	); err != nil {
		t.Error(err)
	}
}

// TestRedisNetworkPolicyAdmitsOnlyChatPods: the managed Redis admits this
// room's chat pods and nothing else, whatever the operator knows of its own
// namespace. The operator never talks to Redis, so it has no peer; an
// operator peer without a namespace would have admitted operator-labelled
// pods from every namespace.
func TestRedisNetworkPolicyAdmitsOnlyChatPods(t *testing.T) {
	tests := []struct {
		name string
		room *chatv1alpha1.ChatRoom
	}{
		{"defaults", room(chatv1alpha1.ChatRoomSpec{})},
		{"explicit managed, another room and namespace", defaulted(&chatv1alpha1.ChatRoom{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-b", Name: "town"},
			Spec:       chatv1alpha1.ChatRoomSpec{Redis: &chatv1alpha1.RedisSpec{Managed: &chatv1alpha1.ManagedRedisSpec{}}},
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := desiredRedisNetworkPolicy(tt.room)
			type peer struct {
				Pods       map[string]string
				Namespaces *metav1ac.LabelSelectorApplyConfiguration
				IPBlock    bool
			}
			var peers []peer
			for _, rule := range np.Spec.Ingress {
				if len(rule.From) == 0 {
					t.Fatalf("an ingress rule without peers admits everyone: %+v", rule)
				}
				for _, f := range rule.From {
					p := peer{Namespaces: f.NamespaceSelector, IPBlock: f.IPBlock != nil}
					if f.PodSelector != nil {
						p.Pods = f.PodSelector.MatchLabels
					}
					peers = append(peers, p)
				}
			}
			// No namespace selector: the room's own namespace only.
			want := []peer{{Pods: map[string]string{LabelName: AppName, LabelInstance: tt.room.Name, LabelComponent: ComponentChat}}}
			if diff := cmp.Diff(want, peers); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if err := firstErr(
				eq("policy types", fmt.Sprint(np.Spec.PolicyTypes), "[Ingress]"),
				eq("selects the room's Redis", np.Spec.PodSelector.MatchLabels[LabelComponent], ComponentRedis),
				eq("port", np.Spec.Ingress[0].Ports[0].Port.IntValue(), redisPort),
			); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOwnerReference(t *testing.T) {
	ref := ownerRef(room(chatv1alpha1.ChatRoomSpec{}))
	if err := firstErr(
		eq("apiVersion", *ref.APIVersion, "chat.hubbub.dev/v1alpha1"),
		eq("kind", *ref.Kind, "ChatRoom"),
		eq("uid", string(*ref.UID), "uid-1"),
		eq("controller", *ref.Controller, true),
		eq("blockOwnerDeletion", *ref.BlockOwnerDeletion, true),
	); err != nil {
		t.Error(err)
	}
}

func TestChatImage(t *testing.T) {
	if got := chatImage(room(chatv1alpha1.ChatRoomSpec{}), "default:1"); got != "default:1" {
		t.Errorf("default image: %s", got)
	}
	if got := chatImage(room(chatv1alpha1.ChatRoomSpec{Image: "mine:2"}), "default:1"); got != "mine:2" {
		t.Errorf("room image: %s", got)
	}
}

func TestRoomURL(t *testing.T) {
	lb := func(ing corev1.LoadBalancerIngress) *corev1.Service {
		return &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}, Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{ing}}}}
	}
	tests := []struct {
		name string
		spec chatv1alpha1.ChatRoomSpec
		svc  *corev1.Service
		want string
	}{
		{"cluster service", chatv1alpha1.ChatRoomSpec{}, nil, "http://lobby.ns.svc/"},
		{"other port", chatv1alpha1.ChatRoomSpec{Service: chatv1alpha1.ServiceSpec{Port: 8080}}, nil, "http://lobby.ns.svc:8080/"},
		{"load balancer ip", chatv1alpha1.ChatRoomSpec{Service: chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}, lb(corev1.LoadBalancerIngress{IP: "203.0.113.9"}), "http://203.0.113.9/"},
		{"load balancer ipv6", chatv1alpha1.ChatRoomSpec{Service: chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Port: 81}}, lb(corev1.LoadBalancerIngress{IP: "2001:db8::1"}), "http://[2001:db8::1]:81/"},
		{"load balancer pending", chatv1alpha1.ChatRoomSpec{Service: chatv1alpha1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}, &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}, "http://lobby.ns.svc/"},
		{"ingress", chatv1alpha1.ChatRoomSpec{Ingress: &chatv1alpha1.IngressSpec{Host: "c.example.com"}}, nil, "http://c.example.com/"},
		{"ingress TLS", chatv1alpha1.ChatRoomSpec{Ingress: &chatv1alpha1.IngressSpec{Host: "c.example.com", TLSSecretName: "t"}}, nil, "https://c.example.com/"},
	}
	for _, tt := range tests {
		if got := roomURL(room(tt.spec), tt.svc); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

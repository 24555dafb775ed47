package controllers

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

const waitFor = 30 * time.Second

// ownedObject is an object a sample room must own, with checks on its spec.
type ownedObject struct {
	obj   client.Object
	name  string
	check func(client.Object) error
}

// TestSamples applies each sample of config/samples and checks that the
// operator builds every owned object, reports status, and then settles:
// a further reconcile writes nothing.
func TestSamples(t *testing.T) {
	tc := cluster(t)
	tests := []struct {
		file string
		// prepare adjusts the sample for the test environment.
		prepare func(room *chatv1alpha1.ChatRoom)
		owned   func(ns string) []ownedObject
		absent  []client.Object // kinds (by name = room name or <room>-redis) that must not exist
		// gone are objects (kind and name) that must not exist.
		gone    []ownedObject
		managed bool
	}{{
		file:    "chat_v1alpha1_chatroom_minimal.yaml",
		managed: true,
		owned: func(ns string) []ownedObject {
			return []ownedObject{
				{&appsv1.Deployment{}, "lobby", func(o client.Object) error {
					d := o.(*appsv1.Deployment)
					c := d.Spec.Template.Spec.Containers[0]
					return firstErr(
						eq("replicas", ptr.Deref(d.Spec.Replicas, -1), 2),
						eq("image", c.Image, testChatImage),
						eq("config hash set", d.Spec.Template.Annotations[ConfigHashAnnotation] != "", true),
						eq("password env", envSecret(c, "HUBBUB_REDIS_PASSWORD"), "lobby-redis/password"),
					)
				}},
				{&corev1.ConfigMap{}, "lobby-config", func(o client.Object) error {
					data := o.(*corev1.ConfigMap).Data
					return firstErr(
						eq("HUBBUB_ROOM", data["HUBBUB_ROOM"], ns+"/lobby"),
						eq("HUBBUB_REDIS_URL", data["HUBBUB_REDIS_URL"], "redis://lobby-redis."+ns+".svc:6379"),
					)
				}},
				{&corev1.Service{}, "lobby", func(o client.Object) error {
					p := o.(*corev1.Service).Spec.Ports[0]
					return firstErr(eq("port", p.Port, int32(80)), eq("targetPort", p.TargetPort.String(), "http"))
				}},
				{&corev1.ServiceAccount{}, "lobby", func(o client.Object) error {
					return eq("automount", ptr.Deref(o.(*corev1.ServiceAccount).AutomountServiceAccountToken, true), false)
				}},
				{&policyv1.PodDisruptionBudget{}, "lobby", nil},
				{&appsv1.StatefulSet{}, "lobby-redis", func(o client.Object) error {
					s := o.(*appsv1.StatefulSet)
					storage := s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
					return firstErr(
						eq("storage", storage.String(), "1Gi"),
						eq("image", s.Spec.Template.Spec.Containers[0].Image, DefaultRedisImage),
						eq("args", strings.Join(s.Spec.Template.Spec.Containers[0].Args, " "), "--appendonly yes --dir /data --requirepass $(REDIS_PASSWORD)"),
					)
				}},
				{&corev1.Service{}, "lobby-redis", nil},
				{&corev1.Secret{}, "lobby-redis", func(o client.Object) error {
					secret := o.(*corev1.Secret)
					return firstErr(
						eq("generated password", regexp.MustCompile(`^[0-9a-f]{64}$`).Match(secret.Data["password"]), true),
						eq("immutable", ptr.Deref(secret.Immutable, false), true),
					)
				}},
				{&networkingv1.NetworkPolicy{}, "lobby-redis", func(o client.Object) error {
					from := o.(*networkingv1.NetworkPolicy).Spec.Ingress[0].From
					return firstErr(
						eq("peers: only the chat pods", len(from), 1),
						eq("chat pods", from[0].PodSelector.MatchLabels[LabelInstance], "lobby"),
						eq("in the room's namespace", from[0].NamespaceSelector == nil, true),
					)
				}},
			}
		},
		absent: []client.Object{&autoscalingv2.HorizontalPodAutoscaler{}, &networkingv1.Ingress{}},
	}, {
		file: "chat_v1alpha1_chatroom_external_redis.yaml",
		// The sample's Redis is a stand-in; no one connects to it here.
		prepare: func(room *chatv1alpha1.ChatRoom) { room.Spec.Redis.URL = testRedisURL },
		owned: func(ns string) []ownedObject {
			return []ownedObject{
				{&appsv1.Deployment{}, "team", func(o client.Object) error {
					d := o.(*appsv1.Deployment)
					c := d.Spec.Template.Spec.Containers[0]
					return firstErr(
						eq("replicas", ptr.Deref(d.Spec.Replicas, -1), 3),
						eq("password env", envSecret(c, "HUBBUB_REDIS_PASSWORD"), "team-redis/password"),
						eq("bootstrap volume", d.Spec.Template.Spec.Volumes[1].Secret.SecretName, "team-users"),
					)
				}},
				{&corev1.ConfigMap{}, "team-config", func(o client.Object) error {
					data := o.(*corev1.ConfigMap).Data
					return firstErr(
						eq("HUBBUB_CHANNELS", data["HUBBUB_CHANNELS"], "general,random,incidents"),
						eq("HUBBUB_REGISTRATION", data["HUBBUB_REGISTRATION"], "Closed"),
						eq("HUBBUB_BOOTSTRAP_USERS_FILE", data["HUBBUB_BOOTSTRAP_USERS_FILE"], bootstrapUsersFile),
						eq("HUBBUB_SESSION_TTL", data["HUBBUB_SESSION_TTL"], "8h0m0s"),
					)
				}},
				{&corev1.Service{}, "team", nil},
				{&corev1.ServiceAccount{}, "team", nil},
				{&policyv1.PodDisruptionBudget{}, "team", nil},
			}
		},
		absent: []client.Object{&appsv1.StatefulSet{}, &networkingv1.NetworkPolicy{}, &autoscalingv2.HorizontalPodAutoscaler{}, &networkingv1.Ingress{}},
	}, {
		file:    "chat_v1alpha1_chatroom_ingress_autoscaling.yaml",
		managed: true,
		owned: func(ns string) []ownedObject {
			return []ownedObject{
				{&appsv1.Deployment{}, "town-square", func(o client.Object) error {
					d := o.(*appsv1.Deployment)
					return firstErr(
						// The HPA owns the replica count; the API server defaulted it.
						eq("replicas", ptr.Deref(d.Spec.Replicas, -1), 1),
						eq("cpu request", d.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(), "200m"),
					)
				}},
				{&autoscalingv2.HorizontalPodAutoscaler{}, "town-square", func(o client.Object) error {
					h := o.(*autoscalingv2.HorizontalPodAutoscaler)
					return firstErr(
						eq("min", ptr.Deref(h.Spec.MinReplicas, 0), 2),
						eq("max", h.Spec.MaxReplicas, 10),
						eq("target", ptr.Deref(h.Spec.Metrics[0].Resource.Target.AverageUtilization, 0), 60),
						eq("scale target", h.Spec.ScaleTargetRef.Name, "town-square"),
					)
				}},
				{&networkingv1.Ingress{}, "town-square", func(o client.Object) error {
					in := o.(*networkingv1.Ingress)
					return firstErr(
						eq("host", in.Spec.Rules[0].Host, "chat.example.com"),
						eq("class", ptr.Deref(in.Spec.IngressClassName, ""), "nginx"),
						eq("tls", in.Spec.TLS[0].SecretName, "chat-example-com-tls"),
						eq("annotation", in.Annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "3600"),
					)
				}},
				{&corev1.ConfigMap{}, "town-square-config", func(o client.Object) error {
					data := o.(*corev1.ConfigMap).Data
					return firstErr(
						eq("origins", data["HUBBUB_ALLOWED_ORIGINS"], "https://chat.example.com"),
						eq("no proxy trusted", data["HUBBUB_TRUSTED_PROXIES"], ""),
						eq("rate", data["HUBBUB_MESSAGES_PER_SECOND"], "3"),
					)
				}},
				{&appsv1.StatefulSet{}, "town-square-redis", func(o client.Object) error {
					s := o.(*appsv1.StatefulSet)
					storage := s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
					return eq("storage", storage.String(), "5Gi")
				}},
				{&policyv1.PodDisruptionBudget{}, "town-square", nil},
				{&corev1.Service{}, "town-square", nil},
			}
		},
	}, {
		file:    "chat_v1alpha1_chatroom_ha_redis.yaml",
		managed: true,
		owned: func(ns string) []ownedObject {
			hosts := func(port string) string {
				var hs []string
				for i := range 3 {
					hs = append(hs, fmt.Sprintf("plaza-redis-%d.plaza-redis-headless.%s.svc:%s", i, ns, port))
				}
				return strings.Join(hs, ",")
			}
			return []ownedObject{
				{&appsv1.StatefulSet{}, "plaza-redis", func(o client.Object) error {
					s := o.(*appsv1.StatefulSet)
					pod := s.Spec.Template.Spec
					var names []string
					for _, c := range pod.Containers {
						names = append(names, c.Name+":"+c.Image)
					}
					storage := s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]
					return firstErr(
						eq("replicas", ptr.Deref(s.Spec.Replicas, 0), 3),
						eq("service", s.Spec.ServiceName, "plaza-redis-headless"),
						eq("pod management", s.Spec.PodManagementPolicy, appsv1.ParallelPodManagement),
						eq("containers", strings.Join(names, " "), "redis:"+DefaultRedisImage+" sentinel:"+DefaultRedisImage),
						eq("storage per pod", storage.String(), "1Gi"),
						eq("password env", envSecret(pod.Containers[1], "REDIS_PASSWORD"), "plaza-redis/password"),
					)
				}},
				{&corev1.Service{}, "plaza-redis-headless", func(o client.Object) error {
					svc := o.(*corev1.Service)
					return firstErr(
						eq("headless", svc.Spec.ClusterIP, corev1.ClusterIPNone),
						eq("publishes unready pods", svc.Spec.PublishNotReadyAddresses, true),
						eq("ports", fmt.Sprint(svc.Spec.Ports[0].Port, svc.Spec.Ports[1].Port), "6379 26379"),
					)
				}},
				{&policyv1.PodDisruptionBudget{}, "plaza-redis", func(o client.Object) error {
					p := o.(*policyv1.PodDisruptionBudget)
					return firstErr(
						eq("max unavailable", p.Spec.MaxUnavailable.String(), "1"),
						eq("selects redis", p.Spec.Selector.MatchLabels[LabelComponent], ComponentRedis),
					)
				}},
				{&networkingv1.NetworkPolicy{}, "plaza-redis", func(o client.Object) error {
					rule := o.(*networkingv1.NetworkPolicy).Spec.Ingress[0]
					return firstErr(
						eq("peers: the chat pods and the Redis pods", fmt.Sprintf("%d %s %s", len(rule.From), rule.From[0].PodSelector.MatchLabels[LabelComponent], rule.From[1].PodSelector.MatchLabels[LabelComponent]), "2 chat redis"),
						eq("in the room's namespace", rule.From[0].NamespaceSelector == nil && rule.From[1].NamespaceSelector == nil, true),
						eq("ports", fmt.Sprint(rule.Ports[0].Port.IntValue(), rule.Ports[1].Port.IntValue()), "6379 26379"),
					)
				}},
				{&corev1.Secret{}, "plaza-redis", nil},
				{&corev1.ConfigMap{}, "plaza-config", func(o client.Object) error {
					data := o.(*corev1.ConfigMap).Data
					return firstErr(
						eq("HUBBUB_REDIS_URL", data["HUBBUB_REDIS_URL"], "redis-sentinel://"+hosts("26379")+"/?master=plaza"),
						eq("HUBBUB_REDIS_MIN_REPLICA_ACKS", data["HUBBUB_REDIS_MIN_REPLICA_ACKS"], "1"),
					)
				}},
				{&appsv1.Deployment{}, "plaza", func(o client.Object) error {
					c := o.(*appsv1.Deployment).Spec.Template.Spec.Containers[0]
					return eq("password env", envSecret(c, "HUBBUB_REDIS_PASSWORD"), "plaza-redis/password")
				}},
				{&policyv1.PodDisruptionBudget{}, "plaza", nil},
			}
		},
		// Chat pods reach the primary through the sentinels: no Service
		// that would spread them over the primary and its replicas.
		gone:   []ownedObject{{obj: &corev1.Service{}, name: "plaza-redis"}},
		absent: []client.Object{&autoscalingv2.HorizontalPodAutoscaler{}, &networkingv1.Ingress{}},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			ns := tc.newNamespace(t)
			objs := loadSample(t, tt.file)
			room := roomOf(t, objs)
			if tt.prepare != nil {
				tt.prepare(room)
			}
			tc.createAll(t, ns, objs...)
			room = tc.room(t, ns, room.Name)

			for _, want := range tt.owned(ns) {
				eventually(t, waitFor, func() error {
					if err := tc.get(ns, want.name, want.obj); err != nil {
						return err
					}
					owner := client.Object(room)
					if _, ok := want.obj.(*corev1.Secret); ok {
						// The managed password goes with its Redis.
						owner = &appsv1.StatefulSet{}
						if err := tc.get(ns, room.RedisName(), owner); err != nil {
							return err
						}
					}
					if err := controlledBy(want.obj, owner); err != nil {
						return err
					}
					if want.obj.GetLabels()[LabelManagedBy] != ManagedBy {
						return fmt.Errorf("%T %s lacks the managed-by label", want.obj, want.name)
					}
					if want.check != nil {
						return want.check(want.obj)
					}
					return nil
				})
			}
			for _, kind := range tt.absent {
				for _, name := range []string{room.Name, room.RedisName()} {
					if err := tc.get(ns, name, kind); !apierrors.IsNotFound(err) {
						t.Errorf("%T %s: got %v, want not found", kind, name, err)
					}
				}
			}
			for _, g := range tt.gone {
				if err := tc.get(ns, g.name, g.obj); !apierrors.IsNotFound(err) {
					t.Errorf("%T %s: got %v, want not found", g.obj, g.name, err)
				}
			}
			tc.checkPodsAdmitted(t, ns, room)

			tc.markDeploymentReady(t, ns, room.ChatName())
			if tt.managed {
				tc.markRedisReady(t, ns, room.RedisName())
			}
			eventually(t, waitFor, func() error {
				room = tc.room(t, ns, room.Name)
				st := room.Status
				d := &appsv1.Deployment{}
				if err := tc.get(ns, room.ChatName(), d); err != nil {
					return err
				}
				n := ptr.Deref(d.Spec.Replicas, 0)
				return firstErr(
					eq("observedGeneration", st.ObservedGeneration, room.Generation),
					eq("replicas", st.Replicas, n),
					eq("readyReplicas", st.ReadyReplicas, n),
					eq("selector", st.Selector, "app.kubernetes.io/component=chat,app.kubernetes.io/instance="+room.Name+",app.kubernetes.io/name=hubbub"),
					eq("url", st.URL, wantURL(room)),
					wantCondition(room, chatv1alpha1.ConditionAvailable, metav1.ConditionTrue, chatv1alpha1.ReasonDeploymentAvailable),
					wantCondition(room, chatv1alpha1.ConditionProgressing, metav1.ConditionFalse, chatv1alpha1.ReasonRolloutComplete),
					wantCondition(room, chatv1alpha1.ConditionRedisReady, metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable),
					wantCondition(room, chatv1alpha1.ConditionDegraded, metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected),
				)
			})
			tc.checkSettled(ctx, t, room)
		})
	}
}

func wantURL(room *chatv1alpha1.ChatRoom) string {
	if room.Spec.Ingress != nil {
		return "https://" + room.Spec.Ingress.Host + "/"
	}
	return fmt.Sprintf("http://%s.%s.svc/", room.Name, room.Namespace)
}

// checkSettled reconciles the converged room again through a client that
// counts writes: it must make none, twice in a row.
func (tc *testCluster) checkSettled(ctx context.Context, t *testing.T, room *chatv1alpha1.ChatRoom) {
	t.Helper()
	counter := &writeCounter{Client: tc.mgr.GetClient()}
	r := *tc.reconciler
	r.Client = counter
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(room)}
	// The manager's caches may still be catching up with the last writes;
	// wait for one quiet reconcile, then require more.
	eventually(t, waitFor, func() error {
		if _, err := r.Reconcile(ctx, req); err != nil {
			return err
		}
		if w := counter.take(); len(w) > 0 {
			return fmt.Errorf("reconcile wrote %v", w)
		}
		return nil
	})
	for range 2 {
		res, err := r.Reconcile(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if w := counter.take(); len(w) > 0 {
			t.Fatalf("a reconcile of a settled room wrote %v", w)
		}
		// Back for the presence refresh, after the interval plus at most 10% jitter.
		if i := r.Options.PresenceInterval; res.RequeueAfter < i || res.RequeueAfter > i+i/10 {
			t.Errorf("requeue after %s, want %s plus up to 10%%", res.RequeueAfter, i)
		}
	}
}

// checkPodsAdmitted creates pods from the chat and Redis pod templates in the
// test namespace, whose Pod Security admission enforces the restricted
// profile: the API server refuses a pod that does not meet it.
func (tc *testCluster) checkPodsAdmitted(t *testing.T, ns string, room *chatv1alpha1.ChatRoom) {
	t.Helper()
	ctx := context.Background()
	d := &appsv1.Deployment{}
	if err := tc.get(ns, room.ChatName(), d); err != nil {
		t.Fatal(err)
	}
	pods := map[string]corev1.PodSpec{"chat": d.Spec.Template.Spec}
	s := &appsv1.StatefulSet{}
	switch err := tc.get(ns, room.RedisName(), s); {
	case err == nil:
		spec := s.Spec.Template.Spec
		// The StatefulSet controller adds a volume per claim template.
		for _, claim := range s.Spec.VolumeClaimTemplates {
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name + "-" + s.Name + "-0"},
			}})
		}
		pods["redis"] = spec
		// envtest runs no controller that creates "default" accounts.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
		if err := tc.c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	case !apierrors.IsNotFound(err):
		t.Fatal(err)
	}
	for name, spec := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "admission-" + name}, Spec: spec}
		if err := tc.c.Create(ctx, pod, client.DryRunAll); err != nil {
			t.Errorf("%s pod refused by the API server (restricted Pod Security): %v", name, err)
		}
	}
}

// TestDriftIsRepaired edits and deletes an owned Deployment by hand.
func TestDriftIsRepaired(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns, _ := tc.minimalRoom(t)

	d := &appsv1.Deployment{}
	eventually(t, waitFor, func() error { return tc.get(ns, "lobby", d) })
	firstUID := d.UID

	// An edit the way `kubectl edit` makes it: an update by another manager.
	eventually(t, waitFor, func() error {
		if err := tc.get(ns, "lobby", d); err != nil {
			return err
		}
		d.Spec.Replicas = ptr.To[int32](7)
		d.Spec.Template.Spec.Containers[0].Image = "attacker/chat:latest"
		return tc.c.Update(ctx, d, client.FieldOwner("kubectl-edit"))
	})
	eventually(t, waitFor, func() error {
		if err := tc.get(ns, "lobby", d); err != nil {
			return err
		}
		return firstErr(
			eq("replicas", ptr.Deref(d.Spec.Replicas, 0), 2),
			eq("image", d.Spec.Template.Spec.Containers[0].Image, testChatImage),
		)
	})

	if err := tc.c.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := tc.get(ns, "lobby", d); err != nil {
			return err
		}
		if d.UID == firstUID {
			return fmt.Errorf("still the deleted Deployment")
		}
		return ownedBy(d, tc.room(t, ns, "lobby"))
	})

	// A removed managed-by label hides the object from the operator's
	// cache; it must still be found and put back, not duplicated.
	eventually(t, waitFor, func() error {
		cm := &corev1.ConfigMap{}
		if err := tc.get(ns, "lobby-config", cm); err != nil {
			return err
		}
		delete(cm.Labels, LabelManagedBy)
		cm.Data["HUBBUB_ROOM"] = "other/room"
		return tc.c.Update(ctx, cm, client.FieldOwner("kubectl-edit"))
	})
	eventually(t, waitFor, func() error {
		cm := &corev1.ConfigMap{}
		if err := tc.get(ns, "lobby-config", cm); err != nil {
			return err
		}
		return firstErr(eq("label", cm.Labels[LabelManagedBy], ManagedBy), eq("room", cm.Data["HUBBUB_ROOM"], ns+"/lobby"))
	})

	// A deleted Redis password Secret comes back with a new password once a
	// pod reports it missing (the operator may not watch Secrets), and both
	// Redis and the chat pods roll to pick it up.
	secret, set := &corev1.Secret{}, &appsv1.StatefulSet{}
	var oldGeneration string
	eventually(t, waitFor, func() error {
		if err := firstErr(tc.get(ns, "lobby-redis", secret), tc.get(ns, "lobby-redis", set), tc.get(ns, "lobby", d)); err != nil {
			return err
		}
		oldGeneration = set.Spec.Template.Annotations[PasswordGenerationAnnotation]
		return firstErr(
			eq("generation set", oldGeneration != "", true),
			eq("chat pods on the same generation", d.Spec.Template.Annotations[PasswordGenerationAnnotation], oldGeneration),
		)
	})
	oldPassword := string(secret.Data["password"])
	if err := tc.c.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	// What the kubelet reports when the Redis pod restarts without it.
	redisPod := tc.podFromTemplate(t, ns, "lobby-redis-0", redisPodTemplate(set))
	tc.setPodWaiting(t, redisPod, "CreateContainerConfigError", `secret "lobby-redis" not found`)
	eventually(t, waitFor, func() error {
		if err := firstErr(tc.get(ns, "lobby-redis", secret), tc.get(ns, "lobby-redis", set), tc.get(ns, "lobby", d)); err != nil {
			return err
		}
		generation := set.Spec.Template.Annotations[PasswordGenerationAnnotation]
		return firstErr(
			eq("new password", string(secret.Data["password"]) != oldPassword && len(secret.Data["password"]) == 64, true),
			controlledBy(secret, set),
			eq("redis rolled", generation != oldGeneration, true),
			eq("chat rolled", d.Spec.Template.Annotations[PasswordGenerationAnnotation], generation),
		)
	})
	// The pod of the old generation still says the Secret is missing; that
	// report predates the new Secret and must not roll everything again.
	tc.checkSettled(ctx, t, tc.room(t, ns, "lobby"))
}

// TestScaleSubresource scales a room the way `kubectl scale` does.
func TestScaleSubresource(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns, room := tc.minimalRoom(t)
	eventually(t, waitFor, func() error { return tc.get(ns, "lobby", &appsv1.Deployment{}) })

	scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 4}}
	if err := tc.c.SubResource("scale").Update(ctx, room, client.WithSubResourceBody(scale)); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(tc.room(t, ns, "lobby").Spec.Replicas, 0); got != 4 {
		t.Fatalf("spec.replicas = %d after scaling to 4", got)
	}
	eventually(t, waitFor, func() error {
		d := &appsv1.Deployment{}
		if err := tc.get(ns, "lobby", d); err != nil {
			return err
		}
		return eq("deployment replicas", ptr.Deref(d.Spec.Replicas, 0), 4)
	})
	tc.markDeploymentReady(t, ns, "lobby")
	eventually(t, waitFor, func() error {
		got := &autoscalingv1.Scale{}
		if err := tc.c.SubResource("scale").Get(ctx, room, got); err != nil {
			return err
		}
		return firstErr(
			eq("scale status replicas", got.Status.Replicas, 4),
			eq("scale selector", got.Status.Selector, "app.kubernetes.io/component=chat,app.kubernetes.io/instance=lobby,app.kubernetes.io/name=hubbub"),
		)
	})
}

// TestMissingSecret: a room whose pods cannot start for want of a Secret it
// names is Degraded with reason SecretNotFound, naming the Secret, and
// recovers when the pods start. The operator learns it from what the
// kubelet reports about the pods: it may not read Secrets.
func TestMissingSecret(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns := tc.newNamespace(t)
	room := roomOf(t, loadSample(t, "chat_v1alpha1_chatroom_external_redis.yaml"))
	room.Spec.Redis.URL = testRedisURL
	tc.createAll(t, ns, room) // without the sample's Secrets
	d := &appsv1.Deployment{}
	eventually(t, waitFor, func() error { return tc.get(ns, "team", d) })
	degraded := func(want string, redisReady metav1.ConditionStatus, redisReason string) func() error {
		return func() error {
			r := tc.room(t, ns, "team")
			c, err := condition(r, chatv1alpha1.ConditionDegraded)
			if err != nil {
				return err
			}
			return firstErr(
				wantCondition(r, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonSecretNotFound),
				eq("Degraded message", c.Message, want),
				wantCondition(r, chatv1alpha1.ConditionRedisReady, redisReady, redisReason),
			)
		}
	}

	// The kubelet mounts volumes first: a missing bootstrap users Secret
	// keeps the pod in ContainerCreating, and says why only in an Event.
	pod := tc.podFromTemplate(t, ns, "team-7c9f4-x2x8q", d.Spec.Template)
	tc.setPodWaiting(t, pod, "ContainerCreating", "")
	if err := tc.c.Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: pod.Name + ".failedmount"},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: pod.Name, UID: pod.UID},
		Reason:         "FailedMount",
		Type:           corev1.EventTypeWarning,
		Message:        `MountVolume.SetUp failed for volume "bootstrap-users" : secret "team-users" not found`,
		Source:         corev1.EventSource{Component: "kubelet"},
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, degraded("Secret team-users not found", metav1.ConditionUnknown, chatv1alpha1.ReasonNoChatPods))
	eventually(t, waitFor, func() error {
		return hasEvent(tc.events(t, tc.room(t, ns, "team")), corev1.EventTypeWarning, chatv1alpha1.ReasonSecretNotFound)
	})

	// With the users mounted, the Redis password is the next thing the
	// kubelet cannot find; then, in an existing Secret, its key.
	tc.setPodWaiting(t, pod, "CreateContainerConfigError", `secret "team-redis" not found`)
	eventually(t, waitFor, degraded("Secret team-redis not found", metav1.ConditionFalse, chatv1alpha1.ReasonSecretNotFound))
	tc.setPodWaiting(t, pod, "CreateContainerConfigError", "couldn't find key password in Secret "+ns+"/team-redis")
	eventually(t, waitFor, degraded(`Secret team-redis has no key "password"`, metav1.ConditionFalse, chatv1alpha1.ReasonSecretNotFound))

	// The pods start once the Secrets are right.
	if err := tc.c.Delete(ctx, pod); err != nil {
		t.Fatal(err)
	}
	tc.markDeploymentReady(t, ns, "team")
	eventually(t, waitFor, func() error {
		r := tc.room(t, ns, "team")
		return firstErr(
			wantCondition(r, chatv1alpha1.ConditionDegraded, metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected),
			wantCondition(r, chatv1alpha1.ConditionRedisReady, metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable),
		)
	})
	eventually(t, waitFor, func() error {
		return hasEvent(tc.events(t, tc.room(t, ns, "team")), corev1.EventTypeNormal, "Recovered")
	})
}

func hasEvent(events []eventsv1.Event, typ, reason string) error {
	var seen []string
	for _, e := range events {
		if e.Type == typ && e.Reason == reason {
			return nil
		}
		seen = append(seen, e.Type+"/"+e.Reason)
	}
	return fmt.Errorf("no %s event %s among %v", typ, reason, seen)
}

// TestOnlineUsers: status.onlineUsers is what a running chat pod reports,
// refreshed without any change to the room; how asking fails says whether
// Redis is the problem.
func TestOnlineUsers(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns, _ := tc.minimalRoom(t)
	addr := tc.runChatPod(t, ns, "lobby")
	tc.presence.answer(addr, 2, nil)
	tc.markRedisReady(t, ns, "lobby-redis")
	redisReady := func(n int32, status metav1.ConditionStatus, reason string, degraded string) func() error {
		return func() error {
			r := tc.room(t, ns, "lobby")
			degradedStatus := metav1.ConditionTrue
			if degraded == chatv1alpha1.ReasonAsExpected {
				degradedStatus = metav1.ConditionFalse
			}
			return firstErr(
				eq("onlineUsers", r.Status.OnlineUsers, n),
				wantCondition(r, chatv1alpha1.ConditionRedisReady, status, reason),
				wantCondition(r, chatv1alpha1.ConditionDegraded, degradedStatus, degraded),
			)
		}
	}
	eventually(t, waitFor, redisReady(2, metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable, chatv1alpha1.ReasonAsExpected))

	// Picked up by the periodic refresh, without any change to the room.
	tc.presence.answer(addr, 3, nil)
	eventually(t, waitFor, redisReady(3, metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable, chatv1alpha1.ReasonAsExpected))

	// The pod cannot read Redis: the room is degraded; the last count stays.
	tc.presence.answer(addr, 0, fmt.Errorf("chat pod %s: %w: storage unavailable", addr, ErrRedisUnavailable))
	eventually(t, waitFor, redisReady(3, metav1.ConditionFalse, chatv1alpha1.ReasonRedisUnreachable, chatv1alpha1.ReasonRedisUnreachable))

	// The operator cannot reach the pod: that says nothing about Redis, nor
	// about the people using the room.
	tc.presence.answer(addr, 0, fmt.Errorf("ask chat pod %s: connection refused", addr))
	eventually(t, waitFor, redisReady(3, metav1.ConditionUnknown, chatv1alpha1.ReasonChatUnreachable, chatv1alpha1.ReasonAsExpected))

	// No chat pod runs: no one can be online.
	if err := tc.c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lobby-running"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, redisReady(0, metav1.ConditionUnknown, chatv1alpha1.ReasonNoChatPods, chatv1alpha1.ReasonAsExpected))
}

// TestOptionalObjectsFollowTheSpec turns ingress, autoscaling and the
// managed Redis on and off and checks that owned objects come and go.
func TestOptionalObjectsFollowTheSpec(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns, _ := tc.minimalRoom(t)
	eventually(t, waitFor, func() error { return tc.get(ns, "lobby-redis", &appsv1.StatefulSet{}) })

	update := func(change func(*chatv1alpha1.ChatRoom)) {
		t.Helper()
		eventually(t, waitFor, func() error {
			r := tc.room(t, ns, "lobby")
			change(r)
			return tc.c.Update(ctx, r)
		})
	}
	exists := func(obj client.Object, name string, want bool) func() error {
		return func() error {
			err := tc.get(ns, name, obj)
			switch {
			case want && err != nil:
				return err
			case !want && err == nil:
				return fmt.Errorf("%T %s still exists", obj, name)
			case !want && !apierrors.IsNotFound(err):
				return err
			}
			return nil
		}
	}

	update(func(r *chatv1alpha1.ChatRoom) {
		r.Spec.Ingress = &chatv1alpha1.IngressSpec{Host: "lobby.example.com"}
		r.Spec.Autoscaling = &chatv1alpha1.AutoscalingSpec{MinReplicas: 1, MaxReplicas: 3}
	})
	eventually(t, waitFor, exists(&networkingv1.Ingress{}, "lobby", true))
	eventually(t, waitFor, exists(&autoscalingv2.HorizontalPodAutoscaler{}, "lobby", true))
	// Handing the replica count to the autoscaler must not drop it to the
	// API default of 1 meanwhile.
	d := &appsv1.Deployment{}
	if err := tc.get(ns, "lobby", d); err != nil {
		t.Fatal(err)
	}
	if got := ptr.Deref(d.Spec.Replicas, 0); got != 2 {
		t.Errorf("replicas %d after enabling autoscaling, want the 2 running before", got)
	}
	// minReplicas 1: a disruption budget would block node drains.
	eventually(t, waitFor, exists(&policyv1.PodDisruptionBudget{}, "lobby", false))
	eventually(t, waitFor, func() error { return eq("url", tc.room(t, ns, "lobby").Status.URL, "http://lobby.example.com/") })

	set, secret := &appsv1.StatefulSet{}, &corev1.Secret{}
	if err := firstErr(tc.get(ns, "lobby-redis", set), tc.get(ns, "lobby-redis", secret)); err != nil {
		t.Fatal(err)
	}
	update(func(r *chatv1alpha1.ChatRoom) {
		r.Spec.Ingress, r.Spec.Autoscaling = nil, nil
		r.Spec.Redis = &chatv1alpha1.RedisSpec{URL: testRedisURL}
	})
	eventually(t, waitFor, exists(&networkingv1.Ingress{}, "lobby", false))
	eventually(t, waitFor, exists(&autoscalingv2.HorizontalPodAutoscaler{}, "lobby", false))
	eventually(t, waitFor, exists(&policyv1.PodDisruptionBudget{}, "lobby", true))
	for _, o := range []client.Object{&appsv1.StatefulSet{}, &corev1.Service{}, &networkingv1.NetworkPolicy{}} {
		eventually(t, waitFor, exists(o, "lobby-redis", false))
	}
	// The password Secret goes with its owner, the deleted StatefulSet: the
	// garbage collector (which envtest does not run) removes it.
	if err := tc.get(ns, "lobby-redis", secret); err == nil {
		if err := controlledBy(secret, set); err != nil {
			t.Error(err)
		}
	} else if !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		if err := tc.get(ns, "lobby", d); err != nil {
			return err
		}
		return firstErr(
			eq("replicas back under the operator", ptr.Deref(d.Spec.Replicas, 0), 2),
			eq("no password env", envSecret(d.Spec.Template.Spec.Containers[0], "HUBBUB_REDIS_PASSWORD"), ""),
		)
	})

	// Something of the same name that the room does not own is never
	// taken over: the room reports it instead.
	foreign := &policyv1.PodDisruptionBudget{}
	if err := tc.get(ns, "lobby", foreign); err != nil {
		t.Fatal(err)
	}
	if err := tc.c.Delete(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	mine := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lobby"},
		Spec:       networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "elsewhere", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
	}
	if err := tc.c.Create(ctx, mine); err != nil {
		t.Fatal(err)
	}
	update(func(r *chatv1alpha1.ChatRoom) { r.Spec.Ingress = &chatv1alpha1.IngressSpec{Host: "lobby.example.com"} })
	eventually(t, waitFor, func() error {
		r := tc.room(t, ns, "lobby")
		if err := wantCondition(r, chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonApplyFailed); err != nil {
			return err
		}
		c, _ := condition(r, chatv1alpha1.ConditionDegraded)
		if !strings.Contains(c.Message, "Ingress lobby exists and is not controlled by this ChatRoom") {
			return fmt.Errorf("message %q", c.Message)
		}
		return nil
	})
	if err := tc.get(ns, "lobby", mine); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(mine); ref != nil || mine.Spec.DefaultBackend.Service.Name != "elsewhere" {
		t.Errorf("the foreign Ingress was taken over: owner %v, spec %+v", ref, mine.Spec)
	}
}

// TestImagePullBackOff: a chat pod that cannot pull its image degrades the room.
func TestImagePullBackOff(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns, _ := tc.minimalRoom(t)
	d := &appsv1.Deployment{}
	eventually(t, waitFor, func() error { return tc.get(ns, "lobby", d) })

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "lobby-7d4b9-x2x", Labels: d.Spec.Template.Labels},
		Spec:       d.Spec.Template.Spec,
	}
	if err := tc.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "chat", Image: testChatImage,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}},
	}}
	if err := tc.c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitFor, func() error {
		return wantCondition(tc.room(t, ns, "lobby"), chatv1alpha1.ConditionDegraded, metav1.ConditionTrue, chatv1alpha1.ReasonImagePullBackOff)
	})
}

// TestValidation: the API server refuses invalid ChatRooms with a message
// naming the field.
func TestValidation(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ns := tc.newNamespace(t)
	tests := []struct {
		name  string
		room  func(*chatv1alpha1.ChatRoom)
		field string // must appear in the error
		msg   string // must appear in the error
	}{
		{"replicas above 100", func(r *chatv1alpha1.ChatRoom) { r.Spec.Replicas = ptr.To[int32](101) }, "spec.replicas", "less than or equal to 100"},
		{"negative replicas", func(r *chatv1alpha1.ChatRoom) { r.Spec.Replicas = ptr.To[int32](-1) }, "spec.replicas", "greater than or equal to 0"},
		{"bad channel name", func(r *chatv1alpha1.ChatRoom) { r.Spec.Channels = []chatv1alpha1.ChannelName{"general", "Bad_Name"} }, "spec.channels[1]", "should match"},
		{"duplicate channels", func(r *chatv1alpha1.ChatRoom) {
			r.Spec.Channels = []chatv1alpha1.ChannelName{"general", "random", "general"}
		}, "spec.channels", "channels must be unique"},
		{"too many channels", func(r *chatv1alpha1.ChatRoom) {
			for i := range 101 {
				r.Spec.Channels = append(r.Spec.Channels, chatv1alpha1.ChannelName("c"+strconv.Itoa(i)))
			}
		}, "spec.channels", "must have at most 100 items"},
		{"redis url and managed", func(r *chatv1alpha1.ChatRoom) {
			r.Spec.Redis = &chatv1alpha1.RedisSpec{URL: "redis://r:6379", Managed: &chatv1alpha1.ManagedRedisSpec{}}
		}, "spec.redis", "set either url (external Redis) or managed, not both"},
		{"password without url", func(r *chatv1alpha1.ChatRoom) {
			r.Spec.Redis = &chatv1alpha1.RedisSpec{PasswordSecretRef: &chatv1alpha1.SecretKeySelector{Name: "s"}}
		}, "spec.redis", "passwordSecretRef needs url"},
		{"redis url scheme", func(r *chatv1alpha1.ChatRoom) { r.Spec.Redis = &chatv1alpha1.RedisSpec{URL: "http://r:6379"} }, "spec.redis.url", "should match"},
		{"autoscaling min above max", func(r *chatv1alpha1.ChatRoom) {
			r.Spec.Autoscaling = &chatv1alpha1.AutoscalingSpec{MinReplicas: 5, MaxReplicas: 3}
		}, "spec.autoscaling", "minReplicas must not exceed maxReplicas"},
		{"registration", func(r *chatv1alpha1.ChatRoom) { r.Spec.Registration = "Invite" }, "spec.registration", "supported values"},
		{"admin who cannot be a user", func(r *chatv1alpha1.ChatRoom) { r.Spec.Admins = []chatv1alpha1.Username{"alice", "Root Admin"} }, "spec.admins[1]", "should match"},
		{"channel members below 2", func(r *chatv1alpha1.ChatRoom) { r.Spec.Limits.MaxChannelMembers = 1 }, "spec.limits.maxChannelMembers", "greater than or equal to 2"},
		{"session TTL too short", func(r *chatv1alpha1.ChatRoom) { r.Spec.SessionTTL = &metav1.Duration{Duration: time.Second} }, "spec.sessionTTL", "at least 1m"},
		{"service port", func(r *chatv1alpha1.ChatRoom) { r.Spec.Service.Port = 70000 }, "spec.service.port", "less than or equal to 65535"},
		{"ingress host", func(r *chatv1alpha1.ChatRoom) { r.Spec.Ingress = &chatv1alpha1.IngressSpec{Host: "Not A Host"} }, "spec.ingress.host", "should match"},
		{"trusted proxy not an address", func(r *chatv1alpha1.ChatRoom) {
			r.Spec.TrustedProxies = []chatv1alpha1.TrustedProxy{"10.0.0.0/8", "ingress-nginx"}
		}, "spec.trustedProxies[1]", "must be a CIDR (10.0.0.0/8) or an IP address"},
		{"name too long", func(r *chatv1alpha1.ChatRoom) { r.Name = strings.Repeat("a", 47) }, "metadata.name", "at most 46 characters"},
		{"name not a DNS label", func(r *chatv1alpha1.ChatRoom) { r.Name = "chat.room" }, "metadata.name", "DNS label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			room := &chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "room-" + strconv.Itoa(len(tt.name))}}
			tt.room(room)
			err := tc.c.Create(context.Background(), room)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tt.field) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not name %q with %q", err, tt.field, tt.msg)
			}
		})
	}

	t.Run("highAvailability cannot be changed", func(t *testing.T) {
		ctx := context.Background()
		managed := func(ha bool) *chatv1alpha1.RedisSpec {
			return &chatv1alpha1.RedisSpec{Managed: &chatv1alpha1.ManagedRedisSpec{HighAvailability: ha}}
		}
		tests := []struct {
			name     string
			from, to *chatv1alpha1.RedisSpec
			refused  bool
		}{
			{"lone to replicated", nil, managed(true), true},
			{"replicated to lone", managed(true), managed(false), true},
			{"an empty redis (managed) to replicated", &chatv1alpha1.RedisSpec{}, managed(true), true},
			// A new Redis either way, as the room's author asked.
			{"replicated to external", managed(true), &chatv1alpha1.RedisSpec{URL: "redis://r:6379"}, false},
			{"external to replicated", &chatv1alpha1.RedisSpec{URL: "redis://r:6379"}, managed(true), false},
			{"replicated, unchanged", managed(true), managed(true), false},
		}
		for i, tt := range tests {
			room := &chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ha-" + strconv.Itoa(i)}, Spec: chatv1alpha1.ChatRoomSpec{Redis: tt.from}}
			if err := tc.c.Create(ctx, room); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			room.Spec.Redis = tt.to
			err := tc.c.Update(ctx, room)
			switch {
			case tt.refused && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.redis.managed.highAvailability") || !strings.Contains(err.Error(), "cannot be changed after creation")):
				t.Errorf("%s: got %v, want Invalid naming spec.redis.managed.highAvailability", tt.name, err)
			case !tt.refused && err != nil:
				t.Errorf("%s: %v", tt.name, err)
			}
		}
	})

	t.Run("managed storage is immutable", func(t *testing.T) {
		room := &chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "immutable"}}
		if err := tc.c.Create(context.Background(), room); err != nil {
			t.Fatal(err)
		}
		room.Spec.Redis.Managed.Storage = ptr.To(resource.MustParse("2Gi"))
		err := tc.c.Update(context.Background(), room)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.redis.managed.storage") {
			t.Fatalf("got %v, want Invalid naming spec.redis.managed.storage", err)
		}
	})
}

// TestDefaults: the API server's defaulting (CRD markers) and SetDefaults,
// which the reconciler relies on, agree.
func TestDefaults(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ns := tc.newNamespace(t)
	for _, spec := range []chatv1alpha1.ChatRoomSpec{
		{},
		{Autoscaling: &chatv1alpha1.AutoscalingSpec{MaxReplicas: 4}, Redis: &chatv1alpha1.RedisSpec{URL: "redis://r:6379"}},
		{Redis: &chatv1alpha1.RedisSpec{Managed: &chatv1alpha1.ManagedRedisSpec{}}},
		{Redis: &chatv1alpha1.RedisSpec{Managed: &chatv1alpha1.ManagedRedisSpec{HighAvailability: true}}},
	} {
		room := &chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "d-"}, Spec: spec}
		want := room.DeepCopy()
		chatv1alpha1.SetDefaults(want)
		if err := tc.c.Create(context.Background(), room); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.Spec, room.Spec); diff != "" {
			t.Errorf("API server defaults differ from SetDefaults (-SetDefaults +server):\n%s", diff)
		}
	}
}

// envSecret is "<secret>/<key>" of the container's env var name taken from
// a Secret, or "".
func envSecret(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return ""
}

func eq[T comparable](what string, got, want T) error {
	if got != want {
		return fmt.Errorf("%s = %v, want %v", what, got, want)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

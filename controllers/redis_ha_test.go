package controllers

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// haRoom is a room with a highly available managed Redis.
func haRoom(managed chatv1alpha1.ManagedRedisSpec) *chatv1alpha1.ChatRoom {
	managed.HighAvailability = true
	return room(chatv1alpha1.ChatRoomSpec{Redis: &chatv1alpha1.RedisSpec{Managed: &managed}})
}

func TestDesiredHARedisStatefulSet(t *testing.T) {
	class := "fast"
	tests := []struct {
		name        string
		managed     chatv1alpha1.ManagedRedisSpec
		wantStorage string
		wantClass   string
		wantCPU     string
	}{
		{"defaults", chatv1alpha1.ManagedRedisSpec{}, "1Gi", "", "50m"},
		{"storage, class and resources", chatv1alpha1.ManagedRedisSpec{
			Storage: ptr.To(resource.MustParse("10Gi")), StorageClassName: &class,
			Resources: &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			},
		}, "10Gi", "fast", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := haRoom(tt.managed)
			s, err := desiredRedisStatefulSet(r, "redis:x", "gen-1")
			if err != nil {
				t.Fatal(err)
			}
			spec := s.Spec
			pod := spec.Template.Spec
			if len(pod.Containers) != 2 || len(pod.InitContainers) != 0 {
				t.Fatalf("containers %d, init containers %d; want redis and sentinel", len(pod.Containers), len(pod.InitContainers))
			}
			redis, sentinel := pod.Containers[0], pod.Containers[1]
			claim := spec.VolumeClaimTemplates[0].Spec
			storage := (*claim.Resources.Requests)[corev1.ResourceStorage]
			cpu := (*redis.Resources.Requests)[corev1.ResourceCPU]
			anti := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
			if err := firstErr(
				eq("replicas", *spec.Replicas, 3),
				eq("service", *spec.ServiceName, "lobby-redis-headless"),
				eq("started together", string(*spec.PodManagementPolicy), "Parallel"),
				eq("storage", storage.String(), tt.wantStorage),
				eq("class", ptr.Deref(claim.StorageClassName, ""), tt.wantClass),
				eq("claims deleted with the set", string(*spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted), "Delete"),
				eq("password generation", spec.Template.Annotations[PasswordGenerationAnnotation], "gen-1"),
				eq("user", *pod.SecurityContext.RunAsUser, int64(redisUID)),
				eq("fsGroup", *pod.SecurityContext.FSGroup, int64(redisGID)),
				eq("redis container", *redis.Name, "redis"),
				eq("redis image", *redis.Image, "redis:x"),
				eq("redis port", *redis.Ports[0].ContainerPort, int32(redisPort)),
				eq("redis cpu", cpu.String(), tt.wantCPU),
				eq("redis command", strings.Join(redis.Command[:2], " "), "sh -c"),
				eq("redis script", redis.Command[2], redisHAScript),
				eq("sentinel container", *sentinel.Name, "sentinel"),
				eq("sentinel image: the same", *sentinel.Image, "redis:x"),
				eq("sentinel port", *sentinel.Ports[0].ContainerPort, int32(sentinelPort)),
				eq("sentinel port name", *sentinel.Ports[0].Name, "sentinel"),
				eq("sentinel script", sentinel.Command[2], sentinelScript),
				eq("sentinel probe", strings.Join(sentinel.ReadinessProbe.Exec.Command, " "), "sh -c redis-cli -h 127.0.0.1 -p 26379 ping | grep -q PONG"),
				eq("spread over nodes", *anti.TopologyKey, "kubernetes.io/hostname"),
				eq("spread: the room's redis pods", anti.LabelSelector.MatchLabels[LabelInstance]+"/"+anti.LabelSelector.MatchLabels[LabelComponent], "lobby/redis"),
			); err != nil {
				t.Error(err)
			}
			for _, c := range pod.Containers {
				if got := *c.VolumeMounts[0].Name + ":" + *c.VolumeMounts[0].MountPath; got != "data:/data" {
					t.Errorf("%s mounts %s, want the data volume at /data", *c.Name, got)
				}
				want := map[string]string{
					"POD_NAME":        "field:metadata.name",
					"REDIS_HOST":      "$(POD_NAME).lobby-redis-headless.ns.svc",
					"REDIS_HOSTS":     "lobby-redis-0.lobby-redis-headless.ns.svc lobby-redis-1.lobby-redis-headless.ns.svc lobby-redis-2.lobby-redis-headless.ns.svc",
					"SENTINEL_MASTER": "lobby",
					"REDIS_PORT":      "6379",
					"SENTINEL_PORT":   "26379",
					"DATA_DIR":        "/data",
					"REDIS_PASSWORD":  "secret:lobby-redis/password",
					"REDISCLI_AUTH":   "secret:lobby-redis/password",
				}
				if diff := cmp.Diff(want, envOf(c)); diff != "" {
					t.Errorf("%s env (-want +got):\n%s", *c.Name, diff)
				}
				// POD_NAME comes first: the kubelet expands $(POD_NAME)
				// only in variables defined after it.
				if *c.Env[0].Name != "POD_NAME" {
					t.Errorf("%s: first variable %s, want POD_NAME", *c.Name, *c.Env[0].Name)
				}
				// A pod waiting for a failover away from it, before it listens,
				// is not killed by its liveness probe.
				if p := c.StartupProbe; p == nil || p.TCPSocket == nil || ptr.Deref(p.PeriodSeconds, 0)*ptr.Deref(p.FailureThreshold, 0) < 120 {
					t.Errorf("%s: startup probe %+v, want one allowing at least 2 minutes", *c.Name, p)
				}
			}
		})
	}
}

// envOf is a container's environment: values as they are, others as
// "secret:NAME/KEY" or "field:PATH".
func envOf(c corev1ac.ContainerApplyConfiguration) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.Value != nil:
			env[*e.Name] = *e.Value
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			env[*e.Name] = "secret:" + *e.ValueFrom.SecretKeyRef.Name + "/" + *e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[*e.Name] = "field:" + *e.ValueFrom.FieldRef.FieldPath
		}
	}
	return env
}

// TestHARedisScripts: the kubelet expands $(NAME) and turns $$ into $ in a
// container's command, so the scripts must hold neither, or they would not
// run as written; and what reaches the pod spec is the code without the
// comments.
func TestHARedisScripts(t *testing.T) {
	kubeletExpands := regexp.MustCompile(`\$\$|\$\([A-Za-z_][A-Za-z0-9_]*\)`)
	for name, src := range map[string]string{"redis-ha.sh": redisHAScriptSource, "sentinel.sh": sentinelScriptSource} {
		if m := kubeletExpands.FindString(src); m != "" {
			t.Errorf("%s holds %q, which the kubelet would expand", name, m)
		}
		compact := compactScript(src)
		if strings.Contains(compact, "\n#") || strings.HasPrefix(compact, "#") || strings.Contains(compact, "\n\n") {
			t.Errorf("%s: comment or blank lines left in the pod's copy:\n%s", name, compact)
		}
		if len(compact) > len(src)/2+500 || !strings.Contains(compact, "redis-") {
			t.Errorf("%s: pod's copy is %d bytes of %d", name, len(compact), len(src))
		}
	}
	// The settings the design relies on (docs/operator.md).
	for _, want := range []string{"--min-replicas-to-write 1", "--min-replicas-max-lag 10", "--masterauth", "--replica-announce-ip", "--appendonly yes"} {
		if !strings.Contains(redisHAScript, want) {
			t.Errorf("redis-ha.sh lacks %s", want)
		}
	}
	for _, want := range []string{"sentinel resolve-hostnames yes", "sentinel announce-hostnames yes", "sentinel announce-ip $REDIS_HOST",
		"requirepass $REDIS_PASSWORD", "sentinel sentinel-pass $REDIS_PASSWORD", "sentinel auth-pass $SENTINEL_MASTER $REDIS_PASSWORD",
		"sentinel monitor $SENTINEL_MASTER $primary $REDIS_PORT 2", "down-after-milliseconds $SENTINEL_MASTER 5000", "failover-timeout $SENTINEL_MASTER 60000"} {
		if !strings.Contains(sentinelScript, want) {
			t.Errorf("sentinel.sh lacks %q", want)
		}
	}
}

func TestDesiredRedisHeadlessServiceAndBudget(t *testing.T) {
	r := haRoom(chatv1alpha1.ManagedRedisSpec{})
	svc := desiredRedisHeadlessService(r)
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s:%d->%s", *p.Name, *p.Port, p.TargetPort.String()))
	}
	pdb := desiredRedisDisruptionBudget(r)
	if err := firstErr(
		eq("name", *svc.Name, "lobby-redis-headless"),
		eq("headless", *svc.Spec.ClusterIP, "None"),
		eq("publishes unready pods", *svc.Spec.PublishNotReadyAddresses, true),
		eq("selects the room's Redis pods", svc.Spec.Selector[LabelInstance]+"/"+svc.Spec.Selector[LabelComponent], "lobby/redis"),
		eq("ports", strings.Join(ports, " "), "redis:6379->redis sentinel:26379->sentinel"),
		eq("owner", *svc.OwnerReferences[0].UID, r.UID),
		eq("budget name", *pdb.Name, "lobby-redis"),
		eq("one Redis pod at a time", pdb.Spec.MaxUnavailable.String(), "1"),
		eq("budget selects the room's Redis pods", pdb.Spec.Selector.MatchLabels[LabelInstance]+"/"+pdb.Spec.Selector.MatchLabels[LabelComponent], "lobby/redis"),
		eq("budget owner", *pdb.OwnerReferences[0].UID, r.UID),
	); err != nil {
		t.Error(err)
	}
}

// TestHARedisNetworkPolicy: the chat pods of the room and the Redis pods
// themselves (replication, sentinels) may reach Redis and Sentinel; no one
// else, from no other namespace.
func TestHARedisNetworkPolicy(t *testing.T) {
	np := desiredRedisNetworkPolicy(haRoom(chatv1alpha1.ManagedRedisSpec{}))
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("%d ingress rules, want 1", len(np.Spec.Ingress))
	}
	rule := np.Spec.Ingress[0]
	var peers, ports []string
	for _, f := range rule.From {
		if f.NamespaceSelector != nil || f.IPBlock != nil || f.PodSelector == nil {
			t.Errorf("peer %+v: want pods of the room's namespace only", f)
			continue
		}
		l := f.PodSelector.MatchLabels
		peers = append(peers, l[LabelName]+"/"+l[LabelInstance]+"/"+l[LabelComponent])
	}
	for _, p := range rule.Ports {
		ports = append(ports, fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String()))
	}
	if err := firstErr(
		eq("peers", strings.Join(peers, " "), "hubbub/lobby/chat hubbub/lobby/redis"),
		eq("ports", strings.Join(ports, " "), "TCP/6379 TCP/26379"),
		eq("selects the room's Redis pods", np.Spec.PodSelector.MatchLabels[LabelComponent], ComponentRedis),
		eq("policy types", fmt.Sprint(np.Spec.PolicyTypes), "[Ingress]"),
	); err != nil {
		t.Error(err)
	}
}

// TestLoneRedisUnchanged: without highAvailability the managed Redis is
// what it always was: one pod, one container, its own Service, and a
// configuration without Sentinel.
func TestLoneRedisUnchanged(t *testing.T) {
	r := room(chatv1alpha1.ChatRoomSpec{})
	s, err := desiredRedisStatefulSet(r, "redis:x", "h")
	if err != nil {
		t.Fatal(err)
	}
	pod := s.Spec.Template.Spec
	c := pod.Containers[0]
	np := desiredRedisNetworkPolicy(r)
	data := configEnv(chatConfig(r))
	if err := firstErr(
		eq("replicas", *s.Spec.Replicas, 1),
		eq("service", *s.Spec.ServiceName, "lobby-redis"),
		eq("pod management: the default", s.Spec.PodManagementPolicy == nil, true),
		eq("containers", len(pod.Containers), 1),
		eq("no affinity", pod.Affinity == nil, true),
		eq("command", strings.Join(c.Command, " "), "redis-server"),
		eq("args", strings.Join(c.Args, " "), "--appendonly yes --dir /data --requirepass $(REDIS_PASSWORD)"),
		eq("env", fmt.Sprint(slices.Sorted(maps.Keys(envOf(c)))), "[REDISCLI_AUTH REDIS_PASSWORD]"),
		eq("policy peers", len(np.Spec.Ingress[0].From), 1),
		eq("policy ports", len(np.Spec.Ingress[0].Ports), 1),
		eq("redis url", data[config.EnvName("redis-url")], "redis://lobby-redis.ns.svc:6379"),
		eq("no replica acks", data[config.EnvName("redis-min-replica-acks")], ""),
	); err != nil {
		t.Error(err)
	}
	ha := configEnv(chatConfig(haRoom(chatv1alpha1.ManagedRedisSpec{})))
	if got := ha[config.EnvName("redis-min-replica-acks")]; got != "1" {
		t.Errorf("highly available: %s=%q, want 1", config.EnvName("redis-min-replica-acks"), got)
	}
}

func TestRedisPodOf(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"lobby-redis-1.lobby-redis-headless.team-a.svc:6379", "lobby-redis-1"},
		{"lobby-redis-0.lobby-redis-headless.team-a.svc.cluster.local:6379", "lobby-redis-0"},
		{"lobby-redis-2", "lobby-redis-2"},
		{"10.1.2.3:6379", "10.1.2.3"},
		{"[fd00::7]:6379", "fd00::7"},
		{"", `""`},
		{"<script>:1", `"<script>"`},
		{strings.Repeat("ä", 100) + ":1", `"` + strings.Repeat("ä", 32) + `..."`},
	}
	for _, tt := range tests {
		if got := redisPodOf(tt.addr); got != tt.want {
			t.Errorf("redisPodOf(%q) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

// TestHARedisStatusConditions: RedisReady names the primary and counts the
// replicas in sync, as a chat pod reports them; fewer than two in sync is
// Degraded. A lone Redis keeps its old wording and is never short of
// replicas.
func TestHARedisStatusConditions(t *testing.T) {
	primary := "lobby-redis-1.lobby-redis-headless.team-a.svc:6379"
	read := func(r *protocol.RedisStats) presenceResult {
		return presenceResult{state: presenceRead, count: 3, redis: r}
	}
	tests := []struct {
		name                     string
		ha                       bool
		presence                 presenceResult
		redisReady, degraded     string // "Status/Reason"
		readyMessage, degradedIn string
	}{
		{"in sync", true, read(&protocol.RedisStats{Primary: primary, Replicas: 2, ReplicasInSync: 2}),
			"True/RedisReachable", "False/AsExpected", "primary is lobby-redis-1; 2 of 2 replicas in sync", ""},
		{"one lagging", true, read(&protocol.RedisStats{Primary: primary, Replicas: 2, ReplicasInSync: 1}),
			"True/RedisReachable", "True/RedisReplicasOutOfSync", "primary is lobby-redis-1; 1 of 2 replicas in sync (2 connected)",
			"1 of 2 Redis replicas in sync with the primary lobby-redis-1 (2 connected)"},
		{"none connected", true, read(&protocol.RedisStats{Primary: primary}),
			"True/RedisReachable", "True/RedisReplicasOutOfSync", "primary is lobby-redis-1; 0 of 2 replicas in sync",
			"0 of 2 Redis replicas in sync"},
		{"not reported (older chat image)", true, read(nil),
			"True/RedisReachable", "False/AsExpected", "did not report the Redis replication", ""},
		{"redis down wins", true, presenceResult{state: presenceFailed, err: fmt.Errorf("storage unavailable")},
			"False/RedisUnreachable", "True/RedisUnreachable", "storage unavailable", "storage unavailable"},
		{"lone redis", false, read(&protocol.RedisStats{Primary: "lobby-redis.team-a.svc:6379"}),
			"True/RedisReachable", "False/AsExpected", "a chat pod read the room's presence from Redis", ""},
	}
	now := metav1.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := computeStatus(statusInputs{generation: 1, deployment: deployment(2, 2, depAvailable), presence: tt.presence, redisHA: tt.ha}, chatv1alpha1.ChatRoomStatus{}, now)
			ready := findCondition(st.Conditions, chatv1alpha1.ConditionRedisReady)
			degraded := findCondition(st.Conditions, chatv1alpha1.ConditionDegraded)
			if err := firstErr(
				eq("RedisReady", string(ready.Status)+"/"+ready.Reason, tt.redisReady),
				eq("Degraded", string(degraded.Status)+"/"+degraded.Reason, tt.degraded),
				eq("RedisReady message", strings.Contains(ready.Message, tt.readyMessage), true),
				eq("Degraded message", strings.Contains(degraded.Message, tt.degradedIn), true),
				eq("online", st.OnlineUsers, int32(tt.presence.count)),
			); err != nil {
				t.Errorf("%v\nRedisReady: %q\nDegraded: %q", err, ready.Message, degraded.Message)
			}
		})
	}
}

// TestHARedisStatus: on the API server, a highly available room's status
// follows what its chat pod reports of the Redis replication: which pod is
// the primary, and Degraded while a replica is out of sync.
func TestHARedisStatus(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ns := tc.newNamespace(t)
	room := roomOf(t, loadSample(t, "chat_v1alpha1_chatroom_ha_redis.yaml"))
	tc.createAll(t, ns, room)
	addr := tc.runChatPod(t, ns, "plaza")
	tc.markRedisReady(t, ns, "plaza-redis")
	report := func(primaryPod int, inSync int) {
		tc.presence.answerStats(addr, protocol.Stats{OnlineUsers: 4, Redis: &protocol.RedisStats{
			Primary:  fmt.Sprintf("plaza-redis-%d.plaza-redis-headless.%s.svc:6379", primaryPod, ns),
			Replicas: 2, ReplicasInSync: inSync,
		}}, nil)
	}
	status := func(readyMessage string, degraded metav1.ConditionStatus, reason string) func() error {
		return func() error {
			r := tc.room(t, ns, "plaza")
			c, err := condition(r, chatv1alpha1.ConditionRedisReady)
			if err != nil {
				return err
			}
			return firstErr(
				eq("onlineUsers", r.Status.OnlineUsers, 4),
				wantCondition(r, chatv1alpha1.ConditionRedisReady, metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable),
				eq("RedisReady message", c.Message, readyMessage),
				wantCondition(r, chatv1alpha1.ConditionDegraded, degraded, reason),
			)
		}
	}

	report(0, 2)
	eventually(t, waitFor, status("primary is plaza-redis-0; 2 of 2 replicas in sync", metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected))

	// A failover: the sentinels promoted pod 1, pod 0 is not back yet.
	report(1, 1)
	eventually(t, waitFor, status("primary is plaza-redis-1; 1 of 2 replicas in sync (2 connected)", metav1.ConditionTrue, chatv1alpha1.ReasonRedisReplicasOutOfSync))
	eventually(t, waitFor, func() error {
		return hasEvent(tc.events(t, tc.room(t, ns, "plaza")), corev1.EventTypeWarning, chatv1alpha1.ReasonRedisReplicasOutOfSync)
	})
	d, err := condition(tc.room(t, ns, "plaza"), chatv1alpha1.ConditionDegraded)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1 of 2 Redis replicas in sync with the primary plaza-redis-1 (2 connected)"; !strings.Contains(d.Message, want) {
		t.Errorf("Degraded message %q, want it to say %q", d.Message, want)
	}

	// Pod 0 rejoined as a replica and caught up.
	report(1, 2)
	eventually(t, waitFor, status("primary is plaza-redis-1; 2 of 2 replicas in sync", metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected))
	eventually(t, waitFor, func() error {
		return hasEvent(tc.events(t, tc.room(t, ns, "plaza")), corev1.EventTypeNormal, "Recovered")
	})
}

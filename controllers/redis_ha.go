package controllers

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/ptr"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// A highly available managed Redis (spec.redis.managed.highAvailability):
// one StatefulSet of redisHAPods pods, each running redis-server and
// redis-sentinel from the managed Redis image, with stable host names
// through a headless Service. docs/operator.md tells how it starts, fails
// over and comes back; the scripts under scripts/ say it in detail.
const (
	// redisHAPods is the number of Redis pods: a primary and two replicas.
	redisHAPods = 3
	// redisHAReplicas is how many replicas the primary should have in sync.
	redisHAReplicas = redisHAPods - 1

	sentinelPort     = 26379
	sentinelPortName = "sentinel"
	// sentinelContainer names the sentinel container of a Redis pod.
	sentinelContainer = "sentinel"

	// redisDataDir is where each Redis pod's volume is mounted: Redis'
	// append-only file, and the sentinel's configuration (its state).
	redisDataDir = "/data"
)

// The scripts the two containers of a highly available Redis pod run
// (sh -c): how a pod finds the primary when it starts, and the sentinel's
// configuration. They need sh, timeout and grep besides the Redis programs,
// which the official Redis images and hack/kind/images.sh's have.
var (
	//go:embed scripts/redis-ha.sh
	redisHAScriptSource string
	//go:embed scripts/sentinel.sh
	sentinelScriptSource string

	redisHAScript  = compactScript(redisHAScriptSource)
	sentinelScript = compactScript(sentinelScriptSource)
)

// compactScript drops a script's comment lines and blank lines: they are
// for the source, not for every pod spec.
func compactScript(src string) string {
	var b strings.Builder
	for _, line := range strings.Split(src, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// sentinelResources are each sentinel container's.
var sentinelResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
}

// redisHAHost is the stable host name of Redis pod i, through the headless
// Service. It is relative to the cluster domain (resolved through the pods'
// DNS search path), like the chat pods' address of a lone Redis.
func redisHAHost(room *chatv1alpha1.ChatRoom, i int) string {
	return fmt.Sprintf("%s-%d.%s.%s.svc", room.RedisName(), i, room.RedisHeadlessName(), room.Namespace)
}

// redisHAHosts are the host names of every Redis pod, pod 0 first.
func redisHAHosts(room *chatv1alpha1.ChatRoom) []string {
	hosts := make([]string, redisHAPods)
	for i := range hosts {
		hosts[i] = redisHAHost(room, i)
	}
	return hosts
}

// sentinelMasterName is the name the sentinels know the room's primary by:
// the room's name (each room has sentinels of its own).
func sentinelMasterName(room *chatv1alpha1.ChatRoom) string { return room.Name }

// managedSentinelURL is the chat pods' address of a highly available
// managed Redis: every sentinel, and the name they know the primary by.
func managedSentinelURL(room *chatv1alpha1.ChatRoom) string {
	addrs := make([]string, redisHAPods)
	for i, h := range redisHAHosts(room) {
		addrs[i] = h + ":" + strconv.Itoa(sentinelPort)
	}
	return fmt.Sprintf("redis-sentinel://%s/?master=%s", strings.Join(addrs, ","), sentinelMasterName(room))
}

// desiredRedisHeadlessService gives each Redis pod of a highly available
// Redis a stable host name (<pod>.<room>-redis-headless.<namespace>.svc),
// which its redis-server and sentinel announce. It publishes pods that are
// not ready, so that sentinels and replicas find each other while starting.
func desiredRedisHeadlessService(room *chatv1alpha1.ChatRoom) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(room.RedisHeadlessName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentRedis)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithClusterIP(corev1.ClusterIPNone).
			WithPublishNotReadyAddresses(true).
			WithSelector(selectorLabels(room, ComponentRedis)).
			WithPorts(
				corev1ac.ServicePort().
					WithName(redisPortName).
					WithProtocol(corev1.ProtocolTCP).
					WithPort(redisPort).
					WithTargetPort(intstr.FromString(redisPortName)),
				corev1ac.ServicePort().
					WithName(sentinelPortName).
					WithProtocol(corev1.ProtocolTCP).
					WithPort(sentinelPort).
					WithTargetPort(intstr.FromString(sentinelPortName))))
}

// desiredRedisDisruptionBudget lets voluntary disruptions (node drains)
// take one Redis pod of a highly available Redis at a time.
func desiredRedisDisruptionBudget(room *chatv1alpha1.ChatRoom) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(room.RedisName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentRedis)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentRedis))))
}

// desiredHARedisStatefulSet runs a highly available Redis: redisHAPods pods,
// started together, each with a redis container (redis-server with AOF on
// its own volume, a primary or a replica) and a sentinel container
// (redis-sentinel, its state on the same volume). The pods prefer distinct
// nodes. Both containers authenticate with the managed password: Redis
// (requirepass, masterauth), Sentinel (requirepass, auth-pass to Redis,
// sentinel-pass to the other sentinels).
func desiredHARedisStatefulSet(room *chatv1alpha1.ChatRoom, image, passwordGeneration string) (*appsv1ac.StatefulSetApplyConfiguration, error) {
	m := room.Spec.Redis.ManagedOrDefault()
	resources, err := resourcesOr(m.Resources, defaultRedisResources)
	if err != nil {
		return nil, err
	}
	sentinelRes, err := resourcesOr(nil, sentinelResources)
	if err != nil {
		return nil, err
	}
	data := func() *corev1ac.VolumeMountApplyConfiguration {
		return corev1ac.VolumeMount().WithName("data").WithMountPath(redisDataDir)
	}
	redis := corev1ac.Container().
		WithName(ComponentRedis).
		WithImage(image).
		WithCommand("sh", "-c", redisHAScript).
		WithEnv(redisHAEnv(room)...).
		WithPorts(corev1ac.ContainerPort().WithName(redisPortName).WithContainerPort(redisPort).WithProtocol(corev1.ProtocolTCP)).
		// Ready once it answers: a replica still loading what its primary
		// sends answers LOADING. Not whether it is in sync: a rolling update
		// that changes the password must get past replicas that cannot
		// reach a primary with the old one.
		WithReadinessProbe(corev1ac.Probe().
			WithExec(corev1ac.ExecAction().WithCommand("sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG")).
			WithPeriodSeconds(5)).
		WithLivenessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromString(redisPortName))).
			WithPeriodSeconds(10)).
		// A pod that comes back while the sentinels fail over from it waits
		// for them (up to about a minute) before redis-server listens: the
		// liveness probe must not kill it meanwhile.
		WithStartupProbe(haStartupProbe(redisPortName)).
		WithResources(resources).
		WithSecurityContext(restrictedContainerSecurityContext()).
		WithVolumeMounts(data())
	sentinel := corev1ac.Container().
		WithName(sentinelContainer).
		WithImage(image).
		WithCommand("sh", "-c", sentinelScript).
		WithEnv(redisHAEnv(room)...).
		WithPorts(corev1ac.ContainerPort().WithName(sentinelPortName).WithContainerPort(sentinelPort).WithProtocol(corev1.ProtocolTCP)).
		WithReadinessProbe(corev1ac.Probe().
			WithExec(corev1ac.ExecAction().WithCommand("sh", "-c", "redis-cli -h 127.0.0.1 -p "+strconv.Itoa(sentinelPort)+" ping | grep -q PONG")).
			WithPeriodSeconds(5)).
		WithLivenessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromString(sentinelPortName))).
			WithPeriodSeconds(10)).
		WithStartupProbe(haStartupProbe(sentinelPortName)).
		WithResources(sentinelRes).
		WithSecurityContext(restrictedContainerSecurityContext()).
		WithVolumeMounts(data())

	return appsv1ac.StatefulSet(room.RedisName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentRedis)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(redisHAPods).
			WithServiceName(room.RedisHeadlessName()).
			// All at once: a pod must not wait for another to be ready (after
			// all were down, pod 0 may be a replica whose primary is pod 2).
			// Rolling updates still replace one pod at a time.
			WithPodManagementPolicy(appsv1.ParallelPodManagement).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentRedis))).
			WithPersistentVolumeClaimRetentionPolicy(redisClaimRetention()).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(objectLabels(room, ComponentRedis)).
				WithAnnotations(map[string]string{PasswordGenerationAnnotation: passwordGeneration}).
				WithSpec(corev1ac.PodSpec().
					WithAutomountServiceAccountToken(false).
					WithEnableServiceLinks(false).
					WithSecurityContext(restrictedPodSecurityContext(redisUID, redisGID, ptr.To[int64](redisGID))).
					// On distinct nodes where the cluster has them: one node
					// going down then takes one Redis pod with it.
					WithAffinity(corev1ac.Affinity().WithPodAntiAffinity(corev1ac.PodAntiAffinity().
						WithPreferredDuringSchedulingIgnoredDuringExecution(corev1ac.WeightedPodAffinityTerm().
							WithWeight(100).
							WithPodAffinityTerm(corev1ac.PodAffinityTerm().
								WithTopologyKey(corev1.LabelHostname).
								WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentRedis))))))).
					WithContainers(redis, sentinel))).
			WithVolumeClaimTemplates(redisClaimTemplate(room, m))), nil
}

// haStartupProbe holds off the liveness probe of a highly available Redis
// pod's container until it listens on port, for up to 5 minutes.
func haStartupProbe(port string) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().
		WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromString(port))).
		WithPeriodSeconds(5).
		WithFailureThreshold(60)
}

// redisHAEnv is the environment of both containers of a highly available
// Redis pod: what the scripts read, and the password (from its Secret;
// REDISCLI_AUTH for redis-cli, in the scripts and the probes).
func redisHAEnv(room *chatv1alpha1.ChatRoom) []*corev1ac.EnvVarApplyConfiguration {
	passwordFrom := corev1ac.EnvVarSource().WithSecretKeyRef(corev1ac.SecretKeySelector().
		WithName(room.RedisName()).WithKey(chatv1alpha1.DefaultRedisPasswordKey))
	return []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName("POD_NAME").WithValueFrom(corev1ac.EnvVarSource().WithFieldRef(
			// apiVersion as the API server defaults it: the selector is
			// atomic, so a defaulted field would read back as ours.
			corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.name"))),
		// The kubelet expands $(POD_NAME).
		corev1ac.EnvVar().WithName("REDIS_HOST").WithValue(fmt.Sprintf("$(POD_NAME).%s.%s.svc", room.RedisHeadlessName(), room.Namespace)),
		corev1ac.EnvVar().WithName("REDIS_HOSTS").WithValue(strings.Join(redisHAHosts(room), " ")),
		corev1ac.EnvVar().WithName("SENTINEL_MASTER").WithValue(sentinelMasterName(room)),
		corev1ac.EnvVar().WithName("REDIS_PORT").WithValue(strconv.Itoa(redisPort)),
		corev1ac.EnvVar().WithName("SENTINEL_PORT").WithValue(strconv.Itoa(sentinelPort)),
		corev1ac.EnvVar().WithName("DATA_DIR").WithValue(redisDataDir),
		corev1ac.EnvVar().WithName("REDIS_PASSWORD").WithValueFrom(passwordFrom),
		corev1ac.EnvVar().WithName("REDISCLI_AUTH").WithValueFrom(passwordFrom),
	}
}

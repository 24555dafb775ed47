package controllers

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	"k8s.io/utils/ptr"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// The official Redis images' "redis" user and group (Alpine: 999:1000).
// Running as them directly (instead of the entrypoint dropping root) is what
// lets the pod meet the restricted Pod Security profile.
const (
	redisUID = 999
	redisGID = 1000
)

// newRedisPassword is 32 random bytes, hex-encoded (safe in URLs and args).
func newRedisPassword() (string, error) {
	return randomHex(32, "generate Redis password")
}

// newPasswordGeneration names a new generation of the managed password
// (see PasswordGenerationAnnotation).
func newPasswordGeneration() (string, error) {
	return randomHex(8, "generate password generation")
}

func randomHex(n int, what string) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return hex.EncodeToString(b), nil
}

// desiredRedisSecret holds a managed Redis' password. The operator only
// ever creates it and never reads it back (it has no right to read
// Secrets): the kubelet hands the password to the pods. It is immutable, so
// it cannot drift from the password Redis runs with; to change the
// password, delete it and restart Redis (docs/operator.md).
//
// Its owner is the StatefulSet, not the room: the garbage collector then
// removes it with the Redis it belongs to (when the room is deleted, or
// switches to an external Redis) without the operator needing to read or
// delete Secrets. The owner reference does not block the StatefulSet's
// deletion, which would take an update right on statefulsets/finalizers.
func desiredRedisSecret(room *chatv1alpha1.ChatRoom, set *appsv1.StatefulSet, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      room.RedisName(),
			Namespace: room.Namespace,
			Labels:    objectLabels(room, ComponentRedis),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: appsv1.SchemeGroupVersion.String(),
				Kind:       "StatefulSet",
				Name:       set.Name,
				UID:        set.UID,
				Controller: ptr.To(true),
			}},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: ptr.To(true),
		Data:      map[string][]byte{chatv1alpha1.DefaultRedisPasswordKey: []byte(password)},
	}
}

// desiredRedisService is the managed Redis' stable address.
func desiredRedisService(room *chatv1alpha1.ChatRoom) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(room.RedisName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentRedis)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(selectorLabels(room, ComponentRedis)).
			WithPorts(corev1ac.ServicePort().
				WithName(redisPortName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(redisPort).
				WithTargetPort(intstr.FromString(redisPortName))))
}

// desiredRedisNetworkPolicy admits only this room's chat pods to the
// managed Redis. The operator is not admitted: it never talks to Redis (it
// asks the chat pods for presence), and a peer for it would be one more way
// in, from whatever namespace could pass for the operator's.
//
// A highly available Redis also admits its own pods (replication, and the
// sentinels watching the Redis pods and each other), and opens the Sentinel
// port besides Redis': the chat pods ask the sentinels where the primary is.
func desiredRedisNetworkPolicy(room *chatv1alpha1.ChatRoom) *networkingv1ac.NetworkPolicyApplyConfiguration {
	peers := []*networkingv1ac.NetworkPolicyPeerApplyConfiguration{networkingv1ac.NetworkPolicyPeer().
		WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentChat)))}
	ports := []*networkingv1ac.NetworkPolicyPortApplyConfiguration{networkingv1ac.NetworkPolicyPort().
		WithProtocol(corev1.ProtocolTCP).
		WithPort(intstr.FromInt32(redisPort))}
	if room.Spec.Redis.HighAvailability() {
		peers = append(peers, networkingv1ac.NetworkPolicyPeer().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentRedis))))
		ports = append(ports, networkingv1ac.NetworkPolicyPort().
			WithProtocol(corev1.ProtocolTCP).
			WithPort(intstr.FromInt32(sentinelPort)))
	}
	return networkingv1ac.NetworkPolicy(room.RedisName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentRedis)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentRedis))).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithFrom(peers...).
				WithPorts(ports...)))
}

// desiredRedisStatefulSet runs one Redis with AOF persistence on a volume
// from spec.redis.managed.storage, or with highAvailability three
// (desiredHARedisStatefulSet). passwordGeneration changes when the
// operator creates a new password Secret, which restarts Redis with the new
// password.
func desiredRedisStatefulSet(room *chatv1alpha1.ChatRoom, image, passwordGeneration string) (*appsv1ac.StatefulSetApplyConfiguration, error) {
	if room.Spec.Redis.HighAvailability() {
		return desiredHARedisStatefulSet(room, image, passwordGeneration)
	}
	m := room.Spec.Redis.ManagedOrDefault()
	resources, err := resourcesOr(m.Resources, defaultRedisResources)
	if err != nil {
		return nil, err
	}
	passwordFrom := corev1ac.EnvVarSource().WithSecretKeyRef(corev1ac.SecretKeySelector().
		WithName(room.RedisName()).WithKey(chatv1alpha1.DefaultRedisPasswordKey))
	c := corev1ac.Container().
		WithName(ComponentRedis).
		WithImage(image).
		WithCommand("redis-server").
		// $(REDIS_PASSWORD) is expanded by the kubelet, so the password is
		// never in the pod spec.
		WithArgs("--appendonly", "yes", "--dir", "/data", "--requirepass", "$(REDIS_PASSWORD)").
		WithEnv(
			corev1ac.EnvVar().WithName("REDIS_PASSWORD").WithValueFrom(passwordFrom),
			// redis-cli (the readiness probe) authenticates from REDISCLI_AUTH.
			corev1ac.EnvVar().WithName("REDISCLI_AUTH").WithValueFrom(passwordFrom),
		).
		WithPorts(corev1ac.ContainerPort().WithName(redisPortName).WithContainerPort(redisPort).WithProtocol(corev1.ProtocolTCP)).
		WithReadinessProbe(corev1ac.Probe().
			WithExec(corev1ac.ExecAction().WithCommand("sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q PONG")).
			WithPeriodSeconds(5)).
		WithLivenessProbe(corev1ac.Probe().
			WithTCPSocket(corev1ac.TCPSocketAction().WithPort(intstr.FromString(redisPortName))).
			WithPeriodSeconds(10)).
		WithResources(resources).
		WithSecurityContext(restrictedContainerSecurityContext()).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("data").WithMountPath("/data"))

	return appsv1ac.StatefulSet(room.RedisName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentRedis)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(1).
			WithServiceName(room.RedisName()).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentRedis))).
			WithPersistentVolumeClaimRetentionPolicy(redisClaimRetention()).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(objectLabels(room, ComponentRedis)).
				WithAnnotations(map[string]string{PasswordGenerationAnnotation: passwordGeneration}).
				WithSpec(corev1ac.PodSpec().
					WithAutomountServiceAccountToken(false).
					WithEnableServiceLinks(false).
					WithSecurityContext(restrictedPodSecurityContext(redisUID, redisGID, ptr.To[int64](redisGID))).
					WithContainers(c))).
			WithVolumeClaimTemplates(redisClaimTemplate(room, m))), nil
}

// redisClaimTemplate is the claim of each Redis pod's data volume.
func redisClaimTemplate(room *chatv1alpha1.ChatRoom, m *chatv1alpha1.ManagedRedisSpec) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	claim := corev1ac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(corev1ac.VolumeResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceStorage: *m.Storage})).
		// Set as the API server would default them: the claim template is
		// an atomic list item, so defaulted fields read back as ours.
		WithVolumeMode(corev1.PersistentVolumeFilesystem)
	if m.StorageClassName != nil {
		claim.WithStorageClassName(*m.StorageClassName)
	}
	return (&corev1ac.PersistentVolumeClaimApplyConfiguration{}).
		WithName("data").
		WithLabels(objectLabels(room, ComponentRedis)).
		WithSpec(claim).
		WithStatus(corev1ac.PersistentVolumeClaimStatus().WithPhase(corev1.ClaimPending))
}

// redisClaimRetention deletes the claims with the StatefulSet, and so with
// the ChatRoom.
func redisClaimRetention() *appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicyApplyConfiguration {
	return appsv1ac.StatefulSetPersistentVolumeClaimRetentionPolicy().
		WithWhenDeleted(appsv1.DeletePersistentVolumeClaimRetentionPolicyType).
		WithWhenScaled(appsv1.RetainPersistentVolumeClaimRetentionPolicyType)
}

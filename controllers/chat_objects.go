package controllers

import (
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

// chatUID is the user the chat container runs as (the "nonroot" user of
// distroless images); set explicitly so runAsNonRoot can be verified for
// images whose USER is a name.
const chatUID = 65532

// ownerRef makes the room the controlling owner: deleting the ChatRoom
// garbage-collects the object, and its events wake the room's reconcile.
func ownerRef(room *chatv1alpha1.ChatRoom) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(chatv1alpha1.GroupVersion.String()).
		WithKind("ChatRoom").
		WithName(room.Name).
		WithUID(room.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// chatImage is the room's image, or the operator's default.
func chatImage(room *chatv1alpha1.ChatRoom, defaultImage string) string {
	if room.Spec.Image != "" {
		return room.Spec.Image
	}
	return defaultImage
}

// minReplicas is the fewest chat pods the room asks for.
func minReplicas(room *chatv1alpha1.ChatRoom) int32 {
	if a := room.Spec.Autoscaling; a != nil {
		return a.MinReplicas
	}
	return *room.Spec.Replicas
}

// desiredServiceAccount is the chat pods' identity. Pods never mount its
// token: the chat server does not talk to the Kubernetes API.
func desiredServiceAccount(room *chatv1alpha1.ChatRoom) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(room.ChatName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithAutomountServiceAccountToken(false)
}

// desiredConfigMap holds the rendered chat server configuration as
// environment variables (see configEnv).
func desiredConfigMap(room *chatv1alpha1.ChatRoom, data map[string]string) *corev1ac.ConfigMapApplyConfiguration {
	return corev1ac.ConfigMap(room.ConfigMapName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithData(data)
}

// desiredDeployment runs the chat pods. hash is configHash of what the pods
// read, so a change rolls them.
func desiredDeployment(room *chatv1alpha1.ChatRoom, image, hash string, cfg config.Config) (*appsv1ac.DeploymentApplyConfiguration, error) {
	spec := room.Spec
	pod, err := chatPodSpec(room, image, cfg)
	if err != nil {
		return nil, err
	}
	ds := appsv1ac.DeploymentSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentChat))).
		WithRevisionHistoryLimit(5).
		// Never go below the wanted capacity during a rollout: new pods come
		// up before old ones drain their sockets.
		WithStrategy(appsv1ac.DeploymentStrategy().
			WithType(appsv1.RollingUpdateDeploymentStrategyType).
			WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
				WithMaxUnavailable(intstr.FromInt32(0)).
				WithMaxSurge(intstr.FromString("25%")))).
		WithTemplate(corev1ac.PodTemplateSpec().
			WithLabels(objectLabels(room, ComponentChat)).
			WithAnnotations(map[string]string{ConfigHashAnnotation: hash}).
			WithSpec(pod))
	// With autoscaling the HorizontalPodAutoscaler owns the replica count;
	// leaving the field out of the apply keeps the two from fighting.
	if spec.Autoscaling == nil {
		ds.WithReplicas(*spec.Replicas)
	}
	return appsv1ac.Deployment(room.ChatName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(ds), nil
}

// chatPodSpec is the chat pod: restricted Pod Security, read-only root
// filesystem, no service account token, probes on /healthz and /readyz and a
// termination grace a little above the server's own drain time.
func chatPodSpec(room *chatv1alpha1.ChatRoom, image string, cfg config.Config) (*corev1ac.PodSpecApplyConfiguration, error) {
	spec := room.Spec
	resources, err := resourcesOr(spec.Resources, defaultChatResources)
	if err != nil {
		return nil, err
	}
	c := corev1ac.Container().
		WithName(ComponentChat).
		WithImage(image).
		WithPorts(corev1ac.ContainerPort().WithName(chatPortName).WithContainerPort(chatPort).WithProtocol(corev1.ProtocolTCP)).
		WithEnvFrom(corev1ac.EnvFromSource().WithConfigMapRef(corev1ac.ConfigMapEnvSource().WithName(room.ConfigMapName()))).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/readyz").WithPort(intstr.FromString(chatPortName))).
			WithPeriodSeconds(5).
			WithFailureThreshold(2)).
		WithLivenessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/healthz").WithPort(intstr.FromString(chatPortName))).
			WithPeriodSeconds(10).
			WithFailureThreshold(3)).
		WithResources(resources).
		WithSecurityContext(restrictedContainerSecurityContext()).
		WithVolumeMounts(corev1ac.VolumeMount().WithName("tmp").WithMountPath("/tmp"))
	if spec.ImagePullPolicy != "" {
		c.WithImagePullPolicy(spec.ImagePullPolicy)
	}
	if ref := redisPasswordRef(room); ref != nil {
		// The password stays out of args and the ConfigMap: only the pod's
		// environment sees it.
		c.WithEnv(corev1ac.EnvVar().
			WithName(config.EnvName("redis-password")).
			WithValueFrom(corev1ac.EnvVarSource().WithSecretKeyRef(
				corev1ac.SecretKeySelector().WithName(ref.Name).WithKey(ref.Key))))
	}
	volumes := []*corev1ac.VolumeApplyConfiguration{
		// /tmp holds the pod's search index: about 300 bytes per kept
		// message of the channels searched on it (60 MB for 20 channels of
		// 10,000). Past the limit the kubelet evicts the pod.
		corev1ac.Volume().WithName("tmp").WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(resource.MustParse("1Gi"))),
	}
	if ref := bootstrapUsersRef(room); ref != nil {
		volumes = append(volumes, corev1ac.Volume().WithName(bootstrapUsersVolume).WithSecret(
			corev1ac.SecretVolumeSource().
				WithSecretName(ref.Name).
				WithDefaultMode(0o440).
				WithItems(corev1ac.KeyToPath().WithKey(ref.Key).WithPath("users"))))
		c.WithVolumeMounts(corev1ac.VolumeMount().WithName(bootstrapUsersVolume).WithMountPath(bootstrapUsersDir).WithReadOnly(true))
	}

	p := corev1ac.PodSpec().
		WithServiceAccountName(room.ChatName()).
		WithAutomountServiceAccountToken(false).
		// Service links would put HUBBUB_* variables of Services named
		// "hubbub..." into the environment the chat server reads its flags from.
		WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(int64(cfg.ShutdownGrace/time.Second) + terminationGraceMargin).
		WithSecurityContext(restrictedPodSecurityContext(chatUID, chatUID, nil)).
		WithContainers(c).
		WithVolumes(volumes...)
	if len(spec.NodeSelector) > 0 {
		p.WithNodeSelector(spec.NodeSelector)
	}
	for _, t := range spec.Tolerations {
		tac := corev1ac.Toleration().WithKey(t.Key).WithOperator(t.Operator).WithValue(t.Value).WithEffect(t.Effect)
		if t.TolerationSeconds != nil {
			tac.WithTolerationSeconds(*t.TolerationSeconds)
		}
		p.WithTolerations(tac)
	}
	if spec.Affinity != nil {
		a, err := convert[corev1ac.AffinityApplyConfiguration](spec.Affinity)
		if err != nil {
			return nil, fmt.Errorf("affinity: %w", err)
		}
		p.WithAffinity(a)
	}
	for i, tsc := range spec.TopologySpreadConstraints {
		t, err := convert[corev1ac.TopologySpreadConstraintApplyConfiguration](&tsc)
		if err != nil {
			return nil, fmt.Errorf("topologySpreadConstraints[%d]: %w", i, err)
		}
		if t.LabelSelector == nil {
			t.WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentChat)))
		}
		p.WithTopologySpreadConstraints(t)
	}
	return p, nil
}

// Resources used when a room sets none.
var (
	defaultChatResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
	defaultRedisResources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
	}
)

// resourcesOr is r as an apply configuration, or def when r is nil.
func resourcesOr(r *corev1.ResourceRequirements, def corev1.ResourceRequirements) (*corev1ac.ResourceRequirementsApplyConfiguration, error) {
	if r == nil {
		r = &def
	}
	return convert[corev1ac.ResourceRequirementsApplyConfiguration](r)
}

// restrictedPodSecurityContext meets the Pod Security Standards' restricted
// profile together with restrictedContainerSecurityContext.
func restrictedPodSecurityContext(uid, gid int64, fsGroup *int64) *corev1ac.PodSecurityContextApplyConfiguration {
	sc := corev1ac.PodSecurityContext().
		WithRunAsNonRoot(true).
		WithRunAsUser(uid).
		WithRunAsGroup(gid).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
	if fsGroup != nil {
		sc.WithFSGroup(*fsGroup).WithFSGroupChangePolicy(corev1.FSGroupChangeOnRootMismatch)
	}
	return sc
}

func restrictedContainerSecurityContext() *corev1ac.SecurityContextApplyConfiguration {
	return corev1ac.SecurityContext().
		WithAllowPrivilegeEscalation(false).
		WithReadOnlyRootFilesystem(true).
		WithRunAsNonRoot(true).
		WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))
}

// desiredService exposes the chat pods on spec.service.port.
func desiredService(room *chatv1alpha1.ChatRoom) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(room.ChatName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(room.Spec.Service.Type).
			WithSelector(selectorLabels(room, ComponentChat)).
			WithPorts(corev1ac.ServicePort().
				WithName(chatPortName).
				WithProtocol(corev1.ProtocolTCP).
				WithPort(room.Spec.Service.Port).
				WithTargetPort(intstr.FromString(chatPortName))))
}

// desiredPodDisruptionBudget keeps all but one chat pod up during voluntary
// disruptions (node drains); nil when the room runs fewer than two pods,
// where a budget would block drains forever.
func desiredPodDisruptionBudget(room *chatv1alpha1.ChatRoom) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	if minReplicas(room) < 2 {
		return nil
	}
	return policyv1ac.PodDisruptionBudget(room.ChatName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(room, ComponentChat))))
}

// desiredHorizontalPodAutoscaler sizes the chat Deployment on CPU; nil
// without spec.autoscaling.
func desiredHorizontalPodAutoscaler(room *chatv1alpha1.ChatRoom) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	a := room.Spec.Autoscaling
	if a == nil {
		return nil
	}
	return autoscalingv2ac.HorizontalPodAutoscaler(room.ChatName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
			WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().
				WithAPIVersion("apps/v1").WithKind("Deployment").WithName(room.ChatName())).
			WithMinReplicas(a.MinReplicas).
			WithMaxReplicas(a.MaxReplicas).
			WithMetrics(autoscalingv2ac.MetricSpec().
				WithType(autoscalingv2.ResourceMetricSourceType).
				WithResource(autoscalingv2ac.ResourceMetricSource().
					WithName(corev1.ResourceCPU).
					WithTarget(autoscalingv2ac.MetricTarget().
						WithType(autoscalingv2.UtilizationMetricType).
						WithAverageUtilization(a.TargetCPUUtilizationPercentage)))))
}

// desiredIngress routes spec.ingress.host to the chat Service; nil without
// spec.ingress.
func desiredIngress(room *chatv1alpha1.ChatRoom) *networkingv1ac.IngressApplyConfiguration {
	in := room.Spec.Ingress
	if in == nil {
		return nil
	}
	spec := networkingv1ac.IngressSpec().
		WithRules(networkingv1ac.IngressRule().
			WithHost(in.Host).
			WithHTTP(networkingv1ac.HTTPIngressRuleValue().
				WithPaths(networkingv1ac.HTTPIngressPath().
					WithPath("/").
					WithPathType(networkingv1.PathTypePrefix).
					WithBackend(networkingv1ac.IngressBackend().
						WithService(networkingv1ac.IngressServiceBackend().
							WithName(room.ChatName()).
							WithPort(networkingv1ac.ServiceBackendPort().WithName(chatPortName)))))))
	if in.ClassName != "" {
		spec.WithIngressClassName(in.ClassName)
	}
	if in.TLSSecretName != "" {
		spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(in.Host).WithSecretName(in.TLSSecretName))
	}
	ing := networkingv1ac.Ingress(room.ChatName(), room.Namespace).
		WithLabels(objectLabels(room, ComponentChat)).
		WithOwnerReferences(ownerRef(room)).
		WithSpec(spec)
	if len(in.Annotations) > 0 {
		ing.WithAnnotations(in.Annotations)
	}
	return ing
}

// convert turns a typed API value that the room passes through (affinity,
// resources, ...) into its apply configuration. Both share one JSON shape.
func convert[T any](in any) (*T, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		return nil, err
	}
	return out, nil
}

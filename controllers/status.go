package controllers

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// presenceState says how far asking a chat pod for the room's presence got.
type presenceState int

const (
	// presenceNotRead: the reconcile stopped before reading presence.
	presenceNotRead presenceState = iota
	// presenceRedisStarting: the managed Redis has no ready pod yet.
	presenceRedisStarting
	// presenceSecretMissing: chat pods cannot start for want of the Redis
	// password Secret (or its key).
	presenceSecretMissing
	// presenceNoChatPods: no chat pod runs to be asked; count is 0.
	presenceNoChatPods
	// presenceRead: count is the number of users online.
	presenceRead
	// presenceFailed: a chat pod answered that it cannot read Redis; err says why.
	presenceFailed
	// presenceUnasked: the chat pod could not be asked; err says why.
	presenceUnasked
)

// presenceResult is what asking the room's chat pods found.
type presenceResult struct {
	state presenceState
	count int
	// redis is the Redis replication the pod reported (presenceRead), or nil.
	redis *protocol.RedisStats
	err   error
}

// statusInputs is everything the status is computed from; gathering it is
// the reconciler's job, turning it into a status is computeStatus's.
type statusInputs struct {
	generation int64
	// reconcileErr is the error that stopped this reconcile, if any.
	reconcileErr error
	deployment   *appsv1.Deployment
	selector     string
	url          string
	presence     presenceResult
	// secretProblems are Secrets the spec names that pods cannot find
	// ("Secret x not found"), as their kubelets report it.
	secretProblems []string
	// podProblem describes a pod that cannot pull its image.
	podProblem string
	// scaledToZero: the room asks for no pods.
	scaledToZero bool
	// redisHA: the room's Redis is managed and highly available, so it
	// should have redisHAReplicas replicas in sync.
	redisHA bool
}

// computeStatus is the room's next status. It starts from the previous one so
// that a condition's lastTransitionTime moves only when its status flips.
// After a failed reconcile only Degraded changes: the rest was not observed.
func computeStatus(in statusInputs, prev chatv1alpha1.ChatRoomStatus, now metav1.Time) chatv1alpha1.ChatRoomStatus {
	out := *prev.DeepCopy()
	if in.reconcileErr != nil {
		setCondition(&out.Conditions, metav1.Condition{
			Type: chatv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue,
			Reason: chatv1alpha1.ReasonApplyFailed, Message: in.reconcileErr.Error(), ObservedGeneration: in.generation,
		}, now)
		return out
	}
	out.ObservedGeneration = in.generation
	out.Selector = in.selector
	out.URL = in.url
	out.Replicas, out.ReadyReplicas = 0, 0
	if d := in.deployment; d != nil {
		out.Replicas, out.ReadyReplicas = d.Status.Replicas, d.Status.ReadyReplicas
	}
	// An unreadable Redis keeps the last count: RedisReady says it is stale.
	if s := in.presence.state; s == presenceRead || s == presenceNoChatPods {
		out.OnlineUsers = int32(min(in.presence.count, 1<<31-1))
	}
	for _, c := range []metav1.Condition{availableCondition(in), progressingCondition(in), redisReadyCondition(in), degradedCondition(in)} {
		c.ObservedGeneration = in.generation
		setCondition(&out.Conditions, c, now)
	}
	return out
}

func availableCondition(in statusInputs) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: chatv1alpha1.ReasonDeploymentUnavailable}
	d := in.deployment
	switch {
	case in.scaledToZero:
		c.Reason, c.Message = chatv1alpha1.ReasonScaledToZero, "replicas is 0"
	case d == nil:
		c.Message = "the chat Deployment does not exist yet"
	case deploymentCondition(d, appsv1.DeploymentAvailable) == corev1.ConditionTrue && d.Status.ReadyReplicas > 0:
		c.Status, c.Reason = metav1.ConditionTrue, chatv1alpha1.ReasonDeploymentAvailable
		c.Message = fmt.Sprintf("%d of %d chat pods ready", d.Status.ReadyReplicas, desiredPods(d))
	default:
		c.Message = fmt.Sprintf("%d of %d chat pods ready", d.Status.ReadyReplicas, desiredPods(d))
	}
	return c
}

func progressingCondition(in statusInputs) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: chatv1alpha1.ReasonRollingOut}
	d := in.deployment
	switch {
	case d == nil:
		c.Message = "creating the chat Deployment"
	case rolloutStuck(d) != "":
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, chatv1alpha1.ReasonRolloutStuck, rolloutStuck(d)
	case d.Status.ObservedGeneration < d.Generation:
		c.Message = "the Deployment controller has not seen the latest change yet"
	case d.Status.UpdatedReplicas < desiredPods(d) || d.Status.Replicas > d.Status.UpdatedReplicas || d.Status.ReadyReplicas < desiredPods(d):
		c.Message = fmt.Sprintf("%d of %d chat pods updated, %d ready", d.Status.UpdatedReplicas, desiredPods(d), d.Status.ReadyReplicas)
	default:
		c.Status, c.Reason = metav1.ConditionFalse, chatv1alpha1.ReasonRolloutComplete
		c.Message = fmt.Sprintf("%d chat pods run the current configuration", desiredPods(d))
	}
	return c
}

func redisReadyCondition(in statusInputs) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionRedisReady, Status: metav1.ConditionFalse}
	p := in.presence
	switch p.state {
	case presenceRead:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable, "a chat pod read the room's presence from Redis"
		if in.redisHA {
			c.Message = redisReplicationMessage(p.redis)
		}
	case presenceRedisStarting:
		c.Reason, c.Message = chatv1alpha1.ReasonRedisStarting, "the managed Redis has no ready pod yet"
	case presenceSecretMissing:
		c.Reason, c.Message = chatv1alpha1.ReasonSecretNotFound, strings.Join(in.secretProblems, "; ")
	case presenceFailed:
		c.Reason, c.Message = chatv1alpha1.ReasonRedisUnreachable, p.err.Error()
	case presenceNoChatPods:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, chatv1alpha1.ReasonNoChatPods, "no chat pod is running to ask"
	case presenceUnasked:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, chatv1alpha1.ReasonChatUnreachable, p.err.Error()
	case presenceNotRead:
		c.Reason, c.Message = chatv1alpha1.ReasonRedisStarting, "Redis not checked yet"
	}
	return c
}

// degradedCondition names the most pressing problem, in this order: a
// missing Secret (nothing works without it), pods that cannot start, a stuck
// rollout, an unreachable Redis, a highly available Redis short of replicas
// in sync. A chat pod the operator cannot ask is not one: the room may serve
// its users well, only onlineUsers goes stale.
func degradedCondition(in statusInputs) metav1.Condition {
	c := metav1.Condition{Type: chatv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue}
	switch {
	case len(in.secretProblems) > 0:
		c.Reason, c.Message = chatv1alpha1.ReasonSecretNotFound, strings.Join(in.secretProblems, "; ")
	case in.podProblem != "":
		c.Reason, c.Message = chatv1alpha1.ReasonImagePullBackOff, in.podProblem
	case in.deployment != nil && rolloutStuck(in.deployment) != "":
		c.Reason, c.Message = chatv1alpha1.ReasonRolloutStuck, rolloutStuck(in.deployment)
	case in.presence.state == presenceFailed:
		c.Reason, c.Message = chatv1alpha1.ReasonRedisUnreachable, in.presence.err.Error()
	case replicasOutOfSync(in):
		r := in.presence.redis
		c.Reason = chatv1alpha1.ReasonRedisReplicasOutOfSync
		c.Message = fmt.Sprintf("%d of %d Redis replicas in sync with the primary %s (%d connected); a message needs one to be acked",
			r.ReplicasInSync, redisHAReplicas, redisPodOf(r.Primary), r.Replicas)
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, chatv1alpha1.ReasonAsExpected, "no problems found"
	}
	return c
}

// replicasOutOfSync: a chat pod reported that a highly available managed
// Redis has fewer replicas in sync than it should.
func replicasOutOfSync(in statusInputs) bool {
	p := in.presence
	return in.redisHA && p.state == presenceRead && p.redis != nil && p.redis.ReplicasInSync < redisHAReplicas
}

// redisReplicationMessage is RedisReady's message for a highly available
// managed Redis, from the replication a chat pod reported (nil: none).
func redisReplicationMessage(r *protocol.RedisStats) string {
	if r == nil {
		return "a chat pod read the room's presence from Redis, but did not report the Redis replication (a chat image older than the operator?)"
	}
	msg := fmt.Sprintf("primary is %s; %d of %d replicas in sync", redisPodOf(r.Primary), r.ReplicasInSync, redisHAReplicas)
	if r.Replicas != r.ReplicasInSync {
		msg += fmt.Sprintf(" (%d connected)", r.Replicas)
	}
	return msg
}

// redisPodShape is what a Redis host of the chat pod's report may look
// like to be quoted as it is: a host name, or an IP address.
var redisPodShape = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9.:]{0,252})$`)

// redisPodOf names the Redis pod at addr ("host:port", the host that
// Sentinel announces): the first label of its host name (lobby-redis-1 of
// lobby-redis-1.lobby-redis-headless.ns.svc), or an IP address as it is.
// The chat pod runs the room author's image, so anything else is quoted,
// and shortened.
func redisPodOf(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if net.ParseIP(host) == nil {
		host, _, _ = strings.Cut(host, ".")
	}
	if !redisPodShape.MatchString(host) {
		if len(host) > 64 {
			host = host[:64] + "..."
		}
		return strconv.Quote(strings.ToValidUTF8(host, "?"))
	}
	return host
}

// desiredPods is the Deployment's wanted replica count (set by the operator
// or, with autoscaling, by the HorizontalPodAutoscaler).
func desiredPods(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) corev1.ConditionStatus {
	for _, c := range d.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return corev1.ConditionUnknown
}

// rolloutStuck is the Deployment controller's message when the rollout
// exceeded its progress deadline, else "".
func rolloutStuck(d *appsv1.Deployment) string {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
			return c.Message
		}
	}
	return ""
}

// setCondition sets c in conds. The transition time moves only when the
// status flips; reason, message and generation are always updated.
func setCondition(conds *[]metav1.Condition, c metav1.Condition, now metav1.Time) {
	for i := range *conds {
		old := &(*conds)[i]
		if old.Type != c.Type {
			continue
		}
		c.LastTransitionTime = old.LastTransitionTime
		if old.Status != c.Status {
			c.LastTransitionTime = now
		}
		*old = c
		return
	}
	c.LastTransitionTime = now
	*conds = append(*conds, c)
}

// findCondition returns the condition of type t, or nil.
func findCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// roomURL is where people open the room: the ingress host; else a load
// balancer's address; else the Service's in-cluster name.
func roomURL(room *chatv1alpha1.ChatRoom, svc *corev1.Service) string {
	if in := room.Spec.Ingress; in != nil {
		return roomURLScheme(in) + "://" + in.Host + "/"
	}
	port := room.Spec.Service.Port
	host := fmt.Sprintf("%s.%s.svc", room.ChatName(), room.Namespace)
	if svc != nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, lb := range svc.Status.LoadBalancer.Ingress {
			if lb.Hostname != "" {
				host = lb.Hostname
				break
			}
			if lb.IP != "" {
				host = lb.IP
				break
			}
		}
	}
	if strings.Contains(host, ":") { // an IPv6 address
		host = "[" + host + "]"
	}
	if port == 80 {
		return "http://" + host + "/"
	}
	return fmt.Sprintf("http://%s:%d/", host, port)
}

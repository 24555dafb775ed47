package v1alpha1

// Condition types of ChatRoom status.conditions.
const (
	// ConditionAvailable is True when the chat Deployment has at least one
	// ready pod and meets its availability (the room can be used).
	ConditionAvailable = "Available"
	// ConditionProgressing is True while the chat Deployment rolls out a
	// change or scales; False when the rollout is complete or stuck.
	ConditionProgressing = "Progressing"
	// ConditionRedisReady is True when the room's Redis is running (managed)
	// and a chat pod, asked by the operator, read the room's presence from
	// it. The operator never connects to Redis itself. Unknown when there was
	// no chat pod to ask, or it could not be asked. For a highly available
	// managed Redis its message names the primary's pod and counts the
	// replicas in sync, as the chat pod reports them.
	ConditionRedisReady = "RedisReady"
	// ConditionDegraded is True when something needs a person's attention;
	// its reason says what.
	ConditionDegraded = "Degraded"
)

// Reasons of the Available condition.
const (
	// ReasonDeploymentAvailable: the chat Deployment is available.
	ReasonDeploymentAvailable = "DeploymentAvailable"
	// ReasonDeploymentUnavailable: no chat pod is ready yet, or too few.
	ReasonDeploymentUnavailable = "DeploymentUnavailable"
	// ReasonScaledToZero: replicas is 0, so the room serves no one on purpose.
	ReasonScaledToZero = "ScaledToZero"
)

// Reasons of the Progressing condition (RolloutStuck is shared with Degraded).
const (
	// ReasonRollingOut: pods are being replaced or added.
	ReasonRollingOut = "RollingOut"
	// ReasonRolloutComplete: every chat pod runs the current template and is ready.
	ReasonRolloutComplete = "RolloutComplete"
)

// Reasons of the RedisReady condition (RedisUnreachable and SecretNotFound
// are shared with Degraded).
const (
	// ReasonRedisReachable: a chat pod read the room's presence from Redis.
	ReasonRedisReachable = "RedisReachable"
	// ReasonRedisStarting: the managed Redis StatefulSet has no ready pod yet.
	ReasonRedisStarting = "RedisStarting"
	// ReasonNoChatPods: no chat pod is running to be asked (Unknown); with
	// none running, no one can be online.
	ReasonNoChatPods = "NoChatPods"
	// ReasonChatUnreachable: the operator could not ask a chat pod (Unknown):
	// a NetworkPolicy keeps it out, or the chat image predates the
	// /api/v1/stats endpoint.
	ReasonChatUnreachable = "ChatUnreachable"
)

// Reasons of the Degraded condition.
const (
	// ReasonAsExpected: nothing is wrong (Degraded is False).
	ReasonAsExpected = "AsExpected"
	// ReasonSecretNotFound: pods cannot start because a Secret the spec names
	// (Redis password, bootstrap users) does not exist, or lacks the named
	// key, as their kubelet reports it. The room recovers by itself once the
	// Secret appears and the kubelet starts the pods.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonRedisUnreachable: a chat pod could not read presence from a Redis
	// that should be up (wrong URL or password, network policy, outage).
	ReasonRedisUnreachable = "RedisUnreachable"
	// ReasonImagePullBackOff: a chat or managed Redis pod cannot pull its image.
	ReasonImagePullBackOff = "ImagePullBackOff"
	// ReasonRolloutStuck: the chat Deployment exceeded its progress deadline.
	ReasonRolloutStuck = "RolloutStuck"
	// ReasonApplyFailed: the API server refused an owned object; the message
	// says which and why.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonRedisReplicasOutOfSync: a highly available managed Redis has
	// fewer than its two replicas in sync with the primary, as a chat pod
	// reports it. With one, a second failure stops the room from accepting
	// messages; with none, it accepts none (every message waits for a
	// replica). Replicas resync by themselves after a restart; one that
	// stays out points at its pod or volume.
	ReasonRedisReplicasOutOfSync = "RedisReplicasOutOfSync"
)

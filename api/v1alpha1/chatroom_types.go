package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ChatRoomSpec is the desired state of a ChatRoom: how many chat pods, what
// the chat allows, where its Redis is and how people reach it.
type ChatRoomSpec struct {
	// replicas is the number of chat pods while autoscaling is not set (with
	// autoscaling, the HorizontalPodAutoscaler decides and replicas is
	// ignored). It is the field behind the scale subresource, so
	// `kubectl scale chatroom NAME --replicas=N` changes it.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// image is the chat server container image. Empty means the operator's
	// default chat image (its --chat-image flag).
	// +kubebuilder:validation:MaxLength=512
	// +optional
	Image string `json:"image,omitempty"`

	// imagePullPolicy of the chat container; empty means Kubernetes' default
	// for the image's tag.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// resources of each chat container. Empty means requests of 100m CPU and
	// 128Mi memory and a 256Mi memory limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector is passed through to the chat pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations are passed through to the chat pods.
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity is passed through to the chat pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// topologySpreadConstraints are passed through to the chat pods; a
	// constraint without a labelSelector selects this room's chat pods.
	// +listType=atomic
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`

	// channels are the room's public channels (direct messages between any
	// two users exist besides). Names are DNS-label-like: lower-case letters,
	// digits and '-', at most 63 characters; each may appear once.
	// +kubebuilder:default={"general"}
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(c, self.exists_one(x, x == c))",message="channels must be unique"
	// +listType=atomic
	// +optional
	Channels []ChannelName `json:"channels,omitempty"`

	// registration says who may create accounts: Open lets anyone register;
	// Closed allows only the users of bootstrapUsersSecretRef.
	// +kubebuilder:default=Open
	// +optional
	Registration Registration `json:"registration,omitempty"`

	// bootstrapUsersSecretRef names a Secret key holding "username:password"
	// lines; the chat server creates these accounts at start (key defaults to
	// "users"). With registration Closed this is how accounts exist.
	// +optional
	BootstrapUsersSecretRef *SecretKeySelector `json:"bootstrapUsersSecretRef,omitempty"`

	// admins are the room's admins, by username: they may add anyone to,
	// and remove anyone from, any channel people created (private ones
	// too). They need accounts like anyone else (registered, or bootstrap
	// users); naming someone here creates no account.
	// +kubebuilder:validation:MaxItems=100
	// +listType=set
	// +optional
	Admins []Username `json:"admins,omitempty"`

	// sessionTTL is the sliding idle lifetime of a login session, at least 1m.
	// +kubebuilder:default="24h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="sessionTTL must be at least 1m"
	// +optional
	SessionTTL *metav1.Duration `json:"sessionTTL,omitempty"`

	// history bounds what each channel keeps.
	// +kubebuilder:default={}
	// +optional
	History HistorySpec `json:"history,omitempty"`

	// limits bound what one person can do.
	// +kubebuilder:default={}
	// +optional
	Limits LimitsSpec `json:"limits,omitempty"`

	// redis is where the room keeps users, sessions, history and presence:
	// either an external Redis (url) or one the operator runs for this room
	// (managed). Leaving it out means managed with defaults.
	// +kubebuilder:default={managed: {}}
	// +optional
	Redis *RedisSpec `json:"redis,omitempty"`

	// service is how the chat pods are exposed inside the cluster.
	// +kubebuilder:default={}
	// +optional
	Service ServiceSpec `json:"service,omitempty"`

	// ingress, when set, exposes the room on a host name through an Ingress.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// trustedProxies are the addresses (CIDRs or single IPs) of the proxies
	// in front of the chat pods, usually the ingress controller's pods. Only
	// from them do X-Forwarded-For (the client address that login throttling
	// counts) and X-Forwarded-Proto (https: the Secure session cookie) count.
	// Empty trusts none: behind an ingress every client then looks like the
	// ingress, and shares its login budget.
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	// +optional
	TrustedProxies []TrustedProxy `json:"trustedProxies,omitempty"`

	// autoscaling, when set, makes a HorizontalPodAutoscaler size the chat
	// Deployment between minReplicas and maxReplicas; replicas is then ignored.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`
}

// Username is a person's account name: 3 to 32 of lower-case letters,
// digits, '_', '.' and '-'.
// +kubebuilder:validation:MinLength=3
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:Pattern=`^[a-z0-9_.-]{3,32}$`
type Username string

// ChannelName is a public channel's name: lower-case letters, digits and '-',
// starting and ending with a letter or digit, at most 63 characters.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
type ChannelName string

// Registration says who may create accounts.
// +kubebuilder:validation:Enum=Open;Closed
type Registration string

// Registration modes.
const (
	// RegistrationOpen lets anyone register an account.
	RegistrationOpen Registration = "Open"
	// RegistrationClosed allows only accounts created by an admin (bootstrap users).
	RegistrationClosed Registration = "Closed"
)

// SecretKeySelector names one key of a Secret in the ChatRoom's namespace.
type SecretKeySelector struct {
	// name of the Secret, in the ChatRoom's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// key within the Secret's data. Empty means the default of the field
	// that uses it: "password" for a Redis password, "users" for bootstrap users.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	// +optional
	Key string `json:"key,omitempty"`
}

// HistorySpec bounds the message history of each channel.
type HistorySpec struct {
	// maxMessages is how many messages each channel keeps.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxMessages int32 `json:"maxMessages,omitempty"`
}

// LimitsSpec bounds what one person can do, per chat pod.
type LimitsSpec struct {
	// maxMessageBytes is the largest message text, in bytes.
	// +kubebuilder:default=4096
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	// +optional
	MaxMessageBytes int32 `json:"maxMessageBytes,omitempty"`

	// messagesPerSecond is the sustained rate of sends per connection.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MessagesPerSecond int32 `json:"messagesPerSecond,omitempty"`

	// messageBurst is how many sends a connection may make at once above the rate.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MessageBurst int32 `json:"messageBurst,omitempty"`

	// maxConnectionsPerUser bounds one person's concurrent WebSockets on one chat pod.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	MaxConnectionsPerUser int32 `json:"maxConnectionsPerUser,omitempty"`

	// maxChannelsPerUser bounds the channels people created that one person
	// may be in (the room's channels and direct messages do not count).
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxChannelsPerUser int32 `json:"maxChannelsPerUser,omitempty"`

	// maxChannelMembers bounds the members of one channel people created.
	// +kubebuilder:default=10000
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	MaxChannelMembers int32 `json:"maxChannelMembers,omitempty"`
}

// RedisSpec says where the room's Redis is: exactly one of url (external) or
// managed (run by the operator). Neither (an empty redis) means managed with
// defaults.
// +kubebuilder:validation:XValidation:rule="!(has(self.url) && has(self.managed))",message="set either url (external Redis) or managed, not both"
// +kubebuilder:validation:XValidation:rule="has(self.url) || !has(self.passwordSecretRef)",message="passwordSecretRef needs url: a managed Redis gets a generated password"
// +kubebuilder:validation:XValidation:rule="has(self.url) || has(oldSelf.url) || (has(self.managed) && has(self.managed.highAvailability) && self.managed.highAvailability) == (has(oldSelf.managed) && has(oldSelf.managed.highAvailability) && oldSelf.managed.highAvailability)",message="highAvailability cannot be changed after creation: the room's data would not move between a single Redis and a replicated one; create a new room instead",fieldPath=".managed.highAvailability"
type RedisSpec struct {
	// url of an external Redis: redis://host:port/db, rediss://... for TLS,
	// redis-sentinel://host:port[,host:port]/?master=NAME or
	// redis-cluster://host:port[,host:port]. Keep the password out of it: use
	// passwordSecretRef.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^(redis|rediss|redis-sentinel|redis-cluster)://[^\s]+$`
	// +optional
	URL string `json:"url,omitempty"`

	// passwordSecretRef names the Secret key holding the external Redis'
	// password (key defaults to "password").
	// +optional
	PasswordSecretRef *SecretKeySelector `json:"passwordSecretRef,omitempty"`

	// managed asks the operator to run the Redis of this room: a
	// StatefulSet with a persistent volume per Redis pod, a Service, a
	// generated password Secret and a NetworkPolicy that admits only this
	// room's chat pods; one Redis, or with highAvailability a primary, two
	// replicas and Redis Sentinel.
	// +optional
	Managed *ManagedRedisSpec `json:"managed,omitempty"`
}

// ManagedRedisSpec configures the Redis the operator runs for a room.
type ManagedRedisSpec struct {
	// storage is the size of the Redis data volume (append-only file and
	// snapshots). It cannot be changed after creation: a StatefulSet's volume
	// claims are immutable.
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storage is immutable"
	// +optional
	Storage *resource.Quantity `json:"storage,omitempty"`

	// storageClassName of the data volume's claim; empty means the cluster's
	// default StorageClass. It cannot be changed after creation.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storageClassName is immutable"
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// resources of the Redis container (of each Redis pod). Empty means
	// requests of 50m CPU and 64Mi memory and a 256Mi memory limit.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// highAvailability runs three Redis pods instead of one: a primary and
	// two replicas, each pod with a Redis Sentinel beside it, and the chat
	// pods connect through Sentinel. When the primary's pod or node fails,
	// the sentinels promote a replica within seconds; a message is acked
	// only once a replica has it too, so a failover loses no acked message.
	// Each pod gets its own volume of the given storage. It cannot be
	// changed after creation: the room's data would not move between a
	// single Redis and a replicated one.
	// +kubebuilder:default=false
	// +optional
	HighAvailability bool `json:"highAvailability,omitempty"`
}

// ServiceSpec configures the chat Service.
type ServiceSpec struct {
	// type of the chat Service.
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// port the Service listens on; it forwards to the chat pods' HTTP port.
	// +kubebuilder:default=80
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
}

// TrustedProxy is a CIDR such as 10.244.0.0/16, or a single IP address.
// +kubebuilder:validation:MaxLength=64
// +kubebuilder:validation:XValidation:rule="isCIDR(self) || isIP(self)",message="must be a CIDR (10.0.0.0/8) or an IP address"
type TrustedProxy string

// IngressSpec exposes the room on a host name.
type IngressSpec struct {
	// host is the DNS name people open, e.g. chat.example.com.
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +required
	Host string `json:"host"`

	// className of the IngressClass; empty means the cluster's default class.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClassName string `json:"className,omitempty"`

	// tlsSecretName names a kubernetes.io/tls Secret for host; when set the
	// room is served over HTTPS and its URL starts with https://.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	TLSSecretName string `json:"tlsSecretName,omitempty"`

	// annotations are added to the Ingress, e.g. for cert-manager or the
	// ingress controller's WebSocket timeouts.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// AutoscalingSpec makes a HorizontalPodAutoscaler size the chat Deployment.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="minReplicas must not exceed maxReplicas"
type AutoscalingSpec struct {
	// minReplicas is the fewest chat pods.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// maxReplicas is the most chat pods.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +required
	MaxReplicas int32 `json:"maxReplicas"`

	// targetCPUUtilizationPercentage is the average CPU use, as a percentage
	// of the chat containers' CPU request, that the autoscaler aims for.
	// +kubebuilder:default=70
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// ChatRoomStatus is what the operator last observed of a ChatRoom.
type ChatRoomStatus struct {
	// observedGeneration is the metadata.generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// replicas is the number of chat pods (from the Deployment); the scale
	// subresource reports it.
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// readyReplicas is the number of chat pods ready to serve.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// selector is the label selector of the chat pods, in string form, for
	// the scale subresource (and so for HorizontalPodAutoscalers).
	// +optional
	Selector string `json:"selector,omitempty"`

	// url is where people open the room: the Ingress host when set, else the
	// load balancer's address for a LoadBalancer Service, else the Service's
	// in-cluster address.
	// +optional
	URL string `json:"url,omitempty"`

	// onlineUsers is the number of distinct users online, as one of the
	// room's chat pods reports it every 30 seconds or so (0 while no chat pod
	// runs).
	// +optional
	OnlineUsers int32 `json:"onlineUsers,omitempty"`

	// conditions: Available, Progressing, RedisReady and Degraded; see the
	// Condition* and Reason* constants of this package.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// ChatRoom is a chat deployment: stateless WebSocket chat pods sharing a
// Redis, exposed by a Service and optionally an Ingress.
//
// The name becomes part of owned objects' names (e.g. "<name>-redis-<hash>"
// labels), so it is a DNS label of at most 46 characters.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName={room,rooms},categories=hubbub
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Online",type=integer,JSONPath=`.status.onlineUsers`
// +kubebuilder:printcolumn:name="URL",type=string,JSONPath=`.status.url`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`,priority=1
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].reason`,priority=1
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 46",message="metadata.name must be at most 46 characters (owned objects derive their names from it)"
// +kubebuilder:validation:XValidation:rule="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label starting with a letter (it names the room's Service)"
type ChatRoom struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the room.
	// +kubebuilder:default={}
	// +optional
	Spec ChatRoomSpec `json:"spec,omitempty"`

	// status is what the operator last observed.
	// +optional
	Status ChatRoomStatus `json:"status,omitempty"`
}

// ChatRoomList is a list of ChatRooms.
//
// +kubebuilder:object:root=true
type ChatRoomList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// items are the ChatRooms.
	Items []ChatRoom `json:"items"`
}

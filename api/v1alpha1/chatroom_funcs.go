package v1alpha1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Default values, the same as the CRD's +kubebuilder:default markers (a test
// checks that the API server's defaulting and SetDefaults agree).
const (
	DefaultReplicas              int32 = 2
	DefaultChannel                     = "general"
	DefaultSessionTTL                  = 24 * time.Hour
	DefaultHistoryMaxMessages    int32 = 10000
	DefaultMaxMessageBytes       int32 = 4096
	DefaultMessagesPerSecond     int32 = 5
	DefaultMessageBurst          int32 = 10
	DefaultMaxConnectionsPerUser int32 = 10
	DefaultMaxChannelsPerUser    int32 = 1000
	DefaultMaxChannelMembers     int32 = 10000
	DefaultRedisStorage                = "1Gi"
	DefaultServicePort           int32 = 80
	DefaultMinReplicas           int32 = 1
	DefaultTargetCPUUtilization  int32 = 70
	// DefaultRedisPasswordKey is the key of a Redis password Secret when
	// passwordSecretRef.key is empty.
	DefaultRedisPasswordKey = "password"
	// DefaultBootstrapUsersKey is the key of the bootstrap users Secret when
	// bootstrapUsersSecretRef.key is empty.
	DefaultBootstrapUsersKey = "users"
)

// SetDefaults fills in every field the CRD defaults, exactly as the API
// server would. The operator works on a defaulted copy so that objects
// created without defaulting (in unit tests, or by an older CRD) behave the same.
func SetDefaults(r *ChatRoom) {
	s := &r.Spec
	if s.Replicas == nil {
		s.Replicas = ptr.To(DefaultReplicas)
	}
	if len(s.Channels) == 0 {
		s.Channels = []ChannelName{DefaultChannel}
	}
	if s.Registration == "" {
		s.Registration = RegistrationOpen
	}
	if s.SessionTTL == nil {
		s.SessionTTL = &metav1.Duration{Duration: DefaultSessionTTL}
	}
	if s.History.MaxMessages == 0 {
		s.History.MaxMessages = DefaultHistoryMaxMessages
	}
	l := &s.Limits
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MessagesPerSecond == 0 {
		l.MessagesPerSecond = DefaultMessagesPerSecond
	}
	if l.MessageBurst == 0 {
		l.MessageBurst = DefaultMessageBurst
	}
	if l.MaxConnectionsPerUser == 0 {
		l.MaxConnectionsPerUser = DefaultMaxConnectionsPerUser
	}
	if l.MaxChannelsPerUser == 0 {
		l.MaxChannelsPerUser = DefaultMaxChannelsPerUser
	}
	if l.MaxChannelMembers == 0 {
		l.MaxChannelMembers = DefaultMaxChannelMembers
	}
	if s.Redis == nil {
		s.Redis = &RedisSpec{Managed: &ManagedRedisSpec{}}
	}
	// An explicit empty redis is also managed, but the API server leaves it
	// empty; ManagedRedisOrDefault fills it where it is used.
	if m := s.Redis.Managed; m != nil && m.Storage == nil {
		m.Storage = ptr.To(resource.MustParse(DefaultRedisStorage))
	}
	if s.Service.Type == "" {
		s.Service.Type = "ClusterIP"
	}
	if s.Service.Port == 0 {
		s.Service.Port = DefaultServicePort
	}
	if a := s.Autoscaling; a != nil {
		if a.MinReplicas == 0 {
			a.MinReplicas = DefaultMinReplicas
		}
		if a.TargetCPUUtilizationPercentage == 0 {
			a.TargetCPUUtilizationPercentage = DefaultTargetCPUUtilization
		}
	}
}

// RoomID is the room's identity for the chat server ("<namespace>/<name>"):
// its --room flag, and the prefix of every Redis key of the room.
func (r *ChatRoom) RoomID() string { return r.Namespace + "/" + r.Name }

// ChatName names the chat Deployment, Service, ServiceAccount,
// PodDisruptionBudget, HorizontalPodAutoscaler and Ingress.
func (r *ChatRoom) ChatName() string { return r.Name }

// ConfigMapName names the ConfigMap holding the rendered chat server configuration.
func (r *ChatRoom) ConfigMapName() string { return r.Name + "-config" }

// RedisName names the managed Redis StatefulSet, Service, password Secret,
// NetworkPolicy and (with highAvailability) PodDisruptionBudget.
func (r *ChatRoom) RedisName() string { return r.Name + "-redis" }

// RedisHeadlessName names the headless Service that gives the pods of a
// highly available managed Redis their stable host names.
func (r *ChatRoom) RedisHeadlessName() string { return r.Name + "-redis-headless" }

// ManagedRedis reports whether the operator runs this room's Redis: no
// redis, an empty one and an explicit managed one all mean yes.
func (s *RedisSpec) ManagedRedis() bool { return s == nil || s.URL == "" }

// HighAvailability reports whether the operator runs this room's Redis
// replicated, with Sentinel (managed.highAvailability).
func (s *RedisSpec) HighAvailability() bool {
	return s.ManagedRedis() && s != nil && s.Managed != nil && s.Managed.HighAvailability
}

// ManagedOrDefault is the managed Redis' settings, defaulted; for an
// external Redis it is nil.
func (s *RedisSpec) ManagedOrDefault() *ManagedRedisSpec {
	if !s.ManagedRedis() {
		return nil
	}
	m := &ManagedRedisSpec{}
	if s != nil && s.Managed != nil {
		m = s.Managed.DeepCopy()
	}
	if m.Storage == nil {
		m.Storage = ptr.To(resource.MustParse(DefaultRedisStorage))
	}
	return m
}

// KeyOr returns the selector's key, or def when it is empty.
func (s SecretKeySelector) KeyOr(def string) string {
	if s.Key == "" {
		return def
	}
	return s.Key
}

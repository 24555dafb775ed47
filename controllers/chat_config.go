package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

// Fixed facts of the chat pod.
const (
	chatPort     = 8080
	chatPortName = "http"
	// bootstrapUsersDir holds the bootstrap users Secret key, mounted
	// read-only from the pod volume bootstrapUsersVolume.
	bootstrapUsersVolume = "bootstrap-users"
	bootstrapUsersDir    = "/etc/hubbub/bootstrap"
	bootstrapUsersFile   = bootstrapUsersDir + "/users"
	// terminationGraceMargin is added to the chat server's --shutdown-grace so
	// that Kubernetes never kills a pod that is still draining on time.
	terminationGraceMargin = 5

	redisPort     = 6379
	redisPortName = "redis"
)

// chatConfig is the chat server configuration of a (defaulted) room. The
// Redis password is not in it: pods read it from a Secret through the
// environment (see redisPasswordRef).
func chatConfig(room *chatv1alpha1.ChatRoom) config.Config {
	s := room.Spec
	c := config.Default()
	c.Room = room.RoomID()
	if s.Redis.ManagedRedis() {
		c.RedisURL = managedRedisURL(room)
		if s.Redis.HighAvailability() {
			// A message is acked once a replica has it too (WAIT 1): a
			// failover then loses no acked message. The primary refuses
			// writes without a replica (min-replicas-to-write 1) anyway.
			c.RedisMinReplicaAcks = 1
		}
	} else {
		c.RedisURL = s.Redis.URL
	}
	c.Channels = make([]string, len(s.Channels))
	for i, ch := range s.Channels {
		c.Channels[i] = string(ch)
	}
	c.Registration = config.Registration(s.Registration)
	if s.BootstrapUsersSecretRef != nil {
		c.BootstrapUsersFile = bootstrapUsersFile
	}
	c.SessionTTL = s.SessionTTL.Duration
	c.HistoryMax = int(s.History.MaxMessages)
	c.MaxMessageBytes = int(s.Limits.MaxMessageBytes)
	c.MessagesPerSecond = float64(s.Limits.MessagesPerSecond)
	c.MessageBurst = int(s.Limits.MessageBurst)
	c.MaxConnectionsPerUser = int(s.Limits.MaxConnectionsPerUser)
	c.MaxChannelsPerUser = int(s.Limits.MaxChannelsPerUser)
	c.MaxChannelMembers = int(s.Limits.MaxChannelMembers)
	for _, a := range s.Admins {
		c.Admins = append(c.Admins, string(a))
	}
	if in := s.Ingress; in != nil {
		// Behind an ingress the browser's origin is the public host.
		c.AllowedOrigins = []string{roomURLScheme(in) + "://" + in.Host}
	}
	// Only the proxies the room names are trusted: the operator does not
	// know the ingress controller's addresses, and trusting a guess would
	// let anyone who reaches a pod choose their X-Forwarded-For.
	for _, p := range s.TrustedProxies {
		c.TrustedProxies = append(c.TrustedProxies, string(p))
	}
	return c
}

// managedRedisURL is the in-cluster address of a room's managed Redis: its
// Service, or with highAvailability its sentinels.
func managedRedisURL(room *chatv1alpha1.ChatRoom) string {
	if room.Spec.Redis.HighAvailability() {
		return managedSentinelURL(room)
	}
	return fmt.Sprintf("redis://%s.%s.svc:%d", room.RedisName(), room.Namespace, redisPort)
}

// redisPasswordRef is the Secret key holding the room's Redis password, or
// nil for an external Redis without one.
func redisPasswordRef(room *chatv1alpha1.ChatRoom) *chatv1alpha1.SecretKeySelector {
	r := room.Spec.Redis
	switch {
	case r.ManagedRedis():
		return &chatv1alpha1.SecretKeySelector{Name: room.RedisName(), Key: chatv1alpha1.DefaultRedisPasswordKey}
	case r.PasswordSecretRef != nil:
		return &chatv1alpha1.SecretKeySelector{Name: r.PasswordSecretRef.Name, Key: r.PasswordSecretRef.KeyOr(chatv1alpha1.DefaultRedisPasswordKey)}
	}
	return nil
}

// bootstrapUsersRef is the Secret key of the room's bootstrap users, or nil.
func bootstrapUsersRef(room *chatv1alpha1.ChatRoom) *chatv1alpha1.SecretKeySelector {
	r := room.Spec.BootstrapUsersSecretRef
	if r == nil {
		return nil
	}
	return &chatv1alpha1.SecretKeySelector{Name: r.Name, Key: r.KeyOr(chatv1alpha1.DefaultBootstrapUsersKey)}
}

// configEnv renders c as the environment variables the chat server reads
// (config.EnvName of each flag), leaving out flags at their defaults. It is
// the data of the room's ConfigMap, which the chat container takes with envFrom.
func configEnv(c config.Config) map[string]string {
	env := map[string]string{}
	for _, arg := range c.Args() {
		name, value, _ := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		env[config.EnvName(name)] = value
	}
	return env
}

// configHash is a short digest of the ConfigMap data; it goes into the pod
// template so that a change rolls the pods. The Secrets the pods read are
// not in it: the operator may not read Secrets, so a changed Secret rolls
// nothing by itself (docs/operator.md says how to restart).
func configHash(data map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%s=%q\n", k, data[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// roomURLScheme is https when the ingress terminates TLS.
func roomURLScheme(in *chatv1alpha1.IngressSpec) string {
	if in.TLSSecretName != "" {
		return "https"
	}
	return "http"
}

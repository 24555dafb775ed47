package controllers

import (
	"io"
	"net"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

// testRooms are rooms covering every setting that reaches the chat server.
func testRooms() map[string]*chatv1alpha1.ChatRoom {
	meta := metav1.ObjectMeta{Namespace: "team-a", Name: "lobby", UID: "uid-1"}
	return map[string]*chatv1alpha1.ChatRoom{
		"minimal": {ObjectMeta: meta},
		"external redis, closed, bootstrap users": {ObjectMeta: meta, Spec: chatv1alpha1.ChatRoomSpec{
			Registration:            chatv1alpha1.RegistrationClosed,
			BootstrapUsersSecretRef: &chatv1alpha1.SecretKeySelector{Name: "users", Key: "list"},
			Redis: &chatv1alpha1.RedisSpec{
				URL:               "rediss://redis.example.com:6380/2",
				PasswordSecretRef: &chatv1alpha1.SecretKeySelector{Name: "redis-pw"},
			},
		}},
		"external redis without password": {ObjectMeta: meta, Spec: chatv1alpha1.ChatRoomSpec{
			Redis: &chatv1alpha1.RedisSpec{URL: "redis-sentinel://s1:26379,s2:26379/?master=main"},
		}},
		"every limit, ingress with TLS": {ObjectMeta: meta, Spec: chatv1alpha1.ChatRoomSpec{
			Channels:   []chatv1alpha1.ChannelName{"general", "random", "ops-2"},
			SessionTTL: &metav1.Duration{Duration: 90 * time.Minute},
			History:    chatv1alpha1.HistorySpec{MaxMessages: 500},
			Limits: chatv1alpha1.LimitsSpec{
				MaxMessageBytes: 2048, MessagesPerSecond: 2, MessageBurst: 4, MaxConnectionsPerUser: 3,
				MaxChannelsPerUser: 50, MaxChannelMembers: 500,
			},
			Admins:         []chatv1alpha1.Username{"alice", "ops.bot"},
			Ingress:        &chatv1alpha1.IngressSpec{Host: "chat.example.com", TLSSecretName: "tls"},
			TrustedProxies: []chatv1alpha1.TrustedProxy{"10.244.0.0/16", "fd00::7"},
		}},
		"ingress without TLS": {ObjectMeta: meta, Spec: chatv1alpha1.ChatRoomSpec{
			Ingress: &chatv1alpha1.IngressSpec{Host: "chat.example.com"},
		}},
		"managed redis, highly available": {ObjectMeta: meta, Spec: chatv1alpha1.ChatRoomSpec{
			Redis: &chatv1alpha1.RedisSpec{Managed: &chatv1alpha1.ManagedRedisSpec{HighAvailability: true}},
		}},
	}
}

func defaulted(room *chatv1alpha1.ChatRoom) *chatv1alpha1.ChatRoom {
	room = room.DeepCopy()
	chatv1alpha1.SetDefaults(room)
	return room
}

// TestChatPodParsesBack is the guard against the operator and the chat
// server drifting apart: the rendered Deployment and ConfigMap are turned
// into the process's args and environment as the kubelet would, parsed with
// the chat server's own config.Load, and compared with the intended config.
func TestChatPodParsesBack(t *testing.T) {
	for name, room := range testRooms() {
		t.Run(name, func(t *testing.T) {
			room := defaulted(room)
			want := chatConfig(room)
			data := configEnv(want)
			cm := desiredConfigMap(room, data)
			dep, err := desiredDeployment(room, "hubbub:1", configHash(data), want)
			if err != nil {
				t.Fatal(err)
			}
			pod := dep.Spec.Template.Spec
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers", len(pod.Containers))
			}
			c := pod.Containers[0]

			// The environment: envFrom first, then env, which wins.
			env := map[string]string{}
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef == nil || ptr.Deref(from.ConfigMapRef.Name, "") != ptr.Deref(cm.Name, "") {
					t.Fatalf("envFrom %+v is not the room's ConfigMap %s", from, ptr.Deref(cm.Name, ""))
				}
				for k, v := range cm.Data {
					env[k] = v
				}
			}
			for _, e := range c.Env {
				switch {
				case e.Value != nil:
					env[*e.Name] = *e.Value
				case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
					// Stands for the Secret's value.
					env[*e.Name] = "secret:" + *e.ValueFrom.SecretKeyRef.Name + "/" + *e.ValueFrom.SecretKeyRef.Key
				default:
					t.Fatalf("env %s has no value the test understands", *e.Name)
				}
			}
			lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
			args := append(append([]string{}, c.Command...), c.Args...)
			got, err := config.Load(args, lookup, io.Discard)
			if err != nil {
				t.Fatalf("the chat server refuses the pod's configuration: %v", err)
			}

			if ref := redisPasswordRef(room); ref != nil {
				want.RedisPassword = "secret:" + ref.Name + "/" + ref.Key
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("the chat server would run with a different config (-intended +parsed):\n%s", diff)
			}

			// Every ConfigMap key must matter: a key naming no flag is
			// silently ignored by the server, which is drift too.
			for k := range data {
				without := func(name string) (string, bool) {
					if name == k {
						return "", false
					}
					return lookup(name)
				}
				other, err := config.Load(args, without, io.Discard)
				if err == nil && cmp.Equal(other, got) {
					t.Errorf("ConfigMap key %s changes nothing: it names no chat server flag", k)
				}
			}

			// The pod serves where the config listens, and lets the server
			// drain for its whole grace period.
			_, port, err := net.SplitHostPort(got.Addr)
			if err != nil {
				t.Fatal(err)
			}
			if p := strconv.Itoa(int(*c.Ports[0].ContainerPort)); p != port {
				t.Errorf("container port %s, server listens on %s", p, port)
			}
			if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= got.ShutdownGrace {
				t.Errorf("terminationGracePeriodSeconds %s does not exceed --shutdown-grace %s", grace, got.ShutdownGrace)
			}

			// The bootstrap users file is where the Secret key is mounted.
			if got.BootstrapUsersFile != "" {
				mounted := ""
				for _, m := range c.VolumeMounts {
					for _, v := range pod.Volumes {
						if *v.Name == *m.Name && v.Secret != nil {
							mounted = path.Join(*m.MountPath, *v.Secret.Items[0].Path)
							if *v.Secret.Items[0].Key != room.Spec.BootstrapUsersSecretRef.KeyOr(chatv1alpha1.DefaultBootstrapUsersKey) {
								t.Errorf("mounted key %s", *v.Secret.Items[0].Key)
							}
						}
					}
				}
				if mounted != got.BootstrapUsersFile {
					t.Errorf("bootstrap users mounted at %q, server reads %q", mounted, got.BootstrapUsersFile)
				}
			}
		})
	}
}

func TestChatConfigFollowsTheRoom(t *testing.T) {
	rooms := testRooms()
	tests := []struct {
		room  string
		check func(config.Config) error
	}{
		{"minimal", func(c config.Config) error {
			return firstErr(
				eq("room", c.Room, "team-a/lobby"),
				eq("redis", c.RedisURL, "redis://lobby-redis.team-a.svc:6379"),
				// A lone Redis: the server decides (no replica, no wait).
				eq("replica acks", c.RedisMinReplicaAcks, config.Default().RedisMinReplicaAcks),
				eq("trusted proxies", len(c.TrustedProxies), 0),
			)
		}},
		{"every limit, ingress with TLS", func(c config.Config) error {
			return firstErr(
				eq("origins", len(c.AllowedOrigins), 1),
				eq("origin", c.AllowedOrigins[0], "https://chat.example.com"),
				eq("trusted proxies", strings.Join(c.TrustedProxies, ","), "10.244.0.0/16,fd00::7"),
				eq("ttl", c.SessionTTL, 90*time.Minute),
				eq("history", c.HistoryMax, 500),
				eq("rate", c.MessagesPerSecond, 2.0),
				eq("burst", c.MessageBurst, 4),
				eq("connections", c.MaxConnectionsPerUser, 3),
				eq("bytes", c.MaxMessageBytes, 2048),
				eq("channels per person", c.MaxChannelsPerUser, 50),
				eq("members", c.MaxChannelMembers, 500),
				eq("admins", strings.Join(c.Admins, ","), "alice,ops.bot"),
			)
		}},
		{"ingress without TLS", func(c config.Config) error { return eq("origin", c.AllowedOrigins[0], "http://chat.example.com") }},
		{"managed redis, highly available", func(c config.Config) error {
			return firstErr(
				// Through every sentinel, by stable host name.
				eq("redis", c.RedisURL, "redis-sentinel://"+
					"lobby-redis-0.lobby-redis-headless.team-a.svc:26379,"+
					"lobby-redis-1.lobby-redis-headless.team-a.svc:26379,"+
					"lobby-redis-2.lobby-redis-headless.team-a.svc:26379/?master=lobby"),
				// An ack waits for a replica, so a failover loses none.
				eq("replica acks", c.RedisMinReplicaAcks, 1),
				eq("password kept out", c.RedisPassword, ""),
			)
		}},
		{"external redis, closed, bootstrap users", func(c config.Config) error {
			return firstErr(
				eq("redis", c.RedisURL, "rediss://redis.example.com:6380/2"),
				eq("registration", c.Registration, config.RegistrationClosed),
				eq("bootstrap", c.BootstrapUsersFile, bootstrapUsersFile),
				eq("password kept out", c.RedisPassword, ""),
			)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.room, func(t *testing.T) {
			if err := tt.check(chatConfig(defaulted(rooms[tt.room]))); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestConfigHash(t *testing.T) {
	base := configHash(map[string]string{"A": "1", "B": "2"})
	tests := []struct {
		name string
		data map[string]string
		same bool
	}{
		{"same content", map[string]string{"B": "2", "A": "1"}, true},
		{"value changed", map[string]string{"A": "1", "B": "3"}, false},
		{"key moved into value", map[string]string{"A": "1\nB=2"}, false},
		{"key gone", map[string]string{"A": "1"}, false},
	}
	for _, tt := range tests {
		if got := configHash(tt.data); (got == base) != tt.same {
			t.Errorf("%s: hash %s vs %s, want same=%v", tt.name, got, base, tt.same)
		}
	}
}

func TestRedisPasswordRef(t *testing.T) {
	rooms := testRooms()
	tests := []struct {
		room string
		want *chatv1alpha1.SecretKeySelector
	}{
		{"minimal", &chatv1alpha1.SecretKeySelector{Name: "lobby-redis", Key: "password"}},
		{"managed redis, highly available", &chatv1alpha1.SecretKeySelector{Name: "lobby-redis", Key: "password"}},
		{"external redis, closed, bootstrap users", &chatv1alpha1.SecretKeySelector{Name: "redis-pw", Key: "password"}},
		{"external redis without password", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, redisPasswordRef(defaulted(rooms[tt.room]))); diff != "" {
			t.Errorf("%s: %s", tt.room, diff)
		}
	}
	// An explicit empty redis is a managed one too.
	room := &chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: chatv1alpha1.ChatRoomSpec{Redis: &chatv1alpha1.RedisSpec{}}}
	if ref := redisPasswordRef(defaulted(room)); ref == nil || ref.Name != "x-redis" {
		t.Errorf("empty redis: %+v", ref)
	}
}

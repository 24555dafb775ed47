package config

import (
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(*Config)
		wantErr string
	}{
		{name: "defaults", want: func(*Config) {}},
		{name: "flags", args: []string{"--addr=:9000", "--channels=general, random", "--session-ttl=2h", "--registration=Closed"},
			want: func(c *Config) {
				c.Addr, c.Channels, c.SessionTTL, c.Registration = ":9000", []string{"general", "random"}, 2*time.Hour, RegistrationClosed
			}},
		{name: "env fallback", env: map[string]string{"HUBBUB_REDIS_URL": "redis://r:6379/0", "HUBBUB_HISTORY_MAX": "50", "HUBBUB_ALLOWED_ORIGINS": "https://a.example,https://b.example:8443"},
			want: func(c *Config) {
				c.RedisURL, c.HistoryMax, c.AllowedOrigins = "redis://r:6379/0", 50, []string{"https://a.example", "https://b.example:8443"}
			}},
		{name: "flag beats env", args: []string{"--history-max=7"}, env: map[string]string{"HUBBUB_HISTORY_MAX": "50"},
			want: func(c *Config) { c.HistoryMax = 7 }},
		{name: "bad env value names the variable", env: map[string]string{"HUBBUB_HISTORY_MAX": "lots"}, wantErr: "HUBBUB_HISTORY_MAX"},
		{name: "bad channel", args: []string{"--channels=General"}, wantErr: "--channels"},
		{name: "duplicate channel", args: []string{"--channels=a,a"}, wantErr: "listed twice"},
		{name: "bad registration", args: []string{"--registration=maybe"}, wantErr: "--registration"},
		{name: "bad bcrypt cost", args: []string{"--bcrypt-cost=3"}, wantErr: "--bcrypt-cost"},
		{name: "bad origin", args: []string{"--allowed-origins=chat.example.com"}, wantErr: "--allowed-origins"},
		{name: "trusted proxies", args: []string{"--trusted-proxies=10.0.0.0/8, fd00::/8,192.0.2.7"},
			want: func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"} }},
		{name: "trusted proxies from env", env: map[string]string{"HUBBUB_TRUSTED_PROXIES": "172.16.0.0/12"},
			want: func(c *Config) { c.TrustedProxies = []string{"172.16.0.0/12"} }},
		{name: "bad trusted proxy", args: []string{"--trusted-proxies=10.0.0.0/33"}, wantErr: "--trusted-proxies"},
		{name: "replica acks below auto", args: []string{"--redis-min-replica-acks=-2"}, wantErr: "--redis-min-replica-acks"},
		{name: "replica ack timeout past the read timeout", args: []string{"--redis-replica-ack-timeout=5s"}, wantErr: "--redis-replica-ack-timeout"},
		{name: "hostname is no trusted proxy", args: []string{"--trusted-proxies=ingress.local"}, wantErr: "--trusted-proxies"},
		{name: "old boolean flag is gone", args: []string{"--trust-proxy-headers"}, wantErr: "not defined"},
		{name: "per-IP login budget below per-user", args: []string{"--login-attempts-per-minute=20", "--login-attempts-per-ip-per-minute=10"},
			wantErr: "--login-attempts-per-ip-per-minute"},
		{name: "bad redis scheme", args: []string{"--redis-url=http://x"}, wantErr: "--redis-url"},
		{name: "bad room", args: []string{"--room=noslash"}, wantErr: "--room"},
		{name: "room with hash tag braces", args: []string{"--room=a/{b}"}, wantErr: "--room"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestArgsRoundTrip(t *testing.T) {
	c := Default()
	c.Room, c.RedisURL, c.Channels = "prod/lobby", "redis://redis:6379/0", []string{"general", "ops"}
	c.Registration, c.SessionTTL, c.HistoryMax, c.MaxMessageBytes = RegistrationClosed, 90*time.Minute, 500, 2048
	c.MessagesPerSecond, c.MessageBurst, c.MaxConnectionsPerUser = 2.5, 4, 3
	c.AllowedOrigins, c.BcryptCost, c.ShutdownGrace = []string{"https://chat.example.com"}, 10, 40*time.Second
	c.TrustedProxies, c.LoginAttemptsPerMinute, c.LoginAttemptsPerIPPerMinute = []string{"10.0.0.0/8", "fd00::/8", "192.0.2.7"}, 5, 20
	c.PresenceTTL, c.PongWait = 12*time.Second, 30*time.Second
	c.RedisMinReplicaAcks, c.RedisReplicaAckTimeout = 1, 500*time.Millisecond
	c.MaxConnections, c.DebugAddr, c.SendQueueMax, c.WriteTimeout = 1234, "127.0.0.1:6060", 100, 3*time.Second
	got, err := Load(c.Args(), nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if len(Default().Args()) != 0 {
		t.Errorf("defaults render flags: %v", Default().Args())
	}
}

func TestHelpListsEveryFlagWithItsEnv(t *testing.T) {
	var out strings.Builder
	_, err := Load([]string{"--help"}, nil, &out)
	if err != ErrHelp {
		t.Fatalf("err = %v", err)
	}
	for _, f := range []string{"addr", "redis-url", "channels", "registration", "session-ttl", "history-max", "max-message-bytes",
		"messages-per-second", "max-connections-per-user", "allowed-origins", "bcrypt-cost",
		"login-attempts-per-minute", "login-attempts-per-ip-per-minute", "trusted-proxies"} {
		if !strings.Contains(out.String(), "--"+f+" (env "+EnvName(f)) {
			t.Errorf("help lacks --%s with its env var", f)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"10.0.0.0/8", "10.1.2.3/16", "192.0.2.7", "fd00::/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"), // masked: only the network counts
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("fd00::/8"),
		netip.MustParsePrefix("::1/128"),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ParsePrefixes (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"10.0.0.0/33", "ingress", "10.0.0.0/", ""} {
		if _, err := ParsePrefixes([]string{bad}); err == nil {
			t.Errorf("ParsePrefixes(%q) succeeded", bad)
		}
	}
}

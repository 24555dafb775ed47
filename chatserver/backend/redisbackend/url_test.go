package redisbackend

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"
)

func TestParseURL(t *testing.T) {
	base := func(o redis.UniversalOptions) redis.UniversalOptions {
		if o.DialTimeout == 0 {
			o.DialTimeout = defaultDialTimeout
		}
		if o.ReadTimeout == 0 {
			o.ReadTimeout = defaultReadTimeout
		}
		if o.WriteTimeout == 0 {
			o.WriteTimeout = defaultWriteTimeout
		}
		o.DialerRetries = defaultDialerRetries
		o.ContextTimeoutEnabled = true
		return o
	}
	tests := []struct {
		url     string
		want    redis.UniversalOptions
		tls     bool
		dialer  bool
		wantErr bool
	}{
		{url: "redis://localhost:6379", want: base(redis.UniversalOptions{Addrs: []string{"localhost:6379"}})},
		{url: "redis://:secret@redis.example:6380/2", want: base(redis.UniversalOptions{Addrs: []string{"redis.example:6380"}, Password: "secret", DB: 2})},
		{url: "redis://user:pw@h:1?dial_timeout=5s", want: base(redis.UniversalOptions{Addrs: []string{"h:1"}, Username: "user", Password: "pw", DialTimeout: 5 * time.Second})},
		{url: "rediss://h:6379", want: base(redis.UniversalOptions{Addrs: []string{"h:6379"}}), tls: true},
		{url: "unix:///run/redis.sock?db=3", want: base(redis.UniversalOptions{Addrs: []string{"/run/redis.sock"}, DB: 3}), dialer: true},
		{
			url:  "redis-sentinel://:pw@s1:26379,s2:26379,s3:26380/?master=mymaster",
			want: base(redis.UniversalOptions{Addrs: []string{"s1:26379", "s2:26379", "s3:26380"}, MasterName: "mymaster", Password: "pw", SentinelPassword: "pw"}),
		},
		{
			url:  "redis-sentinel://s1:26379/1?master=m&sentinel_password=sp&tls=true",
			want: base(redis.UniversalOptions{Addrs: []string{"s1:26379"}, MasterName: "m", SentinelPassword: "sp", DB: 1}),
			tls:  true,
		},
		{
			url:  "redis-cluster://:pw@n1:7000,n2:7001",
			want: base(redis.UniversalOptions{Addrs: []string{"n1:7000", "n2:7001"}, Password: "pw", IsClusterMode: true}),
		},
		{url: "redis-cluster://n1/", want: base(redis.UniversalOptions{Addrs: []string{"n1:6379"}, IsClusterMode: true})},
		{url: "redis-sentinel://s1:26379/", wantErr: true},
		{url: "redis-cluster://n1:7000/3", wantErr: true},
		{url: "redis-cluster://", wantErr: true},
		{url: "http://h:1", wantErr: true},
		{url: "redis-sentinel://s1/x?master=m", wantErr: true},
		{url: "redis-cluster://n1:7000?tls=maybe", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			got, err := ParseURL(tc.url)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseURL(%q) = %+v, want an error", tc.url, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, *got, cmpopts.IgnoreFields(redis.UniversalOptions{}, "Dialer", "TLSConfig"), cmpopts.IgnoreUnexported(redis.UniversalOptions{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if (got.TLSConfig != nil) != tc.tls {
				t.Errorf("TLS = %v, want %v", got.TLSConfig != nil, tc.tls)
			}
			if got.TLSConfig != nil && got.TLSConfig.MinVersion < tls.VersionTLS12 {
				t.Errorf("TLS MinVersion %x, want at least TLS 1.2", got.TLSConfig.MinVersion)
			}
			if (got.Dialer != nil) != tc.dialer {
				t.Errorf("custom dialer = %v, want %v", got.Dialer != nil, tc.dialer)
			}
		})
	}
}

package controllers

import (
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

// channelPattern is the CRD's pattern for channel names.
var channelPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// FuzzRenderedConfigParsesBack: for any room the API server would accept,
// the rendered pod configuration is accepted by the chat server and means
// exactly what the operator intended. Run longer with
// go test -run '^$' -fuzz FuzzRenderedConfigParsesBack ./controllers
func FuzzRenderedConfigParsesBack(f *testing.F) {
	f.Add("general,random", int64(3600), int32(10000), int32(4096), int32(5), int32(10), int32(10), true, "chat.example.com", false)
	f.Add("a", int64(60), int32(1), int32(1), int32(1), int32(1), int32(1), false, "", true)
	f.Add("x-1,y-2,z-3", int64(86400*30), int32(1000000), int32(1048576), int32(1000), int32(10000), int32(1000), true, "a.b", true)
	f.Fuzz(func(t *testing.T, channels string, ttlSeconds int64, history, maxBytes, rate, burst, conns int32, closed bool, host string, tls bool) {
		names := strings.Split(channels, ",")
		seen := map[string]bool{}
		spec := chatv1alpha1.ChatRoomSpec{
			SessionTTL: &metav1.Duration{Duration: time.Duration(ttlSeconds) * time.Second},
			History:    chatv1alpha1.HistorySpec{MaxMessages: history},
			Limits:     chatv1alpha1.LimitsSpec{MaxMessageBytes: maxBytes, MessagesPerSecond: rate, MessageBurst: burst, MaxConnectionsPerUser: conns},
		}
		// Keep to what the CRD admits.
		for _, n := range names {
			if !channelPattern.MatchString(n) || seen[n] {
				t.Skip()
			}
			seen[n] = true
			spec.Channels = append(spec.Channels, chatv1alpha1.ChannelName(n))
		}
		if len(names) > 100 || ttlSeconds < 60 || ttlSeconds > 1<<31 || history < 1 || history > 1000000 || maxBytes < 1 || maxBytes > 1048576 ||
			rate < 1 || rate > 1000 || burst < 1 || burst > 10000 || conns < 1 || conns > 1000 {
			t.Skip()
		}
		if closed {
			spec.Registration = chatv1alpha1.RegistrationClosed
		}
		if host != "" {
			if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`).MatchString(host) || len(host) > 253 {
				t.Skip()
			}
			spec.Ingress = &chatv1alpha1.IngressSpec{Host: host}
			if tls {
				spec.Ingress.TLSSecretName = "tls"
			}
		}
		r := room(spec)
		want := chatConfig(r)
		data := configEnv(want)
		got, err := config.Load(nil, func(k string) (string, bool) { v, ok := data[k]; return v, ok }, io.Discard)
		if err != nil {
			t.Fatalf("the chat server refuses %+v: %v", data, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-intended +parsed):\n%s", diff)
		}
	})
}

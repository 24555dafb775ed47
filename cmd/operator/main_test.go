package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/config"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(flags) string
	}{
		{name: "chat image required", args: nil, wantErr: "--chat-image is required"},
		{name: "defaults", args: []string{"--chat-image=hubbub:1"}, check: func(f flags) string {
			return cmp.Diff([]any{"hubbub:1", "redis:7.2-alpine", true, ":8080", ":8081", 30 * time.Second, 4},
				[]any{f.chatImage, f.redisImage, f.leaderElect, f.metricsAddr, f.probeAddr, f.presenceInterval, f.maxConcurrentReconciles})
		}},
		{name: "everything", args: []string{"--chat-image=c", "--redis-image=r", "--watch-namespaces=a, b", "--leader-elect=false", "--presence-interval=1m", "--log-level=debug"}, check: func(f flags) string {
			return cmp.Diff([]any{"r", []string{"a", "b"}, false, time.Minute, "DEBUG"},
				[]any{f.redisImage, config.SplitList(f.watchNamespaces), f.leaderElect, f.presenceInterval, f.logLevel.String()})
		}},
		// Flags of the NetworkPolicy's operator peer, which is gone: still
		// accepted, so that older command lines start the operator.
		{name: "retired flags", args: []string{"--chat-image=c", "--operator-namespace=hubbub-system", "--operator-pod-labels=app=x,b=c"}, check: func(f flags) string {
			return cmp.Diff("c", f.chatImage)
		}},
		{name: "stray argument", args: []string{"--chat-image=c", "extra"}, wantErr: "unexpected arguments"},
		{name: "bad log level", args: []string{"--chat-image=c", "--log-level=loud"}, wantErr: "log-level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := tt.check(f); diff != "" {
				t.Error(diff)
			}
		})
	}
}

package loadtest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarizeNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 200; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := summarize(ds)
	want := Latency{N: 200, P50ms: 100, P99ms: 198, MaxMs: 200, MeanMs: 100.5}
	if got != want {
		t.Errorf("summarize(1..200 ms) = %+v, want %+v", got, want)
	}
	if ds[0] != 200*time.Millisecond {
		t.Error("summarize sorted its argument")
	}
	if got := summarize([]time.Duration{3 * time.Millisecond}); got.P50ms != 3 || got.P99ms != 3 || got.MaxMs != 3 {
		t.Errorf("one timing: %+v", got)
	}
	if got := summarize(nil); got != (Latency{}) {
		t.Errorf("no timings: %+v", got)
	}
}

func TestCommandsPerConnect(t *testing.T) {
	before := parseCommandStats("# Commandstats\r\ncmdstat_xrevrange:calls=10,usec=100,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=1,usec=5,usec_per_call=5.00\r\n")
	after := parseCommandStats("# Commandstats\r\ncmdstat_xrevrange:calls=2010,usec=4100,usec_per_call=2.04\r\n" +
		"cmdstat_evalsha:calls=10,usec=9000,usec_per_call=900.00\r\ncmdstat_info:calls=3,usec=15,usec_per_call=5.00\r\n" +
		"cmdstat_get:calls=0,usec=0,usec_per_call=0\r\n")
	got := commandsPerConnect(before, after, 2)
	want := []RedisCommand{{"evalsha", 5, 4500}, {"xrevrange", 1000, 2000}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestHelloSmall runs the hello benchmark end to end on a tiny room: the
// person in 5 created channels must get all 5 and the default one in
// hello, with every posted message unread, and the directory must list
// everyone once.
func TestHelloSmall(t *testing.T) {
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "github.com/hubbub-chat/hubbub/cmd/chatserver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	backends := []string{"memory"}
	if _, err := exec.LookPath("redis-server"); err == nil {
		backends = append(backends, "redis")
	}
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			cfg := HelloConfig{
				ChatServer: filepath.Join(dir, "chatserver"), RedisServer: "redis-server", Backend: backend,
				People: 20, Channels: 5, MessagesPerChannel: 2, Connects: 6, Concurrency: 2,
				DirectoryWalks: 1, Prefix: "bench1", Requests: 3, BcryptCost: 4,
				WorkDir: t.TempDir(), Timeout: time.Minute, Settle: 20 * time.Millisecond,
			}
			var logs bytes.Buffer
			res, err := RunHello(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatalf("RunHello: %v\n%s", err, logs.String())
			}
			if len(res.Connects) != 4 {
				t.Fatalf("%d scenarios, want 4: %+v", len(res.Connects), res.Connects)
			}
			for i, c := range res.Connects {
				wantChannels, wantUnread := 6, 10
				if i == 3 { // the person in no created channel
					wantChannels, wantUnread = 1, 0
				}
				if c.Channels != wantChannels || c.DefaultChannels != 1 || c.Unread != wantUnread {
					t.Errorf("%s: hello listed %d channels (%d default), %d unread; want %d (1), %d",
						c.Scenario, c.Channels, c.DefaultChannels, c.Unread, wantChannels, wantUnread)
				}
				if c.Failed != 0 || c.Hello.N != cfg.Connects || c.Hello.P50ms <= 0 || c.Hello.P50ms > c.Hello.MaxMs || c.Upgrade.P50ms > c.Hello.P50ms {
					t.Errorf("%s: implausible timings %+v (to 101: %+v), %d failed", c.Scenario, c.Hello, c.Upgrade, c.Failed)
				}
				if c.HelloBytes < 100 || c.HelloGzipBytes <= 0 {
					t.Errorf("%s: hello %d bytes, %d gzipped", c.Scenario, c.HelloBytes, c.HelloGzipBytes)
				}
				if backend == "redis" && len(c.Redis) == 0 {
					t.Errorf("%s: no Redis commands counted", c.Scenario)
				}
			}
			if res.Connects[0].HelloBytes <= res.Connects[3].HelloBytes {
				t.Errorf("hello with 5 channels (%d bytes) not larger than with none (%d)", res.Connects[0].HelloBytes, res.Connects[3].HelloBytes)
			}
			items := map[string]int{}
			for _, r := range res.Requests {
				items[strings.Fields(r.Request)[1]] = r.Items
			}
			// bench1, bench10 .. bench19
			want := map[string]int{"/api/v1/channels": 6, "/api/v1/users?limit=200&after=…,": 20, "/api/v1/users?limit=200&q=bench1": 11}
			for k, n := range want {
				if items[k] != n {
					t.Errorf("%s: %d items, want %d (all: %v)", k, items[k], n, items)
				}
			}
			if backend == "redis" {
				if len(res.Storage) != 7 {
					t.Errorf("%d storage calls timed, want 7: %+v", len(res.Storage), res.Storage)
				} else if res.Storage[2].Items != 5 || res.Storage[5].Items != 5 {
					t.Errorf("LastIDs and CountsAfter of %d and %d channels, want 5: %+v", res.Storage[2].Items, res.Storage[5].Items, res.Storage)
				}
			}
			res.WriteMarkdown(io.Discard)
		})
	}
}

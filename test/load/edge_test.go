package load

import (
	"os/exec"
	"runtime"
	"testing"

	"github.com/hubbub-chat/hubbub/internal/loadtest"
)

// needRedis skips where the load tool cannot run and fails where Redis is
// missing.
func needRedis(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and starts servers")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the load tool reads /proc")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server not found: run `make deps`")
	}
}

// A reconnect storm at 200 sockets over two servers and two workers:
// every socket comes back, resumes, and gets each message sent while it
// was away exactly once, round after round; with --login, each user logs
// in first (at a low bcrypt cost: the test is of the tool, not of bcrypt).
// Against Centrifugo (two nodes on Redis), a resume is a recovery from the
// stream offset the socket last saw, and must bring the same.
func TestSmokeStorm(t *testing.T) {
	needRedis(t)
	bench, chatserver := build(t)
	linkCentrifugo(t, bench)
	const conns, users, missed, rounds = 200, 20, 5, 2
	for _, mode := range []struct {
		name, target string
		args         []string
	}{
		{"tokens", "hubbub", nil},
		{"login", "hubbub", []string{"--login", "--login-bcrypt-cost", "5", "--watch", "3"}},
		{"centrifugo", "centrifugo", []string{"--target", "centrifugo"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			var r loadtest.StormResults
			args := append([]string{"--chatserver", chatserver, "--servers", "2", "--workers", "2", "--conns", "200", "--users", "20",
				"--missed", "5", "--repeat", "2", "--settle", "200ms"}, mode.args...)
			runTool(t, bench, "storm", &r, args...)
			if r.Config.Target != mode.target {
				t.Errorf("ran against %q, want %q", r.Config.Target, mode.target)
			}
			k := r.Connect
			if k.Connected != conns || k.Failed != 0 || k.Complete != conns {
				t.Errorf("first connect: %d connected, %d failed, %d resumed; want %d, 0, %d", k.Connected, k.Failed, k.Complete, conns, conns)
			}
			if mode.name == "login" && (k.Logins != users || k.LoginsPerSec <= 0 || k.Login.P50ms <= 0) {
				t.Errorf("%d logins at %.1f/s (p50 %.1f ms); want each of the %d users logged in once per worker, timed", k.Logins, k.LoginsPerSec, k.Login.P50ms, users)
			}
			if len(r.Rounds) != rounds {
				t.Fatalf("%d rounds reported, want %d", len(r.Rounds), rounds)
			}
			for _, x := range r.Rounds {
				if x.Reconnected != conns || x.Failed != 0 || x.Complete != conns || x.Lost != 0 {
					t.Errorf("round %d: %d reconnected, %d failed, %d complete, %d lost; want every socket back and complete", x.Round, x.Reconnected, x.Failed, x.Complete, x.Lost)
				}
				if x.MissedExpected != conns*missed || x.MissedDelivered != x.MissedExpected || x.MissedDuplicates != 0 {
					t.Errorf("round %d: missed messages %d/%d delivered, %d duplicates; want each exactly once", x.Round, x.MissedDelivered, x.MissedExpected, x.MissedDuplicates)
				}
				// The histogram reports a bucket's upper bound, up to about
				// 3% over the value: the slowest socket may seem to take a
				// little longer than the round.
				if x.Seconds <= 0 || x.ResumedPerSec <= 0 || x.Hello.P50ms <= 0 || x.Resumed.P50ms < x.Hello.P50ms || x.Resumed.MaxMs > 1.04*1000*x.Seconds+1 {
					t.Errorf("round %d: %.2f s, %.0f resumed/s, hello p50 %.1f ms, resumed p50 %.1f max %.1f ms: not plausible", x.Round, x.Seconds, x.ResumedPerSec, x.Hello.P50ms, x.Resumed.P50ms, x.Resumed.MaxMs)
				}
				if len(x.CPU.Servers) != 2 || x.CPU.ServersTotal <= 0 || len(x.ServerRSSMiB) != 2 || x.ServerRSSMiB[0] <= 0 {
					t.Errorf("round %d: server CPU %v s, RSS %v MiB: not measured per server", x.Round, x.CPU.Servers, x.ServerRSSMiB)
				}
			}
			if r.Median.Round != rounds || r.Median.Complete != conns {
				t.Errorf("median row: %d rounds, %d complete", r.Median.Round, r.Median.Complete)
			}
		})
	}
}

// The DM workload at 40 people (80 sockets, 4 channels of 10), with
// server 0 drained part way: every acknowledged message reaches every
// socket owed it exactly once, the drained server's sockets all move to
// the other and resume, and pub/sub subscriptions are counted per server.
func TestSmokeDM(t *testing.T) {
	needRedis(t)
	bench, chatserver := build(t)
	const people, perPerson = 40, 2
	var r loadtest.DMResults
	runTool(t, bench, "dm", &r, "--chatserver", chatserver, "--servers", "2", "--people", "40", "--sockets-per-person", "2",
		"--channel-size", "10", "--rate-per-person", "1", "--duration", "3s", "--drain", "--drain-after", "1s", "--settle", "200ms")
	if r.Connect.Connected != people*perPerson || r.Connect.Failed != 0 {
		t.Errorf("first connect: %d connected, %d failed; want %d, 0", r.Connect.Connected, r.Connect.Failed, people*perPerson)
	}
	l := r.Load
	if l.Sent != people*3 || l.SentDM == 0 || l.SentChannel == 0 || l.AckedDM+l.AckedChannel != l.Sent || l.Unacked != 0 || l.Skipped != 0 {
		t.Errorf("sent %d (%d DM, %d channel), acked %d + %d, %d unacked, %d skipped: want 120 sent, all acked",
			l.Sent, l.SentDM, l.SentChannel, l.AckedDM, l.AckedChannel, l.Unacked, l.Skipped)
	}
	if want := l.AckedDM*2*perPerson + l.AckedChannel*10*perPerson; l.Expected != want {
		t.Errorf("expected %d deliveries, want %d (DM: 4 sockets, channel: 20)", l.Expected, want)
	}
	if l.Delivered != l.Expected || l.Duplicates != 0 {
		t.Errorf("delivered %d/%d, %d duplicates: an acknowledged message was lost or counted twice", l.Delivered, l.Expected, l.Duplicates)
	}
	if l.Latency.P50ms <= 0 || l.ServerCPUPerDeliveredUs <= 0 || l.CPU.ServersTotal <= 0 {
		t.Errorf("latency p50 %.2f ms, %.2f µs of server CPU per delivery: not measured", l.Latency.P50ms, l.ServerCPUPerDeliveredUs)
	}
	// Each server follows general, the 4 channels and the room's events.
	if s := l.SubscriptionsBefore; len(s.PerServer) != 2 || s.PerServer[0] < 6 || s.PerServer[1] < 6 || s.Topics < 5 {
		t.Errorf("subscriptions before the sending %+v: want each server in general and the 4 channels", s)
	}
	d := r.Drain
	if d == nil {
		t.Fatal("no drain reported")
	}
	// Person p's socket k is on server (p+k) mod 2: half the sockets.
	if d.Lost != people*perPerson/2 || d.Notices != d.Lost || d.Moved != d.Lost || d.Resumed != d.Lost || d.SecondsToAllBack <= 0 {
		t.Errorf("drain: %d told, %d closed, %d moved, %d resumed, all back after %.2f s; want the %d sockets of server 0 told, moved and resumed",
			d.Notices, d.Lost, d.Moved, d.Resumed, d.SecondsToAllBack, people*perPerson/2)
	}
}

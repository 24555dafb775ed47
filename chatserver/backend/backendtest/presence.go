package backendtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var presenceTests = []test{
	{"JoinLeave", testJoinLeave},
	{"OnlineOnAnyPod", testTwoPods},
	{"OnlineDistinctAndLimited", testOnlineLimit},
	{"ExpiryAndSweep", testExpiry},
	{"SweepKeepsUserOnlineElsewhere", testSweepElsewhere},
	{"OfflineReportedOnce", testOfflineOnce},
	{"HeartbeatExtends", testHeartbeat},
	{"ConcurrentSweepsReportEachUserOnce", testConcurrentSweeps},
	{"OnlineAmong", testOnlineAmong},
}

const shortTTL = 200 * time.Millisecond

var sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })

func testJoinLeave(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	check(t, b.Join(ctx, "pod-1", "alice", time.Minute))
	if got := must[[]string](t)(b.Online(ctx, 100)); !slices.Contains(got, "alice") {
		t.Errorf("Online = %v after Join, want alice in it", got)
	}
	if offline := must[bool](t)(b.Leave(ctx, "pod-1", "alice")); !offline {
		t.Error("Leave of the only mark reported the user still online")
	}
	if got := must[[]string](t)(b.Online(ctx, 100)); slices.Contains(got, "alice") {
		t.Errorf("Online = %v after Leave, want no alice", got)
	}
}

func testTwoPods(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	check(t, b.Join(ctx, "pod-1", "alice", time.Minute))
	check(t, peer.Join(ctx, "pod-2", "alice", time.Minute))
	if offline := must[bool](t)(b.Leave(ctx, "pod-1", "alice")); offline {
		t.Error("Leave on pod-1 reported alice offline while she is on pod-2")
	}
	if got := must[[]string](t)(b.Online(ctx, 100)); !slices.Contains(got, "alice") {
		t.Errorf("Online = %v, want alice (still on pod-2)", got)
	}
	if offline := must[bool](t)(peer.Leave(ctx, "pod-2", "alice")); !offline {
		t.Error("Leave of alice's last mark did not report her offline")
	}
}

func testOnlineLimit(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	all := []string{"u1", "u2", "u3", "u4", "u5"}
	check(t, b.Heartbeat(ctx, "pod-1", all, time.Minute))
	check(t, b.Heartbeat(ctx, "pod-2", all[:3], time.Minute))
	if diff := cmp.Diff(all, must[[]string](t)(b.Online(ctx, 100)), sortStrings); diff != "" {
		t.Errorf("Online(100) (-want +got):\n%s", diff)
	}
	got := must[[]string](t)(b.Online(ctx, 3))
	if len(got) != 3 || len(slices.Compact(slices.Sorted(slices.Values(got)))) != 3 {
		t.Errorf("Online(3) = %v, want 3 distinct users", got)
	}
	for _, u := range got {
		if !slices.Contains(all, u) {
			t.Errorf("Online(3) returned %q, who never joined", u)
		}
	}
}

func testExpiry(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	start := time.Now()
	check(t, b.Join(ctx, "pod-1", "alice", shortTTL))
	check(t, b.Join(ctx, "pod-1", "bob", time.Minute))
	eventually(t, "alice's mark to expire", func() bool {
		return !slices.Contains(must[[]string](t)(b.Online(ctx, 100)), "alice")
	})
	if time.Since(start) < shortTTL-20*time.Millisecond {
		t.Errorf("alice went offline after %s, before her TTL of %s", time.Since(start), shortTTL)
	}
	if diff := cmp.Diff([]string{"alice"}, must[[]string](t)(b.Sweep(ctx)), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("first Sweep (-want +got):\n%s", diff)
	}
	if got := must[[]string](t)(b.Sweep(ctx)); len(got) != 0 {
		t.Errorf("second Sweep = %v, want nothing (already swept)", got)
	}
	if diff := cmp.Diff([]string{"bob"}, must[[]string](t)(b.Online(ctx, 100))); diff != "" {
		t.Errorf("Online after the sweep (-want +got):\n%s", diff)
	}
}

func testSweepElsewhere(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	start := time.Now()
	check(t, b.Join(ctx, "pod-1", "alice", shortTTL))
	check(t, peer.Join(ctx, "pod-2", "alice", time.Minute))
	waitOut(start, 2*shortTTL)
	if got := must[[]string](t)(b.Sweep(ctx)); slices.Contains(got, "alice") {
		t.Errorf("Sweep = %v: alice reported offline while online on pod-2", got)
	}
	if offline := must[bool](t)(peer.Leave(ctx, "pod-2", "alice")); !offline {
		t.Error("Leave of alice's last live mark did not report her offline")
	}
}

func testOfflineOnce(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	start := time.Now()
	check(t, b.Join(ctx, "pod-1", "alice", shortTTL))
	check(t, peer.Join(ctx, "pod-2", "alice", time.Minute))
	waitOut(start, 2*shortTTL)
	// pod-1's mark expired (not yet swept); leaving pod-2 makes alice offline,
	// and reports it. The sweep that follows must not report her again.
	if offline := must[bool](t)(peer.Leave(ctx, "pod-2", "alice")); !offline {
		t.Fatal("Leave with only an expired mark left did not report alice offline")
	}
	if got := must[[]string](t)(b.Sweep(ctx)); slices.Contains(got, "alice") {
		t.Errorf("Sweep = %v: alice reported offline a second time", got)
	}
}

func testHeartbeat(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b := newBackend()
	start := time.Now()
	check(t, b.Join(ctx, "pod-1", "alice", shortTTL))
	check(t, b.Join(ctx, "pod-1", "bob", shortTTL))
	check(t, b.Heartbeat(ctx, "pod-1", []string{"alice", "bob"}, time.Minute))
	waitOut(start, 2*shortTTL)
	if got := must[[]string](t)(b.Sweep(ctx)); len(got) != 0 {
		t.Errorf("Sweep = %v after a Heartbeat extended everyone, want nothing", got)
	}
	if diff := cmp.Diff([]string{"alice", "bob"}, must[[]string](t)(b.Online(ctx, 100)), sortStrings); diff != "" {
		t.Errorf("Online (-want +got):\n%s", diff)
	}
	// Join again extends too.
	check(t, b.Join(ctx, "pod-1", "carol", shortTTL))
	check(t, b.Join(ctx, "pod-1", "carol", time.Minute))
	waitOut(time.Now(), 2*shortTTL)
	if got := must[[]string](t)(b.Online(ctx, 100)); !slices.Contains(got, "carol") {
		t.Errorf("Online = %v: a second Join did not extend carol", got)
	}
}

func testConcurrentSweeps(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	var users []string
	for i := range 30 {
		users = append(users, fmt.Sprintf("user%02d", i))
	}
	start := time.Now()
	b := newBackend()
	check(t, b.Heartbeat(ctx, "pod-1", users, shortTTL))
	check(t, b.Heartbeat(ctx, "pod-2", users[:10], shortTTL))
	waitOut(start, 2*shortTTL)
	var (
		mu  sync.Mutex
		got []string
		wg  sync.WaitGroup
	)
	for range 4 {
		s := newBackend()
		wg.Go(func() {
			off, err := s.Sweep(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got = append(got, off...)
			mu.Unlock()
		})
	}
	wg.Wait()
	// Each user exactly once across all sweepers.
	if diff := cmp.Diff(users, got, sortStrings); diff != "" {
		t.Errorf("users reported offline by 4 concurrent sweeps (-want +got):\n%s", diff)
	}
}

func testOnlineAmong(t *testing.T, newBackend func() Backend) {
	ctx := testContext(t)
	b, peer := newBackend(), newBackend()
	start := time.Now()
	check(t, b.Join(ctx, "pod-1", "alice", time.Minute))
	check(t, peer.Join(ctx, "pod-2", "bob", time.Minute))
	check(t, b.Join(ctx, "pod-1", "bob", time.Minute))
	check(t, b.Join(ctx, "pod-1", "carol", time.Minute))
	check(t, peer.Join(ctx, "pod-2", "dave", shortTTL))
	check(t, b.Heartbeat(ctx, "pod-1", []string{"frank", "grace"}, time.Minute))
	must[bool](t)(b.Leave(ctx, "pod-1", "carol"))
	waitOut(start, 2*shortTTL) // dave's mark expires (and is not swept)
	tests := []struct {
		name  string
		users []string
		want  []string // those online
	}{
		{"mixed", []string{"alice", "bob", "carol", "dave", "erin"}, []string{"alice", "bob"}},
		{"online on two pods", []string{"bob"}, []string{"bob"}},
		{"left", []string{"carol"}, nil},
		{"expired", []string{"dave"}, nil},
		{"never joined", []string{"erin"}, nil},
		{"by heartbeat", []string{"grace", "erin", "frank"}, []string{"frank", "grace"}},
		{"none", nil, nil},
	}
	for _, tc := range tests {
		got := must[map[string]bool](t)(peer.OnlineAmong(ctx, tc.users))
		var online []string
		for u, on := range got {
			if !on {
				continue
			}
			if !slices.Contains(tc.users, u) {
				t.Errorf("%s: OnlineAmong(%q) answers for %q, who was not asked about", tc.name, tc.users, u)
			}
			online = append(online, u)
		}
		if diff := cmp.Diff(tc.want, online, sortStrings, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: OnlineAmong(%q) (-want +got online):\n%s", tc.name, tc.users, diff)
		}
	}
}

// Package operatorbench measures the operator at scale against a real API
// server: how long 1,000 ChatRooms take to converge, the operator process'
// peak memory meanwhile, and how many writes it makes once they have.
//
// It is a benchmark, so `make test` does not run it:
//
//	make bench-operator
//	go test -run '^$' -bench BenchmarkConverge1000 -benchtime 1x ./test/operatorbench
//
// HUBBUB_BENCH_ROOMS (default 1000), HUBBUB_BENCH_WORKERS (the operator's
// --max-concurrent-reconciles, default its own default) and
// HUBBUB_BENCH_STEADY (how long to watch the settled operator, default 40s)
// change the run. The results and how they were measured are in docs/operator.md.
package operatorbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

const namespaces = 10

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func BenchmarkConverge1000(b *testing.B) {
	rooms := envInt("HUBBUB_BENCH_ROOMS", 1000)
	workers := envInt("HUBBUB_BENCH_WORKERS", 0)
	steady := time.Duration(envInt("HUBBUB_BENCH_STEADY", 40)) * time.Second
	for range b.N {
		r := runConverge(b, rooms, workers, steady)
		b.ReportMetric(r.converge.Seconds(), "s-converge")
		b.ReportMetric(float64(r.peakRSS)/(1<<20), "MiB-peak-rss")
		b.ReportMetric(float64(r.convergeWrites), "writes-converge")
		b.ReportMetric(float64(r.steadyWrites), "writes-steady")
		b.ReportMetric(float64(r.steadyReconciles), "reconciles-steady")
		b.ReportMetric(r.steadyCPU, "cores-steady")
		b.ReportMetric(r.convergeCPU, "cores-converge")
		b.Logf("%d rooms converged in %s (%.1f rooms/s); operator peak RSS %.0f MiB, %.2f cores, %d API writes while converging; settled for %s: %d writes, %d reconciles, %.2f cores",
			rooms, r.converge.Round(time.Millisecond), float64(rooms)/r.converge.Seconds(), float64(r.peakRSS)/(1<<20), r.convergeCPU,
			r.convergeWrites, steady, r.steadyWrites, r.steadyReconciles, r.steadyCPU)
	}
}

type result struct {
	converge         time.Duration
	peakRSS          int64 // bytes, the kernel's high-water mark (VmHWM)
	convergeWrites   int
	steadyWrites     int
	steadyReconciles int
	steadyCPU        float64 // cores used by the operator while settled
	convergeCPU      float64 // and while converging
}

func runConverge(b *testing.B, rooms, workers int, steady time.Duration) result {
	b.Helper()
	ctx := context.Background()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		b.Fatal(err)
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "k8s")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		b.Fatalf("envtest binaries not found in %s: run `make envtest`", assets)
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// Two Services a room: envtest's default /24 of cluster IPs runs out.
	// (An address range the API server hands out, never traffic.)
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := env.Stop(); err != nil {
			b.Error(err)
		}
	})
	cfg.QPS, cfg.Burst = -1, 0 // the benchmark's own client is not throttled
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(chatv1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		b.Fatal(err)
	}

	// The operator runs as its own process, so its memory is its own.
	dir := b.TempDir()
	bin := filepath.Join(dir, "operator")
	build := exec.Command("go", "build", "-o", bin, "./cmd/operator")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build operator: %v\n%s", err, out)
	}
	user, err := env.AddUser(envtest.User{Name: "hubbub-operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		b.Fatal(err)
	}
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	metricsAddr := freeAddr(b)
	args := []string{"--chat-image=hubbub:bench", "--leader-elect=false", "--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=" + freeAddr(b), "--log-level=error"}
	if workers > 0 {
		args = append(args, "--max-concurrent-reconciles="+strconv.Itoa(workers))
	}
	op := exec.Command(bin, args...)
	op.Env = append(os.Environ(), "KUBECONFIG="+kcPath)
	op.Stderr = os.Stderr
	if err := op.Start(); err != nil {
		b.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = op.Process.Signal(syscall.SIGTERM)
		_ = op.Wait() // exit status of a stopped operator is not the benchmark's concern
	}
	b.Cleanup(stop)
	metrics := "http://" + metricsAddr + "/metrics"
	waitFor(b, 30*time.Second, func() error { _, err := scrape(metrics); return err })
	before, err := scrape(metrics)
	if err != nil {
		b.Fatal(err)
	}

	// Create the rooms, spread over namespaces, from several goroutines.
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)}}
		if err := c.Create(ctx, ns); err != nil {
			b.Fatal(err)
		}
	}
	cpuStart, err := cpuTime(op.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, rooms)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				room := &chatv1alpha1.ChatRoom{ObjectMeta: metav1.ObjectMeta{
					Namespace: fmt.Sprintf("bench-%d", i%namespaces),
					Name:      fmt.Sprintf("room-%04d", i),
				}}
				if err := c.Create(ctx, room); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range rooms {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}

	// Converged: the operator has applied every owned object and written a
	// status for the room's current generation.
	waitFor(b, 30*time.Minute, func() error {
		list := &chatv1alpha1.ChatRoomList{}
		if err := c.List(ctx, list); err != nil {
			return err
		}
		done := 0
		for _, r := range list.Items {
			if r.Status.ObservedGeneration == r.Generation && len(r.Status.Conditions) == 4 {
				done++
			}
		}
		if done < rooms {
			return fmt.Errorf("%d of %d rooms converged", done, rooms)
		}
		return nil
	})
	converge := time.Since(start)
	b.StopTimer()
	afterConverge, err := scrape(metrics)
	if err != nil {
		b.Fatal(err)
	}

	// Everything really is there.
	deps := &appsv1.DeploymentList{}
	sets := &appsv1.StatefulSetList{}
	if err := c.List(ctx, deps); err != nil {
		b.Fatal(err)
	}
	if err := c.List(ctx, sets); err != nil {
		b.Fatal(err)
	}
	if len(deps.Items) != rooms || len(sets.Items) != rooms {
		b.Fatalf("%d Deployments and %d StatefulSets for %d rooms", len(deps.Items), len(sets.Items), rooms)
	}

	// Settled: every room is reconciled again (the presence refresh every
	// 30s), and none of that should write.
	cpuBefore, err := cpuTime(op.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	convergeCPU := float64(cpuBefore-cpuStart) / float64(converge)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(steady) // a measurement window, not synchronisation
	afterSteady, err := scrape(metrics)
	if err != nil {
		b.Fatal(err)
	}
	cpuAfter, err := cpuTime(op.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	peak, err := peakRSS(op.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	stop()
	return result{
		converge:         converge,
		peakRSS:          peak,
		convergeWrites:   afterConverge.writes - before.writes,
		steadyWrites:     afterSteady.writes - afterConverge.writes,
		steadyReconciles: afterSteady.reconciles - afterConverge.reconciles,
		steadyCPU:        float64(cpuAfter-cpuBefore) / float64(steady),
		convergeCPU:      convergeCPU,
	}
}

// cpuTime is the user plus system CPU time the process has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the line, in clock ticks (USER_HZ, 100 on Linux).
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// counts are totals read from the operator's metrics endpoint.
type counts struct {
	writes     int // API requests that change something (POST, PUT, PATCH, DELETE)
	reconciles int
}

func scrape(url string) (counts, error) {
	var c counts
	resp, err := http.Get(url)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, "{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch {
		case name == "rest_client_requests_total":
			for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
				if strings.Contains(labels, `method="`+m+`"`) {
					c.writes += int(v)
				}
			}
		case name == "controller_runtime_reconcile_total" && strings.Contains(labels, `controller="chatroom"`):
			c.reconciles += int(v)
		}
	}
	return c, sc.Err()
}

// peakRSS is the process' resident memory high-water mark.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

func freeAddr(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 500ms until it returns nil, failing after timeout.
func waitFor(b *testing.B, timeout time.Duration, cond func() error) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not done after %s: %v", timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

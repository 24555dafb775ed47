package controllers

import (
	"context"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// isolatedCluster starts an envtest control plane of the test's own, with
// no operator running, and stops it when the test ends. Tests that run
// operators of their own use it: the suite's shared manager watches every
// namespace of the shared API server, without leader election, so there it
// would reconcile their rooms too (and be the one that did).
//
// The tests' operators run as the API server's admin, not under
// config/rbac: the shared suite already proves role.yaml suffices.
func isolatedCluster(t *testing.T) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the envtest API server; not run with -short")
	}
	assets, err := envtestAssets()
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{env: testEnvironment(assets)}
	if tc.cfg, err = tc.env.Start(); err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := tc.env.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	if tc.c, err = client.New(tc.cfg, client.Options{Scheme: testScheme()}); err != nil {
		t.Fatal(err)
	}
	return tc
}

// operatorProcess is one operator manager a test runs: what cmd/operator
// runs, in the test process.
type operatorProcess struct {
	mgr    ctrl.Manager
	cancel context.CancelFunc
	done   chan error
}

// startOperator starts a manager like cmd/operator's running the ChatRoom
// reconciler. opts is for leader election: its scheme, cache, metrics and
// controller settings are replaced by the tests' own. wrap, if not nil, wraps
// the reconciler's client (to count what it does). The manager is stopped
// when the test ends, unless the test stopped it first.
func startOperator(t *testing.T, cfg *rest.Config, opts ctrl.Options, wrap func(client.Client) client.Client) *operatorProcess {
	t.Helper()
	opts.Scheme = testScheme()
	opts.Cache = CacheOptions(nil)
	opts.Metrics = metricsserver.Options{BindAddress: "0"}
	// Every manager in this process registers a controller named
	// "chatroom"; controller-runtime refuses a second one by default
	// because their metrics would share a label.
	opts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := mgr.GetClient()
	if wrap != nil {
		c = wrap(c)
	}
	if err := testReconciler(mgr, c, &fakePresence{}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &operatorProcess{mgr: mgr, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop stops the manager and waits for it to return; a second call does nothing.
func (p *operatorProcess) stop(t *testing.T) {
	t.Helper()
	if p.done == nil {
		return
	}
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("manager: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("manager did not stop in 30s")
	}
	p.done = nil
}

// elected says whether the manager has become the leader.
func (p *operatorProcess) elected() bool {
	select {
	case <-p.mgr.Elected():
		return true
	default:
		return false
	}
}

// reconcileCounter counts the reconciles of each room: every reconcile
// starts by reading its ChatRoom, and nothing else in the reconciler reads
// one. Writes are counted by the writeCounter it wraps.
type reconcileCounter struct {
	*writeCounter
	mu sync.Mutex
	n  map[types.NamespacedName]int
}

func newReconcileCounter(c client.Client) *reconcileCounter {
	return &reconcileCounter{writeCounter: &writeCounter{Client: c}, n: map[types.NamespacedName]int{}}
}

func (c *reconcileCounter) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*chatv1alpha1.ChatRoom); ok {
		c.mu.Lock()
		c.n[key]++
		c.mu.Unlock()
	}
	return c.writeCounter.Get(ctx, key, obj, opts...)
}

func (c *reconcileCounter) reconciles(key client.ObjectKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

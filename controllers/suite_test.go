package controllers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The envtest control plane (a real kube-apiserver and etcd) and one
// operator manager are shared by the package's tests and started by the
// first test that needs them; every test works in its own namespace.
var (
	sharedOnce sync.Once
	shared     *testCluster
	sharedErr  error
)

// testCluster is a running API server, a direct client to it, the
// operator's manager, and the stand-in for the chat pods' stats endpoint.
type testCluster struct {
	cfg *rest.Config
	env *envtest.Environment
	c   client.Client // direct (uncached) client for the tests' own reads and writes
	mgr ctrl.Manager
	// reconciler is the one the manager runs; tests copy it to call
	// Reconcile through a write-counting client.
	reconciler *Reconciler
	cancel     context.CancelFunc
	done       chan error
	presence   *fakePresence
}

// testChatImage is the operator's default chat image in tests.
const testChatImage = "hubbub:test"

// testRedisURL is the external Redis of rooms in tests. Nothing listens
// there, and nothing needs to: the operator never talks to Redis.
const testRedisURL = "redis://redis.invalid:6379"

func TestMain(m *testing.M) {
	// The reconciler's expected errors (tests provoke them) would drown the
	// output; HUBBUB_TEST_LOG=1 shows the operator's logs.
	logger := logr.Discard()
	if os.Getenv("HUBBUB_TEST_LOG") != "" {
		logger = logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctrl.SetLogger(logger)
	redis.SetLogger(discardRedisLog{}) // dial failures are provoked, and reported as errors
	code := m.Run()
	if shared != nil {
		if err := shared.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
			code = max(code, 1)
		}
	}
	os.Exit(code)
}

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// cluster returns the shared test cluster, starting it on first use. Tests
// that need it fail (not skip) when the envtest binaries are missing.
func cluster(t *testing.T) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the envtest API server; not run with -short")
	}
	sharedOnce.Do(func() { shared, sharedErr = startCluster() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// envtestAssets is where kube-apiserver and etcd are: $KUBEBUILDER_ASSETS
// (the Makefile sets it) or the repository's bin/k8s.
func envtestAssets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join("..", "bin", "k8s")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("envtest binary %s not found in %s (KUBEBUILDER_ASSETS): run `make envtest` to build kube-apiserver and etcd from their Go modules (~8 minutes the first time)", bin, dir)
		}
	}
	return filepath.Abs(dir)
}

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(chatv1alpha1.AddToScheme(s))
	return s
}

func startCluster() (_ *testCluster, err error) {
	assets, err := envtestAssets()
	if err != nil {
		return nil, err
	}
	tc := &testCluster{}
	defer func() {
		if err != nil {
			err = errors.Join(err, tc.stop())
		}
	}()
	tc.presence = &fakePresence{}
	tc.env = testEnvironment(assets)
	if tc.cfg, err = tc.env.Start(); err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	scheme := testScheme()
	if tc.c, err = client.New(tc.cfg, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	// The operator runs with exactly the permissions of the generated
	// ClusterRole, so every test also proves the RBAC markers suffice.
	opCfg, err := tc.operatorConfig()
	if err != nil {
		return nil, err
	}
	tc.mgr, err = ctrl.NewManager(opCfg, ctrl.Options{
		Scheme:  scheme,
		Cache:   CacheOptions(nil),
		Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err != nil {
		return nil, err
	}
	tc.reconciler = testReconciler(tc.mgr, tc.mgr.GetClient(), tc.presence)
	if err := tc.reconciler.SetupWithManager(tc.mgr); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tc.cancel = cancel
	tc.done = make(chan error, 1)
	go func() { tc.done <- tc.mgr.Start(ctx) }()
	return tc, nil
}

// testEnvironment is an envtest control plane with the generated CRD.
func testEnvironment(assets string) *envtest.Environment {
	return &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
}

// testReconciler is the ChatRoom reconciler as the tests run it on mgr,
// writing through c.
func testReconciler(mgr ctrl.Manager, c client.Client, presence PresenceCounter) *Reconciler {
	return &Reconciler{
		Client:    c,
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(ControllerName),
		Options: Options{
			ChatImage: testChatImage,
			// Short, so tests see presence refreshes; production uses 30s.
			PresenceInterval: 2 * time.Second,
			Presence:         presence,
		},
	}
}

// operatorUser is the identity the tests' operator runs as.
const operatorUser = "system:serviceaccount:hubbub-system:hubbub-operator"

// operatorConfig installs config/rbac/role.yaml bound to operatorUser and
// returns a client config impersonating that user.
func (tc *testCluster) operatorConfig() (*rest.Config, error) {
	ctx := context.Background()
	objs, err := decodeFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		return nil, err
	}
	role, ok := objs[0].(*rbacv1.ClusterRole)
	if !ok || len(objs) != 1 {
		return nil, fmt.Errorf("role.yaml: want one ClusterRole, got %T", objs[0])
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name + "-envtest"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: operatorUser}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := tc.c.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("install operator RBAC: %w", err)
		}
	}
	cfg := rest.CopyConfig(tc.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: operatorUser}
	return cfg, nil
}

func (tc *testCluster) stop() error {
	var errs []error
	if tc.cancel != nil {
		tc.cancel()
		errs = append(errs, <-tc.done)
	}
	if tc.env != nil && tc.cfg != nil {
		errs = append(errs, tc.env.Stop())
	}
	return errors.Join(errs...)
}

// fakePresence stands in for the chat pods' stats endpoint, which envtest
// cannot run (it has no kubelet): a test sets the answer of a pod address
// (0 users by default), and every question is counted. HTTPPresence itself
// is tested against a real chat server (presence_test.go).
type fakePresence struct {
	mu      sync.Mutex
	answers map[string]presenceAnswer
	asked   map[string]int
}

type presenceAnswer struct {
	stats protocol.Stats
	err   error
}

var _ StatsReader = (*fakePresence)(nil)

func (p *fakePresence) OnlineUsers(ctx context.Context, addr string) (int, error) {
	st, err := p.Stats(ctx, addr)
	return st.OnlineUsers, err
}

func (p *fakePresence) Stats(_ context.Context, addr string) (protocol.Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.asked == nil {
		p.asked = map[string]int{}
	}
	p.asked[addr]++
	a := p.answers[addr]
	return a.stats, a.err
}

// answer sets what the pod at addr says: n users online, and no Redis
// replication.
func (p *fakePresence) answer(addr string, n int, err error) {
	p.answerStats(addr, protocol.Stats{OnlineUsers: n}, err)
}

// answerStats sets the whole answer of the pod at addr.
func (p *fakePresence) answerStats(addr string, st protocol.Stats, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answers == nil {
		p.answers = map[string]presenceAnswer{}
	}
	p.answers[addr] = presenceAnswer{st, err}
}

// askedOf is how often the pod at addr was asked.
func (p *fakePresence) askedOf(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.asked[addr]
}

// newNamespace creates a namespace for one test. Pods in it must meet the
// restricted Pod Security profile, enforced by the API server's admission.
func (tc *testCluster) newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "t-",
		Labels:       map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
	}}
	if err := tc.c.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	// No namespace controller runs in envtest, so deleting it would not
	// remove its contents; each test's namespace is simply left behind.
	return ns.Name
}

// eventually polls cond every 100ms until it returns nil or timeout passes,
// then fails with cond's last error.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

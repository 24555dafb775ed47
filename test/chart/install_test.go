package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/controllers"
)

// TestInstall installs the chart into a real API server (envtest) with the
// helm CLI, then runs the operator in this process exactly as the chart
// configures its pod (flags read back from the installed Deployment) and with
// the chart's ServiceAccount identity (impersonation), so the RBAC the chart
// grants is what the reconciler gets. envtest runs no pods, hence the
// in-process operator.
func TestInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver and etcd")
	}
	env := startAPIServer(t)
	admin, err := client.New(env.Config, client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, env)

	tests := []struct {
		name      string
		release   string
		namespace string
		flags     []string
		// watched are namespaces the operator must manage; unwatched ones it
		// must not even be able to read.
		watched, unwatched []string
		// notesNamespace is where the install notes suggest creating a room.
		notesNamespace string
	}{
		{
			name: "cluster-wide", release: "hubbub", namespace: "hubbub-system",
			watched:        []string{"chat-a"},
			notesNamespace: "hubbub-system",
		},
		{
			name: "watched namespaces", release: "scoped", namespace: "scoped-system",
			flags:          []string{"--set", "watchNamespaces={team-a,team-b}"},
			watched:        []string{"team-a", "team-b"},
			unwatched:      []string{"team-c"},
			notesNamespace: "team-a",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			// Everything runs under the "restricted" Pod Security Standard,
			// as hack/kind/e2e.sh and docs/install.md set it up.
			for _, ns := range slices.Concat([]string{tc.namespace}, tc.watched, tc.unwatched) {
				createNamespace(t, admin, ns)
			}

			out, err := runHelm(t, append([]string{"install", tc.release, chartDir(t),
				"--kubeconfig", kubeconfig, "--namespace", tc.namespace}, tc.flags...)...)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("kubectl -n %s wait chatroom/hubbub --for=condition=Available", tc.notesNamespace); !strings.Contains(out, want) {
				t.Errorf("helm install notes do not say %q:\n%s", want, out)
			}

			deploys := &appsv1.DeploymentList{}
			if err := admin.List(ctx, deploys, client.InNamespace(tc.namespace), client.MatchingLabels{"app.kubernetes.io/instance": tc.release}); err != nil {
				t.Fatal(err)
			}
			if len(deploys.Items) != 1 {
				t.Fatalf("release %s has %d Deployments, want 1", tc.release, len(deploys.Items))
			}
			deploy := &deploys.Items[0]
			checkRestricted(t, admin, tc.namespace, deploy.Spec.Template)

			// Run the operator as the chart's ServiceAccount would.
			args := operatorArgs(t, deploy)
			stop := startOperator(t, env.Config, tc.namespace, deploy.Spec.Template.Spec.ServiceAccountName, args)

			for _, ns := range tc.watched {
				room := createRoom(t, admin, ns, "hubbub")
				waitReconciled(t, admin, room)
			}
			sa := impersonating(t, env.Config, tc.namespace, deploy.Spec.Template.Spec.ServiceAccountName)
			for _, ns := range tc.unwatched {
				err := sa.List(ctx, &chatv1alpha1.ChatRoomList{}, client.InNamespace(ns))
				if !apierrors.IsForbidden(err) {
					t.Errorf("the operator may list ChatRooms in unwatched namespace %s (err = %v)", ns, err)
				}
			}
			if err := sa.List(ctx, &chatv1alpha1.ChatRoomList{}); (len(tc.unwatched) > 0) != apierrors.IsForbidden(err) {
				t.Errorf("listing ChatRooms in all namespaces as the operator: err = %v; want forbidden only with watchNamespaces", err)
			}
			stop()

			if _, err := runHelm(t, "uninstall", tc.release, "--kubeconfig", kubeconfig, "--namespace", tc.namespace); err != nil {
				t.Fatal(err)
			}
			err = admin.Get(ctx, client.ObjectKeyFromObject(deploy), &appsv1.Deployment{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("after helm uninstall, getting the operator Deployment: err = %v, want not found", err)
			}
		})
	}
}

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := errors.Join(clientgoscheme.AddToScheme(s), chatv1alpha1.AddToScheme(s)); err != nil {
		panic(err)
	}
	return s
}

// startAPIServer starts kube-apiserver and etcd from KUBEBUILDER_ASSETS.
// Missing binaries fail the test: skipping would pass CI without the test.
func startAPIServer(t *testing.T) *envtest.Environment {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run through `make test`, or `make envtest` and export KUBEBUILDER_ASSETS=$PWD/bin/k8s")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			t.Fatalf("%v: run `make envtest`", err)
		}
	}
	env := &envtest.Environment{}
	if _, err := env.Start(); err != nil {
		t.Fatalf("starting the envtest API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping envtest: %v", err)
		}
	})
	// Helm checks the chart's kubeVersion against the server's version; a
	// kube-apiserver built without version ldflags reports v0.0.0.
	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(v.GitVersion, "v0.0.0") {
		t.Fatalf("envtest's kube-apiserver reports version %q, which Helm refuses for the chart's kubeVersion: "+
			"hack/k8s/build.sh must stamp it (-ldflags -X k8s.io/component-base/version.gitVersion=v1.x.y ...)", v.GitVersion)
	}
	return env
}

// writeKubeconfig writes a kubeconfig for a cluster admin of env, for helm.
func writeKubeconfig(t *testing.T, env *envtest.Environment) string {
	t.Helper()
	user, err := env.AddUser(envtest.User{Name: "helm-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func createNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if err := c.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
}

// checkRestricted creates (dry run) a pod from tmpl in a namespace enforcing
// the restricted Pod Security Standard: the API server's own PodSecurity
// admission judges it. A privileged pod is tried first, to prove the check
// is really enforced here.
func checkRestricted(t *testing.T, c client.Client, ns string, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	ctx := t.Context()
	bad := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "psa-control-", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
		}}},
	}
	if err := c.Create(ctx, bad, client.DryRunAll); !apierrors.IsForbidden(err) {
		t.Fatalf("a privileged pod in %s was not refused (err = %v): Pod Security admission is not enforcing, the check below would prove nothing", ns, err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "psa-check-", Namespace: ns, Labels: tmpl.Labels},
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	// The ServiceAccount admission plugin would refuse a pod whose account is
	// not there yet; Pod Security is what is tested here.
	pod.Spec.ServiceAccountName = ""
	if err := c.Create(ctx, pod, client.DryRunAll); err != nil {
		t.Errorf("a pod of %v does not pass the restricted Pod Security Standard: %v", tmpl.Labels, err)
	}
}

// operatorArgs returns the installed operator container's flags as a map.
func operatorArgs(t *testing.T, d *appsv1.Deployment) map[string]string {
	t.Helper()
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("operator pod has %d containers, want 1", n)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if diff := cmp.Diff([]string{"/operator"}, c.Command); diff != "" {
		t.Errorf("operator command (-want +got):\n%s", diff)
	}
	args := map[string]string{}
	for _, a := range c.Args {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		args[k] = v
	}
	if args["chat-image"] != c.Image {
		t.Errorf("--chat-image = %q, want the operator's own image %q", args["chat-image"], c.Image)
	}
	return args
}

// impersonating returns a client acting as the ServiceAccount ns/name.
func impersonating(t *testing.T, cfg *rest.Config, ns, name string) client.Client {
	t.Helper()
	c, err := client.New(impersonatingConfig(cfg, ns, name), client.Options{Scheme: testScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func impersonatingConfig(cfg *rest.Config, ns, name string) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	// The API server adds the ServiceAccount's groups itself.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name}
	return cfg
}

// startOperator runs the reconciler in this process, configured from the
// chart's flags, as ServiceAccount ns/sa and with leader election in the
// release namespace. stop ends it and waits; it also runs at cleanup.
func startOperator(t *testing.T, cfg *rest.Config, ns, sa string, args map[string]string) (stop func()) {
	t.Helper()
	var logs syncBuffer
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(&logs, nil)))
	var watch []string
	if w := args["watch-namespaces"]; w != "" {
		watch = strings.Split(w, ",")
	}
	mgr, err := ctrl.NewManager(impersonatingConfig(cfg, ns, sa), ctrl.Options{
		Scheme:                        testScheme(),
		Cache:                         controllers.CacheOptions(watch),
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                args["leader-elect"] == "true",
		LeaderElectionID:              "hubbub-operator.chat.hubbub.dev", // cmd/operator's
		LeaderElectionNamespace:       args["leader-election-namespace"],
		LeaderElectionReleaseOnCancel: true,
		// Each subtest builds the same controller again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := controllers.SetupWithManager(mgr, controllers.Options{
		ChatImage: args["chat-image"],
		// No chat pod runs here: presence is the one thing not tested.
		Presence: noPresence{},
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("operator: %v", err)
			}
			if t.Failed() {
				t.Logf("operator log:\n%s", logs.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type noPresence struct{}

func (noPresence) OnlineUsers(context.Context, string) (int, error) {
	return 0, nil
}

func createRoom(t *testing.T, c client.Client, ns, name string) *chatv1alpha1.ChatRoom {
	t.Helper()
	room := &chatv1alpha1.ChatRoom{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       chatv1alpha1.ChatRoomSpec{Replicas: ptr.To[int32](2)},
	}
	if err := c.Create(t.Context(), room); err != nil {
		t.Fatal(err)
	}
	return room
}

// waitReconciled polls until the room's status says its current generation
// was reconciled and the objects it owns exist, then checks its chat and
// Redis pods would pass the restricted Pod Security Standard.
func waitReconciled(t *testing.T, c client.Client, room *chatv1alpha1.ChatRoom) {
	t.Helper()
	ctx := t.Context()
	owned := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: room.ChatName()}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: room.ChatName()}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: room.ConfigMapName()}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: room.ChatName()}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: room.RedisName()}},
	}
	deadline := time.Now().Add(60 * time.Second)
	var missing []string
	for {
		missing = missing[:0]
		got := &chatv1alpha1.ChatRoom{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(room), got); err != nil {
			t.Fatal(err)
		}
		if got.Status.ObservedGeneration != got.Generation {
			missing = append(missing, fmt.Sprintf("status.observedGeneration %d of generation %d", got.Status.ObservedGeneration, got.Generation))
		}
		for _, o := range owned {
			err := c.Get(ctx, types.NamespacedName{Namespace: room.Namespace, Name: o.GetName()}, o)
			switch {
			case apierrors.IsNotFound(err):
				missing = append(missing, fmt.Sprintf("%T %s", o, o.GetName()))
			case err != nil:
				t.Fatal(err)
			case !metav1.IsControlledBy(o, got):
				t.Fatalf("%T %s is not controlled by ChatRoom %s", o, o.GetName(), room.Name)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ChatRoom %s/%s not reconciled after 60s; missing: %s", room.Namespace, room.Name, strings.Join(missing, ", "))
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	checkRestricted(t, c, room.Namespace, owned[0].(*appsv1.Deployment).Spec.Template)
	checkRestricted(t, c, room.Namespace, statefulSetPod(owned[4].(*appsv1.StatefulSet)))
}

// statefulSetPod is the pod template of s with its volume claim templates
// turned into the claims the StatefulSet controller would mount.
func statefulSetPod(s *appsv1.StatefulSet) corev1.PodTemplateSpec {
	tmpl := *s.Spec.Template.DeepCopy()
	for _, pvc := range s.Spec.VolumeClaimTemplates {
		tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{
			Name: pvc.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: pvc.Name + "-" + s.Name + "-0",
			}},
		})
	}
	return tmpl
}

// syncBuffer is a bytes.Buffer safe for the operator's concurrent logging.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

//go:build kind

package kind

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// env is what hack/kind/e2e.sh hands the test: a cluster and the images
// loaded into it.
type env struct {
	kubeconfig string
	image      string // the Hubbub image (operator and chat server)
	redisImage string
	helm       string
	kubectlBin string
	chart      string
}

func mustEnv(t *testing.T) env {
	t.Helper()
	get := func(name string) string {
		v := os.Getenv(name)
		if v == "" {
			t.Fatalf("%s is not set: the kind e2e runs through `make kind-e2e` (hack/kind/e2e.sh), which builds the images and the cluster first", name)
		}
		return v
	}
	chart, err := filepath.Abs("../../charts/hubbub")
	if err != nil {
		t.Fatal(err)
	}
	return env{
		kubeconfig: get("KUBECONFIG"),
		image:      get("HUBBUB_KIND_IMAGE"),
		redisImage: get("HUBBUB_KIND_REDIS_IMAGE"),
		helm:       get("HUBBUB_KIND_HELM"),
		kubectlBin: get("HUBBUB_KIND_KUBECTL"),
		chart:      chart,
	}
}

func (e env) restConfig(t *testing.T) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", e.kubeconfig, err)
	}
	return cfg
}

func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, chatv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// run runs a command as a person would type it, with stdin, and returns its
// combined output; a non-zero exit is returned as an error holding the output.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// kubectl runs kubectl against the test cluster and fails t on error.
func (e env) kubectl(ctx context.Context, t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := e.kubectlErr(ctx, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e env) kubectlErr(ctx context.Context, stdin string, args ...string) (string, error) {
	return run(ctx, stdin, e.kubectlBin, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
}

func (e env) helmRun(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(ctx, "", e.helm, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls check every 500 ms until it reports done, for at most limit.
// On timeout it fails t saying what it waited for and what it saw last. The
// API server has watches, but a poll of the same reads a person's `kubectl
// get` makes keeps each step's condition in one readable place.
func waitFor(ctx context.Context, t *testing.T, limit time.Duration, what string, check func(ctx context.Context) (done bool, seen string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var seen string
	for {
		var done bool
		done, seen = check(ctx)
		if done {
			t.Logf("%s: after %s", what, time.Since(start).Round(100*time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", limit, what, seen)
		case <-tick.C:
		}
	}
}

// readyPods lists the Running, Ready pods matching labels, oldest first.
func readyPods(ctx context.Context, c client.Client, ns string, labels map[string]string) ([]corev1.Pod, string, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		return nil, "", err
	}
	var ready []corev1.Pod
	var seen []string
	for _, p := range pods.Items {
		ok := p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
		if ok {
			ok = false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ok = true
				}
			}
		}
		state := string(p.Status.Phase)
		if p.DeletionTimestamp != nil {
			state = "Terminating"
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				state += "/" + w.Reason
			}
		}
		seen = append(seen, fmt.Sprintf("%s %s ready=%t", p.Name, state, ok))
		if ok {
			ready = append(ready, p)
		}
	}
	return ready, strings.Join(seen, ", "), nil
}

// diagnose prints what a person would look at when a step failed: the
// namespace's objects and events, the description and logs of every pod that
// is not Ready, and the operator's log.
func (e env) diagnose(t *testing.T, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	show := func(title string, args ...string) {
		out, err := e.kubectlErr(ctx, "", args...)
		if err != nil {
			out = err.Error()
		}
		t.Logf("---- %s ----\n%s", title, out)
	}
	show("objects", "-n", ns, "get", "chatrooms,all,pvc,configmaps,secrets,networkpolicies,leases", "-o", "wide")
	show("events", "-n", ns, "get", "events", "--sort-by=.lastTimestamp")
	show("rooms", "-n", ns, "describe", "chatrooms")
	out, _ := e.kubectlErr(ctx, "", "-n", ns, "get", "pods", "-o",
		`jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, ready, _ := strings.Cut(line, " ")
		if name == "" || ready == "True" {
			continue
		}
		show("describe "+name, "-n", ns, "describe", "pod", name)
		show("logs "+name, "-n", ns, "logs", name, "--all-containers", "--tail=80")
		show("previous logs "+name, "-n", ns, "logs", name, "--all-containers", "--previous", "--tail=40")
	}
	show("operator logs", "-n", ns, "logs", "-l", "app.kubernetes.io/component=operator", "--prefix", "--all-containers", "--tail=150")
}

//go:build kind

package kind

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/test/chart"
	"github.com/hubbub-chat/hubbub/test/e2e"
)

const (
	ns      = "hubbub-e2e"
	release = "hubbub"
	room    = "e2e"
)

var (
	chatLabels  = map[string]string{"app.kubernetes.io/name": "hubbub", "app.kubernetes.io/instance": room, "app.kubernetes.io/component": "chat"}
	redisLabels = map[string]string{"app.kubernetes.io/name": "hubbub", "app.kubernetes.io/instance": room, "app.kubernetes.io/component": "redis"}
	opLabels    = map[string]string{"app.kubernetes.io/name": "hubbub", "app.kubernetes.io/instance": release, "app.kubernetes.io/component": "operator"}
)

// TestUsersPath is what a platform team and its people do with Hubbub, on
// real pods in a kind cluster, one step after the other: each step needs the
// ones before it, so the first failure stops the run (and prints what a
// person would look at). go test -v prints each step's time.
func TestUsersPath(t *testing.T) {
	e := mustEnv(t)
	cfg := e.restConfig(t)
	c := newClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			e.diagnose(t, ns)
		}
	})
	s := &path{t: t, e: e, cfg: cfg, c: c, suffix: e2e.RandomSuffix()}
	for _, step := range []struct {
		name string
		run  func(context.Context, *testing.T)
	}{
		{"Install", s.install},
		{"ApplyRoom", s.applyRoom},
		{"ChatAcrossPods", s.chatAcrossPods},
		{"ChannelRemovalAcrossPods", s.channelRemovalAcrossPods},
		{"ChatPodDeleted", s.chatPodDeleted},
		{"DriveThePage", s.drivePage},
		{"Metrics", s.metrics},
		{"ScaleAndRoll", s.scaleAndRoll},
		{"RedisPodDeleted", s.redisPodDeleted},
		{"RedisPrimaryDeleted", s.redisPrimaryDeleted},
		{"OperatorFailover", s.operatorFailover},
		{"BadSpec", s.badSpec},
		{"TearDown", s.tearDown},
	} {
		if !t.Run(step.name, func(t *testing.T) { step.run(ctx, t) }) {
			t.FailNow()
		}
	}
}

// path is the state the steps hand on.
type path struct {
	t      *testing.T // the whole run's: what outlives a step is cleaned up with it
	e      env
	cfg    *rest.Config
	c      client.Client
	suffix string

	doors  [2]*frontDoor // one per chat pod, as two people behind a load balancer
	alice  e2e.Participant
	bob    e2e.Participant
	before []e2e.Frame // #general's history before Redis was deleted
}

func (s *path) user(n string) string { return n + "-" + s.suffix }

func (s *path) install(ctx context.Context, t *testing.T) {
	s.e.kubectl(ctx, t, "", "create", "namespace", ns)
	// The namespace enforces the restricted Pod Security Standard: every pod
	// the chart and the operator make must meet it, or it is refused.
	s.e.kubectl(ctx, t, "", "label", "namespace", ns,
		"pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/warn=restricted")
	repo, tag, _ := strings.Cut(s.e.image, ":")
	s.e.helmRun(ctx, t, "install", release, s.e.chart, "--namespace", ns, "--wait", "--timeout", "4m",
		"--set", "image.repository="+repo, "--set", "image.tag="+tag,
		"--set", "redisImage="+s.e.redisImage,
		"--set", "replicaCount=2", // two operators: one leads, one waits (see OperatorFailover)
		"--set", "presenceInterval=5s") // status.onlineUsers within seconds (ChatAcrossPods)
	waitFor(ctx, t, 2*time.Minute, "2 Ready operator pods", func(ctx context.Context) (bool, string) {
		ready, seen, err := readyPods(ctx, s.c, ns, opLabels)
		if err != nil {
			return false, err.Error()
		}
		return len(ready) == 2, seen
	})
}

func (s *path) applyRoom(ctx context.Context, t *testing.T) {
	s.e.kubectl(ctx, t, roomYAML(room, "replicas: 2", "imagePullPolicy: IfNotPresent", "channels: [general]"), "apply", "-f", "-")
	waitFor(ctx, t, 3*time.Minute, "the managed Redis' volume claim to bind", func(ctx context.Context) (bool, string) {
		var pvc corev1.PersistentVolumeClaim
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "data-" + room + "-redis-0"}, &pvc); err != nil {
			return false, err.Error()
		}
		return pvc.Status.Phase == corev1.ClaimBound, string(pvc.Status.Phase)
	})
	s.e.kubectl(ctx, t, "", "-n", ns, "wait", "chatroom/"+room, "--for=condition=Available", "--timeout=5m")
	out := s.e.kubectl(ctx, t, "", "-n", ns, "get", "rooms")
	t.Logf("kubectl get rooms:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("kubectl get rooms: want a header and one room, got:\n%s", out)
	}
	want := map[string]string{"NAME": room, "REPLICAS": "2", "READY": "2", "URL": "http://" + room + "." + ns + ".svc/"}
	for col, v := range want {
		if got := column(lines[0], lines[1], col); got != v {
			t.Errorf("kubectl get rooms: column %s is %q, want %q; got:\n%s", col, got, v, out)
		}
	}
}

// column reads one column of kubectl's table output by where its header
// starts: an empty cell (ONLINE before anyone is) shifts no other column.
func column(header, row, name string) string {
	start := strings.Index(header, name)
	if start < 0 || start >= len(row) {
		return ""
	}
	end := len(header)
	if next := strings.IndexFunc(header[start+len(name):], func(r rune) bool { return r != ' ' }); next >= 0 {
		end = start + len(name) + next
	}
	if end > len(row) || end == len(header) {
		end = len(row)
	}
	return strings.TrimSpace(row[start:end])
}

// roomYAML is a ChatRoom manifest, as a person would write it, with the
// given spec lines.
func roomYAML(name string, spec ...string) string {
	return fmt.Sprintf("apiVersion: chat.hubbub.dev/v1alpha1\nkind: ChatRoom\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  %s\n",
		name, ns, strings.Join(spec, "\n  "))
}

func (s *path) chatPods(ctx context.Context, t *testing.T, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	waitFor(ctx, t, 3*time.Minute, fmt.Sprintf("%d Ready chat pods", n), func(ctx context.Context) (bool, string) {
		ready, seen, err := readyPods(ctx, s.c, ns, chatLabels)
		if err != nil {
			return false, err.Error()
		}
		pods = ready
		return len(ready) == n && len(ready) == countPods(ctx, s.c, chatLabels), seen
	})
	return pods
}

// countPods counts every pod matching labels, terminating ones included.
func countPods(ctx context.Context, c client.Client, labels map[string]string) int {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(ns), client.MatchingLabels(labels)); err != nil {
		return -1
	}
	return len(pods.Items)
}

// chatAcrossPods: two people, each on their own pod, see each other come
// online, exchange a DM and a mention, and are notified of both.
func (s *path) chatAcrossPods(ctx context.Context, t *testing.T) {
	pods := s.chatPods(ctx, t, 2)
	for i := range s.doors {
		s.doors[i] = openFrontDoor(s.t, s.cfg, s.c, ns, chatLabels, pods[i].Name) // later steps use them too
	}
	s.alice = signup(ctx, t, s.doors[0].URL(), s.user("alice"))
	s.bob = signup(ctx, t, s.doors[1].URL(), s.user("bob"))
	t.Logf("%s talks to %s, %s to %s", s.alice.Name, pods[0].Name, s.bob.Name, pods[1].Name)

	bob := connect(ctx, t, s.bob)
	bob.watch(s.alice.Name)
	bob.expect(ctx, s.alice.Name+" offline, as bob starts watching", func(f e2e.Frame) bool {
		return f.Type == "presence" && f.User == s.alice.Name && f.Status == "offline"
	})
	alice := connect(ctx, t, s.alice)
	bob.expect(ctx, s.alice.Name+" online", func(f e2e.Frame) bool {
		return f.Type == "presence" && f.User == s.alice.Name && f.Status == "online"
	})

	dm := "a direct word " + s.suffix
	id := alice.send(ctx, "", s.bob.Name, dm)
	ch := dmChannel(s.alice.Name, s.bob.Name)
	bob.expect(ctx, "the DM", func(f e2e.Frame) bool { return f.Type == "message" && f.ID == id && f.Channel == ch && f.Text == dm })
	bob.expect(ctx, "a dm notification", func(f e2e.Frame) bool {
		return f.Type == "notification" && f.Kind == "dm" && f.ID == id && f.From == s.alice.Name
	})

	mention := "hello @" + s.bob.Name + ", across pods"
	id = alice.send(ctx, "general", "", mention)
	bob.expect(ctx, "the mention", func(f e2e.Frame) bool { return f.Type == "message" && f.ID == id && f.Channel == "general" })
	bob.expect(ctx, "a mention notification", func(f e2e.Frame) bool {
		return f.Type == "notification" && f.Kind == "mention" && f.ID == id && f.From == s.alice.Name
	})
	// And back: bob's reply reaches alice on the other pod.
	id = bob.send(ctx, "general", "", "heard you "+s.suffix)
	alice.expect(ctx, "bob's reply", func(f e2e.Frame) bool { return f.Type == "message" && f.ID == id && f.From == s.bob.Name })

	// The operator counts them from a chat pod's /api/v1/stats: it holds no
	// Redis password, and needs none.
	waitFor(ctx, t, time.Minute, "status.onlineUsers to count both", func(ctx context.Context) (bool, string) {
		var r chatv1alpha1.ChatRoom
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: room}, &r); err != nil {
			return false, err.Error()
		}
		return r.Status.OnlineUsers >= 2, fmt.Sprintf("onlineUsers %d", r.Status.OnlineUsers)
	})
}

// channelRemovalAcrossPods: alice, on one pod, makes a private channel,
// invites bob, on the other, and removes him: bob's socket is told within
// 1 s and gets nothing more of it.
func (s *path) channelRemovalAcrossPods(ctx context.Context, t *testing.T) {
	alice, bob := connect(ctx, t, s.alice), connect(ctx, t, s.bob)
	secret := "secret-" + s.suffix
	call := func(method, path string, body any, want int) {
		t.Helper()
		if _, err := s.alice.API.Call(ctx, method, "/api/v1/channels"+path, s.alice.Token, body, want); err != nil {
			t.Fatal(err)
		}
	}
	call("POST", "", map[string]any{"name": secret, "private": true}, 201)
	call("POST", "/"+secret+"/members", map[string]any{"username": s.bob.Name}, 204)
	bob.expect(ctx, "added to "+secret, func(f e2e.Frame) bool { return f.Type == "channel" && f.Name == secret })
	id := alice.send(ctx, secret, "", "for bob's eyes")
	bob.expect(ctx, "the message in "+secret, func(f e2e.Frame) bool { return f.Type == "message" && f.ID == id })

	start := time.Now()
	call("DELETE", "/"+secret+"/members/"+s.bob.Name, nil, 204)
	bob.expect(ctx, "removed from "+secret, func(f e2e.Frame) bool { return f.Type == "removed" && f.Channel == secret })
	if d := time.Since(start); d > time.Second {
		t.Errorf("removed reached bob's pod's socket %v after the removal, want within 1 s", d)
	}
	alice.send(ctx, secret, "", "bob is gone")
	// After every send above: once the DM is there, anything of the channel would be too.
	dm := alice.send(ctx, "", s.bob.Name, "still friends")
	bob.expect(ctx, "the DM", func(f e2e.Frame) bool {
		return f.Type == "message" && f.ID == dm && f.Channel == dmChannel(s.alice.Name, s.bob.Name)
	})
	if n := bob.count(func(f e2e.Frame) bool { return f.Type == "message" && f.Channel == secret }); n != 1 {
		t.Errorf("bob got %d messages of %s, want the 1 before he was removed", n, secret)
	}
}

// chatPodDeleted: a chat pod is deleted mid-conversation; every acked
// message arrives exactly once, in order, at both people.
func (s *path) chatPodDeleted(ctx context.Context, t *testing.T) {
	pods := s.chatPods(ctx, t, 2)
	victim := s.doors[0].preferred()
	var deletedAt time.Time
	opts := conversation(t)
	opts.ExpectDisconnect = true
	opts.Midway = func() {
		deletedAt = time.Now()
		if _, err := s.e.kubectlErr(ctx, "", "-n", ns, "delete", "pod", victim, "--wait=false"); err != nil {
			t.Errorf("delete chat pod %s: %v", victim, err)
		}
	}
	s.converse(ctx, t, opts, "carol", "dave")
	t.Logf("chat pods before: %s, %s; deleted %s", pods[0].Name, pods[1].Name, victim)
	after := s.chatPods(ctx, t, 2)
	t.Logf("RECOVERY chat pod: 2 Ready chat pods again %s after the delete", time.Since(deletedAt).Round(100*time.Millisecond))
	for _, p := range after {
		if p.Name == victim {
			t.Errorf("deleted pod %s is still Ready", victim)
		}
	}
	s.doors[0].prefer(after[0].Name)
	if after[0].Name == s.doors[1].preferred() {
		s.doors[0].prefer(after[1].Name)
	}
}

func conversation(t *testing.T) e2e.Options {
	return e2e.Options{
		Channel:       "general",
		Messages:      30,
		Interval:      250 * time.Millisecond, // under the default 5 sends/s per socket
		AckTimeout:    10 * time.Second,
		SettleTimeout: 30 * time.Second,
		AfterDrop:     10,
		Logf:          t.Logf,
	}
}

// converse signs up two people, one behind each door, and has them chat.
func (s *path) converse(ctx context.Context, t *testing.T, opts e2e.Options, a, b string) []e2e.Report {
	t.Helper()
	ps := []e2e.Participant{signup(ctx, t, s.doors[0].URL(), s.user(a)), signup(ctx, t, s.doors[1].URL(), s.user(b))}
	reports, err := e2e.Converse(ctx, opts, ps...)
	for _, r := range reports {
		t.Logf("%+v", r)
	}
	if err != nil {
		t.Fatal(err)
	}
	return reports
}

// drivePage: the real page in headless Chromium, against the real pods.
func (s *path) drivePage(ctx context.Context, t *testing.T) {
	bob := connect(ctx, t, s.bob)
	sent := "typed in the page " + s.suffix
	pageChat(ctx, t, s.doors[0].URL(), s.alice.Name, password, sent, func(ctx context.Context) (string, error) {
		text := "answered from the API " + s.suffix
		bob.send(ctx, "general", "", text)
		return text, nil
	})
	bob.expect(ctx, "the message typed in the page", func(f e2e.Frame) bool {
		return f.Type == "message" && f.From == s.alice.Name && f.Text == sent
	})
}

// metrics: every metric the chart's Grafana dashboard reads is exported by
// the real pods: the chat pods' own, and the leading operator's.
func (s *path) metrics(ctx context.Context, t *testing.T) {
	names, err := chart.DashboardMetrics(filepath.Join(s.e.chart, "dashboards", "hubbub.json"))
	if err != nil {
		t.Fatal(err)
	}
	chat := scrape(ctx, t, s.doors[0].URL()+"/metrics")
	leader, err := s.leader(ctx)
	if err != nil || leader == "" {
		t.Fatalf("leader election lease: holder %q, %v", leader, err)
	}
	kube, err := kubernetes.NewForConfig(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := startForward(s.cfg, kube, ns, leader, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer f.stop()
	operator := scrape(ctx, t, "http://"+f.addr+"/metrics")
	for _, n := range names {
		if !strings.Contains(chat, "\n"+n) && !strings.Contains(operator, "\n"+n) {
			t.Errorf("the dashboard reads %s, which neither a chat pod nor the operator exports", n)
		}
	}
	// The room's own series, as the alerts read them.
	for _, want := range []string{
		fmt.Sprintf(`hubbub_chatroom_condition{namespace=%q,room=%q,status="True",type="Available"} 1`, ns, room),
		fmt.Sprintf(`hubbub_chatroom_ready_replicas{namespace=%q,room=%q} 2`, ns, room),
	} {
		if !strings.Contains(operator, want) {
			t.Errorf("the operator's /metrics lacks %s", want)
		}
	}
	t.Logf("%d dashboard metrics, all exported", len(names))
}

func scrape(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d, %v", url, resp.StatusCode, err)
	}
	return string(body)
}

// scaleAndRoll: kubectl scale gives a third pod; a spec change rolls all
// three one at a time, each draining its sockets (reconnect, then 1012), and
// a conversation running across the whole roll loses nothing.
func (s *path) scaleAndRoll(ctx context.Context, t *testing.T) {
	s.e.kubectl(ctx, t, "", "-n", ns, "scale", "chatroom", room, "--replicas=3")
	old := s.chatPods(ctx, t, 3)
	waitFor(ctx, t, time.Minute, "status.readyReplicas 3", func(ctx context.Context) (bool, string) {
		var r chatv1alpha1.ChatRoom
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: room}, &r); err != nil {
			return false, err.Error()
		}
		return r.Status.ReadyReplicas == 3, fmt.Sprintf("readyReplicas %d", r.Status.ReadyReplicas)
	})
	oldNames := map[string]bool{}
	for _, p := range old {
		oldNames[p.Name] = true
	}

	// Observers: one quiet socket pinned to each old pod, that does not
	// leave when asked, to see the drain as a client sees it.
	var observers []*person
	for _, p := range old {
		d := openFrontDoor(t, s.cfg, s.c, ns, chatLabels, p.Name)
		u := e2e.Participant{Name: s.bob.Name, Token: s.bob.Token, API: e2e.API{BaseURL: d.URL(), Client: http.DefaultClient}}
		observers = append(observers, connect(ctx, t, u))
	}

	// Watch the roll: it is done when three Ready pods are all new and no
	// old one is left; meanwhile Ready pods must never drop below three
	// (maxUnavailable 0: each new pod is Ready before an old one goes).
	var rolled atomic.Bool
	var minReady atomic.Int32
	minReady.Store(3)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopWatch(); wg.Wait() }()
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ready, _, err := readyPods(watchCtx, s.c, ns, chatLabels)
			if err == nil {
				if n := int32(len(ready)); n < minReady.Load() {
					minReady.Store(n)
				}
				fresh := 0
				for _, p := range ready {
					if !oldNames[p.Name] {
						fresh++
					}
				}
				if fresh == 3 && countPods(watchCtx, s.c, chatLabels) == 3 {
					rolled.Store(true)
					return
				}
			}
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
		}
	})

	start := time.Now()
	opts := conversation(t)
	opts.Midway = func() {
		if _, err := s.e.kubectlErr(ctx, "", "-n", ns, "patch", "chatroom", room, "--type=merge",
			"-p", `{"spec":{"channels":["general","random"]}}`); err != nil {
			t.Errorf("add a channel: %v", err)
		}
	}
	opts.Until = rolled.Load
	reports := s.converse(ctx, t, opts, "erin", "frank")
	t.Logf("roll of 3 pods with a conversation across it: %s; Ready pods never fewer than %d", time.Since(start).Round(100*time.Millisecond), minReady.Load())
	if !rolled.Load() {
		t.Fatal("the conversation ended before the roll did")
	}
	if minReady.Load() < 3 {
		t.Errorf("Ready chat pods dropped to %d during the roll; want the roll to replace one pod at a time", minReady.Load())
	}
	drains := 0
	for _, r := range reports {
		drains += r.Drains
	}
	if drains == 0 {
		t.Error("no participant got a reconnect frame during the roll")
	}
	for i, o := range observers {
		o.expect(ctx, "reconnect (draining)", func(f e2e.Frame) bool { return f.Type == "reconnect" && f.Reason == "draining" })
		if code := o.closeCode(ctx, time.Minute); code != websocket.CloseServiceRestart {
			t.Errorf("observer on %s: close code %d, want %d (server restarting)", old[i].Name, code, websocket.CloseServiceRestart)
		}
	}
	// The doors' preferred pods are gone; prefer two of the new ones.
	now := s.chatPods(ctx, t, 3)
	s.doors[0].prefer(now[0].Name)
	s.doors[1].prefer(now[1].Name)
}

// redisPodDeleted: the StatefulSet brings Redis back from its volume; the
// same people log in with the same passwords and history is as it was.
func (s *path) redisPodDeleted(ctx context.Context, t *testing.T) {
	s.before = history(ctx, t, s.alice, "general")
	if len(s.before) < 60 {
		t.Fatalf("want the conversations so far in #general's history, got %d messages", len(s.before))
	}
	pod := room + "-redis-0"
	var old corev1.Pod
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: pod}, &old); err != nil {
		t.Fatal(err)
	}
	deletedAt := time.Now()
	s.e.kubectl(ctx, t, "", "-n", ns, "delete", "pod", pod)
	waitFor(ctx, t, 3*time.Minute, "a new Ready Redis pod", func(ctx context.Context) (bool, string) {
		ready, seen, err := readyPods(ctx, s.c, ns, redisLabels)
		if err != nil {
			return false, err.Error()
		}
		return len(ready) == 1 && ready[0].UID != old.UID, seen
	})
	t.Logf("RECOVERY Redis pod: Ready again %s after the delete", time.Since(deletedAt).Round(100*time.Millisecond))
	s.e.kubectl(ctx, t, "", "-n", ns, "wait", "chatroom/"+room, "--for=condition=Available", "--timeout=3m")

	for _, p := range []e2e.Participant{s.alice, s.bob} {
		var token string
		waitFor(ctx, t, time.Minute, p.Name+" logs in again", func(ctx context.Context) (bool, string) {
			var err error
			token, err = p.API.Login(ctx, p.Name, password)
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if token == "" {
			t.Fatalf("%s: empty token", p.Name)
		}
	}
	after := history(ctx, t, s.alice, "general")
	ids := func(fs []e2e.Frame) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.ID+" "+f.From+" "+f.Text)
		}
		return out
	}
	if !slices.Equal(ids(after), ids(s.before)) {
		t.Errorf("#general's history changed across the Redis restart: %d messages before, %d after", len(s.before), len(after))
	}
}

// redisPrimaryDeleted: a second room runs on a highly available managed
// Redis (a primary, two replicas, Sentinel). Its primary's pod is deleted
// mid-conversation, and no acked message is lost. Either Sentinel promotes
// a replica, or the pod is back (from its volume) before the sentinels hold
// it down and stays the primary: both are right, and the status must then
// show a primary with both replicas in sync again.
func (s *path) redisPrimaryDeleted(ctx context.Context, t *testing.T) {
	const ha = "ha"
	s.e.kubectl(ctx, t, roomYAML(ha, "replicas: 2", "imagePullPolicy: IfNotPresent", "channels: [general]",
		"redis: {managed: {highAvailability: true}}"), "apply", "-f", "-")
	t.Cleanup(func() {
		// The rest of the run needs neither its pods nor its volumes.
		if _, err := s.e.kubectlErr(context.Background(), "", "-n", ns, "delete", "chatroom", ha, "--timeout=2m"); err != nil {
			t.Errorf("delete room %s: %v", ha, err)
		}
	})
	s.e.kubectl(ctx, t, "", "-n", ns, "wait", "chatroom/"+ha, "--for=condition=Available", "--timeout=5m")
	primary := s.haPrimary(ctx, t, ha)
	var old corev1.Pod
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: primary}, &old); err != nil {
		t.Fatal(err)
	}

	labels := map[string]string{"app.kubernetes.io/name": "hubbub", "app.kubernetes.io/instance": ha, "app.kubernetes.io/component": "chat"}
	var pods []corev1.Pod
	waitFor(ctx, t, 3*time.Minute, "2 Ready chat pods of "+ha, func(ctx context.Context) (bool, string) {
		ready, seen, err := readyPods(ctx, s.c, ns, labels)
		pods = ready
		if err != nil {
			return false, err.Error()
		}
		return len(ready) == 2, seen
	})
	doors := []*frontDoor{openFrontDoor(t, s.cfg, s.c, ns, labels, pods[0].Name), openFrontDoor(t, s.cfg, s.c, ns, labels, pods[1].Name)}
	var deletedAt time.Time
	opts := conversation(t)
	opts.Midway = func() {
		deletedAt = time.Now()
		if _, err := s.e.kubectlErr(ctx, "", "-n", ns, "delete", "pod", primary, "--wait=false"); err != nil {
			t.Errorf("delete the Redis primary %s: %v", primary, err)
		}
	}
	ps := []e2e.Participant{signup(ctx, t, doors[0].URL(), s.user("erin")), signup(ctx, t, doors[1].URL(), s.user("frank"))}
	reports, err := e2e.Converse(ctx, opts, ps...)
	for _, r := range reports {
		t.Logf("%+v", r)
	}
	if err != nil {
		t.Fatal(err) // Converse fails on any acked message lost, or stored twice
	}
	if deletedAt.IsZero() {
		t.Fatal("the conversation ended before the primary was deleted")
	}
	waitFor(ctx, t, 3*time.Minute, "the deleted pod replaced and Ready", func(ctx context.Context) (bool, string) {
		var p corev1.Pod
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: primary}, &p); err != nil {
			return false, err.Error()
		}
		ready := false
		for _, c := range p.Status.Conditions {
			ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
		}
		return p.UID != old.UID && ready, string(p.Status.Phase)
	})
	now := s.haPrimary(ctx, t, ha)
	how := "a replica was promoted"
	if now == primary {
		how = "it came back before the sentinels held it down, and is the primary again"
	}
	t.Logf("RECOVERY Redis primary: %s deleted; %s: %s primary with 2 replicas in sync %s after the delete",
		primary, how, now, time.Since(deletedAt).Round(100*time.Millisecond))
}

// haPrimary waits until room's RedisReady names a primary with both
// replicas in sync, and returns its pod.
func (s *path) haPrimary(ctx context.Context, t *testing.T, room string) string {
	t.Helper()
	var primary, last string
	waitFor(ctx, t, 3*time.Minute, "RedisReady to name a primary with 2 replicas in sync", func(ctx context.Context) (bool, string) {
		var r chatv1alpha1.ChatRoom
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: room}, &r); err != nil {
			return false, last + " (then: " + err.Error() + ")"
		}
		c := apimeta.FindStatusCondition(r.Status.Conditions, chatv1alpha1.ConditionRedisReady)
		if c == nil {
			return false, "no RedisReady yet"
		}
		last = c.Message
		rest, ok := strings.CutPrefix(c.Message, "primary is ")
		name, sync, _ := strings.Cut(rest, ";")
		primary = name
		return ok && strings.HasPrefix(strings.TrimSpace(sync), "2 of 2 replicas in sync"), c.Message
	})
	return primary
}

// leader is the operator pod holding the leader election lease ("" when none).
func (s *path) leader(ctx context.Context) (string, error) {
	var l coordinationv1.Lease
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hubbub-operator.chat.hubbub.dev"}, &l); err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return pod, nil
}

// operatorFailover: the leader operator pod is deleted; the other takes the
// lease and reconciles a change within 30 s.
func (s *path) operatorFailover(ctx context.Context, t *testing.T) {
	leader := s.leader
	old, err := leader(ctx)
	if err != nil || old == "" {
		t.Fatalf("leader election lease: holder %q, %v", old, err)
	}
	t.Logf("leader: %s", old)
	// Gone for good before the change, so that only the other can make it.
	s.e.kubectl(ctx, t, "", "-n", ns, "delete", "pod", old, "--wait=true", "--timeout=1m")
	changed := time.Now()
	s.e.kubectl(ctx, t, "", "-n", ns, "scale", "chatroom", room, "--replicas=2")
	waitFor(ctx, t, 30*time.Second, "a new leader to scale the chat Deployment to 2", func(ctx context.Context) (bool, string) {
		var d appsv1.Deployment
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: room}, &d); err != nil {
			return false, err.Error()
		}
		now, _ := leader(ctx)
		return d.Spec.Replicas != nil && *d.Spec.Replicas == 2 && now != "" && now != old,
			fmt.Sprintf("deployment replicas %d, lease holder %q", *d.Spec.Replicas, now)
	})
	t.Logf("RECOVERY operator: the new leader reconciled the change %s after the old one was deleted", time.Since(changed).Round(100*time.Millisecond))
}

// badSpec: an image that does not exist degrades the room with a reason a
// person can act on; an invalid spec is refused at apply, naming the field.
func (s *path) badSpec(ctx context.Context, t *testing.T) {
	const broken = "broken"
	s.e.kubectl(ctx, t, roomYAML(broken, "replicas: 1", "image: hubbub.local/no-such-image:1", "imagePullPolicy: IfNotPresent"), "apply", "-f", "-")
	waitFor(ctx, t, 3*time.Minute, "room "+broken+" Degraded with reason ImagePullBackOff", func(ctx context.Context) (bool, string) {
		var r chatv1alpha1.ChatRoom
		if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: broken}, &r); err != nil {
			return false, err.Error()
		}
		d := apimeta.FindStatusCondition(r.Status.Conditions, chatv1alpha1.ConditionDegraded)
		if d == nil {
			return false, "no Degraded condition"
		}
		return d.Status == metav1.ConditionTrue && d.Reason == chatv1alpha1.ReasonImagePullBackOff,
			fmt.Sprintf("Degraded=%s reason %s: %s", d.Status, d.Reason, d.Message)
	})
	s.e.kubectl(ctx, t, "", "-n", ns, "delete", "chatroom", broken, "--wait=true", "--timeout=2m")

	for _, tc := range []struct{ name, spec, field string }{
		{"too many replicas", "replicas: 101", "spec.replicas"},
		{"bad channel name", "channels: [Not_A_Label]", "spec.channels"},
		{"bad registration", "registration: Sometimes", "spec.registration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.e.kubectlErr(ctx, roomYAML("invalid", tc.spec), "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply accepted %q:\n%s", tc.spec, out)
			}
			if !strings.Contains(out, tc.field) {
				t.Errorf("kubectl apply refused %q, but its message does not name %s:\n%s", tc.spec, tc.field, out)
			}
		})
	}
}

// tearDown: deleting the room removes everything it owned (the API server's
// garbage collector, for real); helm uninstall leaves nothing of the release.
func (s *path) tearDown(ctx context.Context, t *testing.T) {
	var r chatv1alpha1.ChatRoom
	if err := s.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: room}, &r); err != nil {
		t.Fatal(err)
	}
	owned := func(ctx context.Context) []string {
		var left []string
		for _, gvk := range ownedKinds {
			var list unstructured.UnstructuredList
			list.SetGroupVersionKind(gvk)
			if err := s.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return []string{fmt.Sprintf("list %s: %v", gvk.Kind, err)}
			}
			for _, o := range list.Items {
				mine := slices.ContainsFunc(o.GetOwnerReferences(), func(ref metav1.OwnerReference) bool { return ref.UID == r.UID })
				l := o.GetLabels()
				if mine || (l["app.kubernetes.io/instance"] == room && l["app.kubernetes.io/name"] == "hubbub") {
					left = append(left, strings.TrimSuffix(gvk.Kind, "List")+"/"+o.GetName())
				}
			}
		}
		return left
	}
	before := owned(ctx)
	t.Logf("the room owns: %s", strings.Join(before, " "))
	for _, want := range []string{"Deployment/" + room, "StatefulSet/" + room + "-redis", "PersistentVolumeClaim/data-" + room + "-redis-0", "Secret/" + room + "-redis"} {
		if !slices.Contains(before, want) {
			t.Errorf("before deleting the room: no %s among what it owns", want)
		}
	}
	s.e.kubectl(ctx, t, "", "-n", ns, "delete", "chatroom", room, "--wait=true", "--timeout=2m")
	waitFor(ctx, t, 3*time.Minute, "everything the room owned to be gone", func(ctx context.Context) (bool, string) {
		left := owned(ctx)
		return len(left) == 0, strings.Join(left, " ")
	})

	s.e.helmRun(ctx, t, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "3m")
	waitFor(ctx, t, 2*time.Minute, "nothing of the release left", func(ctx context.Context) (bool, string) {
		var left []string
		for _, gvk := range releaseKinds {
			var list unstructured.UnstructuredList
			list.SetGroupVersionKind(gvk)
			if err := s.c.List(ctx, &list, client.MatchingLabels{"app.kubernetes.io/instance": release}); err != nil {
				return false, fmt.Sprintf("list %s: %v", gvk.Kind, err)
			}
			for _, o := range list.Items {
				left = append(left, strings.TrimSuffix(gvk.Kind, "List")+"/"+o.GetName())
			}
		}
		return len(left) == 0, strings.Join(left, " ")
	})
	if out := s.e.helmRun(ctx, t, "list", "--namespace", ns, "--all", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("helm list after uninstall: %s", out)
	}
}

var ownedKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "PodList"}, {Version: "v1", Kind: "ServiceList"}, {Version: "v1", Kind: "ConfigMapList"},
	{Version: "v1", Kind: "SecretList"}, {Version: "v1", Kind: "ServiceAccountList"}, {Version: "v1", Kind: "PersistentVolumeClaimList"},
	{Group: "apps", Version: "v1", Kind: "DeploymentList"}, {Group: "apps", Version: "v1", Kind: "StatefulSetList"},
	{Group: "apps", Version: "v1", Kind: "ReplicaSetList"}, {Group: "policy", Version: "v1", Kind: "PodDisruptionBudgetList"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicyList"}, {Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscalerList"},
}

// releaseKinds are what the chart can make, namespaced and cluster-wide (the
// CRD is Helm's exception: charts' crds/ are installed, never deleted).
var releaseKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "PodList"}, {Version: "v1", Kind: "ServiceList"}, {Version: "v1", Kind: "ConfigMapList"},
	{Version: "v1", Kind: "ServiceAccountList"}, {Group: "apps", Version: "v1", Kind: "DeploymentList"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleList"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBindingList"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleList"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBindingList"},
}

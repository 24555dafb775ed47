//go:build linux

package controllers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// TestHARedisFailsOver runs the containers of a highly available managed
// Redis as rendered (the same scripts, under busybox sh when there is one,
// like the kind Redis image) as local processes: three "pods" on loopback
// addresses of their own standing in for their host names. Pod 0 starts as
// the primary; a SIGKILLed primary is replaced by a replica within seconds
// and keeps what was acked; a chat server configured like the chat pods
// follows it and reports it; the killed pod, started again, rejoins as a
// replica of the new primary; a failover asked of a sentinel (SENTINEL
// FAILOVER) goes through; and after all pods stopped, they start again on
// the last primary.
func TestHARedisFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis and Sentinel processes; not run with -short")
	}
	for _, bin := range []string{"redis-server", "redis-sentinel", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: run `make deps` (Debian's redis-server, redis-sentinel and redis-tools)", bin)
		}
	}
	t.Parallel()
	h := startHARedis(t)

	// A new set: pod 0 is the primary, the others its replicas, and every
	// sentinel knows the primary, both replicas and the other sentinels.
	start := time.Now()
	h.eventually(40*time.Second, func() error { return h.settled(0) })
	t.Logf("settled with pod 0 the primary after %s", time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	// A chat server configured as the chat pods are (through every
	// sentinel, with the password) reaches the primary and reports it, and
	// both replicas in sync: what the operator puts in the room's status.
	chat := chatServerForTest(t, "ns/lobby", h.sentinelURL(), h.password)
	h.eventually(20*time.Second, func() error { return h.chatReports(chat, 0) })
	primary := h.client(0)
	if err := primary.Set(ctx, "acked", "before the crash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := primary.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}

	// The primary's process dies (a node lost, a container OOM-killed).
	h.redis[0].kill(syscall.SIGKILL)
	start = time.Now()
	var next int
	h.eventually(30*time.Second, func() error {
		i, err := h.agreedPrimary()
		if err != nil {
			return err
		}
		if i == 0 {
			return errors.New("the sentinels still name pod 0")
		}
		next = i
		return nil
	})
	t.Logf("pod %d promoted %s after pod 0's Redis was killed", next, time.Since(start).Round(time.Millisecond))
	h.eventually(30*time.Second, func() error {
		st, err := HTTPPresence{}.Stats(ctx, chat)
		if err != nil || st.Redis == nil || st.Redis.Primary != net.JoinHostPort(h.ips[next], strconv.Itoa(h.redisPort)) {
			return fmt.Errorf("the chat server reports %+v, %v; want pod %d the primary", st.Redis, err, next)
		}
		return nil
	})
	if got, err := h.client(next).Get(ctx, "acked").Result(); err != nil || got != "before the crash" {
		t.Fatalf("the new primary, pod %d, has %q, %v: an acked write was lost", next, got, err)
	}

	// Pod 0 comes back: the sentinels name another primary, so it starts
	// as that one's replica, with the data it missed.
	h.redis[0] = h.start(0, "redis")
	start = time.Now()
	h.eventually(40*time.Second, func() error { return h.settled(next) })
	t.Logf("pod 0 rejoined as a replica after %s", time.Since(start).Round(time.Millisecond))
	h.eventually(20*time.Second, func() error { return h.chatReports(chat, next) })
	if got, err := h.client(0).Get(ctx, "acked").Result(); err != nil || got != "before the crash" {
		t.Fatalf("the rejoined pod 0 has %q, %v", got, err)
	}

	// A failover asked of a sentinel (what an operator would do by hand).
	if err := h.sentinel(0).Failover(ctx, h.master).Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	var last int
	h.eventually(40*time.Second, func() error {
		i, err := h.agreedPrimary()
		if err != nil {
			return err
		}
		if i == next {
			return fmt.Errorf("the sentinels still name pod %d", i)
		}
		last = i
		return h.settled(i)
	})
	t.Logf("SENTINEL FAILOVER: settled on a new primary after %s", time.Since(start).Round(time.Millisecond))
	if err := h.client(last).Set(ctx, "acked", "before the outage", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := h.client(last).Wait(ctx, 2, 5*time.Second).Result(); err != nil || n < 2 {
		t.Fatalf("WAIT 2: %d, %v", n, err)
	}

	// Every pod stops (a cluster restart) and all start again at once: the
	// last primary the sentinels agreed on (their state, on the pods'
	// volumes) is the primary again, not pod 0.
	for i := range h.ips {
		h.sentinels[i].kill(syscall.SIGTERM)
		h.redis[i].kill(syscall.SIGTERM)
	}
	for i := range h.ips {
		h.redis[i] = h.start(i, "redis")
		h.sentinels[i] = h.start(i, "sentinel")
	}
	start = time.Now()
	h.eventually(40*time.Second, func() error { return h.settled(last) })
	t.Logf("all restarted: settled on pod %d again after %s", last, time.Since(start).Round(time.Millisecond))
	for i := range h.ips {
		if got, err := h.client(i).Get(ctx, "acked").Result(); err != nil || got != "before the outage" {
			t.Errorf("pod %d has %q, %v", i, got, err)
		}
	}
}

// haRedis is the local stand-in for a highly available Redis: per pod, its
// redis and sentinel containers' processes.
type haRedis struct {
	t                   *testing.T
	sh                  []string
	dir                 string
	ips                 []string
	redisPort, sentPort int
	password, master    string
	scripts             map[string]string   // by container name
	env                 map[string][]string // by container name
	redis, sentinels    []*haProcess        // by pod
	clients             map[string]*redis.Client
	sentinelClients     map[string]*redis.SentinelClient
}

// startHARedis renders a highly available room's Redis StatefulSet and
// starts its six containers.
func startHARedis(t *testing.T) *haRedis {
	r := haRoom(chatv1alpha1.ManagedRedisSpec{})
	set, err := desiredRedisStatefulSet(r, "redis:test", "g")
	if err != nil {
		t.Fatal(err)
	}
	h := &haRedis{
		t: t, sh: []string{"sh"}, password: "s3cret-" + strconv.Itoa(rand.IntN(1e6)),
		master: sentinelMasterName(r), scripts: map[string]string{}, env: map[string][]string{},
		clients: map[string]*redis.Client{}, sentinelClients: map[string]*redis.SentinelClient{}, dir: t.TempDir(),
	}
	// The kind Redis image's sh is busybox's.
	if bb, err := exec.LookPath("busybox"); err == nil {
		h.sh = []string{bb, "sh"}
	}
	// Three loopback addresses stand in for the pods' host names; the
	// ports are the same on each, as in the pods.
	prefix := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), rand.IntN(250))
	h.ips = []string{prefix + "1", prefix + "2", prefix + "3"}
	h.redisPort, h.sentPort = freePortOn(t, h.ips), freePortOn(t, h.ips)
	for _, c := range set.Spec.Template.Spec.Containers {
		if len(c.Command) != 3 || c.Command[0] != "sh" || c.Command[1] != "-c" {
			t.Fatalf("container %s runs %q, want sh -c SCRIPT", *c.Name, c.Command)
		}
		h.scripts[*c.Name] = c.Command[2]
		// Every variable the pod gets, with the values of this stand-in.
		for name, v := range envOf(c) {
			switch name {
			case "POD_NAME", "REDIS_HOST", "DATA_DIR":
				continue // per pod: see start
			case "REDIS_HOSTS":
				v = strings.Join(h.ips, " ")
			case "REDIS_PORT":
				v = strconv.Itoa(h.redisPort)
			case "SENTINEL_PORT":
				v = strconv.Itoa(h.sentPort)
			case "REDIS_PASSWORD", "REDISCLI_AUTH":
				v = h.password
			case "SENTINEL_MASTER":
			default:
				t.Fatalf("container %s: variable %s=%q: the test does not know it", *c.Name, name, v)
			}
			h.env[*c.Name] = append(h.env[*c.Name], name+"="+v)
		}
	}
	t.Cleanup(h.stop)
	for i := range h.ips {
		h.redis = append(h.redis, h.start(i, "redis"))
		h.sentinels = append(h.sentinels, h.start(i, "sentinel"))
	}
	return h
}

// start starts container ("redis" or "sentinel") of pod i, on pod i's
// address (--bind, passed on by the script).
func (h *haRedis) start(i int, container string) *haProcess {
	dir := filepath.Join(h.dir, "pod-"+strconv.Itoa(i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.t.Fatal(err)
	}
	env := append([]string{"PATH=" + os.Getenv("PATH"), "REDIS_HOST=" + h.ips[i], "DATA_DIR=" + dir, "POD_NAME=pod-" + strconv.Itoa(i)}, h.env[container]...)
	args := append(append([]string{}, h.sh[1:]...), "-c", h.scripts[container], container, "--bind", h.ips[i])
	return startHAProcess(h.t, filepath.Join(dir, container+".log"), dir, env, h.sh[0], args...)
}

func (h *haRedis) stop() {
	for _, c := range h.clients {
		_ = c.Close()
	}
	for _, c := range h.sentinelClients {
		_ = c.Close()
	}
	for _, p := range append(append([]*haProcess{}, h.sentinels...), h.redis...) {
		p.kill(syscall.SIGKILL)
	}
	if h.t.Failed() {
		for i := range h.ips {
			for _, c := range []string{"redis", "sentinel"} {
				b, _ := os.ReadFile(filepath.Join(h.dir, "pod-"+strconv.Itoa(i), c+".log"))
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				h.t.Logf("pod %d %s log:\n%s", i, c, b)
			}
		}
	}
}

func (h *haRedis) client(i int) *redis.Client {
	addr := net.JoinHostPort(h.ips[i], strconv.Itoa(h.redisPort))
	if c, ok := h.clients[addr]; ok {
		return c
	}
	c := redis.NewClient(&redis.Options{Addr: addr, Password: h.password, MaxRetries: -1, DialTimeout: time.Second})
	h.clients[addr] = c
	return c
}

func (h *haRedis) sentinel(i int) *redis.SentinelClient {
	addr := net.JoinHostPort(h.ips[i], strconv.Itoa(h.sentPort))
	if c, ok := h.sentinelClients[addr]; ok {
		return c
	}
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, Password: h.password, MaxRetries: -1, DialTimeout: time.Second})
	h.sentinelClients[addr] = c
	return c
}

// sentinelURL is the chat pods' --redis-url (managedSentinelURL) with the
// stand-in's addresses.
func (h *haRedis) sentinelURL() string {
	var addrs []string
	for _, ip := range h.ips {
		addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(h.sentPort)))
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/?master=" + h.master
}

// chatReports: the chat server at addr reports pod p as the primary with
// both replicas in sync.
func (h *haRedis) chatReports(addr string, p int) error {
	st, err := HTTPPresence{}.Stats(h.t.Context(), addr)
	if err != nil {
		return err
	}
	want := protocol.RedisStats{Primary: net.JoinHostPort(h.ips[p], strconv.Itoa(h.redisPort)), Replicas: 2, ReplicasInSync: 2}
	if st.Redis == nil || *st.Redis != want {
		return fmt.Errorf("the chat server reports %+v, want %+v", st.Redis, want)
	}
	return nil
}

// agreedPrimary is the pod every sentinel names as the primary.
func (h *haRedis) agreedPrimary() (int, error) {
	ctx, cancel := context.WithTimeout(h.t.Context(), 3*time.Second)
	defer cancel()
	primary := -1
	for i := range h.ips {
		addr, err := h.sentinel(i).GetMasterAddrByName(ctx, h.master).Result()
		if err != nil {
			return -1, fmt.Errorf("sentinel %d: %w", i, err)
		}
		j := h.indexOf(addr[0])
		if j < 0 || addr[1] != strconv.Itoa(h.redisPort) {
			return -1, fmt.Errorf("sentinel %d names %v, not a pod", i, addr)
		}
		if primary >= 0 && j != primary {
			return -1, fmt.Errorf("sentinels disagree: pod %d and pod %d", primary, j)
		}
		primary = j
	}
	return primary, nil
}

// settled: pod p is the primary with the two others as replicas in sync,
// and every sentinel names it and knows both replicas and both other
// sentinels.
func (h *haRedis) settled(p int) error {
	ctx, cancel := context.WithTimeout(h.t.Context(), 3*time.Second)
	defer cancel()
	for i := range h.ips {
		info, err := h.client(i).Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("pod %d: %w", i, err)
		}
		switch {
		case i == p && !strings.Contains(info, "role:master") || i == p && strings.Count(info, ",state=online,") != 2:
			return fmt.Errorf("pod %d is not a primary with 2 replicas online:\n%s", i, info)
		case i != p && !(strings.Contains(info, "role:slave") && strings.Contains(info, "master_host:"+h.ips[p]+"\r") && strings.Contains(info, "master_link_status:up")):
			return fmt.Errorf("pod %d is not a replica of pod %d in sync:\n%s", i, p, info)
		}
		m, err := h.sentinel(i).Master(ctx, h.master).Result()
		if err != nil {
			return fmt.Errorf("sentinel %d: %w", i, err)
		}
		if m["ip"] != h.ips[p] || m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" || m["flags"] != "master" {
			return fmt.Errorf("sentinel %d sees ip %s, %s replicas, %s other sentinels, flags %s; want pod %d's %s, 2, 2, master",
				i, m["ip"], m["num-slaves"], m["num-other-sentinels"], m["flags"], p, h.ips[p])
		}
	}
	return nil
}

func (h *haRedis) indexOf(ip string) int {
	for i, x := range h.ips {
		if x == ip {
			return i
		}
	}
	return -1
}

func (h *haRedis) eventually(timeout time.Duration, cond func() error) {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// freePortOn is a TCP port free on every one of ips.
func freePortOn(t *testing.T, ips []string) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(30000)
		var ls []net.Listener
		for _, ip := range ips {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			_ = l.Close()
		}
		if len(ls) == len(ips) {
			return port
		}
	}
	t.Fatal("no free port on the test's loopback addresses")
	return 0
}

// haProcess is one container's process group.
type haProcess struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startHAProcess(t *testing.T, logPath, dir string, env []string, name string, args ...string) *haProcess {
	t.Helper()
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		t.Fatal(err)
	}
	p := &haProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	return p
}

// kill signals the process's whole group and waits for the process.
func (p *haProcess) kill(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

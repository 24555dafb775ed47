package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Redis Cluster for fault tests, on loopback: six redis-servers with
// cluster-enabled yes, each a *Server with its own directory, port, cluster
// bus port and cluster-config-file (so a test kills, freezes and restarts
// one as any other), joined by `redis-cli --cluster create
// --cluster-replicas 1` into three primaries with one replica each.
//
// Nothing announces that a cluster has formed or failed over, so the Wait
// methods poll the nodes (CLUSTER INFO, CLUSTER SHARDS, INFO replication)
// until a deadline.

// Cluster timings, far below production's (15 s) so a fault test sees a
// failover in seconds.
const (
	// clusterNodeTimeout is how long a primary may stay silent before the
	// others flag it failing; its replica takes over about a second later
	// (cluster-node-timeout plus the replica's election delay of 0.5-1 s).
	clusterNodeTimeout = 1000 * time.Millisecond
	// clusterPollEvery is how often the Wait methods look again.
	clusterPollEvery = 20 * time.Millisecond
	// clusterQueryTimeout bounds one query to a node: a frozen node
	// answers nothing.
	clusterQueryTimeout = time.Second
	// ClusterSlots is how many hash slots a Redis Cluster has.
	ClusterSlots = 16384
)

// Cluster is a Redis Cluster of three primaries with one replica each.
type Cluster struct {
	t        failer
	password string
	nodes    []*Server

	clients clientPool
	mu      sync.Mutex
	slots   []clusterSlotRange // as of the last time the cluster settled
}

type clusterSlotRange struct {
	start, end int
	primary    *Server
}

// StartCluster starts a Redis Cluster for t and stops it when t ends; once
// it returns, every node reports cluster_state:ok, every slot is assigned
// and every primary has an online replica. opts configure every node (the
// cluster directives are set already; a password is handed to the replicas
// and to redis-cli too). It fails t if redis-server or redis-cli is not on
// PATH or the cluster does not form in time.
func StartCluster(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	return forTest(t, func() (*Cluster, error) { return NewCluster(opts...) }, func(c *Cluster) {
		c.t = t
		for _, s := range c.nodes {
			s.t = t
		}
	})
}

// NewCluster starts a Redis Cluster that belongs to no test (for a
// TestMain); the caller stops it with Close. See StartCluster. Its methods
// panic where those of one from StartCluster fail the test.
func NewCluster(opts ...Option) (c *Cluster, err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, errors.New("redis-cli not found: run `make deps` or apt-get install redis-tools")
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	c = &Cluster{t: noTest{}, password: cfg.password, clients: clientPool{password: cfg.password, timeout: clusterQueryTimeout}}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if c.nodes, err = NewClusterNodes(6, opts...); err != nil {
		return nil, err
	}
	args := []string{"--cluster", "create"}
	for _, s := range c.nodes {
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if c.password != "" {
		args = append(args, "-a", c.password, "--no-auth-warning")
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.waitSettled(startTimeout); err != nil {
		return nil, fmt.Errorf("redistest: cluster: %w%s", err, c.logs())
	}
	return c, nil
}

// StartClusterNodes starts n redis-servers with cluster-enabled yes that
// form no cluster: each knows only itself and serves no slot until told
// (CLUSTER ADDSLOTS, CLUSTER MEET). They stop when t ends.
func StartClusterNodes(t testing.TB, n int, opts ...Option) []*Server {
	t.Helper()
	nodes, err := NewClusterNodes(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range nodes {
		s.t = t
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("redistest: %v", err)
			}
		})
	}
	return nodes
}

// NewClusterNodes is StartClusterNodes outside any test: the caller closes
// every server it returns.
func NewClusterNodes(n int, opts ...Option) ([]*Server, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	nodes := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i], errs[i] = newClusterNode(cfg.password, opts) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range nodes {
			if s != nil {
				err = errors.Join(err, s.Close())
			}
		}
		return nil, err
	}
	return nodes, nil
}

// newClusterNode starts one cluster-enabled redis-server. The cluster bus
// listens on port+10000 unless told otherwise, which for a free port above
// 55535 does not exist, so each node gets a free bus port of its own
// (cluster-port); one that someone else took meanwhile makes the start
// fail, and the next try picks another.
func newClusterNode(password string, opts []Option) (*Server, error) {
	var last error
	for range 5 {
		bus, err := freePort()
		if err != nil {
			last = err
			continue
		}
		o := append(slices.Clip(opts),
			WithConfig("cluster-enabled", "yes"),
			WithConfig("cluster-config-file", "nodes.conf"), // in the node's own directory
			WithConfig("cluster-node-timeout", strconv.Itoa(int(clusterNodeTimeout.Milliseconds()))),
			WithConfig("cluster-port", strconv.Itoa(bus)),
			// A diskless sync waits 5 s for more replicas to share it by default.
			WithConfig("repl-diskless-sync-delay", "0"),
		)
		if password != "" {
			// Every node may become a replica after a failover.
			o = append(o, WithConfig("masterauth", password))
		}
		s, err := New(o...)
		if err == nil {
			return s, nil
		}
		last = err
	}
	return nil, last
}

// Close stops every node and removes their directories. Closing a closed
// cluster does nothing.
func (c *Cluster) Close() error {
	var errs []error
	for _, s := range c.nodes {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	c.clients.close()
	return errors.Join(errs...)
}

// URL is the cluster's redis-cluster:// URL, naming every node.
func (c *Cluster) URL() string {
	var addrs []string
	for _, s := range c.nodes {
		addrs = append(addrs, s.Addr())
	}
	u := "redis-cluster://"
	if c.password != "" {
		u += ":" + c.password + "@"
	}
	return u + strings.Join(addrs, ",")
}

// Password is the nodes' password ("" for none).
func (c *Cluster) Password() string { return c.password }

// Nodes are the cluster's six servers, primaries and replicas alike.
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// Client is a go-redis client of one node (not a cluster client: it
// follows no redirection), for inspecting it. The cluster closes it.
func (c *Cluster) Client(s *Server) *redis.Client { return c.client(s.Addr()) }

// KeySlot is the hash slot of key (CLUSTER KEYSLOT on a running node).
func (c *Cluster) KeySlot(key string) int {
	c.t.Helper()
	var last error
	for _, s := range c.running() {
		ctx, cancel := context.WithTimeout(context.Background(), clusterQueryTimeout)
		n, err := c.client(s.Addr()).ClusterKeySlot(ctx, key).Result()
		cancel()
		if err == nil {
			return int(n)
		}
		last = err
	}
	c.t.Fatalf("redistest: CLUSTER KEYSLOT %q: %v", key, last)
	return -1
}

// PrimaryForSlot is the node that serves slot as a primary, as a running
// node's CLUSTER SHARDS says.
func (c *Cluster) PrimaryForSlot(slot int) *Server {
	c.t.Helper()
	ranges, err := c.slotRanges(context.Background())
	if err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
	for _, r := range ranges {
		if r.start <= slot && slot <= r.end {
			return r.primary
		}
	}
	c.t.Fatalf("redistest: no node serves slot %d", slot)
	return nil
}

// PrimaryForKey is the node that serves key's slot as a primary.
func (c *Cluster) PrimaryForKey(key string) *Server { return c.PrimaryForSlot(c.KeySlot(key)) }

// Primaries are the nodes that serve slots as primaries, as a running
// node's CLUSTER SHARDS says.
func (c *Cluster) Primaries() []*Server {
	c.t.Helper()
	ranges, err := c.slotRanges(context.Background())
	if err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
	var out []*Server
	for _, r := range ranges {
		if !slices.Contains(out, r.primary) {
			out = append(out, r.primary)
		}
	}
	return out
}

// Replicas are the nodes that replicate primary, as its INFO replication
// lists them.
func (c *Cluster) Replicas(primary *Server) []*Server {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterQueryTimeout)
	defer cancel()
	info, err := c.client(primary.Addr()).Info(ctx, "replication").Result()
	if err != nil {
		c.t.Fatalf("redistest: %s: INFO replication: %v", primary.Addr(), err)
	}
	var out []*Server
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(k, "slave") || !strings.Contains(v, "port=") {
			continue
		}
		for field := range strings.SplitSeq(v, ",") {
			if port, ok := strings.CutPrefix(field, "port="); ok {
				if s := c.byAddr(net.JoinHostPort("127.0.0.1", port)); s != nil {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// WaitFailover waits until the slots old served as a primary (when the
// cluster last settled: StartCluster, WaitSettled or WaitFailover) are
// served by another node, which reports role:master, and every running node
// reports cluster_state:ok. It returns the new primary, and fails the test
// if that does not happen within timeout.
func (c *Cluster) WaitFailover(old *Server, timeout time.Duration) *Server {
	c.t.Helper()
	c.mu.Lock()
	slot := -1
	for _, r := range c.slots {
		if r.primary == old {
			slot = r.start
			break
		}
	}
	c.mu.Unlock()
	if slot < 0 {
		c.t.Fatalf("redistest: %s served no slot as a primary when the cluster last settled", old.Addr())
	}
	deadline := time.Now().Add(timeout)
	for {
		p, err := c.failedOver(old, slot)
		if err == nil {
			return p
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("redistest: no failover from %s within %s: %v%s", old.Addr(), timeout, err, c.logs())
		}
		time.Sleep(clusterPollEvery)
	}
}

func (c *Cluster) failedOver(old *Server, slot int) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterQueryTimeout)
	defer cancel()
	if err := c.allOK(ctx); err != nil {
		return nil, err
	}
	ranges, err := c.slotRanges(ctx)
	if err != nil {
		return nil, err
	}
	var p *Server
	for _, r := range ranges {
		if r.start <= slot && slot <= r.end {
			p = r.primary
		}
	}
	switch {
	case p == nil:
		return nil, fmt.Errorf("no node serves slot %d", slot)
	case p == old:
		return nil, fmt.Errorf("%s still serves slot %d", old.Addr(), slot)
	}
	info, err := c.client(p.Addr()).Info(ctx, "replication").Result()
	if err != nil {
		return nil, err
	}
	if role := infoField(info, "role"); role != "master" {
		return nil, fmt.Errorf("%s serves slot %d but reports role:%s", p.Addr(), slot, role)
	}
	c.remember(ranges)
	return p, nil
}

// WaitSettled waits until the cluster is whole: every running node reports
// cluster_state:ok, and every primary has an online replica (a killed node
// restarted with Restart rejoins as a replica). It fails the test after
// timeout.
func (c *Cluster) WaitSettled(timeout time.Duration) {
	c.t.Helper()
	if err := c.waitSettled(timeout); err != nil {
		c.t.Fatalf("redistest: %v%s", err, c.logs())
	}
}

func (c *Cluster) waitSettled(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.settled()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not settled within %s: %w", timeout, err)
		}
		time.Sleep(clusterPollEvery)
	}
}

// settled says what is not yet as WaitSettled wants it, or nil.
func (c *Cluster) settled() error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterQueryTimeout)
	defer cancel()
	if err := c.allOK(ctx); err != nil {
		return err
	}
	ranges, err := c.slotRanges(ctx)
	if err != nil {
		return err
	}
	covered := 0
	var primaries []*Server
	for _, r := range ranges {
		covered += r.end - r.start + 1
		if !slices.Contains(primaries, r.primary) {
			primaries = append(primaries, r.primary)
		}
	}
	if covered != ClusterSlots {
		return fmt.Errorf("%d of %d slots assigned", covered, ClusterSlots)
	}
	for _, p := range primaries {
		info, err := c.client(p.Addr()).Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("%s: %w", p.Addr(), err)
		}
		if role := infoField(info, "role"); role != "master" {
			return fmt.Errorf("%s serves slots but reports role:%s", p.Addr(), role)
		}
		if !strings.Contains(info, "state=online") {
			return fmt.Errorf("primary %s has no online replica", p.Addr())
		}
	}
	c.remember(ranges)
	return nil
}

// allOK checks that every running node reports cluster_state:ok and knows
// every node.
func (c *Cluster) allOK(ctx context.Context) error {
	for _, s := range c.running() {
		info, err := c.client(s.Addr()).ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: CLUSTER INFO: %w", s.Addr(), err)
		}
		if st := infoField(info, "cluster_state"); st != "ok" {
			return fmt.Errorf("%s reports cluster_state:%s", s.Addr(), st)
		}
		if n := infoField(info, "cluster_known_nodes"); n != strconv.Itoa(len(c.nodes)) {
			return fmt.Errorf("%s knows %s of %d nodes", s.Addr(), n, len(c.nodes))
		}
	}
	return nil
}

func (c *Cluster) remember(ranges []clusterSlotRange) {
	c.mu.Lock()
	c.slots = ranges
	c.mu.Unlock()
}

// slotRanges reads CLUSTER SHARDS from the first running node that answers:
// the slot ranges, each with its primary.
func (c *Cluster) slotRanges(ctx context.Context) ([]clusterSlotRange, error) {
	var last error = errors.New("no node is running")
	for _, s := range c.running() {
		shards, err := c.client(s.Addr()).ClusterShards(ctx).Result()
		if err != nil {
			last = fmt.Errorf("%s: CLUSTER SHARDS: %w", s.Addr(), err)
			continue
		}
		var out []clusterSlotRange
		for _, sh := range shards {
			if len(sh.Slots) == 0 {
				continue
			}
			var p *Server
			for _, n := range sh.Nodes {
				if n.Role == "master" {
					p = c.byAddr(net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10)))
					if p == nil {
						return nil, fmt.Errorf("%s: CLUSTER SHARDS names %s:%d, no node of this cluster", s.Addr(), n.IP, n.Port)
					}
					break
				}
			}
			if p == nil {
				return nil, fmt.Errorf("%s: CLUSTER SHARDS: slots %v have no primary", s.Addr(), sh.Slots)
			}
			for _, r := range sh.Slots {
				out = append(out, clusterSlotRange{start: int(r.Start), end: int(r.End), primary: p})
			}
		}
		slices.SortFunc(out, func(a, b clusterSlotRange) int { return a.start - b.start })
		return out, nil
	}
	return nil, last
}

func (c *Cluster) byAddr(addr string) *Server {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	for _, s := range c.nodes {
		if strconv.Itoa(s.port) == port && (host == "127.0.0.1" || host == "localhost") {
			return s
		}
	}
	return nil
}

func (c *Cluster) running() []*Server {
	var out []*Server
	for _, s := range c.nodes {
		if s.Running() {
			out = append(out, s)
		}
	}
	return out
}

func (c *Cluster) client(addr string) *redis.Client { return c.clients.get(addr) }

// logs is the end of every node's log, for a failure message.
func (c *Cluster) logs() string {
	var b strings.Builder
	for _, s := range c.nodes {
		if s != nil {
			fmt.Fprintf(&b, "\n--- %s:\n%s", s.Addr(), tail(filepath.Join(s.dir, "redis.log")))
		}
	}
	return b.String()
}

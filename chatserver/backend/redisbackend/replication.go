package redisbackend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replica acknowledgements. Redis replicates asynchronously: a primary that
// dies before its replicas have a write takes that write with it, and the
// replica Sentinel promotes never had it. An append is therefore acked to
// the sender only after MinReplicaAcks replicas confirmed it: WAIT, on the
// connection that ran the append script, pipelined right behind it (one
// round trip). Replication is ordered, so confirming the append's offset
// confirms everything before it too.
//
// A retried send whose clientId was stored already writes nothing new, yet
// its WAIT must cover the original append: the script then refreshes the
// dedup key's expiry, a write whose replication implies the original's.
//
// Where replicas must confirm, the message is published only after they
// have: published at once, it reached live sockets even when the WAIT then
// failed and a failover dropped it (the HA test saw 50-266 such messages
// per failover; their senders resent them under new ids, so people saw
// the text twice). A retry that finds its message stored publishes it too
// (its first attempt may have stopped before publishing), with an unknown
// previous id, so that a server that delivered it already drops it and
// one that did not reads it from the stream.

// DefaultReplicaAckTimeout bounds how long an append waits for its replicas.
// Past it the send gets "unavailable" and the client resends with the same
// clientId, which stores nothing twice.
const DefaultReplicaAckTimeout = 2 * time.Second

// autoAcks is MinReplicaAcks' "auto": 1 through Sentinel, whose very
// purpose is a primary with replicas; otherwise 1 from the first time a
// primary is seen with replicas, for good. Counting them afresh would be
// wrong: a primary cut off from its replicas counts none, and acking
// without them is exactly the loss the wait prevents (the HA test's
// partition scenario lost 1,188 of 1,798 acked messages that way). Until
// replicas are seen, how many there are is checked at most every
// replicaCheckEvery.
const (
	autoAcks          = -1
	replicaCheckEvery = 10 * time.Second
)

// errReplicaAcks says fewer replicas than required confirmed an append.
var errReplicaAcks = errors.New("not enough replicas confirmed the write")

// replicaAcks resolves how many replicas must confirm an append.
type replicaAcks struct {
	want int // Options.MinReplicaAcks: autoAcks or a fixed count

	mu      sync.Mutex
	seen    bool      // a primary had replicas: from now on, 1
	checked time.Time // when a primary was last seen without any
}

func (r *replicaAcks) needed(ctx context.Context, node *redis.Client) (int, error) {
	if r.want != autoAcks {
		return r.want, nil
	}
	r.mu.Lock()
	seen, fresh := r.seen, time.Since(r.checked) < replicaCheckEvery
	r.mu.Unlock()
	switch {
	case seen:
		return 1, nil
	case fresh:
		return 0, nil
	}
	rep, err := readReplication(ctx, node)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = r.seen || rep.Replicas > 0
	r.checked = time.Now()
	if r.seen {
		return 1, nil
	}
	return 0, nil
}

// primaryFor is the client of the primary that holds key: the client
// itself, except on a Cluster, where it is the primary of key's slot.
// WAIT counts the writes of its own connection, so the append and its WAIT
// must go to one node, over one connection (a pipeline on a single-node
// client runs on one).
func (b *Backend) primaryFor(ctx context.Context, key string) (*redis.Client, error) {
	switch c := b.client.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("redis backend: unexpected client %T", b.client)
}

// committing is the arguments of a script that commits a stream entry and
// publishes it (appendScript, changeScript): their replies and
// publications have one shape (publication).
type committing interface {
	argv() []any
	// route is the pub/sub channel and the command that publishes on it.
	route() (topic, publish string)
	// unpublished is the same arguments with no publish command: the
	// script returns the payload instead of publishing it.
	unpublished() committing
}

// runAppend runs the append script and, where replicas must confirm it,
// WAITs for them on the same connection.
func (b *Backend) runAppend(ctx context.Context, ks []string, a appendArgs) ([]any, error) {
	return b.runCommit(ctx, appendScript, ks, a)
}

// runCommit runs script, which commits an entry to the stream ks[0], and
// where replicas must confirm it, WAITs for them on the same connection
// before publishing it.
func (b *Backend) runCommit(ctx context.Context, script *redis.Script, ks []string, a committing) ([]any, error) {
	node, err := b.primaryFor(ctx, ks[0])
	if err != nil {
		return nil, err
	}
	need, err := b.acks.needed(ctx, node)
	if err != nil {
		return nil, err
	}
	if need == 0 {
		return script.Run(ctx, node, ks, a.argv()...).Slice()
	}
	topic, publish := a.route()
	args := a.unpublished().argv()
	for attempt := 0; ; attempt++ {
		pipe := node.Pipeline()
		eval := pipe.EvalSha(ctx, script.Hash(), ks, args...)
		// Pipeliner leaves out Wait, which go-redis' pipeline has: it also
		// stretches the read timeout to the wait's.
		wait := pipe.(interface {
			Wait(ctx context.Context, numReplicas int, timeout time.Duration) *redis.IntCmd
		}).Wait(ctx, need, b.opt.ReplicaAckTimeout)
		_, err := pipe.Exec(ctx)
		if attempt == 0 && redis.HasErrorPrefix(eval.Err(), "NOSCRIPT") {
			// The script cache is per node and empty after a restart or a
			// failover: load it and go again. (The WAIT behind it waited
			// for nothing.)
			if err := script.Load(ctx, node).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if got, err := wait.Result(); err != nil || got < int64(need) {
			return nil, fmt.Errorf("%w: %d of %d within %v (%v)", errReplicaAcks, got, need, b.opt.ReplicaAckTimeout, err)
		}
		res, err := eval.Slice()
		if err != nil {
			return nil, err
		}
		if payload, ok := publication(res); ok {
			// The message is stored and confirmed: a failed publication
			// only delays it (the next message's gap, or the resync).
			if err := node.Do(ctx, publish, topic, payload).Err(); err != nil {
				b.st.errors.Add(1)
				b.feed.pubLog.fail(b.log, "publishing a confirmed message failed; subscribers will read it from the stream", err)
			} else {
				b.feed.pubLog.ok(b.log, "publishing confirmed messages works again")
			}
		}
		return res, nil
	}
}

// publication is what to publish for a commit script's reply when the
// script did not publish: {id, 0, payload, ...} for a new entry; for a
// duplicate message still in the stream, {id, 1, from, text}, its
// publication with an unknown previous id ("-" is never an id).
func publication(res []any) (string, bool) {
	if len(res) < 3 {
		return "", false
	}
	if dup, _ := res[1].(int64); dup == 0 {
		p, ok := res[2].(string)
		return p, ok && p != ""
	}
	if len(res) == 4 {
		id, _ := res[0].(string)
		from, _ := res[2].(string)
		text, _ := res[3].(string)
		return "-\n" + id + "\n" + from + "\n" + text, true
	}
	return "", false
}

// Replication is what a chat server sees of its room's Redis replication.
type Replication struct {
	// Primary is the primary's address as this server reaches it
	// ("host:port"); empty on a Cluster, where each slot has its own.
	Primary string
	// Replicas is how many replicas are connected to the primary.
	Replicas int
	// InSync is how many of them are online and acknowledged the
	// replication stream within the last inSyncLag.
	InSync int
}

// inSyncLag is how stale a replica's last acknowledgement may be for it to
// count as in sync: a managed primary refuses writes (min-replicas-max-lag)
// past the same bound.
const inSyncLag = 10

// Replication reads the room's primary's replication state (INFO
// replication on it). On a Cluster it describes the primary of the room's
// slot.
func (b *Backend) Replication(ctx context.Context) (Replication, error) {
	node, err := b.primaryFor(ctx, b.eventsTopic)
	if err != nil {
		return Replication{}, b.wrap("replication", err)
	}
	rep, err := readReplication(ctx, node)
	if err != nil {
		return Replication{}, b.wrap("replication", err)
	}
	if _, cluster := b.client.(*redis.ClusterClient); !cluster {
		rep.Primary, err = b.primaryAddr(ctx, node)
		if err != nil {
			return Replication{}, b.wrap("replication", err)
		}
	}
	return rep, nil
}

// primaryAddr is the address node reaches the primary at: through
// Sentinel, the address Sentinel announces for it.
func (b *Backend) primaryAddr(ctx context.Context, node *redis.Client) (string, error) {
	if b.sentinel == nil {
		return node.Options().Addr, nil
	}
	addr, err := b.sentinel.GetMasterAddrByName(ctx, b.masterName).Result()
	if err != nil {
		return "", err
	}
	if len(addr) != 2 {
		return "", fmt.Errorf("sentinel: master %q: unexpected address %q", b.masterName, addr)
	}
	return net.JoinHostPort(addr[0], addr[1]), nil
}

// readReplication parses INFO replication.
func readReplication(ctx context.Context, node *redis.Client) (Replication, error) {
	info, err := node.Info(ctx, "replication").Result()
	if err != nil {
		return Replication{}, err
	}
	return parseReplication(info)
}

func parseReplication(info string) (Replication, error) {
	var rep Replication
	role := ""
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch {
		case k == "role":
			role = v
		case k == "connected_slaves":
			n, err := strconv.Atoi(v)
			if err != nil {
				return Replication{}, fmt.Errorf("INFO replication: connected_slaves %q", v)
			}
			rep.Replicas = n
		case strings.HasPrefix(k, "slave") && strings.Contains(v, "state="):
			if replicaInSync(v) {
				rep.InSync++
			}
		}
	}
	if role != "master" {
		return Replication{}, fmt.Errorf("INFO replication: role %q, want master", role)
	}
	return rep, nil
}

// replicaInSync reads one "slaveN:ip=...,port=...,state=online,offset=...,lag=0" value.
func replicaInSync(v string) bool {
	online, lag := false, -1
	for field := range strings.SplitSeq(v, ",") {
		k, val, _ := strings.Cut(field, "=")
		switch k {
		case "state":
			online = val == "online"
		case "lag":
			lag, _ = strconv.Atoi(val)
		}
	}
	return online && lag >= 0 && lag <= inSyncLag
}

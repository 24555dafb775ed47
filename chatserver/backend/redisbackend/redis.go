// Package redisbackend is the Redis implementation of the chat server's
// storage and fan-out (chat.Backend) and of the account store (auth.Store).
//
// Every key comes from chatserver/keys and carries the room's hash tag, so
// the multi-key Lua scripts here are Redis Cluster safe.
//
// Messages: Append is one Lua script that checks the sender's dedup key,
// reads the channel's previous last id, XADDs the message (MAXLEN ~) and
// PUBLISHes "<prev id>\n<id>\n<from>\n<text>" on the channel's topic. The
// stream is the truth; pub/sub only says "something new". The feed keeps,
// per followed channel, the last id it delivered: a published message whose
// prev is not that id reveals a gap, which is filled from the stream. Every
// subscribe confirmation (go-redis re-subscribes silently after a reconnect,
// and Redis confirms each channel again) re-reads the channel from its last
// delivered id, so nothing published while the connection was down is lost.
// A created channel's messages go through the same script, which then also
// refuses a sender who is not a member (channels.go keeps the catalog).
//
// On a Redis Cluster a room's keys and topics share one hash slot, and its
// pub/sub is sharded (SPUBLISH, SSUBSCRIBE), so its messages travel only
// within the slot's shard; cluster.go tells how, failovers included.
package redisbackend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/keys"
)

var (
	_ chat.Backend = (*Backend)(nil)
	_ auth.Store   = (*Backend)(nil)
)

// Options configure a Backend. Room and URL are required; every other field
// has a sensible default.
type Options struct {
	// Room is "namespace/name"; it prefixes every key.
	Room string
	// URL is redis://, rediss://, unix://, redis-sentinel://[:password@]host:port[,host:port]/?master=NAME
	// or redis-cluster://[:password@]host:port[,host:port]. See ParseURL.
	URL string
	// Password, when set, overrides the URL's password.
	Password string
	// PodID names this server (event Origin, Redis client name). Default: the hostname.
	PodID string
	// Logger receives background errors (the feed's lost connections, failed
	// stream reads). Default: slog.Default().
	Logger *slog.Logger

	// Shards is how many delivery workers the feed runs; one channel is
	// always served by the same worker. Default 4.
	Shards int
	// PageSize is how many messages one stream read fetches when the feed
	// fills a gap or resumes. Default 500.
	PageSize int
	// QueueLimit bounds the pub/sub messages waiting in one shard; past it
	// the feed drops them and re-reads the channel from the stream instead
	// (nothing is lost, memory stays bounded). Default 10000.
	QueueLimit int
	// PingInterval is how often an idle pub/sub connection is pinged; one
	// that stays silent for 3 intervals is replaced. Default 5s.
	PingInterval time.Duration
	// RetryInterval is how often the feed retries stream reads that failed
	// (Redis down). Default 1s.
	RetryInterval time.Duration
	// ResyncInterval is how often every followed channel is re-read from its
	// last delivered id as a safety net. 0 means 30s; negative disables it.
	ResyncInterval time.Duration

	// MinReplicaAcks is how many replicas must confirm an append before it
	// is acked (replication.go). AutoReplicaAcks means 1 when the primary
	// has replicas and 0 for a lone Redis; 0 never waits.
	MinReplicaAcks int
	// ReplicaAckTimeout bounds that wait. Default DefaultReplicaAckTimeout.
	ReplicaAckTimeout time.Duration

	// PresenceUpgradeWindow is how long after a room's pods set
	// (keys.PresencePods) first appears Leave and Sweep still scan the
	// whole presence set: servers from before it, still running during a
	// rolling upgrade, mark people online without listing their pod there.
	// 0 means 10 minutes; negative means never (a room with no older servers).
	PresenceUpgradeWindow time.Duration
}

// AutoReplicaAcks is the MinReplicaAcks that follows the topology.
const AutoReplicaAcks = autoAcks

func (o *Options) defaults() {
	if o.PodID == "" {
		o.PodID, _ = os.Hostname()
		if o.PodID == "" {
			var b [6]byte
			_, _ = rand.Read(b[:])
			o.PodID = "pod-" + hex.EncodeToString(b[:])
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PresenceUpgradeWindow == 0 {
		o.PresenceUpgradeWindow = 10 * time.Minute
	}
	if o.Shards <= 0 {
		o.Shards = 4
	}
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	if o.QueueLimit <= 0 {
		o.QueueLimit = 10000
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = 30 * time.Second
	}
	if o.ReplicaAckTimeout <= 0 {
		o.ReplicaAckTimeout = DefaultReplicaAckTimeout
	}
}

// Backend is a Redis-backed chat.Backend and auth.Store. It is safe for
// concurrent use. Run drives the feed; Close releases the connections.
type Backend struct {
	opt    Options
	room   string
	client redis.UniversalClient
	log    *slog.Logger

	topicPrefix string // keys.Topic(room, ""): topic = topicPrefix + channel
	eventsTopic string

	feed  feed
	st    stats
	acks  replicaAcks
	users usersIndex
	// sentinel answers which primary Sentinel announces (nil without Sentinel).
	sentinel   *redis.SentinelClient
	masterName string
}

// New connects lazily: it checks the options and builds the client, but does
// not need Redis to be up (readiness is Ping's business).
func New(opt Options) (*Backend, error) {
	if opt.Room == "" {
		return nil, errors.New("redis backend: Room is required")
	}
	if opt.MinReplicaAcks < autoAcks {
		return nil, fmt.Errorf("redis backend: MinReplicaAcks %d: want -1 (auto), 0 or more", opt.MinReplicaAcks)
	}
	if opt.URL == "" {
		return nil, errors.New("redis backend: URL is required")
	}
	uo, err := ParseURL(opt.URL)
	if err != nil {
		return nil, fmt.Errorf("redis backend: %w", err)
	}
	opt.defaults()
	if opt.Password != "" {
		uo.Password = opt.Password
		if uo.SentinelPassword == "" {
			uo.SentinelPassword = opt.Password
		}
	}
	if uo.ClientName == "" {
		uo.ClientName = "hubbub:" + opt.PodID
	}
	b := &Backend{
		opt:         opt,
		room:        opt.Room,
		client:      redis.NewUniversalClient(uo),
		log:         opt.Logger.With("component", "redis"),
		topicPrefix: keys.Topic(opt.Room, ""),
		eventsTopic: keys.Events(opt.Room),
		acks:        replicaAcks{want: opt.MinReplicaAcks},
	}
	if uo.MasterName != "" && opt.MinReplicaAcks == autoAcks {
		b.acks.seen = true // Sentinel: a primary with replicas by design
	}
	if uo.MasterName != "" {
		b.masterName = uo.MasterName
		b.sentinel = redis.NewSentinelClient(&redis.Options{
			Addr: uo.Addrs[0], Username: uo.SentinelUsername, Password: uo.SentinelPassword, TLSConfig: uo.TLSConfig,
		})
	}
	b.feed.init(b)
	return b, nil
}

// Client is the underlying go-redis client (for metrics and tests).
func (b *Backend) Client() redis.UniversalClient { return b.client }

// Ping reports whether Redis answers; readiness uses it. On a Redis Cluster
// it reports whether the cluster serves the room's slot (pingCluster).
func (b *Backend) Ping(ctx context.Context) error {
	if cc := b.cluster(); cc != nil {
		return b.wrap("ping", b.pingCluster(ctx, cc))
	}
	return b.wrap("ping", b.client.Ping(ctx).Err())
}

// Close closes the Redis connections. Call it after Run has returned.
func (b *Backend) Close() error {
	err := b.client.Close()
	if b.sentinel != nil {
		err = errors.Join(err, b.sentinel.Close())
	}
	if err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redis backend: close: %w", err)
	}
	return nil
}

// Stats are counters for metrics; every field only grows.
type Stats struct {
	// Errors counts failed Redis operations (requests and background work).
	Errors uint64
	// Reconnects counts pub/sub connections lost (and re-established).
	Reconnects uint64
	// GapFills counts gaps in pub/sub that the feed filled from the stream.
	GapFills uint64
	// Resyncs counts stream re-reads of followed channels (after
	// subscribing, reconnecting, overflow, retries and the periodic check).
	Resyncs uint64
	// Overflows counts pub/sub messages dropped from a full shard queue (and
	// then read from the stream).
	Overflows uint64
	// Delivered counts messages handed to the Handler.
	Delivered uint64
}

type stats struct {
	errors, reconnects, gapFills, resyncs, overflows, delivered atomic.Uint64
}

// Stats returns the backend's counters.
func (b *Backend) Stats() Stats {
	return Stats{
		Errors:     b.st.errors.Load(),
		Reconnects: b.st.reconnects.Load(),
		GapFills:   b.st.gapFills.Load(),
		Resyncs:    b.st.resyncs.Load(),
		Overflows:  b.st.overflows.Load(),
		Delivered:  b.st.delivered.Load(),
	}
}

// wrap names the operation and marks errors that mean "Redis cannot be
// reached or cannot serve now" with chat.ErrUnavailable.
func (b *Backend) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	b.st.errors.Add(1)
	if b.clusterTrouble(err) || unavailable(err) {
		return fmt.Errorf("redis %s: %w: %w", op, chat.ErrUnavailable, err)
	}
	return fmt.Errorf("redis %s: %w", op, err)
}

// transientReplies are server error prefixes that mean "not now" rather than
// "this request is wrong".
// UNBLOCKED: a WAIT cut short because a failover demoted the primary.
var transientReplies = []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY", "NOREPLICAS", "MISCONF", "OOM", "UNBLOCKED"}

func unavailable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false // the caller gave up; nothing says Redis is down
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range transientReplies {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// Anything else from the client that is not a server reply is a
	// connection problem: refused or failed dials, resets, broken pipes,
	// timeouts.
	return true
}

// logOnce logs a background problem once per episode: the first failure is
// logged at warn, repeats are counted silently, and recovery is logged at info.
type logOnce struct {
	mu     sync.Mutex
	failed bool
	count  int
}

func (l *logOnce) fail(log *slog.Logger, msg string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	if !l.failed {
		l.failed = true
		log.Warn(msg, "err", err)
	}
}

func (l *logOnce) ok(log *slog.Logger, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed {
		log.Info(msg, "failures", l.count)
		l.failed, l.count = false, 0
	}
}

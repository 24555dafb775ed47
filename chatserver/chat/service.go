// Package chat is the real-time core of the chat server: the local hub of
// WebSocket connections, what each client frame does, and the fan-out of
// committed messages and room events from the backend to local sockets.
//
// Storage and cross-server fan-out are behind the interfaces in backend.go,
// implemented by chatserver/backend/memory and chatserver/backend/redisbackend.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hubbub-chat/hubbub/chatserver/metrics"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Service is one server's chat core. It wires the parts together and runs
// the server-wide loops: the feed, presence, keepalive and write pacing.
type Service struct {
	b      Backend
	opts   Options
	log    *slog.Logger
	m      *metrics.Metrics
	budget frameBudget
	objs   objectCounters
	wire   *wire
	hub    *hub
	pres   presenceBatcher
	watch  watchers
	// replays shares resume reads among sockets (replayshare.go).
	replays replayShare
	// life is the sockets' context: it ends when Run returns.
	life    context.Context
	endLife context.CancelFunc
	// following is closed once Run follows the room's channels: a socket
	// waits for it, as a message it sent before then could be committed
	// before the id Run follows after, and never fanned out here.
	following chan struct{}
	// recheck asks the keepalive loop to check every socket's session and
	// channels soon, presenceLost the presence loop to read the statuses
	// of the people watched here, and dmsLost the DMs loop to read the DMs
	// of the people connected here (eventsMissed).
	recheck, presenceLost, dmsLost chan struct{}
}

// New returns a Service over b.
func New(b Backend, opts Options) *Service {
	opts = opts.withDefaults()
	s := &Service{
		b: b, opts: opts, log: opts.Logger, m: opts.Metrics,
		budget: newFrameBudget(opts),
		objs:   newObjectCounters(opts.Metrics),
		wire:   newWire(opts.SendQueueMax, opts.Metrics),
	}
	s.hub = newHub(opts.Channels, countedFollower{b, opts.Metrics.Followed}, hubLimits{perUser: opts.MaxConnsPerUser, total: opts.MaxConns},
		func(delta int) { s.m.Connections.Add(float64(delta)) })
	s.life, s.endLife = context.WithCancel(context.Background())
	s.following = make(chan struct{})
	s.recheck = make(chan struct{}, 1)
	s.presenceLost = make(chan struct{}, 1)
	s.dmsLost = make(chan struct{}, 1)
	return s
}

// Following reports whether Run follows the room's channels: until then
// new sockets wait.
func (s *Service) Following() bool {
	select {
	case <-s.following:
		return true
	default:
		return false
	}
}

// countedFollower counts the channels followed: the hub follows a channel
// once, on its first local member, and lets go once, after its last.
type countedFollower struct {
	follower
	n prometheus.Gauge
}

func (f countedFollower) Follow(channel, after string) {
	f.n.Inc()
	f.follower.Follow(channel, after)
}

func (f countedFollower) Unfollow(channel string) {
	f.n.Dec()
	f.follower.Unfollow(channel)
}

// objectCounters are the counters of queued objects by type, resolved
// once: WithLabelValues hashes its labels on every call, too slow for once
// per object per socket.
type objectCounters struct {
	vec     *prometheus.CounterVec
	byType  map[string]prometheus.Counter
	message prometheus.Counter
}

func newObjectCounters(m *metrics.Metrics) objectCounters {
	o := objectCounters{vec: m.ObjectsOut, byType: map[string]prometheus.Counter{}}
	for _, t := range protocol.ServerTypes {
		o.byType[t] = m.ObjectsOut.WithLabelValues(t)
	}
	o.message = o.byType[protocol.TypeMessage]
	return o
}

// out is the counter of queued objects of type typ.
func (o objectCounters) out(typ string) prometheus.Counter {
	if c, ok := o.byType[typ]; ok {
		return c
	}
	return o.vec.WithLabelValues(typ)
}

// Run follows the public channels, delivers what the backend feeds, and keeps
// presence fresh, until ctx ends. Then it closes every socket still open and
// returns once their goroutines have.
func (s *Service) Run(ctx context.Context) error {
	for _, ch := range s.opts.Channels {
		last, err := s.b.LastID(ctx, ch)
		if err != nil {
			// Follow from the start of what is kept: better a few replayed
			// (clients drop duplicates by id) than a gap.
			s.log.Warn("reading last id; following from the start", "channel", ch, "err", err)
			last = ""
		}
		s.b.Follow(ch, last)
	}
	close(s.following)
	var wg sync.WaitGroup
	wg.Go(func() { s.presenceLoop(ctx) })
	wg.Go(func() { s.keepaliveLoop(ctx) })
	wg.Go(func() { s.dmsLoop(ctx) })
	wg.Go(func() { s.wire.pace.run(ctx, s.log) })
	err := s.b.Run(ctx, feedHandler{s})
	wg.Wait()
	s.endLife()
	s.hub.stop()
	s.wire.stop()
	return err
}

// Drain tells every client to reconnect elsewhere, spread evenly over
// spread so they do not all come back at once, then waits until they are
// gone or ctx ends. New connections are refused from the start.
func (s *Service) Drain(ctx context.Context, spread time.Duration) {
	all := s.hub.drain()
	reconnect := protocol.Encode(protocol.Reconnect{Type: protocol.TypeReconnect, Reason: "draining"})
	var step time.Duration
	if len(all) > 1 {
		step = spread / time.Duration(len(all))
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for _, c := range all {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.enqueue(protocol.TypeReconnect, reconnect)
		c.out.close(protocol.CloseServiceRestart, "server restarting")
		t.Reset(step)
	}
	select {
	case <-s.hub.wait():
	case <-ctx.Done():
	}
}

// ConnectionCount is the number of open sockets on this server.
func (s *Service) ConnectionCount() int { return s.hub.len() }

// RevokeSessions closes, on every server, the sockets of user's listed
// sessions (all of them when ids is empty) with close code 4401.
func (s *Service) RevokeSessions(ctx context.Context, user string, ids []string) error {
	e := Event{Kind: EventRevoke, User: user, Sessions: ids, Origin: s.opts.Pod}
	// Close local sockets now rather than waiting for our own event: the
	// person who pressed "log out everywhere" sees it take effect at once.
	s.handleEvent(e)
	if err := s.b.Publish(ctx, e); err != nil {
		return fmt.Errorf("publishing revocation: %w", err)
	}
	return nil
}

func (s *Service) backendError(op string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	s.m.BackendErrors.WithLabelValues(op).Inc()
	s.log.Warn("backend error", "op", op, "err", err)
}

func (s *Service) publish(ctx context.Context, e Event) {
	e.Origin = s.opts.Pod
	if err := s.b.Publish(ctx, e); err != nil {
		s.backendError("publish_"+e.Kind, err)
	}
}

package chat

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// maxSessionChecks bounds the session checks the keepalive loop runs at once.
const maxSessionChecks = 16

// pingPeriod is how often sockets are pinged: often enough that a live
// peer's pong renews the read deadline before it passes.
func (s *Service) pingPeriod() time.Duration { return s.opts.PongWait * 9 / 10 }

// keepaliveLoop pings every socket every pingPeriod, re-validates its
// session every SessionCheck, and cuts writes stuck past WriteTimeout: one
// goroutine and one timer for the whole server instead of a ticker (and a
// goroutine) per socket. Each socket's times count from its connect, so
// the work is spread as connects were.
func (s *Service) keepaliveLoop(ctx context.Context) {
	t := time.NewTicker(min(time.Second, s.opts.SessionCheck/4))
	defer t.Stop()
	sem := make(chan struct{}, maxSessionChecks)
	var wg sync.WaitGroup
	defer wg.Wait()
	var due keepaliveDue
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case <-s.recheck:
			s.checkAllSoon(time.Now())
			continue
		case now = <-t.C:
		}
		due.collect(s, now)
		for _, c := range due.stuck {
			s.m.Errors.WithLabelValues(protocol.CodeWriteTimeout).Inc()
			_ = c.ws.Close()
		}
		for _, c := range due.pings {
			c.out.requestPing()
		}
		for _, c := range due.checks {
			select {
			case sem <- struct{}{}:
			default:
				continue // every slot is busy (storage is slow): this one waits a tick
			}
			c.nextCheck = now.Add(s.opts.SessionCheck)
			wg.Go(func() {
				defer func() { <-sem }()
				c.checkSession(ctx)
			})
		}
		due.clear()
	}
}

// checkAllSoon brings every socket's next session check within
// MissedEventsCheck of now, at random. It runs on the keepalive loop, which
// owns nextCheck.
func (s *Service) checkAllSoon(now time.Time) {
	spread := int64(s.opts.MissedEventsCheck)
	n := 0
	s.hub.fanout(everyone(), func(c *conn) {
		if c.check == nil {
			return
		}
		if at := now.Add(time.Duration(rand.Int64N(spread + 1))); at.Before(c.nextCheck) {
			c.nextCheck = at
		}
		n++
	})
	s.log.Info("events may have been missed: checking every socket's session and channels", "sockets", n, "within", time.Duration(spread))
}

// keepaliveDue is one tick's work, its slices reused from tick to tick.
type keepaliveDue struct {
	pings, checks, stuck []*conn
}

// collect finds the sockets due a ping or a session check, and those
// whose write has been stuck too long. Writes have no deadline (a timer
// per frame costs CPU on the hot path); a write stuck this long means a
// client that stopped reading, and closing the socket ends it.
func (d *keepaliveDue) collect(s *Service, now time.Time) {
	s.hub.fanout(everyone(), func(c *conn) {
		if since := c.ws.WriteBlockedSince(); !since.IsZero() && now.Sub(since) > s.opts.WriteTimeout {
			d.stuck = append(d.stuck, c)
		}
		if !now.Before(c.nextPing) {
			c.nextPing = now.Add(s.pingPeriod())
			d.pings = append(d.pings, c)
		}
		if c.check != nil && !now.Before(c.nextCheck) {
			d.checks = append(d.checks, c)
		}
	})
}

func (d *keepaliveDue) clear() {
	clear(d.pings)
	clear(d.checks)
	clear(d.stuck)
	d.pings, d.checks, d.stuck = d.pings[:0], d.checks[:0], d.stuck[:0]
}

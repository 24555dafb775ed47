package loadtest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

func (c *coordinator) cpu() (servers, redis, workers time.Duration) {
	s := c.sampleCPU()
	for _, d := range s.servers {
		servers += d
	}
	return servers, s.redis, s.workers
}

func (c *coordinator) runStep(ctx context.Context, step int, spec StepSpec) (StepResult, error) {
	r := StepResult{Rate: spec.Rate, Flood: spec.Flood}
	pre, err := c.stats(ctx, step)
	if err != nil {
		return r, err
	}
	r.Conns = pre.open
	before := c.sampleServers(ctx)
	s0, r0, w0 := c.cpu()
	m0 := machineCPU()
	start := time.Now()

	var fl floodResult
	var floodWG sync.WaitGroup
	if spec.Flood > 0 {
		floodWG.Go(func() { fl = c.loginFlood(ctx, spec.Flood, c.cfg.StepDuration) })
	}
	evs, err := c.command(ctx, command{Cmd: "step", Step: step, Rate: spec.Rate / float64(len(c.workers)), Duration: c.cfg.StepDuration},
		"sent", c.cfg.StepDuration+60*time.Second)
	if err != nil {
		return r, err
	}
	floodWG.Wait()
	var writeErrs uint64
	for _, ev := range evs {
		r.Sent += ev.Sent
		writeErrs += ev.SendErrors
	}
	// Drain: wait until everything sent has arrived, nothing has arrived for
	// a while, or DrainMax has passed.
	var t stepTotals
	deadline := time.Now().Add(c.cfg.DrainMax)
	var lastDelivered uint64
	lastProgress := time.Now()
	for {
		if t, err = c.stats(ctx, step); err != nil {
			return r, err
		}
		// The baseline acknowledges nothing: all it was sent counts.
		acked := r.Sent
		if c.cfg.Target != "baseline" {
			acked = t.acked
		}
		expected := acked * uint64(r.Conns)
		if t.delivered >= expected && (c.cfg.Target == "baseline" || t.acked+t.errFrames >= r.Sent) {
			break
		}
		if t.delivered > lastDelivered {
			lastDelivered, lastProgress = t.delivered, time.Now()
		}
		if time.Now().After(deadline) || time.Since(lastProgress) > 3*time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	s1, r1, w1 := c.cpu()
	m1 := machineCPU()
	r.Seconds = time.Since(start).Seconds()
	after := c.sampleServers(ctx)

	acked := r.Sent
	if c.cfg.Target != "baseline" {
		acked = t.acked
		r.SendErrors = writeErrs + (r.Sent - min(r.Sent, t.acked))
	} else {
		r.SendErrors = writeErrs
	}
	r.Expected = acked * uint64(r.Conns)
	r.Delivered, r.Duplicates, r.Dropped = t.delivered, t.dups, t.dropped
	if r.Expected > 0 {
		r.DeliveredRatio = float64(r.Delivered) / float64(r.Expected)
	}
	if t.lastRecv > 0 {
		span := time.Unix(0, t.lastRecv).Sub(start)
		r.DeliveredPerSec = float64(r.Delivered) / max(span.Seconds(), c.cfg.StepDuration.Seconds())
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r.P50ms, r.P90ms, r.P99ms, r.MaxMs = ms(t.hist.quantile(.5)), ms(t.hist.quantile(.9)), ms(t.hist.quantile(.99)), ms(t.hist.max())
	r.ServerCPUs, r.RedisCPUs, r.WorkerCPUs = (s1 - s0).Seconds(), (r1 - r0).Seconds(), (w1 - w0).Seconds()
	r.OtherCPUs = max(0, (m1-m0).Seconds()-r.ServerCPUs-r.RedisCPUs-r.WorkerCPUs)
	if r.Delivered > 0 {
		r.CPUPerMsgUs = r.ServerCPUs / float64(r.Delivered) * 1e6
	}
	var frames, msgs float64
	for i := range after {
		frames += after[i].frames - before[i].frames
		msgs += after[i].messages - before[i].messages
	}
	if frames > 0 {
		r.ObjectsPerFrame = msgs / frames
	}
	var acks buckets
	for i := range after {
		acks = acks.add(after[i].acks.sub(before[i].acks))
	}
	r.AckP50ms, r.AckP99ms = 1000*acks.quantile(.5), 1000*acks.quantile(.99)
	r.Logins, r.LoginErrors, r.LoginP50ms, r.LoginP99ms = fl.ok, fl.errors, ms(fl.hist.quantile(.5)), ms(fl.hist.quantile(.99))
	if c.cfg.Target == centrifugoTarget {
		c.logCentrifugoStep(spec, r, before, after)
	}
	if err := c.settleBacklog(ctx, step, r, t); err != nil {
		return r, err
	}
	return r, nil
}

// How long settleBacklog waits: until a step's acknowledgements and
// deliveries have stopped coming for backlogQuiet, and at most backlogMax.
const (
	backlogQuiet = 2 * time.Second
	backlogMax   = 2 * time.Minute
)

// settleBacklog follows a step whose drain ended before all its sends were
// acknowledged or all it expected arrived (end: its totals then): it waits
// until the rest has come, or nothing more has for backlogQuiet, so that
// the next step starts on idle servers. A server that falls behind holds
// what it has not yet handled: Centrifugo queues a socket's commands (the
// sender's publishes) and, per node, the publications it has not yet
// broadcast (its PUB/SUB queue), all in order. Without this wait the next
// step would spend its window on that backlog (counted, by the step in each
// message's text or command id, to the step whose result is already taken)
// with its own messages queued behind it: a run whose steps each offered
// more than the servers deliver reported 0 delivered in every later step.
// What comes now is logged as late; the step's result keeps what came
// within its drain, as every step's does.
func (c *coordinator) settleBacklog(ctx context.Context, step int, r StepResult, end stepTotals) error {
	acks := c.cfg.Target != "baseline" // the baseline acknowledges nothing: all it was sent counts
	expected := func(t stepTotals) uint64 {
		if !acks {
			return r.Sent * uint64(r.Conns)
		}
		return t.acked * uint64(r.Conns)
	}
	pending := func(t stepTotals) bool {
		return t.delivered < expected(t) || (acks && t.acked+t.errFrames < r.Sent)
	}
	if !pending(end) {
		return nil
	}
	start, lastProgress, last := time.Now(), time.Now(), end
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		t, err := c.stats(ctx, step)
		if err != nil {
			return err
		}
		if t.delivered > last.delivered || t.acked+t.errFrames > last.acked+last.errFrames {
			lastProgress = time.Now()
		}
		last = t
		done, quiet := !pending(t), time.Since(lastProgress) >= backlogQuiet
		if !done && !quiet && time.Since(start) < backlogMax {
			continue
		}
		level := slog.LevelInfo
		if !done && !quiet {
			level = slog.LevelWarn // still coming: the next step starts on busy servers
		}
		c.log.Log(ctx, level, "step backlog", "step", step, "rate", r.Rate,
			"lateAcks", t.acked-end.acked, "lateDelivered", t.delivered-end.delivered,
			"lateDropped", t.dropped-end.dropped, "unacked", r.Sent-min(r.Sent, t.acked+t.errFrames),
			"undelivered", expected(t)-min(expected(t), t.delivered),
			"seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
		return nil
	}
}

// logCentrifugoStep logs what Centrifugo's own metrics say of a step's
// window: the publication pushes its nodes wrote (which the workers'
// count of deliveries should match, less what was still in flight at the
// window's ends), and how long a publication waited between the publish
// and its broadcast on a node (centrifugo_node_pub_sub_lag_seconds: the
// node's PUB/SUB queue when it cannot keep up).
func (c *coordinator) logCentrifugoStep(spec StepSpec, r StepResult, before, after []serverSample) {
	var pushes, lagSum, lagCount float64
	for i := range after {
		pushes += after[i].pushes - before[i].pushes
		lagSum += after[i].lagSum - before[i].lagSum
		lagCount += after[i].lagCount - before[i].lagCount
	}
	lag := 0.0
	if lagCount > 0 {
		lag = 1000 * lagSum / lagCount
	}
	c.log.Info("centrifugo step", "rate", spec.Rate, "pushesWritten", int64(pushes), "delivered", r.Delivered,
		"broadcasts", int64(lagCount), "meanPubSubLagMs", int64(lag))
}

type floodResult struct {
	ok, errors uint64
	hist       merged
}

// loginFlood logs the flood user in at rate per second for d, spread over
// the servers, with bounded concurrency (a login that cannot start because
// all slots are busy counts as an error: the flood is already saturating).
func (c *coordinator) loginFlood(ctx context.Context, rate float64, d time.Duration) floodResult {
	var h hist
	var ok, fails atomic.Uint64
	sem := make(chan struct{}, c.cfg.FloodConc)
	var wg sync.WaitGroup
	total := int(rate*d.Seconds() + 0.5)
	start := time.Now()
	cred := map[string]string{"username": c.flood.user, "password": c.flood.pass}
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
			time.Sleep(wait)
		}
		select {
		case sem <- struct{}{}:
		default:
			fails.Add(1)
			continue
		}
		srv := c.servers[i%len(c.servers)]
		wg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			code, err := c.call(ctx, http.MethodPost, srv.url("/api/v1/login"), "", cred, nil)
			if err != nil || code != http.StatusOK {
				fails.Add(1)
				return
			}
			h.record(time.Since(t0))
			ok.Add(1)
		})
	}
	wg.Wait()
	m := merged{}
	m.add(h.snapshot())
	return floodResult{ok: ok.Load(), errors: fails.Load(), hist: m}
}

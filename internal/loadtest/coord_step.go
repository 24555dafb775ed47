package loadtest

import (
	"context"
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
	return r, nil
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

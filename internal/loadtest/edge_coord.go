package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"
)

// What the storm and dm coordinators share: CPU spans with a figure per
// server, the workers' edgeStats added up, and medians over repeats.

// cpuUsed is the CPU p has used so far; once it has exited (a drained
// server), all it used.
func (p *proc) cpuUsed() time.Duration {
	if st, err := readProc(p.pid()); err == nil {
		return st.CPU
	}
	select {
	case <-p.done:
	case <-time.After(time.Second): // reaped, and Wait is about to return
	}
	if st := p.cmd.ProcessState; st != nil {
		return st.UserTime() + st.SystemTime()
	}
	return 0
}

// exited reports whether p has exited (and been waited for).
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// cpuSample is the CPU every process of the run and the whole machine have
// used so far: a span's share of each is the difference of two.
type cpuSample struct {
	at                      time.Time
	servers                 []time.Duration
	redis, workers, machine time.Duration
}

func (c *coordinator) sampleCPU() cpuSample {
	s := cpuSample{at: time.Now(), machine: machineCPU()}
	for _, srv := range c.servers {
		s.servers = append(s.servers, srv.p.cpuUsed())
	}
	if c.redis != nil {
		s.redis = c.redis.cpuUsed()
	}
	for _, w := range c.workers {
		s.workers += w.p.cpuUsed()
	}
	return s
}

// CPUSpan is the CPU each part of the run used over a span of wall time.
type CPUSpan struct {
	Seconds      float64   `json:"seconds"`
	Servers      []float64 `json:"serverCpuSeconds"` // per chat server
	ServersTotal float64   `json:"serverCpuSecondsTotal"`
	Redis        float64   `json:"redisCpuSeconds"`
	Workers      float64   `json:"workerCpuSeconds"`
	// Others is the rest of the machine: the coordinator, and anyone else
	// on this shared machine.
	Others float64 `json:"otherCpuSeconds"`
}

func (a cpuSample) to(b cpuSample) CPUSpan {
	s := CPUSpan{Seconds: b.at.Sub(a.at).Seconds(), Redis: (b.redis - a.redis).Seconds(), Workers: (b.workers - a.workers).Seconds()}
	for i := range b.servers {
		d := (b.servers[i] - a.servers[i]).Seconds()
		s.Servers = append(s.Servers, d)
		s.ServersTotal += d
	}
	s.Others = max(0, (b.machine-a.machine).Seconds()-s.ServersTotal-s.Redis-s.Workers)
	return s
}

func (s CPUSpan) String() string {
	return fmt.Sprintf("servers %.2f s %.2f, Redis %.2f s, workers %.2f s, others %.2f s", s.ServersTotal, s.Servers, s.Redis, s.Workers, s.Others)
}

// serverRSSMiB is each chat server's RSS now (0 for one that has exited).
func (c *coordinator) serverRSSMiB() []float64 {
	out := make([]float64, len(c.servers))
	for i, s := range c.servers {
		if st, err := readProc(s.p.pid()); err == nil {
			out[i] = float64(st.RSSBytes) / (1 << 20)
		}
	}
	return out
}

// runEdge starts the Redis and chat servers cfg asks for, as Run does, runs
// body with them, and stops everything, whatever happened.
func runEdge(ctx context.Context, cfg Config, log *slog.Logger, body func(context.Context, *coordinator) error) error {
	if err := cfg.prepare(); err != nil {
		return err
	}
	log.Info("logs", "dir", cfg.WorkDir)
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c := newCoordinator(cfg, log)
	defer c.stopAll()
	if err := c.startServers(ctx); err != nil {
		return err
	}
	return body(ctx, c)
}

// planEdge gives every worker a copy of edge, naming every server, and
// deals out the run's sockets: place says socket i's worker, user and
// server.
func (c *coordinator) planEdge(jobs []job, edge edgeJob, place func(i int) (worker, user, server int)) {
	for _, srv := range c.servers {
		edge.Servers = append(edge.Servers, "ws://"+srv.addr+c.wsPath())
	}
	for w := range jobs {
		e := edge
		jobs[w].Conns, jobs[w].Edge = nil, &e
	}
	for i := range c.cfg.Conns {
		w, user, srv := place(i)
		j := &jobs[w]
		j.Conns = append(j.Conns, connSpec{URL: edge.Servers[srv], Token: c.tokens[user]})
		j.Edge.Slots = append(j.Edge.Slots, slotSpec{User: user, Server: srv})
	}
}

// redisCommands is Redis's command counters now (nil when they cannot be
// read: the figures built on them are left out).
func (c *coordinator) redisCommands() map[string]commandStat {
	info, err := redisInfo(c.redisAt, "commandstats")
	if err != nil {
		c.log.Warn("reading redis commandstats", "err", err)
		return nil
	}
	return parseCommandStats(info)
}

// redisTop prints the busiest commands of a span (calls and Redis's own µs
// per unit).
func redisTop(cmds []RedisCommand, unit string) string {
	var parts []string
	for _, x := range cmds[:min(6, len(cmds))] {
		parts = append(parts, fmt.Sprintf("%s %.3g calls, %.0f µs", x.Command, x.CallsPerConnect, x.UsecPerConnect))
	}
	return fmt.Sprintf("Redis per %s (INFO commandstats, busiest first): %s", unit, strings.Join(parts, "; "))
}

// edgeTotals is the workers' edgeStats added up.
type edgeTotals struct {
	edgeStats
	hello, resumed, login, latency merged
	dm                             dmStats
}

func (c *coordinator) edgeCommand(ctx context.Context, cmd command, kind string, timeout time.Duration) (edgeTotals, error) {
	evs, err := c.command(ctx, cmd, kind, timeout)
	if err != nil {
		return edgeTotals{}, err
	}
	t := edgeTotals{hello: merged{}, resumed: merged{}, login: merged{}, latency: merged{}}
	for _, ev := range evs {
		s := ev.Edge
		if s == nil {
			return t, fmt.Errorf("worker %d answered %s without figures", ev.Worker, kind)
		}
		if t.StartNS == 0 || s.StartNS < t.StartNS {
			t.StartNS = s.StartNS
		}
		t.LastDoneNS, t.LastLoginNS = max(t.LastDoneNS, s.LastDoneNS), max(t.LastLoginNS, s.LastLoginNS)
		addCounts(&t.edgeStats, s)
		t.DialErrors = append(t.DialErrors, s.DialErrors...)
		t.hello.add(s.Hello)
		t.resumed.add(s.Resumed)
		t.login.add(s.Login)
		if d := s.DM; d != nil {
			addCounts(&t.dm, d)
			t.dm.LastRecvNS = max(t.dm.LastRecvNS, d.LastRecvNS)
			t.latency.add(d.Hist)
		}
	}
	for _, e := range t.DialErrors[:min(3, len(t.DialErrors))] {
		c.log.Warn("dial failed", "err", e)
	}
	return t, nil
}

// connectEdge starts the workers with plan, which connect every socket,
// and reports that first connect.
func (c *coordinator) connectEdge(ctx context.Context, plan func([]job)) (FirstConnect, error) {
	c.plan = plan
	before := c.sampleCPU()
	if err := c.startWorkers(ctx); err != nil {
		return FirstConnect{}, err
	}
	t, err := c.edgeCommand(ctx, command{Cmd: "report"}, "report", 30*time.Second)
	if err != nil {
		return FirstConnect{}, err
	}
	start := time.Unix(0, t.StartNS)
	n := uint64(c.cfg.Conns)
	r := FirstConnect{
		Sockets: c.cfg.Conns, Connected: t.Connected, Failed: n - min(n, t.Connected),
		Complete: t.Completed, Seconds: sinceSeconds(start, t.LastDoneNS), Hello: t.hello.quantiles(), Resumed: t.resumed.quantiles(),
		Logins: t.Logins, LoginRetries: t.LoginRetries, Login: t.login.quantiles(), LoginSeconds: sinceSeconds(start, t.LastLoginNS),
		ErrorFrames: t.Errors, PresenceObjects: t.Presence, CPU: before.to(c.sampleCPU()),
	}
	r.SocketsPerSec = perSecond(t.Completed, r.Seconds)
	r.LoginsPerSec = perSecond(t.Logins, r.LoginSeconds)
	c.log.Info("connected", "sockets", r.Connected, "failed", r.Failed, "seconds", fmt.Sprintf("%.1f", r.Seconds),
		"socketsPerSec", int(r.SocketsPerSec), "logins", r.Logins, "loginsPerSec", fmt.Sprintf("%.1f", r.LoginsPerSec))
	if r.Connected == 0 {
		return r, errors.New("no socket connected")
	}
	return r, nil
}

// addCounts adds each counter (uint64 field) of src to dst's.
func addCounts[T any](dst, src *T) {
	d, v := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem()
	for i := range d.NumField() {
		if f := d.Field(i); f.Kind() == reflect.Uint64 {
			f.SetUint(f.Uint() + v.Field(i).Uint())
		}
	}
}

// Quantiles summarise a histogram of latencies (≈3 % buckets).
type Quantiles struct {
	N     uint64  `json:"n"`
	P50ms float64 `json:"p50ms"`
	P99ms float64 `json:"p99ms"`
	MaxMs float64 `json:"maxMs"`
}

func (m merged) quantiles() Quantiles {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Quantiles{N: m.total(), P50ms: ms(m.quantile(.5)), P99ms: ms(m.quantile(.99)), MaxMs: ms(m.max())}
}

// sinceSeconds is the time from start to the unix-nanosecond instant ns
// (the workers' clock is the coordinator's: one machine).
func sinceSeconds(start time.Time, ns int64) float64 {
	if ns == 0 {
		return 0
	}
	return max(0, time.Unix(0, ns).Sub(start).Seconds())
}

// perSecond is n over seconds, 0 when there is no span.
func perSecond(n uint64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return float64(n) / seconds
}

// medianOf is, field by field, the median of rows (structs of numbers,
// slices of numbers and structs of those; anything else, a slice of
// structs included, is the first row's): repeats are summarised without a list of every figure to keep in
// step with the result types.
func medianOf[T any](rows []T) T {
	var out T
	if len(rows) == 0 {
		return out
	}
	vals := make([]reflect.Value, len(rows))
	for i := range rows {
		vals[i] = reflect.ValueOf(&rows[i]).Elem()
	}
	medianInto(reflect.ValueOf(&out).Elem(), vals)
	return out
}

func medianInto(dst reflect.Value, src []reflect.Value) {
	switch dst.Kind() {
	case reflect.Struct:
		for i := range dst.NumField() {
			if !dst.Type().Field(i).IsExported() {
				continue
			}
			fields := make([]reflect.Value, len(src))
			for j, v := range src {
				fields[j] = v.Field(i)
			}
			medianInto(dst.Field(i), fields)
		}
	case reflect.Slice:
		n := src[0].Len()
		for _, v := range src {
			if v.Len() != n || !numeric(v.Type().Elem().Kind()) {
				dst.Set(src[0])
				return
			}
		}
		dst.Set(reflect.MakeSlice(dst.Type(), n, n))
		for k := range n {
			elems := make([]reflect.Value, len(src))
			for j, v := range src {
				elems[j] = v.Index(k)
			}
			medianInto(dst.Index(k), elems)
		}
	case reflect.Float64, reflect.Float32:
		dst.SetFloat(median(src, reflect.Value.Float))
	case reflect.Int, reflect.Int64, reflect.Int32:
		dst.SetInt(int64(median(src, func(v reflect.Value) float64 { return float64(v.Int()) })))
	case reflect.Uint64, reflect.Uint, reflect.Uint32:
		dst.SetUint(uint64(median(src, func(v reflect.Value) float64 { return float64(v.Uint()) })))
	default:
		dst.Set(src[0])
	}
}

func numeric(k reflect.Kind) bool {
	switch k {
	case reflect.Float64, reflect.Float32, reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Uint, reflect.Uint32:
		return true
	}
	return false
}

func median(vs []reflect.Value, f func(reflect.Value) float64) float64 {
	x := make([]float64, len(vs))
	for i, v := range vs {
		x[i] = f(v)
	}
	return medianFloats(x)
}

// medianFloats is the median of x (sorted in place), 0 for none.
func medianFloats(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	slices.Sort(x)
	if len(x)%2 == 1 {
		return x[len(x)/2]
	}
	return (x[len(x)/2-1] + x[len(x)/2]) / 2
}

package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// coordinator runs one benchmark: Redis, servers, users, workers, steps.
type coordinator struct {
	cfg     Config
	log     *slog.Logger
	redis   *proc
	redisAt string
	// replicas of the Redis at redisAt (--redis-replicas).
	replicas []*proc
	servers  []*server
	workers  []*workerProc
	tokens   []string
	plan     func([]job) // rewrites the workers' jobs before they start (storm, dm)
	flood    struct{ user, pass string }
	http     *http.Client
}

// newCoordinator is a coordinator that has started nothing yet; stopAll
// stops whatever it starts.
func newCoordinator(cfg Config, log *slog.Logger) *coordinator {
	return &coordinator{cfg: cfg, log: log, http: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 256},
	}}
}

// runCoordinator starts everything cfg asks for, measures the idle sockets,
// runs the steps, and stops it all again, whatever happened.
func runCoordinator(ctx context.Context, cfg Config, log *slog.Logger) (*Results, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c := newCoordinator(cfg, log)
	defer c.stopAll()
	if err := c.startServers(ctx); err != nil {
		return nil, err
	}
	if cfg.Target == "hubbub" {
		if err := c.createUsers(ctx); err != nil {
			return nil, err
		}
	}
	before := c.sampleServers(ctx)
	kernelBefore := readKernelMem()
	t0 := time.Now()
	if err := c.startWorkers(ctx); err != nil {
		return nil, err
	}
	res := &Results{Machine: machine()}
	res.Config = ResultConfig{
		Target: cfg.Target, Backend: cfg.Backend, RedisReplicas: cfg.RedisReplicas, Servers: cfg.Servers, Conns: cfg.Conns, Users: cfg.Users,
		Workers: cfg.Workers, Steps: cfg.Steps, StepDuration: cfg.StepDuration.String(), Repeat: cfg.Repeat, ServerArgs: cfg.ServerArgs, ServerEnv: cfg.ServerEnv,
	}
	stopped := 0
	for _, w := range c.workers {
		res.Idle.Connected += w.ready.Connected
		res.Idle.Failed += w.ready.Failed
		for _, e := range w.ready.DialErrors {
			log.Warn("dial failed", "worker", w.ready.Worker, "err", e)
		}
		if w.ready.Stopped != "" {
			log.Warn("stopped dialing", "worker", w.ready.Worker, "why", w.ready.Stopped)
			if stopped++; res.Idle.Stopped == "" {
				res.Idle.Stopped = w.ready.Stopped
			}
		}
	}
	if stopped > 0 {
		res.Idle.Stopped = fmt.Sprintf("%s (%d of %d workers)", res.Idle.Stopped, stopped, len(c.workers))
	}
	res.Idle.ConnectSeconds = time.Since(t0).Seconds()
	log.Info("connected", "sockets", res.Idle.Connected, "failed", res.Idle.Failed, "seconds", res.Idle.ConnectSeconds)
	if res.Idle.Connected == 0 {
		return res, errors.New("no socket connected")
	}
	settle := c.cpuMark()
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.Idle.CPU = c.idleCPU(settle)
	after := c.sampleServers(ctx)
	res.Idle.Open = c.openSockets(ctx, res.Idle.Connected)
	res.Idle.Kernel = kernelIdle(kernelBefore, readKernelMem(), res.Idle.Open)
	c.sampleWorkersIdle(&res.Idle)
	n := float64(res.Idle.Open)
	var rss, heap, stack, gor float64
	for i := range c.servers {
		rss += float64(after[i].rss - before[i].rss)
		heap += after[i].heap - before[i].heap
		stack += after[i].stack - before[i].stack
		gor += after[i].goroutines - before[i].goroutines
		res.Idle.ServerRSSMiB += float64(after[i].rss) / (1 << 20)
	}
	res.Idle.RSSPerConn, res.Idle.HeapPerConn, res.Idle.StackPerConn, res.Idle.GoroutinesPerConn = rss/n, heap/n, stack/n, gor/n
	log.Info("idle", "rssPerConn", int(rss/n), "heapPerConn", int(heap/n), "stackPerConn", int(stack/n), "goroutinesPerConn", gor/n,
		"workerRSSPerConn", int(res.Idle.WorkerRSSPerConn), "slabPerConn", int(res.Idle.Kernel.SlabPerConn),
		"sunreclaimPerConn", int(res.Idle.Kernel.SUnreclaimPerConn), "tcpMemPerConn", int(res.Idle.Kernel.TCPMemPerConn), "open", res.Idle.Open)
	if cpu := res.Idle.CPU; cpu != nil {
		log.Info("idle CPU", "serverCores", cpu.ServerCores, "redisCores", cpu.RedisCores, "workerCores", cpu.WorkerCores, "otherCores", cpu.OtherCores)
	}

	step := 0
	for run := 1; run <= cfg.Repeat; run++ {
		for _, spec := range cfg.Steps {
			if step >= maxSteps {
				return res, fmt.Errorf("more than %d steps", maxSteps)
			}
			r, err := c.runStep(ctx, step, spec)
			if err != nil {
				return res, err
			}
			r.Run = run
			res.Steps = append(res.Steps, r)
			log.Info("step", "run", run, "rate", spec.Rate, "flood", spec.Flood, "delivered", fmt.Sprintf("%d/%d", r.Delivered, r.Expected),
				"perSec", int(r.DeliveredPerSec), "p50ms", r.P50ms, "p99ms", r.P99ms, "maxMs", r.MaxMs, "cpuUs", fmt.Sprintf("%.2f", r.CPUPerMsgUs),
				"objPerFrame", fmt.Sprintf("%.1f", r.ObjectsPerFrame), "dropped", r.Dropped, "sendErrors", r.SendErrors,
				"serverCPU", fmt.Sprintf("%.1f", r.ServerCPUs), "loadCPU", fmt.Sprintf("%.1f", r.WorkerCPUs), "otherCPU", fmt.Sprintf("%.1f", r.OtherCPUs), "seconds", fmt.Sprintf("%.1f", r.Seconds))
			step++
		}
	}
	res.Medians = medians(res.Steps)
	c.quitWorkers()
	return res, nil
}

// machine names the hardware, since the figures mean little without it.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var mem string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(line)[1:], " ")
	}
	cores := strings.Count(func() string { b, _ := os.ReadFile("/proc/cpuinfo"); return string(b) }(), "processor\t:")
	return fmt.Sprintf("%d cores, %s, memory %s", cores, model, mem)
}

func (c *coordinator) stopAll() {
	for _, w := range c.workers {
		_ = w.in.Close()
		w.p.stop(10 * time.Second)
	}
	for _, s := range c.servers {
		s.p.stop(30 * time.Second)
	}
	for _, p := range c.replicas {
		p.stop(5 * time.Second)
	}
	if c.redis != nil {
		c.redis.stop(5 * time.Second)
	}
}

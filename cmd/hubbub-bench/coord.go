package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// config is the "run" subcommand's flags.
type config struct {
	Target         string // "hubbub" or "baseline"
	ChatServer     string // path of the chatserver binary
	RedisServer    string // path of redis-server
	Backend        string // "redis" or "memory" (memory: one server only)
	Servers        int
	Conns          int
	Users          int
	Workers        int
	Channel        string
	Steps          []stepSpec
	StepDuration   time.Duration
	DrainMax       time.Duration
	Settle         time.Duration // idle wait before measuring memory
	Repeat         int
	DialRate       float64 // new sockets per second, all workers together; 0 = unpaced
	DialConc       int     // concurrent dials per worker
	BcryptCost     int
	FloodCost      int
	FloodConc      int
	ServerArgs     []string
	ServerEnv      []string
	WorkDir        string
	Timeout        time.Duration
	JSONOut        string
	FirstWorkerIP  int // workers bind 127.0.0.<FirstWorkerIP+w>
	ConnectTimeout time.Duration
}

type stepSpec struct {
	Rate  float64 `json:"rate"`  // messages sent per second, all senders together
	Flood float64 `json:"flood"` // logins per second during the step
}

func parseSteps(s string) ([]stepSpec, error) {
	var out []stepSpec
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		rate, flood, hasFlood := strings.Cut(p, "@")
		var st stepSpec
		var err error
		if st.Rate, err = strconv.ParseFloat(rate, 64); err != nil || st.Rate < 0 {
			return nil, fmt.Errorf("step %q: bad rate", p)
		}
		if hasFlood {
			if st.Flood, err = strconv.ParseFloat(flood, 64); err != nil || st.Flood < 0 {
				return nil, fmt.Errorf("step %q: bad login rate", p)
			}
		}
		out = append(out, st)
	}
	if len(out) == 0 {
		return nil, errors.New("no steps")
	}
	return out, nil
}

// results is what a run reports (also written as JSON).
type results struct {
	Config  resultConfig `json:"config"`
	Machine string       `json:"machine"`
	Idle    idleResult   `json:"idle"`
	Steps   []stepResult `json:"steps"`
	Medians []stepResult `json:"medians"`
}

type resultConfig struct {
	Target       string     `json:"target"`
	Backend      string     `json:"backend"`
	Servers      int        `json:"servers"`
	Conns        int        `json:"conns"`
	Users        int        `json:"users"`
	Workers      int        `json:"workers"`
	Steps        []stepSpec `json:"steps"`
	StepDuration string     `json:"stepDuration"`
	Repeat       int        `json:"repeat"`
	ServerArgs   []string   `json:"serverArgs"`
	ServerEnv    []string   `json:"serverEnv"`
}

type idleResult struct {
	Connected      int     `json:"connected"`
	Failed         int     `json:"failed"`
	ConnectSeconds float64 `json:"connectSeconds"`
	// Per connection, over all servers: the growth of RSS, and of the Go
	// heap and stacks in use, from before the sockets to after they settled.
	RSSPerConn       float64 `json:"rssPerConnBytes"`
	HeapPerConn      float64 `json:"heapPerConnBytes"`
	StackPerConn     float64 `json:"stackPerConnBytes"`
	GoroutinesPerCon float64 `json:"goroutinesPerConn"`
	ServerRSSMiB     float64 `json:"serverRssMiB"` // all servers together, idle
}

type stepResult struct {
	Run             int     `json:"run"`
	Rate            float64 `json:"rate"`
	Flood           float64 `json:"flood"`
	Conns           int     `json:"conns"`
	Sent            uint64  `json:"sent"`
	SendErrors      uint64  `json:"sendErrors"` // failed writes, error frames, missing acks
	Expected        uint64  `json:"expected"`
	Delivered       uint64  `json:"delivered"`
	Duplicates      uint64  `json:"duplicates"`
	Dropped         uint64  `json:"dropped"`
	DeliveredRatio  float64 `json:"deliveredRatio"`
	DeliveredPerSec float64 `json:"deliveredPerSec"`
	P50ms           float64 `json:"p50ms"`
	P90ms           float64 `json:"p90ms"`
	P99ms           float64 `json:"p99ms"`
	MaxMs           float64 `json:"maxMs"`
	ServerCPUs      float64 `json:"serverCpuSeconds"`
	CPUPerMsgUs     float64 `json:"serverCpuPerDeliveredUs"`
	RedisCPUs       float64 `json:"redisCpuSeconds"`
	WorkerCPUs      float64 `json:"workerCpuSeconds"`
	// OtherCPUs is the CPU everything else on the machine used meanwhile
	// (the machine is shared: a busy neighbour shows here).
	OtherCPUs       float64 `json:"otherCpuSeconds"`
	Seconds         float64 `json:"seconds"` // the step's wall time, drain included
	ObjectsPerFrame float64 `json:"objectsPerFrame"`
	Logins          uint64  `json:"logins"`
	LoginErrors     uint64  `json:"loginErrors"`
	LoginP50ms      float64 `json:"loginP50ms"`
	LoginP99ms      float64 `json:"loginP99ms"`
}

// coordinator runs one benchmark: Redis, servers, users, workers, steps.
type coordinator struct {
	cfg     config
	log     *slog.Logger
	redis   *proc
	redisAt string
	servers []*server
	workers []*workerProc
	tokens  []string
	flood   struct{ user, pass string }
	http    *http.Client
}

type server struct {
	p    *proc
	addr string // host:port
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

type workerProc struct {
	p      *proc
	in     io.WriteCloser
	events chan event
	ready  event
}

func runCoordinator(ctx context.Context, cfg config, log *slog.Logger) (*results, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c := &coordinator{cfg: cfg, log: log, http: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 256},
	}}
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
	t0 := time.Now()
	if err := c.startWorkers(ctx); err != nil {
		return nil, err
	}
	res := &results{Machine: machine()}
	res.Config = resultConfig{
		Target: cfg.Target, Backend: cfg.Backend, Servers: cfg.Servers, Conns: cfg.Conns, Users: cfg.Users,
		Workers: cfg.Workers, Steps: cfg.Steps, StepDuration: cfg.StepDuration.String(), Repeat: cfg.Repeat, ServerArgs: cfg.ServerArgs, ServerEnv: cfg.ServerEnv,
	}
	for _, w := range c.workers {
		res.Idle.Connected += w.ready.Connected
		res.Idle.Failed += w.ready.Failed
		for _, e := range w.ready.DialErrors {
			log.Warn("dial failed", "worker", w.ready.Worker, "err", e)
		}
	}
	res.Idle.ConnectSeconds = time.Since(t0).Seconds()
	log.Info("connected", "sockets", res.Idle.Connected, "failed", res.Idle.Failed, "seconds", res.Idle.ConnectSeconds)
	if res.Idle.Connected == 0 {
		return res, errors.New("no socket connected")
	}
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	after := c.sampleServers(ctx)
	n := float64(res.Idle.Connected)
	var rss, heap, stack, gor float64
	for i := range c.servers {
		rss += float64(after[i].rss - before[i].rss)
		heap += after[i].heap - before[i].heap
		stack += after[i].stack - before[i].stack
		gor += after[i].goroutines - before[i].goroutines
		res.Idle.ServerRSSMiB += float64(after[i].rss) / (1 << 20)
	}
	res.Idle.RSSPerConn, res.Idle.HeapPerConn, res.Idle.StackPerConn, res.Idle.GoroutinesPerCon = rss/n, heap/n, stack/n, gor/n
	log.Info("idle", "rssPerConn", int(rss/n), "heapPerConn", int(heap/n), "stackPerConn", int(stack/n), "goroutinesPerConn", gor/n)

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
	if c.redis != nil {
		c.redis.stop(5 * time.Second)
	}
}

func (c *coordinator) startServers(ctx context.Context) error {
	cfg := c.cfg
	if cfg.Target == "hubbub" && cfg.Backend == "redis" {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		c.redisAt = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(cfg.RedisServer, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", cfg.WorkDir)
		if c.redis, err = startProc("redis", cmd, filepath.Join(cfg.WorkDir, "redis.log")); err != nil {
			return err
		}
		if err := waitRedis(ctx, c.redisAt, c.redis, 20*time.Second); err != nil {
			return err
		}
		if err := c.createFloodUser(ctx); err != nil {
			return err
		}
	}
	perUser := (cfg.Conns+cfg.Users-1)/cfg.Users + 1
	for i := range cfg.Servers {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var cmd *exec.Cmd
		name := fmt.Sprintf("server-%d", i)
		if cfg.Target == "baseline" {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cmd = exec.Command(self, "baseline", "--addr", addr)
		} else {
			args := []string{"--addr", addr, "--room", "bench/load", "--channels", cfg.Channel,
				"--bcrypt-cost", strconv.Itoa(cfg.BcryptCost),
				"--messages-per-second", "1000000", "--message-burst", "1000000",
				"--max-connections-per-user", strconv.Itoa(perUser),
				"--login-attempts-per-minute", "1000000", "--login-attempts-per-ip-per-minute", "1000000", "--log-level", "warn"}
			if cfg.Backend == "redis" {
				args = append(args, "--redis-url", "redis://"+c.redisAt)
			}
			args = append(args, cfg.ServerArgs...)
			cmd = exec.Command(cfg.ChatServer, args...)
		}
		cmd.Env = cleanEnv()
		cmd.Env = append(cmd.Env, cfg.ServerEnv...)
		p, err := startProc(name, cmd, filepath.Join(cfg.WorkDir, name+".log"))
		if err != nil {
			return err
		}
		c.servers = append(c.servers, &server{p: p, addr: addr})
	}
	for _, s := range c.servers {
		if err := waitHTTP(ctx, s.url("/healthz"), s.p, 60*time.Second); err != nil {
			return err
		}
	}
	c.log.Info("servers up", "target", cfg.Target, "servers", len(c.servers), "redis", c.redisAt)
	return nil
}

// createFloodUser makes the account the login flood uses, hashed at the
// production bcrypt cost: a short-lived chat server with that cost creates
// it from a bootstrap file (the benchmark's servers hash at a low cost so
// that creating thousands of users is quick, but a flood must cost what
// real logins cost).
func (c *coordinator) createFloodUser(ctx context.Context) error {
	needed := false
	for _, s := range c.cfg.Steps {
		needed = needed || s.Flood > 0
	}
	if !needed {
		return nil
	}
	c.flood.user, c.flood.pass = "flood-user", "flood-password-123"
	file := filepath.Join(c.cfg.WorkDir, "flood-users")
	if err := os.WriteFile(file, []byte(c.flood.user+":"+c.flood.pass+"\n"), 0o600); err != nil {
		return err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(c.cfg.ChatServer, "--addr", addr, "--room", "bench/load", "--channels", c.cfg.Channel,
		"--redis-url", "redis://"+c.redisAt, "--bcrypt-cost", strconv.Itoa(c.cfg.FloodCost),
		"--bootstrap-users-file", file, "--log-level", "warn")
	cmd.Env = cleanEnv()
	p, err := startProc("flood-setup", cmd, filepath.Join(c.cfg.WorkDir, "flood-setup.log"))
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	// The server listens only after creating its bootstrap users.
	return waitHTTP(ctx, "http://"+addr+"/healthz", p, 60*time.Second)
}

func (c *coordinator) postJSON(ctx context.Context, url string, body any, out any) (int, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, nil
}

// createUsers registers and logs in the benchmark's users through the API,
// spread over the servers, and keeps their tokens.
func (c *coordinator) createUsers(ctx context.Context) error {
	t0 := time.Now()
	c.tokens = make([]string, c.cfg.Users)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= c.cfg.Users || ctx.Err() != nil {
					return
				}
				srv := c.servers[i%len(c.servers)]
				cred := map[string]string{"username": fmt.Sprintf("bench%d", i), "password": "bench-password"}
				code, err := c.postJSON(ctx, srv.url("/api/v1/register"), cred, nil)
				if err == nil && code != http.StatusCreated && code != http.StatusConflict {
					err = fmt.Errorf("register: HTTP %d", code)
				}
				var tok struct{ Token string }
				if err == nil {
					code, err = c.postJSON(ctx, srv.url("/api/v1/login"), cred, &tok)
					if err == nil && code != http.StatusOK {
						err = fmt.Errorf("login: HTTP %d", code)
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("user %d: %w", i, err) })
					return
				}
				c.tokens[i] = tok.Token
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	c.log.Info("users created", "users", c.cfg.Users, "seconds", time.Since(t0).Seconds())
	return nil
}

type serverSample struct {
	rss                     int64
	cpu                     time.Duration
	heap, stack, goroutines float64
	frames, messages        float64
}

func (c *coordinator) sampleServers(ctx context.Context) []serverSample {
	out := make([]serverSample, len(c.servers))
	for i, s := range c.servers {
		if st, err := readProc(s.p.pid()); err == nil {
			out[i].rss, out[i].cpu = st.RSSBytes, st.CPU
		}
		if c.cfg.Target != "hubbub" {
			continue
		}
		m, err := scrape(ctx, s.url("/metrics"), "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
			"go_goroutines", "hubbub_frames_out_total", `hubbub_objects_out_total{type="message"}`)
		if err != nil {
			c.log.Warn("scraping metrics", "server", s.addr, "err", err)
			continue
		}
		out[i].heap, out[i].stack, out[i].goroutines = m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"], m["go_goroutines"]
		out[i].frames, out[i].messages = m["hubbub_frames_out_total"], m[`hubbub_objects_out_total{type="message"}`]
	}
	return out
}

func (c *coordinator) startWorkers(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := c.cfg
	jobs := make([]job, cfg.Workers)
	for w := range jobs {
		jobs[w] = job{
			Worker: w, Workers: cfg.Workers, Mode: cfg.Target, Channel: cfg.Channel,
			LocalIP:         fmt.Sprintf("127.0.0.%d", cfg.FirstWorkerIP+w),
			DialConcurrency: cfg.DialConc, ConnectTimeout: cfg.ConnectTimeout,
		}
		if cfg.DialRate > 0 {
			jobs[w].DialRate = cfg.DialRate / float64(cfg.Workers)
		}
	}
	for i := range cfg.Conns {
		s := c.servers[i%len(c.servers)]
		spec := connSpec{URL: "ws://" + s.addr + "/ws"}
		if cfg.Target == "hubbub" {
			spec.Token = c.tokens[i%cfg.Users]
		}
		jobs[i%cfg.Workers].Conns = append(jobs[i%cfg.Workers].Conns, spec)
	}
	for w := range jobs {
		cmd := exec.Command(self, "worker")
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = os.Stderr
		p, err := startProc(fmt.Sprintf("worker-%d", w), cmd, "")
		if err != nil {
			return err
		}
		wp := &workerProc{p: p, in: in, events: make(chan event, 4)}
		c.workers = append(c.workers, wp)
		go func() {
			defer close(wp.events)
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				var ev event
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					ev = event{Event: "error", Err: "malformed event: " + err.Error()}
				}
				wp.events <- ev
			}
		}()
		b, _ := json.Marshal(jobs[w])
		if _, err := in.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("sending job to worker %d: %w", w, err)
		}
	}
	for w, wp := range c.workers {
		ev, err := c.await(ctx, wp, "ready", cfg.ConnectTimeout+30*time.Second)
		if err != nil {
			return fmt.Errorf("worker %d: %w", w, err)
		}
		wp.ready = ev
	}
	return nil
}

func (c *coordinator) await(ctx context.Context, wp *workerProc, kind string, timeout time.Duration) (event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ev, ok := <-wp.events:
		if !ok {
			return event{}, fmt.Errorf("worker exited (%v)", wp.p.err)
		}
		if ev.Event != kind {
			return ev, fmt.Errorf("want %s event, got %s %s", kind, ev.Event, ev.Err)
		}
		return ev, nil
	case <-t.C:
		return event{}, fmt.Errorf("no %s event within %s", kind, timeout)
	case <-ctx.Done():
		return event{}, ctx.Err()
	}
}

func (c *coordinator) command(ctx context.Context, cmd command, kind string, timeout time.Duration) ([]event, error) {
	b, _ := json.Marshal(cmd)
	b = append(b, '\n')
	for w, wp := range c.workers {
		if _, err := wp.in.Write(b); err != nil {
			return nil, fmt.Errorf("worker %d: %w", w, err)
		}
	}
	out := make([]event, len(c.workers))
	for w, wp := range c.workers {
		ev, err := c.await(ctx, wp, kind, timeout)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", w, err)
		}
		out[w] = ev
	}
	return out, nil
}

func (c *coordinator) quitWorkers() {
	for _, wp := range c.workers {
		_, _ = wp.in.Write([]byte(`{"cmd":"quit"}` + "\n"))
	}
}

type stepTotals struct {
	delivered, dups, acked, errFrames, dropped uint64
	open                                       int
	lastRecv                                   int64
	hist                                       merged
}

func (c *coordinator) stats(ctx context.Context, step int) (stepTotals, error) {
	evs, err := c.command(ctx, command{Cmd: "stats", Step: step}, "stats", 30*time.Second)
	if err != nil {
		return stepTotals{}, err
	}
	t := stepTotals{hist: merged{}}
	for _, ev := range evs {
		s := ev.Stats
		t.delivered += s.Delivered
		t.dups += s.Duplicates
		t.acked += s.Acked
		t.errFrames += s.ErrFrames
		t.dropped += s.Dropped
		t.open += s.Open
		t.lastRecv = max(t.lastRecv, s.LastRecvNS)
		t.hist.add(s.Hist)
	}
	return t, nil
}

func (c *coordinator) cpu() (servers, redis, workers time.Duration) {
	for _, s := range c.servers {
		if st, err := readProc(s.p.pid()); err == nil {
			servers += st.CPU
		}
	}
	if c.redis != nil {
		if st, err := readProc(c.redis.pid()); err == nil {
			redis = st.CPU
		}
	}
	for _, w := range c.workers {
		if st, err := readProc(w.p.pid()); err == nil {
			workers += st.CPU
		}
	}
	return
}

func (c *coordinator) runStep(ctx context.Context, step int, spec stepSpec) (stepResult, error) {
	r := stepResult{Rate: spec.Rate, Flood: spec.Flood}
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
		acked := r.Sent
		if c.cfg.Target == "hubbub" {
			acked = t.acked
		}
		expected := acked * uint64(r.Conns)
		if t.delivered >= expected && (c.cfg.Target != "hubbub" || t.acked+t.errFrames >= r.Sent) {
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
	if c.cfg.Target == "hubbub" {
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
			code, err := c.postJSON(ctx, srv.url("/api/v1/login"), cred, nil)
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

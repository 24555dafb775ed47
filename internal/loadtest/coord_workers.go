package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// workerProc is the coordinator's end of one worker process: its command
// pipe, the events it answers with, and what it reported when it connected.
type workerProc struct {
	p      *proc
	in     io.WriteCloser
	events chan event
	ready  event
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
			Worker: w, Workers: cfg.Workers, Mode: cfg.Target, Kind: cfg.Kind, Channel: cfg.Channel,
			LocalIP:         fmt.Sprintf("127.0.0.%d", cfg.FirstWorkerIP+w),
			DialConcurrency: cfg.DialConc, ConnectTimeout: cfg.ConnectTimeout, MemoryFloor: cfg.MemoryFloor,
		}
		if cfg.DialRate > 0 {
			jobs[w].DialRate = cfg.DialRate / float64(cfg.Workers)
		}
	}
	for i := range cfg.Conns {
		s := c.servers[i%len(c.servers)]
		spec := connSpec{URL: "ws://" + s.addr + c.wsPath()}
		if cfg.Target != "baseline" {
			spec.Token = c.tokens[i%cfg.Users]
		}
		jobs[i%cfg.Workers].Conns = append(jobs[i%cfg.Workers].Conns, spec)
	}
	if c.plan != nil {
		c.plan(jobs) // the storm and dm workloads place their sockets themselves
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

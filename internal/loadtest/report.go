package loadtest

import (
	"fmt"
	"io"
)

// medians returns, for each distinct step spec (in first-seen order), the
// median of every figure over the runs.
func medians(steps []StepResult) []StepResult {
	var order []StepSpec
	groups := map[StepSpec][]StepResult{}
	for _, s := range steps {
		k := StepSpec{Rate: s.Rate, Flood: s.Flood}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	out := make([]StepResult, 0, len(order))
	for _, k := range order {
		g := groups[k]
		med := func(f func(StepResult) float64) float64 {
			v := make([]float64, len(g))
			for i, s := range g {
				v[i] = f(s)
			}
			return medianFloats(v)
		}
		u := func(f func(StepResult) uint64) uint64 {
			return uint64(med(func(s StepResult) float64 { return float64(f(s)) }))
		}
		out = append(out, StepResult{
			Run: len(g), Rate: k.Rate, Flood: k.Flood,
			Conns:           int(med(func(s StepResult) float64 { return float64(s.Conns) })),
			Sent:            u(func(s StepResult) uint64 { return s.Sent }),
			SendErrors:      u(func(s StepResult) uint64 { return s.SendErrors }),
			Expected:        u(func(s StepResult) uint64 { return s.Expected }),
			Delivered:       u(func(s StepResult) uint64 { return s.Delivered }),
			Duplicates:      u(func(s StepResult) uint64 { return s.Duplicates }),
			Dropped:         u(func(s StepResult) uint64 { return s.Dropped }),
			DeliveredRatio:  med(func(s StepResult) float64 { return s.DeliveredRatio }),
			DeliveredPerSec: med(func(s StepResult) float64 { return s.DeliveredPerSec }),
			P50ms:           med(func(s StepResult) float64 { return s.P50ms }),
			P90ms:           med(func(s StepResult) float64 { return s.P90ms }),
			P99ms:           med(func(s StepResult) float64 { return s.P99ms }),
			MaxMs:           med(func(s StepResult) float64 { return s.MaxMs }),
			ServerCPUs:      med(func(s StepResult) float64 { return s.ServerCPUs }),
			CPUPerMsgUs:     med(func(s StepResult) float64 { return s.CPUPerMsgUs }),
			RedisCPUs:       med(func(s StepResult) float64 { return s.RedisCPUs }),
			WorkerCPUs:      med(func(s StepResult) float64 { return s.WorkerCPUs }),
			OtherCPUs:       med(func(s StepResult) float64 { return s.OtherCPUs }),
			Seconds:         med(func(s StepResult) float64 { return s.Seconds }),
			ObjectsPerFrame: med(func(s StepResult) float64 { return s.ObjectsPerFrame }),
			Logins:          u(func(s StepResult) uint64 { return s.Logins }),
			LoginErrors:     u(func(s StepResult) uint64 { return s.LoginErrors }),
			LoginP50ms:      med(func(s StepResult) float64 { return s.LoginP50ms }),
			LoginP99ms:      med(func(s StepResult) float64 { return s.LoginP99ms }),
			AckP50ms:        med(func(s StepResult) float64 { return s.AckP50ms }),
			AckP99ms:        med(func(s StepResult) float64 { return s.AckP99ms }),
		})
	}
	return out
}

// WriteMarkdown prints the run as the tables docs/benchmarks.md uses, so
// that a run's output goes into the document as it is.
func (r *Results) WriteMarkdown(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "target=%s backend=%s redisReplicas=%d servers=%d sockets=%d users=%d workers=%d step=%s repeat=%d\n",
		c.Target, c.Backend, c.RedisReplicas, c.Servers, c.Conns, c.Users, c.Workers, c.StepDuration, c.Repeat)
	fmt.Fprintf(w, "machine: %s\n\n", r.Machine)
	fmt.Fprintf(w, "| connected | failed | connect s | RSS/conn | heap/conn | stacks/conn | goroutines/conn | servers' RSS |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	i := r.Idle
	fmt.Fprintf(w, "| %d | %d | %.1f | %.1f KB | %.1f KB | %.1f KB | %.2f | %.0f MiB |\n\n",
		i.Connected, i.Failed, i.ConnectSeconds, i.RSSPerConn/1024, i.HeapPerConn/1024, i.StackPerConn/1024, i.GoroutinesPerConn, i.ServerRSSMiB)
	if i.Stopped != "" {
		fmt.Fprintf(w, "The workers stopped dialing: %s.\n\n", i.Stopped)
	}
	if k := i.Kernel; k != nil {
		fmt.Fprintf(w, "Per connection still open after the settle (%d; both ends), machine-wide: workers' RSS, kernel slab and TCP buffers, and the fall of MemAvailable:\n\n", i.Open)
		fmt.Fprintf(w, "| workers' RSS | workers' RSS/conn | Slab/conn | SUnreclaim/conn | TCP mem/conn | MemAvailable fall/conn | Slab before → after | SUnreclaim before → after | TCP mem pages before → after |\n")
		fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(w, "| %.0f MiB | %.1f KB | %.1f KB | %.1f KB | %.2f KB | %.1f KB | %.0f → %.0f MiB | %.0f → %.0f MiB | %d → %d |\n\n",
			i.WorkerRSSMiB, i.WorkerRSSPerConn/1024, k.SlabPerConn/1024, k.SUnreclaimPerConn/1024, k.TCPMemPerConn/1024, k.UsedPerConn/1024,
			float64(k.Before.Slab)/(1<<20), float64(k.After.Slab)/(1<<20), float64(k.Before.SUnreclaim)/(1<<20), float64(k.After.SUnreclaim)/(1<<20),
			k.Before.TCPMemPages, k.After.TCPMemPages)
	}
	if cpu := i.CPU; cpu != nil {
		fmt.Fprintf(w, "CPU while idle (%.0f s settle), in cores: servers %.2f, Redis %.2f, workers %.2f, others %.2f\n\n",
			cpu.Seconds, cpu.ServerCores, cpu.RedisCores, cpu.WorkerCores, cpu.OtherCores)
	}
	fmt.Fprintf(w, "Medians of %d runs per step:\n\n", c.Repeat)
	fmt.Fprintf(w, "| sent/s | logins/s | delivered/expected | delivered msgs/s | p50 ms | p90 ms | p99 ms | max ms | send errors | dropped | server CPU µs/msg | objects/frame | server CPU s | Redis CPU s | load CPU s | others' CPU s | step s | login p99 ms | ack p50 ms | ack p99 ms |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Medians {
		fmt.Fprintf(w, "| %g | %g | %d/%d (%.3f%%) | %.0f | %.1f | %.1f | %.1f | %.1f | %d | %d | %.2f | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f | %.0f | %.2f | %.2f |\n",
			s.Rate, s.Flood, s.Delivered, s.Expected, 100*s.DeliveredRatio, s.DeliveredPerSec, s.P50ms, s.P90ms, s.P99ms, s.MaxMs,
			s.SendErrors, s.Dropped, s.CPUPerMsgUs, s.ObjectsPerFrame, s.ServerCPUs, s.RedisCPUs, s.WorkerCPUs, s.OtherCPUs, s.Seconds, s.LoginP99ms, s.AckP50ms, s.AckP99ms)
	}
}

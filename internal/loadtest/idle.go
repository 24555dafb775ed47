package loadtest

import (
	"context"
	"time"
)

// IdleCPU is the CPU the idle sockets cost while nothing is sent, over
// the settle: pings and pongs, each socket's session re-validation, and
// whatever else runs per socket. In cores (CPU-seconds per second).
type IdleCPU struct {
	Seconds     float64 `json:"seconds"`
	ServerCores float64 `json:"serverCores"`
	RedisCores  float64 `json:"redisCores"`
	WorkerCores float64 `json:"workerCores"`
	// OtherCores is everything else on the machine (the kernel's softirq
	// work included, and any neighbour).
	OtherCores float64 `json:"otherCores"`
}

type cpuMark struct {
	at                               time.Time
	servers, redis, workers, machine time.Duration
}

func (c *coordinator) cpuMark() cpuMark {
	s, r, w := c.cpu()
	return cpuMark{at: time.Now(), servers: s, redis: r, workers: w, machine: machineCPU()}
}

// idleCPU is the CPU used from a to now, in cores.
func (c *coordinator) idleCPU(a cpuMark) *IdleCPU {
	b := c.cpuMark()
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return nil
	}
	s, r, w := (b.servers - a.servers).Seconds(), (b.redis - a.redis).Seconds(), (b.workers - a.workers).Seconds()
	return &IdleCPU{Seconds: secs, ServerCores: s / secs, RedisCores: r / secs, WorkerCores: w / secs,
		OtherCores: max(0, (b.machine-a.machine).Seconds()-s-r-w) / secs}
}

// openSockets is how many sockets the workers hold now: a socket that
// connected and was closed since (by the server, or a broken connection)
// no longer costs memory, so per-connection figures divide by this.
func (c *coordinator) openSockets(ctx context.Context, connected int) int {
	t, err := c.stats(ctx, 0)
	if err != nil || t.open <= 0 {
		return connected
	}
	return t.open
}

package loadtest

import (
	"encoding/json"
	"os"
)

// Results is what a run reports, as one value so that the Markdown tables,
// the --json file and the tests that read that file cannot disagree: its
// JSON field names are the file's format.
type Results struct {
	Config  ResultConfig `json:"config"`
	Machine string       `json:"machine"`
	Idle    IdleResult   `json:"idle"`
	Steps   []StepResult `json:"steps"`
	Medians []StepResult `json:"medians"`
}

// ResultConfig is the part of a Config that shapes the figures, kept with
// them so that a results file says what was measured.
type ResultConfig struct {
	Target  string `json:"target"`
	Backend string `json:"backend"`
	// RedisReplicas are replicas of the Redis (--redis-replicas).
	RedisReplicas int        `json:"redisReplicas,omitempty"`
	Servers       int        `json:"servers"`
	Conns         int        `json:"conns"`
	Users         int        `json:"users"`
	Workers       int        `json:"workers"`
	Steps         []StepSpec `json:"steps"`
	StepDuration  string     `json:"stepDuration"`
	Repeat        int        `json:"repeat"`
	ServerArgs    []string   `json:"serverArgs"`
	ServerEnv     []string   `json:"serverEnv"`
}

// IdleResult is what connected sockets cost while nothing is sent: the
// memory per connection a deployment has to plan for.
type IdleResult struct {
	Connected int `json:"connected"`
	// Open is the sockets still open after the settle; the per-connection
	// figures divide by it.
	Open   int `json:"open"`
	Failed int `json:"failed"`
	// Stopped is why the workers stopped dialing before their last
	// socket (the memory floor, the connect timeout); empty if they tried
	// them all. Failed counts the sockets not tried.
	Stopped        string  `json:"stopped,omitempty"`
	ConnectSeconds float64 `json:"connectSeconds"`
	// Per connection, over all servers: the growth of RSS, and of the Go
	// heap and stacks in use, from before the sockets to after they settled.
	RSSPerConn        float64 `json:"rssPerConnBytes"`
	HeapPerConn       float64 `json:"heapPerConnBytes"`
	StackPerConn      float64 `json:"stackPerConnBytes"`
	GoroutinesPerConn float64 `json:"goroutinesPerConn"`
	ServerRSSMiB      float64 `json:"serverRssMiB"` // all servers together, idle
	// The load workers' RSS, all together and per connection (their own
	// base, a few MiB each, included): what the client side of the
	// sockets costs on this machine.
	WorkerRSSMiB     float64 `json:"workerRssMiB"`
	WorkerRSSPerConn float64 `json:"workerRssPerConnBytes"`
	// Kernel is what the sockets cost the kernel (/proc/meminfo,
	// /proc/net/sockstat), machine-wide, before the workers and after the
	// settle.
	Kernel *KernelIdle `json:"kernel,omitempty"`
	// CPU is what the idle sockets cost in CPU over the settle.
	CPU *IdleCPU `json:"cpu,omitempty"`
}

// StepResult is one step of one run (or, in Results.Medians, the medians
// of a step over the runs, with Run the number of runs): what arrived, how
// late, and what it cost.
type StepResult struct {
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
	// AckP50ms and AckP99ms are the servers' send-to-ack latency (their
	// hubbub_ack_latency_seconds histogram over the step, interpolated
	// within its buckets as Prometheus' histogram_quantile does).
	AckP50ms float64 `json:"ackP50ms"`
	AckP99ms float64 `json:"ackP99ms"`
}

// WriteJSON writes the --json file: it keeps every run's figures, where the
// Markdown tables keep only the medians.
func (r *Results) WriteJSON(path string) error { return writeJSON(path, r) }

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

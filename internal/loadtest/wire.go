package loadtest

import "time"

// The coordinator drives each worker process over its stdin and stdout: the
// first line on stdin is a job, every later line a command; the worker
// answers each command with one event line on stdout.

// maxSteps bounds the steps of one run (each step keeps its own counters).
const maxSteps = 256

type job struct {
	Worker  int    `json:"worker"`
	Workers int    `json:"workers"`        // senders, one per worker: sizes duplicate tracking
	Mode    string `json:"mode"`           // "hubbub" or "baseline"
	Kind    string `json:"kind,omitempty"` // Config.Kind
	// LocalIP is the loopback source address of this worker's sockets, so
	// several workers do not share one address's ephemeral ports.
	LocalIP         string        `json:"localIp"`
	Channel         string        `json:"channel"`
	Conns           []connSpec    `json:"conns"`
	DialConcurrency int           `json:"dialConcurrency"`
	DialRate        float64       `json:"dialRate"` // new sockets per second for this worker; 0 = unpaced
	ConnectTimeout  time.Duration `json:"connectTimeout"`
	// MemoryFloor stops this worker's dialing once the machine's
	// MemAvailable falls below it (bytes; 0: never), so that a run toward
	// what the machine holds ends with a count, not with the OOM killer.
	MemoryFloor int64    `json:"memoryFloor,omitempty"`
	Edge        *edgeJob `json:"edge,omitempty"` // the storm and dm workloads
}

type connSpec struct {
	URL   string `json:"url"`
	Token string `json:"token,omitempty"`
}

type command struct {
	Cmd      string        `json:"cmd"` // "step", "stats", "quit"
	Step     int           `json:"step"`
	Rate     float64       `json:"rate"` // sends per second from this worker
	Duration time.Duration `json:"duration"`
}

type event struct {
	Event      string   `json:"event"` // "ready", "sent", "stats", "bye"
	Worker     int      `json:"worker"`
	Connected  int      `json:"connected,omitempty"`
	Failed     int      `json:"failed,omitempty"`
	DialErrors []string `json:"dialErrors,omitempty"`
	// Stopped says why a worker stopped dialing before its last socket
	// (the memory floor); empty when it tried them all.
	Stopped    string     `json:"stopped,omitempty"`
	Step       int        `json:"step,omitempty"`
	Sent       uint64     `json:"sent,omitempty"`
	SendErrors uint64     `json:"sendErrors,omitempty"`
	Stats      *stepStats `json:"stats,omitempty"`
	Edge       *edgeStats `json:"edge,omitempty"` // the storm and dm workloads
	Err        string     `json:"err,omitempty"`
}

type stepStats struct {
	Delivered  uint64         `json:"delivered"`
	Duplicates uint64         `json:"duplicates"`
	Acked      uint64         `json:"acked"`
	ErrFrames  uint64         `json:"errFrames"`
	Dropped    uint64         `json:"dropped"` // sockets lost while this step ran
	Open       int            `json:"open"`
	LastRecvNS int64          `json:"lastRecvNs"`
	Hist       map[int]uint64 `json:"hist"`
}

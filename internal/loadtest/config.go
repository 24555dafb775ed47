package loadtest

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Config describes one run in a single value, so that the command line (the
// "run" subcommand's flags, which hold the defaults) and a test describe runs
// the same way. Users, Workers, ChatServer, Centrifugo and WorkDir may be left
// zero: Run fills them in.
type Config struct {
	Target string // "hubbub", "baseline" or "centrifugo"
	// Kind is what each send of a step is (hubbub only): "send" (a new
	// message, the default), "edit" (an edit of one message the sender
	// posted first) or "react" (a reaction to it, turned on and off), to
	// measure what changes cost in fan-out against messages.
	Kind           string
	ChatServer     string // path of the chatserver binary
	Centrifugo     string // path of the centrifugo binary (--target centrifugo)
	RedisServer    string // path of redis-server
	Backend        string // "redis" or "memory" (memory: one server only)
	RedisReplicas  int    // replicas of the Redis: the servers then WAIT for one (auto acks)
	Servers        int
	Conns          int
	Users          int
	Workers        int
	Channel        string
	Steps          []StepSpec
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
	FirstWorkerIP  int // workers bind 127.0.0.<FirstWorkerIP+w>
	ConnectTimeout time.Duration
	// MemoryFloor (bytes) stops the workers' dialing once MemAvailable
	// falls below it; 0: never.
	MemoryFloor int64
	// CentrifugoHistory is the publications Centrifugo keeps per channel
	// for recovery (the storm's resume); 0: none, as run measures it.
	CentrifugoHistory int
}

// What a step's sends are (Config.Kind).
const (
	KindSend  = "send"
	KindEdit  = "edit"
	KindReact = "react"
)

// StepSpec is one load level, and the key medians group runs by: a step is
// compared with itself across repeats, never with another rate.
type StepSpec struct {
	Rate  float64 `json:"rate"`  // messages sent per second, all senders together
	Flood float64 `json:"flood"` // logins per second during the step
}

// ParseSteps reads the --steps syntax ("10,20,40@5": messages per second,
// and after @ logins per second), so that every caller writes steps the
// way docs/benchmarks.md does.
func ParseSteps(s string) ([]StepSpec, error) {
	var out []StepSpec
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		rate, flood, hasFlood := strings.Cut(p, "@")
		var st StepSpec
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

// prepare fills in what cfg left to defaults and refuses a run that could
// not work (more sockets than one process may open, more steps than the
// workers keep counters for) before anything is started. Its messages name
// the run subcommand's flags, which is where a Config comes from.
func (cfg *Config) prepare() error {
	if cfg.Users <= 0 {
		cfg.Users = cfg.Conns
	}
	if cfg.Workers <= 0 {
		cfg.Workers = int(math.Ceil(float64(cfg.Conns) / 16000))
	}
	switch {
	case cfg.Target != "hubbub" && cfg.Target != "baseline" && cfg.Target != centrifugoTarget:
		return fmt.Errorf("--target: want hubbub, baseline or centrifugo")
	case cfg.Kind != "" && cfg.Kind != KindSend && (cfg.Target != "hubbub" || cfg.Kind != KindEdit && cfg.Kind != KindReact):
		return fmt.Errorf("--kind: send, edit or react, and edit and react only with --target hubbub")
	case cfg.Conns < 1 || cfg.Servers < 1 || cfg.Repeat < 1:
		return fmt.Errorf("--conns, --servers and --repeat must be at least 1")
	case cfg.Conns/cfg.Workers > 19000:
		return fmt.Errorf("%d sockets per worker: over the 20,000 open files one process may have; raise --workers", cfg.Conns/cfg.Workers)
	case (cfg.Conns+cfg.Servers-1)/cfg.Servers > 19000:
		return fmt.Errorf("%d sockets per server: over the 20,000 open files one process may have; raise --servers", (cfg.Conns+cfg.Servers-1)/cfg.Servers)
	case cfg.Target == "baseline" && cfg.Servers != 1:
		return fmt.Errorf("the baseline is one process: --servers=1")
	case cfg.Backend == "memory" && cfg.Servers != 1:
		return fmt.Errorf("the memory backend is one process: --servers=1")
	case cfg.RedisReplicas < 0 || cfg.RedisReplicas > 5 || (cfg.RedisReplicas > 0 && cfg.Backend != "redis"):
		return fmt.Errorf("--redis-replicas: 0..5, with --backend=redis")
	case cfg.FirstWorkerIP+cfg.Workers > 254:
		return fmt.Errorf("too many workers for 127.0.0.%d+", cfg.FirstWorkerIP)
	case len(cfg.Steps)*cfg.Repeat > maxSteps:
		return fmt.Errorf("at most %d steps in all", maxSteps)
	}
	if cfg.Target == centrifugoTarget {
		if err := cfg.checkCentrifugo(); err != nil {
			return err
		}
	}
	return cfg.fillPaths()
}

// fillPaths finds the server binary and makes the log directory when cfg
// names neither.
func (cfg *Config) fillPaths() error {
	if cfg.Target == "hubbub" && cfg.ChatServer == "" {
		cfg.ChatServer = findBinary("chatserver")
	}
	if cfg.Target == centrifugoTarget && cfg.Centrifugo == "" {
		cfg.Centrifugo = findBinary("centrifugo")
	}
	if cfg.WorkDir == "" {
		var err error
		if cfg.WorkDir, err = os.MkdirTemp("", "hubbub-bench-"); err != nil {
			return err
		}
	}
	return nil
}

// findBinary finds the program name where `make` puts it (bin/ under the
// working directory), else beside this binary, else on PATH.
func findBinary(name string) string {
	local := filepath.Join("bin", name)
	if _, err := os.Stat(local); err == nil {
		p, _ := filepath.Abs(local)
		return p
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return local
}

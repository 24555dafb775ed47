package loadtest

import (
	"fmt"
	"io"
	"strings"
)

// StormResults is what a storm run reports; its JSON field names are the
// --json file's format.
type StormResults struct {
	Config  StormResultConfig `json:"config"`
	Machine string            `json:"machine"`
	Setup   StormSetup        `json:"setup"`
	Connect FirstConnect      `json:"connect"`
	Rounds  []StormRound      `json:"rounds"`
	// Median is each figure's median over the rounds (Round: how many).
	Median StormRound `json:"median"`
}

// StormResultConfig is the part of a StormConfig that shapes the figures.
type StormResultConfig struct {
	Target             string   `json:"target"`
	Servers            int      `json:"servers"`
	Conns              int      `json:"conns"`
	Users              int      `json:"users"`
	Workers            int      `json:"workers"`
	Missed             int      `json:"missed"`
	Repeat             int      `json:"repeat"`
	DialConcurrency    int      `json:"dialConcurrency"`
	ConnectConcurrency int      `json:"connectConcurrency"`
	Login              bool     `json:"login"`
	AccountBcryptCost  int      `json:"accountBcryptCost"`
	Watch              int      `json:"watch"`
	ServerArgs         []string `json:"serverArgs"`
}

// StormSetup is how long making the accounts took: registering and logging
// them in, or with --login, AccountsSeconds of hashing them at the
// production cost (and one login for the missed messages' socket).
type StormSetup struct {
	Seconds         float64 `json:"seconds"`
	AccountsSeconds float64 `json:"accountsSeconds,omitempty"`
}

// FirstConnect is the storm's and dm's first connect of every socket (the
// storm's with --login: each user logging in first).
type FirstConnect struct {
	Sockets   int    `json:"sockets"`
	Connected uint64 `json:"connected"`
	Failed    uint64 `json:"failed"`
	Complete  uint64 `json:"complete"` // resumed
	// Seconds runs from the workers' start to the last socket resumed.
	Seconds       float64   `json:"seconds"`
	SocketsPerSec float64   `json:"socketsPerSec"`
	Hello         Quantiles `json:"hello"`   // dial → hello
	Resumed       Quantiles `json:"resumed"` // dial → resumed
	Logins        uint64    `json:"logins"`
	LoginRetries  uint64    `json:"loginRetries"` // 503 (bcrypt slots busy), 429, refused
	LoginSeconds  float64   `json:"loginSeconds"` // from the start to the last login
	LoginsPerSec  float64   `json:"loginsPerSec"`
	Login         Quantiles `json:"login"` // first attempt → token, retries included
	// ErrorFrames are error objects (a watch the server does not know yet
	// is one); PresenceObjects what the sockets learnt of others.
	ErrorFrames     uint64  `json:"errorFrames"`
	PresenceObjects uint64  `json:"presenceObjects"`
	CPU             CPUSpan `json:"cpu"`
}

// StormRound is one drop, miss and reconnect: from the reconnect command to
// the last socket resumed with every missed message.
type StormRound struct {
	Round       int    `json:"round"`
	Sockets     int    `json:"sockets"`
	Reconnected uint64 `json:"reconnected"` // hello came
	Failed      uint64 `json:"failed"`
	Complete    uint64 `json:"complete"` // resumed, with every missed message
	Lost        uint64 `json:"lost"`     // closed by the server meanwhile
	// DropSeconds is from the drop to the servers holding none of the
	// sockets (the missed messages are sent after it).
	DropSeconds      float64   `json:"dropSeconds"`
	Seconds          float64   `json:"seconds"`
	ResumedPerSec    float64   `json:"resumedPerSec"`
	Hello            Quantiles `json:"hello"`
	Resumed          Quantiles `json:"resumed"`
	MissedDelivered  uint64    `json:"missedDelivered"`
	MissedExpected   uint64    `json:"missedExpected"`
	MissedDuplicates uint64    `json:"missedDuplicates"`
	ErrorFrames      uint64    `json:"errorFrames"`
	UnknownChannel   uint64    `json:"unknownChannel"`
	PresenceObjects  uint64    `json:"presenceObjects"`
	CPU              CPUSpan   `json:"cpu"`
	ServerRSSMiB     []float64 `json:"serverRssMiB"` // after the round
	// RedisPerSocket is each Redis command's calls and own µs over the
	// reconnect, per socket reconnected (in fields named per connect).
	RedisPerSocket []RedisCommand `json:"redisPerSocket,omitempty"`
}

// WriteMarkdown prints the run as docs/benchmarks.md shows it.
func (r *StormResults) WriteMarkdown(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "storm: target=%s servers=%d sockets=%d users=%d workers=%d missed=%d repeat=%d dialConcurrency=%d connectConcurrency=%d login=%t accountBcryptCost=%d watch=%d\n",
		c.Target, c.Servers, c.Conns, c.Users, c.Workers, c.Missed, c.Repeat, c.DialConcurrency, c.ConnectConcurrency, c.Login, c.AccountBcryptCost, c.Watch)
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	fmt.Fprintf(w, "setup: %.1f s", r.Setup.Seconds)
	if r.Setup.AccountsSeconds > 0 {
		fmt.Fprintf(w, " (accounts hashed at cost %d: %.1f s)", c.AccountBcryptCost, r.Setup.AccountsSeconds)
	}
	fmt.Fprintf(w, "\n\nFirst connect:\n\n")
	fmt.Fprintf(w, "| connected | failed | seconds | sockets/s | hello p50/p99/max ms | resumed p50/p99/max ms | logins | logins/s | login p50/p99 ms | login retries | error frames | presence objects | server CPU s | Redis CPU s | load CPU s | others' CPU s |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	k := r.Connect
	fmt.Fprintf(w, "| %d/%d | %d | %.2f | %.0f | %s | %s | %d | %.1f | %.0f / %.0f | %d | %d | %d | %.2f | %.2f | %.2f | %.2f |\n\n",
		k.Connected, k.Sockets, k.Failed, k.Seconds, k.SocketsPerSec, k.Hello, k.Resumed, k.Logins, k.LoginsPerSec, k.Login.P50ms, k.Login.P99ms,
		k.LoginRetries, k.ErrorFrames, k.PresenceObjects, k.CPU.ServersTotal, k.CPU.Redis, k.CPU.Workers, k.CPU.Others)
	fmt.Fprintf(w, "Reconnect storms:\n\n")
	fmt.Fprintf(w, "| round | reconnected | failed | complete | seconds | resumed sockets/s | hello p50/p99/max ms | resumed p50/p99/max ms | missed delivered/expected | duplicates | error frames | presence objects | server CPU s (each) | Redis CPU s | load CPU s | others' CPU s | servers' RSS MiB | drop s |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|---:|\n")
	rows := r.Rounds
	if len(rows) > 1 {
		rows = append(rows[:len(rows):len(rows)], r.Median)
	}
	for i, x := range rows {
		name := fmt.Sprint(x.Round)
		if i == len(r.Rounds) {
			name = "**median**"
		}
		fmt.Fprintf(w, "| %s | %d/%d | %d | %d | %.2f | %.0f | %s | %s | %d/%d | %d | %d | %d | %.2f (%s) | %.2f | %.2f | %.2f | %s | %.2f |\n",
			name, x.Reconnected, x.Sockets, x.Failed, x.Complete, x.Seconds, x.ResumedPerSec, x.Hello, x.Resumed, x.MissedDelivered, x.MissedExpected,
			x.MissedDuplicates, x.ErrorFrames, x.PresenceObjects, x.CPU.ServersTotal, floats(x.CPU.Servers, "%.2f"), x.CPU.Redis, x.CPU.Workers, x.CPU.Others,
			floats(x.ServerRSSMiB, "%.0f"), x.DropSeconds)
	}
	if len(r.Rounds) > 0 && len(r.Rounds[0].RedisPerSocket) > 0 {
		fmt.Fprintf(w, "\nRound 1: %s\n", redisTop(r.Rounds[0].RedisPerSocket, "socket reconnected"))
	}
}

func (q Quantiles) String() string {
	return fmt.Sprintf("%.1f / %.1f / %.1f", q.P50ms, q.P99ms, q.MaxMs)
}

// floats prints a list of figures in one table cell.
func floats(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the --json file.
func (r *StormResults) WriteJSON(path string) error { return writeJSON(path, r) }

package loadtest

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// HelloResults is what a hello run reports; its JSON field names are the
// --json file's format.
type HelloResults struct {
	Config  HelloResultConfig `json:"config"`
	Machine string            `json:"machine"`
	Setup   HelloSetup        `json:"setup"`
	// The chat server's RSS once the room was filled, and after every
	// scenario's connects (all of them closed again).
	ServerRSSMiBAfterSetup    float64         `json:"serverRssMiBAfterSetup"`
	ServerRSSMiBAfterConnects float64         `json:"serverRssMiBAfterConnects"`
	Connects                  []ConnectResult `json:"connects"`
	Requests                  []RequestResult `json:"requests"`
	// Storage is the storage reads a connect makes, one by one (Redis only).
	Storage []StorageCall `json:"storage,omitempty"`
	Profile string        `json:"profile,omitempty"`
}

// HelloResultConfig is the part of a HelloConfig that shapes the figures.
type HelloResultConfig struct {
	Backend            string   `json:"backend"`
	People             int      `json:"people"`
	Channels           int      `json:"channels"`
	MessagesPerChannel int      `json:"messagesPerChannel"`
	Connects           int      `json:"connects"`
	Concurrency        int      `json:"concurrency"`
	ServerArgs         []string `json:"serverArgs"`
}

// HelloSetup is how long filling the room took, so that a slow run can be
// told from a slow setup.
type HelloSetup struct {
	UsersSeconds    float64 `json:"usersSeconds"` // servers started, users registered and logged in
	ChannelsSeconds float64 `json:"channelsSeconds"`
	JoinsSeconds    float64 `json:"joinsSeconds"`
	MessagesSeconds float64 `json:"messagesSeconds"`
}

// ConnectResult is one scenario: Connects sockets of one person, opened
// Concurrency at a time, each closed once its hello came.
type ConnectResult struct {
	Scenario    string `json:"scenario"`
	Concurrency int    `json:"concurrency"`
	Connects    int    `json:"connects"`
	Failed      int    `json:"failed"`
	FirstError  string `json:"firstError,omitempty"`
	// The hello object (the first of its frame): its bytes, and what gzip
	// makes of them.
	HelloBytes      int `json:"helloBytes"`
	HelloGzipBytes  int `json:"helloGzipBytes"`
	Channels        int `json:"channels"` // listed in hello, default ones included
	DefaultChannels int `json:"defaultChannels"`
	Unread          int `json:"unread"` // over all channels
	Online          int `json:"online"`
	// Hello runs from the start of the dial to the end of hello's frame;
	// Upgrade to the 101 answer (TCP, HTTP and the session check).
	Hello     Latency `json:"hello"`
	Upgrade   Latency `json:"upgrade"`
	PerSecond float64 `json:"connectsPerSecond"`
	// Per connect: CPU of the chat server and of Redis over the scenario
	// (the close included), and Redis's commands (INFO commandstats).
	ServerCPUms float64        `json:"serverCpuMsPerConnect"`
	RedisCPUms  float64        `json:"redisCpuMsPerConnect"`
	Redis       []RedisCommand `json:"redis,omitempty"`
	// OtherCores is how many cores everything else on the machine kept
	// busy meanwhile, on average: the machine is shared, and a busy
	// neighbour shows in the tail.
	OtherCores float64 `json:"otherCores"`
}

// RedisCommand is one command's share of a scenario, per connect; Usec is
// Redis's own time executing it (not the round trip).
type RedisCommand struct {
	Command         string  `json:"command"`
	CallsPerConnect float64 `json:"callsPerConnect"`
	UsecPerConnect  float64 `json:"usecPerConnect"`
}

// RequestResult is one HTTP read, repeated: its latency to the end of the
// body, and what the last answer held.
type RequestResult struct {
	Request string  `json:"request"`
	Latency Latency `json:"latency"`
	Items   int     `json:"items"`
	Bytes   int     `json:"bytes"`
	// WalkMs is the median time to page through the whole directory (the
	// directory's row only).
	WalkMs float64 `json:"walkMs,omitempty"`
	// FirstMs is the directory's first page, the first the server was
	// asked for: with Redis it builds its users index then.
	FirstMs float64 `json:"firstMs,omitempty"`
}

// Latency is a set of timings, exact (each one was kept): the runs are
// small enough that a histogram would only blur them.
type Latency struct {
	N      int     `json:"n"`
	P50ms  float64 `json:"p50ms"`
	P99ms  float64 `json:"p99ms"`
	MaxMs  float64 `json:"maxMs"`
	MeanMs float64 `json:"meanMs"`
}

// summarize takes nearest-rank percentiles: p99 of 200 timings is the
// 198th, a timing that happened, not an interpolation between two.
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	rank := func(q float64) time.Duration {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Latency{N: len(s), P50ms: ms(rank(0.50)), P99ms: ms(rank(0.99)), MaxMs: ms(s[len(s)-1]), MeanMs: ms(sum / time.Duration(len(s)))}
}

// WriteMarkdown prints the run as docs/benchmarks.md shows it.
func (r *HelloResults) WriteMarkdown(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "hello: backend=%s people=%d channels=%d messagesPerChannel=%d connects=%d concurrency=%d\n",
		c.Backend, c.People, c.Channels, c.MessagesPerChannel, c.Connects, c.Concurrency)
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	s := r.Setup
	fmt.Fprintf(w, "setup: servers and users %.1f s, channels %.1f s, joins %.1f s, messages %.1f s; server RSS %.0f MiB after setup, %.0f MiB after the connects\n\n",
		s.UsersSeconds, s.ChannelsSeconds, s.JoinsSeconds, s.MessagesSeconds, r.ServerRSSMiBAfterSetup, r.ServerRSSMiBAfterConnects)

	fmt.Fprintf(w, "| scenario | hello bytes | gzipped | channels (default) | unread | online | connects | failed | p50 ms | p99 ms | max ms | to 101, p50 ms | connects/s | server CPU ms/connect | Redis CPU ms/connect | others' cores |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, x := range r.Connects {
		fmt.Fprintf(w, "| %s | %d | %d | %d (%d) | %d | %d | %d | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f |\n",
			x.Scenario, x.HelloBytes, x.HelloGzipBytes, x.Channels, x.DefaultChannels, x.Unread, x.Online, x.Connects, x.Failed,
			x.Hello.P50ms, x.Hello.P99ms, x.Hello.MaxMs, x.Upgrade.P50ms, x.PerSecond, x.ServerCPUms, x.RedisCPUms, x.OtherCores)
	}
	if len(r.Requests) > 0 {
		fmt.Fprintf(w, "\n| request | n | p50 ms | p99 ms | max ms | items | bytes |\n|---|---:|---:|---:|---:|---:|---:|\n")
		for _, x := range r.Requests {
			items := fmt.Sprint(x.Items)
			if x.WalkMs > 0 {
				items = fmt.Sprintf("%d people; a walk %.1f ms; the very first page %.1f ms", x.Items, x.WalkMs, x.FirstMs)
			}
			fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %.2f | %s | %d |\n", x.Request, x.Latency.N, x.Latency.P50ms, x.Latency.P99ms, x.Latency.MaxMs, items, x.Bytes)
		}
	}
	var withRedis []ConnectResult
	for _, x := range r.Connects {
		if len(x.Redis) > 0 {
			withRedis = append(withRedis, x)
		}
	}
	if len(withRedis) > 0 {
		fmt.Fprintf(w, "\nRedis per connect (INFO commandstats; µs are Redis's own, not round trips), busiest first:\n\n")
		fmt.Fprintf(w, "| scenario | commands: calls/connect, µs/connect |\n|---|---|\n")
		for _, x := range withRedis {
			var parts []string
			for _, cmd := range x.Redis[:min(8, len(x.Redis))] {
				parts = append(parts, fmt.Sprintf("%s %.4g, %.0f µs", cmd.Command, cmd.CallsPerConnect, cmd.UsecPerConnect))
			}
			fmt.Fprintf(w, "| %s | %s |\n", x.Scenario, strings.Join(parts, "; "))
		}
	}
	if len(r.Storage) > 0 {
		fmt.Fprintf(w, "\nThe storage reads of one connect, in the order the server makes them, timed from the tool with the server's Redis backend:\n\n")
		fmt.Fprintf(w, "| call | n | p50 ms | p99 ms | max ms | items |\n|---|---:|---:|---:|---:|---:|\n")
		var sum float64
		for _, x := range r.Storage {
			sum += x.Latency.P50ms
			fmt.Fprintf(w, "| %s | %d | %.2f | %.2f | %.2f | %d |\n", x.Call, x.Latency.N, x.Latency.P50ms, x.Latency.P99ms, x.Latency.MaxMs, x.Items)
		}
		fmt.Fprintf(w, "| **sum of the p50s** | | %.2f | | | |\n", sum)
	}
	if r.Profile != "" {
		fmt.Fprintf(w, "\nCPU profile: %s\n", r.Profile)
	}
}

// WriteJSON writes the --json file.
func (r *HelloResults) WriteJSON(path string) error { return writeJSON(path, r) }

package loadtest

import (
	"fmt"
	"io"
)

// DMResults is what a dm run reports; its JSON field names are the --json
// file's format.
type DMResults struct {
	Config  DMResultConfig `json:"config"`
	Machine string         `json:"machine"`
	Setup   DMSetup        `json:"setup"`
	Connect FirstConnect   `json:"connect"`
	Load    DMLoad         `json:"load"`
	Drain   *DMDrain       `json:"drain,omitempty"`
}

// DMResultConfig is the part of a DMConfig that shapes the figures.
type DMResultConfig struct {
	Servers          int      `json:"servers"`
	Workers          int      `json:"workers"`
	People           int      `json:"people"`
	SocketsPerPerson int      `json:"socketsPerPerson"`
	ChannelSize      int      `json:"channelSize"`
	Channels         int      `json:"channels"`
	RatePerPerson    float64  `json:"ratePerPerson"`
	Duration         string   `json:"duration"`
	Drain            bool     `json:"drain"`
	DrainAfter       string   `json:"drainAfter,omitempty"`
	ServerArgs       []string `json:"serverArgs"`
}

// DMSetup is how long making the room took.
type DMSetup struct {
	UsersSeconds    float64 `json:"usersSeconds"` // registered and logged in
	ChannelsSeconds float64 `json:"channelsSeconds"`
}

// DMLoad is the sending, from its start to the last delivery (or the
// drain's end).
type DMLoad struct {
	Seconds     float64 `json:"seconds"`
	Sent        uint64  `json:"sent"`
	SentDM      uint64  `json:"sentDm"`
	SentChannel uint64  `json:"sentChannel"`
	WriteErrors uint64  `json:"writeErrors"`
	// Skipped sends found none of the person's sockets open. Resent ones
	// had no answer when their socket closed, and were sent again, with
	// the same clientId, on its next connection (the server stores them
	// once).
	Skipped      uint64 `json:"skipped"`
	Resent       uint64 `json:"resent"`
	AckedDM      uint64 `json:"ackedDm"`
	AckedChannel uint64 `json:"ackedChannel"`
	ErrFrames    uint64 `json:"errFrames"` // error objects naming a send
	Unacked      uint64 `json:"unacked"`   // neither acked nor refused (the socket closed first)
	// Expected is, per acked message, a delivery to every socket of every
	// person in its conversation (the sender's included); Delivered counts
	// each message once per socket, by id.
	Expected                uint64    `json:"expected"`
	Delivered               uint64    `json:"delivered"`
	Duplicates              uint64    `json:"duplicates"`
	DeliveredRatio          float64   `json:"deliveredRatio"`
	DeliveredPerSec         float64   `json:"deliveredPerSec"`
	Latency                 Quantiles `json:"latency"` // send → delivery, replays after a move included
	ServerCPUPerDeliveredUs float64   `json:"serverCpuPerDeliveredUs"`
	ObjectsPerFrame         float64   `json:"objectsPerFrame"`
	CPU                     CPUSpan   `json:"cpu"`
	ErrorFrames             uint64    `json:"errorFrames"`
	UnknownChannel          uint64    `json:"unknownChannel"` // resumes naming a DM not written in yet
	// NotRecovered is conversations a resumed said were not replayed whole
	// (storage failed, or trimmed): a client reloads their history.
	NotRecovered        uint64        `json:"notRecovered"`
	PresenceObjects     uint64        `json:"presenceObjects"`
	SubscriptionsBefore Subscriptions `json:"subscriptionsBefore"`
	SubscriptionsAfter  Subscriptions `json:"subscriptionsAfter"`
	ServerRSSMiB        []float64     `json:"serverRssMiB"`
	// RedisPerMessage is each Redis command's calls and own µs over the
	// load, per message sent (in fields named per connect).
	RedisPerMessage []RedisCommand `json:"redisPerMessage,omitempty"`
}

// DMDrain is what server 0's drain did to its sockets: told to reconnect
// (Notices), closed (Lost), dialed again elsewhere, and resumed.
type DMDrain struct {
	Server      int    `json:"server"`
	Notices     uint64 `json:"notices"`
	Lost        uint64 `json:"lost"`
	Dials       uint64 `json:"dials"`
	Moved       uint64 `json:"moved"`
	FailedDials uint64 `json:"failedDials"`
	Resumed     uint64 `json:"resumed"`
	// SecondsToAllBack is from the SIGTERM to the last moved socket's
	// resumed.
	SecondsToAllBack float64   `json:"secondsToAllBack"`
	Hello            Quantiles `json:"hello"`
	ResumedLatency   Quantiles `json:"resumedLatency"`
}

// WriteMarkdown prints the run as docs/benchmarks.md shows it.
func (r *DMResults) WriteMarkdown(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "dm: servers=%d workers=%d people=%d socketsPerPerson=%d channels=%d×%d ratePerPerson=%g duration=%s drain=%t %s\n",
		c.Servers, c.Workers, c.People, c.SocketsPerPerson, c.Channels, c.ChannelSize, c.RatePerPerson, c.Duration, c.Drain, c.DrainAfter)
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	k := r.Connect
	fmt.Fprintf(w, "setup: users %.1f s, channels %.1f s; first connect: %d/%d sockets, %d failed, %.1f s, hello p50/p99/max %s ms\n\n",
		r.Setup.UsersSeconds, r.Setup.ChannelsSeconds, k.Connected, k.Sockets, k.Failed, k.Seconds, k.Hello)
	l := r.Load
	fmt.Fprintf(w, "| sent (DM + channel) | acked | unacked | resent | send errors | delivered/expected | duplicates | delivered/s | p50 ms | p99 ms | max ms | server CPU µs/delivered | objects/frame | server CPU s (each) | Redis CPU s | load CPU s | others' CPU s | subscriptions per server (topics) | servers' RSS MiB |\n")
	fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---|\n")
	fmt.Fprintf(w, "| %d (%d + %d) | %d | %d | %d | %d | %d/%d (%.3f%%) | %d | %.0f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f (%s) | %.2f | %.2f | %.2f | %s (%d) → %s (%d) | %s |\n",
		l.Sent, l.SentDM, l.SentChannel, l.AckedDM+l.AckedChannel, l.Unacked, l.Resent, l.WriteErrors+l.ErrFrames+l.Skipped, l.Delivered, l.Expected, 100*l.DeliveredRatio,
		l.Duplicates, l.DeliveredPerSec, l.Latency.P50ms, l.Latency.P99ms, l.Latency.MaxMs, l.ServerCPUPerDeliveredUs, l.ObjectsPerFrame,
		l.CPU.ServersTotal, floats(l.CPU.Servers, "%.2f"), l.CPU.Redis, l.CPU.Workers, l.CPU.Others,
		ints(l.SubscriptionsBefore.PerServer), l.SubscriptionsBefore.Topics, ints(l.SubscriptionsAfter.PerServer), l.SubscriptionsAfter.Topics,
		floats(l.ServerRSSMiB, "%.0f"))
	if len(l.RedisPerMessage) > 0 {
		fmt.Fprintf(w, "\n%s\n", redisTop(l.RedisPerMessage, "message sent"))
	}
	if d := r.Drain; d != nil {
		fmt.Fprintf(w, "\nDrain of server %d:\n\n", d.Server)
		fmt.Fprintf(w, "| told to reconnect | closed | moved | failed dials | resumed | seconds until all back | hello p50/p99/max ms | resumed p50/p99/max ms | delivered/expected after the drain |\n")
		fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---|---|---:|\n")
		fmt.Fprintf(w, "| %d | %d | %d | %d | %d | %.2f | %s | %s | %d/%d |\n",
			d.Notices, d.Lost, d.Moved, d.FailedDials, d.Resumed, d.SecondsToAllBack, d.Hello, d.ResumedLatency, l.Delivered, l.Expected)
	}
	if l.NotRecovered > 0 || l.ErrorFrames > 0 {
		fmt.Fprintf(w, "\nConversations not replayed whole on a resume (a client reloads their history; what they lack shows as a shortfall): %d; error objects: %d.\n", l.NotRecovered, l.ErrorFrames)
	}
}

func ints(v []int) string {
	f := make([]float64, len(v))
	for i, x := range v {
		f[i] = float64(x)
	}
	return floats(f, "%.0f")
}

// WriteJSON writes the --json file.
func (r *DMResults) WriteJSON(path string) error { return writeJSON(path, r) }

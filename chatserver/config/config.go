// Package config is the chat server's configuration: one struct, loaded from
// command-line flags with environment-variable fallbacks.
//
// The operator renders a chat pod's container args and env from a ChatRoom,
// and its tests parse them back with Load, so the two cannot drift apart.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Registration says who may create accounts.
type Registration string

// Registration modes.
const (
	RegistrationOpen   Registration = "Open"
	RegistrationClosed Registration = "Closed"
)

// Config is everything the chat server can be told.
type Config struct {
	// Addr is the listen address of the HTTP/WebSocket server.
	Addr string
	// Room names this chat ("namespace/name"); it prefixes every Redis key so
	// rooms sharing a Redis never see each other.
	Room string
	// RedisURL selects the Redis backend; empty means one process on its
	// own: the embedded store in DataDir, or memory alone.
	RedisURL string
	// DataDir is where the single-process server keeps its data (a bbolt
	// file) across restarts; empty keeps everything in memory (tests).
	// Ignored with RedisURL.
	DataDir string
	// RedisPassword overrides any password in RedisURL (kept out of args so it
	// never shows in `ps` or the pod spec).
	RedisPassword string
	// RedisMinReplicaAcks is how many replicas must confirm a message before
	// it is acked: -1 (auto) means 1 when the primary has replicas, 0 for a
	// lone Redis; 0 never waits.
	RedisMinReplicaAcks int
	// RedisReplicaAckTimeout bounds that wait; past it the send gets
	// "unavailable" and the client resends (its clientId stores it once).
	RedisReplicaAckTimeout time.Duration
	// Channels are the public channels.
	Channels []string
	// Registration is Open or Closed.
	Registration Registration
	// Admins are the room's admins (usernames): they may remove anyone from
	// any channel people created, and add people to any.
	Admins []string
	// MaxChannelsPerUser bounds the created channels one person is in
	// (default channels and DMs do not count).
	MaxChannelsPerUser int
	// MaxChannelMembers bounds the members of one created channel.
	MaxChannelMembers int
	// BootstrapUsersFile names a file of "username:password" lines created at start.
	BootstrapUsersFile string
	// SessionTTL is the sliding idle lifetime of a login session.
	SessionTTL time.Duration
	// HistoryMax is how many messages each channel keeps.
	HistoryMax int
	// MaxMessageBytes bounds a message's text.
	MaxMessageBytes int
	// MessagesPerSecond and MessageBurst bound each connection's sends.
	MessagesPerSecond float64
	MessageBurst      int
	// MaxConnectionsPerUser bounds one person's concurrent sockets on one server.
	MaxConnectionsPerUser int
	// MaxConnections bounds all sockets on one server; past it new sockets are
	// told to try again later (another server may have room).
	MaxConnections int
	// SendQueueMax bounds the objects queued for one socket: a client that
	// falls further behind is disconnected (4408) rather than allowed to hold
	// memory.
	SendQueueMax int
	// WriteTimeout is how long a write to a client may block (it stopped
	// reading) before the socket is closed.
	WriteTimeout time.Duration
	// PongWait is how long a client may stay silent (pings go out at 9/10
	// of it): a peer that answers no ping is closed once it passes.
	PongWait time.Duration
	// AllowedOrigins are origins besides the server's own that may open a WebSocket
	// or make cookie-authenticated changes.
	AllowedOrigins []string
	// BcryptCost is the bcrypt work factor for new password hashes.
	BcryptCost int
	// BcryptConcurrency bounds simultaneous bcrypt computations; 0 means half
	// the CPUs (at least one), so a login flood leaves CPU for delivery.
	BcryptConcurrency int
	// LoginAttemptsPerMinute bounds failed logins as one username from one
	// client address. Never by username alone: that would let anyone lock
	// any account.
	LoginAttemptsPerMinute int
	// LoginAttemptsPerIPPerMinute bounds failed logins from one client
	// address, whatever the usernames; at least LoginAttemptsPerMinute.
	LoginAttemptsPerIPPerMinute int
	// TrustedProxies are the CIDRs (or single addresses) of the proxies in
	// front of the server. Only a request whose peer is one of them has its
	// X-Forwarded-For and X-Forwarded-Proto believed; empty believes none.
	TrustedProxies []string
	// PresenceTTL is how long a server's presence marks outlive its last
	// heartbeat: a crashed server's users show offline within about this long.
	PresenceTTL time.Duration
	// ShutdownGrace is how long a stopping server waits for clients to leave.
	ShutdownGrace time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// DebugAddr, when set, serves Go's pprof profiles on a second listener.
	// Off by default: profiles reveal internals, so it belongs on localhost or
	// behind kubectl port-forward, never on the chat port.
	DebugAddr string
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Addr:                        ":8080",
		Room:                        "default/hubbub",
		RedisMinReplicaAcks:         -1,
		RedisReplicaAckTimeout:      2 * time.Second,
		Channels:                    []string{"general"},
		Registration:                RegistrationOpen,
		SessionTTL:                  24 * time.Hour,
		HistoryMax:                  10000,
		MaxChannelsPerUser:          1000,
		MaxChannelMembers:           10000,
		MaxMessageBytes:             4096,
		MessagesPerSecond:           5,
		MessageBurst:                10,
		MaxConnectionsPerUser:       10,
		MaxConnections:              50000,
		SendQueueMax:                4096,
		WriteTimeout:                10 * time.Second,
		PongWait:                    60 * time.Second,
		BcryptCost:                  12,
		LoginAttemptsPerMinute:      10,
		LoginAttemptsPerIPPerMinute: 50,
		PresenceTTL:                 25 * time.Second,
		ShutdownGrace:               25 * time.Second,
		LogLevel:                    "info",
	}
}

// EnvPrefix starts every environment variable the server reads.
const EnvPrefix = "HUBBUB_"

// EnvName is the environment variable that backs flag name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ErrHelp is returned by Load when -h or --help was asked for; usage was written.
var ErrHelp = flag.ErrHelp

// Load parses args (without the program name); a flag not given on the
// command line falls back to its environment variable (see EnvName), then to
// its default. Usage and parse errors are written to out.
func Load(args []string, lookupEnv func(string) (string, bool), out io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("chatserver", flag.ContinueOnError)
	fs.SetOutput(out)
	channels := strings.Join(c.Channels, ",")
	origins := ""
	proxies := ""
	registration := string(c.Registration)
	admins := ""

	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.StringVar(&c.Room, "room", c.Room, "room identity `namespace/name`; prefixes every Redis key")
	fs.StringVar(&c.RedisURL, "redis-url", c.RedisURL, "Redis URL (redis://, rediss://, redis-sentinel://host:port/?master=NAME, redis-cluster://host:port,...); empty = in-process memory backend")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the single-process server's data file, kept across restarts (empty = memory only; ignored with --redis-url)")
	fs.StringVar(&c.RedisPassword, "redis-password", c.RedisPassword, "Redis password (prefer the environment variable)")
	fs.IntVar(&c.RedisMinReplicaAcks, "redis-min-replica-acks", c.RedisMinReplicaAcks, "replicas that must confirm a message before it is acked (-1 = 1 when the primary has replicas, else 0)")
	fs.DurationVar(&c.RedisReplicaAckTimeout, "redis-replica-ack-timeout", c.RedisReplicaAckTimeout, "how long a send waits for its replicas before it is refused as unavailable (the client resends)")
	fs.StringVar(&channels, "channels", channels, "comma-separated public channels")
	fs.StringVar(&registration, "registration", registration, "Open or Closed")
	fs.StringVar(&admins, "admins", admins, "comma-separated usernames of the room's admins (may remove anyone from any created channel)")
	fs.IntVar(&c.MaxChannelsPerUser, "max-channels-per-user", c.MaxChannelsPerUser, "created channels one person may be in (default channels and DMs do not count)")
	fs.IntVar(&c.MaxChannelMembers, "max-channel-members", c.MaxChannelMembers, "members one created channel may have")
	fs.StringVar(&c.BootstrapUsersFile, "bootstrap-users-file", c.BootstrapUsersFile, "file of username:password lines to create at start")
	fs.DurationVar(&c.SessionTTL, "session-ttl", c.SessionTTL, "sliding idle lifetime of a login session")
	fs.IntVar(&c.HistoryMax, "history-max", c.HistoryMax, "messages kept per channel")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest message text in bytes")
	fs.Float64Var(&c.MessagesPerSecond, "messages-per-second", c.MessagesPerSecond, "sustained sends per connection")
	fs.IntVar(&c.MessageBurst, "message-burst", c.MessageBurst, "burst of sends per connection")
	fs.IntVar(&c.MaxConnectionsPerUser, "max-connections-per-user", c.MaxConnectionsPerUser, "concurrent WebSockets per user on one server")
	fs.IntVar(&c.MaxConnections, "max-connections", c.MaxConnections, "concurrent WebSockets on one server (past it: close 1013, try again later)")
	fs.IntVar(&c.SendQueueMax, "send-queue-max", c.SendQueueMax, "objects queued for one socket before it is closed as too slow (4408)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "how long a write to a client that stopped reading may block before the socket is closed")
	fs.DurationVar(&c.PongWait, "pong-wait", c.PongWait, "how long a client may stay silent (pinged at 9/10 of it) before its socket is closed as dead")
	fs.StringVar(&origins, "allowed-origins", origins, "comma-separated extra origins allowed for WebSocket and cookie-authenticated requests (e.g. https://chat.example.com)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", c.BcryptCost, "bcrypt cost for new password hashes (4..31)")
	fs.IntVar(&c.BcryptConcurrency, "bcrypt-concurrency", c.BcryptConcurrency, "simultaneous bcrypt computations (0 = half the CPUs, at least 1)")
	fs.IntVar(&c.LoginAttemptsPerMinute, "login-attempts-per-minute", c.LoginAttemptsPerMinute, "failed logins allowed as one username from one client address each minute")
	fs.IntVar(&c.LoginAttemptsPerIPPerMinute, "login-attempts-per-ip-per-minute", c.LoginAttemptsPerIPPerMinute, "failed logins allowed from one client address each minute, whatever the usernames")
	fs.StringVar(&proxies, "trusted-proxies", proxies, "comma-separated CIDRs of the proxies in front of the server, whose X-Forwarded-For/-Proto count (e.g. 10.0.0.0/8); empty = trust none")
	fs.DurationVar(&c.PresenceTTL, "presence-ttl", c.PresenceTTL, "how long presence outlives a crashed server (heartbeats every third of it)")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", c.ShutdownGrace, "how long to wait for clients on SIGTERM")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "listen address for /debug/pprof/ profiles (empty = off; e.g. 127.0.0.1:6060)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatserver [flags]\n\nEvery flag can also be set by its environment variable, e.g. --redis-url by %s.\n\nFlags:\n", EnvName("redis-url"))
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s (env %s, default %q)\n    \t%s\n", f.Name, EnvName(f.Name), f.DefValue, f.Usage)
		})
	}

	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || lookupEnv == nil {
			return
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok {
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return Config{}, err
	}
	c.Channels = SplitList(channels)
	c.AllowedOrigins = SplitList(origins)
	c.TrustedProxies = SplitList(proxies)
	c.Registration = Registration(registration)
	c.Admins = SplitList(admins)
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParsePrefixes parses CIDRs such as 10.0.0.0/8 or fd00::/8; a bare address
// stands for itself alone.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR like 10.0.0.0/8 or an address", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

var channelName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidChannelName reports whether name is a valid public channel name
// (DNS-label-like: lower-case letters, digits and '-').
func ValidChannelName(name string) bool { return channelName.MatchString(name) }

// Validate checks every field and reports all problems at once, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(flagName, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flagName, fmt.Sprintf(format, a...)))
	}
	if c.Addr == "" {
		bad("addr", "must not be empty")
	}
	if ns, name, ok := strings.Cut(c.Room, "/"); !ok || ns == "" || name == "" || strings.ContainsAny(c.Room, "{}\x00 ") {
		bad("room", "must be namespace/name, got %q", c.Room)
	}
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil {
			bad("redis-url", "%v", err)
		} else if !map[string]bool{"redis": true, "rediss": true, "redis-sentinel": true, "redis-cluster": true, "unix": true}[u.Scheme] {
			bad("redis-url", "scheme %q is not one of redis, rediss, redis-sentinel, redis-cluster, unix", u.Scheme)
		}
	}
	if len(c.Channels) == 0 || len(c.Channels) > 100 {
		bad("channels", "need 1..100 channels, got %d", len(c.Channels))
	}
	seen := map[string]bool{}
	for _, ch := range c.Channels {
		if !ValidChannelName(ch) {
			bad("channels", "%q is not a valid channel name (lower-case letters, digits, '-', at most 63)", ch)
		}
		if seen[ch] {
			bad("channels", "%q is listed twice", ch)
		}
		seen[ch] = true
	}
	if c.Registration != RegistrationOpen && c.Registration != RegistrationClosed {
		bad("registration", "must be Open or Closed, got %q", c.Registration)
	}
	for _, a := range c.Admins {
		if !protocol.ValidUsername(a) {
			bad("admins", "%q is not a username (3-32 of a-z, 0-9, '_', '.', '-')", a)
		}
	}
	if c.MaxChannelsPerUser < 1 || c.MaxChannelsPerUser > 10000 {
		bad("max-channels-per-user", "must be 1..10000, got %d", c.MaxChannelsPerUser)
	}
	if c.MaxChannelMembers < 2 || c.MaxChannelMembers > 1000000 {
		bad("max-channel-members", "must be 2..1000000, got %d", c.MaxChannelMembers)
	}
	if c.SessionTTL < time.Minute {
		bad("session-ttl", "must be at least 1m, got %s", c.SessionTTL)
	}
	if c.HistoryMax < 1 {
		bad("history-max", "must be positive, got %d", c.HistoryMax)
	}
	if c.MaxMessageBytes < 1 || c.MaxMessageBytes > 1<<20 {
		bad("max-message-bytes", "must be 1..1048576, got %d", c.MaxMessageBytes)
	}
	if c.MessagesPerSecond <= 0 {
		bad("messages-per-second", "must be positive, got %v", c.MessagesPerSecond)
	}
	if c.MessageBurst < 1 {
		bad("message-burst", "must be at least 1, got %d", c.MessageBurst)
	}
	if c.MaxConnections < 1 {
		bad("max-connections", "must be at least 1, got %d", c.MaxConnections)
	}
	if c.SendQueueMax < 16 || c.SendQueueMax > 1<<20 {
		bad("send-queue-max", "must be 16..1048576, got %d", c.SendQueueMax)
	}
	if c.RedisMinReplicaAcks < -1 || c.RedisMinReplicaAcks > 10 {
		bad("redis-min-replica-acks", "must be -1 (auto) or 0..10, got %d", c.RedisMinReplicaAcks)
	}
	// Under go-redis' 3 s read timeout, and under the 5 s a send may take.
	if c.RedisReplicaAckTimeout < 10*time.Millisecond || c.RedisReplicaAckTimeout > 3*time.Second {
		bad("redis-replica-ack-timeout", "must be 10ms..3s, got %s", c.RedisReplicaAckTimeout)
	}
	if c.PongWait < time.Second || c.PongWait > 10*time.Minute {
		bad("pong-wait", "must be 1s..10m, got %s", c.PongWait)
	}
	if c.WriteTimeout < time.Second || c.WriteTimeout > 5*time.Minute {
		bad("write-timeout", "must be 1s..5m, got %s", c.WriteTimeout)
	}
	if c.MaxConnectionsPerUser < 1 {
		bad("max-connections-per-user", "must be at least 1, got %d", c.MaxConnectionsPerUser)
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			bad("allowed-origins", "%q is not an origin like https://chat.example.com", o)
		}
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		bad("bcrypt-cost", "must be 4..31, got %d", c.BcryptCost)
	}
	if c.BcryptConcurrency < 0 {
		bad("bcrypt-concurrency", "must not be negative, got %d", c.BcryptConcurrency)
	}
	if c.LoginAttemptsPerMinute < 1 {
		bad("login-attempts-per-minute", "must be at least 1, got %d", c.LoginAttemptsPerMinute)
	}
	if c.LoginAttemptsPerIPPerMinute < c.LoginAttemptsPerMinute {
		// Else the per-username budget could never be reached.
		bad("login-attempts-per-ip-per-minute", "must be at least --login-attempts-per-minute (%d), got %d", c.LoginAttemptsPerMinute, c.LoginAttemptsPerIPPerMinute)
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		bad("trusted-proxies", "%v", err)
	}
	if c.PresenceTTL < time.Second || c.PresenceTTL > 10*time.Minute {
		bad("presence-ttl", "must be 1s..10m, got %s", c.PresenceTTL)
	}
	if c.ShutdownGrace < 0 {
		bad("shutdown-grace", "must not be negative")
	}
	if _, ok := map[string]bool{"debug": true, "info": true, "warn": true, "error": true}[c.LogLevel]; !ok {
		bad("log-level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return errors.Join(errs...)
}

// Args renders c as command-line flags that Load parses back into c
// (minus RedisPassword, which belongs in the environment). Flags equal to
// their defaults are left out so pod specs stay short.
func (c Config) Args() []string {
	d := Default()
	var args []string
	add := func(name, v, def string) {
		if v != def {
			args = append(args, "--"+name+"="+v)
		}
	}
	add("addr", c.Addr, d.Addr)
	add("room", c.Room, d.Room)
	add("redis-url", c.RedisURL, d.RedisURL)
	add("data-dir", c.DataDir, d.DataDir)
	add("admins", strings.Join(c.Admins, ","), "")
	add("max-channels-per-user", strconv.Itoa(c.MaxChannelsPerUser), strconv.Itoa(d.MaxChannelsPerUser))
	add("max-channel-members", strconv.Itoa(c.MaxChannelMembers), strconv.Itoa(d.MaxChannelMembers))
	add("redis-min-replica-acks", strconv.Itoa(c.RedisMinReplicaAcks), strconv.Itoa(d.RedisMinReplicaAcks))
	add("redis-replica-ack-timeout", c.RedisReplicaAckTimeout.String(), d.RedisReplicaAckTimeout.String())
	add("channels", strings.Join(c.Channels, ","), strings.Join(d.Channels, ","))
	add("registration", string(c.Registration), string(d.Registration))
	add("bootstrap-users-file", c.BootstrapUsersFile, d.BootstrapUsersFile)
	add("session-ttl", c.SessionTTL.String(), d.SessionTTL.String())
	add("history-max", strconv.Itoa(c.HistoryMax), strconv.Itoa(d.HistoryMax))
	add("max-message-bytes", strconv.Itoa(c.MaxMessageBytes), strconv.Itoa(d.MaxMessageBytes))
	add("messages-per-second", strconv.FormatFloat(c.MessagesPerSecond, 'g', -1, 64), strconv.FormatFloat(d.MessagesPerSecond, 'g', -1, 64))
	add("message-burst", strconv.Itoa(c.MessageBurst), strconv.Itoa(d.MessageBurst))
	add("max-connections-per-user", strconv.Itoa(c.MaxConnectionsPerUser), strconv.Itoa(d.MaxConnectionsPerUser))
	add("max-connections", strconv.Itoa(c.MaxConnections), strconv.Itoa(d.MaxConnections))
	add("send-queue-max", strconv.Itoa(c.SendQueueMax), strconv.Itoa(d.SendQueueMax))
	add("write-timeout", c.WriteTimeout.String(), d.WriteTimeout.String())
	add("pong-wait", c.PongWait.String(), d.PongWait.String())
	add("allowed-origins", strings.Join(c.AllowedOrigins, ","), "")
	add("bcrypt-cost", strconv.Itoa(c.BcryptCost), strconv.Itoa(d.BcryptCost))
	add("bcrypt-concurrency", strconv.Itoa(c.BcryptConcurrency), strconv.Itoa(d.BcryptConcurrency))
	add("login-attempts-per-minute", strconv.Itoa(c.LoginAttemptsPerMinute), strconv.Itoa(d.LoginAttemptsPerMinute))
	add("login-attempts-per-ip-per-minute", strconv.Itoa(c.LoginAttemptsPerIPPerMinute), strconv.Itoa(d.LoginAttemptsPerIPPerMinute))
	add("trusted-proxies", strings.Join(c.TrustedProxies, ","), "")
	add("presence-ttl", c.PresenceTTL.String(), d.PresenceTTL.String())
	add("shutdown-grace", c.ShutdownGrace.String(), d.ShutdownGrace.String())
	add("log-level", c.LogLevel, d.LogLevel)
	add("debug-addr", c.DebugAddr, d.DebugAddr)
	sort.Strings(args)
	return args
}

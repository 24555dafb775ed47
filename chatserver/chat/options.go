package chat

import (
	"log/slog"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/metrics"
)

// Options configure a Service.
type Options struct {
	// Pod identifies this server in presence marks and events.
	Pod string
	// Channels are the room's default channels: everyone is in them.
	Channels []string
	// Admins are the room's admins: they may add anyone to, and remove
	// anyone from, any channel people created.
	Admins []string
	// Membership bounds channels people create.
	Membership        MemberLimits
	HistoryMax        int
	MaxMessageBytes   int
	MessagesPerSecond float64
	MessageBurst      int
	MaxConnsPerUser   int
	// MaxConns bounds all sockets on this server (0: unbounded).
	MaxConns int
	// PresenceTTL is how long a server's presence marks live without a
	// heartbeat; heartbeats run every third of it. A crashed server's users go
	// offline within about PresenceTTL plus one sweep.
	PresenceTTL time.Duration
	// SessionCheck is how often a connection re-validates its session (which
	// also slides the session's expiry while the person is connected).
	SessionCheck time.Duration
	// MissedEventsCheck is how soon every socket's session check has run
	// after the feed says events were missed (spread over it, so a server's
	// sockets do not all read storage the moment it is back); at most
	// SessionCheck.
	MissedEventsCheck time.Duration
	// SendQueueMax bounds the objects queued for one socket; past it the
	// client is too slow and is disconnected.
	SendQueueMax int
	// WriteTimeout is how long a write to a socket may block (the client
	// stopped reading) before the socket is closed.
	WriteTimeout time.Duration
	// PongWait is how long a socket may stay silent: pings go out at 9/10 of
	// it, and a peer that answers neither them nor anything else is closed.
	PongWait time.Duration
	// ResumeWindow is how long a new socket holds live messages back for
	// the client's first frame, counted from when the server starts reading
	// it (default 2 s).
	ResumeWindow time.Duration
	// Search finds messages by their words (search.Index); nil: search
	// answers ErrNoSearch.
	Search  Searcher
	Logger  *slog.Logger
	Metrics *metrics.Metrics
}

// withDefaults fills in what was left zero.
func (o Options) withDefaults() Options {
	if o.PresenceTTL <= 0 {
		o.PresenceTTL = 30 * time.Second
	}
	if o.SessionCheck <= 0 {
		o.SessionCheck = time.Minute
	}
	if o.MissedEventsCheck <= 0 {
		o.MissedEventsCheck = 5 * time.Second
	}
	o.MissedEventsCheck = min(o.MissedEventsCheck, o.SessionCheck)
	if o.SendQueueMax <= 0 {
		o.SendQueueMax = 4096
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = writeWait
	}
	if o.PongWait <= 0 {
		o.PongWait = pongWait
	}
	if o.ResumeWindow <= 0 {
		o.ResumeWindow = resumeWindow
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	return o
}

// Limits on what one request may ask of storage.
const (
	maxDMs = 1000
	// maxJoined bounds the created channels read for one person: at least
	// any --max-channels-per-user allows.
	maxJoined      = 10000
	maxOnline      = 1000
	maxUnread      = 1000
	maxResumeBatch = 500
	maxResumeTotal = 10000
	// MaxHistoryPage bounds GET .../messages?limit.
	MaxHistoryPage = 200
)

package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// HelloConfig describes one run of the "hello" subcommand: what one
// person's connect costs (the hello object and the time to it) when they are
// in many channels of a room with many people, and what the people
// directory costs to page through. Zero paths are found as Run finds them.
type HelloConfig struct {
	ChatServer  string
	RedisServer string
	Backend     string // "redis" or "memory"
	People      int
	Channels    int // created channels the measured person is in
	// MessagesPerChannel are sent into each channel before measuring, so
	// that hello's lastId and unread are real figures, not empty ones.
	MessagesPerChannel int
	Connects           int // connects timed per scenario
	Concurrency        int // connects at once in the concurrent scenario (0: not run)
	DirectoryWalks     int // walks through every page of the people directory
	Prefix             string
	Requests           int // repetitions of each single-page request
	BcryptCost         int
	ServerArgs         []string
	WorkDir            string
	Timeout            time.Duration
	// Settle is the pause after setup and after each scenario, for the
	// server's background work (subscriptions, stream reads) to end.
	Settle time.Duration
	// CPUProfile, when set, is where a CPU profile of the chat server is
	// written, taken over ProfileSeconds of sequential connects of the
	// measured person (with or without ProfileOthersOnline).
	CPUProfile          string
	ProfileSeconds      int
	ProfileOthersOnline bool
}

// The people whose parts the run writes: the measured person, the one who
// creates the channels and posts in them (and whose open socket is the
// "others online" of a scenario), and one in no created channel.
const (
	helloPerson = 0
	helloOwner  = 1
	helloBare   = 2
)

// helloPage is the directory's page size: the most the API gives.
const helloPage = 200

func (cfg *HelloConfig) prepare() error {
	switch {
	case cfg.Backend != "redis" && cfg.Backend != "memory":
		return errors.New("--backend: want redis or memory")
	case cfg.People < 3:
		return errors.New("--people: at least 3 (the measured person, the channels' owner, one in no channel)")
	case cfg.Channels < 0 || cfg.Channels > 9000:
		return errors.New("--channels: 0..9000 (the server allows at most 10,000 per person)")
	case cfg.Connects < 1:
		return errors.New("--connects: at least 1")
	case cfg.Concurrency < 0 || cfg.MessagesPerChannel < 0 || cfg.DirectoryWalks < 0 || cfg.Requests < 0:
		return errors.New("--concurrency, --messages-per-channel, --directory-walks and --requests may not be negative")
	case cfg.Settle < 0:
		return errors.New("--settle may not be negative")
	case cfg.CPUProfile != "" && cfg.ProfileSeconds < 1:
		return errors.New("--profile-seconds: at least 1 with --cpuprofile")
	}
	return nil
}

// helloBench is one hello run: the coordinator that started the server, and
// the tool's own view of the room it filled.
type helloBench struct {
	c         *coordinator
	cfg       HelloConfig
	log       *slog.Logger
	srv       *server
	debugAddr string // the server's pprof listener, with CPUProfile
	dialer    *websocket.Dialer
	channels  []string
	owner     *ownerSocket
	res       *HelloResults
}

// RunHello is the "hello" subcommand from start to finish: one chat server
// (and Redis) on loopback, People users, Channels channels that one person
// joins, then the measurements. Like Run, it returns what it measured
// even when it fails part way.
func RunHello(ctx context.Context, cfg HelloConfig, log *slog.Logger) (*HelloResults, error) {
	if err := cfg.prepare(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	// The server's limits lifted where setup would meet them: the owner
	// creates every channel, the person is in all of them, and the
	// concurrent scenario opens several sockets as one person.
	args := []string{
		"--max-channels-per-user", strconv.Itoa(max(1000, cfg.Channels+10)),
		"--max-connections-per-user", strconv.Itoa(cfg.Concurrency + 8),
	}
	var debugAddr string
	if cfg.CPUProfile != "" {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		debugAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args = append(args, "--debug-addr", debugAddr)
	}
	ccfg := Config{
		Target: "hubbub", ChatServer: cfg.ChatServer, RedisServer: cfg.RedisServer, Backend: cfg.Backend,
		Servers: 1, Conns: cfg.People, Users: cfg.People, Channel: "general", BcryptCost: cfg.BcryptCost,
		ServerArgs: append(args, cfg.ServerArgs...), WorkDir: cfg.WorkDir,
	}
	if err := ccfg.fillPaths(); err != nil {
		return nil, err
	}
	log.Info("logs", "dir", ccfg.WorkDir)
	c := newCoordinator(ccfg, log)
	defer c.stopAll()
	h := &helloBench{
		c: c, cfg: cfg, log: log, debugAddr: debugAddr,
		dialer: &websocket.Dialer{HandshakeTimeout: 30 * time.Second},
		res: &HelloResults{Machine: machine(), Config: HelloResultConfig{
			Backend: cfg.Backend, People: cfg.People, Channels: cfg.Channels, MessagesPerChannel: cfg.MessagesPerChannel,
			Connects: cfg.Connects, Concurrency: cfg.Concurrency, ServerArgs: ccfg.ServerArgs,
		}},
	}
	err := h.run(ctx)
	if h.owner != nil {
		h.owner.close()
	}
	return h.res, err
}

func (h *helloBench) run(ctx context.Context) error {
	t0 := time.Now()
	if err := h.c.startServers(ctx); err != nil {
		return err
	}
	h.srv = h.c.servers[0]
	if err := h.c.createUsers(ctx); err != nil {
		return err
	}
	h.res.Setup.UsersSeconds = time.Since(t0).Seconds()
	if err := h.fill(ctx); err != nil {
		return err
	}
	h.res.ServerRSSMiBAfterSetup = h.serverRSSMiB()

	person := h.c.tokens[helloPerson]
	many := fmt.Sprintf("%d channels", h.cfg.Channels)
	if err := h.scenario(ctx, many+", others online in them", person, 1); err != nil {
		return err
	}
	if h.cfg.Concurrency > 0 {
		if err := h.scenario(ctx, fmt.Sprintf("%s, others online, %d at once", many, h.cfg.Concurrency), person, h.cfg.Concurrency); err != nil {
			return err
		}
	}
	if h.cfg.CPUProfile != "" && h.cfg.ProfileOthersOnline {
		if err := h.profile(ctx, person); err != nil {
			return err
		}
	}
	// Nobody else online: every connect then follows the person's channels
	// afresh, and their close unfollows them.
	h.owner.close()
	h.owner = nil
	if err := h.settle(ctx); err != nil {
		return err
	}
	if err := h.scenario(ctx, many+", nobody else online", person, 1); err != nil {
		return err
	}
	if h.cfg.CPUProfile != "" && !h.cfg.ProfileOthersOnline {
		if err := h.profile(ctx, person); err != nil {
			return err
		}
	}
	if err := h.scenario(ctx, "no created channel", h.c.tokens[helloBare], 1); err != nil {
		return err
	}
	h.res.ServerRSSMiBAfterConnects = h.serverRSSMiB()
	if err := h.requests(ctx); err != nil {
		return err
	}
	return h.probeStorage(ctx)
}

// fill creates the channels (the owner's), makes the measured person a
// member of each, and posts the messages; then the owner's socket stays
// open, following every channel, for the "others online" scenarios.
func (h *helloBench) fill(ctx context.Context) error {
	owner, person := h.c.tokens[helloOwner], h.c.tokens[helloPerson]
	h.channels = make([]string, h.cfg.Channels)
	for i := range h.channels {
		h.channels[i] = fmt.Sprintf("room-%04d", i)
	}
	t0 := time.Now()
	err := forEach(ctx, len(h.channels), 16, func(i int) error {
		body := map[string]any{"name": h.channels[i], "private": false}
		if err := h.c.callWant(ctx, http.MethodPost, h.srv.url("/api/v1/channels"), owner, body, nil, http.StatusCreated); err != nil {
			return fmt.Errorf("creating %s: %w", h.channels[i], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.res.Setup.ChannelsSeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	err = forEach(ctx, len(h.channels), 16, func(i int) error {
		if err := h.c.callWant(ctx, http.MethodPost, h.srv.url("/api/v1/channels/"+h.channels[i]+"/join"), person, struct{}{}, nil, http.StatusNoContent); err != nil {
			return fmt.Errorf("joining %s: %w", h.channels[i], err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.res.Setup.JoinsSeconds = time.Since(t0).Seconds()
	t0 = time.Now()
	if h.owner, err = h.openOwner(ctx); err != nil {
		return err
	}
	if err := h.owner.post(h.channels, h.cfg.MessagesPerChannel); err != nil {
		return err
	}
	h.res.Setup.MessagesSeconds = time.Since(t0).Seconds()
	h.log.Info("room filled", "channels", len(h.channels), "messages", len(h.channels)*h.cfg.MessagesPerChannel,
		"seconds", h.res.Setup.ChannelsSeconds+h.res.Setup.JoinsSeconds+h.res.Setup.MessagesSeconds)
	return h.settle(ctx)
}

// settle gives the server a moment to finish what the last step set off in
// the background (subscriptions, stream reads), so a scenario does not pay
// for the one before.
func (h *helloBench) settle(ctx context.Context) error {
	select {
	case <-time.After(h.cfg.Settle):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *helloBench) serverRSSMiB() float64 {
	st, err := readProc(h.srv.p.pid())
	if err != nil {
		return 0
	}
	return float64(st.RSSBytes) / (1 << 20)
}

// ownerSocket is the owner's WebSocket: it posts the setup's messages and,
// while open, keeps the channels followed by the server. Its reader
// discards everything but acks and errors.
type ownerSocket struct {
	ws       *websocket.Conn
	inflight chan struct{} // one token per send not yet acked
	acked    atomic.Int64
	mu       sync.Mutex
	errs     []string // error objects the server sent
	done     chan struct{}
	once     sync.Once
}

// ownerWindow bounds sends in flight: the server closes a socket whose
// queue (acks and the messages echoed to it) outgrows --send-queue-max.
const ownerWindow = 256

func (h *helloBench) openOwner(ctx context.Context) (*ownerSocket, error) {
	o, err := openPoster(ctx, h.dialer, "ws://"+h.srv.addr+"/ws", h.c.tokens[helloOwner], ownerWindow)
	if err != nil {
		return nil, fmt.Errorf("owner's socket: %w", err)
	}
	return o, nil
}

// openPoster opens a socket that posts setup's messages, at most window
// of them unacknowledged.
func openPoster(ctx context.Context, d *websocket.Dialer, url, token string, window int) (*ownerSocket, error) {
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	ws, _, err := d.DialContext(ctx, url, hdr)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(64 << 20)
	o := &ownerSocket{ws: ws, inflight: make(chan struct{}, window), done: make(chan struct{})}
	go o.read()
	return o, nil
}

func (o *ownerSocket) read() {
	defer close(o.done)
	for {
		_, frame, err := o.ws.ReadMessage()
		if err != nil {
			return
		}
		for line := range strings.SplitSeq(string(frame), "\n") {
			ack := strings.HasPrefix(line, `{"type":"ack"`)
			if !ack && !strings.HasPrefix(line, `{"type":"error"`) {
				continue
			}
			if !ack {
				o.mu.Lock()
				o.errs = append(o.errs, line)
				o.mu.Unlock()
			}
			o.acked.Add(1)
			select {
			case <-o.inflight:
			default:
			}
		}
	}
}

// post sends perChannel messages into each channel and waits for every ack.
func (o *ownerSocket) post(channels []string, perChannel int) error {
	var frames [][]byte
	for k := range perChannel {
		for i, ch := range channels {
			frames = append(frames, sendFrame(ch, fmt.Sprintf("message %d of %s", k, ch), fmt.Sprintf("setup-%d-%d", k, i)))
		}
	}
	return o.sendAll(frames)
}

// sendFrame is a send of text into channel.
func sendFrame(channel, text, clientID string) []byte {
	b, _ := json.Marshal(map[string]string{"type": "send", "channel": channel, "text": text, "clientId": clientID})
	return b
}

// sendAll sends frames (send objects), at most the socket's window
// unacknowledged, and waits for every ack.
func (o *ownerSocket) sendAll(frames [][]byte) error {
	o.mu.Lock()
	errsBefore := len(o.errs)
	o.mu.Unlock()
	base := o.acked.Load()
	total := base + int64(len(frames))
	for _, b := range frames {
		select {
		case o.inflight <- struct{}{}:
		case <-o.done:
			return errors.New("posting socket closed while posting")
		}
		_ = o.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := o.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			return fmt.Errorf("posting: %w", err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for o.acked.Load() < total {
		select {
		case <-o.done:
			return fmt.Errorf("posting socket closed after %d of %d acks", o.acked.Load()-base, len(frames))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d messages acked after 60 s", o.acked.Load()-base, len(frames))
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if errs := o.errs[errsBefore:]; len(errs) > 0 {
		return fmt.Errorf("%d sends refused, first: %s", len(errs), errs[0])
	}
	return nil
}

func (o *ownerSocket) close() {
	o.once.Do(func() {
		_ = o.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		select {
		case <-o.done:
		case <-time.After(5 * time.Second):
		}
		_ = o.ws.Close()
	})
}

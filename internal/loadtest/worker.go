package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// worker holds one worker process's sockets and per-step counters.
type worker struct {
	job      job
	open     atomic.Int64
	step     atomic.Int64 // the step running now, for attributing drops
	quitting atomic.Bool
	steps    [maxSteps]stepCounters
	seq      int64 // next send sequence number; only the sender goroutine uses it
	sender   *wconn
	// target is the message the sender edits or reacts to (Kind edit or
	// react): the id its ack (clientId "target") gave, passed on by the
	// sender's reader.
	target   string
	targetID chan string
	conns    []*wconn // all connected, for a new sender when the server drops one
	poller   *poller
	edge     *edgeWorker // the storm and dm workloads (edge_worker.go); nil otherwise
}

type stepCounters struct {
	delivered, dups, acked, errFrames, dropped atomic.Uint64
	lastRecv                                   atomic.Int64
	hist                                       hist
}

type wconn struct {
	w       *worker
	ws      *websocket.Conn
	hello   chan struct{} // closed at the first hello (hubbub) or at once (baseline)
	helloed bool
	lastSeq []int64   // per sender worker: the highest sequence number seen (-1: none); grown as senders appear
	edge    *edgeConn // the storm and dm workloads: this connection of a socket that reconnects

	// Read through epoll (Linux): the socket, its poller, and the start of
	// a frame still arriving. reading is held by the goroutine reading the
	// socket; again asks it to read once more (see poller.serve).
	fd             int
	poller         *poller
	pending        []byte
	reading, again atomic.Bool
	gone           atomic.Bool

	wmu sync.Mutex // held by writeText (centrifugo_worker.go)
}

// RunWorker is the "worker" subcommand, a process of its own because one
// process may hold at most 20,000 open files here: it reads its job and
// commands from stdin and answers on stdout until told to quit or stdin
// closes.
func RunWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading job: %w", err)
	}
	w := &worker{targetID: make(chan string, 1)}
	if err := json.Unmarshal(line, &w.job); err != nil {
		return fmt.Errorf("decoding job: %w", err)
	}
	enc := json.NewEncoder(stdout)
	if w.poller, err = newPoller(); err != nil {
		return err
	}
	w.edge = newEdgeWorker(w)
	var conns []*wconn
	var dialErrs []string
	var stopped string
	if w.edge != nil {
		conns, dialErrs = w.edge.connect(ctx)
	} else {
		conns, dialErrs, stopped = w.connectAll(ctx)
		// Hand back what the handshakes left behind (their requests,
		// responses and head buffers, up to the GC's 2× of what is live),
		// so that the worker's RSS over the idle sockets is what holding
		// them costs, and leaves that much more memory to the servers.
		debug.FreeOSMemory()
	}
	defer func() {
		w.quitting.Store(true)
		for _, c := range conns {
			c.forget()
			_ = c.ws.Close()
		}
	}()
	ev := event{Event: "ready", Worker: w.job.Worker, Connected: len(conns), Failed: len(w.job.Conns) - len(conns), Stopped: stopped}
	if len(dialErrs) > 5 {
		dialErrs = dialErrs[:5]
	}
	ev.DialErrors = dialErrs
	if err := enc.Encode(ev); err != nil {
		return err
	}
	if len(conns) > 0 {
		w.sender = conns[0]
		w.conns = conns
	}
	for {
		line, err := in.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			return fmt.Errorf("decoding command: %w", err)
		}
		if cmd.Step < 0 || cmd.Step >= maxSteps {
			return fmt.Errorf("step %d out of range", cmd.Step)
		}
		switch cmd.Cmd {
		case "step":
			w.step.Store(int64(cmd.Step))
			sent, errs := w.send(ctx, cmd)
			if err := enc.Encode(event{Event: "sent", Worker: w.job.Worker, Step: cmd.Step, Sent: sent, SendErrors: errs}); err != nil {
				return err
			}
		case "stats":
			c := &w.steps[cmd.Step]
			st := &stepStats{
				Delivered: c.delivered.Load(), Duplicates: c.dups.Load(), Acked: c.acked.Load(),
				ErrFrames: c.errFrames.Load(), Dropped: c.dropped.Load(), Open: int(w.open.Load()),
				LastRecvNS: c.lastRecv.Load(), Hist: c.hist.snapshot(),
			}
			if err := enc.Encode(event{Event: "stats", Worker: w.job.Worker, Step: cmd.Step, Stats: st}); err != nil {
				return err
			}
		case "quit":
			return enc.Encode(event{Event: "bye", Worker: w.job.Worker})
		default:
			if w.edge == nil {
				return fmt.Errorf("unknown command %q", cmd.Cmd)
			}
			ev, err := w.edge.command(ctx, cmd)
			if err != nil {
				return err
			}
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
	}
}

// connectAll opens the job's sockets with bounded concurrency (and pace),
// waits for each one's hello, and returns those that made it, and why it
// stopped before the last one if it did: the connect timeout, or the
// machine's memory falling below the job's floor. Handshakes in flight when
// it stops may still finish.
func (w *worker) connectAll(ctx context.Context) ([]*wconn, []string, string) {
	ctx, cancel := context.WithTimeout(ctx, w.job.ConnectTimeout)
	defer cancel()
	dialing, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if w.job.MemoryFloor > 0 {
		go watchMemory(dialing, w.job.MemoryFloor, stop)
	}
	d := w.dialer()
	conns, errs := dialEach(dialing, len(w.job.Conns), w.job.DialConcurrency, w.job.DialRate, func(i int) (*wconn, error) {
		return w.dial(ctx, d, w.job.Conns[i])
	})
	var stopped string
	if len(conns)+len(errs) < len(w.job.Conns) {
		// dialEach stopped because dialing ended or its deadline passed:
		// its cause is set now or in a moment.
		<-dialing.Done()
		switch cause := context.Cause(dialing); {
		case errors.Is(cause, errMemoryFloor):
			stopped = cause.Error()
		case errors.Is(cause, context.DeadlineExceeded):
			stopped = fmt.Sprintf("connect timeout (%s)", w.job.ConnectTimeout)
		case cause != nil:
			stopped = cause.Error()
		}
	}
	return conns, errs, stopped
}

// errMemoryFloor is why watchMemory stops the dialing.
var errMemoryFloor = errors.New("memory floor")

// watchMemory stops the dialing (stop) once the machine's MemAvailable
// falls below floor bytes: the sockets, the servers and the kernel share
// one machine, and a run toward what it holds should end with the count
// it reached, not with the OOM killer taking a server.
func watchMemory(ctx context.Context, floor int64, stop context.CancelCauseFunc) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m := readMeminfo().MemAvailable; m > 0 && m < floor {
			stop(fmt.Errorf("%w: MemAvailable %d MiB, under %d MiB", errMemoryFloor, m>>20, floor>>20))
			return
		}
	}
}

// dialer dials from the worker's own source address, and leaves the frames
// after the handshake to the worker's reader (headConn).
func (w *worker) dialer() *websocket.Dialer {
	var local net.Addr
	if w.job.LocalIP != "" {
		local = &net.TCPAddr{IP: net.ParseIP(w.job.LocalIP)}
	}
	nd := &net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}
	return &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &headConn{TCPConn: c.(*net.TCPConn)}, nil
		},
		HandshakeTimeout: 30 * time.Second,
		// gorilla keeps its read buffer for the socket's life, but reads
		// only the handshake's response head through it (headConn):
		// small is enough. Writes (the sender's, a socket's first frame)
		// borrow a buffer for the frame only. A worker holds up to 19,000
		// sockets, so each KB here is 19 MB of the machine the servers
		// are measured on.
		ReadBufferSize:  handshakeReadBuffer,
		WriteBufferSize: 1024,
		WriteBufferPool: &writeBuffers,
	}
}

// handshakeReadBuffer is gorilla's read buffer: a 101 response head fits
// (a longer one is read in pieces).
const handshakeReadBuffer = 512

// writeBuffers lends gorilla a write buffer per frame (see dialer).
var writeBuffers sync.Pool

// dialEach calls open(0) .. open(n-1), conc at a time and at most rate a
// second (0: unpaced), until ctx ends, and returns the sockets opened and
// the errors of those that were not.
func dialEach(ctx context.Context, n, conc int, rate float64, open func(i int) (*wconn, error)) ([]*wconn, []string) {
	conns := make([]*wconn, n)
	errs := make([]string, 0)
	var errMu sync.Mutex
	sem := make(chan struct{}, max(1, conc))
	var pace *time.Ticker
	if rate > 0 {
		pace = time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer pace.Stop()
	}
	var wg sync.WaitGroup
	for i := range n {
		if pace != nil {
			select {
			case <-pace.C:
			case <-ctx.Done():
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		// Past the deadline is the end too: a dial's own deadline (the
		// socket's) may fire before the context's timer, and free a slot.
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := open(i)
			if err != nil {
				errMu.Lock()
				errs = append(errs, err.Error())
				errMu.Unlock()
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	out := conns[:0]
	for _, c := range conns {
		if c != nil {
			out = append(out, c)
		}
	}
	return out, errs
}

func (w *worker) dial(ctx context.Context, d *websocket.Dialer, spec connSpec) (*wconn, error) {
	c, err := w.dialFirst(ctx, d, spec, []byte(`{"type":"resume","since":{}}`), nil)
	if err == nil && c.gone.Load() {
		// Refused (a bad token, a full server): a failed dial, not a socket.
		return nil, fmt.Errorf("%s closed the socket before hello", spec.URL)
	}
	return c, err
}

// dialFirst opens a socket that sends first as its first frame (hubbub)
// and keeps its state in x (nil: none beyond the wconn), and waits for its
// hello.
func (w *worker) dialFirst(ctx context.Context, d *websocket.Dialer, spec connSpec, first []byte, x *edgeConn) (*wconn, error) {
	h := http.Header{}
	if spec.Token != "" {
		h.Set("Authorization", "Bearer "+spec.Token)
	}
	ws, resp, err := d.DialContext(ctx, spec.URL, h)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", spec.URL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", spec.URL, err)
	}
	ws.SetReadLimit(16 << 20)
	c := &wconn{w: w, ws: ws, hello: make(chan struct{}), edge: x}
	if w.job.Mode == "hubbub" {
		// The server holds live messages until the first client frame: say
		// at once what to resume (for run: nothing).
		_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := ws.WriteMessage(websocket.TextMessage, first); err != nil {
			_ = ws.Close()
			return nil, fmt.Errorf("sending resume: %w", err)
		}
	} else if w.job.Mode == centrifugoTarget {
		if err := c.centrifugoConnect(spec.Token); err != nil {
			_ = ws.Close()
			return nil, err
		}
	} else {
		c.helloed = true
		close(c.hello)
	}
	w.open.Add(1)
	if err := w.startReading(c, ws.NetConn().(*headConn)); err != nil {
		c.lost()
		_ = ws.Close()
		return nil, fmt.Errorf("reading: %w", err)
	}
	select {
	case <-c.hello:
		return c, nil
	case <-ctx.Done():
		_ = ws.Close()
		return nil, fmt.Errorf("waiting for hello: %w", ctx.Err())
	}
}

// lost counts a socket that stopped being read (once).
func (c *wconn) lost() {
	if c.gone.Swap(true) {
		return
	}
	c.w.open.Add(-1)
	if !c.w.quitting.Load() {
		c.w.steps[c.w.step.Load()].dropped.Add(1)
	}
	c.gotHello()
	if e := c.w.edge; e != nil && !c.w.quitting.Load() {
		e.lost(c)
	}
}

// gotHello lets the dialer go on (once).
func (c *wconn) gotHello() {
	if !c.helloed {
		c.helloed = true
		close(c.hello)
	}
}

// send paces this worker's share of a step's messages on its sender socket.
// The step's messages are numbered over all workers (cmd.Rate is this
// worker's share, so the step's rate is cmd.Rate × workers); message j goes
// out at start + j/rate from worker j mod workers. So a slow step (one
// broadcast a second) is spread over the second, not sent by every worker
// at once, and a late tick catches up instead of lowering the rate.
func (w *worker) send(ctx context.Context, cmd command) (sent, errs uint64) {
	if w.sender != nil && w.sender.gone.Load() {
		// The server dropped the sending socket (the baseline drops clients
		// it cannot keep up with): send from another.
		w.sender = nil
		for _, c := range w.conns {
			if !c.gone.Load() {
				w.sender = c
				break
			}
		}
	}
	if w.sender == nil || cmd.Rate <= 0 {
		return 0, 0
	}
	if k := w.job.Kind; (k == KindEdit || k == KindReact) && w.target == "" {
		if err := w.postTarget(ctx); err != nil {
			return 0, 1
		}
	}
	workers := max(1, w.job.Workers)
	rate := cmd.Rate * float64(workers)
	total := int(rate*cmd.Duration.Seconds() + 0.5)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	buf := make([]byte, 0, 256)
	for j := w.job.Worker; j < total; j += workers {
		at := start.Add(time.Duration(float64(j) / rate * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return sent, errs
			}
		}
		seq := w.seq
		w.seq++
		buf = w.appendSend(buf[:0], cmd.Step, seq)
		if err := w.sender.writeText(buf); err != nil {
			errs++
			continue
		}
		sent++
	}
	return sent, errs
}

// appendSend appends send seq of step: a message (or, with Kind edit, an
// edit) whose text carries "hb <step> <sendUnixNano> <worker> <seq>" for
// the receivers to count and time it by, or with Kind react a reaction.
func (w *worker) appendSend(buf []byte, step int, seq int64) []byte {
	switch {
	case w.job.Mode == "hubbub" && w.job.Kind == KindReact:
		// A reaction carries no text to time it by: receivers count it
		// (deliveries.go), with no latency.
		return fmt.Appendf(buf, `{"type":"react","channel":%q,"id":%q,"emoji":"👍","on":%t,"clientId":"k%d.%d"}`,
			w.job.Channel, w.target, seq%2 == 0, step, seq)
	case w.job.Mode == "hubbub" && w.job.Kind == KindEdit:
		buf = fmt.Appendf(buf, `{"type":"edit","channel":%q,"id":%q,"text":"`, w.job.Channel, w.target)
	case w.job.Mode == "hubbub":
		buf = append(buf, `{"type":"send","channel":`...)
		buf = strconv.AppendQuote(buf, w.job.Channel)
		buf = append(buf, `,"text":"`...)
	case w.job.Mode == centrifugoTarget:
		buf = appendCentrifugoPublish(buf, w.job.Channel, step, seq)
	}
	buf = append(buf, markMessage...)
	buf = fmt.Appendf(buf, "%d %d %d %d", step, time.Now().UnixNano(), w.job.Worker, seq)
	switch w.job.Mode {
	case "hubbub":
		return fmt.Appendf(buf, ` load test message","clientId":"k%d.%d"}`, step, seq)
	case centrifugoTarget:
		return append(buf, centrifugoPublishEnd...)
	default:
		return append(buf, " load test message"...)
	}
}

// postTarget posts the message the sender's edits or reactions change, and
// waits for its id.
func (w *worker) postTarget(ctx context.Context) error {
	msg := fmt.Appendf(nil, `{"type":"send","channel":%q,"text":"load test target","clientId":"target"}`, w.job.Channel)
	if err := w.sender.writeText(msg); err != nil {
		return err
	}
	select {
	case w.target = <-w.targetID:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(10 * time.Second):
		return errors.New("no ack for the target message")
	}
}

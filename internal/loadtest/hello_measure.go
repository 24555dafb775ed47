package loadtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// helloObject is the part of hello the tool checks.
type helloObject struct {
	Type     string `json:"type"`
	User     string `json:"user"`
	Channels []struct {
		Name    string `json:"name"`
		LastID  string `json:"lastId"`
		Unread  int    `json:"unread"`
		Default bool   `json:"default"`
	} `json:"channels"`
	Online []string `json:"online"`
}

// connectSample is one connect: from the start of the dial to the 101
// answer, and to the end of the frame that holds hello.
type connectSample struct {
	upgrade, hello time.Duration
	obj            []byte // the hello object (the frame may hold more)
}

// connectOnce opens a socket as token's person, reads hello, and closes
// the socket with the close handshake: the server has then let go of the
// socket (and unfollowed what only it followed) before the next connect.
func (h *helloBench) connectOnce(ctx context.Context, token string) (connectSample, error) {
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	t0 := time.Now()
	ws, resp, err := h.dialer.DialContext(ctx, "ws://"+h.srv.addr+"/ws", hdr)
	if err != nil {
		if resp != nil {
			return connectSample{}, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return connectSample{}, fmt.Errorf("dial: %w", err)
	}
	defer ws.Close()
	s := connectSample{upgrade: time.Since(t0)}
	ws.SetReadLimit(64 << 20)
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, frame, err := ws.ReadMessage()
	if err != nil {
		return s, fmt.Errorf("waiting for hello: %w", err)
	}
	s.hello = time.Since(t0)
	s.obj, _, _ = bytes.Cut(frame, []byte("\n"))
	if !bytes.HasPrefix(s.obj, []byte(`{"type":"hello"`)) {
		return s, fmt.Errorf("first object is not hello: %.80s", s.obj)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	for {
		if _, _, err := ws.NextReader(); err != nil {
			break // the server's close, or the deadline
		}
	}
	return s, nil
}

// scenario times cfg.Connects connects of token's person, conc at a time,
// and what they cost the server (and Redis) in CPU and storage commands.
func (h *helloBench) scenario(ctx context.Context, name, token string, conc int) error {
	n := h.cfg.Connects
	samples := make([]connectSample, n)
	errs := make([]error, n)
	srvBefore, _ := readProc(h.srv.p.pid())
	redisBefore, stats := h.redisSample()
	selfBefore, _ := readProc(os.Getpid())
	machineBefore := machineCPU()
	t0 := time.Now()
	_ = forEach(ctx, n, conc, func(i int) error {
		samples[i], errs[i] = h.connectOnce(ctx, token)
		return nil
	})
	wall := time.Since(t0)
	machineAfter := machineCPU()
	selfAfter, _ := readProc(os.Getpid())
	srvAfter, _ := readProc(h.srv.p.pid())
	redisAfter, statsAfter := h.redisSample()
	if err := ctx.Err(); err != nil {
		return err
	}
	r := ConnectResult{Scenario: name, Concurrency: conc, Connects: n, PerSecond: float64(n) / wall.Seconds()}
	others := (machineAfter - machineBefore) - (srvAfter.CPU - srvBefore.CPU) - (redisAfter - redisBefore) - (selfAfter.CPU - selfBefore.CPU)
	r.OtherCores = max(0, others.Seconds()/wall.Seconds())
	h.log.Debug("cpu", "machine", machineAfter-machineBefore, "server", srvAfter.CPU-srvBefore.CPU, "redis", redisAfter-redisBefore, "self", selfAfter.CPU-selfBefore.CPU, "wall", wall)
	var up, all []time.Duration
	var first []byte
	for i, s := range samples {
		if errs[i] != nil {
			r.Failed++
			if r.FirstError == "" {
				r.FirstError = errs[i].Error()
			}
			continue
		}
		up, all = append(up, s.upgrade), append(all, s.hello)
		if first == nil {
			first = s.obj
		}
	}
	r.Upgrade, r.Hello = summarize(up), summarize(all)
	done := float64(n - r.Failed)
	if done > 0 {
		r.ServerCPUms = float64((srvAfter.CPU - srvBefore.CPU).Microseconds()) / 1000 / done
		r.RedisCPUms = float64((redisAfter - redisBefore).Microseconds()) / 1000 / done
		r.Redis = commandsPerConnect(stats, statsAfter, done)
	}
	if first != nil {
		if err := describeHello(&r, first); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	h.res.Connects = append(h.res.Connects, r)
	h.log.Info("connects", "scenario", name, "connects", n, "failed", r.Failed, "helloBytes", r.HelloBytes, "channels", r.Channels,
		"p50ms", r.Hello.P50ms, "p99ms", r.Hello.P99ms, "maxMs", r.Hello.MaxMs, "serverCPUms", fmt.Sprintf("%.2f", r.ServerCPUms))
	if r.Failed > 0 {
		return fmt.Errorf("%s: %d of %d connects failed, first: %s", name, r.Failed, n, r.FirstError)
	}
	return h.settle(ctx)
}

// describeHello fills in what hello held: its size, plain and gzipped
// (what permessage-deflate could make of it), and its lists.
func describeHello(r *ConnectResult, obj []byte) error {
	var hello helloObject
	if err := json.Unmarshal(obj, &hello); err != nil {
		return fmt.Errorf("decoding hello: %w", err)
	}
	r.HelloBytes = len(obj)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(obj)
	_ = zw.Close()
	r.HelloGzipBytes = z.Len()
	r.Channels, r.Online = len(hello.Channels), len(hello.Online)
	for _, c := range hello.Channels {
		r.Unread += c.Unread
		if c.Default {
			r.DefaultChannels++
		}
	}
	return nil
}

// redisSample is Redis's CPU time and command counters now (zero without
// Redis).
func (h *helloBench) redisSample() (time.Duration, map[string]commandStat) {
	if h.c.redis == nil {
		return 0, nil
	}
	st, _ := readProc(h.c.redis.pid())
	info, err := redisInfo(h.c.redisAt, "commandstats")
	if err != nil {
		h.log.Warn("reading redis commandstats", "err", err)
		return st.CPU, nil
	}
	return st.CPU, parseCommandStats(info)
}

type commandStat struct{ calls, usec int64 }

// parseCommandStats reads INFO commandstats lines such as
// "cmdstat_xrevrange:calls=1000,usec=1234,usec_per_call=1.23,...".
func parseCommandStats(info string) map[string]commandStat {
	out := map[string]commandStat{}
	for line := range strings.SplitSeq(info, "\n") {
		name, fields, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st commandStat
		for f := range strings.SplitSeq(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out
}

// commandsPerConnect is what each command grew by from before to after,
// per connect, busiest first.
func commandsPerConnect(before, after map[string]commandStat, connects float64) []RedisCommand {
	var out []RedisCommand
	for name, a := range after {
		b := before[name]
		if a.calls-b.calls <= 0 || name == "info" { // info: the tool's own sampling
			continue
		}
		out = append(out, RedisCommand{Command: name,
			CallsPerConnect: float64(a.calls-b.calls) / connects, UsecPerConnect: float64(a.usec-b.usec) / connects})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].UsecPerConnect != out[j].UsecPerConnect {
			return out[i].UsecPerConnect > out[j].UsecPerConnect
		}
		return out[i].Command < out[j].Command
	})
	return out
}

// profile writes a CPU profile of the server, taken while the person
// connects over and over.
func (h *helloBench) profile(ctx context.Context, token string) error {
	u := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", h.debugAddr, h.cfg.ProfileSeconds)
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			f, err := os.Create(h.cfg.CPUProfile)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, resp.Body)
			return errors.Join(err, f.Close())
		}()
	}()
	connects := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("profiling: %w", err)
			}
			h.res.Profile = fmt.Sprintf("%s: %d s, %d connects", h.cfg.CPUProfile, h.cfg.ProfileSeconds, connects)
			h.log.Info("profile written", "file", h.cfg.CPUProfile, "connects", connects)
			return h.settle(ctx)
		default:
		}
		if _, err := h.connectOnce(ctx, token); err != nil {
			return fmt.Errorf("profiling: %w", err)
		}
		connects++
	}
}

// requests times the HTTP reads a client makes besides the socket: the
// person's channel list (hello's channels, without a socket), every page of
// the people directory, and a prefix search.
func (h *helloBench) requests(ctx context.Context) error {
	person := h.c.tokens[helloPerson]
	err := h.repeat(ctx, "GET /api/v1/channels (the measured person)", h.srv.url("/api/v1/channels"), person, func(b []byte) (int, error) {
		var v struct{ Channels []json.RawMessage }
		err := json.Unmarshal(b, &v)
		return len(v.Channels), err
	})
	if err != nil {
		return err
	}
	if err := h.walkDirectory(ctx, person); err != nil {
		return err
	}
	q := url.Values{"q": {h.cfg.Prefix}, "limit": {strconv.Itoa(helloPage)}}
	return h.repeat(ctx, "GET /api/v1/users?"+q.Encode(), h.srv.url("/api/v1/users?"+q.Encode()), person, countUsers)
}

type usersPage struct {
	Users []struct {
		Username string `json:"username"`
		Online   bool   `json:"online"`
	} `json:"users"`
	Next string `json:"next"`
}

func countUsers(b []byte) (int, error) {
	var p usersPage
	err := json.Unmarshal(b, &p)
	return len(p.Users), err
}

// get times one GET, to the end of its body.
func (h *helloBench) get(ctx context.Context, u, token string) ([]byte, time.Duration, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	t0 := time.Now()
	resp, err := h.c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	d := time.Since(t0)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: HTTP %d: %.200s", u, resp.StatusCode, b)
	}
	return b, d, err
}

// repeat times cfg.Requests of one GET; items counts what an answer holds.
func (h *helloBench) repeat(ctx context.Context, name, u, token string, items func([]byte) (int, error)) error {
	if h.cfg.Requests == 0 {
		return nil
	}
	r := RequestResult{Request: name}
	var ds []time.Duration
	for range h.cfg.Requests {
		b, d, err := h.get(ctx, u, token)
		if err != nil {
			return err
		}
		ds = append(ds, d)
		r.Bytes = len(b)
		if r.Items, err = items(b); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	r.Latency = summarize(ds)
	h.res.Requests = append(h.res.Requests, r)
	h.log.Info("requests", "request", name, "n", len(ds), "p50ms", r.Latency.P50ms, "p99ms", r.Latency.P99ms, "items", r.Items)
	return nil
}

// walkDirectory pages through the whole people directory, cfg.DirectoryWalks
// times, and checks that each walk met every person once.
func (h *helloBench) walkDirectory(ctx context.Context, token string) error {
	if h.cfg.DirectoryWalks == 0 {
		return nil
	}
	r := RequestResult{Request: fmt.Sprintf("GET /api/v1/users?limit=%d&after=…, every page (%d walks)", helloPage, h.cfg.DirectoryWalks)}
	var pages, walks []time.Duration
	for range h.cfg.DirectoryWalks {
		seen := map[string]bool{}
		after := ""
		var walk time.Duration
		for page := 0; ; page++ {
			q := url.Values{"limit": {strconv.Itoa(helloPage)}, "after": {after}}
			b, d, err := h.get(ctx, h.srv.url("/api/v1/users?"+q.Encode()), token)
			if err != nil {
				return err
			}
			var p usersPage
			if err := json.Unmarshal(b, &p); err != nil {
				return fmt.Errorf("directory page: %w", err)
			}
			if page == 0 && r.FirstMs == 0 {
				r.FirstMs = float64(d.Microseconds()) / 1000
			}
			pages = append(pages, d)
			walk += d
			r.Bytes = max(r.Bytes, len(b))
			for _, u := range p.Users {
				if seen[u.Username] {
					return fmt.Errorf("directory: %s listed twice in one walk", u.Username)
				}
				seen[u.Username] = true
			}
			if p.Next == "" {
				break
			}
			after = p.Next
		}
		if len(seen) != h.cfg.People {
			return fmt.Errorf("directory: a walk listed %d people, want %d", len(seen), h.cfg.People)
		}
		walks = append(walks, walk)
		r.Items = len(seen)
	}
	r.Latency = summarize(pages)
	w := summarize(walks)
	r.WalkMs = w.P50ms
	h.res.Requests = append(h.res.Requests, r)
	h.log.Info("directory", "pages", len(pages), "p50ms", r.Latency.P50ms, "p99ms", r.Latency.P99ms, "walkMs", w.P50ms)
	return nil
}

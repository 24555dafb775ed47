package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// server is one process under test: a chat server, the baseline or a
// Centrifugo node.
type server struct {
	p    *proc
	addr string // host:port
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

func (c *coordinator) startServers(ctx context.Context) error {
	cfg := c.cfg
	if cfg.Target != "baseline" && cfg.Backend == "redis" {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		c.redisAt = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		cmd := exec.Command(cfg.RedisServer, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", cfg.WorkDir,
			"--repl-diskless-sync-delay", "0")
		if c.redis, err = startProc("redis", cmd, filepath.Join(cfg.WorkDir, "redis.log")); err != nil {
			return err
		}
		if err := waitRedis(ctx, c.redisAt, c.redis, 20*time.Second); err != nil {
			return err
		}
		if err := c.startReplicas(ctx, port); err != nil {
			return err
		}
		if err := c.createFloodUser(ctx); err != nil {
			return err
		}
	}
	perUser := (cfg.Conns+cfg.Users-1)/cfg.Users + 1
	var centrifugoKey string
	if cfg.Target == centrifugoTarget {
		var err error
		if centrifugoKey, err = c.centrifugoTokens(); err != nil {
			return err
		}
	}
	for i := range cfg.Servers {
		port, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		var cmd *exec.Cmd
		name := fmt.Sprintf("server-%d", i)
		switch cfg.Target {
		case "baseline":
			self, err := os.Executable()
			if err != nil {
				return err
			}
			cmd = exec.Command(self, "baseline", "--addr", addr)
		case centrifugoTarget:
			if cmd, err = c.centrifugoCommand(i, port, centrifugoKey); err != nil {
				return err
			}
		default:
			args := []string{"--addr", addr, "--room", "bench/load", "--channels", cfg.Channel,
				"--bcrypt-cost", strconv.Itoa(cfg.BcryptCost),
				"--messages-per-second", "1000000", "--message-burst", "1000000",
				"--max-connections-per-user", strconv.Itoa(perUser),
				"--login-attempts-per-minute", "1000000", "--login-attempts-per-ip-per-minute", "1000000", "--log-level", "warn"}
			if cfg.Backend == "redis" {
				args = append(args, "--redis-url", "redis://"+c.redisAt)
			}
			args = append(args, cfg.ServerArgs...)
			cmd = exec.Command(cfg.ChatServer, args...)
		}
		cmd.Env = cleanEnv()
		cmd.Env = append(cmd.Env, cfg.ServerEnv...)
		p, err := startProc(name, cmd, filepath.Join(cfg.WorkDir, name+".log"))
		if err != nil {
			return err
		}
		c.servers = append(c.servers, &server{p: p, addr: addr})
	}
	for _, s := range c.servers {
		if err := waitHTTP(ctx, s.url(c.healthPath()), s.p, 60*time.Second); err != nil {
			return err
		}
	}
	c.log.Info("servers up", "target", cfg.Target, "servers", len(c.servers), "redis", c.redisAt)
	return nil
}

// createFloodUser makes the account the login flood uses, hashed at the
// production bcrypt cost (see bootstrapUsers).
func (c *coordinator) createFloodUser(ctx context.Context) error {
	needed := false
	for _, s := range c.cfg.Steps {
		needed = needed || s.Flood > 0
	}
	if !needed {
		return nil
	}
	c.flood.user, c.flood.pass = "flood-user", "flood-password-123"
	return c.bootstrapUsers(ctx, "flood", []string{c.flood.user + ":" + c.flood.pass}, c.cfg.FloodCost)
}

// bootstrapUsers creates accounts ("username:password" lines) hashed at
// cost: a short-lived chat server with that cost creates them from a
// bootstrap file. The benchmark's servers hash at a low cost so that
// creating thousands of users is quick, but logins that must cost what
// real logins cost need hashes of the production cost.
func (c *coordinator) bootstrapUsers(ctx context.Context, name string, lines []string, cost int) error {
	file := filepath.Join(c.cfg.WorkDir, name+"-users")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(c.cfg.ChatServer, "--addr", addr, "--room", "bench/load", "--channels", c.cfg.Channel,
		"--redis-url", "redis://"+c.redisAt, "--bcrypt-cost", strconv.Itoa(cost),
		"--bootstrap-users-file", file, "--log-level", "warn")
	cmd.Env = cleanEnv()
	p, err := startProc(name+"-setup", cmd, filepath.Join(c.cfg.WorkDir, name+"-setup.log"))
	if err != nil {
		return err
	}
	defer p.stop(10 * time.Second)
	// The server listens only after creating its bootstrap users, one by
	// one: allow a second each (cost 12 takes a quarter of one here).
	return waitHTTP(ctx, "http://"+addr+"/healthz", p, 60*time.Second+time.Duration(len(lines))*time.Second)
}

// call makes one API request: body (when not nil) is sent as JSON, token
// (when set) as a Bearer token, and a 2xx answer is decoded into out (when
// not nil).
func (c *coordinator) call(ctx context.Context, method, url, token string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, nil
}

// callWant is call that fails on any status but the ones wanted.
func (c *coordinator) callWant(ctx context.Context, method, url, token string, body, out any, want ...int) error {
	code, err := c.call(ctx, method, url, token, body, out)
	if err == nil && !slices.Contains(want, code) {
		err = fmt.Errorf("HTTP %d", code)
	}
	return err
}

// userName is the name of the benchmark's user i.
func userName(i int) string { return fmt.Sprintf("bench%d", i) }

// createUsers registers and logs in the benchmark's users through the API,
// spread over the servers, and keeps their tokens.
func (c *coordinator) createUsers(ctx context.Context) error {
	t0 := time.Now()
	c.tokens = make([]string, c.cfg.Users)
	err := forEach(ctx, c.cfg.Users, 32, func(i int) error {
		srv := c.servers[i%len(c.servers)]
		cred := map[string]string{"username": userName(i), "password": "bench-password"}
		if err := c.callWant(ctx, http.MethodPost, srv.url("/api/v1/register"), "", cred, nil, http.StatusCreated, http.StatusConflict); err != nil {
			return fmt.Errorf("user %d: register: %w", i, err)
		}
		var tok struct{ Token string }
		if err := c.callWant(ctx, http.MethodPost, srv.url("/api/v1/login"), "", cred, &tok, http.StatusOK); err != nil {
			return fmt.Errorf("user %d: login: %w", i, err)
		}
		c.tokens[i] = tok.Token
		return nil
	})
	if err != nil {
		return err
	}
	c.log.Info("users created", "users", c.cfg.Users, "seconds", time.Since(t0).Seconds())
	return nil
}

// forEach calls f(0) .. f(n-1) from conc goroutines, so that setup through
// the API is quick without opening a connection per item. It stops at the
// first error and returns it.
func forEach(ctx context.Context, n, conc int, f func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var failed atomic.Bool
	var wg sync.WaitGroup
	for range max(1, min(conc, n)) {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = f(i)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

type serverSample struct {
	rss                     int64
	cpu                     time.Duration
	heap, stack, goroutines float64
	frames, messages        float64
	acks                    buckets // hubbub_ack_latency_seconds
	// Centrifugo's: publication pushes written, and its PUB/SUB lag
	// (publish to broadcast) summed over the publications broadcast.
	pushes, lagSum, lagCount float64
}

// Centrifugo's series behind serverSample's pushes, lagSum and lagCount.
const (
	centrifugoPushes   = `centrifugo_transport_messages_sent{channel_namespace="",frame_type="push_publication",transport="websocket"}`
	centrifugoLagSum   = `centrifugo_node_pub_sub_lag_seconds_sum{channel_namespace=""}`
	centrifugoLagCount = `centrifugo_node_pub_sub_lag_seconds_count{channel_namespace=""}`
)

func (c *coordinator) sampleServers(ctx context.Context) []serverSample {
	out := make([]serverSample, len(c.servers))
	for i, s := range c.servers {
		if s.p.exited() {
			continue // drained (dm --drain)
		}
		if st, err := readProc(s.p.pid()); err == nil {
			out[i].rss, out[i].cpu = st.RSSBytes, st.CPU
		}
		if c.cfg.Target == "baseline" {
			continue // no /metrics; Centrifugo's has the Go figures, not Hubbub's own
		}
		names := []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes",
			"go_goroutines", "hubbub_frames_out_total", `hubbub_objects_out_total{type="message"}`}
		if c.cfg.Target == centrifugoTarget {
			names = append(names, centrifugoPushes, centrifugoLagSum, centrifugoLagCount)
		}
		m, err := scrape(ctx, s.url("/metrics"), names...)
		if err != nil {
			c.log.Warn("scraping metrics", "server", s.addr, "err", err)
			continue
		}
		out[i].heap, out[i].stack, out[i].goroutines = m["go_memstats_heap_inuse_bytes"], m["go_memstats_stack_inuse_bytes"], m["go_goroutines"]
		out[i].frames, out[i].messages = m["hubbub_frames_out_total"], m[`hubbub_objects_out_total{type="message"}`]
		if c.cfg.Target == centrifugoTarget {
			out[i].pushes, out[i].lagSum, out[i].lagCount = m[centrifugoPushes], m[centrifugoLagSum], m[centrifugoLagCount]
			continue // no ack latency
		}
		if out[i].acks, err = scrapeBuckets(ctx, s.url("/metrics"), "hubbub_ack_latency_seconds"); err != nil {
			c.log.Warn("scraping ack latency", "server", s.addr, "err", err)
		}
	}
	return out
}

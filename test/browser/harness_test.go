package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/server"
	"github.com/hubbub-chat/hubbub/test/headless"
)

// stepTimeout bounds each browser step, so a broken page fails fast with the
// step's name instead of running into the package timeout.
const stepTimeout = 30 * time.Second

// The browser is shared by every test of the package: starting Chromium is
// the slowest part, and separate browser contexts isolate cookies as well as
// separate browsers would.
var shared struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
	}
	os.Exit(code)
}

// browser returns the context of the shared headless Chromium, starting it
// on first use. A missing browser fails the test: it must not pass by skipping.
func browser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests do not run with -short")
	}
	shared.once.Do(func() {
		path, err := headless.Path()
		if err != nil {
			shared.err = err
			return
		}
		dir, err := os.MkdirTemp("", "hubbub-chromium-")
		if err != nil {
			shared.err = err
			return
		}
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), headless.Options(path, dir)...)
		ctx, cancelCtx := chromedp.NewContext(allocCtx)
		shared.ctx = ctx
		shared.cancel = func() {
			cancelCtx()
			cancelAlloc()
			_ = os.RemoveAll(dir)
		}
		if err := chromedp.Do(ctx); err != nil { // starts the browser
			shared.err = fmt.Errorf("starting %s: %w", path, err)
		}
	})
	if shared.err != nil {
		t.Fatalf("browser: %v", shared.err)
	}
	return shared.ctx
}

// person is one browser context (own cookies and storage) with one tab.
type person struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	problems []string // uncaught exceptions and CSP violations seen in the page
	allowed  []string // substrings of reports a test provokes on purpose
}

func newPerson(t *testing.T, name string) *person {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser(t), chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &person{t: t, name: name, ctx: ctx}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil { // opens the tab
		t.Fatalf("%s: opening a tab: %v", name, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			text := m.String()
			if m.IsException() || strings.Contains(text, "Content Security Policy") || strings.Contains(text, "Trusted Type") {
				p.mu.Lock()
				p.problems = append(p.problems, text)
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
	next:
		for _, pr := range p.problems {
			for _, a := range p.allowed {
				if strings.Contains(pr, a) {
					continue next
				}
			}
			t.Errorf("%s's page reported: %s", name, pr)
		}
	})
	return p
}

// do runs steps with a time limit; what names the step in a failure.
func (p *person) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression in the page (awaiting a promise)
// and decodes its JSON value into T. DevTools evaluation is not subject to the
// page's CSP, which the page itself is.
func eval[T any](p *person, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.name, expr, err)
	}
	return v
}

// waitFor waits until expr is truthy in the page. (chromedp.Poll compiles its
// predicate with new Function, which the page's CSP forbids, so the predicate
// is evaluated from DevTools instead.) explain is evaluated on failure to
// show what the page looked like.
func (p *person) waitFor(what, expr string) {
	p.t.Helper()
	p.waitForWithin(stepTimeout, what, expr)
}

// waitForWithin is waitFor with its own time limit.
func (p *person) waitForWithin(limit time.Duration, what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, limit)
	defer cancel()
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			state, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](pageSummary))
			p.t.Fatalf("%s: timed out waiting for %s (%s)\npage: %s", p.name, what, expr, state)
		case <-tick.C:
		}
	}
}

// pageSummary describes the page for failure messages.
const pageSummary = `JSON.stringify({
  view: document.querySelector('#auth-view:not([hidden])') ? 'auth' : document.querySelector('#chat-view:not([hidden])') ? 'chat' : 'boot',
  conn: document.getElementById('conn-state')?.dataset.state + ' / ' + document.getElementById('conn-text')?.textContent,
  errors: [...document.querySelectorAll('.form-error:not([hidden]), .toast')].map(e => e.textContent),
  channel: document.getElementById('channel-title')?.textContent,
  messages: [...document.querySelectorAll('#messages .msg .text')].slice(-5).map(e => e.textContent),
  pending: [...document.querySelectorAll('#pending .msg')].map(e => e.textContent),
  sidebar: [...document.querySelectorAll('#sidebar .conv[data-channel]')].map(b => b.dataset.channel + (b.classList.contains('active') ? '*' : '')),
  people: [...document.querySelectorAll('#people-list .conv')].slice(0, 8).map(b => (b.dataset.online === '1' ? '' : '-') + b.dataset.user),
  peopleStatus: document.getElementById('people-status')?.textContent,
  gone: document.getElementById('gone')?.hidden ? '' : document.getElementById('gone')?.dataset.kind,
  dialogs: [...document.querySelectorAll('dialog[open]')].map(d => d.id),
})`

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ---------------------------------------------------------------- the server

// chatServer is a real chatserver on a loopback port that can be stopped and
// started again on the same address over the same (memory) backend, as a
// restarted pod comes back behind the same Service.
type chatServer struct {
	t       *testing.T
	cfg     config.Config
	backend *memory.Backend
	addr    string
	cancel  context.CancelFunc
	done    chan error
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.BcryptCost = 4
	cfg.Channels = []string{"general", "random"}
	cfg.MessagesPerSecond = 1000 // the history test writes quickly
	cfg.MessageBurst = 1000
	cfg.LoginAttemptsPerMinute, cfg.LoginAttemptsPerIPPerMinute = 1000, 1000
	cfg.ShutdownGrace = 3 * time.Second
	return cfg
}

func startServer(t *testing.T) *chatServer {
	t.Helper()
	return startServerWith(t, testConfig())
}

func startServerWith(t *testing.T, cfg config.Config) *chatServer {
	t.Helper()
	s := &chatServer{t: t, cfg: cfg, backend: memory.New(), addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *chatServer) url() string { return "http://" + s.addr }

func (s *chatServer) start() {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := server.New(ctx, s.cfg, server.Options{Backend: s.backend, Logger: logger})
	if err != nil {
		cancel()
		s.t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		cancel()
		s.t.Fatalf("listen %s: %v", s.addr, err)
	}
	s.addr = ln.Addr().String()
	s.cancel = cancel
	s.done = make(chan error, 1)
	go func() { s.done <- srv.Serve(ctx, ln) }()
}

// stop drains the server as SIGTERM would and waits for Serve to return.
func (s *chatServer) stop() {
	s.t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("Serve: %v", err)
		}
	case <-time.After(s.cfg.ShutdownGrace + 10*time.Second):
		s.t.Errorf("Serve did not return after its context ended")
	}
}

// login logs in over HTTP as a non-browser client and returns the token.
func (s *chatServer) login(t *testing.T, user, password string) string {
	t.Helper()
	body := strings.NewReader(fmt.Sprintf(`{"username":%s,"password":%s}`, jsString(user), jsString(password)))
	req, _ := http.NewRequest(http.MethodPost, s.url()+"/api/v1/login", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hubbub-browser-test/1.0 Go-http-client")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	defer res.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || out.Token == "" {
		t.Fatalf("login %s: status %d, %v", user, res.StatusCode, err)
	}
	return out.Token
}

// call makes an API request with a Bearer token and returns the status.
func (s *chatServer) call(t *testing.T, token, method, path string) int {
	t.Helper()
	var body io.Reader
	if method != http.MethodGet {
		body = strings.NewReader("{}")
	}
	req, _ := http.NewRequest(method, s.url()+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// allow accepts page reports containing substr (a violation the test provokes).
func (p *person) allow(substr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.allowed = append(p.allowed, substr)
}

// preferDark makes the page see prefers-color-scheme: dark.
func (p *person) preferDark() {
	p.t.Helper()
	p.do("preferring a dark colour scheme", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return err
	}))
}

// ---------------------------------------------------------------- a network that fails

// proxy is a TCP relay in front of the server: a person whose page is opened
// through it can lose the network (every connection cut, new ones refused)
// while everyone else stays connected. The page's origin is the proxy's
// address, which the server accepts as its own (it goes by the Host header).
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, up) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// track registers a connection pair, or closes it when the network went down meanwhile.
func (p *proxy) track(a, b net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		_ = a.Close()
		_ = b.Close()
		return false
	}
	p.conns[a], p.conns[b] = struct{}{}, struct{}{}
	return true
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// setDown cuts every relayed connection and refuses new ones (down), or
// lets connections through again.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

//go:build kind

package kind

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/test/headless"
)

// pageStepTimeout bounds each browser step and wait: generous, because the
// pods sit behind a port-forward on a small, busy machine, yet short enough
// that a stuck page fails naming its step well before the test's deadline.
const pageStepTimeout = 60 * time.Second

// pageChat logs user in through the chat page at baseURL in headless
// Chromium, sends sent in #general from the page and waits until the page
// shows it, then calls incoming (which makes someone else post a message
// through the API and returns its text) and waits until the page shows that
// text too. It fails t with what it was waiting for and what the page showed.
func pageChat(ctx context.Context, t *testing.T, baseURL, user, password, sent string, incoming func(context.Context) (string, error)) {
	t.Helper()
	path, err := headless.Path()
	if err != nil {
		t.Fatalf("pageChat: %v", err)
	}
	dir, err := os.MkdirTemp("", "hubbub-kind-chromium-")
	if err != nil {
		t.Fatalf("pageChat: %v", err)
	}
	// Deferred in this order so that the browser has exited (cancelAlloc
	// waits for it) before its profile directory is removed.
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("pageChat: removing the browser profile: %v", err)
		}
	}()
	// The same options as test/browser's harness, so both see the same page.
	// WSURLReadTimeout: Chromium's start may be slow on a busy machine.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(headless.Options(path, dir), chromedp.WSURLReadTimeout(pageStepTimeout))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// The first run starts the browser, which lives as long as its context:
	// it must have no timeout of its own (WSURLReadTimeout bounds the start).
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("pageChat: starting %s: %v", path, err)
	}

	shown := func() string {
		sctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Evaluate[string](`location.href + '\n' + (document.body ? document.body.innerText : '(no body)')`))
		if err != nil {
			return fmt.Sprintf("(could not read the page: %v)", err)
		}
		if r := []rune(s); len(r) > 2000 {
			s = string(r[:2000]) + "…"
		}
		return s
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, pageStepTimeout)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("pageChat: %s: %v\npage shows:\n%s", what, err, shown())
		}
	}
	// await polls expr from DevTools rather than with chromedp.Poll, which
	// compiles its predicate with new Function: the page's CSP forbids that.
	await := func(what, expr string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(bctx, pageStepTimeout)
		defer cancel()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var lastErr error // evaluations fail briefly while a page loads
		for {
			ok, err := chromedp.Run(wctx, chromedp.Evaluate[bool](`!!(`+expr+`)`))
			if err == nil && ok {
				return
			}
			if err != nil && wctx.Err() == nil {
				lastErr = err
			}
			select {
			case <-wctx.Done():
				t.Fatalf("pageChat: gave up (%v) waiting for %s\ncondition: %s\nlast evaluation error: %v\npage shows:\n%s",
					context.Cause(wctx), what, expr, lastErr, shown())
			case <-tick.C:
			}
		}
	}

	// #/general is the page's own route: it opens that channel once connected.
	do("opening the chat page", chromedp.Navigate(strings.TrimRight(baseURL, "/")+"/#/general"))
	await("the login form", `!document.getElementById('auth-view').hidden && !document.getElementById('login-form').hidden`)
	do("logging in as "+user,
		chromedp.Click(chromedp.ID("tab-login")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SetValue(chromedp.ID("login-username"), user),
		chromedp.SetValue(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	)
	await("#general open with the socket online", `!document.getElementById('chat-view').hidden
		&& document.getElementById('conn-state').dataset.state === 'online'
		&& document.querySelector('#sidebar .conv.active')?.dataset.channel === 'general'`)

	do(fmt.Sprintf("sending %q", sent),
		headless.TypeKeys("#composer-input", sent),
		chromedp.Click(chromedp.ID("send")),
	)
	await(fmt.Sprintf("the page to show its own message %q as sent", sent), pageMessageJS(sent))

	ictx, cancel := context.WithTimeout(ctx, pageStepTimeout)
	text, err := incoming(ictx)
	cancel()
	if err != nil {
		t.Fatalf("pageChat: having someone else post: %v", err)
	}
	await(fmt.Sprintf("the page to show the incoming message %q", text), pageMessageJS(text))
}

// pageMessageJS finds a message with exactly this text in the open
// conversation's #messages, where only messages the server has stored show:
// one still being sent waits in #pending instead.
func pageMessageJS(text string) string {
	quoted, err := json.Marshal(text) // a JavaScript string literal
	if err != nil {
		panic(err) // a string always marshals
	}
	return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg .text')].some(e => e.textContent === %s)`, quoted)
}

package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/test/headless"
)

// Page-level steps a person takes, in the words of the page's own elements.

func (p *person) open(url string) {
	p.t.Helper()
	p.do("opening the page", chromedp.Navigate(url))
	p.waitFor("the page to boot", `!document.getElementById('boot') || document.getElementById('boot').hidden`)
}

func (p *person) register(user, password string) {
	p.t.Helper()
	p.do("filling the registration form",
		chromedp.Click(chromedp.ID("tab-register")),
		chromedp.WaitVisible(chromedp.ID("register-form")),
		chromedp.SetValue(chromedp.ID("register-username"), user),
		chromedp.SetValue(chromedp.ID("register-password"), password),
		chromedp.Click(chromedp.CSS("#register-form button[type=submit]")),
	)
}

func (p *person) login(user, password string) {
	p.t.Helper()
	p.do("filling the login form",
		chromedp.Click(chromedp.ID("tab-login")),
		chromedp.WaitVisible(chromedp.ID("login-form")),
		chromedp.SetValue(chromedp.ID("login-username"), user),
		chromedp.SetValue(chromedp.ID("login-password"), password),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	)
}

// formError waits for the form's error line and returns what it says.
func (p *person) formError(id string) string {
	p.t.Helper()
	p.waitFor("an error under the form", fmt.Sprintf(`(e => e && !e.hidden && e.textContent.trim() !== '')(document.getElementById(%s))`, jsString(id)))
	return eval[string](p, fmt.Sprintf(`document.getElementById(%s).textContent`, jsString(id)))
}

func (p *person) waitOnline() {
	p.t.Helper()
	p.waitFor("the chat view, connected",
		`!document.getElementById('chat-view').hidden && document.getElementById('conn-state').dataset.state === 'online'`)
}

func (p *person) connects() int {
	p.t.Helper()
	return eval[int](p, `+document.getElementById('conn-state').dataset.connects`)
}

// send types text into the composer and presses Enter.
func (p *person) send(text string) {
	p.t.Helper()
	p.do("sending "+text, headless.TypeKeys("#composer-input", text), pressEnter)
}

// pressEnter presses Enter as a keyboard does. SendKeys("\n") would also
// send a separate char event that no keydown handler can cancel (see
// chromedp's docs/API.md, example 20), which a real keyboard never does.
var pressEnter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}); err != nil {
			return err
		}
	}
	return nil
})

// messageJS finds the confirmed message with exactly this text in the open conversation.
func messageJS(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].find(m => m.querySelector('.text').textContent === %s)`, jsString(text))
}

func (p *person) waitMessage(text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("message %q", text), messageJS(text))
}

func (p *person) openConversation(channel string) {
	p.t.Helper()
	p.click("opening "+channel, fmt.Sprintf(`#sidebar .conv[data-channel=%q]`, channel))
	p.waitFor("the conversation to open", fmt.Sprintf(`document.querySelector('.conv.active')?.dataset.channel === %s`, jsString(channel)))
}

// timelineCheck reports, for the open conversation, how many messages show,
// whether any id shows twice, and whether they are in id order (by the
// page's own compareIds, which is tested separately).
type timelineCheck struct {
	Count   int  `json:"count"`
	Dup     bool `json:"dup"`
	Ordered bool `json:"ordered"`
}

const timelineJS = `(async () => {
  const { compareIds } = await import('/assets/proto.js');
  const ids = [...document.querySelectorAll('#messages .msg')].map(e => e.dataset.id);
  let ordered = true;
  for (let i = 1; i < ids.length; i++) if (compareIds(ids[i - 1], ids[i]) >= 0) ordered = false;
  return { count: ids.length, dup: new Set(ids).size !== ids.length, ordered };
})()`

func (p *person) checkTimeline(wantCount int) {
	p.t.Helper()
	got := eval[timelineCheck](p, timelineJS)
	if got.Dup || !got.Ordered || (wantCount >= 0 && got.Count != wantCount) {
		p.t.Errorf("%s: timeline %+v, want %d messages, each once, in id order", p.name, got, wantCount)
	}
}

// screenshot saves the viewport as PNG into dir and returns the path.
func (p *person) screenshot(dir, name string) string {
	p.t.Helper()
	p.waitFor("animations to settle", `document.getAnimations().every(a => a.playState !== 'running' || a.effect.getTiming().iterations === Infinity)`)
	buf, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("%s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

func contains(haystack, needle string) bool {
	return strings.Contains(strings.ToLower(haystack), strings.ToLower(needle))
}

// signup opens the server's page, creates an account and waits until the
// chat view is connected.
func (p *person) signup(url, user string) {
	p.t.Helper()
	p.open(url)
	p.register(user, password)
	p.waitOnline()
}

// reload reloads the page and waits until it is connected again.
func (p *person) reload() {
	p.t.Helper()
	p.do("reloading the page", chromedp.Reload())
	p.waitFor("the page to boot", `!document.getElementById('boot') || document.getElementById('boot').hidden`)
	p.waitOnline()
}

// click clicks the element sel matches (CSS), once it is visible. The page
// redraws lists (the sidebar on every presence change, say) by replacing
// their elements: a node found a moment before the click may be gone, so a
// click that lost its node is tried again on the new one.
func (p *person) click(what, sel string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	for {
		err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
		if err == nil {
			return
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "Could not find node") && !strings.Contains(err.Error(), "Could not compute box model") {
			p.t.Fatalf("%s: %s: %v", p.name, what, err)
		}
	}
}

// setComposer puts text into the message box as typing would (an input
// event follows), without typing thousands of keys one by one.
func (p *person) setComposer(text string) {
	p.t.Helper()
	p.do("filling the message box", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(el => { el.focus(); el.value = %s; el.dispatchEvent(new Event('input', { bubbles: true })); })(document.getElementById('composer-input'))`, jsString(text))))
}

// typeInto types text into the field sel matches, key by key.
func (p *person) typeInto(sel, text string) {
	p.t.Helper()
	p.do("typing "+text, headless.TypeKeys(sel, text))
}

// fill replaces the value of the field sel matches with text, as typing does.
func (p *person) fill(sel, text string) {
	p.t.Helper()
	p.do("filling "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(el => { el.focus(); el.value = %s; el.dispatchEvent(new Event('input', { bubbles: true })); })(document.querySelector(%s))`, jsString(text), jsString(sel))))
}

func (p *person) composer() string {
	p.t.Helper()
	return eval[string](p, `document.getElementById('composer-input').value`)
}

// sidebarChannels lists the channels in the sidebar, in order.
func (p *person) sidebarChannels() []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('#channel-list .conv')].map(b => b.dataset.channel)`)
}

// textsIn lists the texts of the confirmed messages on screen.
func (p *person) texts() []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('#messages .msg .text')].map(e => e.textContent)`)
}

// registerHTTP creates an account as a non-browser client would.
func registerHTTP(t *testing.T, srv *chatServer, user string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.url()+"/api/v1/register",
		strings.NewReader(fmt.Sprintf(`{"username":%s,"password":%s}`, jsString(user), jsString(password))))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("register %s: %v", user, err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("register %s: status %d", user, res.StatusCode)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// shots is where screenshots go: the test's temp dir, or
// HUBBUB_SCREENSHOT_DIR to keep them.
func shots(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("HUBBUB_SCREENSHOT_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

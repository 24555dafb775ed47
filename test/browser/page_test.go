package browser

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
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
	p.do("sending "+text, chromedp.SendKeys(chromedp.ID("composer-input"), text), pressEnter)
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
	p.do("opening "+channel, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#sidebar .conv[data-channel=%q]`, channel))))
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

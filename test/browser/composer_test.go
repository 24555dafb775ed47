package browser

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestDraftPerConversation: what someone typed and did not send stays with
// its conversation, survives a reload, never moves to another one, and
// Enter posts to the conversation on screen.
func TestDraftPerConversation(t *testing.T) {
	srv := startServer(t)
	alice := newPerson(t, "alice")
	alice.signup(srv.url(), "alice")
	alice.waitFor("#general open", `document.querySelector('.conv.active')?.dataset.channel === 'general'`)

	alice.typeInto("#composer-input", "half a thought for general")
	alice.openConversation("random")
	if got := alice.composer(); got != "" {
		t.Errorf("#random opened with %q in the box: a draft followed to another conversation", got)
	}
	alice.typeInto("#composer-input", "a note for random")

	alice.reload()
	alice.waitFor("the conversation that was open", `document.querySelector('.conv.active')?.dataset.channel === 'random'`)
	if got := alice.composer(); got != "a note for random" {
		t.Errorf("#random's draft after a reload: %q", got)
	}
	alice.openConversation("general")
	if got := alice.composer(); got != "half a thought for general" {
		t.Errorf("#general's draft after a reload: %q", got)
	}

	// Enter posts what is in the box to the conversation shown.
	alice.openConversation("random")
	alice.do("pressing Enter in #random", chromedp.Focus(chromedp.ID("composer-input")), pressEnter)
	alice.waitMessage("a note for random")
	alice.waitFor("nothing pending", `document.querySelectorAll('#pending .msg').length === 0`)
	if got := alice.composer(); got != "" {
		t.Errorf("the box after sending: %q", got)
	}
	alice.openConversation("general")
	if got := alice.composer(); got != "half a thought for general" {
		t.Errorf("#general's draft after sending in #random: %q", got)
	}
	for _, text := range alice.texts() {
		if text == "a note for random" {
			t.Error("the message from #random shows in #general")
		}
	}

	// Sent means gone: a reload brings back only the draft that was not sent.
	alice.reload()
	alice.waitFor("#general open", `document.querySelector('.conv.active')?.dataset.channel === 'general'`)
	if got := alice.composer(); got != "half a thought for general" {
		t.Errorf("#general's draft after the second reload: %q", got)
	}
	alice.openConversation("random")
	if got := alice.composer(); got != "" {
		t.Errorf("#random's draft came back after it was sent: %q", got)
	}
	keys := eval[[]string](alice, `Object.keys(localStorage).filter(k => k.startsWith('hubbub.draft:'))`)
	if len(keys) != 1 || keys[0] != "hubbub.draft:alice:general" {
		t.Errorf("drafts in storage: %q, want one, keyed by user and channel", keys)
	}

	// Logging out on purpose forgets them (a shared computer).
	alice.click("logging out", "#logout")
	alice.waitFor("the login form", `!document.getElementById('auth-view').hidden`)
	if n := eval[int](alice, `Object.keys(localStorage).filter(k => k.startsWith('hubbub.draft:')).length`); n != 0 {
		t.Errorf("%d drafts left after logging out", n)
	}
}

// TestLengthCounter: the counter knows the room's own limit (from hello),
// counts bytes as the server does, appears near the limit and holds back a
// message over it.
func TestLengthCounter(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageBytes = 100
	srv := startServerWith(t, cfg)
	alice := newPerson(t, "alice")
	alice.signup(srv.url(), "alice")

	const counter = `document.getElementById('composer-count')`
	for _, tc := range []struct {
		name, text string
		shown      bool
		says       string
		over       bool
	}{
		{"short", strings.Repeat("a", 79), false, "", false},
		{"near the limit", strings.Repeat("a", 85), true, "15 left", false},
		{"at the limit", strings.Repeat("a", 100), true, "0 left", false},
		{"trailing blanks are not sent, so not counted", strings.Repeat("a", 100) + "   \n\n", true, "0 left", false},
		{"multi-byte characters count as the server counts them", strings.Repeat("é", 55), true, "10 over the limit", true},
		{"emoji", strings.Repeat("🙂", 24), true, "4 left", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice.setComposer(tc.text)
			got := eval[struct {
				Shown bool   `json:"shown"`
				Says  string `json:"says"`
				Over  bool   `json:"over"`
				Send  bool   `json:"send"`
				Limit string `json:"limit"`
			}](alice, `(c => ({ shown: !c.hidden, says: c.textContent, over: c.classList.contains('over'), send: !document.getElementById('send').disabled, limit: c.dataset.limit }))(`+counter+`)`)
			if got.Limit != "100" {
				t.Fatalf("the counter counts against %s, not the server's 100", got.Limit)
			}
			if got.Shown != tc.shown || (tc.shown && got.Says != tc.says) || got.Over != tc.over || got.Send == tc.over {
				t.Errorf("counter %+v, want shown=%v %q over=%v", got, tc.shown, tc.says, tc.over)
			}
		})
	}

	alice.setComposer(strings.Repeat("é", 55))
	alice.do("pressing Enter over the limit", chromedp.Focus(chromedp.ID("composer-input")), pressEnter)
	if n := eval[int](alice, `document.querySelectorAll('#pending .msg').length`); n != 0 {
		t.Errorf("%d messages went out over the limit", n)
	}
	alice.setComposer(strings.Repeat("é", 50))
	alice.do("pressing Enter at the limit", chromedp.Focus(chromedp.ID("composer-input")), pressEnter)
	alice.waitMessage(strings.Repeat("é", 50))
}

// TestRateLimitedSendsQueue: messages the server refuses as rate_limited
// stay pending ("Waiting to send…") and go out by themselves, once each and
// in the order they were written, with nothing for the person to do.
func TestRateLimitedSendsQueue(t *testing.T) {
	cfg := testConfig()
	cfg.MessagesPerSecond, cfg.MessageBurst = 2, 2
	srv := startServerWith(t, cfg)
	alice := newPerson(t, "alice")
	alice.signup(srv.url(), "alice")

	var want []string
	for i := 1; i <= 6; i++ {
		want = append(want, fmt.Sprintf("burst %d", i))
	}
	// Typed as fast as a paste: the server takes 2 at once, then 2 a second.
	alice.do("sending six messages at once", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(async () => {
  const box = document.getElementById('composer-input');
  for (const text of %s) {
    box.value = text;
    box.dispatchEvent(new Event('input', { bubbles: true }));
    box.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true }));
  }
})()`, mustJSON(want))))
	alice.waitFor("a refused message waiting, shown as pending", `[...document.querySelectorAll('#pending .msg.pending.held .status')].some(s => s.textContent === 'Waiting to send…')`)
	if n := eval[int](alice, `document.querySelectorAll('#pending .msg.failed').length`); n != 0 {
		t.Errorf("%d messages marked as failed; refused for the rate, they should wait", n)
	}
	alice.waitFor("every message sent", `document.querySelectorAll('#pending .msg').length === 0 && document.querySelectorAll('#messages .msg').length === 6`)
	if got := alice.texts(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("messages on screen %q, want %q in that order", got, want)
	}
	alice.checkTimeline(6)

	// Another person sees each once, in order.
	bob := newPerson(t, "bob")
	bob.signup(srv.url(), "bob")
	bob.waitMessage("burst 6")
	bob.checkTimeline(6)
	if got := bob.texts(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("bob sees %q, want %q", got, want)
	}
}

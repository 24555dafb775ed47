package browser

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/gorilla/websocket"

	"github.com/hubbub-chat/hubbub/test/headless"
)

const password = "correct horse battery"

// TestChatInTheBrowser is the scenario end to end: two people in two
// browser contexts register, chat, DM (with a notification toast), survive a
// server restart, scroll back through history, and manage their sessions.
func TestChatInTheBrowser(t *testing.T) {
	began := time.Now()
	step := func(name string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), name) }
	srv := startServer(t)

	step("seeding #random with 70 messages from a non-browser client")
	seedHistory(t, srv, "carol", "random", 70)

	alice := newPerson(t, "alice")
	bob := newPerson(t, "bob")
	bob.preferDark() // both colour schemes get exercised

	// Screenshots go to the test's temp dir, or to HUBBUB_SCREENSHOT_DIR to keep them.
	shots := t.TempDir()
	if dir := os.Getenv("HUBBUB_SCREENSHOT_DIR"); dir != "" {
		shots = dir
	}

	step("registration shows the server's error messages")
	alice.open(srv.url())
	alice.register("alice", "short")
	if msg := alice.formError("register-error"); !contains(msg, "password") {
		t.Errorf("short password: error %q does not mention the password", msg)
	}
	alice.register("alice", password)
	step("alice registered")
	alice.waitOnline()
	step("alice online")

	bobNet := startProxy(t, srv.addr) // bob's own network, which the test can cut
	bob.open(bobNet.url())
	bob.register("alice", password)
	if msg := bob.formError("register-error"); !contains(msg, "taken") {
		t.Errorf("taken username: error %q does not say it is taken", msg)
	}
	bob.screenshot(shots, "register-error-dark.png")
	bob.register("bob", password)
	bob.waitOnline()

	if !eval[bool](alice, `document.getElementById('notify-prompt').hidden && Notification.permission === 'default'`) {
		t.Error("the page offers or asks for notifications on load")
	}

	step("presence")
	// bob came after alice's people list loaded: she finds him by name, and
	// from then on her list shows him (and follows his presence).
	bob.waitFor("alice online in bob's people list", `document.querySelector('#people-list [data-user="alice"][data-online="1"]')`)
	alice.fill("#people-search", "bo")
	alice.waitFor("bob online in alice's search", `document.querySelector('#people-list [data-user="bob"][data-online="1"]')`)
	alice.fill("#people-search", "")
	alice.waitFor("bob online in alice's people list", `document.querySelector('#people-list [data-user="bob"][data-online="1"]') && !document.getElementById('people-list').hasAttribute('aria-busy')`)

	step("chatting in #general, with typing and a mention")
	alice.send("hello bob, welcome to Hubbub!")
	bob.waitMessage("hello bob, welcome to Hubbub!")
	release := "Release 1.4 is out. Notes: https://example.com/notes/1.4 (thanks, everyone!)"
	alice.send(release)
	bob.waitMessage(release)
	if href := eval[string](bob, messageJS(release)+`.querySelector('a').href`); href != "https://example.com/notes/1.4" {
		t.Errorf("link in a message: href %q", href)
	}
	bob.do("typing", headless.TypeKeys("#composer-input", "hi @alice, "))
	alice.waitFor("the typing indicator", `document.getElementById('typing').textContent.includes('bob is typing')`)
	bob.send("good to see you here!")
	mention := "hi @alice, good to see you here!"
	alice.waitMessage(mention)
	alice.waitFor("the typing indicator to clear", `document.getElementById('typing').textContent === ''`)
	if !eval[bool](alice, messageJS(mention)+`.matches('.mentions-me') && `+messageJS(mention)+`.querySelector('.mention-me').textContent === '@alice'`) {
		t.Error("a message mentioning alice is not highlighted for her")
	}
	if !eval[bool](alice, messageJS(mention)+`.querySelector('time[datetime]') !== null`) {
		t.Error("a message shows no time")
	}

	step("an XSS payload shows as literal text")
	payload := `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>`
	bob.send(payload)
	alice.waitMessage(payload)
	bob.waitMessage(payload)
	for _, p := range []*person{alice, bob} {
		if n := eval[int](p, `document.querySelectorAll('#messages img, #messages script, #messages b').length`); n != 0 {
			t.Errorf("%s: the payload created %d elements", p.name, n)
		}
		if v := eval[bool](p, `window.__xss === undefined`); !v {
			t.Errorf("%s: the payload ran", p.name)
		}
	}

	step("a DM from the people list raises a toast")
	bob.click("starting a DM with alice", `#people-list [data-user="alice"]`)
	bob.waitFor("the DM to open", `document.getElementById('channel-title').textContent === 'alice'`)
	bob.send("psst: are you free for lunch?")
	alice.waitFor("a DM toast", `[...document.querySelectorAll('.toast[data-kind="dm"]')].some(t => t.textContent.includes('psst: are you free for lunch?'))`)
	alice.waitFor("an unread badge on the DM", `document.querySelector('#dm-list .conv[data-channel="dm:alice:bob"] .badge')?.textContent === '1'`)
	alice.waitFor("the polite offer of desktop notifications", `!document.getElementById('notify-prompt').hidden`)

	path := alice.screenshot(shots, "chat.png")
	t.Logf("screenshot of the chat view: %s", path)
	if os.Getenv("HUBBUB_UPDATE_SCREENSHOT") != "" {
		copyFile(t, path, filepath.Join("..", "..", "docs", "screenshot.png"))
	}

	alice.do("opening the DM from the toast", chromedp.Click(chromedp.CSS(`.toast[data-kind="dm"] .btn-primary`)))
	alice.waitMessage("psst: are you free for lunch?")
	alice.waitFor("the badge to clear", `!document.querySelector('#dm-list .conv[data-channel="dm:alice:bob"] .badge')`)

	step("the server restarts; the pages reconnect by themselves and lose nothing")
	aliceBefore, bobBefore := alice.connects(), bob.connects()
	srv.stop()
	alice.waitFor("the page to show it is offline", `document.getElementById('conn-state').dataset.state !== 'online'`)
	offline := "sent while the server was down"
	alice.send(offline)
	alice.waitFor("the message to wait as pending", `[...document.querySelectorAll('#pending .msg.pending .text')].some(e => e.textContent === `+jsString(offline)+`)`)
	srv.start()
	// Each page has backed off a few times by now: its next try may be seconds away.
	alice.waitForWithin(45*time.Second, "alice to reconnect by herself", fmt.Sprintf(`+document.getElementById('conn-state').dataset.connects > %d && document.getElementById('conn-state').dataset.state === 'online'`, aliceBefore))
	bob.waitForWithin(45*time.Second, "bob to reconnect by himself", fmt.Sprintf(`+document.getElementById('conn-state').dataset.connects > %d && document.getElementById('conn-state').dataset.state === 'online'`, bobBefore))
	for _, p := range []*person{alice, bob} {
		if closes := eval[string](p, `document.getElementById('conn-state').dataset.closes`); !strings.HasPrefix(closes, "1012") {
			t.Errorf("%s's page saw close codes %q; the draining server should have closed with 1012 first", p.name, closes)
		}
	}
	alice.waitMessage(offline)
	alice.waitFor("nothing left pending", `document.querySelectorAll('#pending .msg').length === 0`)
	bob.waitMessage(offline)

	step("bob's network drops; what he missed comes back by resume, once")
	bobBefore = bob.connects()
	bobNet.setDown(true)
	bob.waitFor("bob's page to show it is offline", `document.getElementById('conn-state').dataset.state !== 'online'`)
	missed := "bob, you missed this while offline"
	alice.send(missed)
	alice.waitMessage(missed)
	bobNet.setDown(false)
	bob.waitForWithin(45*time.Second, "bob to reconnect by himself", fmt.Sprintf(`+document.getElementById('conn-state').dataset.connects > %d && document.getElementById('conn-state').dataset.state === 'online'`, bobBefore))
	bob.waitMessage(missed)
	bob.send("and this one after the restart")
	alice.waitMessage("and this one after the restart")
	// bob's own copy may come after alice's: until it does, it is pending.
	bob.waitMessage("and this one after the restart")
	alice.checkTimeline(4)
	bob.checkTimeline(4)

	step("a message over the server's size limit is held back by the counter, not sent")
	// (The page counts UTF-8 bytes as the server does, so it never sends a
	// text the server would refuse as too_large, nor a frame past the read
	// limit, which would close the socket with 1009.)
	alice.setComposer(strings.Repeat("é", 2100)) // 4200 bytes
	alice.waitFor("the counter to say it is over", `(c => !c.hidden && c.classList.contains('over') && c.textContent === '104 over the limit')(document.getElementById('composer-count'))`)
	alice.do("pressing Enter", chromedp.Focus(chromedp.ID("composer-input")), pressEnter)
	if n := eval[int](alice, `document.querySelectorAll('#pending .msg').length`); n != 0 || eval[string](alice, `document.getElementById('composer-input').value`) == "" {
		t.Errorf("an over-long message went out (%d pending) or left the box", n)
	}
	alice.setComposer("")
	alice.waitFor("the counter to go", `document.getElementById('composer-count').hidden`)
	alice.checkTimeline(4)

	step("scroll-back loads older pages of history")
	alice.openConversation("random")
	alice.waitFor("the latest page", messageJS("history 070"))
	if n := eval[int](alice, `document.querySelectorAll('#messages .msg').length`); n >= 70 {
		t.Errorf("the first page already holds %d messages; the test cannot see scroll-back", n)
	}
	alice.do("scrolling to the top", chromedp.Evaluate[chromedp.Void](`document.getElementById('scroller').scrollTop = 0`))
	alice.waitFor("the oldest message", messageJS("history 001"))
	alice.waitFor("the start of the channel", `!document.getElementById('history-start').hidden`)
	alice.checkTimeline(70)

	step("sessions: revoke another device, then log out everywhere")
	goToken := srv.login(t, "bob", password)
	bob.do("opening the sessions dialog", chromedp.Click(chromedp.ID("open-sessions")))
	bob.waitFor("two sessions, this one marked", `document.querySelectorAll('#session-list .session').length === 2 && document.querySelectorAll('#session-list .session.current').length === 1`)
	bob.screenshot(shots, "sessions-dark.png")
	bob.do("revoking the other device", chromedp.Click(chromedp.CSS(`#session-list .session:not(.current) .revoke`)))
	bob.waitFor("one session left", `document.querySelectorAll('#session-list .session').length === 1`)
	if code := srv.call(t, goToken, http.MethodGet, "/api/v1/me"); code != http.StatusUnauthorized {
		t.Errorf("revoked session still works: GET /api/v1/me = %d", code)
	}
	bob.do("logging out everywhere", chromedp.Click(chromedp.ID("logout-all")))
	bob.waitFor("the login form", `!document.getElementById('auth-view').hidden && !document.getElementById('login-form').hidden`)

	step("a session revoked elsewhere closes the socket with 4401: back to login")
	aliceToken := srv.login(t, "alice", password)
	if code := srv.call(t, aliceToken, http.MethodDelete, "/api/v1/sessions"); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/v1/sessions = %d", code)
	}
	alice.waitFor("the login form with a notice", `!document.getElementById('auth-view').hidden && document.getElementById('auth-notice').textContent.includes('session has ended')`)

	step("logging in again")
	alice.login("alice", "not the password")
	if msg := alice.formError("login-error"); !contains(msg, "invalid username or password") {
		t.Errorf("wrong password: error %q", msg)
	}
	alice.login("alice", password)
	alice.waitOnline()

	step("logging out, and in again")
	alice.do("logging out", chromedp.Click(chromedp.ID("logout")))
	alice.waitFor("the login form saying so", `!document.getElementById('auth-view').hidden && document.getElementById('auth-notice').textContent.includes('logged out')`)
	if code := eval[int](alice, `fetch('/api/v1/me').then(r => r.status)`); code != http.StatusUnauthorized {
		t.Errorf("after logout GET /api/v1/me = %d, want 401", code)
	}
	alice.login("alice", password)
	alice.waitOnline()

	step("phone width: the sidebar is a drawer")
	alice.do("narrowing the window", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	alice.waitFor("the sidebar off screen", `document.getElementById('sidebar').getBoundingClientRect().right <= 0`)
	alice.do("opening the menu", chromedp.Click(chromedp.ID("nav-open")))
	alice.waitFor("the sidebar on screen", `document.getElementById('sidebar').getBoundingClientRect().left >= 0 && document.activeElement.closest('#sidebar')`)
	t.Logf("phone screenshot: %s", alice.screenshot(shots, "phone.png"))
	alice.do("closing the menu with Escape", chromedp.KeyEvent(kb.Escape))
	alice.waitFor("the sidebar off screen again", `document.getElementById('sidebar').getBoundingClientRect().right <= 0`)
	alice.screenshot(shots, "phone-chat.png")
	step("done")
}

// seedHistory registers user and sends n messages "history 001".. to channel
// over a WebSocket with a Bearer token, as a non-browser client would, and
// waits for every ack.
func seedHistory(t *testing.T, srv *chatServer, user, channel string, n int) {
	t.Helper()
	registerHTTP(t, srv, user)
	token := srv.login(t, user, password)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.url(), "http")+"/ws",
		http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := 1; i <= n; i++ {
		msg := fmt.Sprintf(`{"type":"send","channel":%q,"text":"history %03d","clientId":"seed-%d"}`, channel, i, i)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	for acked := 0; acked < n; {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for acks (%d of %d): %v", acked, n, err)
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var obj struct{ Type, Code, Message string }
			if err := json.Unmarshal(line, &obj); err != nil {
				t.Fatalf("bad server line %q: %v", line, err)
			}
			switch obj.Type {
			case "ack":
				acked++
			case "error":
				t.Fatalf("server error while seeding: %s %s", obj.Code, obj.Message)
			}
		}
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("updated %s", to)
}

package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
)

// TestMessageChanges: editing (from the message's Edit action and with ↑ in
// the empty box), deleting after a confirmation, and reacting (from the
// picker and from the chips) in one page reach the other page and a plain
// WebSocket client; a reload shows them all from history; a reconnect
// resumes from the newest change seen; a change of a message the page does
// not hold is ignored; a refusal shows in a toast; and the admin of a
// created channel may delete anyone's message there.
func TestMessageChanges(t *testing.T) {
	began := time.Now()
	step := func(name string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), name) }
	srv := startServer(t)
	alice := newPerson(t, "alice") // light
	bob := newPerson(t, "bob")
	bob.preferDark()
	alice.signup(srv.url(), "alice")
	bobNet := startProxy(t, srv.addr) // bob's own network, which the test can cut
	bob.signup(bobNet.url(), "bob")
	carol := dialClient(t, srv, "carol") // sees every change as objects

	alice.send("the frist draft")
	alice.send("a typo in this oen")
	for _, p := range []*person{alice, bob} {
		p.waitMessage("the frist draft")
		p.waitMessage("a typo in this oen")
	}
	first, second := messageID(alice, "the frist draft"), messageID(alice, "a typo in this oen")

	step("only the author may edit or delete; anyone may react")
	if !eval[bool](bob, `!document.querySelector(`+jsString(msgSel(first)+` [data-action="edit"], `+msgSel(first)+` [data-action="delete"]`)+`) && !!document.querySelector(`+jsString(msgSel(first)+` [data-action="react"]`)+`)`) {
		t.Error("bob is offered to edit or delete alice's message, or not to react to it")
	}
	if !eval[bool](alice, `!!document.querySelector(`+jsString(msgSel(first)+` [data-action="edit"][aria-label="Edit message"]`)+`) && !!document.querySelector(`+jsString(msgSel(first)+` [data-action="delete"][aria-label="Delete message"]`)+`)`) {
		t.Error("alice is not offered to edit and delete her own message")
	}

	step("editing from the message's Edit action")
	alice.click("Edit", msgSel(first)+` [data-action="edit"]`)
	alice.waitFor("the editor, focused, holding the text", `document.activeElement.matches('.msg-edit-input') && document.activeElement.value === 'the frist draft'`)
	alice.fill(".msg-edit-input", "the first draft")
	alice.do("pressing Enter to save", pressEnter)
	for _, p := range []*person{alice, bob} {
		p.waitFor("the edited text, marked", editedJS(first, "the first draft"))
	}
	carol.expect("edited", isObj("edited", "id", first, "text", "the first draft"))
	alice.waitFor("the box to have focus again", `document.activeElement.id === 'composer-input'`)

	step("↑ in the empty box edits the last message; Escape cancels")
	alice.do("pressing ↑ in the empty box", chromedp.Focus(chromedp.ID("composer-input")), pressKey("ArrowUp", 38))
	alice.waitFor("the editor on the last message", `document.activeElement.matches(`+jsString(msgSel(second)+` .msg-edit-input`)+`) && document.activeElement.value === 'a typo in this oen'`)
	alice.do("pressing Escape", pressKey("Escape", 27))
	alice.waitFor("the editor gone, nothing changed", `!document.querySelector('.msg-edit') && document.activeElement.id === 'composer-input' && `+messageJS("a typo in this oen")+` && !`+messageJS("a typo in this oen")+`.querySelector('.edited')`)
	alice.typeInto("#composer-input", "x")
	alice.do("pressing ↑ with text in the box", pressKey("ArrowUp", 38))
	if eval[bool](alice, `!!document.querySelector('.msg-edit')`) {
		t.Error("↑ in a box with text in it started an edit")
	}
	alice.setComposer("")
	alice.do("pressing ↑ in the empty box again", pressKey("ArrowUp", 38))
	alice.waitFor("the editor again", `document.activeElement.matches('.msg-edit-input')`)
	alice.fill(".msg-edit-input", "a typo in this one")
	alice.do("pressing Enter to save", pressEnter)
	bob.waitFor("the second edit", editedJS(second, "a typo in this one"))
	carol.expect("the second edit", isObj("edited", "id", second, "text", "a typo in this one"))

	step("reacting from the picker, and toggling from the chips")
	bob.click("the react action", msgSel(first)+` [data-action="react"]`)
	bob.waitFor("the picker, focused", `!document.getElementById('react-picker').hidden && document.activeElement.closest('#react-picker')`)
	if got := eval[[]string](bob, `[...document.querySelectorAll('#react-picker button')].map(b => b.dataset.emoji)`); strings.Join(got, "") != "👍❤️😂🎉😮😢👀✅" {
		t.Errorf("the picker offers %q", got)
	}
	bob.click("🎉 in the picker", `#react-picker [data-emoji="🎉"]`)
	carol.expect("bob's 🎉", isObj("reaction", "id", first, "emoji", "🎉", "user", "bob", "on", "true"))
	alice.waitFor("bob's 🎉 at alice", chipJS(first, "🎉", 1, false)+` && `+chipSel(first, "🎉")+`.title === 'bob reacted with 🎉'`)
	bob.waitFor("bob's own 🎉, marked his, picker closed", chipJS(first, "🎉", 1, true)+` && document.getElementById('react-picker').hidden`)
	alice.click("alice's click on the 🎉 chip", msgSel(first)+` .reaction[data-emoji="🎉"]`)
	bob.waitFor("two 🎉 at bob", chipJS(first, "🎉", 2, true)+` && `+chipSel(first, "🎉")+`.title === 'You and alice reacted with 🎉'`)
	alice.waitFor("two 🎉 at alice, hers marked", chipJS(first, "🎉", 2, true))
	bob.click("bob's click on his own chip", msgSel(first)+` .reaction[data-emoji="🎉"]`)
	carol.expect("bob's 🎉 taken off", isObj("reaction", "id", first, "emoji", "🎉", "user", "bob", "on", "false"))
	alice.waitFor("one 🎉 at alice", chipJS(first, "🎉", 1, true))
	bob.waitFor("one 🎉 at bob, not his", chipJS(first, "🎉", 1, false))
	alice.click("alice's click on her chip", msgSel(first)+` .reaction[data-emoji="🎉"]`)
	bob.waitFor("no 🎉 left at bob", `!`+chipSel(first, "🎉"))
	// Two that stay, one each, for the reload below.
	bob.click("the react action", msgSel(first)+` [data-action="react"]`)
	bob.waitFor("the picker", `!document.getElementById('react-picker').hidden`)
	bob.screenshot(shots(t), "react-picker-dark.png")
	bob.click("👍 in the picker", `#react-picker [data-emoji="👍"]`)
	alice.click("the react action", msgSel(first)+` [data-action="react"]`)
	alice.click("❤️ in the picker", `#react-picker [data-emoji="❤️"]`)
	for _, p := range []*person{alice, bob} {
		p.waitFor("👍 and ❤️", chipJS(first, "👍", 1, p == bob)+` && `+chipJS(first, "❤️", 1, p == alice))
	}

	step("deleting, after a confirmation")
	alice.send("this one goes away")
	bob.waitMessage("this one goes away")
	alice.waitMessage("this one goes away")
	third := messageID(alice, "this one goes away")
	alice.click("Delete", msgSel(third)+` [data-action="delete"]`)
	alice.waitFor("the confirmation", `document.getElementById('confirm-dialog').open && document.getElementById('confirm-quote').textContent === 'this one goes away'`)
	alice.click("Cancel", "#confirm-cancel")
	alice.waitFor("the dialog to close", `!document.getElementById('confirm-dialog').open && !`+msgSel3JS(third)+`.classList.contains('deleted')`)
	alice.click("Delete", msgSel(third)+` [data-action="delete"]`)
	alice.waitFor("the confirmation", `document.getElementById('confirm-dialog').open`)
	alice.click("Delete in the dialog", "#confirm-ok")
	for _, p := range []*person{alice, bob} {
		p.waitFor("the message shown deleted", deletedJS(third))
	}
	deleted := carol.expect("deleted", isObj("deleted", "id", third))

	// Older messages in #random, which bob's page will not hold after the
	// reload. He reads them first: opening a channel with more unread
	// messages than a page would fetch older pages to show where they start.
	var old []string
	for i := 1; i <= 60; i++ {
		old = append(old, carol.sendMessage("random", fmt.Sprintf("old %02d", i)))
	}
	bob.openConversation("random")
	bob.waitMessage("old 60")
	bob.openConversation("general")
	if !eval[bool](bob, `(async () => {
  for (let i = 0; i < 200; i++) {
    const res = await (await fetch('/api/v1/channels')).json();
    if (res.channels.find(c => c.name === 'random').unread === 0) return true;
    await new Promise(r => setTimeout(r, 50));
  }
  return false;
})()`) {
		t.Fatal("bob's read marker in #random did not reach the server")
	}

	step("a reload shows the same from history")
	for _, p := range []*person{alice, bob} {
		p.reload()
		p.waitFor("history", msgSel3JS(third))
		for _, tc := range []struct{ name, js string }{
			{"the first message, edited", editedJS(first, "the first draft")},
			{"its reactions", chipJS(first, "👍", 1, p == bob) + ` && ` + chipJS(first, "❤️", 1, p == alice) + ` && ` + msgSel3JS(first) + `.querySelectorAll('.reaction').length === 2`},
			{"the second message, edited", editedJS(second, "a typo in this one")},
			{"the deleted message", deletedJS(third)},
			{"no undefined anywhere", `!document.getElementById('messages').textContent.includes('undefined')`},
		} {
			if !eval[bool](p, tc.js) {
				t.Errorf("%s after a reload: not %s (%s)", p.name, tc.name, tc.js)
			}
		}
	}
	alice.screenshot(shots(t), "changes.png")
	alice.click("Edit", msgSel(second)+` [data-action="edit"]`)
	alice.waitFor("the editor", `document.activeElement.matches('.msg-edit-input')`)
	alice.screenshot(shots(t), "editing.png")
	alice.do("pressing Escape", pressKey("Escape", 27))
	alice.waitFor("the editor gone", `!document.querySelector('.msg-edit')`)
	checkContrast(t, "light", textContrast(alice, []string{"#messages .msg .edited", "#messages .reaction:not(.mine) .reaction-count", "#messages .reaction.mine .reaction-count", "#messages .msg.deleted .text"}))
	checkContrast(t, "dark", textContrast(bob, []string{"#messages .msg .edited", "#messages .reaction:not(.mine) .reaction-count", "#messages .reaction.mine .reaction-count", "#messages .msg.deleted .text"}))
	checkContrast(t, "light", focusContrast(alice, []string{"#messages .msg-action", "#messages .reaction"}))
	checkContrast(t, "dark", focusContrast(bob, []string{"#messages .msg-action", "#messages .reaction"}))

	step("a reconnect resumes from the newest change seen, and replays change nothing twice")
	bob.do("recording the frames the page sends", chromedp.Evaluate[chromedp.Void](`(() => {
  window.__sent = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) { window.__sent.push(String(d)); return send.call(this, d); };
})()`))
	before := bob.connects()
	bobNet.setDown(true)
	bob.waitFor("bob's page to show it is offline", `document.getElementById('conn-state').dataset.state !== 'online'`)
	alice.click("the react action", msgSel(second)+` [data-action="react"]`)
	alice.click("😮 in the picker", `#react-picker [data-emoji="😮"]`)
	wow := carol.expect("alice's 😮", isObj("reaction", "id", second, "emoji", "😮", "user", "alice", "on", "true"))
	bobNet.setDown(false)
	bob.waitForWithin(45*time.Second, "bob to reconnect", fmt.Sprintf(`+document.getElementById('conn-state').dataset.connects > %d && document.getElementById('conn-state').dataset.state === 'online'`, before))
	bob.waitFor("the 😮 he missed", chipJS(second, "😮", 1, false))
	// From history, bob had seen up to the deleted message, whose id the
	// stream no longer keeps: the page resumed from the message before it,
	// and the replay brought every change since (again) and the 😮.
	if got := lastResume(bob)["general"]; got != second {
		t.Errorf("the first reconnect resumed #general from %q, want %q (the newest message held and not deleted)", got, second)
	}
	before = bob.connects()
	bobNet.setDown(true)
	bob.waitFor("bob's page to show it is offline", `document.getElementById('conn-state').dataset.state !== 'online'`)
	bobNet.setDown(false)
	bob.waitForWithin(45*time.Second, "bob to reconnect", fmt.Sprintf(`+document.getElementById('conn-state').dataset.connects > %d && document.getElementById('conn-state').dataset.state === 'online'`, before))
	if got, want := lastResume(bob)["general"], wow["entry"]; got != want {
		t.Errorf("the second reconnect resumed #general from %q, want %q (the 😮's own entry; the deletion's was %q)", got, want, deleted["entry"])
	}
	for _, tc := range []struct{ name, js string }{
		{"the first message, edited", editedJS(first, "the first draft")},
		{"its reactions", chipJS(first, "👍", 1, true) + ` && ` + chipJS(first, "❤️", 1, false) + ` && ` + msgSel3JS(first) + `.querySelectorAll('.reaction').length === 2`},
		{"the second message, edited, with one 😮", editedJS(second, "a typo in this one") + ` && ` + chipJS(second, "😮", 1, false) + ` && ` + msgSel3JS(second) + `.querySelectorAll('.reaction').length === 1`},
		{"the deleted message", deletedJS(third)},
		{"no notice of messages not replayed", `![...document.querySelectorAll('#toasts .toast')].some(e => e.textContent.includes('could not be replayed'))`},
	} {
		if !eval[bool](bob, tc.js) {
			t.Errorf("after the replays, bob's page shows not %s (%s)", tc.name, tc.js)
		}
	}

	step("a change of a message the page does not hold is ignored")
	bob.openConversation("random")
	bob.waitMessage("old 60")
	if eval[bool](bob, `!!(`+msgSel3JS(old[0])+` || `+msgSel3JS(old[1])+`)`) {
		t.Fatal("the first page of #random already holds the oldest messages: the test cannot see changes of messages not held")
	}
	carol.change(map[string]any{"type": "react", "channel": "random", "id": old[0], "emoji": "✅", "on": true})
	carol.change(map[string]any{"type": "edit", "channel": "random", "id": old[1], "text": "old 02, edited"})
	carol.sendMessage("random", "after the changes")
	bob.waitMessage("after the changes")
	if eval[bool](bob, `!!(`+msgSel3JS(old[0])+` || `+msgSel3JS(old[1])+` || document.querySelector('#toasts .toast-error'))`) {
		t.Errorf("a change of a message bob's page does not hold showed something: %s", eval[string](bob, pageSummary))
	}
	bob.do("scrolling to the top", chromedp.Evaluate[chromedp.Void](`document.getElementById('scroller').scrollTop = 0`))
	bob.waitFor("the older page, as it is now", chipJS(old[0], "✅", 1, false)+` && `+editedJS(old[1], "old 02, edited"))

	step("a refusal shows in a toast")
	last := messageID(bob, "after the changes")
	for _, e := range []string{"🍎", "🍐", "🍊", "🍋", "🍌", "🍉", "🍇", "🍓", "🍈", "🍒", "🍑", "🥭", "🍍", "🥥", "🥝", "🍅", "🍆", "🥑", "🥦", "🌽"} {
		carol.change(map[string]any{"type": "react", "channel": "random", "id": last, "emoji": e, "on": true})
	}
	bob.waitFor("20 chips", msgSel3JS(last)+`?.querySelectorAll('.reaction').length === 20`)
	bob.click("the react action", msgSel(last)+` [data-action="react"]`)
	bob.click("👍, a 21st emoji", `#react-picker [data-emoji="👍"]`)
	bob.waitFor("an error toast", `[...document.querySelectorAll('#toasts .toast-error')].some(e => e.textContent.includes('Could not react'))`)
	if n := eval[int](bob, msgSel3JS(last)+`.querySelectorAll('.reaction').length`); n != 20 {
		t.Errorf("%d chips after the refusal, want 20", n)
	}

	step("the admin of a created channel may delete anyone's message there")
	alice.click("create a channel", "#create-channel")
	alice.fill("#create-name", "team")
	alice.click("Create", "#create-form button[type=submit]")
	alice.waitFor("#team open", `document.querySelector('.conv.active')?.dataset.channel === 'team'`)
	if code := eval[int](bob, `fetch('/api/v1/channels/team/join', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).then(r => r.status)`); code != http.StatusNoContent {
		t.Fatalf("bob joining #team: %d", code)
	}
	bob.openConversation("team")
	alice.send("alice's words in team")
	bob.send("bob's words in team")
	alice.waitMessage("bob's words in team")
	bob.waitMessage("alice's words in team")
	bobs, alices := messageID(alice, "bob's words in team"), messageID(bob, "alice's words in team")
	if !offers(alice, bobs, "delete") || offers(alice, bobs, "edit") {
		t.Error("the channel's admin is not offered to delete (only) someone else's message")
	}
	if offers(bob, alices, "delete") {
		t.Error("a member who is no admin is offered to delete someone else's message")
	}
	alice.deleteFrom("bob", bobs)
	bob.waitFor("bob's message deleted", deletedJS(bobs))
	step("done")
}

// TestRoomAdmin: a room admin (--admins) is offered what the server lets
// them do, and a person who is none is not: deleting anyone's message in a
// default channel, and running a created channel they joined but are no
// admin of (making someone its admin).
func TestRoomAdmin(t *testing.T) {
	cfg := testConfig()
	cfg.Admins = []string{"root"}
	srv := startServerWith(t, cfg)
	root := newPerson(t, "root")
	alice := newPerson(t, "alice")
	root.signup(srv.url(), "root")
	alice.signup(srv.url(), "alice")
	bob := dialClient(t, srv, "bob")

	spam := bob.sendMessage("general", "spam from bob")
	for _, p := range []*person{root, alice} {
		p.waitMessage("spam from bob")
	}
	if offers(alice, spam, "delete") {
		t.Error("alice, no admin, is offered to delete bob's message in #general")
	}
	if offers(root, spam, "edit") {
		t.Error("the room admin is offered to edit bob's message")
	}
	root.deleteFrom("bob", spam)
	alice.waitFor("bob's message deleted", deletedJS(spam))
	bob.expect("deleted", isObj("deleted", "id", spam))

	// A channel alice created and root joined: root may make bob its admin.
	alice.click("create a channel", "#create-channel")
	alice.fill("#create-name", "team")
	alice.click("Create", "#create-form button[type=submit]")
	alice.waitFor("#team open", `document.querySelector('.conv.active')?.dataset.channel === 'team'`)
	alice.click("seeing #team's members", "#open-members")
	alice.fill("#invite-name", "bob")
	alice.click("adding bob", "#invite-form button[type=submit]")
	alice.waitFor("bob among the members", `document.querySelector('#member-list [data-user="bob"]')`)
	if code := eval[int](root, `fetch('/api/v1/channels/team/join', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' }).then(r => r.status)`); code != http.StatusNoContent {
		t.Fatalf("root joining #team: %d", code)
	}
	root.openConversation("team")
	root.click("seeing #team's members", "#open-members")
	root.waitFor("bob, to be made an admin", `document.querySelector('#member-list [data-user="bob"] .make-admin')`)
	root.click("making bob an admin", `#member-list [data-user="bob"] .make-admin`)
	root.waitFor("bob an admin, no longer offered as one", `(li => li && li.querySelector('.pill')?.textContent === 'admin' && !li.querySelector('.make-admin'))(document.querySelector('#member-list [data-user="bob"]')) && document.getElementById('members-error').hidden`)
}

// offers reports whether p's page offers action ("edit", "delete",
// "react") on the message with this id.
func offers(p *person, id, action string) bool {
	p.t.Helper()
	return eval[bool](p, `!!document.querySelector(`+jsString(msgSel(id)+` [data-action="`+action+`"]`)+`)`)
}

// deleteFrom deletes author's message id from p's page, through the
// confirmation that names its author.
func (p *person) deleteFrom(author, id string) {
	p.t.Helper()
	p.click("Delete on "+author+"'s message", msgSel(id)+` [data-action="delete"]`)
	p.waitFor("a confirmation naming "+author, `document.getElementById('confirm-dialog').open && document.getElementById('confirm-text').textContent.includes(`+jsString("from "+author)+`)`)
	p.click("Delete in the dialog", "#confirm-ok")
}

// msgSel is the CSS selector of the message with this id in the open conversation.
func msgSel(id string) string {
	return fmt.Sprintf(`#messages .msg[data-id=%q]`, id)
}

// msgSel3JS finds that message (or null).
func msgSel3JS(id string) string {
	return `document.querySelector(` + jsString(msgSel(id)) + `)`
}

func messageID(p *person, text string) string {
	p.t.Helper()
	p.waitMessage(text)
	return eval[string](p, messageJS(text)+`.dataset.id`)
}

// editedJS: message id reads text, marked "(edited)".
func editedJS(id, text string) string {
	return fmt.Sprintf(`(m => !!m && m.querySelector('.text').textContent === %s && m.querySelector('.edited')?.textContent === '(edited)' && !m.querySelector('.msg-edit'))(%s)`, jsString(text), msgSel3JS(id))
}

// deletedJS: message id shows as deleted: no author, no text, no actions.
func deletedJS(id string) string {
	return fmt.Sprintf(`(m => !!m && m.classList.contains('deleted') && m.querySelector('.text').textContent === 'Message deleted' && !m.querySelector('.author, .avatar, .msg-actions, .reaction'))(%s)`, msgSel3JS(id))
}

func chipSel(id, emoji string) string {
	return `document.querySelector(` + jsString(msgSel(id)+fmt.Sprintf(` .reaction[data-emoji=%q]`, emoji)) + `)`
}

// chipJS: message id has the emoji's chip with count n, pressed when mine.
func chipJS(id, emoji string, n int, mine bool) string {
	return fmt.Sprintf(`(c => !!c && c.querySelector('.reaction-count').textContent === '%d' && c.getAttribute('aria-pressed') === '%t' && c.classList.contains('mine') === %t)(%s)`, n, mine, mine, chipSel(id, emoji))
}

// lastResume is the since of the last resume frame the page sent (recorded
// by a hook on WebSocket.prototype.send).
func lastResume(p *person) map[string]string {
	p.t.Helper()
	return eval[map[string]string](p, `(() => {
  const r = window.__sent.map(s => JSON.parse(s)).filter(f => f.type === 'resume').pop();
  return r ? r.since : {};
})()`)
}

// pressKey presses a key as a keyboard does (see pressEnter).
func pressKey(key string, code int64) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: key, Code: key, WindowsVirtualKeyCode: code, NativeVirtualKeyCode: code,
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// ---------------------------------------------------------------- a plain WebSocket client

// wsClient is a non-browser client on its own socket: it sends frames and
// looks through the objects the server sends it.
type wsClient struct {
	t    *testing.T
	ws   *websocket.Conn
	in   chan map[string]any
	done chan struct{}
	seq  int
}

func dialClient(t *testing.T, srv *chatServer, user string) *wsClient {
	t.Helper()
	registerHTTP(t, srv, user)
	token := srv.login(t, user, password)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.url(), "http")+"/ws",
		http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		t.Fatalf("%s: dial: %v", user, err)
	}
	c := &wsClient{t: t, ws: ws, in: make(chan map[string]any, 1024), done: make(chan struct{})}
	go func() {
		defer close(c.in)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			for _, line := range bytes.Split(data, []byte("\n")) {
				var obj map[string]any
				if json.Unmarshal(line, &obj) != nil {
					continue
				}
				select {
				case c.in <- obj:
				case <-c.done:
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(c.done)
		_ = ws.Close()
	})
	c.send(map[string]any{"type": "resume", "since": map[string]string{}})
	c.expect("hello", isObj("hello"))
	return c
}

func (c *wsClient) send(f map[string]any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(f); err != nil {
		c.t.Fatalf("sending %v: %v", f, err)
	}
}

// expect skips objects until one matches, and returns it.
func (c *wsClient) expect(what string, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	timeout := time.After(stepTimeout)
	for {
		select {
		case obj, ok := <-c.in:
			if !ok {
				c.t.Fatalf("websocket client: closed while waiting for %s", what)
			}
			if obj["type"] == "error" {
				c.t.Fatalf("websocket client: error while waiting for %s: %v", what, obj)
			}
			if match(obj) {
				return obj
			}
		case <-timeout:
			c.t.Fatalf("websocket client: timed out waiting for %s", what)
		}
	}
}

// sendMessage posts text to channel and returns its id.
func (c *wsClient) sendMessage(channel, text string) string {
	c.t.Helper()
	c.seq++
	cid := fmt.Sprintf("ws-%d", c.seq)
	c.send(map[string]any{"type": "send", "channel": channel, "text": text, "clientId": cid})
	return c.expect("ack "+cid, isObj("ack", "clientId", cid))["id"].(string)
}

// change sends an edit, delete or react frame and waits for its ack.
func (c *wsClient) change(f map[string]any) {
	c.t.Helper()
	c.seq++
	cid := fmt.Sprintf("ws-%d", c.seq)
	f["clientId"] = cid
	c.send(f)
	c.expect("ack "+cid, isObj("ack", "clientId", cid))
}

// isObj matches an object of type typ whose fields (as printed) are the values given.
func isObj(typ string, kv ...string) func(map[string]any) bool {
	return func(o map[string]any) bool {
		if o["type"] != typ {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(o[kv[i]]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

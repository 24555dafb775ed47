package browser

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hubbub-chat/hubbub/test/headless"
)

// TestThreads: a reply from a message's "Reply in thread" action goes into
// a thread pane beside the conversation, not into the conversation; the
// other page sees "1 reply" under the root, its author is told, and both
// panes follow replies of a plain WebSocket client, edits, reactions and
// deletes live; Escape and the close button close the pane and give the
// focus back; a reload shows the counts from history and the pane loads
// from the thread endpoint, page after page; a reply to a reply cannot be
// started; a refused reply says so in a toast.
func TestThreads(t *testing.T) {
	began := time.Now()
	step := func(name string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), name) }
	srv := startServer(t)
	alice := newPerson(t, "alice") // light
	bob := newPerson(t, "bob")
	bob.preferDark()
	alice.signup(srv.url(), "alice")
	bob.signup(srv.url(), "bob")
	carol := dialClient(t, srv, "carol")

	alice.send("lunch at noon?")
	bob.waitMessage("lunch at noon?")
	root := messageID(alice, "lunch at noon?")

	step("bob replies from the Reply action")
	bob.click("Reply in thread", msgSel(root)+` [data-action="reply"][aria-label="Reply in thread"]`)
	bob.waitFor("the pane, with the root, its box focused", paneOpenJS(root)+` && document.activeElement.id === 'thread-input'`)
	bob.do("typing a reply", headless.TypeKeys("#thread-input", "count me in"), pressEnter)
	bob.waitFor("the reply in bob's pane", threadMsgJS("count me in")+` && document.getElementById('thread-sep-text').textContent === '1 reply'`)
	reply := carol.expect("the reply, naming its thread", isObj("message", "text", "count me in", "thread", root))
	bobReply := reply["id"].(string)
	for _, p := range []*person{alice, bob} {
		p.waitFor("1 reply under the root", linkJS(root, "1 reply"))
		if eval[bool](p, `!!`+messageJS("count me in")) {
			t.Errorf("%s: the reply shows in the conversation", p.name)
		}
	}

	step("the root's author is told, and opens the thread from the toast")
	toast := `[...document.querySelectorAll('#toasts .toast[data-kind="thread"]')].find(e => e.dataset.thread === ` + jsString(root) + ` && e.textContent.includes('count me in'))`
	alice.waitFor("a toast of bob's reply", toast)
	alice.do("pressing its Open button", chromedp.Evaluate[chromedp.Void](toast+`.querySelector('.btn-primary').click()`))
	alice.waitFor("the pane with bob's reply, its box focused", paneOpenJS(root)+` && `+threadMsgJS("count me in")+` && document.activeElement.id === 'thread-input'`)
	alice.waitFor("the root marked as the open thread", msgSel3JS(root)+`.classList.contains('thread-active')`)
	if !eval[bool](alice, `document.querySelector('.chat').classList.contains('thread-open') && document.getElementById('thread-pane').getBoundingClientRect().left >= document.querySelector('.pane').getBoundingClientRect().right - 1`) {
		t.Error("the thread pane is not beside the conversation")
	}

	step("replies of a WebSocket client show live in both panes")
	carolReply := replyAs(carol, "general", root, "carol too")
	for _, p := range []*person{alice, bob} {
		p.waitFor("carol's reply in the pane", threadMsgJS("carol too")+` && document.getElementById('thread-sep-text').textContent === '2 replies'`)
		p.waitFor("2 replies under the root", linkJS(root, "2 replies"))
	}
	alice.send("and after lunch?")
	bob.waitMessage("and after lunch?")
	if got := eval[[]string](bob, `[...document.querySelectorAll('#thread-messages .msg')].map(m => m.dataset.id)`); len(got) != 2 || got[0] != bobReply || got[1] != carolReply {
		t.Errorf("bob's pane holds %v, want [%s %s]", got, bobReply, carolReply)
	}

	step("replies have no Reply action; edit, react and delete work in the pane")
	for _, p := range []*person{alice, bob} {
		if eval[bool](p, `!!document.querySelector('#thread-pane [data-action="reply"]') || !document.querySelector('#thread-messages .msg [data-action="react"]')`) {
			t.Errorf("%s: the pane offers to reply to a reply, or not to react", p.name)
		}
	}
	bob.click("Edit on his reply", threadSel(bobReply)+` [data-action="edit"]`)
	bob.waitFor("the editor in the pane", `document.activeElement.matches('#thread-messages .msg-edit-input') && document.activeElement.value === 'count me in'`)
	bob.fill("#thread-messages .msg-edit-input", "count me in, 12:15")
	bob.do("pressing Enter to save", pressEnter)
	for _, p := range []*person{alice, bob} {
		p.waitFor("the edited reply", threadEditedJS(bobReply, "count me in, 12:15"))
	}
	bob.waitFor("the box focused again", `document.activeElement.id === 'thread-input'`)
	alice.click("react to carol's reply", threadSel(carolReply)+` [data-action="react"]`)
	alice.waitFor("the picker", `!document.getElementById('react-picker').hidden && document.activeElement.closest('#react-picker')`)
	alice.click("🎉", `#react-picker [data-emoji="🎉"]`)
	carol.expect("alice's 🎉 on carol's reply", isObj("reaction", "id", carolReply, "emoji", "🎉", "user", "alice", "on", "true"))
	bob.waitFor("alice's 🎉 in bob's pane", threadChipJS(carolReply, "🎉", 1))
	alice.waitFor("her 🎉 in her pane, the picker closed", threadChipJS(carolReply, "🎉", 1)+` && document.getElementById('react-picker').hidden`)
	doomed := replyAs(carol, "general", root, "oops, wrong thread")
	for _, p := range []*person{alice, bob} {
		p.waitFor("3 replies", threadMsgJS("oops, wrong thread")+` && `+linkJS(root, "3 replies"))
	}
	carol.change(map[string]any{"type": "delete", "channel": "general", "id": doomed})
	for _, p := range []*person{alice, bob} {
		p.waitFor("the reply deleted, 2 replies again", `(m => !!m && m.classList.contains('deleted'))(document.querySelector(`+jsString(threadSel(doomed))+`)) && `+linkJS(root, "2 replies")+` && document.getElementById('thread-sep-text').textContent === '2 replies'`)
	}
	alice.screenshot(shots(t), "thread.png")
	checkContrast(t, "light", textContrast(alice, []string{"#messages .thread-link", "#thread-title", "#thread-where", "#thread-sep-text", "#thread-messages .msg .text", "#thread-input::placeholder"}))
	checkContrast(t, "dark", textContrast(bob, []string{"#messages .thread-link", "#thread-title", "#thread-where", "#thread-sep-text", "#thread-messages .msg .text", "#thread-input::placeholder"}))
	checkContrast(t, "light", focusContrast(alice, []string{"#messages .thread-link", "#thread-close", "#thread-messages .msg-action"}))
	checkContrast(t, "dark", focusContrast(bob, []string{"#messages .thread-link", "#thread-close", "#thread-messages .msg-action"}))

	step("Escape and the close button close the pane, and give the focus back")
	alice.do("focusing the reply box", chromedp.Focus(chromedp.ID("thread-input")))
	alice.do("pressing Escape", pressKey("Escape", 27))
	alice.waitFor("the pane closed, the focus on the root's replies", `document.getElementById('thread-pane').hidden && document.activeElement.dataset.action === 'thread' && document.activeElement.closest('.msg')?.dataset.id === `+jsString(root))
	bob.click("the close button", "#thread-close[aria-label='Close thread']")
	bob.waitFor("the pane closed, the focus on the Reply action", `document.getElementById('thread-pane').hidden && document.activeElement.dataset.action === 'reply' && document.activeElement.closest('.msg')?.dataset.id === `+jsString(root))

	step("a reload shows the counts from history; the pane loads from the endpoint")
	for _, p := range []*person{alice, bob} {
		p.reload()
		p.waitFor("2 replies under the root, from history", linkJS(root, "2 replies"))
		if eval[bool](p, `!!(`+messageJS("count me in, 12:15")+` || `+messageJS("carol too")+`) || document.getElementById('messages').textContent.includes('undefined')`) {
			t.Errorf("%s after a reload: a reply shows in the conversation, or something reads undefined", p.name)
		}
		p.click("the 2 replies", msgSel(root)+` [data-action="thread"]`)
		p.waitFor("the pane, from the endpoint", paneOpenJS(root)+` && `+threadEditedJS(bobReply, "count me in, 12:15")+` && `+threadChipJS(carolReply, "🎉", 1)+
			` && (m => !!m && m.classList.contains('deleted'))(document.querySelector(`+jsString(threadSel(doomed))+`)) && document.querySelectorAll('#thread-messages .msg').length === 3`)
	}

	step("a reply refused by the server says so in a toast")
	alice.do("making the next reply name a thread that does not exist", chromedp.Evaluate[chromedp.Void](`(() => {
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (d) {
    const f = JSON.parse(d);
    if (f.type === 'send' && f.thread) { f.thread = '1-0'; d = JSON.stringify(f); }
    return send.call(this, d);
  };
})()`))
	alice.do("typing a reply", headless.TypeKeys("#thread-input", "into the void"), pressEnter)
	alice.waitFor("an error toast, the reply marked not sent", `[...document.querySelectorAll('#toasts .toast-error')].some(e => e.textContent.includes('Could not send your reply')) && [...document.querySelectorAll('#thread-pending .msg.failed')].some(e => e.textContent.includes('into the void'))`)
	alice.click("Discard", "#thread-pending .msg.failed .btn:not(.retry)")
	alice.waitFor("the reply gone, the box focused", `!document.querySelector('#thread-pending .msg') && document.activeElement.id === 'thread-input'`)

	step("a long thread loads page after page")
	long := carol.sendMessage("general", "a long thread")
	alice.waitMessage("a long thread")
	const n = 205
	for i := 1; i <= n; i++ {
		replyAs(carol, "general", long, fmt.Sprintf("reply %03d", i))
	}
	alice.waitFor("205 replies under it, counted live", linkJS(long, "205 replies"))
	bob.reload()
	bob.waitFor("205 replies under it, from history", linkJS(long, "205 replies"))
	bob.click("the 205 replies", msgSel(long)+` [data-action="thread"]`)
	bob.waitFor("every reply, in order", paneOpenJS(long)+` && document.querySelectorAll('#thread-messages .msg').length === 205 && `+
		`[...document.querySelectorAll('#thread-messages .msg .text')].every((e, i) => e.textContent === 'reply ' + String(i + 1).padStart(3, '0'))`)
	if got := eval[string](bob, `document.getElementById('thread-sep-text').textContent`); got != "205 replies" {
		t.Errorf("the pane says %q, want 205 replies", got)
	}
	step("done")
}

// replyAs sends text as a reply in the thread of root and returns its id.
func replyAs(c *wsClient, channel, root, text string) string {
	c.t.Helper()
	c.seq++
	cid := fmt.Sprintf("ws-%d", c.seq)
	c.send(map[string]any{"type": "send", "channel": channel, "text": text, "clientId": cid, "thread": root})
	return c.expect("ack "+cid, isObj("ack", "clientId", cid))["id"].(string)
}

// paneOpenJS: the thread pane shows the thread of root.
func paneOpenJS(root string) string {
	return `!document.getElementById('thread-pane').hidden && !!document.querySelector(` + jsString(fmt.Sprintf(`#thread-root .msg[data-id=%q]`, root)) + `)`
}

// threadSel is the CSS selector of reply id in the thread pane.
func threadSel(id string) string {
	return fmt.Sprintf(`#thread-messages .msg[data-id=%q]`, id)
}

// threadMsgJS finds the reply with exactly this text in the thread pane.
func threadMsgJS(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#thread-messages .msg')].find(m => m.querySelector('.text')?.textContent === %s)`, jsString(text))
}

// linkJS: the root in the conversation shows text ("1 reply") as its thread link.
func linkJS(root, text string) string {
	return `document.querySelector(` + jsString(msgSel(root)+` [data-action="thread"]`) + `)?.textContent === ` + jsString(text)
}

func threadEditedJS(id, text string) string {
	return fmt.Sprintf(`(m => !!m && m.querySelector('.text').textContent === %s && m.querySelector('.edited')?.textContent === '(edited)')(document.querySelector(%s))`, jsString(text), jsString(threadSel(id)))
}

func threadChipJS(id, emoji string, n int) string {
	return fmt.Sprintf(`document.querySelector(%s)?.querySelector('.reaction-count').textContent === '%d'`, jsString(threadSel(id)+fmt.Sprintf(` .reaction[data-emoji=%q]`, emoji)), n)
}

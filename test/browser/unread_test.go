package browser

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// badgesJS describes the unread badges of a conversation in the sidebar.
func badgesJS(channel string) string {
	return fmt.Sprintf(`(b => b ? {
  mention: b.querySelector('.badge-mention')?.textContent || '',
  unread: b.querySelector('.badge-unread')?.textContent || '',
  dm: b.querySelector('.badge-dm')?.textContent || '',
  said: b.querySelector('.visually-hidden:last-child')?.textContent || '',
} : null)(document.querySelector('#sidebar .conv[data-channel=%q]'))`, channel)
}

type badges struct {
	Mention string `json:"mention"`
	Unread  string `json:"unread"`
	DM      string `json:"dm"`
	Said    string `json:"said"`
}

// dividerBefore is true when the "new messages" divider sits right before
// the message with this text (and there is only one divider).
func dividerBefore(text string) string {
	return fmt.Sprintf(`document.querySelectorAll('#messages .unread-divider').length === 1 &&
  document.querySelector('#messages .unread-divider').nextElementSibling?.querySelector('.text')?.textContent === %s`, jsString(text))
}

// TestUnreadDividerAndMentions: unread messages that mention me get their
// own badge, apart from the others; opening the conversation shows where
// the unread ones start; on a phone the menu button carries the count. The
// same holds after a reload, from the server's counts.
func TestUnreadDividerAndMentions(t *testing.T) {
	srv := startServer(t)
	alice := newPerson(t, "alice")
	bob := newPerson(t, "bob")
	alice.signup(srv.url(), "alice")
	bob.signup(srv.url(), "bob")
	bob.openConversation("random")

	alice.send("morning all")
	alice.send("@bob can you review the release notes?")
	alice.send("thanks!")
	alice.waitMessage("thanks!")

	bob.waitFor("#general's badges", badgesJS("general")+`?.unread === '2'`)
	if got := eval[badges](bob, badgesJS("general")); got.Mention != "@1" || got.Unread != "2" || got.Said != ", 1 mention, 2 other unread" {
		t.Errorf("#general's badges %+v, want @1 apart from 2 others", got)
	}

	// A phone: the sidebar is a drawer, so the menu button says it.
	bob.do("narrowing the window", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	bob.waitFor("the sidebar off screen", `document.getElementById('sidebar').getBoundingClientRect().right <= 0`)
	got := eval[struct {
		Text    string `json:"text"`
		Visible bool   `json:"visible"`
		Hot     bool   `json:"hot"`
		Label   string `json:"label"`
	}](bob, `(b => ({ text: b.textContent, visible: !b.hidden && b.getBoundingClientRect().width > 0, hot: b.classList.contains('badge-mention'), label: document.getElementById('nav-open').getAttribute('aria-label') }))(document.getElementById('nav-badge'))`)
	if got.Text != "3" || !got.Visible || !got.Hot || got.Label != "Open menu, 3 unread, 1 for you" {
		t.Errorf("the menu button's badge: %+v", got)
	}
	bob.screenshot(shots(t), "menu-badge-phone.png")
	bob.click("opening the menu", "#nav-open")
	bob.waitFor("the sidebar on screen", `document.getElementById('sidebar').getBoundingClientRect().left >= 0`)
	bob.openConversation("general")
	bob.waitFor("the divider before the first unread message", dividerBefore("morning all"))
	bob.screenshot(shots(t), "unread-divider-phone.png")
	bob.waitFor("the badges to clear", badgesJS("general")+`?.mention === '' && `+badgesJS("general")+`?.unread === ''`)
	bob.waitFor("the menu button's badge to clear", `document.getElementById('nav-badge').hidden && document.getElementById('nav-open').getAttribute('aria-label') === 'Open menu'`)
	bob.do("widening the window", chromedp.EmulateViewport(1280, 800))

	// Messages that arrive while it is open are read: no second divider.
	alice.send("one more thing")
	bob.waitMessage("one more thing")
	if !eval[bool](bob, dividerBefore("morning all")) {
		t.Error("the divider moved or doubled while the conversation was open")
	}
	// Unread without a mention makes the menu button's badge calm.
	bob.openConversation("random")
	bob.waitFor("no divider in #random", `!document.querySelector('#messages .unread-divider')`)
	alice.send("lunch at noon")
	bob.waitFor("a calm badge on the menu button", `(b => !b.hidden && b.textContent === '1' && b.classList.contains('badge-unread'))(document.getElementById('nav-badge'))`)
	bob.openConversation("general")
	bob.waitFor("the divider before the new one", dividerBefore("lunch at noon"))

	// After a reload the counts come from the server (hello) and the
	// messages the page fetches.
	bob.openConversation("random")
	alice.send("@bob one more question")
	alice.send("no rush")
	bob.waitFor("#general's badges", badgesJS("general")+`?.unread === '1'`)
	bob.reload()
	bob.waitFor("#general's badges after a reload", badgesJS("general")+`?.mention === '@1' && `+badgesJS("general")+`?.unread === '1'`)
	bob.screenshot(shots(t), "mention-badges.png")
	bob.openConversation("general")
	bob.waitFor("the divider before the first unread message", dividerBefore("@bob one more question"))

	// A DM counts whole, on its own badge.
	alice.fill("#people-search", "bob") // he signed up after her list loaded
	alice.click("starting a DM with bob", `#people-list [data-user="bob"]`)
	alice.waitFor("the DM to open", `document.getElementById('channel-title').textContent === 'bob'`)
	alice.send("psst")
	bob.waitFor("the DM's badge", badgesJS("dm:alice:bob")+`?.dm === '1'`)
	if got := eval[badges](bob, badgesJS("dm:alice:bob")); got.Said != ", 1 unread" {
		t.Errorf("the DM's badge says %q", got.Said)
	}
}

// TestUnknownChannelInURL: a URL naming a conversation that does not exist
// (or that is not ours) shows "not found" and adds nothing to the sidebar,
// on a fresh load and when the hash changes.
func TestUnknownChannelInURL(t *testing.T) {
	srv := startServer(t)
	registerHTTP(t, srv, "carol")
	alice := newPerson(t, "alice")
	alice.signup(srv.url(), "alice")

	for _, tc := range []struct {
		name, route, title string
		fresh              bool
	}{
		{"unknown channel, fresh load", "nosuch", "Channel not found", true},
		{"unknown channel, hash change", "nosuch-either", "Channel not found", false},
		{"DM with nobody", "dm:alice:ghost", "Conversation not found", false},
		{"someone else's DM", "dm:bob:carol", "Conversation not found", true},
		{"a name no channel can have", "Not A Channel!", "Channel not found", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice.openConversation("general")
			set := fmt.Sprintf(`location.hash = '#/' + encodeURIComponent(%s)`, jsString(tc.route))
			alice.do("going to #/"+tc.route, chromedp.Evaluate[chromedp.Void](set))
			if tc.fresh {
				alice.reload()
			}
			alice.waitFor("not found", fmt.Sprintf(`!document.getElementById('gone').hidden && document.getElementById('gone-title').textContent === %s`, jsString(tc.title)))
			got := eval[struct {
				Sidebar  bool   `json:"sidebar"`
				Composer bool   `json:"composer"`
				Active   bool   `json:"active"`
				Title    string `json:"title"`
			}](alice, fmt.Sprintf(`({
  sidebar: [...document.querySelectorAll('#sidebar .conv')].some(b => b.dataset.channel === %s),
  composer: !document.getElementById('composer-wrap').hidden,
  active: !!document.querySelector('#sidebar .conv.active'),
  title: document.title,
})`, jsString(tc.route)))
			if got.Sidebar || got.Composer || got.Active || got.Title != "Not found · Hubbub" {
				t.Errorf("not found page: %+v (want nothing in the sidebar, no composer, nothing active)", got)
			}
			if chans := alice.sidebarChannels(); strings.Join(chans, ",") != "general,random" {
				t.Errorf("sidebar channels %q", chans)
			}
			if tc.name == "unknown channel, fresh load" {
				alice.screenshot(shots(t), "not-found.png")
			}
		})
	}
	// And back to a real conversation.
	alice.openConversation("general")
	alice.waitFor("the conversation to show", `document.getElementById('gone').hidden && !document.getElementById('composer-wrap').hidden`)
	alice.send("still here")
	alice.waitMessage("still here")
}

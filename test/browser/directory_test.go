package browser

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// peopleJS lists the people list as "name" for someone online and "-name"
// for someone offline, in the order shown.
const peopleJS = `[...document.querySelectorAll('#people-list .conv')].map(b => (b.dataset.online === '1' ? '' : '-') + b.dataset.user)`

func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("-%s%02d", prefix, i))
	}
	return out
}

// TestPeopleList: everyone in the room, online first then everyone else by
// name, paged, searched by prefix, and kept live by presence; clicking
// anyone starts a DM, and a DM to someone offline waits for them, unread.
func TestPeopleList(t *testing.T) {
	srv := startServer(t)
	for i := 0; i < 55; i++ {
		registerHTTP(t, srv, fmt.Sprintf("user%02d", i))
	}
	for _, u := range []string{"ann", "bob", "dave", "zed", "carol"} {
		registerHTTP(t, srv, u)
	}
	alice := newPerson(t, "alice")
	bob := newPerson(t, "bob")
	alice.signup(srv.url(), "alice")
	bob.open(srv.url())
	bob.login("bob", password)
	bob.waitOnline()

	// The directory's first page holds 50 names: alice ann bob carol dave user00..user44.
	firstPage := append([]string{"alice", "bob", "-ann", "-carol", "-dave"}, names("user", 0, 44)...)
	alice.waitFor("the first page, online first", peopleJS+`.join() === `+jsString(strings.Join(firstPage, ",")))
	if !eval[bool](alice, `!document.getElementById('people-more').hidden && document.querySelector('#people-list [data-user="alice"]').disabled`) {
		t.Error("no “More people” button, or alice can message herself")
	}
	alice.click("more people", "#people-more")
	everyone := append(append(firstPage, names("user", 45, 54)...), "-zed")
	alice.waitFor("everyone", peopleJS+`.join() === `+jsString(strings.Join(everyone, ",")))
	alice.screenshot(shots(t), "people.png")
	if !eval[bool](alice, `document.getElementById('people-more').hidden`) {
		t.Error("“More people” still offered on the last page")
	}

	for _, tc := range []struct {
		search string
		want   []string
		status string
	}{
		{"user0", names("user", 0, 9), ""},
		{"b", []string{"bob"}, ""},
		{"Zed", []string{"-zed"}, ""},
		{"@da", []string{"-dave"}, ""},
		{"nobody", nil, "No one’s name starts with “nobody”."},
		{"bad name!", nil, "No one’s name starts with “bad name!”."},
		{"", firstPage, ""},
	} {
		t.Run("search "+tc.search, func(t *testing.T) {
			alice.fill("#people-search", tc.search)
			alice.waitFor("the list for "+tc.search, peopleJS+`.join() === `+jsString(strings.Join(tc.want, ","))+
				` && document.getElementById('people-status').textContent === `+jsString(tc.status)+
				` && !document.getElementById('people-list').hasAttribute('aria-busy')`)
		})
	}

	// Presence is live: carol comes online, to the top; then leaves.
	carol := newPerson(t, "carol")
	carol.open(srv.url())
	carol.login("carol", password)
	carol.waitOnline()
	alice.waitFor("carol online, among the online", peopleJS+`.slice(0, 3).join() === 'alice,bob,carol' && document.getElementById('online-count').textContent === '3 online'`)
	carol.click("logging out", "#logout")
	alice.waitFor("carol offline, back among the others", peopleJS+`.slice(0, 5).join() === 'alice,bob,-ann,-carol,-dave'`)

	// A DM to someone offline: stored, and unread for them when they come.
	alice.click("messaging dave, who is offline", `#people-list [data-user="dave"]`)
	alice.waitFor("the DM to open", `document.getElementById('channel-title').textContent === 'dave' && location.hash === '#/dm:alice:dave'`)
	alice.send("are you around tomorrow?")
	alice.waitMessage("are you around tomorrow?")

	dave := newPerson(t, "dave")
	dave.open(srv.url())
	dave.login("dave", password)
	dave.waitOnline()
	dave.waitFor("the DM, unread", badgesJS("dm:alice:dave")+`?.dm === '1'`)
	dave.waitFor("a notification of the DM that came while he was away",
		`[...document.querySelectorAll('.toast[data-kind="dm"]')].some(t => t.textContent.includes('alice') && t.textContent.includes('1 new message'))`)
	dave.click("opening it", `#dm-list .conv[data-channel="dm:alice:dave"]`)
	dave.waitMessage("are you around tomorrow?")
	dave.waitFor("the divider before it", dividerBefore("are you around tomorrow?"))
}

// TestChannels: browse and join public channels, create public and private
// ones, see members, add and remove people, make them admins, leave; the
// server's refusals show as it words them; being removed from the channel on
// screen says so.
func TestChannels(t *testing.T) {
	dir := shots(t)
	srv := startServer(t)
	alice := newPerson(t, "alice")
	bob := newPerson(t, "bob")
	alice.signup(srv.url(), "alice")
	bob.signup(srv.url(), "bob")

	createChannel := func(p *person, name string, private bool) {
		p.t.Helper()
		p.click("opening “create a channel”", "#create-channel")
		p.fill("#create-name", name)
		if private {
			p.click("making it private", "#create-private")
		}
		p.click("creating it", "#create-form button[type=submit]")
	}

	// Create a public channel: it opens, in the sidebar, with its members.
	createChannel(alice, "design", false)
	alice.waitFor("#design open", `document.querySelector('.conv.active')?.dataset.channel === 'design' && !document.getElementById('create-dialog').open`)
	if got := alice.sidebarChannels(); strings.Join(got, ",") != "design,general,random" {
		t.Errorf("alice's channels: %q", got)
	}
	alice.waitFor("the Members button", `!document.getElementById('open-members').hidden`)

	// Refusals show the server's words.
	for _, tc := range []struct{ name, says string }{
		{"design", `a channel named "design" exists`},
		{"general", `a channel named "general" exists`},
		{"-bad", "name: "},
	} {
		t.Run("create "+tc.name, func(t *testing.T) {
			createChannel(alice, tc.name, false)
			if got := alice.formError("create-error"); !strings.Contains(got, tc.says) {
				t.Errorf("creating %q: error %q, want it to say %q", tc.name, got, tc.says)
			}
			alice.do("closing the dialog", chromedp.KeyEvent(kb.Escape))
			alice.waitFor("the dialog to close", `!document.getElementById('create-dialog').open`)
		})
	}

	// Browse and join.
	bob.click("browsing channels", "#browse-channels")
	bob.waitFor("#design, to join", `(li => li && li.querySelector('.item-meta').textContent === '1 member' && li.querySelector('button').textContent === 'Join')(document.querySelector('#browse-list [data-channel="design"]'))`)
	bob.preferDark()
	bob.screenshot(dir, "browse-channels-dark.png")
	bob.click("joining #design", `#browse-list [data-channel="design"] button`)
	bob.waitFor("#design open", `document.querySelector('.conv.active')?.dataset.channel === 'design' && !document.getElementById('browse-dialog').open`)
	bob.send("hello design")
	alice.waitMessage("hello design")
	if eval[bool](alice, `[...document.querySelectorAll('.toast')].some(t => t.textContent.includes('member of this channel'))`) {
		t.Error("alice was told she is now a member of the channel she created")
	}

	// A private channel is never listed; people are added to it.
	createChannel(alice, "secret", true)
	alice.waitFor("#secret open, private", `document.querySelector('.conv.active')?.dataset.channel === 'secret' && document.querySelector('.conv.active .lock')`)
	bob.click("browsing channels", "#browse-channels")
	bob.fill("#browse-search", "s")
	bob.waitFor("no channel listed", `!document.getElementById('browse-list').hasAttribute('aria-busy') && document.getElementById('browse-status').textContent === 'No public channel starts with “s”.'`)
	bob.click("closing it", "#browse-dialog .dialog-close")

	alice.click("seeing #secret's members", "#open-members")
	alice.waitFor("alice, its admin", `(li => li && li.querySelector('.pill')?.textContent === 'admin')(document.querySelector('#member-list [data-user="alice"]'))`)
	for _, tc := range []struct{ who, says string }{
		{"nosuchuser", `no user "nosuchuser"`},
		{"x", "username: "},
	} {
		alice.fill("#invite-name", tc.who)
		alice.click("adding "+tc.who, "#invite-form button[type=submit]")
		if got := alice.formError("members-error"); !strings.Contains(got, tc.says) {
			t.Errorf("adding %q: error %q, want it to say %q", tc.who, got, tc.says)
		}
	}
	alice.fill("#invite-name", "bob")
	alice.click("adding bob", "#invite-form button[type=submit]")
	alice.waitFor("bob among the members, removable", `document.querySelector('#member-list [data-user="bob"] .remove') && document.getElementById('members-error').hidden`)
	alice.screenshot(dir, "channel-members.png")
	bob.waitFor("#secret in bob's sidebar", `document.querySelector('#channel-list .conv[data-channel="secret"] .lock')`)
	bob.waitFor("a note that he was added", `[...document.querySelectorAll('.toast')].some(t => t.textContent.includes('added to this private channel'))`)

	// Only admins may remove people.
	bob.openConversation("secret")
	bob.click("seeing #secret's members", "#open-members")
	bob.waitFor("the members", `document.querySelectorAll('#member-list .item').length === 2`)
	if n := eval[int](bob, `document.querySelectorAll('#member-list .remove, #member-list .make-admin').length`); n != 0 {
		t.Errorf("bob, not an admin, is offered %d Remove or Make admin buttons", n)
	}
	bob.do("closing it", chromedp.KeyEvent(kb.Escape))
	bob.send("thanks for adding me")
	alice.do("closing the members", chromedp.KeyEvent(kb.Escape))
	alice.waitMessage("thanks for adding me")

	// Removed from the channel on screen: it says so, and stops showing it.
	alice.click("seeing #secret's members", "#open-members")
	alice.click("removing bob", `#member-list [data-user="bob"] .remove`)
	alice.waitFor("bob gone from the members", `!document.querySelector('#member-list [data-user="bob"]') && document.querySelectorAll('#member-list .item').length === 1`)
	bob.waitFor("bob told he was removed", `!document.getElementById('gone').hidden && document.getElementById('gone').dataset.kind === 'removed' && document.getElementById('gone-text').textContent.startsWith('You were removed from #secret')`)
	bob.screenshot(dir, "removed-dark.png")
	if got := eval[struct {
		Sidebar  bool `json:"sidebar"`
		Messages int  `json:"messages"`
		Composer bool `json:"composer"`
	}](bob, `({ sidebar: !!document.querySelector('#sidebar .conv[data-channel="secret"]'), messages: document.querySelectorAll('#messages .msg').length, composer: !document.getElementById('composer-wrap').hidden })`); got.Sidebar || got.Messages != 0 || got.Composer {
		t.Errorf("after removal bob still sees #secret: %+v", got)
	}

	// The last admin cannot leave while others remain.
	alice.fill("#invite-name", "bob")
	alice.click("adding bob back", "#invite-form button[type=submit]")
	alice.waitFor("bob back among the members", `document.querySelector('#member-list [data-user="bob"]')`)
	bob.waitFor("#secret back in bob's sidebar", `document.querySelector('#channel-list .conv[data-channel="secret"]')`)
	alice.click("leaving #secret", "#leave-channel")
	if got := alice.formError("members-error"); !strings.Contains(got, `is the only admin of "secret"`) {
		t.Errorf("the last admin leaving: error %q", got)
	}
	// Made an admin, bob keeps the channel running: alice may leave it.
	if n := eval[int](alice, `document.querySelectorAll('#member-list [data-user="alice"] .make-admin').length`); n != 0 {
		t.Errorf("alice is offered to make herself an admin (%d buttons)", n)
	}
	alice.click("making bob an admin", `#member-list [data-user="bob"] .make-admin`)
	alice.waitFor("bob an admin", `(li => li && li.querySelector('.pill')?.textContent === 'admin' && !li.querySelector('.make-admin'))(document.querySelector('#member-list [data-user="bob"]'))`)
	alice.click("leaving #secret", "#leave-channel")
	alice.waitFor("#secret gone from alice's sidebar", `!document.querySelector('#sidebar .conv[data-channel="secret"]') && !document.getElementById('members-dialog').open`)

	// Leaving: gone from the sidebar, back to where the page starts.
	bob.openConversation("design")
	bob.click("seeing #design's members", "#open-members")
	bob.click("leaving #design", "#leave-channel")
	bob.waitFor("#design gone, #general open", `!document.querySelector('#sidebar .conv[data-channel="design"]') && document.querySelector('.conv.active')?.dataset.channel === 'general'`)
	if got := bob.sidebarChannels(); strings.Join(got, ",") != "general,random,secret" {
		t.Errorf("bob's channels after leaving #design: %q", got)
	}
	alice.openConversation("design")
	alice.click("seeing #design's members", "#open-members")
	alice.waitFor("only alice left in #design", `document.querySelectorAll('#member-list .item').length === 1`)
	alice.do("closing the members", chromedp.KeyEvent(kb.Escape))

	// A link to a public channel one is not in offers to join it.
	bob.do("following a link to #design", chromedp.Evaluate[chromedp.Void](`location.hash = '#/design'`))
	bob.waitFor("the offer to join", `document.getElementById('gone').dataset.kind === 'joinable' && !document.getElementById('gone-join').hidden`)
	bob.click("joining", "#gone-join")
	bob.waitFor("#design open again", `document.querySelector('.conv.active')?.dataset.channel === 'design' && document.getElementById('gone').hidden`)
	bob.waitMessage("hello design")
	bob.waitFor("only one #design", `document.querySelectorAll('#sidebar .conv[data-channel="design"]').length === 1`)
}

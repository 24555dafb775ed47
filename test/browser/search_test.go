package browser

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/go-cmp/cmp"
)

// TestSearch: the search box in the top bar searches every conversation
// the person is in; the results pane lists where, who, when and the text
// (as text), newest first, pages with "More results", and says when nothing
// is found. A result opens its conversation, fetches older history until
// the message is there, scrolls it into view, focuses and highlights it for
// a moment; a reply opens its thread and is highlighted there. Escape
// closes the pane. A search over 256 bytes is refused without asking the
// server; a 503 while the server indexes is retried by itself, a few
// times; a 400 shows the server's message.
func TestSearch(t *testing.T) {
	began := time.Now()
	step := func(name string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), name) }
	srv := startServer(t)
	alice := newPerson(t, "alice")
	alice.signup(srv.url(), "alice")
	carol := dialClient(t, srv, "carol")

	step("carol writes the target in #general, 120 messages after it, a thread, one in #random, a DM")
	target := carol.sendMessage("general", "zebra quarterly report")
	const fillers = 120
	for i := 1; i <= fillers; i++ {
		carol.sendMessage("general", fmt.Sprintf("filler %03d status update", i))
	}
	root := carol.sendMessage("general", "planning the offsite")
	reply := replyAs(carol, "general", root, "the giraffe enclosure is booked")
	random := carol.sendMessage("random", "a zebra crossed the road")
	carol.seq++
	carol.send(map[string]any{"type": "send", "to": "alice", "text": "okapi <img src=x onerror=alert(1)> & <b>sighting</b>", "clientId": fmt.Sprintf("ws-%d", carol.seq)})
	dm := carol.expect("the DM's ack", isObj("ack", "clientId", fmt.Sprintf("ws-%d", carol.seq)))["id"].(string)

	// A fresh page: #general from its newest history page, which does not
	// hold the target.
	alice.reload()
	alice.waitMessage("planning the offsite")
	if eval[bool](alice, `!!`+msgSel3JS(target)) {
		t.Fatal("the first history page of #general already holds the target: the test cannot see the jump fetch older pages")
	}
	if !eval[bool](alice, `(i => !!i && i.type === 'search' && !!i.closest('[role=search]'))(document.querySelector('input[aria-label="Search messages"]'))`) {
		t.Fatal("no search box labelled “Search messages” in a search landmark")
	}
	alice.do("recording the searches the page sends, and answering some itself", chromedp.Evaluate[chromedp.Void](`(() => {
  window.__searches = [];
  window.__canned = []; // answers given instead of the server's, in turn
  const fetch0 = window.fetch;
  window.fetch = function (url, init) {
    if (String(url).includes('/api/v1/search')) {
      window.__searches.push(String(url));
      const c = window.__canned.length > 1 ? window.__canned.shift() : window.__canned[0];
      if (c) {
        const headers = { 'Content-Type': 'application/json' };
        if (c.retryAfter) headers['Retry-After'] = String(c.retryAfter);
        return Promise.resolve(new Response(JSON.stringify({ error: { code: c.code, message: c.message } }), { status: c.status, headers }));
      }
    }
    return fetch0.call(this, url, init);
  };
})()`))

	// search types q into the box as a person does and presses Enter.
	search := func(q string) {
		t.Helper()
		alice.do("resetting the recorded searches", chromedp.Evaluate[chromedp.Void](`window.__searches = []`))
		alice.fill("#search-input", q)
		alice.do("pressing Enter in the search box", pressEnter)
	}

	step("searches, and what their results show")
	for _, tc := range []struct {
		name, q string
		want    []searchHit // newest first; none: "No messages found"
	}{
		{"a word in two channels, newest first", "zebra", []searchHit{
			{Where: "#random", From: "carol", Text: "a zebra crossed the road", Marked: []string{"zebra"}, ID: random},
			{Where: "#general", From: "carol", Text: "zebra quarterly report", Marked: []string{"zebra"}, ID: target},
		}},
		{"every word, in any case", "Report ZEBRA", []searchHit{
			{Where: "#general", From: "carol", Text: "zebra quarterly report", Marked: []string{"zebra", "report"}, ID: target},
		}},
		{"whole words only", "zeb", nil},
		{"a word nobody wrote", "hippopotamus", nil},
		{"a DM, named by the other person, its text as text", "okapi", []searchHit{
			{Where: "carol", Note: "direct message", From: "carol", Text: "okapi <img src=x onerror=alert(1)> & <b>sighting</b>", Marked: []string{"okapi"}, ID: dm},
		}},
		{"a reply, marked as in a thread", "giraffe", []searchHit{
			{Where: "#general", Note: "in a thread", From: "carol", Text: "the giraffe enclosure is booked", Marked: []string{"giraffe"}, ID: reply, Thread: root},
		}},
	} {
		search(tc.q)
		want := "No messages found"
		if len(tc.want) > 0 {
			want = fmt.Sprintf("%d messages found", len(tc.want))
			if len(tc.want) == 1 {
				want = "1 message found"
			}
		}
		alice.waitFor(tc.name+": the pane, done", `!document.getElementById('search-pane').hidden && document.getElementById('search-status').textContent === `+jsString(want)+
			` && document.getElementById('search-query').textContent === `+jsString("“"+tc.q+"”"))
		got := eval[[]searchHit](alice, searchHitsJS)
		for i := range tc.want {
			tc.want[i].Timed = true
		}
		if diff := cmp.Diff(tc.want, got); diff != "" && !(len(tc.want) == 0 && len(got) == 0) {
			t.Errorf("%s: searching %q (-want +got):\n%s", tc.name, tc.q, diff)
		}
		if n := eval[int](alice, `window.__searches.length`); n != 1 {
			t.Errorf("%s: %d requests to /api/v1/search, want 1", tc.name, n)
		}
		if eval[bool](alice, `!!document.querySelector('#search-pane img, #search-pane b') || !document.getElementById('search-more').hidden || !document.getElementById('search-error').hidden`) {
			t.Errorf("%s: the pane holds markup from a message, an error, or a More button", tc.name)
		}
	}
	alice.screenshot(shots(t), "search-results.png")

	step("More results fetches the next page and appends it")
	search("filler")
	alice.waitFor("the first page and More results", `document.querySelectorAll('#search-results .search-hit').length === 20 && !document.getElementById('search-more').hidden && document.getElementById('search-status').textContent === '20 messages found, more below'`)
	alice.click("More results", "#search-more")
	alice.waitFor("40 results, the keyboard on the 21st", `document.querySelectorAll('#search-results .search-hit').length === 40 && document.activeElement === document.querySelectorAll('#search-results .search-hit')[20]`)
	var wantTexts []string
	for i := fillers; i > fillers-40; i-- {
		wantTexts = append(wantTexts, fmt.Sprintf("filler %03d status update", i))
	}
	if got := eval[[]string](alice, `[...document.querySelectorAll('#search-results .search-text')].map(e => e.textContent)`); !cmp.Equal(got, wantTexts) {
		t.Errorf("after More results (-want +got):\n%s", cmp.Diff(wantTexts, got))
	}
	if got := eval[[]string](alice, `window.__searches.map(u => new URL(u, location.href).searchParams.get('before') || '')`); len(got) != 2 || got[0] != "" || got[1] == "" {
		t.Errorf("the two pages were asked for with before = %q, want none, then the first page's next", got)
	}
	alice.do("pressing ↑ from the 21st result", pressKey("ArrowUp", 38))
	if !eval[bool](alice, `document.activeElement === document.querySelectorAll('#search-results .search-hit')[19]`) {
		t.Error("↑ in the results does not move to the result above")
	}

	step("a result jumps to the message: the page switches, fetches older pages, scrolls, focuses, highlights")
	alice.openConversation("random")
	search("zebra")
	alice.waitFor("the two results", `document.querySelectorAll('#search-results .search-hit').length === 2`)
	alice.click("the #general result", fmt.Sprintf(`#search-results .search-hit[data-id=%q]`, target))
	alice.waitFor("#general open, the target in it, in view, focused and highlighted", `document.querySelector('.conv.active')?.dataset.channel === 'general' && (m => !!m
  && m.classList.contains('highlighted') && document.activeElement === m
  && (r => { const s = document.getElementById('scroller').getBoundingClientRect(); return r.height > 0 && r.top >= s.top - 1 && r.bottom <= s.bottom + 1 && r.bottom <= innerHeight; })(m.getBoundingClientRect()))(`+msgSel3JS(target)+`)`)
	alice.checkTimeline(-1)
	if n := eval[int](alice, `document.querySelectorAll('#messages .msg.highlighted').length`); n != 1 {
		t.Errorf("%d messages highlighted, want 1", n)
	}
	alice.screenshot(shots(t), "search.png")
	texts := []string{"#search-input::placeholder", "#search-query", "#search-status", "#search-results .search-where", "#search-results .search-hit-meta .author", "#search-results .search-hit-meta time", "#search-results .search-text", "#search-results .search-text mark", "#messages .msg.highlighted .text"}
	focus := []string{"#search-input", "#search-results .search-hit", "#search-close"}
	checkContrast(t, "light", textContrast(alice, texts))
	checkContrast(t, "light", focusContrast(alice, focus))
	alice.preferDark() // from here on
	checkContrast(t, "dark", textContrast(alice, texts))
	checkContrast(t, "dark", focusContrast(alice, focus))
	alice.waitForWithin(15*time.Second, "the highlight to go after a moment", `!!`+msgSel3JS(target)+` && !document.querySelector('#messages .msg.highlighted')`)

	step("Escape closes the results")
	alice.do("focusing the first result", chromedp.Focus(chromedp.CSS("#search-results .search-hit")))
	alice.do("pressing Escape", pressKey("Escape", 27))
	alice.waitFor("the pane closed, the keyboard back in the search box", `document.getElementById('search-pane').hidden && !document.querySelector('.chat').classList.contains('search-open') && document.activeElement.id === 'search-input'`)

	step("a reply found opens its thread, highlighted there")
	search("giraffe")
	alice.waitFor("the reply's result", `document.querySelectorAll('#search-results .search-hit').length === 1`)
	alice.do("↓ to the result, then Enter", pressKey("ArrowDown", 40), chromedp.KeyEvent(kb.Enter))
	alice.waitFor("the thread open, the reply highlighted and focused, the results closed", paneOpenJS(root)+` && (m => !!m && m.classList.contains('highlighted') && document.activeElement === m)(document.querySelector(`+jsString(threadSel(reply))+`)) && document.getElementById('search-pane').hidden`)
	alice.do("pressing Escape", pressKey("Escape", 27))
	alice.waitFor("the thread closed, the keyboard back in the search box", `document.getElementById('thread-pane').hidden && document.activeElement.id === 'search-input'`)

	step("a search over 256 bytes is refused without asking the server")
	for _, tc := range []struct {
		name, q string
		refused bool
	}{
		{"257 ASCII bytes", strings.Repeat("zebra ", 42) + "zebra", true},
		{"130 é: 130 characters, 260 bytes", strings.Repeat("é", 130), true},
		{"128 é: exactly 256 bytes", strings.Repeat("é", 128), false},
	} {
		search(tc.q)
		if tc.refused {
			alice.waitFor(tc.name+": the error", `!document.getElementById('search-pane').hidden && (e => !e.hidden && e.textContent.includes('too long') && e.textContent.includes('256'))(document.getElementById('search-error')) && document.getElementById('search-input').getAttribute('aria-invalid') === 'true'`)
			if n := eval[int](alice, `window.__searches.length`); n != 0 {
				t.Errorf("%s: %d requests sent for a search the page refuses", tc.name, n)
			}
		} else {
			alice.waitFor(tc.name+": searched", `document.getElementById('search-status').textContent === 'No messages found' && document.getElementById('search-error').hidden`)
			if n := eval[int](alice, `window.__searches.length`); n != 1 {
				t.Errorf("%s: %d requests, want 1", tc.name, n)
			}
		}
	}

	step("503 while the server indexes: retried by itself, a few times; a 400 shows the server's message")
	for _, tc := range []struct {
		name     string
		canned   string // JSON: the answers given instead of the server's, the last one for good
		requests int
		done     string // what the pane shows at the end
	}{
		{"indexing, then done", `[{"status":503,"code":"unavailable","message":"indexing","retryAfter":1},{"status":503,"code":"unavailable","message":"indexing","retryAfter":1},null]`, 3,
			`document.querySelectorAll('#search-results .search-hit').length === 2 && document.getElementById('search-error').hidden`},
		{"indexing for too long", `[{"status":503,"code":"unavailable","message":"indexing","retryAfter":1}]`, 6,
			`(e => !e.hidden && e.textContent.includes('still being indexed'))(document.getElementById('search-error')) && !document.querySelector('#search-results .search-hit')`},
		{"refused", `[{"status":400,"code":"bad_request","message":"q: say what to search for (from the server)"}]`, 1,
			`(e => !e.hidden && e.textContent === 'q: say what to search for (from the server)')(document.getElementById('search-error')) && document.getElementById('search-status').textContent === ''`},
	} {
		alice.do("canning the answers", chromedp.Evaluate[chromedp.Void](`window.__canned = `+tc.canned))
		search("zebra")
		if tc.requests > 1 {
			alice.waitFor(tc.name+": the indexing notice", `document.getElementById('search-status').textContent.startsWith('Indexing the history… ')`)
		}
		alice.waitForWithin(20*time.Second, tc.name+": the end", `!document.getElementById('search-pane').hidden && `+tc.done)
		if n := eval[int](alice, `window.__searches.length`); n != tc.requests {
			t.Errorf("%s: %d requests, want %d", tc.name, n, tc.requests)
		}
	}
	alice.do("no more canned answers", chromedp.Evaluate[chromedp.Void](`window.__canned = []`))
	step("done")
}

// searchHit is one result as the pane shows it.
type searchHit struct {
	ID     string   `json:"id"`
	Thread string   `json:"thread"`
	Where  string   `json:"where"`
	Note   string   `json:"note"`
	From   string   `json:"from"`
	Timed  bool     `json:"timed"` // a <time> with its date and time
	Text   string   `json:"text"`
	Marked []string `json:"marked"`
}

// searchHitsJS reads the results pane.
const searchHitsJS = `[...document.querySelectorAll('#search-results .search-hit')].map(b => ({
  id: b.dataset.id,
  thread: b.dataset.thread || '',
  where: b.querySelector('.search-where').textContent,
  note: [...b.querySelectorAll('.search-hit-head .search-note')].map(e => e.textContent).join(' '),
  from: b.querySelector('.author').textContent,
  timed: (e => !!e && !!e.getAttribute('datetime') && /\d/.test(e.textContent))(b.querySelector('.search-hit-meta time')),
  text: b.querySelector('.search-text').textContent,
  marked: [...b.querySelectorAll('.search-text mark')].map(e => e.textContent.toLowerCase()),
}))`

package browser

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// contrastLib computes WCAG 2 contrast ratios from computed styles: the
// colour of an element's text (or of its focus indicator) against the
// background it sits on, found by compositing the backgrounds of it and its
// ancestors until one is opaque.
const contrastLib = `
const parse = (c) => {
  const m = /rgba?\(([^)]+)\)/.exec(c || '');
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(parseFloat);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
const bgOf = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) {
      layers.push(c);
      if (c[3] >= 1) break;
    }
  }
  let color = matchMedia('(prefers-color-scheme: dark)').matches ? [0, 0, 0, 1] : [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) color = over(layers[i], color);
  return color;
};
const lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
};
const ratio = (a, b) => {
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return Math.round(((x + 0.05) / (y + 0.05)) * 100) / 100;
};
const hex = (c) => '#' + c.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, '0')).join('');
const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== 'hidden'; };
`

type contrast struct {
	Name  string  `json:"name"`
	Found bool    `json:"found"`
	FG    string  `json:"fg"`
	BG    string  `json:"bg"`
	Ratio float64 `json:"ratio"`
	Min   float64 `json:"min"`
	Note  string  `json:"note"`
}

// textContrast measures the first visible element each selector matches
// (with "::placeholder", its placeholder) against the WCAG minimum for its
// size: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold).
func textContrast(p *person, selectors []string) []contrast {
	p.t.Helper()
	return eval[[]contrast](p, `(() => {`+contrastLib+`
  return `+mustJSON(selectors)+`.map((sel) => {
    const [base, pseudo] = sel.split('::');
    const el = [...document.querySelectorAll(base)].find(visible);
    if (!el) return { name: sel, found: false };
    const st = getComputedStyle(el, pseudo ? '::' + pseudo : null);
    const bg = bgOf(el);
    const fg = over(parse(st.color), bg);
    const size = parseFloat(st.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
    return { name: sel, found: true, fg: hex(fg), bg: hex(bg), ratio: ratio(fg, bg), min: large ? 3 : 4.5, note: (el.textContent || el.placeholder || '').trim().slice(0, 30) };
  });
})()`)
}

// focusContrast focuses each element as the keyboard would (after a real
// Tab, so :focus-visible applies) and measures its focus indicator against
// the colour next to it: the outline against what surrounds the element
// (or, drawn inside, against the element itself); for a text field that
// shows focus by its border instead, that border (the composer's box for
// the message box).
func focusContrast(p *person, selectors []string) []contrast {
	p.t.Helper()
	p.do("pressing Tab, so focus shows as for a keyboard", chromedp.KeyEvent(kb.Tab))
	return eval[[]contrast](p, `(() => {`+contrastLib+`
  return `+mustJSON(selectors)+`.map((sel) => {
    const el = [...document.querySelectorAll(sel)].find(visible);
    if (!el) return { name: sel, found: false };
    el.focus();
    if (document.activeElement !== el) return { name: sel, found: true, note: 'cannot take focus' };
    const st = getComputedStyle(el);
    let color;
    let against;
    let note;
    if (st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 1) {
      if (!el.matches(':focus-visible')) return { name: sel, found: true, note: 'no :focus-visible' };
      color = parse(st.outlineColor);
      against = parseFloat(st.outlineOffset) < 0 ? bgOf(el) : bgOf(el.parentElement);
      note = 'outline ' + st.outlineWidth;
    } else {
      const box = el.closest('.composer') || el;
      color = parse(getComputedStyle(box).borderTopColor);
      against = bgOf(box.parentElement);
      note = 'border of ' + (box === el ? 'the field' : 'the composer');
    }
    const c = over(color, against);
    el.blur();
    return { name: sel, found: true, fg: hex(c), bg: hex(against), ratio: ratio(c, against), min: 3, note };
  });
})()`)
}

func checkContrast(t *testing.T, who string, got []contrast) {
	t.Helper()
	for _, c := range got {
		switch {
		case !c.Found:
			t.Errorf("%s: nothing visible matches %s", who, c.Name)
		case c.Min == 0:
			t.Errorf("%s: %s: %s", who, c.Name, c.Note)
		case c.Ratio < c.Min:
			t.Errorf("%s: %s (%q): %s on %s is %.2f:1, below %.1f:1", who, c.Name, c.Note, c.FG, c.BG, c.Ratio, c.Min)
		default:
			t.Logf("%s: %-34s %s on %s %5.2f:1 (%s)", who, c.Name, c.FG, c.BG, c.Ratio, c.Note)
		}
	}
}

// TestContrast: the page's text has at least 4.5:1 contrast against its
// background (3:1 when large) and its focus indicators at least 3:1, in the
// light and the dark colour scheme, measured in the browser from the
// computed styles of the elements on screen.
func TestContrast(t *testing.T) {
	srv := startServer(t)
	alice := newPerson(t, "alice") // light
	bob := newPerson(t, "bob")
	bob.preferDark()
	alice.signup(srv.url(), "alice")
	bob.signup(srv.url(), "bob")
	// bob came after alice's people list loaded: a search shows him.
	alice.fill("#people-search", "b")
	alice.waitFor("bob in alice's people list", `document.querySelector('#people-list [data-user="bob"]')`)

	// Something of everything: messages, mentions of each and of others,
	// links, and for each an unread conversation (a mention apart from the
	// rest) to open.
	alice.openConversation("random")
	bob.openConversation("random")
	alice.send("hi @bob, notes at https://example.com/notes")
	bob.send("thanks @alice")
	alice.waitMessage("thanks @alice")
	alice.openConversation("general")
	bob.send("@alice when you have a minute")
	bob.send("no rush")
	alice.send("@bob see https://example.com/faq")
	alice.send("and this, cc @carol")
	unread := map[*person]string{alice: "random", bob: "general"}
	for _, p := range []*person{alice, bob} {
		ch := unread[p]
		p.waitFor("the badges of "+ch, badgesJS(ch)+`?.mention === '@1' && `+badgesJS(ch)+`?.unread === '1'`)
	}

	sidebar := []string{
		".sidebar-head .brand span",
		"#channels-title",
		"#channel-list .conv.active .conv-name",
		"#channel-list .conv:not(.active) .conv-name",
		"#channel-list .conv:not(.active) .hash",
		".badge-mention",
		".badge-unread",
		"#people-title",
		"#people-list .conv-name",
		"#people-search::placeholder",
		".me-name",
	}
	pane := []string{
		"#channel-title",
		"#conn-text",
		"#messages .msg .author",
		"#messages .msg .text",
		"#messages .msg-head time",
		"#messages .msg .text a",
		"#messages .mention:not(.mention-me)",
		"#messages .mention-me",
		"#messages .msg.mentions-me .text",
		".day-sep span",
		".unread-divider span",
		"#composer-input::placeholder",
		".composer-hint",
	}
	focus := []string{
		"#channel-list .conv.active",
		"#channel-list .conv:not(.active)",
		"#people-list .conv:not(:disabled)",
		"#browse-channels",
		"#create-channel",
		"#open-sessions",
		"#logout",
		"#scroller",
		"#messages .msg .text a",
		"#send",
		"#people-search",
		"#composer-input",
	}
	for _, p := range []*person{alice, bob} {
		scheme := map[*person]string{alice: "light", bob: "dark"}[p]
		checkContrast(t, scheme, textContrast(p, sidebar))

		p.openConversation(unread[p])
		p.waitFor("the divider", `document.querySelector('#messages .unread-divider')`)
		checkContrast(t, scheme, textContrast(p, pane))
		p.setComposer(strings.Repeat("x", 4000))
		p.waitFor("the counter", `!document.getElementById('composer-count').hidden`)
		checkContrast(t, scheme, textContrast(p, []string{"#composer-count"}))
		p.setComposer(strings.Repeat("x", 4100))
		checkContrast(t, scheme, textContrast(p, []string{"#composer-count.over"}))
		p.setComposer("")

		checkContrast(t, scheme, focusContrast(p, focus))

		// The sessions dialog, over the page.
		p.click("opening the sessions dialog", "#open-sessions")
		p.waitFor("the sessions", `document.querySelectorAll('#session-list .session').length === 1`)
		checkContrast(t, scheme, textContrast(p, []string{"#sessions-title", ".dialog-sub", ".session-meta", "#session-list .pill"}))
		checkContrast(t, scheme, focusContrast(p, []string{"#sessions-close", "#session-list .revoke", "#logout-all"}))
		p.do("closing it", chromedp.KeyEvent(kb.Escape))
		p.waitFor("the dialog to close", `!document.getElementById('sessions-dialog').open`)
	}
	if t.Failed() {
		t.Log("colours are in chatserver/web/static/assets/app.css (:root and its dark-scheme block)")
	}
}

package browser

import (
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"

	"github.com/hubbub-chat/hubbub/chatserver/web"
)

// TestClientLogic checks the page's pure protocol helpers (proto.js) in the
// real browser, against the real embedded files and their CSP, with no chat
// server: id order, de-duplication, frame splitting, DM names, mentions,
// backoff, byte counts, the pause after a refused send, where unread
// messages start and how many mention me, directory prefixes, the people
// list's order, and drafts (drafts.js).
func TestClientLogic(t *testing.T) {
	ts := httptest.NewServer(web.Handler())
	t.Cleanup(ts.Close)
	p := newPerson(t, "unit")
	// A 404 page of the handler: same origin and CSP as the app, but no app booting.
	p.do("opening a page of the origin", chromedp.Navigate(ts.URL+"/no-app-here"))

	type result struct {
		Name string `json:"name"`
		Got  any    `json:"got"`
		Want any    `json:"want"`
	}
	results := eval[[]result](p, `(async () => {
  const m = await import('/assets/proto.js');
  const out = [];
  const check = (name, got, want) => out.push({ name, got, want });

  check('numeric id order', m.compareIds('10-0', '9-5'), 1);
  check('seq order', m.compareIds('5-2', '5-10'), -1);
  check('equal ids', m.compareIds('7-1', '7-1'), 0);
  check('empty id first', m.compareIds('', '1-0'), -1);
  check('big ms', m.compareIds('1700000000000-0', '999999999999-99'), 1);

  // Live, replayed and paged messages in any order and repeated: one each, in order.
  const t = new m.Timeline();
  const ids = ['3-0', '1-0', '10-0', '2-5', '2-10', '1-0', '10-0', '9-99', '3-0'];
  const results = ids.map(id => t.insert({ id, text: id }));
  check('timeline order', t.messages.map(x => x.id), ['1-0', '2-5', '2-10', '3-0', '9-99', '10-0']);
  check('duplicates refused', results.filter(r => r === -1).length, 3);
  check('oldest/newest', [t.oldestId, t.newestId], ['1-0', '10-0']);

  const bad = [];
  check('frame split', m.splitFrame('{"type":"ack","id":"1-0"}\n\n{"type":"message","id":"1-0"}\nnot json\n[1]\n', l => bad.push(l)).map(o => o.type), ['ack', 'message']);
  check('bad lines reported', bad, ['not json', '[1]']);

  check('dm name sorted', m.dmChannel('bob', 'alice'), 'dm:alice:bob');
  check('dm name folded', m.dmChannel('Zed', 'amy'), 'dm:amy:zed');
  check('dm peer', [m.dmPeer('dm:alice:bob', 'alice'), m.dmPeer('dm:alice:bob', 'bob')], ['bob', 'alice']);
  check('is dm', [m.isDM('dm:a:b'), m.isDM('general')], [true, false]);

  const tok = (s, me) => m.tokenize(s, me).map(x => x.type + ':' + x.value + (x.self ? '!' : ''));
  check('mentions', tok('hi @Alice and @bob.', 'alice'), ['text:hi ', 'mention:@Alice!', 'text: and ', 'mention:@bob', 'text:.']);
  check('email is no mention', tok('mail a@bob.com', 'bob'), ['text:mail a@bob.com']);
  check('links', tok('see https://example.com/x?y=1, ok', ''), ['text:see ', 'link:https://example.com/x?y=1', 'text:, ok']);
  check('markup stays text', tok('<b onclick=x>@ab</b>', ''), ['text:<b onclick=x>@ab</b>']);
  check('mentions()', [m.mentions('ping @carol', 'carol'), m.mentions('ping @carolyn', 'carol')], [true, false]);

  const opts = { base: 500, cap: 30000 };
  check('backoff ceiling grows', [0, 1, 2, 3].map(a => m.backoffDelay(a, opts, () => 0.999999)), [499, 999, 1999, 3999]);
  check('backoff capped', m.backoffDelay(20, opts, () => 0.999999), 29999);
  check('backoff full jitter floor', m.backoffDelay(5, opts, () => 0), 0);
  const draws = Array.from({ length: 200 }, () => m.backoffDelay(3, opts));
  check('backoff within window', draws.every(d => d >= 0 && d < 4000), true);
  check('backoff spread', new Set(draws).size > 100, true);

  check('utf8 length', [m.utf8Length('abc'), m.utf8Length('é'), m.utf8Length('🙂'), m.utf8Length('€')], [3, 2, 4, 3]);

  const rd = (a, r) => m.refusalDelay(a, { perSecond: 5, cap: 8000 }, () => r);
  check('refusal delay never immediate', [rd(0, 0), rd(0, 0.999999)], [125, 249]);
  check('refusal delay doubles, capped', [rd(1, 0), rd(2, 0), rd(10, 0)], [250, 500, 4000]);
  check('refusal delay follows the rate', m.refusalDelay(0, { perSecond: 1 }, () => 0), 500);

  const msgs = [
    { id: '1-0', from: 'bob', text: 'old' },
    { id: '2-0', from: 'bob', text: 'hi @alice' },
    { id: '3-0', from: 'alice', text: 'mine' },
    { id: '4-0', from: 'carol', text: 'plain' },
    { id: '5-0', from: 'bob', text: '@ALICE again' },
  ];
  check('unread split', m.unreadSplit(msgs, 3, 'alice'), { first: '2-0', mentions: 2, complete: true });
  check('unread split, one', m.unreadSplit(msgs, 1, 'alice'), { first: '5-0', mentions: 1, complete: true });
  check('unread split, more than held', m.unreadSplit(msgs, 9, 'alice'), { first: '1-0', mentions: 2, complete: false });
  check('unread split, none', m.unreadSplit(msgs, 0, 'alice'), { first: '', mentions: 0, complete: true });

  check('unread split skips deleted', m.unreadSplit([...msgs, { id: '6-0', deleted: true, from: '', text: '' }], 1, 'alice'), { first: '5-0', mentions: 1, complete: true });

  // Reactions as the server applies them: set semantics, so a replay changes nothing.
  let rs = [];
  for (const [e, u, on] of [['👍', 'bob', true], ['🎉', 'amy', true], ['👍', 'amy', true], ['👍', 'bob', true], ['🎉', 'amy', false], ['🎉', 'amy', false], ['👀', 'zed', false]]) rs = m.react(rs, e, u, on);
  check('reactions', rs, [{ emoji: '👍', users: ['bob', 'amy'] }]);
  const before = [{ emoji: '👍', users: ['bob'] }];
  m.react(before, '👍', 'amy', true);
  check('react returns a new list', before, [{ emoji: '👍', users: ['bob'] }]);
  check('deleted history entry', m.historyEntry({ id: '1700000000000-3', deleted: true }, 'general'),
    { id: '1700000000000-3', channel: 'general', from: '', text: '', ts: 1700000000000, deleted: true, reactions: [] });
  const he = m.historyEntry({ id: '5-0', channel: 'general', from: 'bob', text: 'hi', ts: 9, editedAt: 12, reactions: [{ emoji: '👍', users: ['amy'] }, { emoji: 'x' }, { emoji: '🎉', users: [] }] }, 'general');
  check('history entry', [he.text, he.editedAt, he.reactions], ['hi', 12, [{ emoji: '👍', users: ['amy'] }]]);

  check('name prefix', ['Bob', ' @al ', '#dev-ops', '', 'a b', 'x!'].map(m.namePrefix), ['bob', 'al', 'dev-ops', '', null, null]);
  check('people order', [{ username: 'zed', online: true }, { username: 'ann' }, { username: 'bob', online: true }, { username: 'al' }]
    .sort(m.peopleOrder).map((p) => p.username), ['bob', 'zed', 'al', 'ann']);

  const { loadDraft, saveDraft, clearDrafts } = await import('/assets/drafts.js');
  localStorage.clear();
  saveDraft('alice', 'general', 'half a thought');
  saveDraft('alice', 'dm:alice:bob', 'psst');
  saveDraft('al', 'general', 'another account');
  saveDraft('alice', 'random', '   ');
  check('drafts kept per user and channel', [loadDraft('alice', 'general'), loadDraft('alice', 'dm:alice:bob'), loadDraft('al', 'general'), loadDraft('alice', 'random')],
    ['half a thought', 'psst', 'another account', '']);
  check('blank drafts are not kept', localStorage.getItem('hubbub.draft:alice:random'), null);
  clearDrafts('alice');
  check('clearing one user keeps the others', [loadDraft('alice', 'general'), loadDraft('al', 'general')], ['', 'another account']);
  localStorage.clear();

  check('uuid v4', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(m.uuid()), true);
  return out;
})()`)
	if len(results) < 35 {
		t.Fatalf("only %d checks ran", len(results))
	}
	for _, r := range results {
		if diff := cmp.Diff(r.Want, r.Got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", r.Name, diff)
		}
	}
}

// TestCSPEnforcedInBrowser shows the policy is live in a real browser: HTML
// sinks throw (Trusted Types), so no code path can turn text into markup.
func TestCSPEnforcedInBrowser(t *testing.T) {
	ts := httptest.NewServer(web.Handler())
	t.Cleanup(ts.Close)
	p := newPerson(t, "csp")
	p.do("opening the page", chromedp.Navigate(ts.URL+"/"))
	p.allow("TrustedHTML") // the refusal below is reported on the console, as it should be
	got := eval[string](p, `(() => {
  try { document.createElement('div').innerHTML = '<img src=x onerror=alert(1)>'; return 'innerHTML allowed'; }
  catch (e) { return e.name; }
})()`)
	if got != "TypeError" {
		t.Errorf("assigning innerHTML: %q, want a TypeError from Trusted Types", got)
	}
}

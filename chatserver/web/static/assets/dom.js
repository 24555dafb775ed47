// DOM helpers. Every string a person typed reaches the page through
// textContent or a Text node, never through HTML parsing: the CSP's Trusted
// Types rule would throw on innerHTML anyway.

import { tokenize } from './proto.js';

// h creates an element. attrs: class, dataset ({...}), on ({event: fn}),
// text (textContent), hidden, and plain attributes. Children are nodes or
// strings (strings become Text nodes).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'hidden') el.hidden = true;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

// patchList makes list hold items (<li>s, each with a button first), keeping
// the entry already there under the same key and only bringing its button
// up to date. Lists are redrawn on every message and presence change: had
// the button under the pointer been replaced between a click's press and
// its release, the click would have gone to a common ancestor, and been
// lost. (The kept button's listener is the one it was made with: the key
// must say everything a click on it does.)
export function patchList(list, items, key) {
  const old = new Map();
  for (const li of list.children) old.set(key(li), li);
  const next = items.map((li) => {
    const prev = old.get(key(li));
    if (!prev) return li;
    const was = prev.firstElementChild;
    const now = li.firstElementChild;
    for (const a of [...was.attributes]) if (!now.hasAttribute(a.name)) was.removeAttribute(a.name);
    for (const a of [...now.attributes]) if (was.getAttribute(a.name) !== a.value) was.setAttribute(a.name, a.value);
    was.disabled = now.disabled;
    was.replaceChildren(...now.childNodes);
    return prev;
  });
  if (next.length !== list.children.length || next.some((li, i) => list.children[i] !== li)) list.replaceChildren(...next);
}

// show/hide toggle the hidden attribute (style attributes are off limits under the CSP).
export function show(el, on = true) { el.hidden = !on; }

// hue gives each username a stable colour, set through CSSOM (allowed by the CSP).
export function hue(name) {
  let x = 0;
  for (const ch of String(name)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

export function avatar(name, cls = 'avatar') {
  const el = h('span', { class: cls, 'aria-hidden': 'true', text: String(name).slice(0, 1).toUpperCase() });
  el.style.setProperty('--hue', String(hue(name)));
  return el;
}

// renderText turns message text into a fragment of Text nodes, mention
// spans and safe links (http and https only, opened without a referrer).
export function renderText(text, me) {
  const frag = document.createDocumentFragment();
  for (const t of tokenize(text, me)) {
    if (t.type === 'text') frag.append(document.createTextNode(t.value));
    else if (t.type === 'mention') frag.append(h('span', { class: t.self ? 'mention mention-me' : 'mention', text: t.value }));
    else if (t.type === 'link') {
      let href = '';
      try {
        const u = new URL(t.value);
        if (u.protocol === 'http:' || u.protocol === 'https:') href = u.href;
      } catch {
        // not a URL after all
      }
      frag.append(href
        ? h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow', text: t.value })
        : document.createTextNode(t.value));
    }
  }
  return frag;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });

export function timeEl(ts) {
  const d = new Date(ts);
  return h('time', { datetime: d.toISOString(), title: fullFmt.format(d), text: timeFmt.format(d) });
}

// fullTime is ts as a full date and time, for titles.
export function fullTime(ts) {
  const d = new Date(ts);
  return Number.isFinite(d.getTime()) ? fullFmt.format(d) : '';
}

export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ts, now = Date.now()) {
  const k = dayKey(ts);
  if (k === dayKey(now)) return 'Today';
  if (k === dayKey(now - 86400000)) return 'Yesterday';
  const d = new Date(ts);
  return (d.getFullYear() === new Date(now).getFullYear() ? dayFmt : dayYearFmt).format(d);
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

// ago renders a past time as "5 minutes ago".
export function ago(ts, now = Date.now()) {
  const s = Math.round((ts - now) / 1000);
  const abs = Math.abs(s);
  if (abs < 45) return 'just now';
  if (abs < 3600) return rtf.format(Math.round(s / 60), 'minute');
  if (abs < 86400) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

// describeAgent turns a User-Agent header into "Chrome on Linux".
export function describeAgent(ua) {
  if (!ua) return 'Unknown device';
  const browser = /Edg\//.test(ua) ? 'Edge'
    : /OPR\//.test(ua) ? 'Opera'
      : /Firefox\//.test(ua) ? 'Firefox'
        : /HeadlessChrome\//.test(ua) ? 'Headless Chrome'
          : /Chrom(e|ium)\//.test(ua) ? 'Chrome'
            : /Safari\//.test(ua) ? 'Safari'
              : /curl\//.test(ua) ? 'curl'
                : /Go-http-client/.test(ua) ? 'Go client' : '';
  const os = /Android/.test(ua) ? 'Android'
    : /iPhone|iPad|iPod/.test(ua) ? 'iOS'
      : /Mac OS X|Macintosh/.test(ua) ? 'macOS'
        : /Windows/.test(ua) ? 'Windows'
          : /CrOS/.test(ua) ? 'ChromeOS'
            : /Linux/.test(ua) ? 'Linux' : '';
  if (browser && os) return `${browser} on ${os}`;
  return browser || os || ua.slice(0, 60);
}

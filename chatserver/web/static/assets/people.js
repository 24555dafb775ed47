// The people list in the sidebar: everyone in the room, online first, then
// everyone else by name. The directory (GET /api/v1/users) is paged by name
// and searched by prefix, and says who of a page is online; a second list
// (?online=true) names people online, refreshed every ONLINE_REFRESH. Live
// changes come as presence frames for the people the page watches: it asks
// for those this list shows (shown()), so the server sends presence to the
// sockets that show someone, not to everyone. Clicking anyone starts a DM,
// whether they are online or not.

import { avatar, h, patchList, show } from './dom.js';
import { namePrefix, peopleOrder } from './proto.js';

const PAGE = 50;
const ONLINE_REFRESH = 30_000; // ms between reloads of the online list
const SEARCH_DELAY = 200; // ms of quiet typing before asking the server

export class PeopleList {
  // api: the page's API; els: {list, search, more, status, count};
  // me(): who is logged in; pick(username): start a DM; onError(err):
  // a request failed (the page decides what a 401 means); rendered(): the
  // rows changed (the page watches whom the list shows).
  constructor({ api, els, me, pick, onError, rendered }) {
    this.api = api;
    this.els = els;
    this.me = me;
    this.pick = pick;
    this.onError = onError;
    this.rendered = rendered;
    this.online = new Set();
    this.reset();
    els.search.addEventListener('input', () => {
      clearTimeout(this.searchTimer);
      this.searchTimer = setTimeout(() => this.load(false), SEARCH_DELAY);
    });
    els.search.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      const first = els.list.querySelector('button:not(:disabled)');
      if (first) first.click();
    });
    els.more.addEventListener('click', () => this.load(true));
  }

  reset() {
    clearTimeout(this.searchTimer);
    this.q = '';
    this.people = new Map(); // username -> {username, online}
    this.next = '';
    this.cursor = ''; // the last name the directory has answered up to
    this.complete = false;
    this.loading = false;
    this.seq = 0;
    this.error = '';
    this.online = new Set();
    this.onlineMore = false; // the online list had more than a page
    clearInterval(this.onlineTimer);
    this.onlineTimer = 0;
    this.els.search.value = '';
    this.els.list.replaceChildren();
    this.els.status.textContent = '';
    show(this.els.more, false);
  }

  // presence changes one person (a presence frame).
  presence(user, online) {
    if (online) this.online.add(user);
    else this.online.delete(user);
    this.render();
  }

  // load fetches the first page for what the search box says, or the next page.
  async load(more) {
    const q = namePrefix(this.els.search.value);
    const seq = ++this.seq;
    if (!more) {
      this.q = q;
      this.people = new Map();
      this.next = '';
      this.cursor = '';
      this.complete = false;
    }
    if (q === null) {
      // Nobody's name has such characters: no need to ask.
      this.complete = true;
      this.render();
      return;
    }
    this.loading = true;
    this.els.list.setAttribute('aria-busy', 'true');
    this.els.more.disabled = true;
    if (!more) this.loadOnline(q, seq);
    if (!this.onlineTimer) this.onlineTimer = setInterval(() => this.loadOnline(this.q, this.seq), ONLINE_REFRESH);
    try {
      const res = await this.api.users(q, more ? this.next : '', PAGE);
      if (seq !== this.seq) return; // a newer search went out meanwhile
      for (const u of (res && res.users) || []) {
        if (typeof u.username !== 'string') continue;
        this.people.set(u.username, { username: u.username });
        this.cursor = u.username;
        if (u.online) this.online.add(u.username);
        else this.online.delete(u.username);
      }
      this.next = (res && res.next) || '';
      this.complete = !this.next;
      this.error = '';
    } catch (e) {
      if (seq !== this.seq) return;
      this.error = e.message;
      this.onError(e);
    } finally {
      if (seq === this.seq) {
        this.loading = false;
        this.els.more.disabled = false;
        this.els.list.removeAttribute('aria-busy');
      }
    }
    this.render();
  }

  // loadOnline adds the people online whose names start with q. A failure
  // only leaves the list as it was: the directory still lists everyone.
  async loadOnline(q, seq) {
    if (q === null) return;
    let res;
    try {
      res = await this.api.onlineUsers(q, PAGE);
    } catch {
      return;
    }
    if (seq !== this.seq) return;
    for (const u of (res && res.users) || []) {
      if (typeof u.username === 'string') this.online.add(u.username);
    }
    this.onlineMore = !!(res && res.next);
    this.render();
  }

  // shown lists the people the list shows now, for the page's watch.
  shown() {
    return this.rows().map((p) => p.username);
  }

  // rows: everyone online whose name fits the search, and everyone else the
  // directory has listed so far. Someone offline past the last name loaded
  // waits for "More people", so the list never skips a name.
  rows() {
    const q = this.q;
    if (q === null) return [];
    const out = new Map();
    for (const name of this.online) {
      if (name.startsWith(q)) out.set(name, { username: name, online: true });
    }
    for (const p of this.people.values()) {
      if (out.has(p.username)) continue;
      if (this.complete || p.username <= this.cursor) out.set(p.username, { username: p.username, online: false });
    }
    return [...out.values()].sort(peopleOrder);
  }

  render() {
    const { list, status, more, count } = this.els;
    const me = this.me();
    count.textContent = `${this.online.size}${this.onlineMore ? '+' : ''} online`;
    const focused = document.activeElement && list.contains(document.activeElement) ? document.activeElement.dataset.user : '';
    const rows = this.rows();
    patchList(list, rows.map((p) => {
      const self = p.username === me;
      const name = self ? `${p.username} (you)` : p.username;
      return h('li', {}, h('button', {
        type: 'button',
        class: `conv person${p.online ? ' online' : ''}`,
        dataset: { user: p.username, online: p.online ? '1' : '0' },
        disabled: self,
        title: self ? 'You' : `Message ${p.username}${p.online ? '' : ' (offline: they will see it when they are back)'}`,
        'aria-label': self ? name : `Message ${p.username}, ${p.online ? 'online' : 'offline'}`,
        on: { click: () => this.pick(p.username) },
      }, avatar(p.username, 'avatar avatar-xs'), h('span', { class: `presence${p.online ? ' on' : ''}`, 'aria-hidden': 'true' }), h('span', { class: 'conv-name', text: name })));
    }), (li) => li.firstElementChild.dataset.user);
    if (focused) {
      const again = list.querySelector(`[data-user="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    show(more, !this.complete && !this.loading && this.q !== null && !this.error);
    let text = '';
    if (this.error) text = `Could not load people: ${this.error}`;
    else if (this.loading && !rows.length) text = 'Loading…';
    else if (!rows.length && this.complete) text = this.els.search.value.trim() ? `No one’s name starts with “${this.els.search.value.trim()}”.` : 'No one here yet.';
    status.textContent = text;
    show(status, !!text);
    if (this.rendered) this.rendered();
  }
}

// Hubbub's chat page: views, state and the protocol glue.
//
// State lives in plain objects; the DOM is updated from it by small render
// functions. Message order and de-duplication are the Timeline's job
// (proto.js): whatever order history pages, resume replays and live messages
// arrive in, each message shows once, in id order.

import { api, ApiError } from './api.js';
import { Connection } from './conn.js';
import { $, ago, avatar, dayKey, dayLabel, describeAgent, h, renderText, show, timeEl } from './dom.js';
import { Timeline, compareIds, dmChannel, dmPeer, isDM, maxId, mentions, uuid } from './proto.js';

const PAGE = 50; // history page size
const TYPING_SEND_EVERY = 2500; // ms between our typing signals
const TYPING_SHOWN_FOR = 4000; // ms a typing signal stays on screen
const GROUP_WINDOW = 5 * 60 * 1000; // consecutive messages within this share a header
const TOAST_FOR = 7000;

// ---------------------------------------------------------------- state

let state;

function freshState() {
  return {
    me: '',
    channels: new Map(), // name -> channel (see channelFor)
    active: '',
    online: new Set(),
    pending: new Map(), // clientId -> {clientId, channel, frame, text, status, error}
    sentOnSocket: [], // clientIds sent on the current socket and not yet acked
    greeted: false, // hello received on the current socket
    started: false, // the first hello opened a channel
    lastTypingSent: 0,
    seenNotifications: new Set(),
  };
}

function channelFor(name) {
  let ch = state.channels.get(name);
  if (!ch) {
    ch = {
      name,
      dm: isDM(name),
      peer: isDM(name) ? dmPeer(name, state.me) : '',
      timeline: new Timeline(),
      unread: 0,
      countedTo: '', // unread already counts every message up to this id (from hello)
      readSent: '',
      historyLoaded: false,
      loading: false,
      hasMore: true,
      typing: new Map(), // user -> expiry timer
    };
    state.channels.set(name, ch);
  }
  return ch;
}

const conn = new Connection({
  url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`,
  checkSession: async () => {
    try {
      await api.me();
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return false;
      throw e;
    }
  },
});

// ---------------------------------------------------------------- views

function showAuth(notice = '') {
  show($('boot'), false);
  show($('chat-view'), false);
  show($('auth-view'), true);
  $('auth-notice').textContent = notice;
  show($('auth-notice'), !!notice);
  document.title = 'Hubbub';
  const first = $('login-form').hidden ? $('register-username') : $('login-username');
  first.focus();
}

function showChat() {
  show($('boot'), false);
  show($('auth-view'), false);
  show($('chat-view'), true);
}

function selectAuthTab(which) {
  const login = which === 'login';
  $('tab-login').setAttribute('aria-selected', String(login));
  $('tab-register').setAttribute('aria-selected', String(!login));
  $('tab-login').tabIndex = login ? 0 : -1;
  $('tab-register').tabIndex = login ? -1 : 0;
  show($('login-form'), login);
  show($('register-form'), !login);
}

function formError(id, msg) {
  $(id).textContent = msg;
  show($(id), !!msg);
}

async function withBusy(form, fn) {
  const btn = form.querySelector('button[type=submit]');
  btn.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    await fn();
  } finally {
    btn.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

async function onLogin(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  formError('login-error', '');
  await withBusy(form, async () => {
    try {
      const res = await api.login($('login-username').value.trim(), $('login-password').value);
      $('login-password').value = '';
      enterChat(res.username);
    } catch (e) {
      formError('login-error', e.message);
      $('login-password').select();
    }
  });
}

async function onRegister(ev) {
  ev.preventDefault();
  const form = ev.currentTarget;
  formError('register-error', '');
  const username = $('register-username').value.trim();
  const password = $('register-password').value;
  await withBusy(form, async () => {
    try {
      await api.register(username, password);
    } catch (e) {
      formError('register-error', e.message);
      return;
    }
    try {
      const res = await api.login(username, password);
      $('register-password').value = '';
      enterChat(res.username);
    } catch (e) {
      // The account exists; let them log in by hand.
      selectAuthTab('login');
      $('login-username').value = username;
      formError('login-error', e.message);
    }
  });
}

function enterChat(username) {
  state = freshState();
  state.me = username || '';
  renderMe();
  showChat();
  renderAll();
  conn.start();
  $('composer-input').focus();
}

// leave drops everything this tab knew and shows the login form.
function leave(notice) {
  conn.stop();
  state = freshState();
  $('messages').replaceChildren();
  $('pending').replaceChildren();
  $('toasts').replaceChildren();
  if ($('sessions-dialog').open) $('sessions-dialog').close();
  show($('notify-prompt'), false);
  closeNav();
  selectAuthTab('login'); // they have an account
  showAuth(notice);
}

async function logout() {
  try {
    await api.logout();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      toast({ title: 'Could not log out', body: e.message, kind: 'error' });
      return;
    }
  }
  leave('You have logged out.');
}

// ---------------------------------------------------------------- protocol

function onFrame(m) {
  switch (m.type) {
    case 'hello': return onHello(m);
    case 'message': return onMessage(m);
    case 'ack': return onAck(m);
    case 'presence': return onPresence(m);
    case 'typing': return onTyping(m);
    case 'read': return onRead(m);
    case 'notification': return onNotification(m);
    case 'error': return onServerError(m);
    case 'reconnect': return; // the connection handles the close that follows
    case 'resumed': return onResumed(m);
    default: console.debug('hubbub: ignoring unknown frame type', m.type);
  }
}

function onHello(m) {
  state.me = m.user || state.me;
  for (const c of m.channels || []) {
    const ch = channelFor(c.name);
    if (ch.dm) ch.peer = dmPeer(c.name, state.me);
    // The server's count is the truth; messages up to lastId are in it, so
    // replayed ones must not count again.
    ch.unread = Number(c.unread) || 0;
    ch.countedTo = c.lastId || '';
  }
  state.online = new Set(m.online || []);
  renderMe();
  state.greeted = true;
  if (!state.started) {
    state.started = true;
    const wanted = routeChannel();
    const first = [...state.channels.values()].find((c) => !c.dm);
    openChannel(wanted && (state.channels.has(wanted) || isDM(wanted)) ? wanted : first ? first.name : 'general', { focus: false });
  }
  // Ask for what we missed in every channel we hold messages for.
  const since = {};
  for (const ch of state.channels.values()) if (ch.timeline.size) since[ch.name] = ch.timeline.newestId;
  conn.send({ type: 'resume', since });
  // Then what we typed while away, in order; the server drops repeats of a clientId.
  state.sentOnSocket = [];
  for (const p of state.pending.values()) if (p.status === 'pending') transmit(p);
  conn.healthy();
  renderAll();
  markRead();
}

function onMessage(m) {
  if (typeof m.id !== 'string' || typeof m.channel !== 'string') return;
  const ch = channelFor(m.channel);
  const existing = ch.timeline.get(m.id);
  if (existing) {
    // Our own message, shown since its ack with a local time: take the server's.
    if (existing.provisional) {
      Object.assign(existing, m, { provisional: false });
      const el = ch.name === state.active && $('messages').querySelector(`[data-id="${CSS.escape(m.id)}"]`);
      if (el) {
        const list = ch.timeline.messages;
        el.replaceWith(messageEl(existing, list[list.indexOf(existing) - 1]));
      }
    }
    return;
  }
  const idx = ch.timeline.insert(m);
  stopTyping(ch, m.from);
  const fresh = compareIds(m.id, ch.countedTo) > 0;
  if (fresh && m.from !== state.me && !isReading(ch)) ch.unread++;
  if (ch.name === state.active) {
    appendOrRender(ch, idx);
    markReadSoon();
  }
  renderSidebar();
}

function onAck(m) {
  const p = state.pending.get(m.clientId);
  if (!p) return;
  state.pending.delete(m.clientId);
  state.sentOnSocket = state.sentOnSocket.filter((id) => id !== m.clientId);
  const ch = channelFor(p.channel);
  if (typeof m.id === 'string' && !ch.timeline.has(m.id)) {
    const idx = ch.timeline.insert({ id: m.id, channel: p.channel, from: state.me, text: p.text, ts: Date.now(), provisional: true });
    if (ch.name === state.active) appendOrRender(ch, idx);
  }
  renderPending();
  if (ch.name === state.active) markReadSoon();
  renderSidebar();
}

function onServerError(m) {
  if (m.clientId && state.pending.has(m.clientId)) {
    const p = state.pending.get(m.clientId);
    p.status = 'failed';
    p.error = m.message || m.code || 'The server could not take this message.';
    state.sentOnSocket = state.sentOnSocket.filter((id) => id !== m.clientId);
    renderPending();
    return;
  }
  toast({ title: 'Server error', body: m.message || m.code || 'Something went wrong.', kind: 'error' });
}

function onPresence(m) {
  if (m.status === 'online') state.online.add(m.user);
  else state.online.delete(m.user);
  renderSidebar();
}

function onTyping(m) {
  if (!m.user || m.user === state.me || !m.channel) return;
  const ch = channelFor(m.channel);
  clearTimeout(ch.typing.get(m.user));
  ch.typing.set(m.user, setTimeout(() => stopTyping(ch, m.user), TYPING_SHOWN_FOR));
  if (ch.name === state.active) renderTyping();
}

function stopTyping(ch, user) {
  if (!ch.typing.has(user)) return;
  clearTimeout(ch.typing.get(user));
  ch.typing.delete(user);
  if (ch.name === state.active) renderTyping();
}

function onRead(m) {
  // Another of our devices read this channel up to m.id.
  const ch = state.channels.get(m.channel);
  if (!ch) return;
  ch.readSent = maxId(ch.readSent, m.id);
  if (compareIds(m.id, ch.timeline.newestId) >= 0 && compareIds(m.id, ch.countedTo) >= 0) ch.unread = 0;
  renderSidebar();
}

function onNotification(m) {
  if (!m.channel || state.seenNotifications.has(m.id)) return;
  state.seenNotifications.add(m.id);
  const ch = channelFor(m.channel);
  if (isReading(ch)) return; // already on screen
  const where = ch.dm ? 'Direct message' : `Mentioned you in #${ch.name}`;
  toast({ title: m.from, subtitle: where, body: m.text, kind: m.kind === 'dm' ? 'dm' : 'mention', channel: m.channel });
  if (document.hidden && 'Notification' in window && Notification.permission === 'granted') {
    try {
      const n = new Notification(ch.dm ? `${m.from} (direct message)` : `${m.from} in #${ch.name}`, { body: m.text, tag: m.id, icon: '/assets/icon.svg' });
      n.addEventListener('click', () => { window.focus(); openChannel(m.channel); n.close(); });
    } catch {
      // Some platforms allow notifications only from a service worker; the toast is there anyway.
    }
  }
  maybeOfferNotifications();
}

// ---------------------------------------------------------------- sending

function transmit(p) {
  if (conn.send(p.frame)) state.sentOnSocket.push(p.clientId);
}

function sendMessage(text) {
  const ch = channelFor(state.active);
  const clientId = uuid();
  const frame = ch.dm
    ? { type: 'send', to: ch.peer, text, clientId }
    : { type: 'send', channel: ch.name, text, clientId };
  const p = { clientId, channel: ch.name, frame, text, status: 'pending', error: '' };
  state.pending.set(clientId, p);
  // Before hello the socket may be open but the session not ready; hello
  // sends everything pending, so only send now once greeted.
  if (state.greeted && conn.open) transmit(p);
  renderPending();
  scrollToBottom();
}

function retry(clientId) {
  const p = state.pending.get(clientId);
  if (!p) return;
  p.status = 'pending';
  p.error = '';
  if (state.greeted && conn.open) transmit(p);
  renderPending();
  $('composer-input').focus(); // the button that had focus is gone
}

function discard(clientId) {
  state.pending.delete(clientId);
  renderPending();
  $('composer-input').focus(); // the button that had focus is gone
}

function onComposerKey(ev) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  }
}

function onComposerSubmit(ev) {
  ev.preventDefault();
  const input = $('composer-input');
  // Blank lines around a message are never meant; indentation inside it is.
  const text = input.value.replace(/^(?:[ \t]*\n)+/, '').replace(/\s+$/, '');
  if (!text.trim()) return;
  input.value = '';
  autoGrow();
  sendMessage(text);
}

function onComposerInput() {
  autoGrow();
  const now = Date.now();
  if (!$('composer-input').value || now - state.lastTypingSent < TYPING_SEND_EVERY) return;
  state.lastTypingSent = now;
  if (state.greeted) conn.send({ type: 'typing', channel: state.active });
}

function autoGrow() {
  const ta = $('composer-input');
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 200)}px`;
}

// ---------------------------------------------------------------- reading

// isReading reports whether the person is looking at ch right now.
function isReading(ch) {
  return ch.name === state.active && !document.hidden && !$('chat-view').hidden;
}

let readTimer = 0;
function markReadSoon() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 300);
}

function markRead() {
  const ch = state.channels.get(state.active);
  if (!ch || !isReading(ch)) return;
  const newest = ch.timeline.newestId;
  if (ch.unread) {
    ch.unread = 0;
    renderSidebar();
  }
  if (newest && compareIds(newest, ch.readSent) > 0 && state.greeted && conn.open) {
    if (conn.send({ type: 'read', channel: ch.name, id: newest })) ch.readSent = newest;
  }
}

// onResumed: after the replay of our resume, the server says which channels
// we now hold whole. For the others, messages between what we had and what
// came back are no longer kept: start their history afresh from the newest
// page, and say so, rather than show a silent hole.
function onResumed(m) {
  for (const [name, whole] of Object.entries(m.recovered || {})) {
    if (whole) continue;
    const ch = state.channels.get(name);
    if (!ch) continue;
    ch.timeline = new Timeline();
    ch.historyLoaded = false;
    ch.hasMore = true;
    ch.trimmed = true;
    if (name === state.active) loadHistory(ch, false);
    toast({
      title: ch.dm ? `Conversation with ${ch.peer}` : `#${name}`,
      body: 'Some messages sent while you were away are no longer kept; showing the latest.',
      kind: 'info',
      channel: name,
    });
  }
}

// ---------------------------------------------------------------- history

async function loadHistory(ch, older) {
  if (ch.loading || (older && !ch.hasMore)) return;
  ch.loading = true;
  renderHistoryTop();
  const before = older ? ch.timeline.oldestId : '';
  try {
    const res = await api.history(ch.name, before, PAGE);
    const msgs = (res && res.messages) || [];
    for (const m of msgs) ch.timeline.insert(m);
    if (!older) ch.historyLoaded = true;
    if (older || !ch.timeline.size || msgs.length < PAGE) ch.hasMore = msgs.length >= PAGE;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      // A DM nobody has written in yet.
      ch.historyLoaded = true;
      ch.hasMore = false;
    } else if (e instanceof ApiError && e.status === 401) {
      leave('Your session has ended. Please log in again.');
      return;
    } else {
      toast({ title: 'Could not load messages', body: e.message, kind: 'error' });
    }
  } finally {
    ch.loading = false;
  }
  if (ch.name === state.active) {
    renderMessages({ keepScroll: older, toBottom: !older });
    markReadSoon();
  }
}

// ---------------------------------------------------------------- navigation

function routeChannel() {
  const h = decodeURIComponent(location.hash.slice(1));
  return h.startsWith('/') ? h.slice(1) : '';
}

function openChannel(name, { focus = true } = {}) {
  if (!name) return;
  markRead(); // what was on screen until now has been read
  const ch = channelFor(name);
  state.active = name;
  if (routeChannel() !== name) history.replaceState(null, '', `#/${name}`);
  renderHeader();
  renderSidebar();
  renderMessages({ toBottom: true });
  renderPending();
  renderTyping();
  closeNav();
  if (!ch.historyLoaded) loadHistory(ch, false);
  markRead();
  if (focus) $('composer-input').focus();
}

function startDM(user) {
  if (!user || user === state.me) return;
  openChannel(dmChannel(state.me, user));
}

function openNav() {
  document.body.classList.add('nav-open');
  show($('backdrop'), true);
  document.querySelector('.pane').inert = true; // the drawer is modal while open
  $('nav-open').setAttribute('aria-expanded', 'true');
  const current = $('sidebar').querySelector('[aria-current="page"]') || $('nav-close');
  current.focus();
}

function closeNav() {
  if (!document.body.classList.contains('nav-open')) return;
  document.body.classList.remove('nav-open');
  show($('backdrop'), false);
  document.querySelector('.pane').inert = false;
  $('nav-open').setAttribute('aria-expanded', 'false');
}

// ---------------------------------------------------------------- rendering

function renderAll() {
  renderMe();
  renderHeader();
  renderSidebar();
  renderMessages({ keepScroll: true });
  renderPending();
  renderTyping();
}

function renderMe() {
  $('me-name').textContent = state.me;
  const a = avatar(state.me || '?', 'avatar avatar-sm');
  a.id = 'me-avatar';
  $('me-avatar').replaceWith(a);
}

function label(ch) {
  return ch.dm ? ch.peer : `#${ch.name}`;
}

function renderHeader() {
  const ch = state.channels.get(state.active);
  if (!ch) return;
  const title = $('channel-title');
  title.replaceChildren();
  if (ch.dm) {
    title.append(h('span', { class: `presence ${state.online.has(ch.peer) ? 'on' : ''}`, 'aria-hidden': 'true' }), ch.peer);
  } else {
    title.append(h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }), ch.name);
  }
  const what = ch.dm ? ch.peer : `#${ch.name}`;
  $('composer-input').placeholder = `Message ${what}`;
  $('composer-label').textContent = `Message ${what}`;
  $('messages').setAttribute('aria-label', `Messages in ${what}`);
}

function convButton(ch) {
  const active = ch.name === state.active;
  const btn = h('button', {
    type: 'button',
    class: `conv${active ? ' active' : ''}${ch.unread ? ' has-unread' : ''}`,
    'aria-current': active ? 'page' : undefined,
    dataset: { channel: ch.name },
    on: { click: () => openChannel(ch.name) },
  });
  if (ch.dm) btn.append(h('span', { class: `presence ${state.online.has(ch.peer) ? 'on' : ''}`, 'aria-hidden': 'true' }), h('span', { class: 'conv-name', text: ch.peer }));
  else btn.append(h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' }), h('span', { class: 'conv-name', text: ch.name }));
  if (ch.unread) {
    btn.append(h('span', { class: 'badge', text: ch.unread > 99 ? '99+' : String(ch.unread) }),
      h('span', { class: 'visually-hidden', text: `, ${ch.unread} unread` }));
  }
  return h('li', {}, btn);
}

function renderSidebar() {
  if (!state) return;
  const chans = [...state.channels.values()];
  const pub = chans.filter((c) => !c.dm).sort((a, b) => a.name.localeCompare(b.name));
  const dms = chans.filter((c) => c.dm && (c.timeline.size || c.name === state.active || c.countedTo))
    .sort((a, b) => compareIds(b.timeline.newestId || b.countedTo, a.timeline.newestId || a.countedTo) || a.peer.localeCompare(b.peer));
  // Redrawing must not steal keyboard focus: remember which entry had it.
  const focused = document.activeElement;
  const refocus = focused && focused.closest('#sidebar') && (focused.dataset.channel || focused.dataset.user)
    ? (focused.dataset.channel ? `[data-channel="${CSS.escape(focused.dataset.channel)}"]` : `[data-user="${CSS.escape(focused.dataset.user)}"]`)
    : '';
  $('channel-list').replaceChildren(...pub.map(convButton));
  $('dm-list').replaceChildren(...dms.map(convButton));
  show($('dm-empty'), dms.length === 0);

  const people = [...state.online].sort((a, b) => (a === state.me) - (b === state.me) || a.localeCompare(b));
  $('online-count').textContent = String(people.length);
  $('online-list').replaceChildren(...people.map((u) => {
    const me = u === state.me;
    return h('li', {}, h('button', {
      type: 'button',
      class: 'conv person',
      dataset: { user: u },
      disabled: me,
      title: me ? 'You' : `Message ${u}`,
      'aria-label': me ? `${u} (you)` : `Message ${u}`,
      on: { click: () => startDM(u) },
    }, avatar(u, 'avatar avatar-xs'), h('span', { class: 'presence on', 'aria-hidden': 'true' }), h('span', { class: 'conv-name', text: me ? `${u} (you)` : u })));
  }));
  if (refocus && !document.activeElement.closest('#sidebar')) {
    const again = $('sidebar').querySelector(refocus);
    if (again) again.focus();
  }

  const total = chans.reduce((n, c) => n + c.unread, 0);
  const active = state.channels.get(state.active);
  document.title = `${total ? `(${total}) ` : ''}${active ? label(active) : 'Chat'} · Hubbub`;
  if (active && active.dm) renderHeader(); // presence dot
}

function messageEl(m, prev) {
  const continued = prev && prev.from === m.from && m.ts - prev.ts < GROUP_WINDOW && dayKey(prev.ts) === dayKey(m.ts);
  const mine = m.from === state.me;
  const el = h('article', {
    class: `msg${continued ? ' continued' : ''}${mine ? ' mine' : ''}${!mine && mentions(m.text, state.me) ? ' mentions-me' : ''}`,
    dataset: { id: m.id, from: m.from },
    'aria-label': `${m.from}: ${m.text.length > 80 ? `${m.text.slice(0, 80)}…` : m.text}`,
    tabindex: '-1',
  });
  el.append(continued ? h('span', { class: 'gutter' }, timeEl(m.ts)) : avatar(m.from));
  const body = h('div', { class: 'msg-body' });
  if (!continued) body.append(h('div', { class: 'msg-head' }, h('span', { class: 'author', text: m.from }), timeEl(m.ts)));
  body.append(h('p', { class: 'text' }, renderText(m.text, state.me)));
  el.append(body);
  return el;
}

function daySep(ts) {
  return h('div', { class: 'day-sep', role: 'separator', dataset: { day: dayKey(ts) } }, h('span', { text: dayLabel(ts) }));
}

function nearBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
  show($('jump-latest'), false);
}

// renderMessages redraws the active channel. keepScroll holds the view on
// the same messages (older history arrived above); toBottom jumps to the end.
function renderMessages({ keepScroll = false, toBottom = false } = {}) {
  const ch = state.channels.get(state.active);
  const box = $('messages');
  if (!ch) {
    box.replaceChildren();
    return;
  }
  const s = $('scroller');
  const stick = nearBottom();
  const fromBottom = s.scrollHeight - s.scrollTop;
  const nodes = [];
  let prev = null;
  for (const m of ch.timeline.messages) {
    if (!prev || dayKey(prev.ts) !== dayKey(m.ts)) nodes.push(daySep(m.ts));
    nodes.push(messageEl(m, prev));
    prev = m;
  }
  box.replaceChildren(...nodes);
  renderHistoryTop();
  if (toBottom || (stick && !keepScroll)) scrollToBottom();
  else if (keepScroll) s.scrollTop = s.scrollHeight - fromBottom;
}

// appendOrRender shows a message inserted at idx: appended when it is the
// newest (the usual case), otherwise by a redraw that keeps the order.
function appendOrRender(ch, idx) {
  const list = ch.timeline.messages;
  if (idx !== list.length - 1) {
    renderMessages({ keepScroll: !nearBottom() });
    return;
  }
  const stick = nearBottom();
  const m = list[idx];
  const prev = list[idx - 1];
  const box = $('messages');
  if (!prev || dayKey(prev.ts) !== dayKey(m.ts)) box.append(daySep(m.ts));
  box.append(messageEl(m, prev));
  renderHistoryTop();
  if (stick || m.from === state.me) scrollToBottom();
  else show($('jump-latest'), true);
}

function renderHistoryTop() {
  const ch = state && state.channels.get(state.active);
  if (!ch) return;
  const btn = $('load-older');
  const atStart = ch.historyLoaded && !ch.hasMore;
  show(btn, ch.historyLoaded && ch.hasMore);
  btn.disabled = ch.loading;
  btn.textContent = ch.loading ? 'Loading…' : 'Load older messages';
  show($('history-start'), atStart);
  $('history-start').textContent = ch.dm
    ? `This is the beginning of your conversation with ${ch.peer}.`
    : `This is the beginning of #${ch.name}.`;
}

function renderPending() {
  if (!state) return;
  const box = $('pending');
  const stick = nearBottom();
  const items = [...state.pending.values()].filter((p) => p.channel === state.active);
  box.replaceChildren(...items.map((p) => {
    const failed = p.status === 'failed';
    const el = h('article', {
      class: `msg mine ${failed ? 'failed' : 'pending'}`,
      dataset: { clientId: p.clientId },
      'aria-label': `${failed ? 'Not sent' : 'Sending'}: ${p.text}`,
    }, avatar(state.me));
    const body = h('div', { class: 'msg-body' },
      h('div', { class: 'msg-head' }, h('span', { class: 'author', text: state.me }), h('span', { class: 'status', text: failed ? 'Not sent' : 'Sending…' })),
      h('p', { class: 'text' }, renderText(p.text, state.me)));
    if (failed) {
      body.append(h('div', { class: 'msg-error' },
        h('span', { text: p.error }),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm retry', on: { click: () => retry(p.clientId) } }, 'Retry'),
        h('button', { type: 'button', class: 'btn btn-ghost btn-sm', on: { click: () => discard(p.clientId) } }, 'Discard')));
    }
    el.append(body);
    return el;
  }));
  if (stick) scrollToBottom();
}

function renderTyping() {
  const ch = state && state.channels.get(state.active);
  const who = ch ? [...ch.typing.keys()].sort() : [];
  let text = '';
  if (who.length === 1) text = `${who[0]} is typing…`;
  else if (who.length === 2) text = `${who[0]} and ${who[1]} are typing…`;
  else if (who.length > 2) text = 'Several people are typing…';
  $('typing').textContent = text;
}

function renderConn(detail) {
  const el = $('conn-state');
  const text = $('conn-text');
  el.dataset.state = detail.state;
  el.dataset.connects = String(conn.connects);
  clearInterval(renderConn.timer);
  show($('conn-retry'), detail.state === 'waiting');
  if (detail.state === 'online') text.textContent = 'Connected';
  else if (detail.state === 'connecting') text.textContent = conn.connects ? 'Reconnecting…' : 'Connecting…';
  else if (detail.state === 'stopped') text.textContent = 'Offline';
  else if (detail.state === 'waiting') {
    const tick = () => {
      const s = Math.max(0, Math.ceil((detail.retryAt - Date.now()) / 1000));
      text.textContent = s > 0 ? `Offline · retrying in ${s}s` : 'Offline · retrying…';
    };
    tick();
    renderConn.timer = setInterval(tick, 1000);
  }
  el.title = detail.reason || text.textContent;
}

// ---------------------------------------------------------------- toasts and notifications

function toast({ title, subtitle = '', body = '', kind = 'info', channel = '' }) {
  const box = $('toasts');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: { kind, channel } });
  const close = () => el.remove();
  const main = h('div', { class: 'toast-main' },
    h('div', { class: 'toast-title' }, h('strong', { text: title }), subtitle ? h('span', { class: 'toast-sub', text: subtitle }) : null),
    body ? h('p', { class: 'toast-body', text: body.length > 160 ? `${body.slice(0, 160)}…` : body }) : null);
  el.append(kind === 'dm' || kind === 'mention' ? avatar(title) : h('span', { class: 'toast-icon', 'aria-hidden': 'true', text: kind === 'error' ? '!' : 'i' }), main);
  if (channel) el.append(h('button', { type: 'button', class: 'btn btn-primary btn-sm', on: { click: () => { close(); openChannel(channel); } } }, 'Open'));
  el.append(h('button', { type: 'button', class: 'icon-btn toast-close', 'aria-label': 'Dismiss', on: { click: close } }, '✕'));
  // Hovering or focusing a toast keeps it: people read at their own pace.
  let timer = setTimeout(close, TOAST_FOR);
  const hold = () => clearTimeout(timer);
  const release = () => { clearTimeout(timer); timer = setTimeout(close, TOAST_FOR); };
  el.addEventListener('mouseenter', hold);
  el.addEventListener('focusin', hold);
  el.addEventListener('mouseleave', release);
  el.addEventListener('focusout', release);
  box.append(el);
  while (box.children.length > 4) box.firstElementChild.remove();
}

// The browser's permission prompt only ever follows a click on "Turn on",
// and the offer itself appears only once a DM or mention has arrived.
function maybeOfferNotifications() {
  const can = 'Notification' in window && window.isSecureContext && Notification.permission === 'default';
  show($('notify-prompt'), can && sessionStorage.getItem('hubbub.notify.dismissed') !== '1');
}

async function enableNotifications() {
  show($('notify-prompt'), false);
  try {
    const result = await Notification.requestPermission();
    if (result === 'granted') toast({ title: 'Notifications on', body: 'You will be notified of DMs and mentions while Hubbub is in the background.' });
  } catch {
    // Old browsers without the promise form; nothing to do.
  }
}

// ---------------------------------------------------------------- sessions dialog

async function openSessions() {
  const dlg = $('sessions-dialog');
  formError('sessions-error', '');
  if (!dlg.open) dlg.showModal();
  await renderSessions();
}

async function renderSessions() {
  const list = $('session-list');
  list.setAttribute('aria-busy', 'true');
  let res;
  try {
    res = await api.sessions();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return leave('Your session has ended. Please log in again.');
    formError('sessions-error', e.message);
    list.removeAttribute('aria-busy');
    return;
  }
  const sessions = ((res && res.sessions) || []).slice()
    .sort((a, b) => (b.current - a.current) || (Date.parse(b.lastSeenAt) - Date.parse(a.lastSeenAt)));
  list.replaceChildren(...sessions.map((s) => {
    const seen = Date.parse(s.lastSeenAt);
    const created = Date.parse(s.createdAt);
    const details = [s.ip, Number.isFinite(created) ? `signed in ${ago(created)}` : '', s.current ? 'active now' : Number.isFinite(seen) ? `last active ${ago(seen)}` : '']
      .filter(Boolean).join(' · ');
    return h('li', { class: `session${s.current ? ' current' : ''}`, dataset: { id: s.id } },
      h('div', { class: 'session-info' },
        h('div', { class: 'session-name' }, h('strong', { text: describeAgent(s.userAgent) }), s.current ? h('span', { class: 'pill', text: 'This device' }) : null),
        h('div', { class: 'session-meta', text: details, title: s.userAgent || '' })),
      h('button', {
        type: 'button',
        class: 'btn btn-ghost btn-sm revoke',
        'aria-label': s.current ? 'Log out of this device' : `Revoke ${describeAgent(s.userAgent)}${s.ip ? ` at ${s.ip}` : ''}`,
        on: { click: (ev) => revoke(s, ev.currentTarget) },
      }, s.current ? 'Log out' : 'Revoke'));
  }));
  list.removeAttribute('aria-busy');
}

async function revoke(s, btn) {
  btn.disabled = true;
  try {
    await api.revokeSession(s.id);
  } catch (e) {
    btn.disabled = false;
    if (!(e instanceof ApiError && e.status === 401)) {
      formError('sessions-error', e.message);
      return;
    }
  }
  if (s.current) return leave('You have logged out.');
  await renderSessions();
}

async function logoutEverywhere() {
  $('logout-all').disabled = true;
  try {
    await api.revokeAllSessions();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      formError('sessions-error', e.message);
      return;
    }
  } finally {
    $('logout-all').disabled = false;
  }
  leave('You have been logged out on every device.');
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('login-form').addEventListener('submit', onLogin);
  $('register-form').addEventListener('submit', onRegister);
  $('tab-login').addEventListener('click', () => selectAuthTab('login'));
  $('tab-register').addEventListener('click', () => selectAuthTab('register'));
  for (const tab of [$('tab-login'), $('tab-register')]) {
    tab.addEventListener('keydown', (ev) => {
      if (ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
      const next = tab.id === 'tab-login' ? 'register' : 'login';
      selectAuthTab(next);
      $(`tab-${next}`).focus();
    });
  }

  $('composer').addEventListener('submit', onComposerSubmit);
  $('composer-input').addEventListener('keydown', onComposerKey);
  $('composer-input').addEventListener('input', onComposerInput);
  $('logout').addEventListener('click', logout);
  $('open-sessions').addEventListener('click', openSessions);
  $('sessions-close').addEventListener('click', () => $('sessions-dialog').close());
  $('logout-all').addEventListener('click', logoutEverywhere);
  $('notify-enable').addEventListener('click', enableNotifications);
  $('notify-dismiss').addEventListener('click', () => {
    sessionStorage.setItem('hubbub.notify.dismissed', '1');
    show($('notify-prompt'), false);
  });
  $('nav-open').addEventListener('click', openNav);
  $('nav-close').addEventListener('click', () => { closeNav(); $('nav-open').focus(); });
  $('backdrop').addEventListener('click', closeNav);
  $('conn-retry').addEventListener('click', () => conn.retryNow());
  $('jump-latest').addEventListener('click', scrollToBottom);
  $('load-older').addEventListener('click', () => {
    const ch = state.channels.get(state.active);
    if (ch) loadHistory(ch, true);
  });

  const scroller = $('scroller');
  scroller.addEventListener('scroll', () => {
    if (nearBottom()) show($('jump-latest'), false);
    // Scrolling near the top fetches the previous page by itself.
    const ch = state && state.channels.get(state.active);
    if (ch && scroller.scrollTop < 120 && ch.historyLoaded && ch.hasMore && !ch.loading) loadHistory(ch, true);
  }, { passive: true });

  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && document.body.classList.contains('nav-open')) {
      closeNav();
      $('nav-open').focus();
    }
    // Alt+↑ / Alt+↓ move between conversations, as in most chat apps.
    if (ev.altKey && (ev.key === 'ArrowUp' || ev.key === 'ArrowDown') && state && state.active) {
      const names = [...document.querySelectorAll('#channel-list .conv, #dm-list .conv')].map((b) => b.dataset.channel);
      const i = names.indexOf(state.active);
      const next = names[(i + (ev.key === 'ArrowUp' ? -1 : 1) + names.length) % names.length];
      if (next) {
        ev.preventDefault();
        openChannel(next);
      }
    }
  });

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      markRead();
      conn.retryNow();
    }
  });
  window.addEventListener('online', () => conn.retryNow());
  // The drawer exists only at phone width; widening the window must not leave the page inert.
  matchMedia('(max-width: 760px)').addEventListener('change', (ev) => { if (!ev.matches) closeNav(); });
  window.addEventListener('hashchange', () => {
    const name = routeChannel();
    if (state && state.started && name && name !== state.active) openChannel(name);
  });

  conn.addEventListener('frame', (ev) => onFrame(ev.detail));
  conn.addEventListener('state', (ev) => renderConn(ev.detail));
  conn.addEventListener('closed', (ev) => {
    // The last few close codes, for anyone (or any test) asking why we reconnected.
    const el = $('conn-state');
    el.dataset.closes = [...(el.dataset.closes ? el.dataset.closes.split(',') : []), String(ev.detail.code)].slice(-10).join(',');
    state.greeted = false;
    if (ev.detail.code === 1009) {
      // A frame we sent was too big: resending it would loop. The culprit is
      // the largest message still unacknowledged on that socket.
      const p = state.sentOnSocket.map((id) => state.pending.get(id)).filter(Boolean)
        .reduce((a, b) => (!a || b.text.length > a.text.length ? b : a), null);
      if (p) {
        p.status = 'failed';
        p.error = 'This message is too large to send.';
      }
    }
    state.sentOnSocket = [];
    renderPending();
  });
  conn.addEventListener('auth', () => leave('Your session has ended. Please log in again.'));
}

async function boot() {
  state = freshState();
  wire();
  try {
    const me = await api.me();
    enterChat(me && me.username);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showAuth();
    else enterChat(''); // server unreachable: the connection retries, hello tells us who we are
  }
}

boot();

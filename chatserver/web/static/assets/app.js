// Hubbub's chat page: views, state and the protocol glue.
//
// State lives in plain objects; the DOM is updated from it by small render
// functions. Message order and de-duplication are the Timeline's job
// (proto.js): whatever order history pages, resume replays and live messages
// arrive in, each message shows once, in id order.

import { api, ApiError } from './api.js';
import { ChannelDialogs } from './channels.js';
import { Connection } from './conn.js';
import { $, ago, avatar, dayKey, dayLabel, describeAgent, fullTime, h, patchList, renderText, show, timeEl } from './dom.js';
import { clearDrafts, loadDraft, saveDraft } from './drafts.js';
import { PeopleList } from './people.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES, Timeline, compareIds, dmChannel, dmPeer, historyEntry, isDM, maxId, mentions, namePrefix,
  react, refusalDelay, unreadSplit, utf8Length, uuid,
} from './proto.js';

const PAGE = 50; // history page size
const BACKGROUND_LOADS = 3; // history pages fetched at once at login (for mentions in unread channels)
const TYPING_SEND_EVERY = 2500; // ms between our typing signals
const TYPING_SHOWN_FOR = 4000; // ms a typing signal stays on screen
const GROUP_WINDOW = 5 * 60 * 1000; // consecutive messages within this share a header
const TOAST_FOR = 7000;
const WATCH_DELAY = 300; // ms of list redraws gathered into one watch frame
const COUNTER_FROM = 0.8; // the length counter shows from this share of the limit on
// Server error codes that mean "not now": the message stays pending and is
// sent again, with the same clientId, after a pause.
const RETRY_LATER = new Set(['rate_limited', 'unavailable']);
// An edit, delete or reaction refused for now is sent again this many times
// (same clientId, growing pauses) before the page gives up and says so.
const CHANGE_RETRIES = 5;
const ORPHANS_KEPT = 500; // changes of messages not held, kept while a history page is on its way
const THREAD_PAGE = 200; // replies per page of the thread endpoint (its most)
const SEARCH_PAGE = 20; // results per page of a search
const SEARCH_MAX_BYTES = 256; // the longest search the server takes, in UTF-8 bytes
const SEARCH_RETRIES = 5; // searches sent again by themselves while the server indexes
const JUMP_PAGES = 20; // older history pages fetched, at most, to show a message found
const HIGHLIGHT_FOR = 4000; // ms a message jumped to stays highlighted
// The reaction picker's emoji, with the names screen readers say.
const EMOJI = [
  ['👍', 'thumbs up'], ['❤️', 'heart'], ['😂', 'laughing'], ['🎉', 'party popper'],
  ['😮', 'surprised'], ['😢', 'sad'], ['👀', 'eyes'], ['✅', 'check mark'],
];
// Why a reply in a thread was refused, when the server's message says nothing.
const REPLY_CODES = {
  unknown_message: 'The message you replied to was deleted, or is no longer kept.',
  bad_request: 'That message cannot be replied to.',
};
const CHANGE_FAILED = { edit: 'Could not edit the message', delete: 'Could not delete the message', react: 'Could not react' };
// What each refusal of a change means, when the server's message says nothing.
const CHANGE_CODES = {
  forbidden: 'You can only change your own messages.',
  unknown_message: 'That message no longer exists.',
  too_large: 'That is too large.',
  rate_limited: 'You are going too fast: try again in a moment.',
  unavailable: 'The server cannot store changes right now: try again in a moment.',
};

// ---------------------------------------------------------------- state

let state;

function freshState() {
  return {
    me: '',
    roomAdmin: false, // hello.admin: one of the room's admins, who may delete any message and run any created channel
    channels: new Map(), // name -> channel (see channelFor)
    active: '',
    online: new Set(),
    pending: new Map(), // clientId -> {clientId, channel, frame, text, status, error}
    sentOnSocket: [], // clientIds sent on the current socket and not yet acked
    greeted: false, // hello received on the current socket
    started: false, // the first hello opened a channel
    lastTypingSent: 0,
    seenNotifications: new Set(),
    // What the server refuses (hello.limits); the defaults until it says.
    limits: { maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES, messagesPerSecond: 5, maxWatch: 100 },
    watchKey: null, // the people last sent in a watch, joined; null: none sent on this socket
    watchTimer: 0,
    // After a rate_limited refusal, pending messages go out one at a time,
    // oldest first, each after the previous one's ack (so their order holds).
    paced: false,
    paceTimer: 0,
    paceAttempt: 0,
    removed: new Set(), // channels we left or were removed from since the page loaded
    gone: '', // the channel name shown as "not found" or "removed" instead of a conversation
    leaving: '', // the channel this tab asked to leave
    joinedHere: '', // the channel this tab is joining or creating (no toast for its channel frame)
    routeSeq: 0, // bumped by every navigation, so a slow route lookup cannot undo a newer one
    paceInFlight: '', // the clientId the pacer sent and waits on
    changes: new Map(), // clientId -> {clientId, type, channel, id, frame, attempt, timer}: edits, deletes and reactions not yet acked
    editing: null, // {channel, id, form, input, error}: the message being edited in place
    picker: null, // {channel, id}: the message the reaction picker is open for
    confirm: null, // {channel, id, where}: the message the delete dialog asks about
    // The thread open beside the conversation: {channel, root (id), rootMsg,
    // timeline (its replies), loading, complete, error, orphans, opener}.
    thread: null,
    threadDrafts: new Map(), // "channel\nroot" -> what was typed in that thread's box
    // The search whose results are open: {q, words, hits, next, loading,
    // done, error, retries, waitFor, timer}.
    search: null,
    jumpSeq: 0, // bumped by every jump to a message found, so only the newest goes on
    flash: null, // {channel, id, timer}: the message highlighted after a jump
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
      member: isDM(name), // a channel shows in the sidebar once hello or a channel frame says we are in it
      private: false,
      admin: false,
      isDefault: false,
      divider: null, // {count, id}: where "new messages" starts, while the conversation is open
      unread: 0,
      countedTo: '', // unread already counts every message up to this id (from hello)
      readSent: '',
      seen: '', // the newest id seen in the channel, message or change: where a resume starts
      orphans: [], // changes of messages not held that came while a history page was on its way
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

const people = new PeopleList({
  api,
  els: { list: $('people-list'), search: $('people-search'), more: $('people-more'), status: $('people-status'), count: $('online-count') },
  me: () => state.me,
  pick: (user) => startDM(user),
  onError: apiFailed,
  rendered: () => scheduleWatch(),
});

const dialogs = new ChannelDialogs({
  api,
  me: () => state.me,
  roomAdmin: () => state.roomAdmin,
  channel: (name) => state.channels.get(name),
  joined: (name, info) => joinedChannel(name, info),
  left: (name) => leftChannel(name),
  leaving: (name) => { state.leaving = name; },
  joining: (name) => { state.joinedHere = name; },
  setAdmin: (name, admin) => {
    const ch = state.channels.get(name);
    if (ch && ch.admin !== admin) {
      ch.admin = admin;
      renderHeader();
    }
  },
  onError: apiFailed,
});

// apiFailed handles what any failed request can mean for the whole page:
// the session is gone. Every other failure is shown where it happened.
function apiFailed(e) {
  if (e instanceof ApiError && e.status === 401) leave('Your session has ended. Please log in again.');
}

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
  people.reset();
  renderMe();
  showChat();
  renderAll();
  conn.start();
  $('composer-input').focus();
}

// leave drops everything this tab knew and shows the login form.
function leave(notice) {
  closeSearch({ refocus: false });
  conn.stop();
  clearTimeout(state.paceTimer);
  for (const c of state.changes.values()) clearTimeout(c.timer);
  state = freshState();
  people.reset();
  dialogs.closeAll();
  if ($('confirm-dialog').open) $('confirm-dialog').close();
  show($('react-picker'), false);
  hideThreadPane();
  $('messages').replaceChildren();
  $('pending').replaceChildren();
  $('toasts').replaceChildren();
  $('composer-input').value = '';
  $('thread-input').value = '';
  $('search-input').value = '';
  showGone(null);
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
  // Logging out on purpose forgets the drafts too (a shared computer);
  // a session that merely ended keeps them for the next login.
  clearDrafts(state.me);
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
    case 'channel': return onChannelAdded(m);
    case 'removed': return onRemoved(m);
    case 'edited': return onEdited(m);
    case 'deleted': return onDeleted(m);
    case 'reaction': return onReaction(m);
    default: console.debug('hubbub: ignoring unknown frame type', m.type);
  }
}

function onHello(m) {
  state.me = m.user || state.me;
  state.roomAdmin = !!m.admin;
  const limits = m.limits || {};
  if (Number(limits.maxMessageBytes) > 0) state.limits.maxMessageBytes = Number(limits.maxMessageBytes);
  if (Number(limits.messagesPerSecond) > 0) state.limits.messagesPerSecond = Number(limits.messagesPerSecond);
  if (Number(limits.maxWatch) > 0) state.limits.maxWatch = Number(limits.maxWatch);
  // Room to type past the limit (the counter says by how much), not without end.
  $('composer-input').maxLength = Math.max(20000, 2 * state.limits.maxMessageBytes);
  $('thread-input').maxLength = $('composer-input').maxLength;
  updateCounter();
  updateThreadCounter();
  const listed = new Set();
  for (const c of m.channels || []) {
    if (!c || typeof c.name !== 'string') continue;
    listed.add(c.name);
    const ch = channelFor(c.name);
    if (ch.dm) ch.peer = dmPeer(c.name, state.me);
    ch.member = true;
    ch.private = !!c.private;
    ch.admin = !!c.admin;
    ch.isDefault = !!c.default;
    state.removed.delete(c.name);
    // The server's count is the truth; messages up to lastId are in it, so
    // replayed ones must not count again.
    ch.unread = Number(c.unread) || 0;
    ch.countedTo = c.lastId || '';
  }
  // A channel we were in that hello no longer names: we left it or were
  // removed while this page was away.
  for (const ch of [...state.channels.values()]) {
    if (!ch.dm && ch.member && !listed.has(ch.name)) dropChannel(ch.name);
  }
  renderMe();
  state.greeted = true;
  const first = !state.started;
  if (first) {
    state.started = true;
    const wanted = routeChannel();
    if (wanted && !state.channels.get(wanted)?.member) routeTo(wanted, { focus: false });
    else openChannel(wanted || defaultChannel(), { focus: false });
    people.load(false);
  }
  // Ask for what we missed in every channel we hold messages for, from the
  // newest id seen there (a change's own id included, so a reconnect does
  // not replay the changes again).
  const since = {};
  for (const ch of state.channels.values()) {
    const from = resumeFrom(ch);
    if (ch.member && from) since[ch.name] = from;
  }
  conn.send({ type: 'resume', since });
  // A new socket watches nobody yet.
  state.watchKey = null;
  sendWatch();
  // Then what we typed while away, in order; the server drops repeats of a
  // clientId. After a refusal for sending too fast they go one at a time.
  state.sentOnSocket = [];
  state.paceInFlight = '';
  if (state.paced) pace(0);
  else for (const p of state.pending.values()) if (p.status === 'pending') transmit(p);
  // Edits, deletes and reactions not acked on the last socket: the server
  // applies each clientId once.
  for (const c of state.changes.values()) if (!c.timer) conn.send(c.frame);
  conn.healthy();
  renderAll();
  markRead();
  // DMs that came while this person was away: their first hello says so,
  // as a live DM would have (a reconnect does not say it again).
  if (first) {
    for (const ch of state.channels.values()) {
      if (ch.dm && ch.unread && ch.name !== state.active) {
        toast({ title: ch.peer, subtitle: 'while you were away', body: ch.unread === 1 ? '1 new message' : `${ch.unread} new messages`, kind: 'dm', channel: ch.name });
      }
    }
  }
  // Which of the unread messages mention me is in the messages themselves:
  // fetch the newest page of every other channel that has unread ones, a
  // few at a time: someone in 1,000 channels must not send 1,000 requests
  // at once as they log in.
  if (first) {
    const todo = [...state.channels.values()].filter((ch) => !ch.dm && ch.member && ch.unread && ch.name !== state.active && !ch.historyLoaded);
    const worker = async () => {
      for (let ch = todo.shift(); ch; ch = todo.shift()) await loadHistory(ch, false);
    };
    for (let i = 0; i < BACKGROUND_LOADS; i++) worker();
  }
}

// resumeFrom is where a resume of ch starts: the newest id seen there,
// message or change, skipping messages known to be deleted (the stream no
// longer holds them; the server copes, but an id it holds is the plainer
// question). Replaying a little more is harmless: changes apply once, and
// messages are dropped by id.
function resumeFrom(ch) {
  const list = ch.timeline.messages;
  let i = list.length - 1;
  while (i >= 0 && list[i].deleted) i--;
  return maxId(ch.seen, i >= 0 ? list[i].id : '');
}

// defaultChannel is where the page opens when the URL names nothing.
function defaultChannel() {
  const chans = [...state.channels.values()].filter((c) => !c.dm && c.member);
  const first = chans.find((c) => c.isDefault) || chans.sort((a, b) => a.name.localeCompare(b.name))[0];
  return first ? first.name : 'general';
}

// onChannelAdded: we joined or were added to a channel (here or on another
// device). Its messages follow.
function onChannelAdded(m) {
  if (typeof m.name !== 'string' || !m.name) return;
  const ch = channelFor(m.name);
  const added = !ch.member;
  ch.member = true;
  ch.private = !!m.private;
  state.removed.delete(m.name);
  if (state.gone === m.name) openChannel(m.name, { focus: false });
  else if (added && state.joinedHere !== m.name && !isReading(ch)) {
    toast({ title: `#${m.name}`, body: m.private ? 'You were added to this private channel.' : 'You are now a member of this channel.', kind: 'info', channel: m.name });
  }
  renderSidebar();
}

// onRemoved: we left or were removed from a channel. It leaves the sidebar;
// if it is on screen, the page says so instead of showing it.
function onRemoved(m) {
  if (typeof m.channel !== 'string' || !m.channel) return;
  const name = m.channel;
  if (state.leaving === name) {
    // This tab's own leave, whose answer has not come yet: leftChannel says so.
    const wasOpen = state.active === name;
    forget(name);
    if (wasOpen) openChannel(defaultChannel());
    else renderSidebar();
    return;
  }
  dropChannel(name);
}

function forget(name) {
  const ch = state.channels.get(name);
  state.removed.add(name);
  if (state.thread && state.thread.channel === name) closeThread({ refocus: false });
  if (!ch) return;
  state.channels.delete(name);
  for (const t of ch.typing.values()) clearTimeout(t);
}

// dropChannel forgets a channel we are no longer in, and says so.
function dropChannel(name) {
  const had = state.channels.has(name);
  forget(name);
  if (!had) return;
  if (state.active === name) showGone(name, 'removed');
  else toast({ title: `#${name}`, body: 'You are no longer a member of this channel.', kind: 'info' });
  renderSidebar();
}

// joinedChannel: the API said we joined or created a channel (its channel
// frame may come before or after): show it in the sidebar and open it.
function joinedChannel(name, info = {}) {
  const ch = channelFor(name);
  ch.member = true;
  if (info.private !== undefined) ch.private = !!info.private;
  if (info.admin) ch.admin = true;
  state.removed.delete(name);
  state.joinedHere = name;
  openChannel(name);
}

// leftChannel: this tab's leave succeeded. The removed frame that follows
// is expected; go back to where the page starts.
function leftChannel(name) {
  state.leaving = '';
  forget(name);
  toast({ title: `#${name}`, body: 'You left the channel.', kind: 'info' });
  if (state.active === name || state.gone === name) openChannel(defaultChannel());
  else renderSidebar();
}

// routeTo opens what the URL names. A conversation the page does not know
// is checked with the server first: a DM with someone who exists opens
// (empty); a public channel we are not in offers to join; anything else
// shows "not found" and never becomes a sidebar entry.
async function routeTo(name, { focus = true } = {}) {
  const ch = state.channels.get(name);
  if (ch && ch.member) {
    openChannel(name, { focus });
    return;
  }
  const seq = ++state.routeSeq;
  if (isDM(name)) {
    const peer = dmPeer(name, state.me);
    if (peer && peer !== state.me && name === dmChannel(state.me, peer) && await userExists(peer)) {
      if (seq === state.routeSeq) openChannel(name, { focus });
      return;
    }
    if (seq === state.routeSeq) showGone(name, 'notfound');
    return;
  }
  showGone(name, 'notfound');
  const q = namePrefix(name);
  if (!q) return;
  try {
    const res = await api.browseChannels(q, '', 5);
    if (seq !== state.routeSeq || state.gone !== name) return;
    if (((res && res.channels) || []).some((c) => c.name === name)) showGone(name, 'joinable');
  } catch (e) {
    apiFailed(e);
  }
}

async function userExists(name) {
  try {
    const res = await api.users(name, '', 1);
    return ((res && res.users) || []).some((u) => u.username === name);
  } catch (e) {
    apiFailed(e);
    return !(e instanceof ApiError && e.status >= 400 && e.status < 500);
  }
}

// showGone shows, instead of a conversation, that name is not found, is a
// public channel we could join, or was taken from us; null goes back to
// showing conversations.
function showGone(name, kind = 'notfound') {
  const on = name !== null;
  show($('gone'), on);
  show($('scroller'), !on);
  show($('composer-wrap'), !on);
  if (on) show($('jump-latest'), false);
  if (!on) {
    state.gone = '';
    return;
  }
  markRead();
  const prev = state.channels.get(state.active);
  if (prev) prev.divider = null;
  state.editing = null;
  closePicker(false);
  closeThread({ refocus: false });
  state.active = '';
  state.gone = name;
  const dm = isDM(name);
  const label = dm ? dmPeer(name, state.me) || name : `#${name}`;
  let title = dm ? 'Conversation not found' : 'Channel not found';
  const mine = dm && name === dmChannel(state.me, dmPeer(name, state.me));
  let text = !dm ? `There is no channel called “${label}”, or it is private and you are not in it.`
    : mine ? `There is no one called “${label}” to write to.` : 'This is not one of your conversations.';
  if (kind === 'joinable') {
    title = label;
    text = `You are not a member of ${label} yet.`;
  } else if (kind === 'removed') {
    title = label;
    text = `You were removed from ${label} (or left it on another device). Its messages are no longer shown here.`;
  }
  $('gone').dataset.kind = kind;
  $('gone').dataset.channel = name;
  $('gone-title').textContent = title;
  $('gone-text').textContent = text;
  show($('gone-join'), kind === 'joinable');
  $('gone-join').textContent = `Join ${label}`;
  $('channel-title').replaceChildren(h('span', { class: 'hash', 'aria-hidden': 'true', text: dm ? '@' : '#' }), dm ? label : name);
  show($('open-members'), false);
  $('messages').replaceChildren();
  $('pending').replaceChildren();
  $('typing').textContent = '';
  renderSidebar();
}

function onMessage(msg) {
  if (typeof msg.id !== 'string' || typeof msg.channel !== 'string') return;
  // Nothing more of a channel we left shows, even what was on its way.
  if (state.removed.has(msg.channel)) return;
  const m = historyEntry(msg, msg.channel);
  const ch = channelFor(m.channel);
  ch.seen = maxId(ch.seen, m.id);
  const existing = ch.timeline.get(m.id);
  if (existing) {
    // Our own message, shown since its ack with a local time: take the server's.
    if (existing.provisional) {
      // (What changed it since, in the stream after it, stays; and so do
      // the replies counted on it meanwhile.)
      const { text, editedAt, reactions, deleted, replies } = existing;
      Object.assign(existing, m, { provisional: false, replies });
      if (existing.lastEntry) Object.assign(existing, { text, editedAt, reactions, deleted });
      rerenderMessage(ch, existing);
    }
    return;
  }
  // A reply the open thread already holds (its page came first) stays the
  // one object both show.
  const inThread = m.thread ? threadMsg(ch.name, m.id) : null;
  const idx = ch.timeline.insert(inThread || m);
  stopTyping(ch, m.from);
  if (m.thread && !inThread) {
    countReply(ch, m, 1);
    addToThread(ch, m);
  }
  const fresh = compareIds(m.id, ch.countedTo) > 0;
  if (fresh && m.from !== state.me && !isReading(ch)) {
    ch.unread++;
    // Open but not looked at (another tab, a minimised window): mark where
    // the new messages start, as opening it would have. (A reply shows in
    // its thread, not here.)
    if (ch.name === state.active && !ch.divider && !m.thread && idx === ch.timeline.size - 1) ch.divider = { count: 1, id: m.id };
  }
  if (ch.name === state.active) {
    if (!m.thread) appendOrRender(ch, idx);
    markReadSoon();
  }
  renderSidebar();
}

// ---------------------------------------------------------------- threads

// threadMsg is the message id of channel as the open thread holds it (its
// root or a reply), if it does.
function threadMsg(channel, id) {
  const t = state.thread;
  if (!t || t.channel !== channel) return undefined;
  if (t.rootMsg && t.rootMsg.id === id) return t.rootMsg;
  return t.timeline.get(id);
}

// findMessage is message id of ch, from its timeline or the open thread.
function findMessage(ch, id) {
  return (ch && (ch.timeline.get(id) || threadMsg(ch.name, id))) || undefined;
}

// countReply adds delta to the reply count of reply's root, when the page
// holds the root (a root loaded later brings its count from the server).
function countReply(ch, reply, delta) {
  const root = findMessage(ch, reply.thread);
  if (!root || root.deleted || root.thread) return;
  root.replies = Math.max(0, (Number(root.replies) || 0) + delta);
  rerenderMessage(ch, root);
}

// addToThread shows a reply in the open thread, when it is its thread.
function addToThread(ch, m) {
  const t = state.thread;
  if (!t || t.channel !== ch.name || m.thread !== t.root) return;
  const idx = t.timeline.insert(m);
  if (idx < 0) return;
  const list = t.timeline.messages;
  if (idx !== list.length - 1) {
    renderThread();
    return;
  }
  const stick = threadNearBottom();
  $('thread-messages').append(messageEl(m, list[idx - 1] || null, 'thread'));
  renderThreadStatus();
  if (stick || m.from === state.me) threadToBottom();
}

function threadKey(t) {
  return `${t.channel}\n${t.root}`;
}

// openThread shows the thread of message root of channel name beside the
// conversation (opening the conversation first), and puts the keyboard in
// its reply box. opener gets the focus back when it closes.
function openThread(name, root, { opener = null, focus = true } = {}) {
  if (!state || !name || typeof root !== 'string' || !root) return;
  if (state.active !== name) {
    const target = state.channels.get(name);
    if (!(target && target.member) && !isDM(name)) return;
    openChannel(name, { focus: false });
    if (state.active !== name) return;
  }
  const cur = state.thread;
  if (cur && cur.channel === name && cur.root === root) {
    if (focus) $('thread-input').focus();
    return;
  }
  closeThread({ refocus: false });
  closeSearch({ refocus: false }); // the thread takes the results' place
  const ch = channelFor(name);
  const t = {
    channel: name,
    root,
    rootMsg: ch.timeline.get(root) || null,
    timeline: new Timeline(),
    loading: false,
    complete: false,
    gone: false,
    failed: false,
    orphans: [],
    opener,
    openerAction: opener && opener.dataset ? opener.dataset.action : '',
  };
  // The replies the conversation already holds show at once; the thread's
  // own pages bring the rest.
  for (const m of ch.timeline.messages) if (m.thread === root) t.timeline.insert(m);
  state.thread = t;
  const what = ch.dm ? `with ${ch.peer}` : `#${ch.name}`;
  $('thread-where').textContent = what;
  $('thread-label').textContent = `Reply in thread, in ${what}`;
  $('thread-pane').setAttribute('aria-label', `Thread in ${what}`);
  $('thread-input').value = state.threadDrafts.get(threadKey(t)) || '';
  $('chat-view').classList.add('thread-open');
  show($('thread-pane'), true);
  autoGrow($('thread-input'));
  updateThreadCounter();
  renderThread({ toBottom: true });
  markThreadActive();
  t.ready = loadThread(t); // (a jump to a reply waits for it)
  if (focus) $('thread-input').focus();
}

// closeThread closes the thread pane; refocus puts the keyboard back where
// the thread was opened from (or the message box).
function closeThread({ refocus = true } = {}) {
  const t = state && state.thread;
  if (!t) return;
  if (state.editing && state.editing.where === 'thread') state.editing = null;
  if (state.picker && state.picker.where === 'thread') closePicker(false);
  state.threadDrafts.set(threadKey(t), $('thread-input').value);
  state.thread = null;
  hideThreadPane();
  markThreadActive();
  if (!refocus) return;
  const again = t.channel === state.active && $('messages').querySelector(`.msg[data-id="${CSS.escape(t.root)}"]`);
  const back = (t.opener && t.opener.isConnected && t.opener)
    || (again && (again.querySelector(`[data-action="${CSS.escape(t.openerAction || 'thread')}"]`) || again.querySelector('[data-action="thread"], [data-action="reply"]')))
    || $('composer-input');
  back.focus();
}

function hideThreadPane() {
  $('chat-view').classList.remove('thread-open');
  show($('thread-pane'), false);
  for (const id of ['thread-root', 'thread-messages', 'thread-pending']) $(id).replaceChildren();
  $('thread-status').textContent = '';
  $('thread-input').disabled = false;
}

// markThreadActive highlights the message whose thread is open.
function markThreadActive() {
  for (const el of $('messages').querySelectorAll('.msg.thread-active')) el.classList.remove('thread-active');
  for (const el of $('messages').querySelectorAll('[data-action="thread"][aria-expanded="true"]')) el.setAttribute('aria-expanded', 'false');
  const t = state && state.thread;
  if (!t || t.channel !== state.active) return;
  const el = $('messages').querySelector(`.msg[data-id="${CSS.escape(t.root)}"]`);
  if (!el) return;
  el.classList.add('thread-active');
  const link = el.querySelector('[data-action="thread"]');
  if (link) link.setAttribute('aria-expanded', 'true');
}

// loadThread fetches the open thread page by page (oldest first, `after`
// the last reply of the page before) until a page is not full.
async function loadThread(t) {
  if (t.loading) return;
  t.loading = true;
  t.failed = false;
  renderThreadStatus();
  let after = '';
  try {
    for (;;) {
      const res = await api.thread(t.channel, t.root, after, THREAD_PAGE);
      if (state.thread !== t) return;
      const ch = channelFor(t.channel);
      if (!after && res && res.root && typeof res.root === 'object' && res.root.id === t.root) {
        const held = ch.timeline.get(t.root);
        if (held) {
          if (!held.provisional) held.replies = Number(res.root.replies) || 0;
          t.rootMsg = held;
        } else if (!t.rootMsg) {
          t.rootMsg = historyEntry(res.root, t.channel);
        }
      }
      const replies = ((res && res.replies) || []).filter((r) => r && typeof r.id === 'string');
      for (const r of replies) {
        if (t.timeline.has(r.id)) continue;
        const m = ch.timeline.get(r.id) || historyEntry(r, t.channel);
        if (!m.thread) m.thread = t.root;
        t.timeline.insert(m);
      }
      renderThread();
      if (replies.length < THREAD_PAGE) break;
      after = replies[replies.length - 1].id;
    }
    t.complete = true;
    // Every reply is here now: the count is what the thread holds.
    if (t.rootMsg && !t.rootMsg.deleted) t.rootMsg.replies = t.timeline.messages.filter((m) => !m.deleted).length;
  } catch (e) {
    if (state.thread !== t) return;
    apiFailed(e);
    if (e instanceof ApiError && (e.status === 404 || e.status === 400)) t.gone = true;
    else {
      t.failed = true;
      toast({ title: 'Could not load the thread', body: e.message, kind: 'error' });
    }
  } finally {
    t.loading = false;
  }
  if (state.thread !== t) return;
  // Changes that came while a page was on its way, of messages it brought.
  const orphans = t.orphans;
  t.orphans = [];
  const ch = state.channels.get(t.channel);
  for (const o of orphans) if (findMessage(ch, o.id)) onFrame(o);
  renderThread();
  if (t.rootMsg) rerenderMessage(channelFor(t.channel), t.rootMsg);
}

function threadNearBottom() {
  const s = $('thread-scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function threadToBottom() {
  const s = $('thread-scroller');
  s.scrollTop = s.scrollHeight;
}

const repliesText = (n) => (n === 1 ? '1 reply' : `${n} replies`);

// renderThread draws the open thread: its root, its replies, the replies
// on their way, and what it is waiting for.
function renderThread({ toBottom = false } = {}) {
  const t = state && state.thread;
  if (!t) return;
  const stick = threadNearBottom();
  renderThreadRoot();
  const list = t.timeline.messages;
  keepFocus(() => $('thread-messages').replaceChildren(...list.map((m, i) => messageEl(m, list[i - 1] || null, 'thread'))));
  renderThreadPending();
  if (toBottom || stick) threadToBottom();
  if (state.picker) placePicker();
}

function renderThreadRoot() {
  const t = state.thread;
  if (!t) return;
  const root = t.rootMsg;
  keepFocus(() => $('thread-root').replaceChildren(...(root ? [messageEl(root, null, 'thread')] : [])));
  const n = root && !root.deleted ? Number(root.replies) || 0 : t.timeline.messages.filter((m) => !m.deleted).length;
  $('thread-sep-text').textContent = repliesText(n);
  show($('thread-sep'), !!root);
  const closed = t.gone || !!(root && root.deleted);
  $('thread-input').disabled = closed;
  updateThreadCounter();
  renderThreadStatus();
}

function renderThreadStatus() {
  const t = state && state.thread;
  if (!t) return;
  let text = '';
  if (t.gone || (t.rootMsg && t.rootMsg.deleted)) text = 'This message was deleted: its thread can no longer be replied to.';
  else if (t.loading) text = 'Loading replies…';
  else if (t.failed) text = 'Could not load the replies.';
  $('thread-status').textContent = text;
}

// rerenderThreadMessage redraws one message of the open thread after a
// change (and the reply after it, whose header depends on it).
function rerenderThreadMessage(msg) {
  const t = state.thread;
  if (t.rootMsg === msg || msg.id === t.root) {
    if (!t.rootMsg) t.rootMsg = msg;
    renderThreadRoot();
    return;
  }
  const list = t.timeline.messages;
  const i = list.indexOf(msg);
  if (i < 0) return;
  const box = $('thread-messages');
  const el = box.querySelector(`.msg[data-id="${CSS.escape(msg.id)}"]`);
  if (!el) return;
  const stick = threadNearBottom();
  keepFocus(() => {
    el.replaceWith(messageEl(msg, list[i - 1] || null, 'thread'));
    const next = list[i + 1];
    const nextEl = next && box.querySelector(`.msg[data-id="${CSS.escape(next.id)}"]`);
    if (nextEl) nextEl.replaceWith(messageEl(next, msg, 'thread'));
  });
  if (stick) threadToBottom();
}

function onThreadSubmit(ev) {
  ev.preventDefault();
  const t = state.thread;
  const input = $('thread-input');
  if (!t || input.disabled) return;
  const text = cleanText(input.value);
  if (!text.trim()) return;
  if (updateThreadCounter()) {
    input.focus();
    return;
  }
  input.value = '';
  state.threadDrafts.delete(threadKey(t));
  autoGrow(input);
  updateThreadCounter();
  sendMessage(text, t);
}

function onThreadKey(ev) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('thread-composer').requestSubmit();
  } else if (ev.key === 'ArrowUp' && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.shiftKey && !ev.isComposing && ev.currentTarget.value === '') {
    // ↑ in the empty box edits my last reply in this thread.
    const t = state.thread;
    const list = t ? t.timeline.messages : [];
    let msg = null;
    for (let i = list.length - 1; i >= 0 && !msg; i--) if (list[i].from === state.me && !list[i].deleted) msg = list[i];
    if (msg) {
      ev.preventDefault();
      startEdit(channelFor(t.channel), msg, 'thread');
    }
  }
}

function updateThreadCounter() {
  const over = updateCounterOf($('thread-input'), $('thread-count'), $('thread-send'));
  if ($('thread-input').disabled) $('thread-send').disabled = true;
  return over;
}

function onAck(m) {
  const c = state.changes.get(m.clientId);
  if (c) {
    // The change is stored; what it did comes as its edited, deleted or
    // reaction object (before or after this ack).
    clearTimeout(c.timer);
    state.changes.delete(m.clientId);
    return;
  }
  const p = state.pending.get(m.clientId);
  if (!p) return;
  state.pending.delete(m.clientId);
  state.sentOnSocket = state.sentOnSocket.filter((id) => id !== m.clientId);
  if (state.paceInFlight === m.clientId) {
    // Paced after a refusal: the next one goes out when the rate allows.
    state.paceInFlight = '';
    state.paceAttempt = 0;
    pace(Math.ceil(1000 / state.limits.messagesPerSecond));
  }
  const ch = channelFor(p.channel);
  if (typeof m.id === 'string' && !ch.timeline.has(m.id)) {
    const msg = { id: m.id, channel: p.channel, from: state.me, text: p.text, ts: Date.now(), reactions: [], replies: 0, provisional: true };
    if (p.thread) msg.thread = p.thread;
    const idx = ch.timeline.insert(msg);
    if (p.thread) {
      countReply(ch, msg, 1);
      addToThread(ch, msg);
    } else if (ch.name === state.active) appendOrRender(ch, idx);
  }
  renderPending();
  if (ch.name === state.active) markReadSoon();
  renderSidebar();
}

function onServerError(m) {
  if (m.clientId && state.changes.has(m.clientId)) {
    changeRefused(state.changes.get(m.clientId), m);
    return;
  }
  if (m.clientId && state.pending.has(m.clientId)) {
    const p = state.pending.get(m.clientId);
    state.sentOnSocket = state.sentOnSocket.filter((id) => id !== m.clientId);
    if (RETRY_LATER.has(m.code)) {
      hold(p);
    } else {
      p.status = 'failed';
      p.error = m.message || m.code || 'The server could not take this message.';
      if (p.thread) {
        // The thread may be closed by now: say it where it shows anyway.
        toast({ title: 'Could not send your reply', body: REPLY_CODES[m.code] || p.error, kind: 'error' });
      }
      if (state.paceInFlight === m.clientId) {
        state.paceInFlight = '';
        pace(0);
      }
    }
    renderPending();
    return;
  }
  // A typing or read signal over the frame budget is simply dropped.
  if (m.code === 'rate_limited') return;
  toast({ title: 'Server error', body: m.message || m.code || 'Something went wrong.', kind: 'error' });
}

// The people whose presence the page shows: the DM peers, then whom the
// people list shows, as many as the server takes. Presence comes only for
// them (the server sends it to the sockets that watch someone).
function watchList() {
  const out = new Set();
  for (const ch of state.channels.values()) if (ch.dm && ch.peer && ch.peer !== state.me) out.add(ch.peer);
  for (const name of people.shown()) if (name !== state.me) out.add(name);
  return [...out].slice(0, state.limits.maxWatch);
}

// sendWatch tells the server whom to send presence for, when that changed.
function sendWatch() {
  if (!state || !state.greeted) return;
  const users = watchList();
  const key = users.join(',');
  if (key === state.watchKey) return;
  if (conn.send({ type: 'watch', users })) state.watchKey = key;
}

// scheduleWatch batches the redraws of a moment into one watch: lists are
// redrawn on every message and presence change.
function scheduleWatch() {
  if (!state || state.watchTimer) return;
  state.watchTimer = setTimeout(() => {
    state.watchTimer = 0;
    sendWatch();
  }, WATCH_DELAY);
}

function onPresence(m) {
  if (typeof m.user !== 'string') return;
  if (m.status === 'online') state.online.add(m.user);
  else state.online.delete(m.user);
  people.presence(m.user, m.status === 'online');
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
  // A reply shows only in its thread: it is on screen when that is open.
  const thread = typeof m.thread === 'string' ? m.thread : '';
  if (isReading(ch) && (!thread || (state.thread && state.thread.channel === ch.name && state.thread.root === thread))) return;
  const kind = m.kind === 'dm' ? 'dm' : m.kind === 'thread' ? 'thread' : 'mention';
  const where = ch.dm ? (thread ? 'Replied in a thread of your direct messages' : 'Direct message')
    : kind === 'thread' ? `Replied in a thread in #${ch.name}` : `Mentioned you in #${ch.name}${thread ? ', in a thread' : ''}`;
  toast({ title: m.from, subtitle: where, body: m.text, kind, channel: m.channel, thread });
  if (document.hidden && 'Notification' in window && Notification.permission === 'granted') {
    try {
      const n = new Notification(ch.dm ? `${m.from} (direct message)` : `${m.from} in #${ch.name}${thread ? ' (thread)' : ''}`, { body: m.text, tag: m.id, icon: '/assets/icon.svg' });
      n.addEventListener('click', () => { window.focus(); if (thread) openThread(m.channel, thread); else openChannel(m.channel); n.close(); });
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

// sendMessage sends text to the open conversation, or as a reply in the
// thread t (its root's id goes with it; a DM's by its channel name).
function sendMessage(text, t = null) {
  const ch = channelFor(t ? t.channel : state.active);
  const clientId = uuid();
  const frame = t ? { type: 'send', channel: ch.name, text, clientId, thread: t.root }
    : ch.dm ? { type: 'send', to: ch.peer, text, clientId }
      : { type: 'send', channel: ch.name, text, clientId };
  const p = { clientId, channel: ch.name, thread: t ? t.root : '', frame, text, status: 'pending', error: '', held: false };
  state.pending.set(clientId, p);
  // Before hello the socket may be open but the session not ready; hello
  // sends everything pending, so only send now once greeted. While paced,
  // it waits its turn behind the ones the server refused.
  if (state.paced) pace(0, true);
  else if (state.greeted && conn.open) transmit(p);
  renderPending();
  if (t) threadToBottom();
  else scrollToBottom();
}

// hold keeps a message the server refused for now (rate_limited,
// unavailable) and sends it again, with the same clientId, after a pause.
// Until the queue is empty, messages go one at a time, so they keep their order.
function hold(p) {
  p.status = 'pending';
  p.held = true;
  state.paced = true;
  if (state.paceInFlight === p.clientId) state.paceInFlight = '';
  // A burst refused at once waits once, not once per message.
  if (!state.paceTimer && !state.paceInFlight) {
    pace(refusalDelay(state.paceAttempt++, { perSecond: state.limits.messagesPerSecond }));
  }
}

// pace sends the oldest pending message after delay ms. ifIdle leaves a
// wait that is already running alone.
function pace(delay, ifIdle = false) {
  if (ifIdle && (state.paceTimer || state.paceInFlight)) return;
  clearTimeout(state.paceTimer);
  state.paceTimer = setTimeout(paceNext, delay);
}

function paceNext() {
  state.paceTimer = 0;
  if (!state.paced || state.paceInFlight) return;
  const next = [...state.pending.values()].find((p) => p.status === 'pending');
  if (!next) {
    state.paced = false;
    state.paceAttempt = 0;
    renderPending();
    return;
  }
  if (!(state.greeted && conn.open)) return; // the next hello goes on from here
  state.paceInFlight = next.clientId;
  next.held = false;
  transmit(next);
  renderPending();
}

function retry(clientId) {
  const p = state.pending.get(clientId);
  if (!p) return;
  p.status = 'pending';
  p.error = '';
  if (state.paced) pace(0, true);
  else if (state.greeted && conn.open) transmit(p);
  renderPending();
  boxFor(p.thread ? 'thread' : 'main').focus(); // the button that had focus is gone
}

function discard(clientId) {
  const p = state.pending.get(clientId);
  state.pending.delete(clientId);
  renderPending();
  boxFor(p && p.thread ? 'thread' : 'main').focus(); // the button that had focus is gone
}

// boxFor is the message box of where: the thread's (while open) or the conversation's.
function boxFor(where) {
  return where === 'thread' && state.thread && !$('thread-input').disabled ? $('thread-input') : $('composer-input');
}

function onComposerKey(ev) {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $('composer').requestSubmit();
  } else if (ev.key === 'ArrowUp' && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.shiftKey && !ev.isComposing && ev.currentTarget.value === '') {
    // ↑ in the empty box edits my last message here, as in Slack.
    const ch = state.channels.get(state.active);
    const msg = ch && lastOwnMessage(ch);
    if (msg) {
      ev.preventDefault();
      startEdit(ch, msg);
    }
  }
}

// composerText is what Enter would send: blank lines around a message are
// never meant; indentation inside it is.
function composerText() {
  return cleanText($('composer-input').value);
}

function cleanText(value) {
  return value.replace(/^(?:[ \t]*\n)+/, '').replace(/\s+$/, '');
}

function onComposerSubmit(ev) {
  ev.preventDefault();
  const input = $('composer-input');
  const text = composerText();
  if (!text.trim() || !state.active) return;
  if (updateCounter()) {
    // Over the server's limit: the counter says by how much; nothing goes out.
    input.focus();
    return;
  }
  input.value = '';
  saveDraft(state.me, state.active, '');
  autoGrow();
  updateCounter();
  sendMessage(text);
}

// updateCounter shows how much room is left once a message nears the
// server's limit (in UTF-8 bytes, as the server counts), and whether it is
// over; it returns true when it is.
function updateCounter() {
  return updateCounterOf($('composer-input'), $('composer-count'), $('send'));
}

function updateCounterOf(input, el, send) {
  const limit = state.limits.maxMessageBytes;
  const used = utf8Length(cleanText(input.value));
  const left = limit - used;
  const over = left < 0;
  show(el, used >= limit * COUNTER_FROM);
  el.textContent = over ? `${-left} over the limit` : `${left} left`;
  el.classList.toggle('over', over);
  el.dataset.left = String(left);
  el.dataset.limit = String(limit);
  el.title = `A message can be up to ${limit} bytes: most characters count as 1, accented letters as 2, emoji as 4.`;
  send.disabled = over;
  input.setAttribute('aria-invalid', String(over));
  return over;
}

function onComposerInput() {
  autoGrow();
  updateCounter();
  saveDraft(state.me, state.active, $('composer-input').value);
  const now = Date.now();
  if (!$('composer-input').value || now - state.lastTypingSent < TYPING_SEND_EVERY) return;
  state.lastTypingSent = now;
  if (state.greeted) conn.send({ type: 'typing', channel: state.active });
}

function autoGrow(ta = $('composer-input')) {
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
    ch.seen = '';
    ch.orphans = [];
    if (state.editing && state.editing.channel === name) state.editing = null;
    ch.historyLoaded = false;
    ch.hasMore = true;
    ch.trimmed = true;
    if (name === state.active) loadHistory(ch, false);
    // The open thread may have missed replies too: it starts afresh.
    const t = state.thread;
    if (t && t.channel === name) {
      t.timeline = new Timeline();
      t.complete = false;
      if (!t.loading) loadThread(t);
      renderThread();
    }
    toast({
      title: ch.dm ? `Conversation with ${ch.peer}` : `#${name}`,
      body: 'Some messages sent while you were away could not be replayed; showing the latest.',
      kind: 'info',
      channel: name,
    });
  }
}

// ---------------------------------------------------------------- history

// Replies come in history pages but show only in their threads: a page of
// mostly replies shows next to nothing, so the open conversation goes on
// to older pages (at most FILL_PAGES more) until FILL_SHOWN messages of it
// more are on screen.
const FILL_SHOWN = 20;
const FILL_PAGES = 20;

// loadHistory fetches a page of ch (see loadHistoryPage). Its promise ends
// once the page is shown; while a page is on its way, it is that page's.
function loadHistory(ch, older, fill) {
  if (!ch.loading) ch.inflight = loadHistoryPage(ch, older, fill);
  return ch.inflight;
}

async function loadHistoryPage(ch, older, fill = { shown: 0, pages: 0 }) {
  if (ch.loading || (older && !ch.hasMore)) return;
  ch.loading = true;
  renderHistoryTop();
  const before = older ? ch.timeline.oldestId : '';
  let loaded = false;
  try {
    const res = await api.history(ch.name, before, PAGE);
    const msgs = ((res && res.messages) || []).filter((m) => m && typeof m.id === 'string');
    fill.shown += msgs.filter((m) => !m.thread).length;
    loaded = true;
    for (const m of msgs) {
      // A message the open thread holds stays the one object both show.
      ch.timeline.insert(threadMsg(ch.name, m.id) || historyEntry(m, ch.name));
      if (!m.deleted) ch.seen = maxId(ch.seen, m.id); // (see resumeFrom)
    }
    if (!older) ch.historyLoaded = true;
    if (older || !ch.timeline.size || msgs.length < PAGE) ch.hasMore = msgs.length >= PAGE;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && !ch.dm) {
      // Gone while we were not looking (removed, or never there).
      ch.loading = false;
      if (ch.name === state.active) {
        forget(ch.name);
        showGone(ch.name, ch.member ? 'removed' : 'notfound');
      }
      return;
    } else if (e instanceof ApiError && e.status === 404) {
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
  // Changes that came meanwhile for messages this page brought: the page
  // may have been read before them. Applied in order on top of it, each
  // leaves what it would have.
  const orphans = ch.orphans;
  ch.orphans = [];
  for (const o of orphans) if (ch.timeline.has(o.id)) onFrame(o);
  if (ch.name === state.active) {
    renderMessages({ keepScroll: older, toBottom: !older });
    markReadSoon();
  }
  renderSidebar(); // unread mentions are counted from the messages
  if (loaded && ch.name === state.active && ch.hasMore && fill.shown < FILL_SHOWN && fill.pages < FILL_PAGES && state.channels.get(ch.name) === ch) {
    fill.pages++;
    loadHistory(ch, true, fill);
  }
}

// ---------------------------------------------------------------- search

// searchWords are the words of a search as the server matches them (whole,
// in any case), to mark them in the results.
function searchWords(q) {
  return [...new Set(q.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [])];
}

// markedText is text as Text nodes, with the words of the search in <mark>s.
function markedText(text, words) {
  const frag = document.createDocumentFragment();
  if (!words.length) {
    frag.append(text);
    return frag;
  }
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(?:${words.join('|')})(?![\\p{L}\\p{N}])`, 'giu');
  let at = 0;
  for (const m of text.matchAll(re)) {
    if (m.index > at) frag.append(text.slice(at, m.index));
    frag.append(h('mark', { text: m[0] }));
    at = m.index + m[0].length;
  }
  if (at < text.length) frag.append(text.slice(at));
  return frag;
}

const hitKey = (m) => `${m.channel}\n${m.id}`;

// onSearchSubmit: Enter in the search box searches every conversation the
// person is in, and shows the results in the pane beside the conversation.
function onSearchSubmit(ev) {
  ev.preventDefault();
  if (!state) return;
  const input = $('search-input');
  const q = input.value.trim();
  if (!q) return;
  if (state.search) clearTimeout(state.search.timer);
  const s = { q, words: searchWords(q), hits: [], next: '', loading: false, done: false, error: '', retries: 0, waitFor: 0, timer: 0, focusNext: false };
  state.search = s;
  const bytes = utf8Length(q);
  input.setAttribute('aria-invalid', String(bytes > SEARCH_MAX_BYTES));
  if (bytes > SEARCH_MAX_BYTES) {
    // The server would refuse it: say so without asking.
    s.error = `That search is too long: ${bytes} bytes, and a search can be up to ${SEARCH_MAX_BYTES} (most characters count as 1, accented letters as 2, emoji as 4). Use fewer words.`;
    renderSearch();
    return;
  }
  searchPage(s);
}

// searchPage fetches the next page of search s (the first, or the one
// after s.next) and appends it. While the server builds the search index
// of a channel (503 with Retry-After) it asks again by itself, a few times.
async function searchPage(s) {
  clearTimeout(s.timer);
  s.timer = 0;
  s.waitFor = 0;
  s.loading = true;
  s.error = '';
  renderSearch();
  let focusKey = '';
  try {
    const res = await api.search(s.q, s.next, SEARCH_PAGE);
    if (state.search !== s) return;
    const held = new Set(s.hits.map(hitKey));
    const fresh = ((res && res.messages) || []).filter((m) => m && typeof m.id === 'string' && typeof m.channel === 'string' && !held.has(hitKey(m)));
    s.hits.push(...fresh);
    s.next = res && typeof res.next === 'string' ? res.next : '';
    s.retries = 0;
    s.done = true;
    // After "More results", the keyboard goes on at the first new one.
    if (s.focusNext && fresh.length) focusKey = hitKey(fresh[0]);
  } catch (e) {
    if (state.search !== s) return;
    apiFailed(e);
    if (state.search !== s) return;
    if (e instanceof ApiError && e.status === 503 && s.retries < SEARCH_RETRIES) {
      s.retries++;
      s.waitFor = Math.min(Math.max(e.retryAfter || 2, 1), 60);
      s.timer = setTimeout(() => {
        s.timer = 0;
        if (state && state.search === s) searchPage(s);
      }, s.waitFor * 1000);
    } else if (e instanceof ApiError && e.status === 503) {
      s.error = 'The history is still being indexed for search. Try again in a minute.';
    } else {
      s.error = e.message;
    }
  }
  s.loading = false;
  s.focusNext = false;
  renderSearch(focusKey);
}

// renderSearch draws the open search: what it looks for, how it is going,
// and the messages found. focusKey puts the keyboard on that result.
function renderSearch(focusKey = '') {
  const s = state && state.search;
  if (!s) return;
  closeThread({ refocus: false }); // the results take the thread's place
  $('chat-view').classList.add('search-open');
  show($('search-pane'), true);
  $('search-query').textContent = `“${s.q.length > 60 ? `${s.q.slice(0, 60)}…` : s.q}”`;
  $('search-pane').setAttribute('aria-busy', String(s.loading));
  const n = s.hits.length;
  let status = '';
  if (s.waitFor) status = `Indexing the history… searching again in ${s.waitFor} s.`;
  else if (s.loading) status = n ? 'Loading more results…' : 'Searching…';
  else if (s.done && !n && !s.error) status = 'No messages found';
  else if (s.done) status = `${n === 1 ? '1 message' : `${n} messages`} found${s.next ? ', more below' : ''}`;
  $('search-status').textContent = status;
  formError('search-error', s.error);
  const list = $('search-results');
  const a = document.activeElement;
  const had = a && a.closest && a.closest('#search-results') ? a.dataset.key : '';
  list.replaceChildren(...s.hits.map(searchHitEl));
  show(list, n > 0);
  const more = $('search-more');
  show(more, !!s.next);
  more.setAttribute('aria-disabled', String(s.loading || !!s.waitFor));
  more.textContent = s.loading && n ? 'Loading…' : 'More results';
  const target = (focusKey || had) && list.querySelector(`.search-hit[data-key="${CSS.escape(focusKey || had)}"]`);
  if (target) target.focus();
  else if (a === more && more.hidden && n) list.lastElementChild.firstElementChild.focus();
}

// searchHitEl is one result: where, who, when, and the text with the words
// of the search marked. Activating it shows the message where it is.
function searchHitEl(m) {
  const dm = isDM(m.channel);
  const ch = state.channels.get(m.channel);
  const where = dm ? (ch && ch.peer) || dmPeer(m.channel, state.me) || m.channel : `#${m.channel}`;
  const dataset = { key: hitKey(m), id: m.id, channel: m.channel };
  if (typeof m.thread === 'string' && m.thread) dataset.thread = m.thread;
  const ts = Number(m.ts);
  let time = null;
  if (Number.isFinite(ts) && ts > 0) {
    time = timeEl(ts);
    time.textContent = `${dayLabel(ts)}, ${time.textContent}`;
  }
  return h('li', {}, h('button', { type: 'button', class: 'search-hit', dataset, on: { click: () => jumpTo(m) } },
    h('span', { class: 'search-hit-head' },
      h('span', { class: 'search-where', text: where }),
      dm ? h('span', { class: 'search-note', text: 'direct message' }) : null,
      dataset.thread ? h('span', { class: 'search-note', text: 'in a thread' }) : null),
    h('span', { class: 'search-hit-meta' },
      h('span', { class: 'author', text: String(m.from || '') }),
      time,
      m.editedAt ? h('span', { class: 'search-note', text: '(edited)' }) : null),
    h('span', { class: 'search-text' }, markedText(String(m.text || ''), state.search ? state.search.words : []))));
}

function searchMore() {
  const s = state && state.search;
  if (!s || !s.next || s.loading || s.waitFor) return;
  s.focusNext = true;
  searchPage(s);
}

// closeSearch closes the results; refocus puts the keyboard back in the
// search box when it was in the results.
function closeSearch({ refocus = true } = {}) {
  const s = state && state.search;
  if (s) {
    clearTimeout(s.timer);
    state.search = null;
  }
  const pane = $('search-pane');
  const open = !pane.hidden;
  const a = document.activeElement;
  const inside = !a || a === document.body || pane.contains(a);
  $('chat-view').classList.remove('search-open');
  show(pane, false);
  $('search-results').replaceChildren();
  $('search-status').textContent = '';
  formError('search-error', '');
  show($('search-more'), false);
  $('search-input').removeAttribute('aria-invalid');
  if (refocus && open && inside) $('search-input').focus();
}

// jumpTo shows message m, found by a search, where it is: in its
// conversation (fetching older history until it is there, a bounded number
// of pages), or as a reply in its thread; scrolled into view, focused, and
// highlighted for a moment.
async function jumpTo(m) {
  if (!state) return;
  const seq = ++state.jumpSeq;
  const name = m.channel;
  const known = state.channels.get(name);
  if (!(known && known.member) && !isDM(name)) {
    // Left since: the route says why it is not there.
    closeSearch({ refocus: false });
    routeTo(name);
    return;
  }
  if (typeof m.thread === 'string' && m.thread) {
    await jumpToReply(m, seq);
    return;
  }
  // Where the results lie over the conversation, they make way.
  if (matchMedia('(max-width: 1100px)').matches) closeSearch({ refocus: false });
  if (state.active !== name) openChannel(name, { focus: false });
  if (state.active !== name) return;
  const route = state.routeSeq;
  const ch = channelFor(name);
  const current = () => state && state.jumpSeq === seq && state.routeSeq === route && state.active === name && state.channels.get(name) === ch;
  const sel = `.msg[data-id="${CSS.escape(m.id)}"]`;
  const what = ch.dm ? `your conversation with ${ch.peer}` : `#${ch.name}`;
  for (let pages = 0; ;) {
    if (!current()) return;
    if ($('messages').querySelector(sel)) break;
    if (ch.loading && ch.inflight) {
      await ch.inflight;
      continue;
    }
    if (ch.historyLoaded && (!ch.hasMore || (ch.timeline.size && compareIds(m.id, ch.timeline.oldestId) > 0))) {
      // All of it is here, or the page holds the messages around it: it
      // was deleted or trimmed since the search.
      toast({ title: 'Message not found', body: `That message is no longer in the history of ${what}.`, kind: 'info' });
      return;
    }
    if (pages >= JUMP_PAGES) {
      toast({ title: 'Message not found', body: `That message is no longer in the recent history of ${what}: the page looked ${JUMP_PAGES * PAGE} messages back.`, kind: 'info' });
      return;
    }
    pages++;
    const oldest = ch.timeline.oldestId;
    await loadHistory(ch, ch.historyLoaded);
    // A page that failed said so in a toast: no more tries.
    if (current() && !ch.loading && ch.timeline.oldestId === oldest && (!ch.historyLoaded || ch.hasMore)) return;
  }
  flash(name, m.id);
  const el = $('messages').querySelector(sel);
  el.focus({ preventScroll: true });
  el.scrollIntoView({ block: 'center' });
}

// jumpToReply opens the thread of reply m, and shows the reply there.
async function jumpToReply(m, seq) {
  closeSearch({ refocus: false });
  // Closing the thread gives the keyboard back to the search box.
  openThread(m.channel, m.thread, { opener: $('search-input'), focus: false });
  const t = state.thread;
  if (!t || t.channel !== m.channel || t.root !== m.thread) return;
  await t.ready;
  if (!state || state.jumpSeq !== seq || state.thread !== t) return;
  const sel = `.msg[data-id="${CSS.escape(m.id)}"]`;
  const found = $('thread-messages').querySelector(sel);
  if (!found || found.classList.contains('deleted')) {
    toast({ title: 'Message not found', body: 'That reply is no longer in its thread.', kind: 'info' });
    if (!$('thread-input').disabled) $('thread-input').focus();
    return;
  }
  flash(m.channel, m.id);
  const el = $('thread-messages').querySelector(sel);
  el.focus({ preventScroll: true });
  el.scrollIntoView({ block: 'center' });
}

// flash highlights message id of channel for a moment, wherever it shows
// (and in every redraw meanwhile).
function flash(channel, id) {
  const off = () => {
    for (const el of document.querySelectorAll('.msg.highlighted')) el.classList.remove('highlighted');
  };
  if (state.flash) clearTimeout(state.flash.timer);
  off();
  const f = { channel, id, timer: 0 };
  state.flash = f;
  f.timer = setTimeout(() => {
    if (!state || state.flash !== f) return;
    state.flash = null;
    off();
  }, HIGHLIGHT_FOR);
  const sel = `.msg[data-id="${CSS.escape(id)}"]`;
  if (state.active === channel) for (const el of $('messages').querySelectorAll(sel)) el.classList.add('highlighted');
  if (state.thread && state.thread.channel === channel) for (const el of $('thread-pane').querySelectorAll(sel)) el.classList.add('highlighted');
}

// onSearchKey: Enter in the search box searches; ↓ there goes to the
// results; ↑ and ↓ move between them (↑ from the first back to the box).
function onSearchKey(ev) {
  if (ev.key === 'Enter' && ev.currentTarget === $('search-input') && !ev.isComposing) {
    // (As the composer does: Enter is the keydown, whatever follows it.)
    ev.preventDefault();
    $('search-form').requestSubmit();
    return;
  }
  if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
  if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey || !state || !state.search) return;
  const hits = [...$('search-results').querySelectorAll('.search-hit')];
  if (ev.currentTarget === $('search-input')) {
    if (ev.key === 'ArrowDown' && hits.length) {
      ev.preventDefault();
      hits[0].focus();
    }
    return;
  }
  const i = hits.indexOf(document.activeElement);
  if (i < 0) return;
  ev.preventDefault();
  if (ev.key === 'ArrowUp' && i === 0) $('search-input').focus();
  else hits[Math.max(0, Math.min(hits.length - 1, i + (ev.key === 'ArrowDown' ? 1 : -1)))].focus();
}

// ---------------------------------------------------------------- navigation

function routeChannel() {
  const h = decodeURIComponent(location.hash.slice(1));
  return h.startsWith('/') ? h.slice(1) : '';
}

function openChannel(name, { focus = true } = {}) {
  if (!name) return;
  state.routeSeq++;
  const prev = state.active;
  markRead(); // what was on screen until now has been read
  if (prev !== name) {
    const old = state.channels.get(prev);
    if (old) {
      old.divider = null;
      saveDraft(state.me, prev, $('composer-input').value);
    }
  }
  showGone(null);
  const ch = channelFor(name);
  const switched = prev !== name;
  if (switched) {
    state.editing = null; // an edit left unsaved is dropped, as Escape would
    closePicker(false);
    closeThread({ refocus: false }); // a thread belongs to its conversation
  }
  state.active = name;
  // Where the unread messages start, for as long as it stays open.
  if (switched) ch.divider = ch.unread ? { count: ch.unread, id: '', shown: false } : null;
  if (routeChannel() !== name) history.replaceState(null, '', `#/${name}`);
  if (switched) {
    // Each conversation has its own draft: one never follows you to another.
    $('composer-input').value = loadDraft(state.me, name);
    autoGrow();
    updateCounter();
  }
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
    title.append(channelIcon(ch), ch.name);
    if (ch.private) title.append(h('span', { class: 'visually-hidden', text: ' (private)' }));
  }
  // Everyone is in a default channel; the others have members to see.
  show($('open-members'), !ch.dm && ch.member && !ch.isDefault);
  const what = ch.dm ? ch.peer : `#${ch.name}`;
  $('composer-input').placeholder = `Message ${what}`;
  $('composer-label').textContent = `Message ${what}`;
  $('messages').setAttribute('aria-label', `Messages in ${what}`);
}

function channelIcon(ch) {
  if (!ch.private) return h('span', { class: 'hash', 'aria-hidden': 'true', text: '#' });
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'hash lock');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', 'M7 10V7a5 5 0 0 1 10 0v3h2v11H5V10zm2 0h6V7a3 3 0 0 0-6 0z');
  svg.append(path);
  return svg;
}

// unreadOf splits a conversation's unread count: in a channel, the messages
// that mention me count apart from the rest; in a DM every message is for me.
function unreadOf(ch) {
  if (!ch.unread) return { total: 0, mentions: 0, other: 0 };
  if (ch.dm) return { total: ch.unread, mentions: ch.unread, other: 0 };
  const n = unreadSplit(ch.timeline.messages, ch.unread, state.me).mentions;
  return { total: ch.unread, mentions: n, other: ch.unread - n };
}

const count99 = (n) => (n > 99 ? '99+' : String(n));

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
  else btn.append(channelIcon(ch), h('span', { class: 'conv-name', text: ch.name }));
  if (ch.private) btn.append(h('span', { class: 'visually-hidden', text: ' (private)' }));
  const u = unreadOf(ch);
  if (u.total) {
    const badges = h('span', { class: 'badges', 'aria-hidden': 'true' });
    if (ch.dm) badges.append(h('span', { class: 'badge badge-dm', text: count99(u.total) }));
    else {
      if (u.mentions) badges.append(h('span', { class: 'badge badge-mention', title: `${u.mentions} mentioning you`, text: `@${count99(u.mentions)}` }));
      if (u.other) badges.append(h('span', { class: 'badge badge-unread', title: `${u.other} other unread`, text: count99(u.other) }));
    }
    const said = ch.dm ? `${u.total} unread`
      : [u.mentions ? `${u.mentions} ${u.mentions === 1 ? 'mention' : 'mentions'}` : '', u.other ? `${u.other} other unread` : ''].filter(Boolean).join(', ');
    btn.append(badges, h('span', { class: 'visually-hidden', text: `, ${said}` }));
  }
  return h('li', {}, btn);
}

function renderSidebar() {
  if (!state) return;
  const chans = [...state.channels.values()];
  const pub = chans.filter((c) => !c.dm && c.member).sort((a, b) => a.name.localeCompare(b.name));
  const dms = chans.filter((c) => c.dm && (c.timeline.size || c.name === state.active || c.countedTo))
    .sort((a, b) => compareIds(b.timeline.newestId || b.countedTo, a.timeline.newestId || a.countedTo) || a.peer.localeCompare(b.peer));
  // Redrawing must not steal keyboard focus: remember which entry had it.
  const focused = document.activeElement;
  const refocus = focused && focused.closest('#channel-list, #dm-list') && focused.dataset.channel
    ? `[data-channel="${CSS.escape(focused.dataset.channel)}"]` : '';
  patchList($('channel-list'), pub.map(convButton), (li) => li.firstElementChild.dataset.channel);
  patchList($('dm-list'), dms.map(convButton), (li) => li.firstElementChild.dataset.channel);
  show($('dm-empty'), dms.length === 0);
  scheduleWatch(); // a new DM peer
  if (refocus && !document.activeElement.closest('#sidebar')) {
    const again = $('sidebar').querySelector(refocus);
    if (again) again.focus();
  }

  let total = 0;
  let urgent = 0;
  for (const c of chans) {
    if (!c.member && !c.dm) continue;
    const u = unreadOf(c);
    total += u.total;
    urgent += u.mentions;
  }
  renderNavBadge(total, urgent);
  const active = state.channels.get(state.active);
  document.title = `${total ? `(${total}) ` : ''}${active ? label(active) : state.gone ? 'Not found' : 'Chat'} · Hubbub`;
  if (active && active.dm) renderHeader(); // presence dot
}

// renderNavBadge puts the unread count on the phone's menu button, where
// the sidebar is out of sight; red when some of it is for me.
function renderNavBadge(total, urgent) {
  const badge = $('nav-badge');
  show(badge, total > 0);
  badge.textContent = count99(total);
  badge.classList.toggle('badge-mention', urgent > 0);
  badge.classList.toggle('badge-unread', urgent === 0);
  $('nav-open').setAttribute('aria-label', total
    ? `Open menu, ${total} unread${urgent ? `, ${urgent} for you` : ''}` : 'Open menu');
}

function unreadDivider() {
  return h('div', { class: 'unread-divider', role: 'separator', 'aria-label': 'New messages' }, h('span', { text: 'New' }));
}

// dividerId resolves where the "new messages" divider goes in ch, once the
// messages it counts are there.
function dividerId(ch) {
  const d = ch.divider;
  if (!d) return '';
  if (!d.id && ch.timeline.size) {
    const split = unreadSplit(ch.timeline.messages, d.count, state.me);
    if (split.complete || ch.historyLoaded) d.id = split.first;
  }
  return d.id;
}

// messageEl draws message m (prev: the one shown before it) in the
// conversation (where 'main') or the thread pane ('thread').
function messageEl(m, prev, where = 'main') {
  if (m.deleted) {
    // In its place, without author or text: who wrote what is gone.
    return h('article', { class: 'msg deleted', dataset: { id: m.id }, 'aria-label': 'Message deleted', tabindex: '-1' },
      h('span', { class: 'gutter' }, timeEl(m.ts)),
      h('div', { class: 'msg-body' }, h('p', { class: 'text', text: 'Message deleted' })));
  }
  const ch = state.channels.get(where === 'thread' && state.thread ? state.thread.channel : state.active);
  const continued = prev && !prev.deleted && prev.from === m.from && m.ts - prev.ts < GROUP_WINDOW && dayKey(prev.ts) === dayKey(m.ts);
  const mine = m.from === state.me;
  const text = m.pendingText ?? m.text;
  const edited = m.pendingText !== undefined || !!m.editedAt;
  const editing = state.editing && ch && state.editing.channel === ch.name && state.editing.id === m.id && state.editing.where === where;
  const active = where === 'main' && state.thread && state.thread.root === m.id && ch && state.thread.channel === ch.name;
  const flashed = state.flash && ch && state.flash.channel === ch.name && state.flash.id === m.id;
  const el = h('article', {
    class: `msg${flashed ? ' highlighted' : ''}${continued ? ' continued' : ''}${mine ? ' mine' : ''}${!mine && mentions(text, state.me) ? ' mentions-me' : ''}${edited ? ' was-edited' : ''}${editing ? ' editing' : ''}${state.picker && state.picker.id === m.id && state.picker.where === where ? ' picking' : ''}${active ? ' thread-active' : ''}`,
    dataset: { id: m.id, from: m.from },
    'aria-label': `${m.from}: ${text.length > 80 ? `${text.slice(0, 80)}…` : text}${edited ? ' (edited)' : ''}`,
    tabindex: '-1',
  });
  el.append(continued ? h('span', { class: 'gutter' }, timeEl(m.ts)) : avatar(m.from));
  const body = h('div', { class: 'msg-body' });
  if (!continued) body.append(h('div', { class: 'msg-head' }, h('span', { class: 'author', text: m.from }), timeEl(m.ts)));
  const marker = m.pendingText !== undefined ? h('span', { class: 'edited', text: '(saving…)' })
    : m.editedAt ? h('span', { class: 'edited', title: `Edited ${fullTime(m.editedAt)}`, text: '(edited)' }) : null;
  // While it is edited in place, the text stays (hidden) for whoever looks for it.
  body.append(h('div', { class: `msg-text${marker ? ' is-edited' : ''}`, hidden: editing }, h('p', { class: 'text' }, renderText(text, state.me)), marker));
  if (editing) body.append(state.editing.form);
  const chips = reactionsEl(m);
  if (chips) body.append(chips);
  // A thread's root, in the conversation: how many replies, opening it.
  const n = Number(m.replies) || 0;
  if (where === 'main' && !m.thread && n > 0 && ch) {
    body.append(h('button', {
      type: 'button',
      class: 'thread-link',
      'aria-label': `${repliesText(n)}: open the thread`,
      'aria-controls': 'thread-pane',
      'aria-expanded': String(!!active),
      dataset: { action: 'thread' },
      on: { click: (ev) => openThread(ch.name, m.id, { opener: ev.currentTarget }) },
    }, svgIcon(ICONS.reply), h('span', { text: repliesText(n) })));
  }
  el.append(body);
  if (ch) el.append(actionsEl(ch, m, where));
  return el;
}

// ---------------------------------------------------------------- edits, deletes and reactions

function svgIcon(d) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill-rule', 'evenodd');
  svg.append(path);
  return svg;
}

const ICONS = {
  react: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16zM8.5 8a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm7 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zM7 13.5c.9 2 2.8 3.5 5 3.5s4.1-1.5 5-3.5z',
  edit: 'M3 17.25V21h3.75L17.8 9.94l-3.75-3.75zM20.7 7.04a1 1 0 0 0 0-1.41l-2.34-2.34a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75z',
  delete: 'M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6zM19 4h-3.5l-1-1h-5l-1 1H5v2h14z',
  reply: 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H8l-4 4V5a2 2 0 0 1 2-2zm0 2v12.2L7.2 16H20V5zm3 3h10v2H7zm0 4h7v2H7z',
};

// mayDelete: our own messages, and any outside DMs in a channel we run: a
// created channel we are an admin of, or any channel for a room admin. (The
// server lets a room admin delete in DMs too; the page does not offer it:
// a DM is two people's own.)
function mayDelete(ch, m) {
  return m.from === state.me || (!ch.dm && (ch.admin || state.roomAdmin));
}

// actionsEl is the toolbar a message shows while hovered or focused. A
// message of the conversation (not a reply: a thread has one level) offers
// to reply in its thread.
function actionsEl(ch, m, where = 'main') {
  const btn = (action, label, fn) => h('button', {
    type: 'button', class: 'msg-action', 'aria-label': label, title: label, dataset: { action }, on: { click: fn },
  }, svgIcon(ICONS[action]));
  return h('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions' },
    btn('react', 'Add reaction', (ev) => togglePicker(ch, m, ev.currentTarget)),
    where === 'main' && !m.thread && !m.provisional ? btn('reply', 'Reply in thread', (ev) => openThread(ch.name, m.id, { opener: ev.currentTarget })) : null,
    m.from === state.me ? btn('edit', 'Edit message', () => startEdit(ch, m, where)) : null,
    mayDelete(ch, m) ? btn('delete', 'Delete message', () => confirmDelete(ch, m, where)) : null);
}

// whoReacted names the people, "you" for me: "alice, bob and you".
function whoReacted(users) {
  const names = users.map((u) => (u === state.me ? 'you' : u));
  return names.length < 2 ? names.join('') : `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

function reactionsEl(m) {
  if (!m.reactions || !m.reactions.length) return null;
  return h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' }, m.reactions.map((r) => {
    const mine = r.users.includes(state.me);
    const who = whoReacted(r.users);
    return h('button', {
      type: 'button',
      class: `reaction${mine ? ' mine' : ''}`,
      'aria-pressed': String(mine),
      'aria-label': `${r.emoji} ${r.users.length}, from ${who}. ${mine ? 'Remove your reaction' : `React with ${r.emoji}`}`,
      title: `${who.startsWith('you') ? `Y${who.slice(1)}` : who} reacted with ${r.emoji}`,
      dataset: { action: 'reaction', emoji: r.emoji },
      on: { click: () => toggleReaction(m, r.emoji) },
    }, h('span', { class: 'reaction-emoji', 'aria-hidden': 'true', text: r.emoji }), h('span', { class: 'reaction-count', 'aria-hidden': 'true', text: String(r.users.length) }));
  }));
}

// keepFocus runs a redraw of messages without losing the keyboard's place:
// the element that had focus, or its new copy (same message, same action).
function keepFocus(fn) {
  const a = document.activeElement;
  const art = a && a.closest && a.closest('.msg');
  const box = art && art.parentElement && art.parentElement.closest('#messages, #thread-root, #thread-messages');
  if (!box) return fn();
  const key = { id: art.dataset.id, action: a.dataset.action, emoji: a.dataset.emoji };
  const sel = a.tagName === 'TEXTAREA' ? [a.selectionStart, a.selectionEnd] : null;
  const out = fn();
  if (a.isConnected) {
    if (document.activeElement !== a) {
      a.focus({ preventScroll: true });
      if (sel) a.setSelectionRange(sel[0], sel[1]);
    }
    return out;
  }
  const again = box.querySelector(`.msg[data-id="${CSS.escape(key.id)}"]`);
  if (!again) return out;
  const target = key.action
    ? again.querySelector(`[data-action="${CSS.escape(key.action)}"]${key.emoji ? `[data-emoji="${CSS.escape(key.emoji)}"]` : ''}`)
    : null;
  (target || again).focus({ preventScroll: true });
  return out;
}

// rerenderMessage redraws one message of the open conversation after a
// change, and the one after it (whose header depends on it).
// (Replies show only in their thread, there.)
function rerenderMessage(ch, msg) {
  if (ch.name !== state.active) return;
  if (!msg.thread) rerenderMain(ch, msg);
  const t = state.thread;
  if (t && t.channel === ch.name && (msg.id === t.root || msg.thread === t.root)) rerenderThreadMessage(msg);
  if (state.picker) placePicker();
}

function rerenderMain(ch, msg) {
  const box = $('messages');
  const el = box.querySelector(`.msg[data-id="${CSS.escape(msg.id)}"]`);
  if (!el) return;
  const stick = nearBottom();
  const list = ch.timeline.messages;
  const i = list.indexOf(msg);
  let k = i + 1;
  while (k < list.length && list[k].thread) k++;
  const afterDivider = (e) => !!(e.previousElementSibling && e.previousElementSibling.classList.contains('unread-divider'));
  keepFocus(() => {
    el.replaceWith(messageEl(msg, afterDivider(el) ? null : shownBefore(list, i)));
    const next = list[k];
    const nextEl = next && box.querySelector(`.msg[data-id="${CSS.escape(next.id)}"]`);
    if (nextEl) nextEl.replaceWith(messageEl(next, afterDivider(nextEl) ? null : msg));
  });
  if (stick) scrollToBottom();
}

// shownBefore is the message the conversation shows before list[i]: replies
// are not shown there.
function shownBefore(list, i) {
  for (let j = i - 1; j >= 0; j--) if (!list[j].thread) return list[j];
  return null;
}

// changeTarget finds the message a change object is about, or null when the
// page does not hold it (it is older than what was loaded: ignored) or the
// change is one already applied (a replay).
function changeTarget(m) {
  if (typeof m.channel !== 'string' || typeof m.id !== 'string') return null;
  if (state.removed.has(m.channel)) return null;
  const ch = state.channels.get(m.channel);
  if (!ch) return null;
  const entry = typeof m.entry === 'string' ? m.entry : '';
  if (entry) ch.seen = maxId(ch.seen, entry);
  const msg = findMessage(ch, m.id);
  if (!msg) {
    // A history page on its way may bring the message, as it was before this.
    if (ch.loading) {
      ch.orphans.push(m);
      if (ch.orphans.length > ORPHANS_KEPT) ch.orphans.shift();
    }
    // So may a page of the open thread.
    const t = state.thread;
    if (t && t.channel === ch.name && t.loading) {
      t.orphans.push(m);
      if (t.orphans.length > ORPHANS_KEPT) t.orphans.shift();
    }
    return null;
  }
  if (msg.deleted) return null;
  // Changes come in the channel's order: one not newer than the last applied is a repeat.
  if (entry && msg.lastEntry && compareIds(entry, msg.lastEntry) <= 0) return null;
  if (entry) msg.lastEntry = entry;
  return { ch, msg };
}

function onEdited(m) {
  if (typeof m.text !== 'string') return;
  const t = changeTarget(m);
  if (!t) return;
  t.msg.text = m.text;
  t.msg.editedAt = Number(m.editedAt) || Date.now();
  delete t.msg.pendingText;
  rerenderMessage(t.ch, t.msg);
  if (!t.ch.dm) renderSidebar(); // an edit may add or take away a mention
}

function onDeleted(m) {
  const t = changeTarget(m);
  if (!t) return;
  const { ch, msg } = t;
  Object.assign(msg, { deleted: true, text: '', reactions: [] });
  delete msg.pendingText;
  delete msg.editedAt;
  const here = (x) => x && x.channel === ch.name && x.id === msg.id;
  if (here(state.editing)) {
    const typing = state.editing.form.contains(document.activeElement);
    const { where } = state.editing;
    state.editing = null;
    toast({ title: 'Message deleted', body: 'The message you were editing was deleted.', kind: 'info' });
    if (typing) boxFor(where).focus();
  }
  if (msg.thread) countReply(ch, msg, -1);
  if (here(state.picker)) closePicker(false);
  if (here(state.confirm)) $('confirm-dialog').close();
  rerenderMessage(ch, msg);
  renderSidebar();
}

function onReaction(m) {
  if (typeof m.emoji !== 'string' || !m.emoji || typeof m.user !== 'string') return;
  const t = changeTarget(m);
  if (!t) return;
  t.msg.reactions = react(t.msg.reactions, m.emoji, m.user, !!m.on);
  rerenderMessage(t.ch, t.msg);
  if (state.picker && state.picker.channel === t.ch.name && state.picker.id === t.msg.id) markPicker(t.msg);
}

// sendChange sends an edit, delete or react frame. Until its ack it is
// kept, and sent again (same clientId) on the next socket.
function sendChange(ch, msg, type, fields) {
  const clientId = uuid();
  const frame = { type, channel: ch.name, id: msg.id, ...fields, clientId };
  const c = { clientId, type, channel: ch.name, id: msg.id, frame, attempt: 0, timer: 0 };
  state.changes.set(clientId, c);
  if (state.greeted && conn.open) conn.send(frame);
  return c;
}

// changeRefused: the server said no to a change. Not now (too fast,
// storage away): again after a pause. For good: say why, and show the
// message as it is.
function changeRefused(c, m) {
  if (RETRY_LATER.has(m.code) && c.attempt < CHANGE_RETRIES) {
    clearTimeout(c.timer);
    c.timer = setTimeout(() => {
      c.timer = 0;
      if (state.changes.get(c.clientId) === c && state.greeted && conn.open) conn.send(c.frame);
    }, refusalDelay(c.attempt++, { perSecond: state.limits.messagesPerSecond }));
    return;
  }
  clearTimeout(c.timer);
  state.changes.delete(c.clientId);
  const ch = state.channels.get(c.channel);
  const msg = ch && findMessage(ch, c.id);
  if (c.type === 'edit' && msg && msg.pendingText !== undefined && ![...state.changes.values()].some((o) => o.type === 'edit' && o.id === c.id && o.channel === c.channel)) {
    delete msg.pendingText;
    rerenderMessage(ch, msg);
  }
  toast({ title: CHANGE_FAILED[c.type] || 'Could not change the message', body: m.message || CHANGE_CODES[m.code] || m.code || 'The server refused.', kind: 'error' });
}

// ---- editing in place

function startEdit(ch, msg, where = 'main') {
  if (!msg || msg.deleted || msg.from !== state.me || ch.name !== state.active) return;
  if (state.editing) {
    if (state.editing.id === msg.id && state.editing.channel === ch.name && state.editing.where === where) {
      state.editing.input.focus();
      return;
    }
    cancelEdit({ focus: false });
  }
  closePicker(false);
  const input = h('textarea', { class: 'msg-edit-input', rows: '1', 'aria-label': 'Edit message', enterkeyhint: 'done' });
  input.maxLength = $('composer-input').maxLength;
  input.value = msg.pendingText ?? msg.text;
  const error = h('p', { class: 'msg-edit-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'msg-edit', dataset: { id: msg.id } },
    input,
    h('div', { class: 'msg-edit-foot' },
      h('span', { class: 'msg-edit-hint', text: 'Enter to save · Esc to cancel' }),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm', dataset: { action: 'edit-cancel' }, on: { click: () => cancelEdit() } }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn btn-primary btn-sm', dataset: { action: 'edit-save' } }, 'Save')),
    error);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    saveEdit();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      saveEdit();
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      cancelEdit();
    }
  });
  input.addEventListener('input', () => {
    growEditor(input);
    show(error, false);
  });
  state.editing = { channel: ch.name, id: msg.id, form, input, error, where };
  rerenderMessage(ch, msg);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
  growEditor(input);
  form.scrollIntoView({ block: 'nearest' });
}

function growEditor(ta) {
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 240)}px`;
}

function cancelEdit({ focus = true } = {}) {
  const e = state.editing;
  if (!e) return;
  state.editing = null;
  const ch = state.channels.get(e.channel);
  const msg = ch && findMessage(ch, e.id);
  if (msg) rerenderMessage(ch, msg);
  if (focus) boxFor(e.where).focus();
}

function saveEdit() {
  const e = state.editing;
  if (!e) return;
  const ch = state.channels.get(e.channel);
  const msg = ch && findMessage(ch, e.id);
  if (!msg || msg.deleted) {
    cancelEdit();
    return;
  }
  // As the composer sends: no blank lines around it.
  const text = e.input.value.replace(/^(?:[ \t]*\n)+/, '').replace(/\s+$/, '');
  if (!text.trim()) {
    // Nothing left: that is a delete, which asks first.
    cancelEdit({ focus: false });
    confirmDelete(ch, msg, e.where);
    return;
  }
  const over = utf8Length(text) - state.limits.maxMessageBytes;
  if (over > 0) {
    e.error.textContent = `${over} over the limit: a message can be up to ${state.limits.maxMessageBytes} bytes.`;
    show(e.error, true);
    return;
  }
  if (text !== (msg.pendingText ?? msg.text)) {
    msg.pendingText = text; // shown "(saving…)" until the server's edited object
    sendChange(ch, msg, 'edit', { text });
  }
  cancelEdit();
}

// lastOwnMessage is what ↑ in the empty composer edits.
function lastOwnMessage(ch) {
  const list = ch.timeline.messages;
  for (let i = list.length - 1; i >= 0; i--) if (list[i].from === state.me && !list[i].deleted && !list[i].thread) return list[i];
  return null;
}

// ---- deleting, after asking

function confirmDelete(ch, msg, where = 'main') {
  if (!msg || msg.deleted || !mayDelete(ch, msg)) return;
  closePicker(false);
  state.confirm = { channel: ch.name, id: msg.id, where };
  $('confirm-dialog').dataset.where = where;
  const text = msg.pendingText ?? msg.text;
  $('confirm-text').textContent = msg.from === state.me
    ? 'Delete this message? This cannot be undone.'
    : `Delete this message from ${msg.from}? This cannot be undone.`;
  $('confirm-quote').replaceChildren(renderText(text.length > 300 ? `${text.slice(0, 300)}…` : text, state.me));
  const dlg = $('confirm-dialog');
  if (!dlg.open) dlg.showModal();
  $('confirm-ok').focus();
}

function confirmed() {
  const c = state.confirm;
  state.confirm = null;
  $('confirm-dialog').close();
  const ch = c && state.channels.get(c.channel);
  const msg = ch && findMessage(ch, c.id);
  if (msg && !msg.deleted) sendChange(ch, msg, 'delete', {});
}

// ---- reactions

function toggleReaction(msg, emoji) {
  const ch = state.channels.get(msg.channel) || state.channels.get(state.active);
  if (!ch || msg.deleted || !findMessage(ch, msg.id)) return;
  const mine = (msg.reactions || []).some((r) => r.emoji === emoji && r.users.includes(state.me));
  sendChange(ch, msg, 'react', { emoji, on: !mine });
}

function togglePicker(ch, msg, anchor) {
  const where = anchor.closest('#thread-pane') ? 'thread' : 'main';
  if (state.picker && state.picker.channel === ch.name && state.picker.id === msg.id && state.picker.where === where) {
    closePicker(true);
    return;
  }
  closePicker(false);
  const picker = $('react-picker');
  state.picker = { channel: ch.name, id: msg.id, where };
  anchor.closest('.msg').classList.add('picking'); // its toolbar stays while the picker is open
  markPicker(msg);
  show(picker, true);
  placePicker(anchor);
  picker.querySelector('button').focus();
}

// placePicker puts the picker under the button it belongs to (above it
// near the bottom of the window); with the button out of sight, it closes.
function placePicker(anchor) {
  const p = state.picker;
  if (!p) return;
  const btn = anchor || pickerHome(p).querySelector(`.msg[data-id="${CSS.escape(p.id)}"] [data-action="react"]`);
  const r = btn && btn.getBoundingClientRect();
  const view = $(p.where === 'thread' ? 'thread-scroller' : 'scroller').getBoundingClientRect();
  if (!r || r.bottom < view.top || r.top > view.bottom) {
    closePicker(false);
    return;
  }
  const picker = $('react-picker');
  const w = picker.offsetWidth;
  const ht = picker.offsetHeight;
  const left = Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8));
  const top = r.bottom + 4 + ht > window.innerHeight - 8 ? Math.max(8, r.top - ht - 4) : r.bottom + 4;
  picker.style.left = `${Math.round(left)}px`;
  picker.style.top = `${Math.round(top)}px`;
}

// markPicker shows which emoji of the picker are already mine.
function markPicker(msg) {
  for (const b of $('react-picker').querySelectorAll('button')) {
    const mine = (msg.reactions || []).some((r) => r.emoji === b.dataset.emoji && r.users.includes(state.me));
    b.setAttribute('aria-pressed', String(mine));
  }
}

// pickerHome is where the message the picker is open for shows.
function pickerHome(p) {
  return p.where === 'thread' ? $('thread-pane') : $('messages');
}

function closePicker(refocus = true) {
  const p = state && state.picker;
  if (!p) return;
  state.picker = null;
  show($('react-picker'), false);
  for (const el of document.querySelectorAll('.msg.picking')) el.classList.remove('picking');
  if (refocus) {
    const btn = pickerHome(p).querySelector(`.msg[data-id="${CSS.escape(p.id)}"] [data-action="react"]`);
    if (btn) btn.focus();
  }
}

function pickEmoji(emoji) {
  const p = state.picker;
  if (!p) return;
  closePicker(true);
  const ch = state.channels.get(p.channel);
  const msg = ch && findMessage(ch, p.id);
  if (msg) toggleReaction(msg, emoji);
}

function wirePicker() {
  const picker = $('react-picker');
  picker.replaceChildren(...EMOJI.map(([emoji, name]) => h('button', {
    type: 'button', class: 'emoji-btn', 'aria-label': `React with ${name}`, title: name, 'aria-pressed': 'false', dataset: { emoji },
    on: { click: () => pickEmoji(emoji) },
  }, emoji)));
  picker.addEventListener('keydown', (ev) => {
    const buttons = [...picker.querySelectorAll('button')];
    const i = buttons.indexOf(document.activeElement);
    if (ev.key === 'Escape') {
      ev.preventDefault();
      ev.stopPropagation();
      closePicker(true);
    } else if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
      ev.preventDefault();
      buttons[(i + (ev.key === 'ArrowRight' ? 1 : -1) + buttons.length) % buttons.length].focus();
    } else if (ev.key === 'Tab' && (ev.shiftKey ? i === 0 : i === buttons.length - 1)) {
      closePicker(true); // leaving it: back to where it opened
      ev.preventDefault();
    }
  });
  // A press anywhere else closes it (the button that opened it toggles it itself).
  document.addEventListener('pointerdown', (ev) => {
    const p = state && state.picker;
    if (!p || picker.contains(ev.target)) return;
    const opener = ev.target.closest && ev.target.closest('[data-action="react"]');
    if (opener && opener.closest('.msg')?.dataset.id === p.id) return;
    closePicker(false);
  }, true);
  window.addEventListener('resize', () => closePicker(false));

  const dlg = $('confirm-dialog');
  $('confirm-ok').addEventListener('click', confirmed);
  $('confirm-cancel').addEventListener('click', () => dlg.close());
  for (const b of dlg.querySelectorAll('.dialog-close')) b.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => {
    state.confirm = null;
    if (!$('chat-view').hidden && !$('composer-wrap').hidden) boxFor(dlg.dataset.where).focus();
  });
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
  const divider = dividerId(ch);
  let dividerEl = null;
  for (const m of ch.timeline.messages) {
    if (m.thread) continue; // a reply shows in its thread
    if (!prev || dayKey(prev.ts) !== dayKey(m.ts)) nodes.push(daySep(m.ts));
    // The divider goes before the first message shown from where it starts.
    const divided = divider && !dividerEl && compareIds(m.id, divider) >= 0;
    if (divided) {
      dividerEl = unreadDivider();
      nodes.push(dividerEl);
    }
    nodes.push(messageEl(m, divided ? null : prev));
    prev = m;
  }
  keepFocus(() => box.replaceChildren(...nodes));
  renderHistoryTop();
  if (toBottom || (stick && !keepScroll)) scrollToBottom();
  else if (keepScroll) s.scrollTop = s.scrollHeight - fromBottom;
  if (state.picker) placePicker();
  // The first time it shows, the divider is in view, even when what came
  // after it is more than one screen.
  if (dividerEl && !ch.divider.shown) {
    ch.divider.shown = true;
    if (dividerEl.offsetTop < s.scrollTop) dividerEl.scrollIntoView({ block: 'start' });
  }
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
  const prev = shownBefore(list, idx);
  const box = $('messages');
  if (!prev || dayKey(prev.ts) !== dayKey(m.ts)) box.append(daySep(m.ts));
  const divider = ch.divider && dividerId(ch);
  const divided = !!divider && compareIds(m.id, divider) >= 0 && !box.querySelector('.unread-divider');
  if (divided) box.append(unreadDivider());
  box.append(messageEl(m, divided ? null : prev));
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
  const items = [...state.pending.values()].filter((p) => p.channel === state.active && !p.thread);
  box.replaceChildren(...items.map(pendingEl));
  if (stick) scrollToBottom();
  renderThreadPending();
}

// renderThreadPending shows the open thread's replies on their way.
function renderThreadPending() {
  const t = state.thread;
  const box = $('thread-pending');
  if (!t) {
    box.replaceChildren();
    return;
  }
  const stick = threadNearBottom();
  box.replaceChildren(...[...state.pending.values()].filter((p) => p.channel === t.channel && p.thread === t.root).map(pendingEl));
  if (stick) threadToBottom();
}

function pendingEl(p) {
  const failed = p.status === 'failed';
  // Refused for sending too fast, or queued behind one that was: it goes out by itself.
  const waiting = !failed && state.paced && p.clientId !== state.paceInFlight;
  const status = failed ? 'Not sent' : waiting ? 'Waiting to send…' : 'Sending…';
  const el = h('article', {
    class: `msg mine ${failed ? 'failed' : 'pending'}${waiting ? ' held' : ''}`,
    dataset: { clientId: p.clientId },
    'aria-label': `${status.replace('…', '')}: ${p.text}`,
    title: waiting ? 'Sending too fast for the server: this goes out by itself in a moment.' : undefined,
  }, avatar(state.me));
  const body = h('div', { class: 'msg-body' },
    h('div', { class: 'msg-head' }, h('span', { class: 'author', text: state.me }), h('span', { class: 'status', text: status })),
    h('p', { class: 'text' }, renderText(p.text, state.me)));
  if (failed) {
    body.append(h('div', { class: 'msg-error' },
      h('span', { text: p.error }),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm retry', on: { click: () => retry(p.clientId) } }, 'Retry'),
      h('button', { type: 'button', class: 'btn btn-ghost btn-sm', on: { click: () => discard(p.clientId) } }, 'Discard')));
  }
  el.append(body);
  return el;
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

function toast({ title, subtitle = '', body = '', kind = 'info', channel = '', thread = '' }) {
  const box = $('toasts');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: { kind, channel, thread: thread || undefined } });
  const close = () => el.remove();
  const main = h('div', { class: 'toast-main' },
    h('div', { class: 'toast-title' }, h('strong', { text: title }), subtitle ? h('span', { class: 'toast-sub', text: subtitle }) : null),
    body ? h('p', { class: 'toast-body', text: body.length > 160 ? `${body.slice(0, 160)}…` : body }) : null);
  el.append(kind === 'dm' || kind === 'mention' || kind === 'thread' ? avatar(title) : h('span', { class: 'toast-icon', 'aria-hidden': 'true', text: kind === 'error' ? '!' : 'i' }), main);
  if (channel && thread) {
    el.append(h('button', { type: 'button', class: 'btn btn-primary btn-sm', 'aria-label': `Open the thread${title ? ` (${title})` : ''}`, on: { click: () => { close(); openThread(channel, thread); } } }, 'Open'));
  } else if (channel) el.append(h('button', { type: 'button', class: 'btn btn-primary btn-sm', on: { click: () => { close(); openChannel(channel); } } }, 'Open'));
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
  if (s.current) {
    clearDrafts(state.me);
    return leave('You have logged out.');
  }
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
  clearDrafts(state.me);
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

  wirePicker();
  $('composer').addEventListener('submit', onComposerSubmit);
  $('composer-input').addEventListener('keydown', onComposerKey);
  $('composer-input').addEventListener('input', onComposerInput);
  $('thread-composer').addEventListener('submit', onThreadSubmit);
  $('thread-input').addEventListener('keydown', onThreadKey);
  $('thread-input').addEventListener('input', () => {
    autoGrow($('thread-input'));
    updateThreadCounter();
  });
  $('thread-close').addEventListener('click', () => closeThread());
  $('search-form').addEventListener('submit', onSearchSubmit);
  $('search-input').addEventListener('keydown', onSearchKey);
  $('search-input').addEventListener('input', () => $('search-input').removeAttribute('aria-invalid'));
  $('search-results').addEventListener('keydown', onSearchKey);
  $('search-more').addEventListener('click', searchMore);
  $('search-close').addEventListener('click', () => closeSearch());
  $('thread-scroller').addEventListener('scroll', () => {
    if (state && state.picker && state.picker.where === 'thread') placePicker();
  }, { passive: true });
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
    if (state && state.picker) placePicker(); // it follows its message
    // Scrolling near the top fetches the previous page by itself.
    const ch = state && state.channels.get(state.active);
    if (ch && scroller.scrollTop < 120 && ch.historyLoaded && ch.hasMore && !ch.loading) loadHistory(ch, true);
  }, { passive: true });

  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && document.body.classList.contains('nav-open')) {
      closeNav();
      $('nav-open').focus();
    } else if (ev.key === 'Escape' && state && state.thread && !ev.defaultPrevented && !document.querySelector('dialog[open]')) {
      // Escape closes the thread (an edit or the picker took theirs first).
      ev.preventDefault();
      closeThread();
    } else if (ev.key === 'Escape' && state && state.search && !ev.defaultPrevented && !document.querySelector('dialog[open]')) {
      // Escape closes the search results, as it does a thread.
      ev.preventDefault();
      closeSearch();
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
    if (state && state.started && name && name !== state.active) routeTo(name);
  });
  $('browse-channels').addEventListener('click', () => dialogs.openBrowse());
  $('create-channel').addEventListener('click', () => dialogs.openCreate());
  $('open-members').addEventListener('click', () => { if (state.active) dialogs.openMembers(state.active); });
  $('gone-browse').addEventListener('click', () => dialogs.openBrowse(namePrefix(state.gone) || ''));
  $('gone-join').addEventListener('click', async () => {
    const name = state.gone;
    const btn = $('gone-join');
    btn.disabled = true;
    state.joinedHere = name;
    try {
      await api.joinChannel(name);
      joinedChannel(name);
    } catch (e) {
      apiFailed(e);
      toast({ title: `Could not join #${name}`, body: e.message, kind: 'error' });
    } finally {
      btn.disabled = false;
    }
  });

  conn.addEventListener('frame', (ev) => onFrame(ev.detail));
  conn.addEventListener('state', (ev) => renderConn(ev.detail));
  conn.addEventListener('closed', (ev) => {
    // The last few close codes, for anyone (or any test) asking why we reconnected.
    const el = $('conn-state');
    el.dataset.closes = [...(el.dataset.closes ? el.dataset.closes.split(',') : []), String(ev.detail.code)].slice(-10).join(',');
    state.greeted = false;
    state.paceInFlight = ''; // still pending: the next hello sends it again
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

// Pure helpers for the chat protocol: message ids, per-channel timelines,
// frame splitting, DM channel names, text tokens and reconnect backoff.
// Nothing here touches the DOM or the network, so the browser tests can
// import this module and check it directly.

// parseId splits a message id "<ms>-<seq>" into two numbers.
// Ids come from a Redis-stream-like sequence; both parts are well below 2^53.
export function parseId(id) {
  const s = String(id);
  const dash = s.indexOf('-');
  const ms = Number(dash < 0 ? s : s.slice(0, dash));
  const seq = dash < 0 ? 0 : Number(s.slice(dash + 1));
  return [Number.isFinite(ms) ? ms : -1, Number.isFinite(seq) ? seq : -1];
}

// compareIds orders two ids by (ms, seq) numerically: "10-0" comes after
// "9-5", which a string comparison gets wrong. A missing id sorts first.
export function compareIds(a, b) {
  if (a === b) return 0;
  if (a == null || a === '') return -1;
  if (b == null || b === '') return 1;
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

// maxId returns the later of two ids (either may be empty).
export function maxId(a, b) {
  return compareIds(a, b) >= 0 ? a : b;
}

// Timeline holds one channel's messages, each id once, ordered by id.
// Messages arrive from three places (history pages, resume replay and live
// delivery) in any interleaving; insert makes the result the same whatever
// the order.
export class Timeline {
  constructor() {
    this.messages = [];
    this.byId = new Map();
  }

  get size() { return this.messages.length; }
  get oldestId() { return this.messages.length ? this.messages[0].id : ''; }
  get newestId() { return this.messages.length ? this.messages[this.messages.length - 1].id : ''; }

  has(id) { return this.byId.has(id); }
  get(id) { return this.byId.get(id); }

  // insert adds msg unless its id is already there. It returns the index
  // where msg went, or -1 for a duplicate.
  insert(msg) {
    if (!msg || typeof msg.id !== 'string' || this.byId.has(msg.id)) return -1;
    const list = this.messages;
    // Nearly every message is the newest one: check the end first.
    let i = list.length;
    if (i > 0 && compareIds(list[i - 1].id, msg.id) > 0) {
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareIds(list[mid].id, msg.id) < 0) lo = mid + 1; else hi = mid;
      }
      i = lo;
    }
    list.splice(i, 0, msg);
    this.byId.set(msg.id, msg);
    return i;
  }
}

// splitFrame turns one server WebSocket frame into its objects: the server
// coalesces queued objects into one frame, separated by "\n". Blank lines are
// skipped; a line that is not a JSON object is reported through onBad and
// skipped, so one bad line cannot hide the others.
export function splitFrame(data, onBad) {
  const out = [];
  for (const line of String(data).split('\n')) {
    if (line.trim() === '') continue;
    try {
      const obj = JSON.parse(line);
      if (obj && typeof obj === 'object' && !Array.isArray(obj) && typeof obj.type === 'string') out.push(obj);
      else if (onBad) onBad(line);
    } catch {
      if (onBad) onBad(line);
    }
  }
  return out;
}

// dmChannel is the channel name of the direct messages between a and b.
export function dmChannel(a, b) {
  const [x, y] = [String(a).toLowerCase(), String(b).toLowerCase()].sort();
  return `dm:${x}:${y}`;
}

// isDM reports whether channel names a direct-message channel.
export function isDM(channel) {
  return typeof channel === 'string' && channel.startsWith('dm:');
}

// dmPeer returns the other member of a DM channel, seen from me.
export function dmPeer(channel, me) {
  const parts = String(channel).split(':');
  if (parts.length !== 3 || parts[0] !== 'dm') return '';
  return parts[1] === me ? parts[2] : parts[1];
}

// backoffDelay is the wait before reconnect attempt number attempt (0-based):
// "full jitter", a uniform draw from [0, min(cap, base*2^attempt)). Spreading
// clients over the whole window avoids a thundering herd when a server
// restarts and every client comes back at once.
export function backoffDelay(attempt, { base = 500, cap = 30000 } = {}, rand = Math.random) {
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, Math.min(attempt, 30)));
  return Math.floor(rand() * ceiling);
}

const usernameChars = 'a-z0-9_.\\-';
// A mention is "@name" not preceded by a name character (so "a@b.c" is no mention).
const tokenPattern = new RegExp(
  `(^|[^${usernameChars}@])@([${usernameChars}]{3,32})|(https?:\\/\\/[^\\s<>"']+)`, 'gi');

// tokenize splits message text into plain text, @mentions and links, for
// rendering as DOM nodes (never as HTML). A mention's name is case-folded as
// the server folds usernames; self marks a mention of me.
export function tokenize(text, me) {
  const out = [];
  const s = String(text);
  let last = 0;
  const push = (t) => { if (t.value) out.push(t); };
  for (const m of s.matchAll(tokenPattern)) {
    if (m[3]) {
      // Trailing punctuation usually ends the sentence, not the URL.
      let url = m[3];
      const trim = url.match(/[.,;:!?)\]]+$/);
      if (trim) url = url.slice(0, -trim[0].length);
      push({ type: 'text', value: s.slice(last, m.index) });
      out.push({ type: 'link', value: url });
      last = m.index + url.length;
      continue;
    }
    const start = m.index + m[1].length;
    let name = m[2];
    // "@bob." at the end of a sentence mentions bob.
    const tail = name.match(/[.\-]+$/);
    if (tail) name = name.slice(0, -tail[0].length);
    if (name.length < 3) continue;
    push({ type: 'text', value: s.slice(last, start) });
    const folded = name.toLowerCase();
    out.push({ type: 'mention', value: '@' + name, user: folded, self: !!me && folded === me });
    last = start + 1 + name.length;
  }
  push({ type: 'text', value: s.slice(last) });
  return out;
}

// mentions reports whether text mentions user.
export function mentions(text, user) {
  return tokenize(text, user).some((t) => t.type === 'mention' && t.self);
}

// uuid returns a random RFC 4122 version-4 UUID. crypto.randomUUID exists
// only in secure contexts; getRandomValues works everywhere.
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// utf8Length is the size of s in UTF-8 bytes: what the server's
// --max-message-bytes limit counts (an "é" is 2, most emoji 4).
const utf8 = new TextEncoder();
export function utf8Length(s) {
  return utf8.encode(String(s)).length;
}

// DEFAULT_MAX_MESSAGE_BYTES is the server's default limit, used until a
// hello names the room's own (hello.limits.maxMessageBytes).
export const DEFAULT_MAX_MESSAGE_BYTES = 4096;

// refusalDelay is the wait before resending a message the server refused
// as rate_limited (or unavailable): "equal jitter" on a doubling window that
// starts at one token's worth of the send rate, so a resend is never
// immediate (the bucket needs time to refill) and queued tabs spread out.
export function refusalDelay(attempt, { perSecond = 5, cap = 8000 } = {}, rand = Math.random) {
  const base = Math.max(250, Math.ceil(1000 / (perSecond > 0 ? perSecond : 5)));
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, Math.min(attempt, 16)));
  return Math.floor(ceiling / 2 + rand() * (ceiling / 2));
}

// unreadSplit looks at the newest `unread` messages of a timeline that
// others wrote (the server counts only those) and returns the id of the
// first of them, where the "new messages" divider goes, and how many of them
// mention me. When the timeline holds fewer than `unread` such messages,
// the divider goes before the oldest it holds (complete: false).
export function unreadSplit(messages, unread, me) {
  let left = Math.max(0, Number(unread) || 0);
  let first = '';
  let mentioned = 0;
  for (let i = messages.length - 1; i >= 0 && left > 0; i--) {
    const m = messages[i];
    if (m.from === me || m.deleted) continue; // the server counts neither
    left--;
    first = m.id;
    if (mentions(m.text, me)) mentioned++;
  }
  if (left > 0 && messages.length) first = messages[0].id;
  return { first, mentions: mentioned, complete: left === 0 };
}

// namePrefix normalizes what someone typed into a directory search: the
// server folds case and accepts only name characters ('' = everyone); null
// means no name can start like that.
export function namePrefix(q) {
  const s = String(q).trim().replace(/^[@#]/, '').toLowerCase();
  return /^[a-z0-9_.-]{0,64}$/.test(s) ? s : null;
}

// peopleOrder sorts a people list: online first, then everyone else, each
// part by name (byte order, as the server pages it).
export function peopleOrder(a, b) {
  if (!!a.online !== !!b.online) return a.online ? -1 : 1;
  return a.username < b.username ? -1 : a.username > b.username ? 1 : 0;
}

// historyEntry makes an entry of a history page (or a live message) safe to
// render: a deleted message comes as only {id, deleted, thread?}, with no
// author, text or time (its time is its id's); reactions keep only
// well-formed ones; a thread's root counts its replies (0 when none).
export function historyEntry(m, channel) {
  const ts = Number.isFinite(m.ts) ? m.ts : parseId(m.id)[0];
  // A reply keeps its thread, deleted or not: the page counts and places it by it.
  if (m.deleted) {
    const gone = { id: m.id, channel, from: '', text: '', ts, deleted: true, reactions: [] };
    if (typeof m.thread === 'string' && m.thread) gone.thread = m.thread;
    return gone;
  }
  const out = { ...m, channel: typeof m.channel === 'string' ? m.channel : channel, ts };
  if (typeof out.thread !== 'string' || !out.thread) delete out.thread;
  out.replies = Number.isFinite(m.replies) && m.replies > 0 ? m.replies : 0;
  out.from = typeof m.from === 'string' ? m.from : '';
  out.text = typeof m.text === 'string' ? m.text : '';
  out.reactions = Array.isArray(m.reactions)
    ? m.reactions.filter((r) => r && typeof r.emoji === 'string' && Array.isArray(r.users) && r.users.length)
      .map((r) => ({ emoji: r.emoji, users: r.users.filter((u) => typeof u === 'string') }))
    : [];
  return out;
}

// react applies one reaction change to a message's reactions, as the server
// does: emoji in the order first used, people in the order they reacted, an
// emoji nobody holds any more dropped. It returns a new list; applying the
// same change twice changes nothing.
export function react(reactions, emoji, user, on) {
  const out = (reactions || []).map((r) => ({ emoji: r.emoji, users: [...r.users] }));
  const i = out.findIndex((r) => r.emoji === emoji);
  if (i < 0) {
    if (on) out.push({ emoji, users: [user] });
    return out;
  }
  const j = out[i].users.indexOf(user);
  if (on && j < 0) out[i].users.push(user);
  if (!on && j >= 0) {
    out[i].users.splice(j, 1);
    if (!out[i].users.length) out.splice(i, 1);
  }
  return out;
}

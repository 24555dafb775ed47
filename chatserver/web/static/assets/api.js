// The HTTP JSON API (DESIGN.md §3). Authentication is the HttpOnly session
// cookie the server sets at login: the page never sees or stores the token.

// ApiError carries the server's error code and its human-readable message,
// which the page shows as it is.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter = 0) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function request(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' }, cache: 'no-store' };
  if (method !== 'GET') {
    // The server accepts state changes only as JSON from its own origin;
    // a JSON content type is what a cross-site form cannot forge.
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Not JSON (a proxy's error page, say): fall through to the status.
  }
  if (!res.ok) {
    const e = data && data.error;
    const retryAfter = Number(res.headers.get('Retry-After')) || 0;
    let message = e && typeof e.message === 'string' && e.message ? e.message : `The server answered ${res.status} ${res.statusText}.`;
    if (!e && res.status === 429 && retryAfter) message = `Too many attempts. Try again in ${retryAfter} s.`;
    throw new ApiError(res.status, (e && e.code) || `http_${res.status}`, message, retryAfter);
  }
  return data;
}

const enc = encodeURIComponent;

function listQuery(q, after, limit) {
  const p = new URLSearchParams();
  if (q) p.set('q', q);
  if (after) p.set('after', after);
  if (limit) p.set('limit', String(limit));
  return p;
}

export const api = {
  register: (username, password) => request('POST', '/api/v1/register', { username, password }),
  login: (username, password) => request('POST', '/api/v1/login', { username, password }),
  logout: () => request('POST', '/api/v1/logout', {}),
  me: () => request('GET', '/api/v1/me'),
  sessions: () => request('GET', '/api/v1/sessions'),
  revokeSession: (id) => request('DELETE', `/api/v1/sessions/${enc(id)}`, {}),
  revokeAllSessions: () => request('DELETE', '/api/v1/sessions', {}),
  channels: () => request('GET', '/api/v1/channels'),
  // The people directory and the channel browser are paged by name: pass the
  // previous answer's `next` as after; '' is the first page.
  users: (q, after, limit) => request('GET', `/api/v1/users?${listQuery(q, after, limit)}`),
  // The people online whose names start with q (at most one page: the
  // server reads at most 1,000 of them).
  onlineUsers: (q, limit) => request('GET', `/api/v1/users?${listQuery(q, '', limit)}&online=true`),
  browseChannels: (q, after, limit) => request('GET', `/api/v1/channels/browse?${listQuery(q, after, limit)}`),
  createChannel: (name, isPrivate) => request('POST', '/api/v1/channels', { name, private: !!isPrivate }),
  joinChannel: (channel) => request('POST', `/api/v1/channels/${enc(channel)}/join`, {}),
  leaveChannel: (channel) => request('POST', `/api/v1/channels/${enc(channel)}/leave`, {}),
  members: (channel, after, limit) => request('GET', `/api/v1/channels/${enc(channel)}/members?${listQuery('', after, limit)}`),
  // addMember adds a person to a channel; admin also makes them (or a member already in) an admin.
  addMember: (channel, username, admin = false) =>
    request('POST', `/api/v1/channels/${enc(channel)}/members`, admin ? { username, admin: true } : { username }),
  removeMember: (channel, username) => request('DELETE', `/api/v1/channels/${enc(channel)}/members/${enc(username)}`, {}),
  // history returns one page of a channel, oldest first; before '' is the latest page.
  history: (channel, before, limit) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set('before', before);
    return request('GET', `/api/v1/channels/${enc(channel)}/messages?${q}`);
  },
  // thread returns a thread's root and up to limit of its replies after
  // `after` ('' = from the first), oldest first.
  thread: (channel, id, after, limit) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (after) q.set('after', after);
    return request('GET', `/api/v1/channels/${enc(channel)}/messages/${enc(id)}/thread?${q}`);
  },
  // search returns up to limit messages containing every word of q, newest
  // first, in every conversation of mine; before is the previous page's
  // `next` ('' = the newest).
  search: (q, before, limit) => {
    const p = new URLSearchParams({ q, limit: String(limit) });
    if (before) p.set('before', before);
    return request('GET', `/api/v1/search?${p}`);
  },
};

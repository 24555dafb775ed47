// The WebSocket connection: connect, split frames, reconnect by itself.
//
// Reconnects use exponential backoff with full jitter. Close codes decide
// what happens next (DESIGN.md §3):
//   4401        the session expired or was revoked: stop, the page shows login
//   1012        the server is restarting (announced by a `reconnect` object):
//               come back soon, spread over a second, and resume
//   1008, 1009, 4408, 4429, 1013
//               flooding / frame too large / too slow / too many
//               connections / server full: reported, then normal backoff
//   anything else, or a failed handshake: normal backoff. A handshake that
//               keeps failing may mean the session is gone (a browser cannot
//               see the 401), so the page is asked to check it.

import { backoffDelay, splitFrame } from './proto.js';

// The close codes the server sends, one meaning each (docs/protocol.md).
export const Close = Object.freeze({
  Normal: 1000,
  GoingAway: 1001,
  Flooding: 1008,
  TooLarge: 1009,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  SessionEnded: 4401,
  TooSlow: 4408,
  TooManyConnections: 4429,
});

// Connection is an EventTarget that emits:
//   'frame'  detail: one server object
//   'state'  detail: {state, attempt, retryAt, reason} where state is
//            'connecting' | 'online' | 'waiting' | 'stopped'
//   'closed' detail: {code, reason, opened} after every close
//   'auth'   the server ended the session (4401)
export class Connection extends EventTarget {
  constructor({ url, base = 500, cap = 30000, restartWindow = 1000, connectTimeout = 10000, checkSession = null } = {}) {
    super();
    this.url = url;
    this.connectTimeout = connectTimeout;
    this.base = base;
    this.cap = cap;
    this.restartWindow = restartWindow;
    this.checkSession = checkSession;
    this.ws = null;
    this.attempt = 0;
    this.timer = 0;
    this.stopped = true;
    this.state = 'stopped';
    this.reason = '';
    this.retryAt = 0;
    this.connects = 0; // successful opens, for the page and its tests
    this.restarts = 0; // restart requests since the last greeting
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.restarts = 0;
    this.#open();
  }

  // stop closes the socket for good (logout); no reconnect follows.
  stop(code = Close.Normal, reason = 'bye') {
    this.stopped = true;
    clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
    this.#setState('stopped', '');
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // send writes one object as one frame; false when the socket is not open
  // (the caller keeps what must survive and sends it after the next hello).
  send(obj) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  // healthy resets the backoff once the server has greeted us, so a socket
  // that opens and is closed at once keeps backing off.
  healthy() {
    this.attempt = 0;
    this.restarts = 0;
  }

  // retryNow skips the rest of a backoff wait (a button, the browser coming
  // back online, the tab becoming visible).
  retryNow() {
    if (this.stopped || this.state !== 'waiting') return;
    clearTimeout(this.timer);
    this.#open();
  }

  #setState(state, reason) {
    this.state = state;
    this.reason = reason;
    this.dispatchEvent(new CustomEvent('state', {
      detail: { state, reason, attempt: this.attempt, retryAt: this.retryAt },
    }));
  }

  #open() {
    this.retryAt = 0;
    this.#setState('connecting', this.reason);
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.#schedule(backoffDelay(this.attempt++, this), String(err));
      return;
    }
    this.ws = ws;
    let opened = false;
    let restarting = false;
    // A handshake into a black hole never fails by itself; give up on it.
    const handshake = setTimeout(() => {
      if (this.ws === ws && ws.readyState === WebSocket.CONNECTING) ws.close();
    }, this.connectTimeout);
    ws.addEventListener('open', () => {
      clearTimeout(handshake);
      if (this.ws !== ws) return;
      opened = true;
      this.connects++;
      this.#setState('online', '');
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      for (const obj of splitFrame(ev.data, (line) => console.warn('hubbub: dropped a malformed server line', line))) {
        if (obj.type === 'reconnect') restarting = true;
        this.dispatchEvent(new CustomEvent('frame', { detail: obj }));
      }
    });
    ws.addEventListener('close', (ev) => {
      clearTimeout(handshake);
      if (this.ws !== ws) return;
      this.ws = null;
      this.dispatchEvent(new CustomEvent('closed', { detail: { code: ev.code, reason: ev.reason, opened } }));
      if (this.stopped) return;
      this.#afterClose(ev.code, ev.reason, opened, restarting);
    });
    // 'error' is always followed by 'close', which does the work.
  }

  async #afterClose(code, reason, opened, restarting) {
    if (code === Close.SessionEnded) {
      this.stopped = true;
      this.#setState('stopped', 'Your session has ended.');
      this.dispatchEvent(new Event('auth'));
      return;
    }
    if ((code === Close.ServiceRestart || restarting) && this.restarts++ === 0) {
      // The server is draining: it asked everyone to come back. Spread the
      // comeback over a window so they do not all arrive at once; if the
      // server is still down (or sends us away again before greeting us),
      // the usual backoff takes over from there.
      this.attempt = 0;
      this.#schedule(Math.floor(Math.random() * this.restartWindow), 'The server is restarting.');
      return;
    }
    let why = 'Connection lost.';
    if (code === Close.Flooding) why = 'Too many messages at once: the server closed the connection.';
    else if (code === Close.TooLarge) why = 'A message was too large for the server.';
    else if (code === Close.TooSlow) why = 'The connection was too slow to keep up.';
    else if (code === Close.TooManyConnections) why = 'You are connected from too many tabs or devices; close one.';
    else if (code === Close.TryAgainLater) why = 'The server is busy.';
    else if (!opened) why = 'Cannot reach the server.';
    if (!opened && this.checkSession && this.attempt >= 1) {
      // A failed handshake looks the same whether the server is down or our
      // session is gone; ask the API, which can tell.
      let ok = true;
      try {
        ok = await this.checkSession();
      } catch {
        ok = true; // unreachable: keep retrying
      }
      if (this.stopped) return;
      if (!ok) {
        this.stopped = true;
        this.#setState('stopped', 'Your session has ended.');
        this.dispatchEvent(new Event('auth'));
        return;
      }
    }
    this.#schedule(backoffDelay(this.attempt++, this), why);
  }

  #schedule(delay, reason) {
    clearTimeout(this.timer);
    this.retryAt = Date.now() + delay;
    this.#setState('waiting', reason);
    this.timer = setTimeout(() => {
      if (!this.stopped) this.#open();
    }, delay);
  }
}

// Channel dialogs: browse and join public channels, create one (public or
// private), and see a channel's members, add people, remove them or make
// them admins (the channel's admins and room admins) or leave. Every refusal
// shows the server's own message.
//
// The page passes in what these dialogs need from it (ctx):
//   api, me(), roomAdmin() -> one of the room's admins (hello.admin),
//   channel(name) -> the page's channel or undefined,
//   joined(name, {private, admin}) -> the person is now a member: open it,
//   joining(name) -> a join or create is on its way (its channel frame
//   may come before the answer), left(name) -> the person left,
//   leaving(name) -> a leave is on its way, setAdmin(name, bool),
//   onError(err) -> for a 401.

import { $, avatar, h, show } from './dom.js';
import { namePrefix } from './proto.js';

const PAGE = 50;
const SEARCH_DELAY = 200;

function setError(id, msg) {
  $(id).textContent = msg || '';
  show($(id), !!msg);
}

function closeOnButton(dlg) {
  for (const b of dlg.querySelectorAll('.dialog-close')) b.addEventListener('click', () => dlg.close());
}

export class ChannelDialogs {
  constructor(ctx) {
    this.ctx = ctx;
    this.browse = { q: '', next: '', seq: 0, timer: 0 };
    this.members = { channel: '', next: '', seq: 0 };
    for (const id of ['browse-dialog', 'create-dialog', 'members-dialog']) closeOnButton($(id));

    $('browse-search').addEventListener('input', () => {
      clearTimeout(this.browse.timer);
      this.browse.timer = setTimeout(() => this.loadBrowse(false), SEARCH_DELAY);
    });
    $('browse-more').addEventListener('click', () => this.loadBrowse(true));
    $('browse-create').addEventListener('click', () => { $('browse-dialog').close(); this.openCreate(); });
    $('create-form').addEventListener('submit', (ev) => this.onCreate(ev));
    $('invite-form').addEventListener('submit', (ev) => this.onInvite(ev));
    $('members-more').addEventListener('click', () => this.loadMembers(true));
    $('leave-channel').addEventListener('click', () => this.onLeave());
  }

  closeAll() {
    for (const id of ['browse-dialog', 'create-dialog', 'members-dialog']) if ($(id).open) $(id).close();
  }

  // ------------------------------------------------------------ browse

  openBrowse(q = '') {
    setError('browse-error', '');
    $('browse-search').value = q;
    if (!$('browse-dialog').open) $('browse-dialog').showModal();
    $('browse-search').focus();
    this.loadBrowse(false);
  }

  async loadBrowse(more) {
    const b = this.browse;
    const q = namePrefix($('browse-search').value);
    const seq = ++b.seq;
    const list = $('browse-list');
    if (!more) {
      b.next = '';
      list.replaceChildren();
    }
    if (q === null) {
      $('browse-status').textContent = 'Channel names have only a–z, 0–9 and “-”.';
      show($('browse-more'), false);
      return;
    }
    list.setAttribute('aria-busy', 'true');
    $('browse-more').disabled = true;
    let res;
    try {
      res = await this.ctx.api.browseChannels(q, more ? b.next : '', PAGE);
    } catch (e) {
      if (seq !== b.seq) return;
      setError('browse-error', e.message);
      this.ctx.onError(e);
      return;
    } finally {
      if (seq === b.seq) {
        list.removeAttribute('aria-busy');
        $('browse-more').disabled = false;
      }
    }
    if (seq !== b.seq) return;
    const chans = (res && res.channels) || [];
    b.next = (res && res.next) || '';
    list.append(...chans.map((c) => this.browseItem(c)));
    show($('browse-more'), !!b.next);
    let status = '';
    if (!list.children.length) status = q ? `No public channel starts with “${q}”.` : 'No one has created a public channel yet.';
    $('browse-status').textContent = status;
  }

  browseItem(c) {
    const member = !!c.member || !!(this.ctx.channel(c.name) && this.ctx.channel(c.name).member);
    const n = Number(c.members) || 0;
    const btn = h('button', {
      type: 'button',
      class: `btn btn-sm ${member ? 'btn-ghost' : 'btn-primary'}`,
      'aria-label': `${member ? 'Open' : 'Join'} #${c.name}`,
      on: { click: (ev) => (member ? this.openJoined(c.name) : this.join(c.name, ev.currentTarget)) },
    }, member ? 'Open' : 'Join');
    return h('li', { class: 'item', dataset: { channel: c.name } },
      h('span', { class: 'item-icon', 'aria-hidden': 'true', text: '#' }),
      h('div', { class: 'item-main' },
        h('div', { class: 'item-name', text: c.name }),
        h('div', { class: 'item-meta', text: `${n} ${n === 1 ? 'member' : 'members'}${member ? ' · you are in it' : ''}` })),
      btn);
  }

  openJoined(name) {
    $('browse-dialog').close();
    this.ctx.joined(name, {});
  }

  async join(name, btn) {
    setError('browse-error', '');
    if (btn) btn.disabled = true;
    this.ctx.joining(name);
    try {
      await this.ctx.api.joinChannel(name);
    } catch (e) {
      if (btn) btn.disabled = false;
      setError('browse-error', e.message);
      this.ctx.onError(e);
      return false;
    }
    if ($('browse-dialog').open) $('browse-dialog').close();
    this.ctx.joined(name, {});
    return true;
  }

  // ------------------------------------------------------------ create

  openCreate(name = '') {
    setError('create-error', '');
    $('create-name').value = name;
    $('create-private').checked = false;
    if (!$('create-dialog').open) $('create-dialog').showModal();
    $('create-name').focus();
  }

  async onCreate(ev) {
    ev.preventDefault();
    setError('create-error', '');
    const name = $('create-name').value.trim().replace(/^#/, '').toLowerCase();
    const isPrivate = $('create-private').checked;
    if (!name) {
      setError('create-error', 'Give the channel a name.');
      $('create-name').focus();
      return;
    }
    const btn = $('create-form').querySelector('button[type=submit]');
    btn.disabled = true;
    let res;
    this.ctx.joining(name);
    try {
      res = await this.ctx.api.createChannel(name, isPrivate);
    } catch (e) {
      setError('create-error', e.message);
      this.ctx.onError(e);
      $('create-name').focus();
      return;
    } finally {
      btn.disabled = false;
    }
    $('create-dialog').close();
    this.ctx.joined((res && res.name) || name, { private: res ? !!res.private : isPrivate, admin: true });
  }

  // ------------------------------------------------------------ members

  openMembers(channel) {
    const ch = this.ctx.channel(channel);
    if (!ch) return;
    this.members.channel = channel;
    setError('members-error', '');
    $('members-title').textContent = `Members of #${channel}`;
    $('members-sub').textContent = ch.private
      ? 'A private channel: only its members can see it. Anyone in it can add people.'
      : 'A public channel: anyone can find and join it.';
    $('invite-name').value = '';
    if (!$('members-dialog').open) $('members-dialog').showModal();
    $('invite-name').focus();
    this.loadMembers(false);
  }

  async loadMembers(more) {
    const m = this.members;
    const channel = m.channel;
    const seq = ++m.seq;
    const list = $('member-list');
    if (!more) {
      m.next = '';
      list.replaceChildren();
    }
    list.setAttribute('aria-busy', 'true');
    let res;
    try {
      res = await this.ctx.api.members(channel, more ? m.next : '', PAGE);
    } catch (e) {
      if (seq !== m.seq) return;
      list.removeAttribute('aria-busy');
      setError('members-error', e.message);
      this.ctx.onError(e);
      return;
    }
    if (seq !== m.seq) return;
    list.removeAttribute('aria-busy');
    const me = this.ctx.me();
    const people = (res && res.members) || [];
    const mine = people.find((p) => p.username === me);
    if (mine) this.ctx.setAdmin(channel, !!mine.admin);
    const ch = this.ctx.channel(channel);
    const admin = !!(ch && ch.admin) || this.ctx.roomAdmin();
    m.next = (res && res.next) || '';
    list.append(...people.map((p) => this.memberItem(channel, p, admin, me)));
    show($('members-more'), !!m.next);
  }

  memberItem(channel, p, admin, me) {
    const self = p.username === me;
    const parts = [p.online ? 'online' : 'offline'];
    const li = h('li', { class: 'item', dataset: { user: p.username } },
      avatar(p.username, 'avatar avatar-sm'),
      h('div', { class: 'item-main' },
        h('div', { class: 'item-name' },
          h('span', { text: self ? `${p.username} (you)` : p.username }),
          p.admin ? h('span', { class: 'pill', text: 'admin' }) : null),
        h('div', { class: 'item-meta' }, h('span', { class: `presence${p.online ? ' on' : ''}`, 'aria-hidden': 'true' }), parts.join(' · '))));
    if (admin && !self && !p.admin) {
      li.append(h('button', {
        type: 'button',
        class: 'btn btn-ghost btn-sm make-admin',
        'aria-label': `Make ${p.username} an admin of #${channel}`,
        on: { click: (ev) => this.memberAction(ev.currentTarget, () => this.ctx.api.addMember(channel, p.username, true)) },
      }, 'Make admin'));
    }
    if (admin && !self) {
      li.append(h('button', {
        type: 'button',
        class: 'btn btn-ghost btn-sm remove',
        'aria-label': `Remove ${p.username} from #${channel}`,
        on: { click: (ev) => this.memberAction(ev.currentTarget, () => this.ctx.api.removeMember(channel, p.username)) },
      }, 'Remove'));
    }
    return li;
  }

  async onInvite(ev) {
    ev.preventDefault();
    setError('members-error', '');
    const channel = this.members.channel;
    const username = $('invite-name').value.trim().replace(/^@/, '').toLowerCase();
    if (!username) {
      $('invite-name').focus();
      return;
    }
    const btn = $('invite-form').querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await this.ctx.api.addMember(channel, username);
    } catch (e) {
      setError('members-error', e.message);
      this.ctx.onError(e);
      return;
    } finally {
      btn.disabled = false;
    }
    $('invite-name').value = '';
    $('invite-name').focus();
    this.loadMembers(false);
  }

  // memberAction runs the request of a member's button (Make admin, Remove),
  // then lists the members again as the server has them.
  async memberAction(btn, request) {
    setError('members-error', '');
    btn.disabled = true;
    try {
      await request();
    } catch (e) {
      btn.disabled = false;
      setError('members-error', e.message);
      this.ctx.onError(e);
      return;
    }
    $('invite-name').focus(); // the button that had focus goes with its row
    this.loadMembers(false);
  }

  async onLeave() {
    setError('members-error', '');
    const channel = this.members.channel;
    const btn = $('leave-channel');
    btn.disabled = true;
    this.ctx.leaving(channel);
    try {
      await this.ctx.api.leaveChannel(channel);
    } catch (e) {
      this.ctx.leaving('');
      setError('members-error', e.message);
      this.ctx.onError(e);
      return;
    } finally {
      btn.disabled = false;
    }
    $('members-dialog').close();
    this.ctx.left(channel);
  }
}

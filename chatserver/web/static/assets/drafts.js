// Drafts: what someone typed and did not send, one per conversation, kept
// in localStorage so that a reload (or a crash) loses nothing. Keys name the
// user and the channel, so two accounts on one browser never see each
// other's drafts and a draft never moves to another conversation.

const PREFIX = 'hubbub.draft:';

const key = (user, channel) => `${PREFIX}${user}:${channel}`;

export function loadDraft(user, channel) {
  if (!user || !channel) return '';
  try {
    return localStorage.getItem(key(user, channel)) || '';
  } catch {
    return ''; // storage disabled: drafts live as long as the page
  }
}

export function saveDraft(user, channel, text) {
  if (!user || !channel) return;
  try {
    if (text.trim()) localStorage.setItem(key(user, channel), text);
    else localStorage.removeItem(key(user, channel));
  } catch {
    // Storage full or disabled: the draft stays in the box until a reload.
  }
}

// clearDrafts forgets every draft of user (logging out on a shared computer).
export function clearDrafts(user) {
  if (!user) return;
  try {
    const mine = `${PREFIX}${user}:`;
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const k = localStorage.key(i);
      if (k && k.startsWith(mine)) localStorage.removeItem(k);
    }
  } catch {
    // nothing to clear
  }
}

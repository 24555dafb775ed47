// Package keys names every Redis key Hubbub uses. All keys of one room share
// the prefix "hb:{<namespace>/<room>}:": the braces are a Redis Cluster hash
// tag, so one room's keys live in one slot (multi-key scripts work), and two
// rooms sharing a Redis never see each other's keys.
//
// User-controlled parts (usernames, channel names) are validated before they
// get here and never contain the separator ':' or braces, so no input can
// name another room's or another kind of key.
package keys

import "strings"

// Prefix is the room's key prefix.
func Prefix(room string) string { return "hb:{" + room + "}:" }

// Stream is the durable message log of one channel (an XADD stream).
func Stream(room, channel string) string { return Prefix(room) + "ch:" + channel }

// MessageState is a hash of one channel's changed messages: id -> their
// state as JSON (edited text and time, the ids of the edits, reactions).
// A message nobody changed has no field.
func MessageState(room, channel string) string { return Prefix(room) + "mstate:" + channel }

// MessagesChanged is a sorted set of the ids in MessageState, scored by the
// id's milliseconds, so the state of trimmed messages can be let go.
func MessagesChanged(room, channel string) string { return Prefix(room) + "mchanged:" + channel }

// MessagesDeleted is a sorted set of one channel's deleted message ids,
// scored by the id's milliseconds: the stream no longer holds them, and
// history shows each as deleted where it was.
func MessagesDeleted(room, channel string) string { return Prefix(room) + "mdeleted:" + channel }

// ChangeEntries is a sorted set of the ids of one channel's change entries
// (edits, deletes, reactions) in its stream, all scored 0, each id as 20
// digits, "-", 20 digits: the stream's messages from its start are its
// length less the changes from its first entry on (ZLEXCOUNT), where
// counting them took a read of every entry.
func ChangeEntries(room, channel string) string { return Prefix(room) + "changes:" + channel }

// Threads is a sorted set of one channel's thread replies, all scored 0:
// "<root>|<reply>", each id as 20 digits, "-", 20 digits, so that ZRANGE
// BYLEX pages a thread's replies in order.
func Threads(room, channel string) string { return Prefix(room) + "threads:" + channel }

// Topic is the pub/sub channel that announces new messages of one channel.
func Topic(room, channel string) string { return Prefix(room) + "pub:" + channel }

// Events is the room-wide pub/sub channel for ephemeral events (presence,
// typing, read markers, session revocations).
func Events(room string) string { return Prefix(room) + "events" }

// User is a hash holding one user's account.
func User(room, username string) string { return Prefix(room) + "user:" + username }

// Session is a hash holding one session, keyed by the SHA-256 of its token (hex).
func Session(room, tokenHash string) string { return Prefix(room) + "sess:" + tokenHash }

// UserSessions is a set of one user's session token hashes.
func UserSessions(room, username string) string { return Prefix(room) + "usess:" + username }

// Throttle counts recent failed logins for one key (a username or an IP).
func Throttle(room, what string) string { return Prefix(room) + "throttle:" + what }

// Dedup maps (user, clientId) to the id of the message it committed.
func Dedup(room, username, clientID string) string {
	return Prefix(room) + "dedup:" + username + ":" + clientID
}

// ReadMarkers is a hash channel -> last read id for one user.
func ReadMarkers(room, username string) string { return Prefix(room) + "read:" + username }

// DMs is a set of one user's direct-message channel names.
func DMs(room, username string) string { return Prefix(room) + "dms:" + username }

// Users is the index of accounts: a sorted set of usernames, all scored 0,
// so ZRANGE BYLEX pages the people directory by name. Registration adds to
// it in the script that creates the account.
func Users(room string) string { return Prefix(room) + "users" }

// UsersIndexed marks that Users lists every account, those created before
// the index existed included (redisbackend backfills it once per room).
func UsersIndexed(room string) string { return Prefix(room) + "users:indexed" }

// Channel is a hash holding a created channel's meta: p (1 private, 0
// public), c (creator), t (created, Unix ms). Its existence is the
// channel's: the name is taken.
func Channel(room, name string) string { return Prefix(room) + "chan:" + name }

// ChannelMembers is a sorted set of a created channel's members, all scored
// 0 (ZRANGE BYLEX pages them by name).
func ChannelMembers(room, name string) string { return Prefix(room) + "chanmem:" + name }

// ChannelAdmins is a set of a created channel's admins (each also a member).
func ChannelAdmins(room, name string) string { return Prefix(room) + "chanadm:" + name }

// PublicChannels is a sorted set of the names of public created channels,
// all scored 0, for browsing by name. Private channels are never in it.
func PublicChannels(room string) string { return Prefix(room) + "chans:public" }

// UserChannels is a hash of the created channels one user is a member of:
// channel -> flags (1 private, 2 admin, added), so the user's whole list,
// with whether they run each channel, is one read. Its size is what the
// per-user limit counts.
func UserChannels(room, username string) string { return Prefix(room) + "uchans:" + username }

// Presence is a sorted set: member "<pod>/<user>", score the expiry time in
// Unix milliseconds. A user is online while any member for them has not
// expired; a crashed pod's members simply expire. The operator counts
// distinct users here for ChatRoom status.onlineUsers.
func Presence(room string) string { return Prefix(room) + "presence" }

// PresencePods is a sorted set of the pods with presence marks: member the
// pod, score its newest mark's expiry. Asking whether given people are
// online then costs a lookup per person per pod, not a pass over everyone
// online.
func PresencePods(room string) string { return Prefix(room) + "presence:pods" }

// PresencePodsNew exists (with a TTL) while a room's PresencePods set is
// new: servers from before it may still mark people online without being
// in it, so presence also scans the whole set meanwhile.
func PresencePodsNew(room string) string { return Prefix(room) + "presence:pods:new" }

// PresenceMember is the Presence member for one user on one pod.
func PresenceMember(pod, username string) string { return pod + "/" + username }

// PresenceUser returns the username of a Presence member.
func PresenceUser(member string) string {
	if i := strings.LastIndexByte(member, '/'); i >= 0 {
		return member[i+1:]
	}
	return member
}

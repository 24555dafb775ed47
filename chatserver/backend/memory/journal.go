package memory

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hubbub-chat/hubbub/chatserver/auth"
	"github.com/hubbub-chat/hubbub/chatserver/chat"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// The journal is how a memory store outlives its process without a second
// implementation of the contracts: the store stays the one working set, and
// every change it makes to durable state is also handed, as records, to a
// Journal (chatserver/backend/embedded keeps them in a bbolt file). Restore
// builds a store back from the records. What is not journaled is ephemeral
// by design: presence, login throttling windows and the feed.
//
// Changes are committed to the journal before they take effect in memory,
// with the store's lock held: a call that succeeds has its change on disk,
// and one whose commit fails changes nothing (it returns an error wrapping
// chat.ErrUnavailable), so the file and the memory never disagree.

// Record is one durable record. Keys are unique within a bucket; a nil
// Value deletes the key.
type Record struct {
	Bucket string
	Key    string
	Value  []byte
}

// Journal makes records durable.
type Journal interface {
	// Commit writes records, all or none, in order, and returns only once
	// they are durable.
	Commit(records []Record) error
}

// Buckets of the journal, one per kind of record.
const (
	bucketUsers    = "users"    // username -> userRecord
	bucketSessions = "sessions" // token hash -> sessionRecord
	bucketMessages = "messages" // msgKey(channel, id) -> protocol.Message
	bucketDedup    = "dedup"    // dedup key -> dedupRecord
	bucketReads    = "reads"    // user \x00 channel -> id
	bucketDMs      = "dms"      // DM channel -> {} (its members are in its name)
	bucketChannels = "channels" // created channel -> chat.ChannelMeta
	bucketMembers  = "members"  // channel \x00 user -> admin
)

// Buckets lists the buckets records may name, so a journal can create them
// up front and read them all back for Restore.
func Buckets() []string {
	return []string{bucketUsers, bucketSessions, bucketMessages, bucketDedup, bucketReads, bucketDMs, bucketChannels, bucketMembers}
}

type userRecord struct {
	Username     string    `json:"username"`
	PasswordHash []byte    `json:"passwordHash"`
	CreatedAt    time.Time `json:"createdAt"`
}

// sessionRecord spells out every field: auth.Session hides TokenHash and
// Username from JSON, as it is also the API's view of a session.
type sessionRecord struct {
	ID         string    `json:"id"`
	TokenHash  string    `json:"tokenHash"`
	Username   string    `json:"username"`
	CreatedAt  time.Time `json:"createdAt"`
	LastSeenAt time.Time `json:"lastSeenAt"`
	UserAgent  string    `json:"userAgent"`
	IP         string    `json:"ip"`
	Expires    time.Time `json:"expires"`
}

type dedupRecord struct {
	Msg     protocol.Message `json:"msg"`
	Expires time.Time        `json:"expires"`
}

// pairKey joins two names: neither usernames nor channel names contain NUL,
// so the key is unambiguous and sorts by its first part.
func pairKey(a, b string) string { return a + "\x00" + b }

func splitPair(k string) (a, b string, ok bool) { return strings.Cut(k, "\x00") }

// msgKey orders a channel's messages by id in the journal (bbolt sorts keys
// bytewise; "<ms>-<seq>" does not sort as text).
func msgKey(channel string, id protocol.ID) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], id.Ms)
	binary.BigEndian.PutUint64(b[8:], id.Seq)
	return channel + "\x00" + string(b[:])
}

// batch gathers the records of one change. Without a journal it records
// nothing, so the memory-only store pays no encoding.
type batch struct {
	st   *store
	recs []Record
	err  error
}

func (st *store) batch() *batch { return &batch{st: st} }

func (b *batch) put(bucket, key string, v any) {
	if b.st.journal == nil || b.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		b.err = fmt.Errorf("encoding %s record %q: %w", bucket, key, err)
		return
	}
	b.recs = append(b.recs, Record{Bucket: bucket, Key: key, Value: data})
}

func (b *batch) del(bucket, key string) {
	if b.st.journal == nil {
		return
	}
	b.recs = append(b.recs, Record{Bucket: bucket, Key: key})
}

// commit makes the batch durable; the caller applies the change in memory
// only when it returns nil.
func (b *batch) commit() error {
	if b.err != nil {
		return b.err
	}
	if b.st.journal == nil || len(b.recs) == 0 {
		return nil
	}
	if err := b.st.journal.Commit(b.recs); err != nil {
		return fmt.Errorf("%w: journal: %w", chat.ErrUnavailable, err)
	}
	return nil
}

func sessionToRecord(e sessionEntry) sessionRecord {
	s := e.s
	return sessionRecord{
		ID: s.ID, TokenHash: s.TokenHash, Username: s.Username,
		CreatedAt: s.CreatedAt, LastSeenAt: s.LastSeenAt,
		UserAgent: s.UserAgent, IP: s.IP, Expires: e.expires,
	}
}

// Restore returns a backend on a store rebuilt from the records load hands
// to add (everything j holds, in any order), which journals every later
// change to j. now is the store's clock (nil: time.Now). Sessions and dedup
// keys that expired meanwhile are left out, and deleted from j.
func Restore(j Journal, now func() time.Time, load func(add func(Record) error) error) (*Backend, error) {
	if now == nil {
		now = time.Now
	}
	st := newStore(now)
	t := now()
	var expired []Record
	err := load(func(r Record) error {
		if err := st.restoreRecord(r, t); errors.Is(err, errExpired) {
			expired = append(expired, Record{Bucket: r.Bucket, Key: r.Key})
		} else if err != nil {
			return fmt.Errorf("restoring %s record %q: %w", r.Bucket, r.Key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, cl := range st.channels {
		// Keys keep a channel's messages in id order; sorting only guards
		// against a journal that returns records in another order.
		slices.SortStableFunc(cl.msgs, func(a, b protocol.Message) int { return protocol.CompareIDs(a.ID, b.ID) })
		if n := len(cl.msgs); n > 0 {
			cl.last = protocol.IDOrZero(cl.msgs[n-1].ID)
		}
	}
	if len(expired) > 0 {
		if err := j.Commit(expired); err != nil {
			return nil, fmt.Errorf("deleting expired records: %w", err)
		}
	}
	st.journal = j
	return newBackend(st), nil
}

var errExpired = errors.New("expired")

func (st *store) restoreRecord(r Record, now time.Time) error {
	switch r.Bucket {
	case bucketUsers:
		var u userRecord
		if err := json.Unmarshal(r.Value, &u); err != nil {
			return err
		}
		st.users[u.Username] = auth.User{Username: u.Username, PasswordHash: u.PasswordHash, CreatedAt: u.CreatedAt}
	case bucketSessions:
		var s sessionRecord
		if err := json.Unmarshal(r.Value, &s); err != nil {
			return err
		}
		if !now.Before(s.Expires) {
			return errExpired
		}
		st.sessions[s.TokenHash] = sessionEntry{
			s: auth.Session{
				ID: s.ID, TokenHash: s.TokenHash, Username: s.Username,
				CreatedAt: s.CreatedAt, LastSeenAt: s.LastSeenAt,
				UserAgent: s.UserAgent, IP: s.IP,
			},
			expires: s.Expires,
			stored:  s.Expires,
		}
	case bucketMessages:
		var m protocol.Message
		if err := json.Unmarshal(r.Value, &m); err != nil {
			return err
		}
		cl := st.channels[m.Channel]
		if cl == nil {
			cl = &channelLog{}
			st.channels[m.Channel] = cl
		}
		cl.msgs = append(cl.msgs, m)
	case bucketDedup:
		var d dedupRecord
		if err := json.Unmarshal(r.Value, &d); err != nil {
			return err
		}
		if !now.Before(d.Expires) {
			return errExpired
		}
		st.dedup[r.Key] = dedupEntry{msg: d.Msg, expires: d.Expires}
	case bucketReads:
		user, channel, ok := splitPair(r.Key)
		if !ok {
			return errors.New("malformed key")
		}
		var id string
		if err := json.Unmarshal(r.Value, &id); err != nil {
			return err
		}
		if st.reads[user] == nil {
			st.reads[user] = map[string]string{}
		}
		st.reads[user][channel] = id
	case bucketDMs:
		if _, _, ok := protocol.SplitDM(r.Key); !ok {
			return errors.New("not a DM channel")
		}
		st.addDMLocked(r.Key)
	case bucketChannels:
		var meta chat.ChannelMeta
		if err := json.Unmarshal(r.Value, &meta); err != nil {
			return err
		}
		st.catalog[meta.Name] = meta
	case bucketMembers:
		channel, user, ok := splitPair(r.Key)
		if !ok {
			return errors.New("malformed key")
		}
		var admin bool
		if err := json.Unmarshal(r.Value, &admin); err != nil {
			return err
		}
		st.setMemberLocked(channel, user, admin)
	default:
		return errors.New("unknown bucket")
	}
	return nil
}

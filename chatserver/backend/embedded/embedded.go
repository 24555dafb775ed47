// Package embedded is the single-process server's durable store (`make run`,
// --data-dir): the memory backend, kept across restarts in one bbolt file,
// <dir>/hubbub.db.
//
// It is not another implementation of the storage contracts. The memory
// store stays the working set and the only implementation; this package is
// its journal (memory.Journal). Every change the store makes to durable
// state is written to the file in one bbolt transaction, committed (and
// fsynced) before the call returns, with the store's lock held: an acked
// message, a created account or session, is on disk, and a change whose
// commit fails is not made at all (the caller gets chat.ErrUnavailable).
// Open reads the file back into a fresh memory store.
//
// Durable: accounts, login sessions (with their expiry; sessions and
// message dedup keys that expired while the server was down are dropped at
// Open), message history, dedup keys, read markers, DMs, created channels
// and their members. Not durable, by design: presence (who is online is
// rebuilt as people reconnect), login throttling windows (a minute long)
// and the feed (a single process has nothing to fan out to after a
// restart: clients resume from their last id).
//
// History is trimmed as in memory (--history-max, in batches): the
// messages memory drops are deleted from the file in the same transaction
// as the append that drops them, so the file holds what memory holds.
// bbolt reuses the freed pages; the file does not shrink, but stops growing
// once history is at its limit. A channel that gets no new message keeps
// the history it had if --history-max is lowered, until its next message.
//
// Everything is held in memory as well as on disk, and every change waits
// for its fsync with the store's lock held, so changes are as many per
// second as the disk syncs: this is the store of one process for a small
// room, not a database for a large one (use Redis for that).
package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/hubbub-chat/hubbub/chatserver/backend/memory"
)

// FileName is the data file in the data dir.
const FileName = "hubbub.db"

// lockTimeout bounds the wait for the file lock: another server holding it
// is not going to let go soon, so fail fast with a clear error.
const lockTimeout = time.Second

// The meta bucket marks a file as Hubbub's, with the version of its layout.
var (
	metaBucket = []byte("hubbub")
	formatKey  = []byte("format")
)

const format = "1"

// Backend is a memory backend whose store is journaled to a bbolt file.
// Its Peers share the store and the file; Close closes the file.
type Backend struct {
	*memory.Backend
	db *bolt.DB
}

// Open opens (creating if need be) the data dir and its data file, and
// loads what it holds.
func Open(dir string) (*Backend, error) {
	return open(dir, time.Now)
}

func open(dir string, now func() time.Time) (_ *Backend, err error) {
	if dir == "" {
		return nil, errors.New("embedded store: no data dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("data dir %s is in use by another chatserver (%s is locked): %w", dir, path, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%s is not a Hubbub data file, or is damaged (move it away to start afresh): %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	if err := db.Update(prepare); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	j := journal{db: db}
	b, err := memory.Restore(j, now, j.load)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", path, err)
	}
	return &Backend{Backend: b, db: db}, nil
}

// prepare marks a new file as Hubbub's and creates the buckets the memory
// store journals to; it refuses a bbolt file that is someone else's or of
// another layout.
func prepare(tx *bolt.Tx) error {
	if meta := tx.Bucket(metaBucket); meta != nil {
		if v := string(meta.Get(formatKey)); v != format {
			return fmt.Errorf("data file format %q, this chatserver reads %q", v, format)
		}
	} else {
		empty := true
		if err := tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil }); err != nil {
			return err
		}
		if !empty {
			return errors.New("a bbolt file, but not a Hubbub data file")
		}
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return err
		}
		if err := meta.Put(formatKey, []byte(format)); err != nil {
			return err
		}
	}
	for _, name := range memory.Buckets() {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	return nil
}

// Close detaches this handle and closes the data file; Peers must be
// closed first (their changes would fail: the file is gone).
func (b *Backend) Close() error {
	return errors.Join(b.Backend.Close(), b.db.Close())
}

// Path is the data file's path.
func (b *Backend) Path() string { return b.db.Path() }

// journal is memory.Journal on a bbolt file.
type journal struct{ db *bolt.DB }

// Commit implements memory.Journal. bbolt's Update commits and fsyncs
// before it returns.
func (j journal) Commit(records []memory.Record) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		for _, r := range records {
			bk := tx.Bucket([]byte(r.Bucket))
			if bk == nil {
				return fmt.Errorf("no bucket %q", r.Bucket)
			}
			var err error
			if r.Value == nil {
				err = bk.Delete([]byte(r.Key))
			} else {
				err = bk.Put([]byte(r.Key), r.Value)
			}
			if err != nil {
				return fmt.Errorf("writing %s record %q: %w", r.Bucket, r.Key, err)
			}
		}
		return nil
	})
}

// load hands every record of the file to add. bbolt's keys and values are
// only valid in the transaction, so the records carry copies.
func (j journal) load(add func(memory.Record) error) error {
	return j.db.View(func(tx *bolt.Tx) error {
		for _, name := range memory.Buckets() {
			bk := tx.Bucket([]byte(name))
			if bk == nil {
				continue
			}
			err := bk.ForEach(func(k, v []byte) error {
				return add(memory.Record{Bucket: name, Key: string(k), Value: append([]byte(nil), v...)})
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

package embedded

import "time"

// OpenAt is Open with the store's clock set: restart tests move time on
// between two lives of a data dir rather than wait for it.
func OpenAt(dir string, now func() time.Time) (*Backend, error) { return open(dir, now) }

// CloseFile closes the data file under a live store, so that every commit fails.
func (b *Backend) CloseFile() error { return b.db.Close() }

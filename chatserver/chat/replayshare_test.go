package chat

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplayShare: sockets registered before a read began share it (one
// storage read, its answer or its error); a socket registered after it
// began must read again, or it could miss what was fanned out before it
// could receive it.
func TestReplayShare(t *testing.T) {
	tests := []struct {
		name      string
		regs      uint32   // the hub's count when the first read begins
		joiners   []uint32 // registration counts of sockets resuming meanwhile
		wantReads int
		err       error
	}{
		{"registered before: one read for all", 10, []uint32{3, 9, 10}, 1, nil},
		{"registered after: a read of its own", 10, []uint32{11}, 2, nil},
		{"an error is shared too", 10, []uint32{5}, 1, errors.New("storage down")},
		{"counts that wrapped around", 2, []uint32{^uint32(0)}, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r replayShare
			var reads atomic.Int32
			started, release := make(chan struct{}), make(chan struct{})
			read := func(context.Context) ([]outMsg, error) {
				if reads.Add(1) == 1 {
					close(started)
					<-release
				}
				return []outMsg{{frame: []byte("m")}}, tt.err
			}
			regs := tt.regs
			key := replayKey{"general", "5-0"}
			var wg sync.WaitGroup
			results := make(chan error, len(tt.joiners)+1)
			wg.Go(func() {
				_, err := r.after(t.Context(), read, key, 1, func() uint32 { return regs })
				results <- err
			})
			<-started // the joiners come once the first read has begun
			for _, reg := range tt.joiners {
				wg.Go(func() {
					msgs, err := r.after(t.Context(), read, key, reg, func() uint32 { return regs + 5 })
					if err == nil && len(msgs) != 1 {
						t.Errorf("socket %d got %d messages", reg, len(msgs))
					}
					results <- err
				})
			}
			// Whether they come before or after it ends, they share it
			// (within replayShareFor) or not by their registration alone.
			close(release)
			wg.Wait()
			close(results)
			for err := range results {
				if !errors.Is(err, tt.err) {
					t.Errorf("err %v, want %v", err, tt.err)
				}
			}
			if got := int(reads.Load()); got != tt.wantReads {
				t.Errorf("%d storage reads, want %d", got, tt.wantReads)
			}
		})
	}
}

// TestReplayShareGathers: in a storm (the same read asked for again within
// replayShareFor), a read gathers before it begins, and a socket that
// registered after it was asked for, but before it began, takes it.
func TestReplayShareGathers(t *testing.T) {
	end := make(chan time.Time)
	r := replayShare{gathered: func() <-chan time.Time { return end }}
	var reads atomic.Int32
	read := func(context.Context) ([]outMsg, error) {
		reads.Add(1)
		return nil, nil
	}
	key := replayKey{"general", "5-0"}
	count := uint32(1)
	regs := func() uint32 { return count }
	// A quiet resume: read at once.
	if _, err := r.after(t.Context(), read, key, 1, regs); err != nil {
		t.Fatal(err)
	}
	// Sockets 2 and 3 registered after it: socket 2's read gathers, and 3,
	// registered after 2 asked, takes it while it gathers.
	count = 2
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = r.after(t.Context(), read, key, 2, regs) })
	waitFor := func(what string, cond func(rd *replayRead) bool) {
		for {
			r.mu.Lock()
			rd := r.reads[key]
			ok := rd != nil && rd.regs == 2 && cond(rd)
			r.mu.Unlock()
			if ok {
				return
			}
			runtime.Gosched()
		}
	}
	waitFor("socket 2's read to gather", func(rd *replayRead) bool { return rd.gathering })
	count = 3
	joined := make(chan error)
	go func() { _, err := r.after(t.Context(), read, key, 3, func() uint32 { return 3 }); joined <- err }()
	waitFor("socket 3 to take it", func(rd *replayRead) bool { return rd.takers == 1 })
	count = 2 // had it begun now, socket 3 could not take it
	end <- time.Now()
	wg.Wait()
	if err := <-joined; err != nil {
		t.Fatal(err)
	}
	if got := reads.Load(); got != 2 {
		t.Errorf("%d storage reads, want 2 (the quiet one, and one for the storm)", got)
	}
}

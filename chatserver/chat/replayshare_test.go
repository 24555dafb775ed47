package chat

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
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

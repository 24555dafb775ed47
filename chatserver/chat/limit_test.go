package chat

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	const sec = int64(time.Second)
	tests := []struct {
		name  string
		rate  float64
		burst float64
		takes []int64 // clock of each take, in ns from the start
		want  []bool
	}{
		{name: "burst then refused", rate: 1, burst: 3, takes: []int64{0, 0, 0, 0}, want: []bool{true, true, true, false}},
		{name: "refills at the rate", rate: 2, burst: 1, takes: []int64{0, 0, sec / 4, sec / 2, sec / 2}, want: []bool{true, false, false, true, false}},
		{name: "never above the burst", rate: 10, burst: 2, takes: []int64{0, 100 * sec, 100 * sec, 100 * sec}, want: []bool{true, true, true, false}},
		{name: "refused takes spend nothing", rate: 1, burst: 1, takes: []int64{0, sec / 2, sec / 2, sec}, want: []bool{true, false, false, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBucket(0, tc.burst)
			for i, at := range tc.takes {
				if got := b.take(at, tc.rate, tc.burst); got != tc.want[i] {
					t.Fatalf("take %d at %v: %t, want %t", i, time.Duration(at), got, tc.want[i])
				}
			}
		})
	}
}

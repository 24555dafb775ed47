package loadtest

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies are kept in a log-linear histogram of microseconds: values below
// subBuckets are exact, above that each power of two is split into
// subBuckets equal parts (about 3% relative error). Workers record with
// atomic adds from many reader goroutines; histograms from several workers
// merge by adding counts.
const (
	subBits    = 5
	subBuckets = 1 << subBits
	maxExp     = 40 // 2^40 µs is about 12 days: nothing real is larger
	numBuckets = (maxExp - subBits + 1) * subBuckets
)

// hist is safe for concurrent record.
type hist struct {
	counts [numBuckets]atomic.Uint64
}

func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	exp := bits.Len64(us) - 1 // us in [2^exp, 2^(exp+1))
	if exp > maxExp {
		return numBuckets - 1
	}
	shift := exp - subBits
	sub := int(us>>uint(shift)) - subBuckets // 0..subBuckets-1
	return (shift+1)*subBuckets + sub
}

// bucketUpper is the largest value counted in bucket i.
func bucketUpper(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	sub := uint64(i%subBuckets) + subBuckets
	return (sub+1)<<uint(shift) - 1
}

func (h *hist) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[bucketOf(uint64(us))].Add(1)
}

// snapshot returns the non-zero buckets (index → count), small enough to
// send as JSON.
func (h *hist) snapshot() map[int]uint64 {
	out := map[int]uint64{}
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			out[i] = n
		}
	}
	return out
}

// merged is a histogram merged from snapshots.
type merged map[int]uint64

func (m merged) add(s map[int]uint64) {
	for i, n := range s {
		m[i] += n
	}
}

func (m merged) total() uint64 {
	var t uint64
	for _, n := range m {
		t += n
	}
	return t
}

// quantile returns the upper bound of the bucket holding quantile q (0..1).
func (m merged) quantile(q float64) time.Duration {
	total := m.total()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(1, min(rank, total))
	var seen uint64
	for i := 0; i < numBuckets; i++ {
		seen += m[i]
		if seen >= rank {
			return time.Duration(bucketUpper(i)) * time.Microsecond
		}
	}
	return 0
}

func (m merged) max() time.Duration {
	top := -1
	for i := range m {
		top = max(top, i)
	}
	if top < 0 {
		return 0
	}
	return time.Duration(bucketUpper(top)) * time.Microsecond
}

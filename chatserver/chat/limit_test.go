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

// TestFrameGate: frames past the budget are refused, and refusals past
// theirs (floodLimit, refilled at the frame rate) mean flooding, once; after
// that nothing is served or answered. Sending over twice the rate is
// flooding however many frames still pass; a little over the rate is not.
func TestFrameGate(t *testing.T) {
	b := frameBudget{rate: 20, burst: 60}
	tests := []struct {
		name  string
		every time.Duration // between frames
		n     int
		want  map[verdict]int
		flood int // the frame (1-based) that floods; 0: none does
	}{
		{name: "the burst at once passes", every: 0, n: 60, want: map[verdict]int{admitted: 60}},
		{name: "one past the burst is refused", every: 0, n: 61, want: map[verdict]int{admitted: 60, refused: 1}},
		{name: "a flood at once: the burst, floodLimit refusals, then closed and ignored", every: 0, n: 200,
			want: map[verdict]int{admitted: 60, refused: 100, flooding: 1, ignored: 39}, flood: 161},
		// 1,000 frames/s: one frame in 50 passes, so no run of 100
		// refusals in a row ever came, and the old rule never closed it.
		{name: "a steady 1,000 frames/s is closed though frames still pass", every: time.Millisecond, n: 400,
			want: map[verdict]int{admitted: 63, refused: 102, flooding: 1, ignored: 234}, flood: 166},
		// 30 frames/s: the burst, then 20 pass and 10 are refused a
		// second, and refusals refill twice as fast as they come.
		{name: "30 frames/s for a minute is refused in part, never closed", every: time.Second / 30, n: 1800,
			want: map[verdict]int{admitted: 1259, refused: 541}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newFrameGate(0, b)
			got := map[verdict]int{}
			flood := 0
			for i := range tt.n {
				v := g.admit(int64(i)*int64(tt.every), b)
				got[v]++
				if v == flooding {
					flood = i + 1
				}
			}
			if flood != tt.flood {
				t.Errorf("frame %d flooded, want %d", flood, tt.flood)
			}
			for v, n := range tt.want {
				if got[v] != n {
					t.Errorf("verdicts %v, want %v", got, tt.want)
					break
				}
			}
		})
	}
}

// BenchmarkFrameGate is the per-frame cost of the frame gate, every frame
// admitted (1 µs apart) or, past the budget, refused; BenchmarkBucket the
// single bucket it replaced.
func BenchmarkFrameGate(b *testing.B) {
	budget := frameBudget{rate: 20, burst: 60}
	for _, tc := range []struct {
		name string
		step int64
	}{{"admitted", int64(time.Second)}, {"refused", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			g := newFrameGate(0, budget)
			g.frames = 0
			now := int64(0)
			for b.Loop() {
				now += tc.step
				if g.admit(now, budget) == flooding {
					g = newFrameGate(now, budget) // keep measuring refusals
					g.frames = 0
				}
			}
		})
	}
}

func BenchmarkBucket(b *testing.B) {
	bk := newBucket(0, 60)
	now := int64(0)
	for b.Loop() {
		now += int64(time.Second)
		bk.take(now, 20, 60)
	}
}

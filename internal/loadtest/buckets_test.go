package loadtest

import (
	"math"
	"testing"
)

func TestBucketsQuantile(t *testing.T) {
	inf := math.Inf(1)
	h := buckets{{0.001, 50}, {0.01, 90}, {0.1, 100}, {inf, 100}}
	tests := []struct {
		name string
		b    buckets
		q    float64
		want float64
	}{
		{"empty", nil, .5, 0},
		{"no observations", buckets{{0.001, 0}, {inf, 0}}, .5, 0},
		{"the median at a bound", h, .5, 0.001},
		{"interpolated within a bucket", h, .7, 0.001 + (0.01-0.001)*0.5},
		{"p99 in the last finite bucket", h, .99, 0.01 + (0.1-0.01)*0.9},
		{"past every finite bound", buckets{{0.001, 1}, {inf, 10}}, .99, 0.001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.quantile(tt.q); math.Abs(got-tt.want) > 1e-12 {
				t.Fatalf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestBucketsSubAndAdd(t *testing.T) {
	before := buckets{{0.001, 10}, {math.Inf(1), 12}}
	after := buckets{{0.001, 15}, {math.Inf(1), 20}}
	step := after.sub(before)
	if step[0].count != 5 || step[1].count != 8 {
		t.Fatalf("after - before = %v", step)
	}
	if sum := buckets(nil).add(step).add(step); sum[0].count != 10 || sum[1].count != 16 {
		t.Fatalf("step + step = %v", sum)
	}
	if got := after.sub(nil); got[1].count != 20 {
		t.Fatalf("after - nothing = %v", got)
	}
}

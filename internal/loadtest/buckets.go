package loadtest

import (
	"bufio"
	"context"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// buckets is a Prometheus histogram's cumulative buckets, by upper bound.
type buckets []bucket

type bucket struct {
	le    float64 // upper bound; +Inf for the last
	count float64 // observations at or below le
}

// scrapeBuckets reads histogram name's buckets from a /metrics page.
func scrapeBuckets(ctx context.Context, url, name string) (buckets, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out buckets
	prefix := name + `_bucket{le="`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		le, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		b := bucket{le: math.Inf(1)}
		if le != "+Inf" {
			if b.le, err = strconv.ParseFloat(le, 64); err != nil {
				continue
			}
		}
		if b.count, err = strconv.ParseFloat(value, 64); err != nil {
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b bucket) int { return cmpFloat(a.le, b.le) })
	return out, sc.Err()
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sub is b minus an earlier sample of the same histogram (nil: nothing).
func (b buckets) sub(earlier buckets) buckets {
	out := slices.Clone(b)
	for i := range out {
		if i < len(earlier) && earlier[i].le == out[i].le {
			out[i].count -= earlier[i].count
		}
	}
	return out
}

// add sums two samples of histograms with the same bounds (nil: nothing).
func (b buckets) add(other buckets) buckets {
	if len(b) == 0 {
		return slices.Clone(other)
	}
	out := slices.Clone(b)
	for i := range out {
		if i < len(other) && other[i].le == out[i].le {
			out[i].count += other[i].count
		}
	}
	return out
}

// quantile interpolates the q-quantile linearly within its bucket, as
// Prometheus' histogram_quantile does; 0 with no observations. A quantile
// in the +Inf bucket is the largest finite bound.
func (b buckets) quantile(q float64) float64 {
	if len(b) == 0 || b[len(b)-1].count <= 0 {
		return 0
	}
	rank := q * b[len(b)-1].count
	lower, below := 0.0, 0.0
	for _, x := range b {
		if x.count >= rank {
			if math.IsInf(x.le, 1) {
				return lower
			}
			if x.count == below {
				return x.le
			}
			return lower + (x.le-lower)*(rank-below)/(x.count-below)
		}
		lower, below = x.le, x.count
	}
	return lower
}

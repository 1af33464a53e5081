package main

import (
	"math"
	"testing"
	"time"
)

func TestHistIndex(t *testing.T) {
	if got := histIndex(histMaxValue); got != histBuckets-1 {
		t.Fatalf("histIndex(max) = %d, want %d", got, histBuckets-1)
	}
	prev := -1
	// Every value lies inside its bucket, buckets are monotonic and at most
	// 1/32 of their lower bound wide.
	for v := uint64(0); v < histMaxValue; v = v + 1 + v/50 {
		i := histIndex(v)
		if i < prev {
			t.Fatalf("histIndex(%d) = %d < histIndex of a smaller value %d", v, i, prev)
		}
		prev = i
		up := histUpper(i)
		lo := uint64(0)
		if i > 0 {
			lo = histUpper(i-1) + 1
		}
		if v < lo || v > up {
			t.Fatalf("value %d outside its bucket %d [%d, %d]", v, i, lo, up)
		}
		if lo >= histSub && float64(up-lo+1) > float64(lo)/histSub {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its lower bound", i, lo, up, histSub)
		}
	}
}

func TestHistogramPercentiles(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		name   string
		values func(h *histogram)
		q      float64
		want   time.Duration
		relErr float64 // 0: exact
	}{
		{"empty", func(h *histogram) {}, 0.5, 0, 0},
		{"single value is every percentile", func(h *histogram) { h.record(1234 * us) }, 0.999, 1234 * us, 0},
		{"single value p50", func(h *histogram) { h.record(1234 * us) }, 0.5, 1234 * us, 0},
		{"small values are exact p50", rangeNS(1, 20), 0.5, 10, 0},
		{"small values are exact p90", rangeNS(1, 20), 0.9, 18, 0},
		{"small values are exact p100", rangeNS(1, 20), 1, 20, 0},
		{"negative counts as zero", func(h *histogram) { h.record(-5); h.record(-1) }, 0.5, 0, 0},
		{"uniform 1..10000µs p50", rangeUS(1, 10000), 0.5, 5000 * us, 1.0 / 32},
		{"uniform 1..10000µs p90", rangeUS(1, 10000), 0.9, 9000 * us, 1.0 / 32},
		{"uniform 1..10000µs p99", rangeUS(1, 10000), 0.99, 9900 * us, 1.0 / 32},
		{"uniform 1..10000µs p99.9", rangeUS(1, 10000), 0.999, 9990 * us, 1.0 / 32},
		{"p100 is the max exactly", rangeUS(1, 10000), 1, 10000 * us, 0},
		{"one outlier in 1000 is not p99", outlier(999, 100*us, time.Second), 0.99, 100 * us, 1.0 / 32},
		{"one outlier in 1000 is p99.9+", outlier(999, 100*us, time.Second), 0.9995, time.Second, 0},
		{"huge values are clamped", func(h *histogram) { h.record(time.Hour) }, 0.5, histMaxValue, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			tt.values(&h)
			got := h.percentile(tt.q)
			if tt.relErr == 0 {
				if got != tt.want {
					t.Fatalf("percentile(%v) = %v, want %v", tt.q, got, tt.want)
				}
				return
			}
			if e := math.Abs(float64(got-tt.want)) / float64(tt.want); e > tt.relErr {
				t.Fatalf("percentile(%v) = %v, want %v ± %.1f%% (off by %.2f%%)", tt.q, got, tt.want, tt.relErr*100, e*100)
			}
		})
	}
}

func rangeNS(lo, hi int) func(*histogram) {
	return func(h *histogram) {
		for v := lo; v <= hi; v++ {
			h.record(time.Duration(v))
		}
	}
}

func rangeUS(lo, hi int) func(*histogram) {
	return func(h *histogram) {
		for v := lo; v <= hi; v++ {
			h.record(time.Duration(v) * time.Microsecond)
		}
	}
}

func outlier(n int, v, big time.Duration) func(*histogram) {
	return func(h *histogram) {
		for range n {
			h.record(v)
		}
		h.record(big)
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all histogram
	for v := 1; v <= 1000; v++ {
		d := time.Duration(v) * time.Microsecond
		if v%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
		all.record(d)
	}
	var m histogram
	m.merge(&a)
	m.merge(&b)
	m.merge(&histogram{}) // merging an empty one changes nothing
	if m != all {
		t.Fatalf("merged histogram differs: n=%d min=%d max=%d sum=%d, want n=%d min=%d max=%d sum=%d",
			m.n, m.min, m.max, m.sum, all.n, all.min, all.max, all.sum)
	}
	if got, want := m.mean(), 500500*time.Nanosecond; got != want {
		t.Fatalf("mean = %v, want %v", got, want)
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(histogram)
	d := time.Duration(1)
	if n := testing.AllocsPerRun(1000, func() { h.record(d); d = d*3 + 7 }); n != 0 {
		t.Fatalf("record allocates %v times per call", n)
	}
}

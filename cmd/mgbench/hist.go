package main

import (
	"math/bits"
	"time"
)

// The latency histogram is log-linear (the HdrHistogram idea, simplified):
// values below 2^histSubBits nanoseconds get one bucket each; above that,
// every power of two is split into 2^histSubBits equal buckets, so a bucket is
// at most 1/32 (3.1%) of its lower bound wide. Values are clamped to
// histMaxValue, far above the longest allowed run, so the array has a fixed
// size and recording never allocates.
const (
	histSubBits  = 5
	histSub      = 1 << histSubBits
	histMaxExp   = 40 // values ≥ 2^40 ns (~18 min) land in the last bucket
	histMaxValue = 1<<histMaxExp - 1
	histBuckets  = (histMaxExp - histSubBits + 1) * histSub // index of histMaxValue + 1
)

// histogram counts latencies in nanoseconds. The zero value is ready to use;
// it is not safe for concurrent use (each worker has its own, merged at the end).
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64 // nanoseconds; 2^64 ns is 584 years, no overflow in a run
	min    uint64
	max    uint64
}

// histIndex returns the bucket of v (v ≤ histMaxValue).
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - 1 // top bit position, ≥ histSubBits
	shift := e - histSubBits
	mantissa := v>>shift - histSub // in [0, histSub)
	return (shift+1)*histSub + int(mantissa)
}

// histUpper returns the largest value that falls into bucket i.
func histUpper(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	mantissa := uint64(i % histSub)
	lower := (histSub + mantissa) << shift
	return lower + (1 << shift) - 1
}

// record adds one latency.
func (h *histogram) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// merge adds o's counts into h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// percentile returns the latency at or below which a fraction q (0 < q ≤ 1)
// of the recorded values lie: the upper bound of the bucket holding the
// ceil(q·n)-th smallest value, clamped to the recorded min and max. It is
// exact below 32 ns and within 3.1% above.
func (h *histogram) percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++ // ceil
	}
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := histUpper(i)
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

// mean returns the average latency.
func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

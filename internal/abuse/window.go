package abuse

import "time"

// window is a slow sliding window packed into one word of a key's state:
// buckets counts of 8 bits each (saturating at 255) in the low bits, and
// the index of the newest bucket (time / width, modulo 2^(64 − 8 × buckets))
// in the high bits. A count covers the newest bucket and the buckets − 1
// before it, so the window is between (buckets − 1) × width and
// buckets × width long: the price of one word per key instead of a
// timestamp per failure (rule (a) and (b)'s rings hold at most 100).
//
// The index wraps (16 bits for the day window: 30 years of 4-hour
// buckets); a key is forgotten long before (Tracker.Expire), and a clock
// that goes back only restarts the count.
type window struct {
	width   int64 // nanoseconds per bucket
	buckets int   // 1 to 7
}

// The slow windows are counted in quarters (the hour) and sixths (the
// day) of their length.
const (
	hourBuckets = 4
	dayBuckets  = 6
)

func newWindow(span time.Duration, buckets int) window {
	return window{width: max(int64(span)/int64(buckets), 1), buckets: buckets}
}

// span is the longest time the window counts.
func (wd window) span() time.Duration { return time.Duration(wd.width * int64(wd.buckets)) }

func (wd window) shift() uint { return uint(8 * wd.buckets) }

// index is the bucket index of n, reduced to the bits the word keeps.
func (wd window) index(n int64) uint64 {
	return uint64(n/wd.width) & (^uint64(0) >> wd.shift())
}

// age is how many buckets the word's newest bucket lies before n's; a
// stored index after n's (the clock went back) is as old as can be.
func (wd window) age(w int64, n int64) uint64 {
	mask := ^uint64(0) >> wd.shift()
	stored := uint64(w) >> wd.shift()
	cur := wd.index(n)
	if w == 0 {
		return uint64(wd.buckets)
	}
	d := (cur - stored) & mask
	if d > mask/2 {
		return uint64(wd.buckets)
	}
	return d
}

// add counts one failure at n in the word.
func (wd window) add(w *int64, n int64) { wd.addN(w, n, 1) }

// addN counts c failures at n in the word (the bucket saturates at 255).
func (wd window) addN(w *int64, n int64, c int) {
	age := wd.age(*w, n)
	counts := uint64(*w) & (1<<wd.shift() - 1)
	if age >= uint64(wd.buckets) {
		counts = 0
	} else {
		// Buckets are stored newest first: shift the old ones up by age,
		// dropping those past the window.
		counts = (counts << (8 * age)) & (1<<wd.shift() - 1)
	}
	counts += uint64(min(c, int(0xff-counts&0xff)))
	*w = int64(wd.index(n)<<wd.shift() | counts)
}

// count is the number of failures in the window ending at n.
func (wd window) count(w int64, n int64) int {
	age := wd.age(w, n)
	if age >= uint64(wd.buckets) {
		return 0
	}
	counts := uint64(w) & (1<<wd.shift() - 1)
	total := 0
	for i := uint64(0); i < uint64(wd.buckets)-age; i++ {
		total += int(counts >> (8 * i) & 0xff)
	}
	return total
}

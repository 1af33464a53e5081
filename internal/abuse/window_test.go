package abuse

import (
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	hourWindow := newWindow(time.Hour, hourBuckets)
	dayWindow := newWindow(24*time.Hour, dayBuckets)
	base := at(0).UnixNano()
	q := int64(15 * time.Minute)
	var w int64
	hourWindow.add(&w, base)
	hourWindow.add(&w, base+q-1)
	hourWindow.add(&w, base+q) // the next bucket
	for _, c := range []struct {
		at   int64
		want int
	}{
		{base, 0}, // before the newest bucket: as if the clock went back
		{base + q, 3},
		{base + 3*q, 3},                        // the oldest bucket is still in: 45–60 minutes
		{base + 4*q, 1},                        // it is out
		{base + 5*q, 0},                        //
		{base + 100*q, 0},                      //
		{base - 10*time.Hour.Nanoseconds(), 0}, // the clock went back
	} {
		if got := hourWindow.count(w, c.at); got != c.want {
			t.Errorf("count at %v = %d, want %d", time.Duration(c.at-base), got, c.want)
		}
	}
	// Adding later shifts the old buckets out.
	hourWindow.add(&w, base+5*q)
	if got := hourWindow.count(w, base+5*q); got != 1 {
		t.Errorf("after a gap: %d, want 1", got)
	}
	// A bucket saturates at 255 instead of wrapping.
	w = 0
	for range 300 {
		dayWindow.add(&w, base)
	}
	if got := dayWindow.count(w, base); got != 255 {
		t.Errorf("saturated: %d, want 255", got)
	}
	dayWindow.add(&w, base+int64(4*time.Hour))
	if got := dayWindow.count(w, base+int64(4*time.Hour)); got != 256 {
		t.Errorf("the next bucket: %d, want 256", got)
	}
	if got := dayWindow.count(w, base+int64(24*time.Hour)); got != 1 {
		t.Errorf("a day later: %d, want 1 (the second bucket)", got)
	}
	// Clock back while adding: the count restarts rather than corrupts.
	dayWindow.add(&w, base-int64(48*time.Hour))
	if got := dayWindow.count(w, base-int64(48*time.Hour)); got != 1 {
		t.Errorf("after the clock went back: %d, want 1", got)
	}
}

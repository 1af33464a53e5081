package throttle

import (
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	var l Log
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range Burst {
		if ok, s := l.Allow(t0.Add(time.Duration(i) * time.Millisecond)); !ok || s != 0 {
			t.Fatalf("line %d: %v %d", i, ok, s)
		}
	}
	for i := range 3 {
		if ok, _ := l.Allow(t0.Add(time.Second)); ok {
			t.Fatalf("line %d over the burst was let through", Burst+i)
		}
	}
	if ok, s := l.Allow(t0.Add(Interval)); !ok || s != 3 {
		t.Fatalf("after the interval: %v, suppressed %d, want true, 3", ok, s)
	}
	// A clock that went back starts a new interval.
	var m Log
	for range Burst {
		m.Allow(t0)
	}
	if ok, _ := m.Allow(t0.Add(-time.Minute)); !ok {
		t.Fatal("a clock going back kept the log closed")
	}
}

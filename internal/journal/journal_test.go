package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// memStore is a store of string rows keyed by themselves' prefix before
// "=". Rows containing "bad" are refused; down fails every write.
type memStore struct {
	mu    sync.Mutex
	rows  map[string]string
	down  bool
	calls int
}

func key(v string) string { k, _, _ := strings.Cut(v, "="); return k }

func (s *memStore) put(_ context.Context, _ time.Time, vs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.down {
		return errors.New("disk full")
	}
	for _, v := range vs {
		if strings.Contains(v, "bad") {
			return fmt.Errorf("row %q refused", v)
		}
	}
	for _, v := range vs {
		s.rows[key(v)] = v
	}
	return nil
}

func (s *memStore) del(_ context.Context, _ time.Time, ks []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("disk full")
	}
	for _, k := range ks {
		delete(s.rows, k)
	}
	return nil
}

func (s *memStore) snapshot() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.rows)
}

// owner is the state's owner: what it holds now.
type owner struct {
	mu   sync.Mutex
	held map[string]string
}

func (o *owner) current(k string, _ string, _ bool, _ time.Time) (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.held[k]
	return v, ok
}

func newJournal(st *memStore, o *owner) *Journal[string, string] {
	cfg := Config[string, string]{Name: "test rows", Put: st.put, Delete: st.del}
	if o != nil {
		cfg.Current = o.current
	}
	return New(cfg, nil)
}

var t0 = time.Unix(1_700_000_000, 0)

func TestLatestStateWins(t *testing.T) {
	st := &memStore{rows: map[string]string{}}
	j := newJournal(st, nil)
	j.Set("a", "a=1")
	j.Set("a", "a=2")
	j.Set("b", "b=1")
	j.Remove("b")
	j.Flush(t.Context(), t0)
	if got := st.snapshot(); !maps.Equal(got, map[string]string{"a": "a=2"}) {
		t.Fatalf("store %v, want only a=2", got)
	}
}

// A key the owner no longer holds when the flush comes is deleted, not
// written back (finding: a ban lifted within the batch interval came back
// after a restart).
func TestOwnerStateAtFlush(t *testing.T) {
	st := &memStore{rows: map[string]string{"old": "old=1"}}
	o := &owner{held: map[string]string{"a": "a=1", "b": "b=1", "old": "old=1"}}
	j := newJournal(st, o)
	j.Set("a", "a=1")
	j.Set("b", "b=1")
	j.Set("old", "old=1")
	o.mu.Lock()
	delete(o.held, "b")   // lifted before the flush
	delete(o.held, "old") // lifted after an earlier flush
	o.held["a"] = "a=3"   // changed again
	o.mu.Unlock()
	j.Flush(t.Context(), t0)
	if got := st.snapshot(); !maps.Equal(got, map[string]string{"a": "a=3"}) {
		t.Fatalf("store %v, want only a=3", got)
	}
}

// One bad row does not fail the others, and is not retried forever.
func TestBadRowSkipped(t *testing.T) {
	st := &memStore{rows: map[string]string{}}
	j := newJournal(st, nil)
	for _, v := range []string{"a=1", "b=bad", "c=1", "d=1"} {
		j.Set(key(v), v)
	}
	written, retry := j.Flush(t.Context(), t0)
	if written != 3 || retry != 0 {
		t.Errorf("written %d, retry %d; want 3, 0", written, retry)
	}
	if got := st.snapshot(); !maps.Equal(got, map[string]string{"a": "a=1", "c": "c=1", "d": "d=1"}) {
		t.Fatalf("store %v", got)
	}
	if j.Pending() != 0 {
		t.Errorf("%d rows pending after the bad row was skipped", j.Pending())
	}
}

func TestCheckSkipsRow(t *testing.T) {
	st := &memStore{rows: map[string]string{}}
	j := New(Config[string, string]{Name: "test rows", Put: st.put, Check: func(v *string) error {
		if len(*v) > 5 {
			return errors.New("too long")
		}
		return nil
	}}, nil)
	j.Set("a", "a=1")
	j.Set("b", "b=123456")
	j.Flush(t.Context(), t0)
	if got := st.snapshot(); !maps.Equal(got, map[string]string{"a": "a=1"}) {
		t.Fatalf("store %v", got)
	}
	if st.calls != 1 {
		t.Errorf("%d writes; the refused row should never reach the store", st.calls)
	}
}

// When the store takes nothing, every row is retried at the next flush,
// and a newer state queued meanwhile wins over the retried one.
func TestFailedFlushRetried(t *testing.T) {
	st := &memStore{rows: map[string]string{}, down: true}
	j := newJournal(st, nil)
	j.Set("a", "a=1")
	j.Set("b", "b=1")
	j.Remove("c")
	if written, retry := j.Flush(t.Context(), t0); written != 0 || retry != 3 {
		t.Fatalf("store down: written %d, retry %d; want 0, 3", written, retry)
	}
	j.Set("b", "b=2")
	st.mu.Lock()
	st.down = false
	st.rows["c"] = "c=0"
	st.mu.Unlock()
	if written, retry := j.Flush(t.Context(), t0); written != 3 || retry != 0 {
		t.Fatalf("store back: written %d, retry %d; want 3, 0", written, retry)
	}
	if got := st.snapshot(); !maps.Equal(got, map[string]string{"a": "a=1", "b": "b=2"}) {
		t.Fatalf("store %v", got)
	}
}

func TestQueueBound(t *testing.T) {
	st := &memStore{rows: map[string]string{}}
	j := New(Config[string, string]{Name: "test rows", Put: st.put, Max: 2}, nil)
	j.Set("a", "a=1")
	j.Set("b", "b=1")
	j.Set("c", "c=1") // dropped
	j.Set("a", "a=2") // a pending key is updated
	j.Flush(t.Context(), t0)
	if got := st.snapshot(); !maps.Equal(got, map[string]string{"a": "a=2", "b": "b=1"}) {
		t.Fatalf("store %v", got)
	}
}

// Do and a flush never interleave: a flush that read the owner's state
// before a manual removal cannot write it after the removal's own delete.
func TestDoSerializedWithFlush(t *testing.T) {
	st := &memStore{rows: map[string]string{}}
	o := &owner{held: map[string]string{"a": "a=1"}}
	inCurrent := make(chan struct{})
	release := make(chan struct{})
	j := New(Config[string, string]{Name: "test rows", Put: st.put, Delete: st.del,
		Current: func(k, q string, gone bool, now time.Time) (string, bool) {
			v, ok := o.current(k, q, gone, now)
			close(inCurrent)
			<-release
			return v, ok
		}}, nil)
	j.Set("a", "a=1")
	done := make(chan struct{})
	go func() {
		j.Flush(context.Background(), t0)
		close(done)
	}()
	<-inCurrent // the flush has read "a" as held
	removed := make(chan struct{})
	go func() {
		o.mu.Lock()
		delete(o.held, "a")
		o.mu.Unlock()
		j.Do(func() error { return st.del(context.Background(), t0, []string{"a"}) }) //nolint:errcheck
		close(removed)
	}()
	close(release)
	<-done
	<-removed
	if got := st.snapshot(); len(got) != 0 {
		t.Fatalf("store %v after the manual removal, want empty", got)
	}
}

// Run flushes at every interval and once more when its context ends.
func TestRunFinalFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &memStore{rows: map[string]string{}}
		j := newJournal(st, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			j.Run(ctx, 2*time.Second)
			close(done)
		}()
		j.Set("a", "a=1")
		time.Sleep(2*time.Second + time.Millisecond)
		synctest.Wait()
		if got := st.snapshot(); len(got) != 1 {
			t.Fatalf("after one interval: store %v", got)
		}
		j.Set("b", "b=1")
		cancel()
		<-done
		keys := slices.Sorted(maps.Keys(st.snapshot()))
		if !slices.Equal(keys, []string{"a", "b"}) {
			t.Fatalf("after the final flush: keys %v", keys)
		}
	})
}

// BenchmarkSet is the request path's cost: a door noting a key (known-good
// pairs: one per successful login), from many goroutines.
func BenchmarkSet(b *testing.B) {
	j := New(Config[int, int]{Name: "bench", Put: func(context.Context, time.Time, []int) error { return nil }, Max: 1 << 20}, nil)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := int(n.Add(1) & (1<<16 - 1))
			j.Set(k, k)
		}
	})
}

// TestTidyFailureLoggedOnce: while the store is down, a Tidy that fails
// at every flush logs once, not once per flush; it is not even tried
// while rows wait for the store; a Tidy that works again re-arms it.
func TestTidyFailureLoggedOnce(t *testing.T) {
	var logs strings.Builder
	var tidyErr error
	tidies := 0
	st := &memStore{rows: map[string]string{}}
	j := New(Config[string, string]{Name: "test rows", Put: st.put,
		Tidy: func(context.Context, time.Time) error { tidies++; return tidyErr }},
		slog.New(slog.NewTextHandler(&logs, nil)))
	tidyErr = errors.New("store down")
	for range 3 {
		j.Flush(t.Context(), t0)
	}
	if n := strings.Count(logs.String(), "deleting expired rows failed"); n != 1 {
		t.Errorf("3 failing tidies logged %d times, want once:\n%s", n, logs.String())
	}
	st.down = true
	j.Set("a", "a=1")
	tidies = 0
	j.Flush(t.Context(), t0)
	if tidies != 0 {
		t.Errorf("tidy ran while nothing could be written")
	}
	st.down = false
	tidyErr = nil
	j.Flush(t.Context(), t0)
	tidyErr = errors.New("down again")
	j.Flush(t.Context(), t0)
	if n := strings.Count(logs.String(), "deleting expired rows failed"); n != 2 {
		t.Errorf("a new outage after a working tidy logged %d times in all, want 2:\n%s", n, logs.String())
	}
}

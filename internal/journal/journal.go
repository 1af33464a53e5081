// Package journal writes live state behind to a store, with one set of
// rules for every kind of state mailgate keeps in memory and persists
// (automatic bans, known-good pairs, relay permits, trusted addresses):
//
//   - The latest state wins. The journal holds at most one pending entry
//     per key; when it writes, it asks the owner of the state for the
//     key's current state (Config.Current), so what is written is what the
//     owner holds at the time of writing, not what was queued: a ban
//     lifted by hand since it was queued is not written back.
//   - A removal is a tombstone until written: a key the owner no longer
//     holds is deleted from the store (Config.Delete).
//   - A bad row is skipped: a row Config.Check refuses is logged and never
//     sent, and when a batch fails, its rows are written one by one; a row
//     that fails while others succeed is logged and dropped.
//   - A failed write is retried: when nothing of a flush could be written
//     (the store is down, the disk full), its rows stay pending for the
//     next flush, unless a newer state was queued for them meanwhile.
//   - Run flushes every interval and, when its context ends, one last
//     time with a bounded wait (Config.FinalWait): the caller stops the
//     doors first, so that what the last requests did is in it.
//
// The request path only takes a mutex and writes a map entry.
package journal

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Config describes one kind of state and its store.
type Config[K comparable, V any] struct {
	// Name names the state in log lines, e.g. "relay permits".
	Name string
	// Max bounds the pending keys; past it a new key is dropped with a
	// warning (the state still holds in memory). 0 means 100,000.
	Max int
	// Current returns the state to write for key k at now: ok false writes
	// a tombstone. queued is the last value given to Set (zero after
	// Remove), gone whether the last call was Remove. Nil: the queued
	// value is written, or the tombstone.
	Current func(k K, queued V, gone bool, now time.Time) (v V, ok bool)
	// Check, if set, refuses a row the store would refuse or could not
	// read back; the row is logged and skipped.
	Check func(v *V) error
	// Put writes rows (upserts). It should write all or nothing.
	Put func(ctx context.Context, now time.Time, vs []V) error
	// Delete, if set, deletes the rows of keys (tombstones). Nil: no
	// tombstones are written (expiry alone removes rows).
	Delete func(ctx context.Context, now time.Time, ks []K) error
	// Tidy, if set, runs after every flush, e.g. to delete expired rows.
	Tidy func(ctx context.Context, now time.Time) error
	// FinalWait bounds the last flush of Run. 0 means 10 s.
	FinalWait time.Duration
}

// DefaultMax is the default bound on pending keys.
const DefaultMax = 100_000

// DefaultFinalWait is the default bound on Run's last flush.
const DefaultFinalWait = 10 * time.Second

type entry[V any] struct {
	v    V
	gone bool
}

// Journal is the write-behind queue of one kind of state.
type Journal[K comparable, V any] struct {
	cfg Config[K, V]
	log *slog.Logger

	// wmu is held while a flush resolves and writes, and around the
	// owner's own writes (Do): a manual change written to the store
	// synchronously and a flush never interleave.
	wmu sync.Mutex

	mu      sync.Mutex
	pending map[K]entry[V]
	full    bool // a "queue full" warning was logged since the last flush
	failing bool // the last flush could write nothing
	// tidyFailing: the last Tidy failed (logged once until one works).
	tidyFailing bool
}

// New returns a journal for cfg; log gets its warnings and errors.
func New[K comparable, V any](cfg Config[K, V], log *slog.Logger) *Journal[K, V] {
	if cfg.Max <= 0 {
		cfg.Max = DefaultMax
	}
	if cfg.FinalWait <= 0 {
		cfg.FinalWait = DefaultFinalWait
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Journal[K, V]{cfg: cfg, log: log, pending: map[K]entry[V]{}}
}

// Set queues v as k's latest state.
func (j *Journal[K, V]) Set(k K, v V) { j.queue(k, entry[V]{v: v}) }

// Remove queues a tombstone for k.
func (j *Journal[K, V]) Remove(k K) { j.queue(k, entry[V]{gone: true}) }

func (j *Journal[K, V]) queue(k K, e entry[V]) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.pending[k]; !ok && len(j.pending) >= j.cfg.Max {
		if !j.full {
			j.full = true
			j.log.Warn(j.cfg.Name+": not persisted: queue full (it holds in memory until it ends or mailgate restarts)", "max", j.cfg.Max)
		}
		return
	}
	j.pending[k] = e
}

// Pending is the number of keys waiting to be written.
func (j *Journal[K, V]) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// Do runs fn, a write of the owner's own (a manual change), never during
// a flush: a flush that read the state before the change cannot write it
// after the change.
func (j *Journal[K, V]) Do(fn func() error) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return fn()
}

// Run flushes every interval until ctx ends, then flushes one last time,
// bounded by Config.FinalWait.
func (j *Journal[K, V]) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			j.Flush(ctx, now)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), j.cfg.FinalWait)
			j.Flush(fctx, time.Now())
			cancel()
			return
		}
	}
}

// Flush writes what is pending as of now and returns how many rows were
// written (puts and deletes) and how many stay pending for a retry.
func (j *Journal[K, V]) Flush(ctx context.Context, now time.Time) (written, retry int) {
	j.mu.Lock()
	batch := j.pending
	if len(batch) > 0 {
		j.pending = map[K]entry[V]{}
	}
	j.full = false
	j.mu.Unlock()

	j.wmu.Lock()
	defer j.wmu.Unlock()
	var (
		putKeys []K
		puts    []V
		dels    []K
	)
	for k, e := range batch {
		v, ok := e.v, !e.gone
		if j.cfg.Current != nil {
			v, ok = j.cfg.Current(k, e.v, e.gone, now)
		}
		switch {
		case !ok && j.cfg.Delete != nil:
			dels = append(dels, k)
		case !ok:
		case j.cfg.Check != nil:
			if err := j.cfg.Check(&v); err != nil {
				j.log.Error(j.cfg.Name+": not persisted: bad row skipped", "key", fmt.Sprint(k), "err", err)
				continue
			}
			fallthrough
		default:
			putKeys = append(putKeys, k)
			puts = append(puts, v)
		}
	}
	var failed []K
	var errs []error
	if len(puts) > 0 {
		ok, bad, err := writeEach(ctx, now, j.cfg.Put, puts, putKeys)
		written += ok
		failed = append(failed, bad...)
		errs = append(errs, err...)
	}
	if len(dels) > 0 {
		ok, bad, err := writeEach(ctx, now, j.cfg.Delete, dels, dels)
		written += ok
		failed = append(failed, bad...)
		errs = append(errs, err...)
	}
	if len(failed) > 0 && written == 0 {
		// Nothing could be written: the store, not the rows. Keep them
		// for the next flush, unless a newer state came meanwhile.
		j.mu.Lock()
		for _, k := range failed {
			if _, newer := j.pending[k]; !newer {
				j.pending[k] = batch[k]
			}
		}
		first := !j.failing
		j.failing = true
		j.mu.Unlock()
		retry = len(failed)
		if first {
			j.log.Error(j.cfg.Name+": writing to the store failed; retrying at the next flush", "kind", "store", "rows", len(failed), "err", errs[0])
		}
	} else {
		for i, k := range failed {
			j.log.Error(j.cfg.Name+": not persisted: bad row skipped", "key", fmt.Sprint(k), "err", errs[i])
		}
		j.mu.Lock()
		if j.failing && written > 0 {
			j.failing = false
			j.log.Info(j.cfg.Name + ": writing to the store works again")
		}
		j.mu.Unlock()
	}
	if j.cfg.Tidy != nil && retry == 0 {
		// Not while the store takes nothing: one error per outage, not
		// one per flush.
		err := j.cfg.Tidy(ctx, now)
		j.mu.Lock()
		first := err != nil && !j.tidyFailing
		j.tidyFailing = err != nil
		j.mu.Unlock()
		if first {
			j.log.Error(j.cfg.Name+": deleting expired rows failed; retrying at the next flush", "kind", "store", "err", err)
		}
	}
	return written, retry
}

// writeEach writes rows in one call, and when that fails, one by one. It
// returns how many were written, the keys of the rows that failed and
// their errors.
func writeEach[K comparable, R any](ctx context.Context, now time.Time, write func(context.Context, time.Time, []R) error, rows []R, keys []K) (int, []K, []error) {
	err := write(ctx, now, rows)
	if err == nil {
		return len(rows), nil, nil
	}
	if len(rows) == 1 {
		return 0, keys, []error{err}
	}
	n := 0
	var bad []K
	var errs []error
	for i := range rows {
		if err := write(ctx, now, rows[i:i+1]); err != nil {
			bad = append(bad, keys[i])
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, bad, errs
}

package password

import (
	"context"
	"sort"
	"sync"
	"time"
	"unicode/utf8"
)

// Seen is a login seen logging in with a weak password, and when.
type Seen struct {
	Login string    `json:"login"`
	At    time.Time `json:"last_seen"`
}

// SaveFunc writes flags behind (the store): a Seen with a zero At removes
// the login. It is called from Flush, never on a request.
type SaveFunc func(ctx context.Context, flags []Seen) error

// Flags is the in-memory set of logins seen with a weak password within
// Keep, answered from memory on the request path and written behind
// through a SaveFunc: the latest state of a login wins, a removal is
// kept until written, a failed write is retried at the next Flush.
type Flags struct {
	save SaveFunc
	max  int

	mu      sync.Mutex
	keep    time.Duration
	seen    map[string]time.Time
	pending map[string]time.Time // login → new time; zero = removed
}

// DefaultMaxFlags bounds the logins kept in memory.
const DefaultMaxFlags = 1_000_000

// NewFlags returns an empty set keeping flags for keep; save may be nil
// (nothing is written). max ≤ 0 means DefaultMaxFlags.
func NewFlags(keep time.Duration, max int, save SaveFunc) *Flags {
	if max <= 0 {
		max = DefaultMaxFlags
	}
	return &Flags{save: save, max: max, keep: keep, seen: map[string]time.Time{}, pending: map[string]time.Time{}}
}

// SetKeep changes how long a flag counts (a reload).
func (f *Flags) SetKeep(keep time.Duration) {
	f.mu.Lock()
	f.keep = keep
	f.mu.Unlock()
}

// Load adds flags read from the store at start; they are not written back.
func (f *Flags) Load(ss []Seen) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range ss {
		if len(f.seen) >= f.max {
			return
		}
		if s.At.After(f.seen[s.Login]) {
			f.seen[s.Login] = s.At
		}
	}
}

// Weak reports whether login was seen with a weak password within keep
// of now.
func (f *Flags) Weak(login string, now time.Time) bool {
	if f == nil || login == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.seen[login]
	return ok && now.Sub(t) < f.keep
}

// maxFlagLogin bounds a flagged login (the store's bound).
const maxFlagLogin = 512

// writeEvery is how often a login's flag is written again while it keeps
// logging in weakly: the list shows days, and a phone logs in every few
// minutes.
const writeEvery = time.Hour

// Mark records that login just logged in with a weak password.
func (f *Flags) Mark(login string, now time.Time) {
	if f == nil || login == "" || len(login) > maxFlagLogin || !utf8.ValidString(login) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, had := f.seen[login]
	if !had && len(f.seen) >= f.max {
		f.evictLocked(now)
		if len(f.seen) >= f.max {
			return
		}
	}
	f.seen[login] = now
	if !had || now.Sub(old) >= writeEvery {
		f.pending[login] = now
	}
}

// Clear records that login just logged in with a password that passes.
func (f *Flags) Clear(login string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seen[login]; ok {
		delete(f.seen, login)
		f.pending[login] = time.Time{}
	}
}

// evictLocked drops flags older than keep; when none is, one arbitrary
// flag.
func (f *Flags) evictLocked(now time.Time) {
	for l, t := range f.seen {
		if now.Sub(t) >= f.keep {
			delete(f.seen, l)
		}
	}
	if len(f.seen) >= f.max {
		for l := range f.seen {
			delete(f.seen, l)
			break
		}
	}
}

// List returns the logins seen with a weak password since since, most
// recent first.
func (f *Flags) List(since time.Time) []Seen {
	f.mu.Lock()
	out := make([]Seen, 0, len(f.seen))
	for l, t := range f.seen {
		if !t.Before(since) {
			out = append(out, Seen{Login: l, At: t})
		}
	}
	f.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.After(out[j].At)
		}
		return out[i].Login < out[j].Login
	})
	return out
}

// Flush writes the pending changes. On failure they stay pending (unless
// a newer change replaced them meanwhile) for the next Flush.
func (f *Flags) Flush(ctx context.Context) error {
	if f == nil || f.save == nil {
		return nil
	}
	f.mu.Lock()
	if len(f.pending) == 0 {
		f.mu.Unlock()
		return nil
	}
	batch := make([]Seen, 0, len(f.pending))
	for l, t := range f.pending {
		batch = append(batch, Seen{Login: l, At: t})
	}
	f.pending = map[string]time.Time{}
	f.mu.Unlock()
	err := f.save(ctx, batch)
	if err != nil {
		f.mu.Lock()
		for _, s := range batch {
			if _, newer := f.pending[s.Login]; !newer {
				f.pending[s.Login] = s.At
			}
		}
		f.mu.Unlock()
	}
	return err
}

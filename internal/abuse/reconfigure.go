package abuse

import (
	"errors"
	"time"
)

// ErrNeedsRestart is returned by Reconfigure for a change it cannot make
// to a running tracker.
var ErrNeedsRestart = errors.New("needs a restart")

// Reconfigure replaces the thresholds, windows and ban lengths of a
// running tracker, keeping its state: bans, known-good addresses, the
// counts of every tracked key, the progressive-ban history and the
// "under attack" ring. What a key has counted is carried into the new
// layout: a ring or a set that shrinks keeps its newest entries, and a
// slow window whose length changes keeps each bucket's count at the
// bucket's start. The stale set is recomputed against the new
// StaleRepeats.
//
// IPv6Prefix, MaxKeys and MaxKnownGood size and key the tables: a change
// of one of them is refused with ErrNeedsRestart, nothing changed.
// cfg must be valid (Config.Validate).
func (t *Tracker) Reconfigure(cfg Config, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cfg
	if cfg.IPv6Prefix != old.IPv6Prefix || cfg.MaxKeys != old.MaxKeys || cfg.MaxKnownGood != old.MaxKnownGood {
		return ErrNeedsRestart
	}
	n := now.UnixNano()
	oldT := struct {
		shape
		addrs  *lru[addrKey]
		logins *lru[uint64]
	}{t.shape, t.addrs, t.logins}
	t.cfg = cfg
	t.shape = shapeOf(&cfg)

	if t.addrSlow != oldT.addrSlow || t.hourWindow != oldT.hourWindow || t.dayWindow != oldT.dayWindow || cfg.AddrFailures != old.AddrFailures {
		addrs := newLRU[addrKey](cfg.MaxKeys, t.addrSlow+2)
		oldT.addrs.oldestFirst(func(k addrKey, last int64) {
			i, _ := oldT.addrs.get(k)
			ow := oldT.addrs.w(i)
			nw := addrs.w(addrs.upsert(k, last))
			moveRing(nw[:cfg.AddrFailures], ow[:old.AddrFailures])
			moveSet(nw[t.addrSpray:t.addrSlow], ow[oldT.addrSpray:oldT.addrSlow], 2)
			nw[t.addrSlow] = moveWindow(t.hourWindow, oldT.hourWindow, ow[oldT.addrSlow], n)
			nw[t.addrSlow+1] = moveWindow(t.dayWindow, oldT.dayWindow, ow[oldT.addrSlow+1], n)
		})
		t.addrs = addrs
	}
	if t.loginSlow != oldT.loginSlow || t.hourWindow != oldT.hourWindow || t.dayWindow != oldT.dayWindow || cfg.LoginFailures != old.LoginFailures {
		logins := newLRU[uint64](cfg.MaxKeys, t.loginSlow+2)
		oldT.logins.oldestFirst(func(k uint64, last int64) {
			i, _ := oldT.logins.get(k)
			ow := oldT.logins.w(i)
			nw := logins.w(logins.upsert(k, last))
			moveRing(nw[:cfg.LoginFailures], ow[:old.LoginFailures])
			moveSet(nw[t.loginAddrs:t.loginSlow], ow[oldT.loginAddrs:oldT.loginSlow], 3)
			nw[t.loginSlow] = moveWindow(t.hourWindow, oldT.hourWindow, ow[oldT.loginSlow], n)
			nw[t.loginSlow+1] = moveWindow(t.dayWindow, oldT.dayWindow, ow[oldT.loginSlow+1], n)
		})
		t.logins = logins
	}
	if cfg.StaleRepeats != old.StaleRepeats {
		clear(t.stale)
		t.pairs.oldestFirst(func(k pairKey, _ int64) {
			i, _ := t.pairs.get(k)
			w := t.pairs.w(i)
			for j := 0; j < pairSlots; j++ {
				if w[2*j+1] != 0 && int(slotCount(w[2*j])) >= cfg.StaleRepeats {
					t.stale[staleKey{k, slotHash(w[2*j])}] = w[2*j+1]
				}
			}
		})
	}
	switch countries := cfg.SurgeEnabled || cfg.TrackCountries; {
	case countries && t.countries == nil:
		t.countries = newLRU[uint64](cfg.MaxKnownGood, 1)
	case !countries && t.countries != nil:
		t.countries = nil
	}
	return nil
}

// moveRing copies the newest timestamps of ring src into ring dst (both
// unordered).
func moveRing(dst, src []int64) {
	clear(dst)
	for _, x := range src {
		if x != 0 {
			ringAdd(dst, x)
		}
	}
}

// moveSet copies the most recently seen entries of set src into set dst;
// entries are stride words, the last of which is when it was last seen.
func moveSet(dst, src []int64, stride int) {
	clear(dst)
	if len(dst) == 0 {
		return
	}
	for i := 0; i+stride <= len(src); i += stride {
		if src[i+stride-1] == 0 {
			continue
		}
		oldest := 0
		for j := 0; j < len(dst); j += stride {
			if dst[j+stride-1] < dst[oldest+stride-1] {
				oldest = j
			}
		}
		if dst[oldest+stride-1] < src[i+stride-1] {
			copy(dst[oldest:oldest+stride], src[i:i+stride])
		}
	}
}

// moveWindow re-counts word w of window from in window to, each bucket's
// count at the bucket's start.
func moveWindow(to, from window, w int64, n int64) int64 {
	if to == from || w == 0 {
		return w
	}
	age := from.age(w, n)
	if age >= uint64(from.buckets) {
		return 0
	}
	counts := uint64(w) & (1<<from.shift() - 1)
	// The newest bucket's index, from n's (the word keeps it modulo
	// 2^(64 − shift)).
	base := n/from.width - int64(age)
	var out int64
	for i := from.buckets - 1; i >= 0; i-- {
		c := int(counts >> (8 * uint(i)) & 0xff)
		if c == 0 {
			continue
		}
		at := (base - int64(i)) * from.width
		if at > n {
			at = n
		}
		to.addN(&out, at, c)
	}
	return out
}

package abuse

import (
	"time"
)

// "Under attack": when the server as a whole fails far more logins than
// usual — a password spray over many accounts, each guessed once, that no
// per-account or per-address rule can see — logins from addresses that
// are neither known good for the login nor in one of its usual countries
// are refused until the wave has passed (the caller's part: Check reports
// Status.UnderAttack, UsualCountry answers the country question).
//
// The tracker counts fresh failures (not a stale client's repeats, not a
// known-good address's typos) per minute over the last day. Under attack
// starts when the last 10 minutes hold at least SurgeMin failures and
// SurgeFactor times the usual 10 minutes of the day before them; it ends
// when they have held fewer for SurgeHold.

// surgeRecent and surgeDay are the two parts of the per-minute ring.
const (
	surgeRecent = 10
	surgeDay    = 24 * 60
	surgeRing   = surgeRecent + surgeDay
)

// Surge is the state of "under attack".
type Surge struct {
	Enabled   bool
	On        bool
	Since     time.Time // when it started (zero when off)
	Recent    int       // fresh failures in the last 10 minutes
	Usual     float64   // fresh failures in an average 10 minutes of the day before
	Threshold int       // Recent at or over this turns it on
	LastAbove time.Time // the last time Recent was at or over Threshold
}

// surge is the tracker's per-minute failure ring; the tracker's lock
// guards it.
type surge struct {
	counts [surgeRing]uint32
	minute int64 // the minute of the newest count (unix minutes); 0 before the first
	on     bool
	since  int64
	above  int64 // the last time Recent was at or over the threshold
}

func (s *surge) advance(min int64) {
	if s.minute == 0 || min-s.minute >= surgeRing {
		clear(s.counts[:])
	} else {
		for m := s.minute + 1; m <= min; m++ {
			s.counts[m%surgeRing] = 0
		}
	}
	if min > s.minute {
		s.minute = min
	}
}

// add counts one fresh failure at n.
func (s *surge) add(n int64) {
	min := n / int64(time.Minute)
	if min < s.minute {
		return // the clock went back: the minute has been counted over
	}
	s.advance(min)
	if c := &s.counts[min%surgeRing]; *c < ^uint32(0) {
		*c++
	}
}

// sums returns the failures of the last 10 minutes and of the day before.
func (s *surge) sums(n int64) (recent, day int) {
	min := n / int64(time.Minute)
	if s.minute == 0 || min-s.minute >= surgeRing {
		return 0, 0
	}
	for i := int64(0); i < surgeRing; i++ {
		m := min - i
		if m > s.minute || m <= s.minute-surgeRing {
			continue // not written yet, or overwritten
		}
		if i < surgeRecent {
			recent += int(s.counts[m%surgeRing])
		} else {
			day += int(s.counts[m%surgeRing])
		}
	}
	return recent, day
}

// threshold is the count of the last 10 minutes that means an attack.
func (c *Config) surgeThreshold(day int) (int, float64) {
	usual := float64(day) / (surgeDay / surgeRecent)
	return max(c.SurgeMin, int(c.SurgeFactor*usual+0.999)), usual
}

// Surge updates "under attack" at now and returns its state, and whether
// it started or ended with this call. Call it about once a second (with
// Expire); it is what turns the state on and off.
func (t *Tracker) Surge(now time.Time) (s Surge, changed bool) {
	c := &t.cfg
	n := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	g := &t.surge
	recent, day := g.sums(n)
	threshold, usual := c.surgeThreshold(day)
	if c.SurgeEnabled && recent >= threshold && n >= t.surgeMuted {
		g.above = n
		if !g.on {
			g.on, g.since, changed = true, n, true
		}
	} else if g.on && (!c.SurgeEnabled || n-g.above >= int64(c.SurgeHold)) {
		g.on, g.since, changed = false, 0, true
	}
	t.underAttack.Store(g.on)
	return t.surgeStateLocked(recent, usual, threshold), changed
}

// SurgeState returns the state of "under attack" without updating it.
func (t *Tracker) SurgeState(now time.Time) Surge {
	t.mu.RLock()
	defer t.mu.RUnlock()
	recent, day := t.surge.sums(now.UnixNano())
	threshold, usual := t.cfg.surgeThreshold(day)
	return t.surgeStateLocked(recent, usual, threshold)
}

func (t *Tracker) surgeStateLocked(recent int, usual float64, threshold int) Surge {
	g := &t.surge
	s := Surge{Enabled: t.cfg.SurgeEnabled, On: g.on, Recent: recent, Usual: usual, Threshold: threshold}
	if g.on {
		s.Since = time.Unix(0, g.since).UTC()
	}
	if g.above != 0 {
		s.LastAbove = time.Unix(0, g.above).UTC()
	}
	return s
}

// EndSurge ends "under attack" now (an admin's decision) and keeps it
// off for SurgeHold even if the failures go on.
func (t *Tracker) EndSurge(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.surge.on
	t.surge.on, t.surge.since = false, 0
	t.surgeMuted = now.Add(t.cfg.SurgeHold).UnixNano()
	t.underAttack.Store(false)
	return was
}

// maxCountries is how many usual countries a login remembers, the most
// recent first.
const maxCountries = 4

// countryWord packs a two-letter country code; 0 for anything else.
func countryWord(cc string) uint64 {
	if len(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z' {
		return 0
	}
	return uint64(cc[0])<<8 | uint64(cc[1])
}

// noteCountryLocked remembers cc as a usual country of the login with
// hash lh (the countries its successful logins came from): up to
// maxCountries codes of 16 bits in one word, the most recent lowest.
func (t *Tracker) noteCountryLocked(lh uint64, cc string, n int64) {
	code := countryWord(cc)
	if t.countries == nil || code == 0 {
		return
	}
	w := t.countries.w(t.countries.upsert(lh, n))
	packed, shift := code, 16
	for old := uint64(w[0]); old != 0 && shift < 16*maxCountries; old >>= 16 {
		if c := old & 0xffff; c != code {
			packed |= c << shift
			shift += 16
		}
	}
	w[0] = int64(packed)
}

// UsualCountry reports whether cc is one of the countries login
// succeeded from within KnownGoodFor. It does not allocate.
func (t *Tracker) UsualCountry(login, cc string, now time.Time) bool {
	known, usual := t.countryOf(login, cc, now)
	return known && usual
}

// NewCountry reports whether cc is a country login has not succeeded
// from within KnownGoodFor while it has succeeded from another one: an
// account's first login (or its first since a restart, the countries
// being kept in memory only) is never new. Call it before the success is
// recorded. It does not allocate.
func (t *Tracker) NewCountry(login, cc string, now time.Time) bool {
	known, usual := t.countryOf(login, cc, now)
	return known && !usual
}

// countryOf says whether login has succeeded from some country within
// KnownGoodFor (known), and whether cc is one of them (usual).
func (t *Tracker) countryOf(login, cc string, now time.Time) (known, usual bool) {
	code := countryWord(cc)
	if t.countries == nil || code == 0 || login == "" {
		return false, false
	}
	lh := t.loginHash(login)
	t.mu.RLock()
	defer t.mu.RUnlock()
	i, ok := t.countries.get(lh)
	if !ok || t.countries.last(i) <= now.UnixNano()-int64(t.cfg.KnownGoodFor) {
		return false, false
	}
	w := uint64(t.countries.w(i)[0])
	if w == 0 {
		return false, false
	}
	for ; w != 0; w >>= 16 {
		if w&0xffff == code {
			return true, true
		}
	}
	return true, false
}

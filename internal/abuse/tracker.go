package abuse

import (
	"cmp"
	"encoding/binary"
	"hash/maphash"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// pairSlots is how many distinct password hashes a (login, address) pair
// remembers. A stale client needs one; an attacker trying passwords from
// one address evicts them quickly, which only makes each failure count.
const pairSlots = 4

// Word layout of a pair's state: pairSlots slots of (hash<<32 | count,
// last failure), then (count, last failure) of failures without a hash.
const (
	pairHashless = 2 * pairSlots
	pairStride   = pairHashless + 2
)

// minLoginAddrs is the least number of distinct addresses a login
// remembers, so that explanations show more than the threshold.
const minLoginAddrs = 4

// Tracker counts login results and holds the bans. See the package doc.
type Tracker struct {
	cfg  Config
	seed maphash.Seed

	shape
	v6bits int // cfg.IPv6Prefix, fixed for the tracker's life (read without the lock)

	mu        sync.RWMutex
	addrs     *lru[addrKey]
	logins    *lru[uint64] // by login hash
	pairs     *lru[pairKey]
	known     *lru[kgKey]
	stale     map[staleKey]int64 // the stale triples (count >= StaleRepeats) of pairs, with their last failure
	addrBans  bart.Table[[]*ban]
	loginBans map[string][]*ban
	byID      map[int64]*ban
	nextID    int64
	ids       func() int64 // SetIDSource; nil: nextID
	minExp    int64        // no ban ends before this (a lower bound)
	hist      map[histKey]hist
	histSweep int64 // next time Expire sweeps hist

	surge       surge
	surgeMuted  int64        // EndSurge: no new surge before this
	underAttack atomic.Bool  // surge.on, read without the lock by Check
	countries   *lru[uint64] // a login's usual countries (by login hash); nil when surges are off
}

// shape is the layout of a tracker's per-key state, derived from its
// Config.
type shape struct {
	// Word layout of an address's state: the rule (b) ring, then the
	// spray set of (login hash, last failure), then the hour and the day
	// window. A login's: the rule (a) ring, then the address set of (key
	// hi, key lo, last failure), then the hour and the day window.
	addrSpray    int
	addrSlow     int
	loginAddrs   int
	loginAddrCap int
	loginSlow    int
	// How long a key's state matters after its last failure: its
	// longest window.
	addrKeep, loginKeep time.Duration
	// The slow windows (Config.HourWindow, Config.DayWindow).
	hourWindow, dayWindow window
}

// shapeOf returns the layout of cfg.
func shapeOf(cfg *Config) shape {
	var t shape
	t.hourWindow = newWindow(cfg.HourWindow, hourBuckets)
	t.dayWindow = newWindow(cfg.DayWindow, dayBuckets)
	t.addrSpray = cfg.AddrFailures
	t.addrSlow = t.addrSpray + 2*cfg.SprayLogins
	t.loginAddrs = cfg.LoginFailures
	t.loginAddrCap = max(cfg.LoginMinAddrs, minLoginAddrs)
	t.loginSlow = t.loginAddrs + 3*t.loginAddrCap
	t.addrKeep = max(cfg.AddrWindow, keepFor(cfg.spray(), cfg.SprayWindow),
		keepFor(cfg.AddrHourFailures > 0, t.hourWindow.span()), keepFor(cfg.AddrDayFailures > 0, t.dayWindow.span()))
	t.loginKeep = max(cfg.LoginWindow,
		keepFor(cfg.LoginHourFailures > 0, t.hourWindow.span()), keepFor(cfg.LoginDayFailures > 0, t.dayWindow.span()))
	return t
}

// addrKey is a client address as counted: the IPv4 address (in its
// IPv4-mapped IPv6 form) or the IPv6 address masked to Config.IPv6Prefix.
// It holds no pointer, so maps of it are not scanned by the GC.
type addrKey struct{ hi, lo uint64 }

// pairKey is a (login, address) pair; the login by its hash.
type pairKey struct {
	login uint64
	addr  addrKey
}

// staleKey is a (login, address, password hash) triple.
type staleKey struct {
	pair pairKey
	hash uint32
}

// kgKey is a known-good (login, address); the login in full, for
// persistence.
type kgKey struct {
	login string
	addr  addrKey
}

// histKey names what an automatic ban blocked, for progressive lengths.
type histKey struct {
	login uint64
	addr  addrKey
	bits  uint8
	kind  Kind
}

type hist struct {
	len time.Duration // the last automatic ban's length
	end int64         // and its end
}

// ban is a Ban as held: with its end in unix nanoseconds (0: never).
type ban struct {
	Ban
	exp int64
}

func (b *ban) live(n int64) bool { return b.exp == 0 || n < b.exp }

func (b *ban) ref() BanRef {
	return BanRef{Found: true, ID: b.ID, Prefix: b.Prefix, Expires: b.Expires, Reason: b.Reason}
}

// New returns an empty tracker. cfg must be valid (Config.Validate).
func New(cfg Config) *Tracker {
	t := &Tracker{
		cfg:       cfg,
		seed:      maphash.MakeSeed(),
		loginBans: map[string][]*ban{},
		byID:      map[int64]*ban{},
		nextID:    1,
		minExp:    math.MaxInt64,
		hist:      map[histKey]hist{},
		stale:     map[staleKey]int64{},
	}
	t.shape = shapeOf(&cfg)
	t.v6bits = cfg.IPv6Prefix
	t.addrs = newLRU[addrKey](cfg.MaxKeys, t.addrSlow+2)
	t.logins = newLRU[uint64](cfg.MaxKeys, t.loginSlow+2)
	t.pairs = newLRU[pairKey](cfg.MaxKeys, pairStride)
	t.pairs.drop = func(k pairKey, w []int64) {
		for j := 0; j < pairSlots; j++ {
			t.forgetSlotLocked(k, w[2*j:2*j+2])
		}
	}
	t.known = newLRU[kgKey](cfg.MaxKnownGood, 0)
	if cfg.SurgeEnabled || cfg.TrackCountries {
		t.countries = newLRU[uint64](cfg.MaxKnownGood, 1)
	}
	return t
}

func keepFor(on bool, d time.Duration) time.Duration {
	if on {
		return d
	}
	return 0
}

// Config returns the tracker's configuration.
func (t *Tracker) Config() Config {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cfg
}

func (t *Tracker) keyOf(a netip.Addr) addrKey {
	a = a.Unmap()
	b := a.As16()
	k := addrKey{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
	if a.Is6() {
		if bits := t.v6bits; bits <= 64 {
			k.hi &= ^uint64(0) << (64 - bits)
			k.lo = 0
		} else {
			k.lo &= ^uint64(0) << (128 - bits)
		}
	}
	return k
}

func (t *Tracker) prefixOf(k addrKey) netip.Prefix {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	a := netip.AddrFrom16(b)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), 32)
	}
	return netip.PrefixFrom(a, t.v6bits)
}

func (t *Tracker) loginHash(login string) uint64 { return maphash.String(t.seed, login) }

// pwHash maps a password hash to a nonzero uint32 (FNV-1a).
func pwHash(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	if h == 0 {
		h = 1
	}
	return h
}

// Record takes one reported login result and returns the bans it created
// (the caller persists and logs them).
//
// A success makes (login, address) known good and forgets the password
// hash as a failed one. A failure from an address inside an active
// address ban, or for a login inside an active login ban, is not counted:
// attempts during a ban never extend it. A failure that repeats a
// password hash the (login, address) already failed with within
// StaleWindow counts once.
func (t *Tracker) Record(ev Event, now time.Time) []Ban {
	addr := ev.Addr.Unmap()
	if !addr.IsValid() {
		return nil
	}
	n := now.UnixNano()
	ak := t.keyOf(addr)
	var lh uint64
	if ev.Login != "" {
		lh = t.loginHash(ev.Login)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ev.Success {
		t.successLocked(ev.Login, lh, ak, ev.PwHash, n)
		if ev.Login != "" {
			t.noteCountryLocked(lh, ev.Country, n)
		}
		return nil
	}
	if t.addrBanLocked(addr, n) != nil {
		return nil
	}
	if ev.Login != "" {
		if t.loginBanLocked(ev.Login, n) != nil {
			return nil
		}
		if !t.pairFailLocked(pairKey{lh, ak}, ev.PwHash, n) {
			return nil
		}
	}
	return t.countLocked(ev.Login, lh, ak, now, n)
}

func (t *Tracker) successLocked(login string, lh uint64, ak addrKey, pwhash string, n int64) {
	if login == "" {
		return
	}
	if t.cfg.KnownGoodFor > 0 {
		k := kgKey{login, ak}
		if _, ok := t.known.get(k); !ok {
			k.login = strings.Clone(login) // not a slice of the caller's request
		}
		t.known.upsert(k, n)
	}
	if pwhash == "" {
		return
	}
	pk := pairKey{lh, ak}
	if i, ok := t.pairs.get(pk); ok {
		w := t.pairs.w(i)
		h := pwHash(pwhash)
		for j := 0; j < pairSlots; j++ {
			if slotHash(w[2*j]) == h {
				t.forgetSlotLocked(pk, w[2*j:2*j+2])
			}
		}
	}
}

// forgetSlotLocked empties a pair's password slot.
func (t *Tracker) forgetSlotLocked(pk pairKey, s []int64) {
	if s[1] != 0 && int(slotCount(s[0])) >= t.cfg.StaleRepeats {
		delete(t.stale, staleKey{pk, slotHash(s[0])})
	}
	s[0], s[1] = 0, 0
}

// setSlotLocked records a failure with hash h in a pair's slot.
func (t *Tracker) setSlotLocked(pk pairKey, s []int64, h uint32, count uint32, n int64) {
	s[0], s[1] = int64(uint64(h)<<32|uint64(count)), n
	if int(count) >= t.cfg.StaleRepeats {
		t.stale[staleKey{pk, h}] = n
	}
}

func slotHash(w int64) uint32  { return uint32(uint64(w) >> 32) }
func slotCount(w int64) uint32 { return uint32(w) }

// pairFailLocked records a failure of (login, address) with pwhash and
// reports whether it is fresh: not a repeat of a hash that failed within
// StaleWindow.
func (t *Tracker) pairFailLocked(pk pairKey, pwhash string, n int64) bool {
	w := t.pairs.w(t.pairs.upsert(pk, n))
	since := n - int64(t.cfg.StaleWindow)
	if pwhash == "" {
		if w[pairHashless+1] <= since {
			w[pairHashless] = 0
		}
		w[pairHashless]++
		w[pairHashless+1] = n
		return true
	}
	h := pwHash(pwhash)
	oldest := 0
	for j := 0; j < pairSlots; j++ {
		s := w[2*j : 2*j+2]
		if s[1] != 0 && slotHash(s[0]) == h {
			if s[1] > since {
				t.setSlotLocked(pk, s, h, min(slotCount(s[0]), math.MaxUint32-1)+1, n)
				return false
			}
			oldest = j
			break
		}
		if s[1] < w[2*oldest+1] {
			oldest = j
		}
	}
	s := w[2*oldest : 2*oldest+2]
	t.forgetSlotLocked(pk, s)
	t.setSlotLocked(pk, s, h, 1, n)
	return true
}

// countLocked counts a fresh failure toward the rules and bans what
// crossed a threshold. When several rules of one target cross at once,
// the one with the longest ban bans: the day window, then the hour, then
// the fast rules. A ban clears the windows no longer than its rule's, so
// that the slower windows keep counting a patient attacker across bans.
func (t *Tracker) countLocked(login string, lh uint64, ak addrKey, now time.Time, n int64) []Ban {
	c := &t.cfg
	var out []Ban
	// A known-good (login, address) failing is its owner's typo: it
	// counts toward the fast rules only.
	slow := !(login != "" && t.knownGoodLocked(login, ak, n))
	aw := t.addrs.w(t.addrs.upsert(ak, n))
	ringAdd(aw[:c.AddrFailures], n)
	if c.spray() && login != "" {
		setAdd2(aw[t.addrSpray:t.addrSlow], int64(lh), n)
	}
	if slow {
		t.hourWindow.add(&aw[t.addrSlow], n)
		t.dayWindow.add(&aw[t.addrSlow+1], n)
		t.surge.add(n)
	}
	if login != "" {
		lw := t.logins.w(t.logins.upsert(lh, n))
		ringAdd(lw[:c.LoginFailures], n)
		setAdd3(lw[t.loginAddrs:t.loginSlow], ak, n)
		if slow {
			t.hourWindow.add(&lw[t.loginSlow], n)
			t.dayWindow.add(&lw[t.loginSlow+1], n)
		}
		since := n - int64(c.LoginWindow)
		var reason string
		var length time.Duration
		switch {
		case crossed(c.LoginDayFailures, t.dayWindow, lw[t.loginSlow+1], n):
			reason, length = ReasonLoginDay, c.LoginDayBan
			clear(lw)
		case crossed(c.LoginHourFailures, t.hourWindow, lw[t.loginSlow], n):
			reason, length = ReasonLoginHour, c.LoginHourBan
			clear(lw[:t.loginSlow+1])
		case (ringCount(lw[:c.LoginFailures], since) >= c.LoginFailures && setCount3(lw[t.loginAddrs:t.loginSlow], since) >= c.LoginMinAddrs) ||
			t.probationLocked(login, lh, ak, n):
			reason, length = ReasonLoginAttack, c.LoginBan
			clear(lw[:t.loginSlow])
		}
		if reason != "" {
			b := t.autoBanLocked(histKey{login: lh, kind: BanLogin}, Ban{Kind: BanLogin, Login: strings.Clone(login), Reason: reason}, length, now, n)
			out = append(out, b)
		}
	}
	var reason string
	var length time.Duration
	switch {
	case crossed(c.AddrDayFailures, t.dayWindow, aw[t.addrSlow+1], n):
		reason, length = ReasonAddrDay, c.AddrDayBan
		clear(aw)
	case crossed(c.AddrHourFailures, t.hourWindow, aw[t.addrSlow], n):
		reason, length = ReasonAddrHour, c.AddrHourBan
		clear(aw[:t.addrSlow+1])
	case c.spray() && setCount2(aw[t.addrSpray:t.addrSlow], n-int64(c.SprayWindow)) >= c.SprayLogins:
		reason, length = ReasonSpray, c.SprayBan
		clear(aw[:t.addrSlow])
	case ringCount(aw[:c.AddrFailures], n-int64(c.AddrWindow)) >= c.AddrFailures:
		reason, length = ReasonAddrFailures, c.AddrBan
		clear(aw[:t.addrSlow])
	default:
		return out
	}
	pfx := t.prefixOf(ak)
	b := t.autoBanLocked(histKey{addr: ak, bits: uint8(pfx.Bits()), kind: BanAddr}, Ban{Kind: BanAddr, Prefix: pfx, Reason: reason}, length, now, n)
	out = append(out, b)
	if c.WidenAfter > 0 && pfx.Addr().Is6() {
		out = t.widenLocked(pfx, now, n, out)
	}
	return out
}

// crossed reports whether a slow window that is on (threshold > 0) holds
// threshold failures at n.
func crossed(threshold int, wd window, w int64, n int64) bool {
	return threshold > 0 && wd.count(w, n) >= threshold
}

// probationLocked reports whether a fresh failure of login from ak bans
// the login again at once: progressive login bans are on, the login's
// last automatic ban ended within RepeatMemory, and ak is not known good
// for the login (its owner's typo does not count).
func (t *Tracker) probationLocked(login string, lh uint64, ak addrKey, n int64) bool {
	c := &t.cfg
	if !c.progressive(BanLogin) {
		return false
	}
	h, ok := t.hist[histKey{login: lh, kind: BanLogin}]
	if !ok || n < h.end || n-h.end > int64(c.RepeatMemory) {
		return false
	}
	return !t.knownGoodLocked(login, ak, n)
}

// knownGoodLocked reports whether login succeeded from ak within
// KnownGoodFor.
func (t *Tracker) knownGoodLocked(login string, ak addrKey, n int64) bool {
	if t.cfg.KnownGoodFor <= 0 {
		return false
	}
	i, ok := t.known.get(kgKey{login, ak})
	return ok && t.known.last(i) > n-int64(t.cfg.KnownGoodFor)
}

// ringAdd records a failure at n in the slot of the oldest one.
func ringAdd(r []int64, n int64) {
	oldest := 0
	for i := range r {
		if r[i] < r[oldest] {
			oldest = i
		}
	}
	r[oldest] = n
}

// ringCount counts the failures after since.
func ringCount(r []int64, since int64) int {
	c := 0
	for _, x := range r {
		if x > since && x != 0 {
			c++
		}
	}
	return c
}

// setAdd2 records key at n in a set of (key, last) pairs, replacing the
// least recently seen key when the set is full.
func setAdd2(s []int64, key, n int64) {
	oldest := 0
	for i := 0; i < len(s); i += 2 {
		if s[i+1] != 0 && s[i] == key {
			s[i+1] = n
			return
		}
		if s[i+1] < s[oldest+1] {
			oldest = i
		}
	}
	s[oldest], s[oldest+1] = key, n
}

func setCount2(s []int64, since int64) int {
	c := 0
	for i := 1; i < len(s); i += 2 {
		if s[i] > since && s[i] != 0 {
			c++
		}
	}
	return c
}

// setAdd3 is setAdd2 for address keys: (hi, lo, last) triples.
func setAdd3(s []int64, k addrKey, n int64) {
	hi, lo := int64(k.hi), int64(k.lo)
	oldest := 0
	for i := 0; i < len(s); i += 3 {
		if s[i+2] != 0 && s[i] == hi && s[i+1] == lo {
			s[i+2] = n
			return
		}
		if s[i+2] < s[oldest+2] {
			oldest = i
		}
	}
	s[oldest], s[oldest+1], s[oldest+2] = hi, lo, n
}

func setCount3(s []int64, since int64) int {
	c := 0
	for i := 2; i < len(s); i += 3 {
		if s[i] > since && s[i] != 0 {
			c++
		}
	}
	return c
}

// Check reports the active bans and the stale and known-good state for an
// attempt. It is on the decision path: it does not allocate and takes
// only the read lock.
func (t *Tracker) Check(login string, addr netip.Addr, pwhash string, now time.Time) Status {
	st := Status{UnderAttack: t.underAttack.Load()}
	addr = addr.Unmap()
	n := now.UnixNano()
	var ak addrKey
	var lh uint64
	var ph uint32
	if addr.IsValid() {
		ak = t.keyOf(addr)
	}
	if login != "" {
		lh = t.loginHash(login)
	}
	if pwhash != "" {
		ph = pwHash(pwhash)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if addr.IsValid() {
		if b := t.addrBanLocked(addr, n); b != nil {
			st.AddrBan = b.ref()
		}
	}
	if login == "" {
		return st
	}
	if b := t.loginBanLocked(login, n); b != nil {
		st.LoginBan = b.ref()
	}
	if !addr.IsValid() {
		return st
	}
	st.KnownGood = t.knownGoodLocked(login, ak, n)
	if ph != 0 {
		// The stale set is small (stale clients, not every pair), so
		// this lookup stays in cache.
		if last, ok := t.stale[staleKey{pairKey{lh, ak}, ph}]; ok && last > n-int64(t.cfg.StaleWindow) {
			st.Stale = true
		}
	}
	return st
}

// Counters returns the window counts for login and addr at now.
func (t *Tracker) Counters(login string, addr netip.Addr, now time.Time) Counters {
	var c Counters
	addr = addr.Unmap()
	if !addr.IsValid() {
		return c
	}
	cfg := &t.cfg
	n := now.UnixNano()
	ak := t.keyOf(addr)
	var lh uint64
	if login != "" {
		lh = t.loginHash(login)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i, ok := t.addrs.get(ak); ok {
		w := t.addrs.w(i)
		c.AddrFailures = ringCount(w[:cfg.AddrFailures], n-int64(cfg.AddrWindow))
		if cfg.spray() {
			c.AddrLogins = setCount2(w[t.addrSpray:t.addrSlow], n-int64(cfg.SprayWindow))
		}
		c.AddrHour = t.hourWindow.count(w[t.addrSlow], n)
		c.AddrDay = t.dayWindow.count(w[t.addrSlow+1], n)
	}
	if login == "" {
		return c
	}
	if i, ok := t.logins.get(lh); ok {
		w := t.logins.w(i)
		since := n - int64(cfg.LoginWindow)
		c.LoginFailures = ringCount(w[:cfg.LoginFailures], since)
		c.LoginAddrs = setCount3(w[t.loginAddrs:t.loginSlow], since)
		c.LoginHour = t.hourWindow.count(w[t.loginSlow], n)
		c.LoginDay = t.dayWindow.count(w[t.loginSlow+1], n)
	}
	if i, ok := t.pairs.get(pairKey{lh, ak}); ok {
		w := t.pairs.w(i)
		since := n - int64(cfg.StaleWindow)
		for j := 0; j < pairSlots; j++ {
			if w[2*j+1] > since {
				c.PairFailures += int(slotCount(w[2*j]))
				c.PairHashes++
			}
		}
		if w[pairHashless+1] > since {
			c.PairFailures += int(w[pairHashless])
		}
	}
	return c
}

// KnownGood lists the known-good entries, least recently used first, for
// persistence.
func (t *Tracker) KnownGood() []KnownGood {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]KnownGood, 0, t.known.len())
	t.known.oldestFirst(func(k kgKey, last int64) {
		out = append(out, KnownGood{Login: k.login, Prefix: t.prefixOf(k.addr), Last: time.Unix(0, last).UTC()})
	})
	return out
}

// LoadKnownGood adds stored known-good entries (at start). An entry older
// than one already held for the same login and address is ignored;
// entries without a login or a valid prefix are skipped. A prefix is
// grouped as a client address is (IPv6 per Config.IPv6Prefix).
func (t *Tracker) LoadKnownGood(kg []KnownGood) {
	kg = slices.Clone(kg)
	slices.SortStableFunc(kg, func(a, b KnownGood) int { return a.Last.Compare(b.Last) })
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range kg {
		if e.Login == "" || !e.Prefix.IsValid() {
			continue
		}
		k := kgKey{strings.Clone(e.Login), t.keyOf(e.Prefix.Addr())}
		last := e.Last.UnixNano()
		if i, ok := t.known.get(k); ok && t.known.last(i) >= last {
			continue
		}
		t.known.upsert(k, last)
	}
}

// Stats returns the sizes of the tracker's state.
func (t *Tracker) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Stats{
		Addrs:      t.addrs.len(),
		Logins:     t.logins.len(),
		Pairs:      t.pairs.len(),
		KnownGood:  t.known.len(),
		Remembered: len(t.hist),
		Stale:      len(t.stale),
	}
	for _, b := range t.byID {
		if b.Kind == BanAddr {
			s.AddrBans++
		} else {
			s.LoginBans++
		}
	}
	return s
}

func byID(a, b Ban) int { return cmp.Compare(a.ID, b.ID) }

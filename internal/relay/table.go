package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"mailgate/internal/rules"
)

// Size limits of the text fields of a manual permit.
const (
	MaxLoginLen   = 512
	MaxCommentLen = 1024
	MaxByLen      = 256
)

// Table holds the relay permits and the recent logins of each network.
//
// Memory is bounded by Config.MaxPermits twice over: permits live in a
// map from network to entry plus a min-heap on Expires, so a full table
// evicts the permit closest to expiry in O(log n) and Expire removes k
// expired permits in O(k log n); the networks whose logins are remembered
// form a second map with a least-recently-seen list, each keeping at most
// max(SharedLogins+8, 10) distinct logins (the most recent ones).
type Table struct {
	set atomic.Pointer[settings] // swapped whole by Reconfigure

	mu      sync.RWMutex
	permits map[netKey]*entry
	heap    []slot // min-heap on Expires
	nets    map[netKey]*netLogins
	newest  *netLogins // most recently seen network
	oldest  *netLogins // least recently seen network
	evicted uint64
}

// settings are a table's configuration and what follows from it; never
// modified once stored.
type settings struct {
	cfg    Config // Never normalized
	grant  [256]bool
	track  bool // remember logins per network (SharedWindow > 0)
	perNet int  // logins kept per network
}

func (t *Table) s() *settings { return t.set.Load() }

// netKey is a permit network as a map key: its 16-byte address (IPv4 in
// its mapped form). The prefix length follows from the family and
// Config.IPv6Prefix, and a pointer-free key hashes faster and is not
// scanned by the garbage collector.
type netKey [16]byte

func keyOf(p netip.Prefix) netKey { return p.Addr().As16() }

// entry is one permit and its place in the heap.
type entry struct {
	p Permit
	i int
}

// slot is a heap element. It holds the expiry (unix nanoseconds) so that
// sifting compares within the heap's array instead of visiting entries.
type slot struct {
	exp int64
	e   *entry
}

// New returns an empty table. cfg must be valid: New panics, naming the
// problem, if Config.Validate fails (the caller validates the config
// when it loads it).
func New(cfg Config) *Table {
	if err := cfg.Validate(); err != nil {
		panic(fmt.Sprintf("relay.New: invalid config: %v", err))
	}
	t := &Table{
		permits: map[netKey]*entry{},
		nets:    map[netKey]*netLogins{},
	}
	t.set.Store(settingsOf(cfg))
	return t
}

// ErrNeedsRestart is returned by Reconfigure for a change it cannot make
// to a live table.
var ErrNeedsRestart = errors.New("needs a restart")

// Reconfigure replaces the table's configuration (a reload): TTL (for
// permits granted or refreshed from now on; those held keep their
// expiry), services, never networks, shared-network detection. The
// permits held stay, also those a new never network covers (remove them
// with Remove if they must go). IPv6Prefix and MaxPermits key and size
// the table: a change of either is refused with ErrNeedsRestart. cfg must
// be valid.
func (t *Table) Reconfigure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.s().cfg
	if cfg.IPv6Prefix != old.IPv6Prefix || cfg.MaxPermits != old.MaxPermits {
		return ErrNeedsRestart
	}
	t.set.Store(settingsOf(cfg))
	return nil
}

func settingsOf(cfg Config) *settings {
	s := &settings{
		cfg:    cfg,
		track:  cfg.SharedWindow > 0,
		perNet: max(cfg.SharedLogins+8, maxAccounts),
	}
	for _, sv := range cfg.Services {
		s.grant[sv] = true
	}
	s.cfg.Services = slices.Clone(cfg.Services)
	s.cfg.Never = make([]netip.Prefix, 0, len(cfg.Never))
	for _, p := range cfg.Never {
		if !p.IsValid() {
			continue
		}
		// ::ffff:10.0.0.0/104 is 10.0.0.0/8: addresses are unmapped
		// before they are compared.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.cfg.Never = append(s.cfg.Never, p.Masked())
	}
	return s
}

// Key returns the permit network of addr: the address itself for IPv4
// (IPv4-mapped IPv6 addresses are IPv4), the enclosing
// Config.IPv6Prefix network for IPv6. The zone is dropped. It returns the
// zero Prefix for the zero Addr.
func (t *Table) Key(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return netip.PrefixFrom(addr, 32)
	}
	p, _ := addr.Prefix(t.s().cfg.IPv6Prefix) // drops the zone; bits validated
	return p
}

// never reports whether addr (unmapped, no zone) is in Config.Never.
func (t *Table) never(addr netip.Addr) bool {
	for _, p := range t.s().cfg.Never {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// plain returns addr unmapped and without zone.
func plain(addr netip.Addr) netip.Addr { return addr.Unmap().WithZone("") }

// Login records a successful login (login as normalized by the caller;
// logins are compared exactly, and cut to MaxLoginLen bytes) of service
// svc from addr, seen by door.
//
// Every valid login, of any service and from any address, is remembered
// for its network's shared detection (Shared). Then, in this order:
//
//   - BadAddress: addr is not valid; zero Permit.
//   - NeverNetwork: addr is in Config.Never; zero Permit.
//   - SharedRefused: the network is shared and RefuseShared is on. Its
//     automatic permit, if it had one, is removed and returned so the
//     caller can delete it from its store; otherwise the zero Permit (a
//     manual permit stays). A login of a non-granting service that
//     removed nothing gives NotGranting instead.
//   - NotGranting: svc is not in Config.Services; zero Permit.
//   - Refreshed: the network has an unexpired permit, now returned with
//     Expires = now+TTL, Logins+1, Login, Service and Door of this login,
//     Granted kept. A manual permit expiring later than now+TTL stays
//     manual: it keeps its Expires, Door, Comment and By.
//   - Granted: a new permit (Expires = now+TTL, Logins 1), returned. An
//     expired permit not yet removed by Expire is replaced. When the
//     table is full, the permit closest to expiry is evicted first.
//
// The Permit returned for Granted and Refreshed is what the caller
// persists.
func (t *Table) Login(login string, svc rules.Service, door string, addr netip.Addr, now time.Time) (Permit, Outcome) {
	if !addr.IsValid() {
		return Permit{}, BadAddress
	}
	addr = plain(addr)
	key := t.Key(addr)
	login = clip(login)
	t.mu.Lock()
	defer t.mu.Unlock()
	shared := t.seeLocked(key, login, now)
	if t.never(addr) {
		return Permit{}, NeverNetwork
	}
	granting := t.s().grant[svc]
	if shared && t.s().cfg.RefuseShared {
		var removed Permit
		if e := t.permits[keyOf(key)]; e != nil && !e.p.Manual() {
			removed = e.p
			t.removeLocked(e)
		}
		if granting || removed.Prefix.IsValid() {
			return removed, SharedRefused
		}
		return Permit{}, NotGranting
	}
	if !granting {
		return Permit{}, NotGranting
	}
	exp := now.Add(t.s().cfg.TTL)
	if e := t.permits[keyOf(key)]; e != nil {
		p := &e.p
		if now.Before(p.Expires) {
			p.Logins++
			p.Login, p.Service = login, svc
			if !p.Manual() || !p.Expires.After(exp) {
				p.Door, p.Expires = door, exp
				t.fixLocked(e.i)
			}
			return *p, Refreshed
		}
		e.p = Permit{Prefix: key, Login: login, Service: svc, Door: door, Granted: now, Expires: exp, Logins: 1}
		t.fixLocked(e.i)
		return e.p, Granted
	}
	p := Permit{Prefix: key, Login: login, Service: svc, Door: door, Granted: now, Expires: exp, Logins: 1}
	t.insertLocked(p)
	return p, Granted
}

// Check returns the permit covering addr if it has not expired at now. An
// address in Config.Never has none, even inside a permitted IPv6 network.
// It does not allocate.
func (t *Table) Check(addr netip.Addr, now time.Time) (Permit, bool) {
	if !addr.IsValid() {
		return Permit{}, false
	}
	addr = plain(addr)
	if t.never(addr) {
		return Permit{}, false
	}
	key := t.Key(addr)
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.permits[keyOf(key)]; e != nil && now.Before(e.p.Expires) {
		return e.p, true
	}
	return Permit{}, false
}

// Add adds a manual permit, replacing any permit of its network, and
// returns it as stored. p.Prefix is one address (an IPv6 address is
// widened to its Key network) or exactly a Key network; p.Expires is
// after now and at most MaxManualFor ahead. Door becomes DoorManual,
// Granted now, Logins 0; Login, Service, Comment and By are kept.
func (t *Table) Add(p Permit, now time.Time) (Permit, error) {
	if !p.Prefix.IsValid() {
		return Permit{}, fmt.Errorf("relay permit: no valid address")
	}
	addr := plain(p.Prefix.Addr())
	key := t.Key(addr)
	if !p.Prefix.IsSingleIP() && p.Prefix.Masked() != key {
		if addr.Is4() {
			return Permit{}, fmt.Errorf("relay permit for %s: an IPv4 permit covers one address, not a network", p.Prefix)
		}
		return Permit{}, fmt.Errorf("relay permit for %s: an IPv6 permit covers one address's /%d network (ipv6_prefix), not a /%d", p.Prefix, t.s().cfg.IPv6Prefix, p.Prefix.Bits())
	}
	if t.never(addr) {
		return Permit{}, fmt.Errorf("relay permit for %s: the address is in a network that never gets relay permits (never)", p.Prefix)
	}
	switch {
	case !p.Expires.After(now):
		return Permit{}, fmt.Errorf("relay permit for %s: expiry %s is not in the future", key, p.Expires.UTC().Format(time.RFC3339))
	case p.Expires.After(now.Add(MaxManualFor)):
		return Permit{}, fmt.Errorf("relay permit for %s: expiry %s is more than %d days ahead", key, p.Expires.UTC().Format(time.RFC3339), MaxManualFor/(24*time.Hour))
	}
	if err := checkText("login", p.Login, MaxLoginLen); err != nil {
		return Permit{}, fmt.Errorf("relay permit for %s: %w", key, err)
	}
	if err := checkText("comment", p.Comment, MaxCommentLen); err != nil {
		return Permit{}, fmt.Errorf("relay permit for %s: %w", key, err)
	}
	if err := checkText("by", p.By, MaxByLen); err != nil {
		return Permit{}, fmt.Errorf("relay permit for %s: %w", key, err)
	}
	p.Prefix, p.Door, p.Granted, p.Logins = key, DoorManual, now, 0
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.permits[keyOf(key)]; e != nil {
		e.p = p
		t.fixLocked(e.i)
	} else {
		t.insertLocked(p)
	}
	return p, nil
}

// clip bounds a login kept in memory to MaxLoginLen bytes, cut at a
// character boundary. The doors bound their input long before.
func clip(login string) string {
	if len(login) <= MaxLoginLen {
		return login
	}
	i := MaxLoginLen
	for i > 0 && !utf8.RuneStart(login[i]) {
		i--
	}
	return login[:i]
}

// checkText refuses an over-long, non-UTF-8 or control-character field.
func checkText(name, s string, limit int) error {
	switch {
	case len(s) > limit:
		return fmt.Errorf("%s is %d bytes, more than %d", name, len(s), limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", name)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("%s contains a control character", name)
	}
	return nil
}

// Remove removes the permit covering addr, also an expired one, and
// returns it.
func (t *Table) Remove(addr netip.Addr) (Permit, bool) {
	key := t.Key(addr)
	if !key.IsValid() {
		return Permit{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.permits[keyOf(key)]
	if e == nil {
		return Permit{}, false
	}
	t.removeLocked(e)
	return e.p, true
}

// List returns the permits unexpired at now, latest expiry first, each
// with what is known about its network's logins.
func (t *Table) List(now time.Time) []Info {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Info, 0, len(t.permits))
	for _, e := range t.permits {
		if !now.Before(e.p.Expires) {
			continue
		}
		in := Info{Permit: e.p}
		in.Shared, in.Accounts = t.sharedLocked(e.p.Prefix, now)
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := b.Expires.Compare(a.Expires); c != 0 {
			return c
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return out
}

// Shared reports whether addr's network is shared at now (SharedLogins
// distinct logins within SharedWindow), and the distinct logins seen from
// it within SharedWindow, most recent first, at most 10.
func (t *Table) Shared(addr netip.Addr, now time.Time) (shared bool, accounts []string) {
	key := t.Key(addr)
	if !key.IsValid() {
		return false, nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.sharedLocked(key, now)
}

// Expire removes the permits expired at now and returns them, earliest
// expiry first (Check ignores them already: Expire only frees memory and
// tells the caller what to log and delete). It also forgets the networks
// with no login within SharedWindow.
func (t *Table) Expire(now time.Time) []Permit {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Permit
	for len(t.heap) > 0 && !now.Before(t.heap[0].e.p.Expires) {
		e := t.heap[0].e
		t.removeLocked(e)
		out = append(out, e.p)
	}
	t.forgetStaleLocked(now)
	return out
}

// Restore loads stored permits, typically at start, and returns how many
// it kept. It skips permits expired at now, in Config.Never, invalid (no
// address, an IPv4 network wider than one address, expiring more than
// MaxManualFor ahead, a text field longer than Add accepts) or IPv6 networks wider than Config.IPv6Prefix (a
// narrower setting cannot tell which address logged in). IPv6 permits
// are re-keyed to the current IPv6Prefix; of permits falling on one
// network, and against permits already in the table, the latest Expires
// wins. At most MaxPermits are kept, the latest-expiring first.
func (t *Table) Restore(ps []Permit, now time.Time) int {
	cand := make([]Permit, 0, len(ps))
	for _, p := range ps {
		if !p.Prefix.IsValid() || !now.Before(p.Expires) || p.Expires.After(now.Add(MaxManualFor)) {
			continue
		}
		addr := plain(p.Prefix.Addr())
		if addr.Is4() && !p.Prefix.IsSingleIP() {
			continue // an IPv4 network; also a mapped IPv6 one
		}
		if addr.Is6() && p.Prefix.Bits() < t.s().cfg.IPv6Prefix {
			continue
		}
		if t.never(addr) || len(p.Login) > MaxLoginLen || len(p.Comment) > MaxCommentLen || len(p.By) > MaxByLen {
			continue
		}
		p.Prefix = t.Key(addr)
		cand = append(cand, p)
	}
	slices.SortStableFunc(cand, func(a, b Permit) int { return b.Expires.Compare(a.Expires) })
	t.mu.Lock()
	defer t.mu.Unlock()
	kept := 0
	for _, p := range cand {
		if e := t.permits[keyOf(p.Prefix)]; e != nil {
			if p.Expires.After(e.p.Expires) {
				e.p = p
				t.fixLocked(e.i)
				kept++
			}
			continue
		}
		if len(t.permits) >= t.s().cfg.MaxPermits && !t.heap[0].e.p.Expires.Before(p.Expires) {
			continue // every permit held expires no earlier
		}
		t.insertLocked(p)
		kept++
	}
	return kept
}

// Len returns the number of permits held, including expired ones Expire
// has not removed yet.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.permits)
}

// Evicted returns how many permits were evicted, unexpired, to make room
// for another (MaxPermits), since New. Evicted permits are not returned
// to the caller; a store deleting expired rows loses them by themselves,
// and Restore keeps at most MaxPermits.
func (t *Table) Evicted() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.evicted
}

// insertLocked adds p, whose network has no entry, evicting the permit
// closest to expiry when the table is full.
func (t *Table) insertLocked(p Permit) {
	if len(t.permits) >= t.s().cfg.MaxPermits && len(t.heap) > 0 {
		t.removeLocked(t.heap[0].e)
		t.evicted++
	}
	e := &entry{p: p, i: len(t.heap)}
	t.permits[keyOf(p.Prefix)] = e
	t.heap = append(t.heap, slot{exp: p.Expires.UnixNano(), e: e})
	t.up(e.i)
}

// removeLocked removes e from the map and the heap.
func (t *Table) removeLocked(e *entry) {
	delete(t.permits, keyOf(e.p.Prefix))
	i, last := e.i, len(t.heap)-1
	if i != last {
		t.swap(i, last)
	}
	t.heap[last] = slot{}
	t.heap = t.heap[:last]
	if i != last {
		t.fixLocked(i)
	}
	e.i = -1
}

// The heap: entry e sits at heap[e.i]; no child expires before its parent.

func (t *Table) less(i, j int) bool { return t.heap[i].exp < t.heap[j].exp }

func (t *Table) swap(i, j int) {
	t.heap[i], t.heap[j] = t.heap[j], t.heap[i]
	t.heap[i].e.i, t.heap[j].e.i = i, j
}

// fixLocked restores the heap after the expiry of entry i changed.
func (t *Table) fixLocked(i int) {
	t.heap[i].exp = t.heap[i].e.p.Expires.UnixNano()
	if !t.down(i) {
		t.up(i)
	}
}

func (t *Table) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !t.less(i, parent) {
			return
		}
		t.swap(i, parent)
		i = parent
	}
}

// down reports whether entry i moved.
func (t *Table) down(i int) bool {
	start, n := i, len(t.heap)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && t.less(r, c) {
			c = r
		}
		if !t.less(c, i) {
			break
		}
		t.swap(i, c)
		i = c
	}
	return i > start
}

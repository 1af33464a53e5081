package abuse

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// histSweepEvery is how often Expire sweeps the remembered past bans.
const histSweepEvery = time.Minute

// pickLive returns the live ban among bs that ends last.
func pickLive(bs []*ban, n int64) *ban {
	var best *ban
	for _, b := range bs {
		if !b.live(n) {
			continue
		}
		if best == nil || b.exp == 0 || (best.exp != 0 && b.exp > best.exp) {
			best = b
		}
	}
	return best
}

// addrBanLocked returns the most specific live ban covering a.
func (t *Tracker) addrBanLocked(a netip.Addr, n int64) *ban {
	bs, ok := t.addrBans.Lookup(a)
	if !ok {
		return nil
	}
	if b := pickLive(bs, n); b != nil {
		return b
	}
	// Every ban at the longest match has ended and Expire has not run
	// yet: look at the covering networks, most specific first.
	for _, bs := range t.addrBans.Supernets(netip.PrefixFrom(a, a.BitLen())) {
		if b := pickLive(bs, n); b != nil {
			return b
		}
	}
	return nil
}

func (t *Tracker) loginBanLocked(login string, n int64) *ban {
	return pickLive(t.loginBans[login], n)
}

// autoBanLocked creates an automatic ban of base length, or longer for a
// repeat offender when progressive bans are on.
func (t *Tracker) autoBanLocked(hk histKey, b Ban, base time.Duration, now time.Time, n int64) Ban {
	c := &t.cfg
	length := base
	if c.progressive(hk.kind) {
		if h, ok := t.hist[hk]; ok && n-h.end <= int64(c.RepeatMemory) {
			l := c.RepeatMax
			if f := float64(h.len) * c.factor(hk.kind); f < float64(c.RepeatMax) {
				l = time.Duration(f)
			}
			length = max(length, l)
		}
		if _, ok := t.hist[hk]; !ok && len(t.hist) >= c.MaxKeys {
			for k := range t.hist { // full: forget any one
				delete(t.hist, k)
				break
			}
		}
		t.hist[hk] = hist{len: length, end: n + int64(length)}
	}
	b.Created, b.Expires, b.CreatedBy = now, now.Add(length), CreatedByMailgate
	return t.insertLocked(b)
}

// insertLocked assigns b an ID when it has none and holds it.
func (t *Tracker) insertLocked(b Ban) Ban {
	if b.ID == 0 && t.ids != nil {
		if id := t.ids(); id > 0 {
			if _, taken := t.byID[id]; !taken {
				b.ID = id
			}
		}
	}
	if b.ID == 0 {
		b.ID = t.nextID
	}
	if b.ID >= t.nextID {
		t.nextID = b.ID + 1
	}
	h := &ban{Ban: b}
	if !b.Expires.IsZero() {
		h.exp = b.Expires.UnixNano()
		t.minExp = min(t.minExp, h.exp)
	}
	t.byID[b.ID] = h
	if b.Kind == BanLogin {
		t.loginBans[b.Login] = append(t.loginBans[b.Login], h)
	} else {
		t.addrBans.Modify(b.Prefix, func(bs []*ban, _ bool) ([]*ban, bool) {
			return append(bs, h), false
		})
	}
	return b
}

func (t *Tracker) removeLocked(h *ban) {
	delete(t.byID, h.ID)
	drop := func(bs []*ban) []*ban {
		return slices.DeleteFunc(bs, func(x *ban) bool { return x == h })
	}
	if h.Kind == BanLogin {
		if bs := drop(t.loginBans[h.Login]); len(bs) > 0 {
			t.loginBans[h.Login] = bs
		} else {
			delete(t.loginBans, h.Login)
		}
		return
	}
	t.addrBans.Modify(h.Prefix, func(bs []*ban, ok bool) ([]*ban, bool) {
		if !ok {
			return nil, true
		}
		bs = drop(bs)
		return bs, len(bs) == 0
	})
}

// widenLocked bans the /56 around child (then the /48) when WidenAfter
// distinct networks of child's size inside it are banned at once. The
// wider ban lasts until the latest end among them.
func (t *Tracker) widenLocked(child netip.Prefix, now time.Time, n int64, out []Ban) []Ban {
	for _, bits := range [...]int{56, 48} { // narrowest first
		cb := child.Bits()
		if bits >= cb {
			continue
		}
		parent := netip.PrefixFrom(child.Addr(), bits).Masked()
		for _, bs := range t.addrBans.Supernets(parent) {
			if pickLive(bs, n) != nil {
				return out // already banned as a whole, or wider
			}
		}
		count, end := 0, int64(0)
		for p, bs := range t.addrBans.Subnets(parent) {
			if p.Bits() != cb {
				continue
			}
			if b := pickLive(bs, n); b != nil {
				count++
				end = max(end, b.exp)
			}
		}
		if count < t.cfg.WidenAfter || end <= n {
			return out
		}
		b := t.insertLocked(Ban{Kind: BanAddr, Prefix: parent, Reason: ReasonWidened,
			Created: now, Expires: now.Add(time.Duration(end - n)), CreatedBy: CreatedByMailgate})
		out = append(out, b)
		child = parent
	}
	return out
}

// AddBan holds a manual ban, or a stored ban at start. It assigns an ID
// when b.ID is 0 (a stored ban keeps its own, and later IDs follow it),
// sets Created to now when zero and Reason to "manual" when empty. An
// address ban's prefix is masked (an IPv4-mapped prefix becomes IPv4); a
// login is trimmed and lower-cased. Expires may be zero only for a manual
// ban. A ban that has already ended is accepted, and the next Expire
// returns it.
func (t *Tracker) AddBan(b Ban, now time.Time) (Ban, error) {
	if err := checkBan(&b, now); err != nil {
		return Ban{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if b.ID != 0 {
		if _, ok := t.byID[b.ID]; ok {
			return Ban{}, fmt.Errorf("ban %d (%s): the id is taken", b.ID, b.Target())
		}
	}
	switch b.Reason {
	case ReasonLoginAttack, ReasonAddrFailures, ReasonSpray, ReasonAddrHour, ReasonAddrDay, ReasonLoginHour, ReasonLoginDay:
		// A stored automatic ban, reloaded at start: remember it, so that a
		// restart does not reset progressive lengths.
		if t.cfg.progressive(b.Kind) {
			t.hist[t.histKeyOf(&b)] = hist{len: b.Expires.Sub(b.Created), end: b.Expires.UnixNano()}
		}
	}
	return t.insertLocked(b), nil
}

func checkBan(b *Ban, now time.Time) error {
	switch b.Kind {
	case BanAddr:
		if b.Login != "" {
			return fmt.Errorf("address ban names a login (%q)", b.Login)
		}
		if !b.Prefix.IsValid() {
			return errors.New("address ban without an address or network")
		}
		p := b.Prefix
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return fmt.Errorf("ban %s: not an IPv4 network", p)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if (p.Addr().Is4() && p.Bits() < 8) || (p.Addr().Is6() && p.Bits() < 16) {
			return fmt.Errorf("ban %s: wider than /8 (IPv4) or /16 (IPv6)", p)
		}
		b.Prefix = p
	case BanLogin:
		if b.Prefix.IsValid() {
			return fmt.Errorf("login ban names an address (%s)", b.Prefix)
		}
		if !utf8.ValidString(b.Login) {
			return fmt.Errorf("login ban: %q is not valid UTF-8", b.Login)
		}
		b.Login = strings.ToLower(strings.TrimSpace(b.Login))
		switch {
		case b.Login == "":
			return errors.New("login ban without a login")
		case len(b.Login) > MaxLoginLen:
			return fmt.Errorf("login ban: login longer than %d bytes", MaxLoginLen)
		}
	default:
		return fmt.Errorf("ban of unknown kind %d", b.Kind)
	}
	if b.ID < 0 {
		return fmt.Errorf("ban %s: negative id %d", b.Target(), b.ID)
	}
	switch b.Reason {
	case "":
		b.Reason = ReasonManual
	case ReasonManual, ReasonLoginAttack, ReasonAddrFailures, ReasonSpray, ReasonWidened,
		ReasonAddrHour, ReasonAddrDay, ReasonLoginHour, ReasonLoginDay:
	default:
		return fmt.Errorf("ban %s: unknown reason %q", b.Target(), b.Reason)
	}
	if b.Created.IsZero() {
		b.Created = now
	}
	switch {
	case b.Expires.IsZero() && b.Reason != ReasonManual:
		return fmt.Errorf("ban %s: an automatic ban (%s) needs an end", b.Target(), b.Reason)
	case !b.Expires.IsZero() && !b.Expires.After(b.Created):
		return fmt.Errorf("ban %s: ends (%s) before it starts (%s)", b.Target(), b.Expires.Format(time.RFC3339), b.Created.Format(time.RFC3339))
	case len(b.Comment) > MaxCommentLen:
		return fmt.Errorf("ban %s: comment longer than %d bytes", b.Target(), MaxCommentLen)
	}
	return nil
}

// RemoveBan lifts the ban with id and returns it. It also forgets the
// past automatic ban of the same target, so that a lifted ban does not
// make the next one longer.
func (t *Tracker) RemoveBan(id int64) (Ban, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.byID[id]
	if !ok {
		return Ban{}, false
	}
	t.liftLocked(h)
	return h.Ban, true
}

func (t *Tracker) liftLocked(h *ban) {
	t.removeLocked(h)
	delete(t.hist, t.histKeyOf(&h.Ban))
}

// histKeyOf names b's target for progressive lengths.
func (t *Tracker) histKeyOf(b *Ban) histKey {
	if b.Kind == BanLogin {
		return histKey{login: t.loginHash(b.Login), kind: BanLogin}
	}
	return histKey{addr: t.keyOf(b.Prefix.Addr()), bits: uint8(b.Prefix.Bits()), kind: BanAddr}
}

// RemoveBansFor lifts every address ban whose network contains or equals
// prefix (when prefix is valid; an address is its /32 or /128) and every
// ban of login (when not empty), and returns them sorted by ID.
func (t *Tracker) RemoveBansFor(prefix netip.Prefix, login string) []Ban {
	if prefix.IsValid() && prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
		prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
	}
	login = strings.ToLower(strings.TrimSpace(login))
	t.mu.Lock()
	defer t.mu.Unlock()
	var hs []*ban
	if prefix.IsValid() {
		for _, bs := range t.addrBans.Supernets(prefix.Masked()) {
			hs = append(hs, bs...)
		}
	}
	if login != "" {
		hs = append(hs, t.loginBans[login]...)
	}
	out := make([]Ban, 0, len(hs))
	for _, h := range hs {
		t.liftLocked(h)
		out = append(out, h.Ban)
	}
	slices.SortFunc(out, byID)
	return out
}

// Bans returns the bans active at now, sorted by ID.
func (t *Tracker) Bans(now time.Time) []Ban {
	n := now.UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]Ban, 0, len(t.byID))
	for _, h := range t.byID {
		if h.live(n) {
			out = append(out, h.Ban)
		}
	}
	slices.SortFunc(out, byID)
	return out
}

// SetNextID sets the next ID to assign (the store's largest + 1). It never
// goes back below an ID the tracker already handed out or holds.
func (t *Tracker) SetNextID(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextID = max(t.nextID, id)
}

// Expire removes and returns the bans ended at now (sorted by ID), and
// drops the windows, password hashes and known-good entries older than
// their rules remember. Call it about once a second.
func (t *Tracker) Expire(now time.Time) []Ban {
	c := &t.cfg
	n := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Ban
	if n >= t.minExp {
		t.minExp = math.MaxInt64
		for _, h := range t.byID {
			switch {
			case h.exp == 0:
			case h.exp <= n:
				t.removeLocked(h)
				out = append(out, h.Ban)
			default:
				t.minExp = min(t.minExp, h.exp)
			}
		}
		slices.SortFunc(out, byID)
	}
	t.addrs.expire(n - int64(t.addrKeep))
	t.logins.expire(n - int64(t.loginKeep))
	t.pairs.expire(n - int64(c.StaleWindow))
	if c.KnownGoodFor > 0 {
		t.known.expire(n - int64(c.KnownGoodFor))
		if t.countries != nil {
			t.countries.expire(n - int64(c.KnownGoodFor))
		}
	}
	if n >= t.histSweep {
		for k, h := range t.hist {
			if n-h.end > int64(c.RepeatMemory) {
				delete(t.hist, k)
			}
		}
		t.histSweep = n + int64(histSweepEvery)
	}
	return out
}

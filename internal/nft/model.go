package nft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// setKind says what a set holds and who fills it.
type setKind uint8

const (
	kindAddr     setKind = iota // one address per element, timeouts (banned_*)
	kindAddrPort                // address . port, timeouts (trusted_*)
	kindInterval                // address ranges, interval (trusted_nets_*; banned_nets_* with timeouts)
	kindMeter                   // filled by the kernel from the rules (rate_*, autoban_*)
)

// setDef describes one set of the table.
type setDef struct {
	name     string
	v6       bool
	kind     setKind
	timeouts bool
}

func (d setDef) owned() bool { return d.kind != kindMeter }

// setDefs lists the sets of the table, in the order Render prints them.
func setDefs() []setDef {
	var defs []setDef
	for _, s := range []struct {
		name     string
		kind     setKind
		timeouts bool
	}{
		{"trusted_nets", kindInterval, false},
		{"trusted", kindAddrPort, true},
		{"banned", kindAddr, true},
		{"banned_nets", kindInterval, true},
		{"rate", kindMeter, true},
		{"autoban", kindMeter, true},
	} {
		defs = append(defs,
			setDef{name: s.name + "_v4", kind: s.kind, timeouts: s.timeouts},
			setDef{name: s.name + "_v6", v6: true, kind: s.kind, timeouts: s.timeouts})
	}
	return defs
}

func findDef(name string) (setDef, bool) {
	for _, d := range setDefs() {
		if d.name == name {
			return d, true
		}
	}
	return setDef{}, false
}

func (d setDef) addrType() nftables.SetDatatype {
	if d.v6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

func (d setDef) keyType() nftables.SetDatatype {
	if d.kind == kindAddrPort {
		return nftables.MustConcatSetType(d.addrType(), nftables.TypeInetService)
	}
	return d.addrType()
}

// nftSet is the set as the library describes it, for AddSet and for the
// element calls.
func (d setDef) nftSet(t *nftables.Table) *nftables.Set {
	s := &nftables.Set{
		Table:        t,
		Name:         d.name,
		KeyType:      d.keyType(),
		KeyByteOrder: binaryutil.BigEndian,
		Interval:     d.kind == kindInterval,
		HasTimeout:   d.timeouts,
	}
	if d.kind == kindMeter {
		s.Dynamic = true
		s.Size = MeterSize
	}
	return s
}

// sameDef reports whether a set found in the kernel is the one mailgate
// would create, and if not, why.
func (d setDef) sameDef(s *nftables.Set) error {
	want := d.nftSet(s.Table)
	switch {
	case s.KeyType.GetNFTMagic() != want.KeyType.GetNFTMagic() || s.KeyType.Bytes != want.KeyType.Bytes:
		return fmt.Errorf("type %s, want %s", s.KeyType.Name, want.KeyType.Name)
	case s.Interval != want.Interval, s.HasTimeout != want.HasTimeout, s.Dynamic != want.Dynamic,
		s.IsMap, s.Constant, s.Anonymous:
		return fmt.Errorf("flags %s, want %s", setFlags(s), setFlags(want))
	case s.Timeout != 0:
		return fmt.Errorf("a default timeout of %s, want none", nftDuration(s.Timeout))
	case want.Size != 0 && s.Size != want.Size:
		return fmt.Errorf("size %d, want %d", s.Size, want.Size)
	}
	return nil
}

// element is one element of a set mailgate owns, in mailgate's terms: an
// address (from == to), an address range (interval sets) or an address and
// a port (trusted sets).
type element struct {
	from, to netip.Addr
	port     uint16
	expires  time.Time // zero: no timeout
}

// elemID identifies an element in a set, whatever its timeout.
type elemID struct {
	from, to netip.Addr
	port     uint16
}

func (e element) id() elemID { return elemID{e.from, e.to, e.port} }

func compareElements(a, b element) int {
	if c := a.from.Compare(b.from); c != 0 {
		return c
	}
	if c := a.to.Compare(b.to); c != 0 {
		return c
	}
	return cmp.Compare(a.port, b.port)
}

// later reports whether expiry a is later than b; zero is never.
func later(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return !b.IsZero()
	case b.IsZero():
		return false
	}
	return a.After(b)
}

func expired(exp, now time.Time) bool { return !exp.IsZero() && !exp.After(now) }

// timeoutAt is the timeout an element expiring at exp gets when added at
// now: rounded up to the millisecond the kernel counts in (a zero timeout
// would mean none) and capped at MaxTimeout. Zero for no expiry.
func timeoutAt(exp, now time.Time) time.Duration {
	if exp.IsZero() {
		return 0
	}
	d := exp.Sub(now)
	d = (d + time.Millisecond - 1).Truncate(time.Millisecond)
	return max(min(d, MaxTimeout), time.Millisecond)
}

// normPrefix returns p masked, with an IPv4-mapped IPv6 prefix (at least
// /96) as the IPv4 prefix it maps.
func normPrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a := p.Addr().WithZone("")
	if a.Is4In6() {
		if p.Bits() < 96 {
			return netip.PrefixFrom(a, p.Bits()).Masked(), true
		}
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), true
	}
	return netip.PrefixFrom(a, p.Bits()).Masked(), true
}

func normAddr(a netip.Addr) (netip.Addr, bool) {
	if !a.IsValid() {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// rangePrefix returns the prefix [from, to] is, if it is one.
func rangePrefix(from, to netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= from.BitLen(); bits++ {
		p := netip.PrefixFrom(from, bits)
		if p.Masked().Addr() == from && lastAddr(p) == to {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// prefixExp is a network and when it expires.
type prefixExp struct {
	p   netip.Prefix
	exp time.Time
}

// cover turns networks, which may nest, into disjoint address ranges
// where each address gets the latest expiry of the networks holding it:
// an interval set rejects overlapping elements, and a /64 banned for a
// day inside a /56 banned for an hour must stay banned after the hour.
// Adjacent ranges with the same expiry are merged. The result is sorted.
func cover(in []prefixExp) []element {
	in = slices.Clone(in)
	slices.SortFunc(in, func(a, b prefixExp) int {
		if c := a.p.Addr().Compare(b.p.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.p.Bits(), b.p.Bits())
	})
	type frame struct {
		first, last netip.Addr
		exp         time.Time
		cursor      netip.Addr // first address not yet emitted
		done        bool       // everything emitted
	}
	var out []element
	var stack []frame
	emit := func(from, to netip.Addr, exp time.Time) {
		if n := len(out); n > 0 && out[n-1].expires.Equal(exp) && out[n-1].to.Next() == from {
			out[n-1].to = to
			return
		}
		out = append(out, element{from: from, to: to, expires: exp})
	}
	pop := func() {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !f.done && !f.last.Less(f.cursor) {
			emit(f.cursor, f.last, f.exp)
		}
		if len(stack) > 0 {
			parent := &stack[len(stack)-1]
			if next := f.last.Next(); next.IsValid() {
				parent.cursor = next
			} else {
				parent.done = true
			}
		}
	}
	for _, x := range in {
		first, last := x.p.Addr(), lastAddr(x.p)
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.first.Compare(first) <= 0 && first.Compare(top.last) <= 0 {
				break
			}
			pop()
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if !later(x.exp, top.exp) {
				continue // held by a network that lasts at least as long
			}
			if !top.done && top.cursor.Less(first) {
				emit(top.cursor, first.Prev(), top.exp)
			}
		}
		stack = append(stack, frame{first: first, last: last, exp: x.exp, cursor: first})
	}
	for len(stack) > 0 {
		pop()
	}
	return out
}

// mailPorts are the ports the rules look at, sorted.
func (c Config) mailPorts() []uint16 {
	return sortedPorts(c.SMTPPorts, c.RetrievalPorts, c.SubmissionPorts)
}

func sortedPorts(lists ...[]uint16) []uint16 {
	var ps []uint16
	for _, l := range lists {
		ps = append(ps, l...)
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}

// desired is what the sets mailgate owns should hold: the normalized
// state, from which the elements of each set are computed.
type desired struct {
	bans    map[netip.Prefix]time.Time // masked, IPv4-mapped as IPv4
	trusted map[netip.Addr]time.Time
	nets    []netip.Prefix // State.TrustedNets, joining Config.TrustedNets
}

func newDesired() *desired {
	return &desired{bans: map[netip.Prefix]time.Time{}, trusted: map[netip.Addr]time.Time{}}
}

// load replaces the state with st, skipping what has expired at now. It
// returns how many entries were not addresses or networks.
func (w *desired) load(st State, now time.Time) (invalid int) {
	clear(w.bans)
	clear(w.trusted)
	w.nets = w.nets[:0]
	for _, p := range st.TrustedNets {
		if len(w.nets) >= MaxTrustedNets {
			invalid++
			continue
		}
		p, ok := normPrefix(p)
		if !ok {
			invalid++
			continue
		}
		w.nets = append(w.nets, p)
	}
	for _, b := range st.Bans {
		p, ok := normPrefix(b.Prefix)
		if !ok {
			invalid++
			continue
		}
		if expired(b.Expires, now) {
			continue
		}
		if old, ok := w.bans[p]; !ok || later(b.Expires, old) {
			w.bans[p] = b.Expires
		}
	}
	for _, t := range st.Trusted {
		a, ok := normAddr(t.Addr)
		if !ok {
			invalid++
			continue
		}
		if expired(t.Expires, now) {
			continue
		}
		if old, ok := w.trusted[a]; !ok || later(t.Expires, old) {
			w.trusted[a] = t.Expires
		}
	}
	return invalid
}

// elements computes the elements set d should hold at now.
func (w *desired) elements(cfg Config, d setDef, now time.Time) []element {
	var out []element
	switch d.name {
	case "trusted_nets_v4", "trusted_nets_v6":
		var nets []prefixExp
		for _, p := range append(slices.Clip(cfg.TrustedNets), w.nets...) {
			if p, ok := normPrefix(p); ok && p.Addr().Is6() == d.v6 {
				nets = append(nets, prefixExp{p: p})
			}
		}
		return cover(nets)
	case "trusted_v4", "trusted_v6":
		ports := cfg.mailPorts()
		for a, exp := range w.trusted {
			if a.Is6() != d.v6 || expired(exp, now) {
				continue
			}
			for _, p := range ports {
				out = append(out, element{from: a, to: a, port: p, expires: exp})
			}
		}
	case "banned_v4", "banned_v6":
		if !cfg.Bans {
			return nil
		}
		for p, exp := range w.bans {
			if p.Addr().Is6() != d.v6 || !p.IsSingleIP() || expired(exp, now) {
				continue
			}
			out = append(out, element{from: p.Addr(), to: p.Addr(), expires: exp})
		}
	case "banned_nets_v4", "banned_nets_v6":
		if !cfg.Bans {
			return nil
		}
		var nets []prefixExp
		for p, exp := range w.bans {
			if p.Addr().Is6() != d.v6 || p.IsSingleIP() || expired(exp, now) {
				continue
			}
			nets = append(nets, prefixExp{p, exp})
		}
		return cover(nets)
	}
	slices.SortFunc(out, compareElements)
	return out
}

// Kernel encoding of elements.

func portBytes(p uint16) []byte {
	// inet_service is big-endian, padded to a 32-bit register in a
	// concatenation.
	return []byte{byte(p >> 8), byte(p), 0, 0}
}

// encode returns the kernel elements for e: one, or for an interval its
// start and end (the end element holds the address after the range; a
// range reaching the last address has none).
func (d setDef) encode(e element, now time.Time) []nftables.SetElement {
	key := e.from.AsSlice()
	if d.kind == kindAddrPort {
		key = append(key, portBytes(e.port)...)
	}
	start := nftables.SetElement{Key: key, Timeout: timeoutAt(e.expires, now)}
	if d.kind != kindInterval {
		return []nftables.SetElement{start}
	}
	next := e.to.Next()
	if !next.IsValid() {
		start.IntervalOpen = true
		return []nftables.SetElement{start}
	}
	return []nftables.SetElement{start, {Key: next.AsSlice(), IntervalEnd: true}}
}

// decode turns the elements the kernel lists for set d into mailgate's
// terms; expiries are counted from now.
func (d setDef) decode(kes []nftables.SetElement, now time.Time) ([]element, error) {
	addrLen := 4
	if d.v6 {
		addrLen = 16
	}
	expiry := func(k nftables.SetElement) time.Time {
		if k.Timeout == 0 && k.Expires == 0 {
			return time.Time{}
		}
		return now.Add(k.Expires)
	}
	var out []element
	switch d.kind {
	case kindAddr, kindAddrPort, kindMeter:
		for _, k := range kes {
			want := addrLen
			if d.kind == kindAddrPort {
				want += 4
			}
			if len(k.Key) != want {
				return nil, fmt.Errorf("set %s: element key of %d bytes, want %d", d.name, len(k.Key), want)
			}
			a, _ := netip.AddrFromSlice(k.Key[:addrLen])
			e := element{from: a, to: a, expires: expiry(k)}
			if d.kind == kindAddrPort {
				e.port = binary.BigEndian.Uint16(k.Key[addrLen:])
			}
			out = append(out, e)
		}
	case kindInterval:
		type bound struct {
			a   netip.Addr
			end bool
			exp time.Time
		}
		bounds := make([]bound, 0, len(kes))
		for _, k := range kes {
			if len(k.Key) != addrLen {
				return nil, fmt.Errorf("set %s: element key of %d bytes, want %d", d.name, len(k.Key), addrLen)
			}
			a, _ := netip.AddrFromSlice(k.Key)
			bounds = append(bounds, bound{a, k.IntervalEnd, expiry(k)})
		}
		// At one address the end of a range comes before the start of
		// the next.
		slices.SortFunc(bounds, func(x, y bound) int {
			if c := x.a.Compare(y.a); c != 0 {
				return c
			}
			switch {
			case x.end == y.end:
				return 0
			case x.end:
				return -1
			}
			return 1
		})
		var open *bound
		for i := range bounds {
			b := &bounds[i]
			switch {
			case !b.end && open != nil:
				// A start after a start: close the first one here.
				out = append(out, element{from: open.a, to: b.a.Prev(), expires: open.exp})
				open = b
			case !b.end:
				open = b
			case open != nil:
				out = append(out, element{from: open.a, to: b.a.Prev(), expires: open.exp})
				open = nil
			default:
				// An end with no start: nft puts one at address 0.
			}
		}
		if open != nil {
			last := lastAddr(netip.PrefixFrom(open.a, 0))
			out = append(out, element{from: open.a, to: last, expires: open.exp})
		}
	}
	slices.SortFunc(out, compareElements)
	return out, nil
}

// Refreshing: an element whose timeout in the kernel is off from the one
// wanted is deleted and added again in one transaction (kernels before
// 6.10 keep the old timeout when an element is added again). Small
// differences are left alone so that a login every few minutes does not
// rewrite the trusted set each time.
const (
	// margin: an element the kernel drops within it is as good as gone.
	margin = 2 * time.Second
	// toleranceDiv: a timeout off by less than 1/20 of the wanted one
	// (and less than margin for short ones) is left alone.
	toleranceDiv = 20
)

func tolerance(d time.Duration) time.Duration { return max(margin, d/toleranceDiv) }

// closeEnough reports whether remaining times a and b (0 = no timeout) are the
// same for mailgate's purposes.
func closeEnough(a, b time.Duration) bool {
	if a == 0 || b == 0 {
		return a == b
	}
	return (a - b).Abs() <= tolerance(max(a, b))
}

// stale reports whether the kernel's element h must be replaced to become w.
func stale(h, w element, now time.Time) bool {
	if h.expires.IsZero() || w.expires.IsZero() {
		return h.expires.IsZero() != w.expires.IsZero()
	}
	hr := h.expires.Sub(now)
	if hr <= margin {
		return true
	}
	return !closeEnough(hr, timeoutAt(w.expires, now))
}

// diffElements returns what to delete from and add to set d so that it
// holds want instead of have. Both are sorted and unique.
func diffElements(d setDef, want, have []element, now time.Time) (del, add []element) {
	had := make(map[elemID]element, len(have))
	for _, h := range have {
		had[h.id()] = h
	}
	for _, w := range want {
		h, ok := had[w.id()]
		switch {
		case !ok:
			add = append(add, w)
		case stale(h, w, now):
			del = append(del, h)
			add = append(add, w)
		}
		delete(had, w.id())
	}
	for _, h := range have {
		h, ok := had[h.id()]
		if !ok {
			continue
		}
		// An address element about to expire is left to the kernel;
		// a range is deleted all the same, as a new range may overlap
		// it.
		if d.kind != kindInterval && !h.expires.IsZero() && h.expires.Sub(now) <= margin {
			continue
		}
		del = append(del, h)
	}
	slices.SortFunc(del, compareElements)
	return del, add
}

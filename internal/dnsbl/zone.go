package dnsbl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxZoneSpec bounds one zone entry of the config ("name=filter*weight").
const MaxZoneSpec = 300

// maxZoneName bounds a zone's name: the longest query name, an IPv6
// address's 32 reversed nibbles (64 bytes) in front of it, must stay
// within DNS's 253.
const maxZoneName = 253 - 64

// maxWeight bounds a weight's magnitude.
const maxWeight = 1000

// Zone is one DNS blocklist with the answers that count and their weight,
// written in Postfix postscreen's syntax (postscreen_dnsbl_sites in
// postconf(5)):
//
//	zen.spamhaus.org=127.0.0.[4..7]*3
//	list.example*1
//	name.example=127.0.0.[2;4;10..11]
//
// Without "=filter" any answer in 127.0.0.0/8 (other than the error codes
// 127.255.255.x) counts; without "*weight" the weight is 1. A weight may
// be negative (an allow list lowers the score).
type Zone struct {
	Name      string // lower case, no trailing dot
	Weight    int
	filter    [4]octets
	hasFilter bool
	spec      string
}

// octets is a set of byte values.
type octets [4]uint64

func (o *octets) add(lo, hi int) {
	for v := lo; v <= hi; v++ {
		o[v>>6] |= 1 << (v & 63)
	}
}

func (o *octets) has(v byte) bool { return o[v>>6]&(1<<(v&63)) != 0 }

// String is the zone in the canonical form of the config syntax.
func (z *Zone) String() string { return z.spec }

// Matches reports whether an A answer counts as a listing: it is in
// 127.0.0.0/8, not an error code (127.255.255.x), and passes the filter.
func (z *Zone) Matches(a netip.Addr) bool {
	if !a.Is4() || IsErrorCode(a) {
		return false
	}
	b := a.As4()
	if b[0] != 127 {
		return false
	}
	if !z.hasFilter {
		return true
	}
	for i := range b {
		if !z.filter[i].has(b[i]) {
			return false
		}
	}
	return true
}

// IsErrorCode reports whether an answer is one of the 127.255.255.x codes
// Spamhaus (and others following it) use to refuse a query: through a
// public resolver, over the free-use limit, or a bad query. They are never
// listings.
func IsErrorCode(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b[0] == 127 && b[1] == 255 && b[2] == 255
}

// ParseZone parses one entry in postscreen's syntax: name[=filter][*weight].
func ParseZone(s string) (Zone, error) {
	if len(s) > MaxZoneSpec {
		return Zone{}, fmt.Errorf("zone entry longer than %d bytes", MaxZoneSpec)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return Zone{}, errors.New("empty zone entry")
	}
	z := Zone{Weight: 1}
	rest := s
	if i := strings.LastIndexByte(rest, '*'); i >= 0 {
		w, err := strconv.Atoi(rest[i+1:])
		if err != nil || w < -maxWeight || w > maxWeight {
			return Zone{}, fmt.Errorf("%q: weight %q is not a whole number from %d to %d", s, rest[i+1:], -maxWeight, maxWeight)
		}
		z.Weight = w
		rest = rest[:i]
	}
	name := rest
	if i := strings.IndexByte(rest, '='); i >= 0 {
		name = rest[:i]
		if err := z.parseFilter(rest[i+1:]); err != nil {
			return Zone{}, fmt.Errorf("%q: filter %q: %w", s, rest[i+1:], err)
		}
		z.hasFilter = true
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if err := checkName(name); err != nil {
		return Zone{}, fmt.Errorf("%q: zone name: %w", s, err)
	}
	z.Name = name
	z.spec = z.canonical()
	return z, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > maxZoneName {
		return fmt.Errorf("longer than %d bytes", maxZoneName)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("%q has an empty label", name)
		}
		if len(label) > 63 {
			return fmt.Errorf("%q has a label longer than 63 bytes", name)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q: %q is not allowed in a DNS name (letters, digits, '-', '_')", name, string(rune(c)))
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q: a label may not start or end with '-'", name)
		}
	}
	if !strings.Contains(name, ".") {
		return fmt.Errorf("%q is a single label; a zone has at least two (list.example)", name)
	}
	return nil
}

// parseFilter parses d.d.d.d where each d is a number or [n;n..m;...].
func (z *Zone) parseFilter(f string) error {
	if f == "" {
		return errors.New("empty (leave out '=' to count every answer)")
	}
	for i := range 4 {
		if i > 0 {
			if f == "" || f[0] != '.' {
				return errors.New("want four parts, d.d.d.d")
			}
			f = f[1:]
		}
		var part string
		if strings.HasPrefix(f, "[") {
			end := strings.IndexByte(f, ']')
			if end < 0 {
				return errors.New("'[' without ']'")
			}
			part, f = f[1:end], f[end+1:]
			if part == "" {
				return errors.New("empty []")
			}
			for _, item := range strings.Split(part, ";") {
				lo, hi, ok := strings.Cut(item, "..")
				if !ok {
					hi = lo
				}
				l, err := octet(lo)
				if err != nil {
					return err
				}
				h, err := octet(hi)
				if err != nil {
					return err
				}
				if l > h {
					return fmt.Errorf("range %s is backwards", item)
				}
				z.filter[i].add(l, h)
			}
			continue
		}
		end := strings.IndexByte(f, '.')
		if end < 0 {
			end = len(f)
		}
		part, f = f[:end], f[end:]
		v, err := octet(part)
		if err != nil {
			return err
		}
		z.filter[i].add(v, v)
	}
	if f != "" {
		return fmt.Errorf("unexpected %q after the fourth part", f)
	}
	if !z.filter[0].has(127) {
		return errors.New("the first part must allow 127: blocklists answer in 127.0.0.0/8")
	}
	return nil
}

func octet(s string) (int, error) {
	if s == "" || len(s) > 3 {
		return 0, fmt.Errorf("%q is not a number from 0 to 255", s)
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number from 0 to 255", s)
		}
		v = v*10 + int(s[i]-'0')
	}
	if v > 255 {
		return 0, fmt.Errorf("%q is not a number from 0 to 255", s)
	}
	return v, nil
}

// canonical renders the zone back: the filter's parts as numbers or
// [a;b..c] with merged ranges, the weight always written.
func (z *Zone) canonical() string {
	var b strings.Builder
	b.WriteString(z.Name)
	if z.hasFilter {
		b.WriteByte('=')
		for i := range z.filter {
			if i > 0 {
				b.WriteByte('.')
			}
			writeOctets(&b, &z.filter[i])
		}
	}
	b.WriteByte('*')
	b.WriteString(strconv.Itoa(z.Weight))
	return b.String()
}

func writeOctets(b *strings.Builder, o *octets) {
	type span struct{ lo, hi int }
	var spans []span
	for v := 0; v < 256; v++ {
		if !o.has(byte(v)) {
			continue
		}
		if n := len(spans); n > 0 && spans[n-1].hi == v-1 {
			spans[n-1].hi = v
		} else {
			spans = append(spans, span{v, v})
		}
	}
	if len(spans) == 1 && spans[0].lo == spans[0].hi {
		b.WriteString(strconv.Itoa(spans[0].lo))
		return
	}
	b.WriteByte('[')
	for i, s := range spans {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(strconv.Itoa(s.lo))
		if s.hi > s.lo {
			b.WriteString("..")
			b.WriteString(strconv.Itoa(s.hi))
		}
	}
	b.WriteByte(']')
}

// MaxZones bounds the number of zones.
const MaxZones = 32

// ParseZones parses every entry; a name may appear once.
func ParseZones(specs []string) ([]Zone, error) {
	if len(specs) > MaxZones {
		return nil, fmt.Errorf("%d zones; at most %d", len(specs), MaxZones)
	}
	zones := make([]Zone, 0, len(specs))
	seen := map[string]bool{}
	for _, s := range specs {
		z, err := ParseZone(s)
		if err != nil {
			return nil, err
		}
		if seen[z.Name] {
			return nil, fmt.Errorf("zone %s is listed twice (postscreen counts one entry per name at most once: merge the filters)", z.Name)
		}
		seen[z.Name] = true
		zones = append(zones, z)
	}
	return zones, nil
}

// QueryName is the name asked for addr in zone: IPv4 reversed by octets
// (2.0.0.127.zone), IPv6 by nibbles (32 labels), with the final dot.
func QueryName(addr netip.Addr, zone string) string {
	addr = addr.Unmap()
	var b strings.Builder
	b.Grow(64 + len(zone) + 1)
	if addr.Is4() {
		o := addr.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(strconv.Itoa(int(o[i])))
			b.WriteByte('.')
		}
	} else {
		o := addr.As16()
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[o[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[o[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(zone)
	b.WriteByte('.')
	return b.String()
}

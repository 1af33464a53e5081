package dnsbld

import "net/netip"

// ParseName returns the address a DNSBL name asks about: the labels
// before the zone, e.g. "7.2.0.192." for 192.0.2.7 (RFC 5782 section
// 2.1), or 32 hexadecimal nibbles, least significant first, for an IPv6
// address (section 2.4). The final dot is optional; letters may be upper
// case (the caller lower-cases names anyway). Anything else — fewer or
// more labels, a decimal label with a leading zero or over 255, a label
// of more than one hex digit in IPv6 form — is not an address. An
// IPv4-mapped IPv6 name is its IPv4 address.
func ParseName(s string) (netip.Addr, bool) {
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	switch {
	case len(s) == 63: // 32 nibbles and 31 dots
		return parseV6(s)
	case len(s) >= 7 && len(s) <= 15:
		return parseV4(s)
	}
	return netip.Addr{}, false
}

func parseV4(s string) (netip.Addr, bool) {
	var b [4]byte
	i := 3 // labels come least significant first
	n, digits := 0, 0
	for j := 0; j <= len(s); j++ {
		if j == len(s) || s[j] == '.' {
			if digits == 0 || i < 0 {
				return netip.Addr{}, false
			}
			b[i] = byte(n)
			i--
			n, digits = 0, 0
			continue
		}
		c := s[j]
		if c < '0' || c > '9' || (digits == 1 && n == 0) { // no leading zero
			return netip.Addr{}, false
		}
		n = n*10 + int(c-'0')
		digits++
		if n > 255 {
			return netip.Addr{}, false
		}
	}
	if i != -1 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(b), true
}

func parseV6(s string) (netip.Addr, bool) {
	var b [16]byte
	for k := 0; k < 32; k++ {
		c := s[2*k]
		if k < 31 && s[2*k+1] != '.' {
			return netip.Addr{}, false
		}
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return netip.Addr{}, false
		}
		nib := 31 - k // the first label is the last nibble
		if nib%2 == 0 {
			b[nib/2] |= v << 4
		} else {
			b[nib/2] |= v
		}
	}
	return netip.AddrFrom16(b).Unmap(), true
}

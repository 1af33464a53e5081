package dnsbld

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzParseName: no crash; an accepted name is the canonical DNSBL name
// of its address (one spelling per address).
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"4.3.2.1", "4.3.2.1.", "04.3.2.1", "256.0.0.1", "3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ParseName(s)
		if !ok {
			return
		}
		if want := reverseName(a); strings.TrimSuffix(strings.ToLower(s), ".") != want && !(a.Is4() && len(s) >= 63) {
			t.Fatalf("ParseName(%q) = %s, whose name is %q", s, a, want)
		}
	})
}

// reverseName is the DNSBL name of a (without the zone), written the
// long way.
func reverseName(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}).String()
	}
	b := a.As16()
	var parts []string
	for i := 15; i >= 0; i-- {
		const hex = "0123456789abcdef"
		parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
	}
	return strings.Join(parts, ".")
}

// FuzzAnswer feeds any DNS message the library parses to the handler:
// no crash; the answer packs, has the query's id, fits 512 bytes over
// UDP without EDNS, and a stranger gets REFUSED with no records.
func FuzzAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  bool
	}{
		{"7.2.0.192.bans.mailgate.local.", dns.TypeA, false},
		{"7.2.0.192.bans.mailgate.local.", dns.TypeTXT, true},
		{"1.100.51.198.bans.mailgate.local.", dns.TypeANY, false},
		{"3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bans.mailgate.local.", dns.TypeA, false},
		{"bans.mailgate.local.", dns.TypeSOA, false},
		{"bans.mailgate.local.", dns.TypeAXFR, false},
		{"example.com.", dns.TypeA, true},
	} {
		m := query(q.name, q.qtype)
		if q.edns {
			m.SetEdns0(4096, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true, true)
	}
	h, _ := newTestHandler(f)
	f.Fuzz(func(t *testing.T, b []byte, allowed, udp bool) {
		req := new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		client := local
		if !allowed {
			client = remote
		}
		resp, o := h.Answer(req, client, udp, t0)
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("the answer does not pack: %v\n%v", err, resp)
		}
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("id %d for %d, response %v", resp.Id, req.Id, resp.Response)
		}
		if udp && req.IsEdns0() == nil && len(out) > dns.MinMsgSize {
			t.Fatalf("a %d-byte UDP answer", len(out))
		}
		if !allowed && (o != Refused || len(resp.Answer)+len(resp.Ns)+len(resp.Question) > 0) {
			t.Fatalf("a stranger got %s:\n%v", o, resp)
		}
	})
}

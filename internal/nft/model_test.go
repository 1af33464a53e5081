package nft

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Mode = "" }, `mode: "" is not one of public, autoban, protected, private`},
		{func(c *Config) { c.RetrievalPorts = append(c.RetrievalPorts, 0) }, "retrieval_ports: port 0 is not a port"},
		{func(c *Config) { c.RetrievalPorts = append(c.RetrievalPorts, 143) }, "retrieval_ports: port 143 is listed twice"},
		{func(c *Config) { c.SMTPPorts = []uint16{587} }, "smtp_ports: port 587 is also in submission_ports"},
		{func(c *Config) { c.RetrievalPorts, c.SubmissionPorts = nil, nil }, "retrieval_ports: no mail port at all"},
		{func(c *Config) { c.Rate = 0 }, "rate: 0 is not from 1 to 1000000"},
		{func(c *Config) { c.RatePer = 2 * time.Minute }, "rate_per: 2m0s is not 1s, 1m, 1h or 24h"},
		{func(c *Config) { c.AutobanFor = 0 }, "autoban_for: 0s is not a whole number of milliseconds from 1s to 720h0m0s"},
		{func(c *Config) { c.AutobanFor = time.Second + time.Microsecond }, "autoban_for: 1.000001s is not a whole number"},
		{func(c *Config) { c.AutobanFor = 31 * 24 * time.Hour }, "autoban_for: 744h0m0s is not"},
		{func(c *Config) { c.TrustedNets = []netip.Prefix{{}} }, "trusted_nets: an invalid network"},
		{func(c *Config) { c.TrustedNets = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")} }, "trusted_nets: 10.1.2.3/8 has host bits set (the network is 10.0.0.0/8)"},
		{func(c *Config) { c.TrustedNets = make([]netip.Prefix, MaxTrustedNets+1) }, "trusted_nets: 10001 networks, more than 10000"},
		{func(c *Config) { c.Priority = -200 }, "priority: -200 is before conntrack (-200): it must be at least -199"},
	}
	for _, tc := range bad {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	c := DefaultConfig()
	c.Rate, c.Priority = 0, -300
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "rate:") || !strings.Contains(err.Error(), "priority:") {
		t.Errorf("two problems: got %v, want both named", err)
	}
	// Every mode, and no port but SMTP, is fine.
	for _, m := range []Mode{Public, Autoban, Protected, Private} {
		c := DefaultConfig()
		c.Mode = m
		c.RetrievalPorts, c.SubmissionPorts, c.SMTPPorts = nil, nil, []uint16{25}
		if err := c.Validate(); err != nil {
			t.Errorf("%s with only port 25: %v", m, err)
		}
		// ... and its rules never drop on 25 outside the bans.
		for _, r := range c.rules() {
			if strings.HasSuffix(r.text, "drop") && !strings.Contains(r.text, "@banned_") {
				t.Errorf("%s: %s", m, r.text)
			}
		}
	}
}

func elems(t *testing.T, es []element, now time.Time) string {
	t.Helper()
	var s []string
	for _, e := range es {
		s = append(s, elementText(setDef{kind: kindInterval}, e, now))
	}
	return strings.Join(s, ", ")
}

func TestCover(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		in   []prefixExp
		want string
	}{
		{nil, ""},
		{[]prefixExp{{p("10.0.0.0/8"), at(time.Hour)}}, "10.0.0.0/8 timeout 1h"},
		// Adjacent with the same expiry merge; with another they do not.
		{[]prefixExp{{p("10.0.0.0/25"), at(time.Hour)}, {p("10.0.0.128/25"), at(time.Hour)}}, "10.0.0.0/24 timeout 1h"},
		{[]prefixExp{{p("10.0.0.0/25"), at(time.Hour)}, {p("10.0.0.128/25"), at(2 * time.Hour)}}, "10.0.0.0/25 timeout 1h, 10.0.0.128/25 timeout 2h"},
		{[]prefixExp{{p("10.0.0.0/24"), at(time.Hour)}, {p("10.0.2.0/24"), at(time.Hour)}}, "10.0.0.0/24 timeout 1h, 10.0.2.0/24 timeout 1h"},
		// Nested and shorter: absorbed, whatever the order given.
		{[]prefixExp{{p("10.0.0.64/26"), at(time.Minute)}, {p("10.0.0.0/24"), at(time.Hour)}}, "10.0.0.0/24 timeout 1h"},
		// Nested and longer: splits its parent.
		{[]prefixExp{{p("10.0.0.0/24"), at(time.Hour)}, {p("10.0.0.64/26"), at(2 * time.Hour)}},
			"10.0.0.0/26 timeout 1h, 10.0.0.64/26 timeout 2h, 10.0.0.128/25 timeout 1h"},
		// Three levels, the innermost at the very start of all.
		{[]prefixExp{{p("10.0.0.0/16"), at(time.Hour)}, {p("10.0.0.0/24"), at(2 * time.Hour)}, {p("10.0.0.0/28"), time.Time{}}},
			"10.0.0.0/28, 10.0.0.16-10.0.0.255 timeout 2h, 10.0.1.0-10.0.255.255 timeout 1h"},
		// A permanent network holds timed ones; duplicates keep the latest.
		{[]prefixExp{{p("2001:db8::/32"), time.Time{}}, {p("2001:db8:1::/48"), at(time.Hour)}}, "2001:db8::/32"},
		{[]prefixExp{{p("2001:db8::/48"), at(time.Hour)}, {p("2001:db8::/48"), at(3 * time.Hour)}, {p("2001:db8::/48"), at(2 * time.Hour)}}, "2001:db8::/48 timeout 3h"},
		// The end of the address space.
		{[]prefixExp{{p("255.255.255.0/24"), at(time.Hour)}, {p("255.255.255.255/32"), at(2 * time.Hour)}},
			"255.255.255.0-255.255.255.254 timeout 1h, 255.255.255.255 timeout 2h"},
		{[]prefixExp{{p("0.0.0.0/0"), at(time.Hour)}, {p("255.255.255.254/31"), at(2 * time.Hour)}},
			"0.0.0.0-255.255.255.253 timeout 1h, 255.255.255.254/31 timeout 2h"},
	} {
		if got := elems(t, cover(tc.in), t0); got != tc.want {
			t.Errorf("cover(%v):\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// TestCoverProperty checks cover against a brute force over small
// networks: disjoint sorted ranges, each address with the latest expiry of
// the networks holding it.
func TestCoverProperty(t *testing.T) {
	seed := uint32(1)
	rnd := func(n uint32) uint32 {
		seed = seed*1664525 + 1013904223
		return (seed >> 8) % n
	}
	for iter := 0; iter < 500; iter++ {
		var in []prefixExp
		for range 1 + rnd(6) {
			bits := 24 + int(rnd(9))
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(rnd(256))})
			var exp time.Time
			if rnd(5) > 0 {
				exp = at(time.Duration(1+rnd(4)) * time.Hour)
			}
			in = append(in, prefixExp{netip.PrefixFrom(a, bits).Masked(), exp})
		}
		out := cover(in)
		got := map[byte]time.Time{}
		for i, e := range out {
			if i > 0 && !out[i-1].to.Less(e.from) {
				t.Fatalf("%v: overlapping or unsorted output %v", in, out)
			}
			if i > 0 && out[i-1].to.Next() == e.from && out[i-1].expires.Equal(e.expires) {
				t.Fatalf("%v: unmerged neighbours %v", in, out)
			}
			for a := e.from; ; a = a.Next() {
				got[a.As4()[3]] = e.expires
				if a == e.to {
					break
				}
			}
		}
		for b := 0; b < 256; b++ {
			a := netip.AddrFrom4([4]byte{10, 0, 0, byte(b)})
			var want time.Time
			held := false
			for _, x := range in {
				if x.p.Contains(a) {
					if !held || later(x.exp, want) {
						want = x.exp
					}
					held = true
				}
			}
			g, ok := got[byte(b)]
			if ok != held || (held && !g.Equal(want)) {
				t.Fatalf("%v: address %v got %v (%v), want %v (%v)", in, a, g, ok, want, held)
			}
		}
	}
}

func TestDecodeInterval(t *testing.T) {
	d := defByName("banned_nets_v4")
	k := func(s string, end bool, exp time.Duration) nftables.SetElement {
		e := nftables.SetElement{Key: netip.MustParseAddr(s).AsSlice(), IntervalEnd: end}
		if exp > 0 {
			e.Timeout, e.Expires = 2*exp, exp
		}
		return e
	}
	// As the kernel lists what nft adds: in any order, with nft's end
	// element at 0.0.0.0, and an open range at the top.
	got, err := d.decode([]nftables.SetElement{
		k("10.0.1.0", true, 0),
		k("0.0.0.0", true, 0),
		k("10.0.0.0", false, time.Hour),
		k("10.0.1.0", false, 0), // adjacent range, no timeout
		k("10.0.2.0", true, 0),
		k("255.0.0.0", false, time.Minute),
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if s, want := elems(t, got, t0), "10.0.0.0/24 timeout 1h, 10.0.1.0/24, 255.0.0.0/8 timeout 1m"; s != want {
		t.Errorf("got %s, want %s", s, want)
	}
	// Round trip through encode (the kernel reports the time left of
	// what it was given).
	var kes []nftables.SetElement
	for _, e := range got {
		for _, ke := range d.encode(e, t0) {
			ke.Expires = ke.Timeout
			kes = append(kes, ke)
		}
	}
	back, err := d.decode(kes, t0)
	if err != nil || elems(t, back, t0) != elems(t, got, t0) {
		t.Errorf("round trip: %v %v", elems(t, back, t0), err)
	}
	if _, err := d.decode([]nftables.SetElement{{Key: []byte{1, 2, 3}}}, t0); err == nil {
		t.Error("a 3-byte key was accepted")
	}
	if _, err := defByName("trusted_v6").decode([]nftables.SetElement{{Key: make([]byte, 16)}}, t0); err == nil {
		t.Error("an address without a port was accepted in trusted_v6")
	}
}

func TestStaleAndDiff(t *testing.T) {
	e := func(exp time.Time) element {
		return element{from: netip.MustParseAddr("192.0.2.1"), to: netip.MustParseAddr("192.0.2.1"), expires: exp}
	}
	for _, tc := range []struct {
		have, want time.Time
		stale      bool
	}{
		{at(time.Hour), at(time.Hour), false},
		{at(time.Hour), at(time.Hour + 2*time.Minute), false}, // within 1/20
		{at(time.Hour), at(time.Hour + 4*time.Minute), true},
		{at(24 * time.Hour), at(time.Hour), true}, // shortened
		{time.Time{}, time.Time{}, false},
		{time.Time{}, at(time.Hour), true},
		{at(time.Hour), time.Time{}, true},
		{at(time.Second), at(time.Second), true}, // about to go: re-add
		{at(10 * time.Second), at(11 * time.Second), false},
		{at(10 * time.Second), at(13 * time.Second), true},
		// Beyond MaxTimeout both sides are capped.
		{at(MaxTimeout), at(3 * MaxTimeout), false},
	} {
		if got := stale(e(tc.have), e(tc.want), t0); got != tc.stale {
			t.Errorf("stale(have %v, want %v) = %v", tc.have.Sub(t0), tc.want.Sub(t0), got)
		}
	}
	// An element about to expire that is no longer wanted is left to
	// the kernel in an address set, deleted in an interval set.
	h := []element{e(at(time.Second))}
	if del, add := diffElements(defByName("banned_v4"), nil, h, t0); len(del)+len(add) != 0 {
		t.Errorf("address set: %v %v", del, add)
	}
	if del, _ := diffElements(defByName("banned_nets_v4"), nil, h, t0); len(del) != 1 {
		t.Errorf("interval set: %v", del)
	}
}

func TestTimeoutAt(t *testing.T) {
	for _, tc := range []struct {
		exp  time.Time
		want time.Duration
	}{
		{time.Time{}, 0},
		{at(time.Hour), time.Hour},
		{at(time.Microsecond), time.Millisecond}, // never 0: that would be no timeout
		{at(1500 * time.Microsecond), 2 * time.Millisecond},
		{at(10 * MaxTimeout), MaxTimeout},
	} {
		if got := timeoutAt(tc.exp, t0); got != tc.want {
			t.Errorf("timeoutAt(%v) = %v, want %v", tc.exp.Sub(t0), got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"::ffff:192.0.2.1/128", "192.0.2.1/32"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{"::ffff:0:0/88", "::ff00:0:0/88"}, // shorter than /96: not an IPv4 network
		{"::ffff:0:0/96", "0.0.0.0/0"},
		{"192.0.2.77/24", "192.0.2.0/24"},
		{"2001:db8::1/64", "2001:db8::/64"},
	} {
		got, ok := normPrefix(netip.MustParsePrefix(tc.in))
		if !ok || got.String() != tc.want {
			t.Errorf("normPrefix(%s) = %v, want %s", tc.in, got, tc.want)
		}
	}
	if _, ok := normPrefix(netip.Prefix{}); ok {
		t.Error("invalid prefix accepted")
	}
	w := newDesired()
	if n := w.load(State{Bans: []Ban{{}}, Trusted: []Trusted{{}}}, t0); n != 2 {
		t.Errorf("invalid entries counted %d, want 2", n)
	}
}

func TestDiff(t *testing.T) {
	a := "table inet mailgate {\n\tset banned_v4 {\n\t\telements = {\n\t\t\t192.0.2.1 timeout 1h,\n\t\t\t192.0.2.2 timeout 1h,\n\t\t}\n\t}\n\tchain input {\n\t\trule a\n\t}\n}\n"
	if d := Diff(a, a); d != "" {
		t.Errorf("Diff of equal texts: %q", d)
	}
	// Timeouts off by less than the tolerance are equal.
	b := strings.Replace(a, "192.0.2.1 timeout 1h", "192.0.2.1 timeout 59m58s", 1)
	if d := Diff(a, b); d != "" {
		t.Errorf("small drift shown: %q", d)
	}
	c := strings.Replace(a, "192.0.2.2 timeout 1h,", "192.0.2.2 timeout 10m,\n\t\t\t192.0.2.3,", 1)
	c = strings.Replace(c, "rule a", "rule b", 1)
	want := " \tset banned_v4 {\n" +
		"-\t\t\t192.0.2.2 timeout 1h,\n" +
		"+\t\t\t192.0.2.2 timeout 10m,\n" +
		"+\t\t\t192.0.2.3,\n" +
		" \tchain input {\n" +
		"-\t\trule a\n" +
		"+\t\trule b\n"
	if d := Diff(a, c); d != want {
		t.Errorf("Diff:\n%s\nwant:\n%s", d, want)
	}
	if d := Diff("", a); strings.Count(d, "\n+") != strings.Count(a, "\n")-1 || !strings.HasPrefix(d, "+table") {
		t.Errorf("Diff from nothing:\n%s", d)
	}
}

// TestDiffLarge: past the exact algorithm's bound the result is still a
// correct (if not minimal) diff.
func TestDiffLarge(t *testing.T) {
	var a, b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&a, "a%d\n", i)
		if i%2 == 0 {
			fmt.Fprintf(&b, "a%d\n", i)
		} else {
			fmt.Fprintf(&b, "b%d\n", i)
		}
	}
	d := Diff(a.String(), b.String())
	if n := strings.Count(d, "\n-"); n < 2400 || strings.Count(d, "\n+") < 2400 {
		t.Fatalf("%d removed lines", n)
	}
	if !strings.Contains(d, "-a1\n+b1\n") || strings.Contains(d, "a2\n") {
		t.Errorf("diff:\n%.300s", d)
	}
}

// FuzzDiff: Diff never panics, is empty for equal inputs, and lists every
// line of one input when the other is empty.
func FuzzDiff(f *testing.F) {
	f.Add("a\nb timeout 1h\nc\n", "a\nb timeout 59m59s\nd\n")
	f.Add("set x {\n\t1\n}\n", "")
	f.Add("timeout 1d2h3m4s5ms", "timeout 99999999999999999999d")
	f.Add("timeout timeout ", "timeout 1x")
	f.Fuzz(func(t *testing.T, a, b string) {
		if len(a) > 4096 || len(b) > 4096 {
			return
		}
		d := Diff(a, b)
		if Diff(a, a) != "" {
			t.Fatalf("Diff(a, a) = %q", Diff(a, a))
		}
		if a == b && d != "" {
			t.Fatalf("equal inputs, diff %q", d)
		}
		if b == "" && a != "" && a != "\n" {
			if n := strings.Count(d, "\n"); n != len(diffLines(a)) {
				t.Fatalf("%d diff lines for %d lines", n, len(diffLines(a)))
			}
		}
	})
}

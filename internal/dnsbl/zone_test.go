package dnsbl

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseZone(t *testing.T) {
	for _, tc := range []struct {
		in, canon string
		weight    int
		listed    []string // answers that count
		notListed []string
	}{
		{in: "zen.spamhaus.org=127.0.0.[4..7]*3", canon: "zen.spamhaus.org=127.0.0.[4..7]*3", weight: 3,
			listed: []string{"127.0.0.4", "127.0.0.7"}, notListed: []string{"127.0.0.2", "127.0.0.10", "127.0.0.8"}},
		{in: "list.example*1", canon: "list.example*1", weight: 1,
			listed: []string{"127.0.0.2", "127.1.2.3"}, notListed: []string{"127.255.255.254", "10.0.0.2"}},
		{in: "name.example=127.0.0.[2;4;10..11]", canon: "name.example=127.0.0.[2;4;10..11]*1", weight: 1,
			listed: []string{"127.0.0.2", "127.0.0.4", "127.0.0.10", "127.0.0.11"}, notListed: []string{"127.0.0.3", "127.0.0.12"}},
		{in: " AuthBL.Example.=127.0.0.20*5 ", canon: "authbl.example=127.0.0.20*5", weight: 5,
			listed: []string{"127.0.0.20"}, notListed: []string{"127.0.0.2"}},
		{in: "allow.example*-2", canon: "allow.example*-2", weight: -2, listed: []string{"127.0.0.2"}},
		{in: "a.example=127.0.[0..1].[3;2;1]", canon: "a.example=127.0.[0..1].[1..3]*1", weight: 1,
			listed: []string{"127.0.1.1", "127.0.0.3"}, notListed: []string{"127.0.2.1", "127.0.0.4"}},
		{in: "x.example=127.0.0.255*0", canon: "x.example=127.0.0.255*0", weight: 0},
	} {
		z, err := ParseZone(tc.in)
		if err != nil {
			t.Errorf("ParseZone(%q): %v", tc.in, err)
			continue
		}
		if z.String() != tc.canon || z.Weight != tc.weight {
			t.Errorf("ParseZone(%q) = %q weight %d, want %q weight %d", tc.in, z.String(), z.Weight, tc.canon, tc.weight)
		}
		again, err := ParseZone(z.String())
		if err != nil || again.String() != z.String() {
			t.Errorf("canonical form %q does not parse back to itself: %q, %v", z.String(), again.String(), err)
		}
		for _, s := range tc.listed {
			if !z.Matches(netip.MustParseAddr(s)) {
				t.Errorf("%s: %s should count", tc.in, s)
			}
		}
		for _, s := range tc.notListed {
			if z.Matches(netip.MustParseAddr(s)) {
				t.Errorf("%s: %s should not count", tc.in, s)
			}
		}
	}
}

func TestParseZoneErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty zone entry"},
		{"example", "single label"},
		{"list.example*x", "weight"},
		{"list.example*1001", "weight"},
		{"list.example*", "weight"},
		{"list.example=", "empty"},
		{"list.example=127.0.0", "four parts"},
		{"list.example=127.0.0.256", "from 0 to 255"},
		{"list.example=127.0.0.[5..4]", "backwards"},
		{"list.example=127.0.0.[4..7", "without ']'"},
		{"list.example=127.0.0.[]", "empty []"},
		{"list.example=127.0.0.2.5", "after the fourth part"},
		{"list.example=10.0.0.2", "must allow 127"},
		{"list..example", "empty label"},
		{"list.exa mple", "not allowed"},
		{"-list.example", "start or end"},
		{"list.example=127.0.0.-1", "from 0 to 255"},
		{strings.Repeat("a", 64) + ".example", "longer than 63"},
		{strings.Repeat("a.", 100) + "example", "longer than"},
		{strings.Repeat("a", MaxZoneSpec+1), "longer than"},
	} {
		_, err := ParseZone(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseZone(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
	if _, err := ParseZones([]string{"a.example", "A.example.=127.0.0.2"}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a zone listed twice: %v", err)
	}
	many := make([]string, MaxZones+1)
	for i := range many {
		many[i] = "z" + strings.Repeat("x", i) + ".example"
	}
	if _, err := ParseZones(many); err == nil {
		t.Error("too many zones accepted")
	}
}

func TestQueryName(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.99", "99.2.0.192.zen.example."},
		{"::ffff:192.0.2.99", "99.2.0.192.zen.example."},
		{"2001:db8:1:2::f", "f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.zen.example."},
	} {
		if got := QueryName(netip.MustParseAddr(tc.addr), "zen.example"); got != tc.want {
			t.Errorf("QueryName(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

func FuzzParseZone(f *testing.F) {
	for _, s := range []string{"zen.spamhaus.org=127.0.0.[4..7]*3", "list.example*1", "name.example=127.0.0.[2;4;10..11]", "a.b=127.[0..255].0.[1;2]*-5", "x.y=127.0.0.[", "*", "=*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseZone(s)
		if err != nil {
			return
		}
		again, err := ParseZone(z.String())
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", z.String(), s, err)
		}
		if again.String() != z.String() || again.Weight != z.Weight || again.filter != z.filter {
			t.Fatalf("%q: canonical form not stable: %q vs %q", s, z.String(), again.String())
		}
		if len(QueryName(netip.MustParseAddr("2001:db8::1"), z.Name)) > 254 {
			t.Fatalf("%q: query name too long", s)
		}
		if z.Matches(netip.MustParseAddr("127.255.255.254")) {
			t.Fatalf("%q counts an error code", s)
		}
	})
}

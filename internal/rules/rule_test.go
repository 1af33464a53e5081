package rules

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseMatch(t *testing.T) {
	good := map[string]string{
		"10.0.0.101":              "10.0.0.101/32",
		" 10.0.0.0/8 ":            "10.0.0.0/8",
		"none":                    "invalid Prefix",
		"NONE":                    "invalid Prefix",
		"2001:db8::1":             "2001:db8::1/128",
		"2001:db8::/32":           "2001:db8::/32",
		"::ffff:192.0.2.1":        "192.0.2.1/32",
		"::ffff:192.0.2.0/120":    "192.0.2.0/24",
		"0.0.0.0/0":               "0.0.0.0/0",
		"::/0":                    "::/0",
		"2001:DB8:0:0:0:0:0:1":    "2001:db8::1/128",
		"::ffff:0:0/96":           "0.0.0.0/0",
		"192.0.2.255/32":          "192.0.2.255/32",
		"fe80::1234:5678:9abc:de": "fe80::1234:5678:9abc:de/128",
	}
	for in, want := range good {
		p, err := ParseMatch(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseMatch(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	bad := map[string]string{
		"":               "empty address",
		"10.0.0.300":     "not an IP address",
		"10.0.0.1/8":     "did you mean 10.0.0.0/8",
		"10.0.0.0/33":    "not a CIDR",
		"fe80::1%eth0":   "zones are not allowed",
		"example.com":    "not an IP address",
		"10.0.0.0/8/8":   "not a CIDR",
		"any":            "not an IP address",
		"2001:db8::1/64": "host bits set",
	}
	for in, want := range bad {
		if _, err := ParseMatch(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMatch(%q) error = %v, want %q", in, err, want)
		}
	}
}

func TestNormalizeAccount(t *testing.T) {
	good := map[string]string{
		" Alice@Example.COM ": "alice@example.com",
		"@Example.com":        "@example.com",
		"*":                   "*",
		"nodomain":            "nodomain",
		"ünïcode@exämple.de":  "ünïcode@exämple.de",
	}
	for in, want := range good {
		if got, err := NormalizeAccount(in); err != nil || got != want {
			t.Errorf("NormalizeAccount(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", "@", "@a@b", "a b@x", "a*@x", "@x*", "a\x01@x", "bad\xff@x", strings.Repeat("a", 321)} {
		if got, err := NormalizeAccount(in); err == nil {
			t.Errorf("NormalizeAccount(%q) = %q, want an error", in, got)
		}
	}
}

func TestServices(t *testing.T) {
	for _, s := range []string{"imap", "pop3", "smtp", "submission", "sieve"} {
		if got := ProtocolService(s).String(); got != s {
			t.Errorf("ProtocolService(%q) = %s", s, got)
		}
	}
	if ProtocolService("lmtp") != OtherService || ProtocolService("") != OtherService || ProtocolService("all") != OtherService {
		t.Error("unknown protocols must be OtherService")
	}
	if !SMTP.covers(Submission) || Submission.covers(SMTP) || !AllServices.covers(Sieve) || IMAP.covers(POP3) {
		t.Error("covers is wrong")
	}
}

func TestValidate(t *testing.T) {
	bad := []struct {
		r    Rule
		want string
	}{
		{Rule{Account: "a@x", Action: Deny}, "match: none closes a service"},
		{Rule{Account: "a@x", Action: 0, Match: netip.MustParsePrefix("10.0.0.0/8")}, "action:"},
		{Rule{Scope: ScopeGlobal, Account: "a@x", Action: Allow, Match: netip.MustParsePrefix("10.0.0.0/8")}, "account: a global rule has no account"},
		{Rule{Scope: ScopeGlobal, Action: Allow}, "match: a global rule needs"},
		{Rule{Account: "a@x", Action: Allow, Service: OtherService}, "service:"},
		{Rule{Account: "a@x", Action: Allow, Comment: strings.Repeat("x", MaxCommentLen+1)}, "comment:"},
	}
	for _, b := range bad {
		if err := b.r.Validate(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: %v, want %q", b.r, err, b.want)
		}
	}
}

// FuzzParseMatch: never a panic; what parses is valid (or none), masked,
// unmapped, and parses again to itself from its own string form.
func FuzzParseMatch(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.0/8", "none", "::ffff:1.2.3.4", "2001:db8::/32", "fe80::1%eth0", "1.2.3.4/33", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseMatch(s)
		if err != nil {
			return
		}
		if !p.IsValid() {
			return // none
		}
		if p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParseMatch(%q) = %v: not normalized", s, p)
		}
		r := Rule{Account: "a@x", Action: Allow, Match: p}
		q, err := ParseMatch(r.MatchString())
		if err != nil || q != p {
			t.Fatalf("round trip of %q: %v -> %q -> %v, %v", s, p, r.MatchString(), q, err)
		}
	})
}

// FuzzNormalizeAccount: never a panic; accepted accounts are valid UTF-8,
// trimmed, lower-case and stable.
func FuzzNormalizeAccount(f *testing.F) {
	for _, s := range []string{"alice@example.com", "@example.com", "*", " A@B ", "a b", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := NormalizeAccount(s)
		if err != nil {
			return
		}
		if !utf8.ValidString(a) || a != strings.TrimSpace(a) || a == "" {
			t.Fatalf("NormalizeAccount(%q) = %q", s, a)
		}
		if b, err := NormalizeAccount(a); err != nil || b != a {
			t.Fatalf("not stable: %q -> %q -> %q, %v", s, a, b, err)
		}
	})
}

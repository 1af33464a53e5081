package api

import (
	"strings"
	"testing"
	"unicode/utf8"

	"mailgate/internal/rules"
)

// FuzzLoginReport: a login report body either fails with an error naming
// a field, or gives a login that is normalized, bounded and free of
// control characters, an unmapped address and a known service.
func FuzzLoginReport(f *testing.F) {
	for _, s := range []string{
		`{"login":"alice@example.test","ip":"::ffff:127.0.0.171","service":"imap","door":"hook"}`,
		`{"login":" Bob@Example.Test ","ip":"2001:db8::1%eth0","service":"pop3"}`,
		`{"login":"a\u0001b","ip":"1.2.3.4","service":"imap"}`,
		`{"login":"a","ip":"1.2.3.4","service":"other"}`,
		`{"login":"a","ip":"1.2.3.4","service":"imap","door":"NGINX"}`,
		`{"login":"a","ip":"1.2.3.4","service":"imap","password":"x"}`,
		`{"login":"a"} {}`, `[`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r LoginReport
		if strictUnmarshal(b, &r) != nil {
			return
		}
		if !utf8.Valid(b) {
			t.Fatalf("a body that is not UTF-8 was decoded: %q", r.Login)
		}
		l, err := r.check()
		if err != nil {
			field, _, _ := strings.Cut(err.Error(), ":")
			switch field {
			case "login", "ip", "service", "door":
			default:
				t.Fatalf("error names no field: %v", err)
			}
			return
		}
		if l.login == "" || len(l.login) > rules.MaxAccountLen || l.login != rules.NormalizeLogin(l.login) || !utf8.ValidString(l.login) {
			t.Fatalf("login %q", l.login)
		}
		for _, c := range l.login {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("login %q has a control character", l.login)
			}
		}
		if !l.addr.IsValid() || l.addr.Is4In6() || l.addr.Zone() != "" {
			t.Fatalf("address %v", l.addr)
		}
		if l.svc == rules.OtherService || l.svc == rules.AllServices || !isDoorName(l.door) {
			t.Fatalf("service %v door %q", l.svc, l.door)
		}
	})
}

// FuzzParsePermitFor: never a panic; an accepted duration is positive and
// at most MaxPermitFor.
func FuzzParsePermitFor(f *testing.F) {
	for _, s := range []string{"", "90m", "12h", "7d", "1.5d", "2w", "365d", "366d", "-1d", "1e300d", "NaNd", "0x1p3d", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParsePermitFor(s)
		if err == nil && (d <= 0 || d > MaxPermitFor) {
			t.Fatalf("ParsePermitFor(%q) = %v", s, d)
		}
	})
}

package store

import (
	"testing"

	"mailgate/internal/rules"
)

// FuzzDecodeRule: a stored rule row's text columns (scope, service,
// action, match), as an older version or a hand edit may have left them,
// either fail with an error (the row is skipped at load) or decode into a
// rule whose columns, written back as Save writes them, decode into the
// same rule. Never a panic.
func FuzzDecodeRule(f *testing.F) {
	for _, s := range [][4]string{
		{"account", "smtp", "allow", "10.0.0.101"},
		{"global", "all", "deny", "192.0.2.0/24"},
		{"account", "pop3", "allow", "none"},
		{"account", "imap", "extra", "country:AT,DE"},
		{"account", "sieve", "deny", "2001:db8::/48"},
		{"Account", "IMAP", "Allow", " Country: fr "},
		{"account", "submission", "allow", "::ffff:10.0.0.1"},
		{"account", "smtp", "allow", "fe80::1%eth0"},
		{"global", "all", "deny", "10.0.0.1/33"},
		{"", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, scope, service, action, match string) {
		var r rules.Rule
		if err := decodeRule(&r, scope, service, action, match); err != nil {
			return
		}
		var back rules.Rule
		if err := decodeRule(&back, r.Scope.String(), r.Service.String(), r.Action.String(), r.MatchString()); err != nil {
			t.Fatalf("%q %q %q %q decoded to %+v, whose columns do not decode: %v", scope, service, action, match, r, err)
		}
		if back.Scope != r.Scope || back.Service != r.Service || back.Action != r.Action || back.Match != r.Match || back.Countries != r.Countries {
			t.Fatalf("%q %q %q %q: %+v written back reads as %+v", scope, service, action, match, r, back)
		}
	})
}

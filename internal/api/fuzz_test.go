package api

import (
	"testing"
)

// FuzzRuleJSON: a rule body from the wire either fails with an error or
// gives a valid rule that survives a round trip through the wire form.
func FuzzRuleJSON(f *testing.F) {
	for _, s := range []string{
		`{"account":"shop@example.com","service":"smtp","action":"allow","match":"10.0.0.101"}`,
		`{"scope":"global","service":"all","action":"deny","match":"2001:db8::/32","comment":"x"}`,
		`{"account":"@x","service":"pop3","action":"allow","match":"none","expires":"2026-12-31T00:00:00Z"}`,
		`[{"account":"*","service":"imap","action":"deny","match":"::ffff:1.2.3.4"}]`,
		`{"account":"a","bogus":1}`, `{`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var j RuleJSON
		if strictUnmarshal(b, &j) != nil {
			return
		}
		r, err := j.Rule()
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("Rule() gave an invalid rule: %v", err)
		}
		back := FromRule(&r)
		r2, err := back.Rule()
		if err != nil {
			t.Fatalf("round trip of %+v: %v", back, err)
		}
		if r2.Account != r.Account || r2.Match != r.Match || r2.Service != r.Service || r2.Action != r.Action || r2.Scope != r.Scope {
			t.Fatalf("round trip changed the rule: %+v -> %+v", r, r2)
		}
	})
}

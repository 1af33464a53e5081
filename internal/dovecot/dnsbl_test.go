package dovecot

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// The DNSBL hook runs before the before-auth decision (never on the
// after-auth call), and a listed address is refused with mailgate's text.
func TestDNSBLHook(t *testing.T) {
	e := policy.New(rules.NewIndex(), nil)
	p := policy.DNSBLPolicy{Threshold: 2}
	p.Services[rules.IMAP] = true
	e.SetDNSBL(p)
	var calls []bool
	hook := func(ctx context.Context, a *policy.Attempt, now time.Time) {
		calls = append(calls, a.AfterAuth)
		if e.NeedsDNSBL(a, now) && a.Client.String() == "203.0.113.66" {
			a.DNSBL = policy.DNSBL{Checked: true, Score: 3, Zones: "bl.example"}
		}
	}
	var dl bytes.Buffer
	h := NewHandler(Config{DNSBL: hook}, e, policy.NewDecisionLog(&dl), nil)
	w := post(h, "command=allow", `{"login":"a@example.test","protocol":"imap","remote":"203.0.113.66","session_id":"s1"}`)
	if want := `{"status":-1,"msg":"Your address (203.0.113.66) is on a blocklist of abused addresses (bl.example); logins from it are refused. Please use another network, or ask your mail administrator."}`; w.Body.String() != want {
		t.Errorf("listed: %s", w.Body)
	}
	body := `{"login":"a@example.test","protocol":"imap","remote":"203.0.113.67","session_id":"s2"}`
	if w := post(h, "command=allow", body); w.Body.String() != `{"status":0,"msg":""}` {
		t.Errorf("not listed: %s", w.Body)
	}
	post(h, "command=allow", body) // the after-auth call
	if len(calls) != 2 || calls[0] || calls[1] {
		t.Errorf("hook calls (after-auth flags): %v, want two before-auth calls", calls)
	}
	if !strings.Contains(dl.String(), "decision=deny reason=dnsbl rule=- door=dovecot service=imap login=a@example.test ip=203.0.113.66 session=s1 dnsbl=bl.example dnsbl_score=3") {
		t.Errorf("decision log:\n%s", dl.String())
	}
}

package policy

import (
	"strings"
	"testing"
	"time"

	"mailgate/internal/rules"
)

func dnsblPolicy(threshold int, services ...rules.Service) DNSBLPolicy {
	p := DNSBLPolicy{Threshold: threshold}
	for _, s := range services {
		p.Services[s] = true
	}
	return p
}

func TestDNSBLDecide(t *testing.T) {
	e, _ := engineWithAbuse(t,
		"global all allow 192.0.2.0/24",
		"boss@x.test all allow 203.0.113.7",
	)
	e.SetDNSBL(dnsblPolicy(3, rules.IMAP, rules.POP3))
	home := attempt("anna@x.test", "imap", "198.51.100.10")
	e.Report(home, true, now.Add(-time.Hour)) // a known-good pair

	listed := DNSBL{Checked: true, Score: 5, Zones: "zen.example,auth.example"}
	for _, tc := range []struct {
		name, login, service, ip string
		res                      DNSBL
		needs                    bool
		reason                   Reason
		check                    string // the trace's dnsbl result
	}{
		{"listed", "eve@x.test", "imap", "203.0.113.50", listed, true, ReasonDNSBL, "listed"},
		{"listed pop3", "eve@x.test", "pop3", "203.0.113.50", listed, true, ReasonDNSBL, "listed"},
		{"below the threshold", "eve@x.test", "imap", "203.0.113.51", DNSBL{Checked: true, Score: 2, Zones: "a.example"}, true, ReasonDefault, "passed"},
		{"at the threshold", "eve@x.test", "imap", "203.0.113.52", DNSBL{Checked: true, Score: 3, Zones: "a.example"}, true, ReasonDNSBL, "listed"},
		{"no answer in time", "eve@x.test", "imap", "203.0.113.53", DNSBL{}, true, ReasonDefault, "no answer"},
		{"submission not chosen", "eve@x.test", "submission", "203.0.113.50", listed, false, ReasonDefault, "skipped"},
		{"trusted network", "eve@x.test", "imap", "192.0.2.9", listed, false, ReasonTrusted, ""},
		{"the account's allow rule", "boss@x.test", "imap", "203.0.113.7", listed, false, ReasonAccountAllow, ""},
		{"known good", "anna@x.test", "imap", "198.51.100.10", listed, false, ReasonDefault, "skipped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attempt(tc.login, tc.service, tc.ip)
			if got := e.NeedsDNSBL(a, now); got != tc.needs {
				t.Errorf("NeedsDNSBL = %v, want %v", got, tc.needs)
			}
			a.DNSBL = tc.res
			tr := &Trace{}
			v := e.Decide(a, now, tr)
			if v.Reason != tc.reason {
				t.Errorf("reason %v, want %v", v.Reason, tc.reason)
			}
			got := ""
			for _, c := range tr.Checks {
				if c.Name == "dnsbl" {
					got = c.Result
				}
			}
			if got != tc.check {
				t.Errorf("trace dnsbl %q, want %q (%+v)", got, tc.check, tr.Checks)
			}
			if v.Reason == ReasonDNSBL {
				msg := e.Message(a, &v)
				if !strings.Contains(msg, "zen.example,auth.example") && !strings.Contains(msg, "a.example") {
					t.Errorf("message does not name the zones: %q", msg)
				}
				if v.Explain(a) == "" || !strings.Contains(v.Explain(a), "listed by") {
					t.Errorf("explanation %q", v.Explain(a))
				}
			}
		})
	}
	// A ban refuses without a query.
	e.SetDNSBL(DNSBLPolicy{})
	if e.NeedsDNSBL(attempt("eve@x.test", "imap", "203.0.113.50"), now) {
		t.Error("threshold 0 (off) still asks")
	}
	a := attempt("eve@x.test", "imap", "203.0.113.50")
	a.DNSBL = listed
	if v := e.Decide(a, now, nil); v.Action != Allow {
		t.Errorf("off, but refused: %v", v.Reason)
	}
}

func TestDNSBLAfterAuthAndBan(t *testing.T) {
	e, tr := engineWithAbuse(t)
	e.SetDNSBL(dnsblPolicy(1, rules.IMAP))
	a := attempt("eve@x.test", "imap", "203.0.113.60")
	a.AfterAuth = true
	if e.NeedsDNSBL(a, now) {
		t.Error("Dovecot's after-auth call asks the zones")
	}
	for i, h := range []string{"0a01", "0a02", "0a03", "0a04", "0a05"} {
		fail(e, "someone@x.test", "203.0.113.61", h, now.Add(time.Duration(i)*time.Second))
	}
	if len(tr.Bans(now.Add(10*time.Second))) == 0 {
		t.Fatal("no ban")
	}
	if e.NeedsDNSBL(attempt("eve@x.test", "imap", "203.0.113.61"), now.Add(10*time.Second)) {
		t.Error("a banned address is asked about")
	}
}

func TestDNSBLDecisionLine(t *testing.T) {
	a := attempt("eve@x.test", "imap", "203.0.113.50")
	a.Door = "dovecot"
	a.DNSBL = DNSBL{Checked: true, Score: 2, Zones: "a.example,b.example"}
	v := Verdict{Action: Allow}
	line := string(AppendVerdict(nil, now, a, &v))
	if !strings.Contains(line, " dnsbl=a.example,b.example dnsbl_score=2") {
		t.Errorf("line %q", line)
	}
	a.DNSBL = DNSBL{Checked: true}
	if line := string(AppendVerdict(nil, now, a, &v)); strings.Contains(line, "dnsbl") {
		t.Errorf("not listed, but %q", line)
	}
	v = Verdict{Action: Deny, Reason: ReasonDNSBL}
	a.DNSBL = DNSBL{Checked: true, Score: 4, Zones: "a.example"}
	if line := string(AppendVerdict(nil, now, a, &v)); !strings.Contains(line, "decision=deny reason=dnsbl rule=- door=dovecot service=imap login=eve@x.test ip=203.0.113.50 dnsbl=a.example dnsbl_score=4") {
		t.Errorf("line %q", line)
	}
}

func TestNeedsDNSBLDoesNotAllocate(t *testing.T) {
	e, _ := engineWithAbuse(t, "eve@x.test all deny 203.0.113.70")
	e.SetDNSBL(dnsblPolicy(1, rules.IMAP))
	for _, a := range []*Attempt{
		attempt("eve@x.test", "imap", "203.0.113.70"),       // the rules refuse it
		attempt("eve@x.test", "submission", "203.0.113.71"), // service not checked
		attempt("bob@x.test", "imap", "203.0.113.72"),       // looked up
	} {
		if n := testing.AllocsPerRun(100, func() { e.NeedsDNSBL(a, now) }); n != 0 {
			t.Errorf("%s %s: %v allocations", a.Service, a.Client, n)
		}
	}
}

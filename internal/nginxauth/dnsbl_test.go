package nginxauth

import (
	"context"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// A listed address is refused before its password is checked.
func TestDNSBLBeforePassword(t *testing.T) {
	e := newEngine(t)
	p := policy.DNSBLPolicy{Threshold: 1}
	p.Services[rules.IMAP] = true
	e.SetDNSBL(p)
	ev := newEnv(t, e, nil, func(c *Config) {
		c.DNSBL = func(ctx context.Context, a *policy.Attempt, now time.Time) {
			if e.NeedsDNSBL(a, now) && a.Client.String() == "127.0.2.1" {
				a.DNSBL = policy.DNSBL{Checked: true, Score: 1, Zones: "bl.example"}
			}
		}
	})
	msg := "Your address (127.0.2.1) is on a blocklist of abused addresses (bl.example); logins from it are refused. Please use another network, or ask your mail administrator."
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.2.1", 1), want{status: msg})
	if ev.v.n() != 0 {
		t.Error("a listed address's password was checked")
	}
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.2.2", 1), okIMAP)
	if !strings.Contains(ev.decisions.String(), "reason=dnsbl rule=- door=nginx service=imap login=alice@example.test ip=127.0.2.1 dnsbl=bl.example dnsbl_score=1") {
		t.Errorf("decision log:\n%s", ev.decisions.String())
	}
}

// dnsbl.services = ["smtp"] means SMTP AUTH through nginx: an MTA
// delivering mail (Auth-Method: none, no login) is not a login, and is
// neither looked up nor refused with the login text; an SMTP AUTH login
// from the same listed address is.
func TestDNSBLNotForMailWithoutLogin(t *testing.T) {
	e := newEngine(t)
	p := policy.DNSBLPolicy{Threshold: 1}
	p.Services[rules.SMTP] = true
	e.SetDNSBL(p)
	asked := 0
	ev := newEnv(t, e, nil, func(c *Config) {
		c.DNSBL = func(ctx context.Context, a *policy.Attempt, now time.Time) {
			if e.NeedsDNSBL(a, now) {
				asked++
				a.DNSBL = policy.DNSBL{Checked: true, Score: 1, Zones: "bl.example"}
			}
		}
	})
	mta := withSecret(nginxRequest("none", "smtp", "", "", "127.0.2.3", 1),
		"Auth-SMTP-Helo: mta.remote.test", "Auth-SMTP-From: MAIL FROM:<sender@remote.test>", "Auth-SMTP-To: RCPT TO:<bob@example.test>")
	check(t, ev.serve(t, mta), want{status: "OK", server: "127.0.0.1", port: "10025"})
	if asked != 0 {
		t.Errorf("an MTA without a login was looked up %d times", asked)
	}
	msg := "Your address (127.0.2.3) is on a blocklist of abused addresses (bl.example); logins from it are refused. Please use another network, or ask your mail administrator."
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.2.3", 1), want{status: msg, code: DefaultSMTPErrorCode})
}

package maillog

import (
	"net/netip"
	"testing"
	"time"

	"mailgate/internal/rules"
)

var ref = time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)

type lineCase struct {
	name string
	line string
	want *Event // nil: not a login outcome
}

func ev(prog string, svc rules.Service, login, addr string, success bool, attempts int, session string, t time.Time) *Event {
	return &Event{Time: t, Program: prog, Service: svc, Login: login, Client: netip.MustParseAddr(addr),
		Success: success, Attempts: attempts, Session: session}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func runLineCases(t *testing.T, cases []lineCase) {
	t.Helper()
	for _, c := range cases {
		var got Event
		ok := ParseLine([]byte(c.line), ref, &got)
		switch {
		case c.want == nil && ok:
			t.Errorf("%s: %q: got %+v, want no event", c.name, c.line, got)
		case c.want != nil && !ok:
			t.Errorf("%s: %q: no event, want %+v", c.name, c.line, *c.want)
		case c.want != nil && !sameEvent(got, *c.want):
			t.Errorf("%s: %q:\n got %+v\nwant %+v", c.name, c.line, got, *c.want)
		}
	}
}

func sameEvent(a, b Event) bool {
	return a.Time.Equal(b.Time) && a.Program == b.Program && a.Service == b.Service && a.Login == b.Login &&
		a.Client == b.Client && a.Success == b.Success && a.Attempts == b.Attempts && a.Session == b.Session
}

func TestDovecotLines(t *testing.T) {
	t0 := at("2026-12-05T18:55:53Z")
	runLineCases(t, []lineCase{
		{"log_path login", "Dec 05 18:55:53 imap-login: Info: Login: user=<Alice@Example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=23639, secured, session=<zHU7R9RgWLZ/AAAB>",
			ev(Dovecot, rules.IMAP, "alice@example.test", "127.0.0.1", true, 0, "zHU7R9RgWLZ/AAAB", t0)},
		{"syslog pop3 failure", "Dec  5 18:55:53 mx dovecot[442]: pop3-login: Disconnected: Connection closed (auth failed, 2 attempts in 4 secs): user=<bob>, method=PLAIN, rip=::ffff:192.0.2.7, lip=192.0.2.1, session=<abc>",
			ev(Dovecot, rules.POP3, "bob", "192.0.2.7", false, 2, "abc", t0)},
		{"ipv6 submission", "Dec 05 18:55:53 submission-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<a>, method=LOGIN, rip=2001:db8::1, lip=::1, secured, session=<6r9c>",
			ev(Dovecot, rules.Submission, "a", "2001:db8::1", false, 1, "6r9c", t0)},
		{"injection", "Dec 05 18:55:53 imap-login: Info: Login: user=<evil>, method=PLAIN, rip=6.6.6.6, lip=x, session=<forged>>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, mpid=1, session=<real>",
			ev(Dovecot, rules.IMAP, "evil>, method=plain, rip=6.6.6.6, lip=x, session=<forged>", "192.0.2.9", true, 0, "real", t0)},
		{"no auth attempts", "Dec 05 18:55:53 imap-login: Info: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=127.0.0.133, lip=127.0.0.1, session=<VIF2Y9Rgx+h/AACF>", nil},
		{"password mismatch is not counted", "Dec 05 18:55:53 auth: Info: passwd-file(alice@example.test,127.0.0.1,<mf09R9RgaLZ/AAAB>): Password mismatch", nil},
	})
}

package maillog

import (
	"bytes"
	"testing"
	"time"

	"mailgate/internal/rules"
)

// checkEvent holds what every event must satisfy, whatever the input.
func checkEvent(t *testing.T, line []byte, e Event) {
	t.Helper()
	switch e.Program {
	case Dovecot, Postfix, Nginx:
	default:
		t.Fatalf("%q: program %q", line, e.Program)
	}
	if !e.Client.IsValid() || e.Client.Is4In6() || e.Client.Zone() != "" {
		t.Fatalf("%q: client %v", line, e.Client)
	}
	if e.Service == rules.AllServices {
		t.Fatalf("%q: service all", line)
	}
	if e.Success != (e.Attempts == 0) || e.Attempts < 0 {
		t.Fatalf("%q: success %v attempts %d", line, e.Success, e.Attempts)
	}
	if e.Login != rules.NormalizeLogin(e.Login) {
		t.Fatalf("%q: login %q not normalized", line, e.Login)
	}
	// An IPv4 client is in the line as written (leading zeros are
	// refused); IPv6 has several spellings.
	if e.Client.Is4() && !bytes.Contains(line, []byte(e.Client.String())) {
		t.Fatalf("%q: client %v is not in the line", line, e.Client)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"Dec  5 18:55:53 mx dovecot: imap-login: Login: user=<a@x>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=1, session=<s>",
		"Dec 05 18:55:53 imap-login: Info: Disconnected: Connection closed (auth failed, 2 attempts in 4 secs): user=<x>, method=PLAIN, rip=6.6.6.6, session=<f>>, method=PLAIN, rip=::ffff:192.0.2.9, lip=::1, session=<r>",
		"<22>1 2026-12-05T18:55:53Z mx dovecot 12 ID [a b=\"]\"] pop3-login: Login aborted: Connection closed (auth failed, 1 attempts in 2 secs) (auth_failed): user=<b>, rip=2001:db8::1, lip=::1",
		"Dec  5 18:55:53 mx postfix/smtpd[1]: warning: unknown[192.0.2.9]:25: SASL PLAIN authentication failed: x, sasl_username=y",
		"Dec  5 18:55:53 mx postfix/smtpd[1]: ABC123: client=h[2001:db8::5], sasl_method=PLAIN, sasl_username=bob, sasl_sender=x",
		`2026/12/05 18:55:53 [info] 9#9: *3 client logged in, client: 192.0.2.2, server: 0.0.0.0:110, login: "a", upstream: 127.0.0.1:10110`,
		`2026/12/05 18:55:53 [info] 9#9: *3 client login failed: "x" while in http auth state, client: 192.0.2.2, server: [::]:143, login: "a`,
		"2026-12-05T19:55:53.000000+01:00 mx dovecot[12]: submission-login: Logged in: user=<c>, rip=192.0.2.3",
		"imap-login: Info: Login: user=<>, rip=192.0.2.1",
	} {
		f.Add([]byte(s))
	}
	ref := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line []byte) {
		var e Event
		if ParseLine(line, ref, &e) {
			checkEvent(t, line, e)
		}
	})
}

func FuzzParseJournal(f *testing.F) {
	for _, s := range []string{
		`{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1764960953123456","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: Login: user=<a>, method=PLAIN, rip=192.0.2.1, lip=x"}`,
		`{"__CURSOR":"s=1","SYSLOG_IDENTIFIER":"postfix/smtpd","MESSAGE":[119,97,114,110,105,110,103,58,32]}`,
		`{ "MESSAGE" : "imap-login: Disconnected (auth failed, 1 attempts): user=<\"\\\u0041>, rip=::1", "SYSLOG_IDENTIFIER" : "dovecot" }`,
		`{"__CURSOR":"s=1","SYSLOG_IDENTIFIER":"nginx","MESSAGE":"2026/12/05 18:55:53 [info] 9#9: *3 client login failed: \"x\" while in http auth state, client: 192.0.2.2, server: 1.2.3.4:143, login: \"a\""}`,
		`{"a":null,"b":[["x"]],"MESSAGE":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var e Event
		cur, ok := ParseJournalBytes(line, &e)
		if len(cur) > 0 && !bytes.Contains(line, cur) {
			t.Fatalf("%q: cursor %q not in the line", line, cur)
		}
		if ok {
			if e.Program != Dovecot && e.Program != Postfix && e.Program != Nginx {
				t.Fatalf("%q: program %q", line, e.Program)
			}
			if !e.Client.IsValid() || e.Client.Is4In6() || e.Success != (e.Attempts == 0) {
				t.Fatalf("%q: %+v", line, e)
			}
		}
	})
}

package maillog

import (
	"testing"
	"time"

	"mailgate/internal/rules"
)

func TestParseJournal(t *testing.T) {
	const cur = `s=0a1b;i=5f2;b=9c;m=1a;t=62c;x=3d`
	t0 := time.UnixMicro(1764960953123456)
	for _, c := range []struct {
		name, line string
		want       *Event
	}{
		{"dovecot", `{"__CURSOR":"` + cur + `","__REALTIME_TIMESTAMP":"1764960953123456","PRIORITY":"6","SYSLOG_IDENTIFIER":"dovecot","_PID":"12","MESSAGE":"imap-login: Login: user=<alice@example.test>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=3, TLS, session=<AbC>"}`,
			&Event{Time: t0, Program: Dovecot, Service: rules.IMAP, Login: "alice@example.test", Client: mustAddr("192.0.2.1"), Success: true, Session: "AbC"}},
		{"spaces, escapes, field order", `{ "MESSAGE" : "imap-login: Info: Disconnected (auth failed, 2 attempts in 4 secs): user=<\"q\\x\u00e9>, method=PLAIN, rip=2001:db8::1, lip=::1, session=<S>", "__CURSOR" : "` + cur + `", "SYSLOG_IDENTIFIER" : "dovecot", "__REALTIME_TIMESTAMP" : "1764960953123456" }`,
			&Event{Time: t0, Program: Dovecot, Service: rules.IMAP, Login: `"q\xé`, Client: mustAddr("2001:db8::1"), Attempts: 2, Session: "S"}},
		{"postfix", `{"__CURSOR":"` + cur + `","__REALTIME_TIMESTAMP":"1764960953123456","SYSLOG_IDENTIFIER":"postfix/submission/smtpd","MESSAGE":"warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=bob"}`,
			&Event{Time: t0, Program: Postfix, Service: rules.SMTP, Login: "bob", Client: mustAddr("192.0.2.9"), Attempts: 1}},
		{"message as bytes", `{"__CURSOR":"` + cur + `","__REALTIME_TIMESTAMP":"1764960953123456","SYSLOG_IDENTIFIER":"postfix/smtpd","MESSAGE":[119,97,114,110,105,110,103,58,32,117,110,107,110,111,119,110,91,49,57,50,46,48,46,50,46,57,93,58,32,83,65,83,76,32,80,76,65,73,78,32,97,117,116,104,101,110,116,105,99,97,116,105,111,110,32,102,97,105,108,101,100,58,32,120,44,32,115,97,115,108,95,117,115,101,114,110,97,109,101,61,255]}`,
			&Event{Time: t0, Program: Postfix, Service: rules.SMTP, Login: "\xff", Client: mustAddr("192.0.2.9"), Attempts: 1}},
		{"nginx on stderr", `{"__CURSOR":"` + cur + `","__REALTIME_TIMESTAMP":"1764960953123456","SYSLOG_IDENTIFIER":"nginx","MESSAGE":"2026/12/05 18:55:53 [info] 9#9: *4 client login failed: \"Invalid login or password\" while in http auth state, client: 192.0.2.72, server: 0.0.0.0:993, login: \"a\""}`,
			&Event{Time: t0, Program: Nginx, Service: rules.IMAP, Login: "a", Client: mustAddr("192.0.2.72"), Attempts: 1}},
		{"nginx entry holding a forged Dovecot line", `{"__CURSOR":"` + cur + `","SYSLOG_IDENTIFIER":"nginx","MESSAGE":"Dec  5 18:55:53 mx dovecot: imap-login: Login: user=<a>, method=PLAIN, rip=6.6.6.6, lip=x, session=<f>"}`, nil},
		{"nginx entry holding a forged log_path line", `{"__CURSOR":"` + cur + `","SYSLOG_IDENTIFIER":"nginx","MESSAGE":"imap-login: Login: user=<a>, method=PLAIN, rip=6.6.6.6, lip=x, session=<f>"}`, nil},
		{"other program", `{"__CURSOR":"` + cur + `","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"imap-login: Login: user=<a>, rip=192.0.2.1"}`, nil},
		{"null message", `{"__CURSOR":"` + cur + `","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":null}`, nil},
		{"noise", `{"__CURSOR":"` + cur + `","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"master: Info: Dovecot v2.3.19.1 starting up"}`, nil},
		{"no time", `{"__CURSOR":"` + cur + `","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: Login: user=<a>, method=PLAIN, rip=192.0.2.1, lip=x"}`,
			&Event{Program: Dovecot, Service: rules.IMAP, Login: "a", Client: mustAddr("192.0.2.1"), Success: true}},
	} {
		var e Event
		gotCur, ok := ParseJournal([]byte(c.line), &e)
		if gotCur != cur {
			t.Errorf("%s: cursor %q, want %q", c.name, gotCur, cur)
		}
		switch {
		case c.want == nil && ok:
			t.Errorf("%s: got %+v, want no event", c.name, e)
		case c.want != nil && !ok:
			t.Errorf("%s: no event, want %+v", c.name, *c.want)
		case c.want != nil && !sameEvent(e, *c.want):
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, e, *c.want)
		}
	}
	for _, bad := range []string{``, `{`, `[]`, `{"MESSAGE":"x`, `{"a":[1,2`, `{"__CURSOR":"c","MESSAGE":[1,[2]]}`, `{"MESSAGE" "x"}`} {
		var e Event
		if _, ok := ParseJournal([]byte(bad), &e); ok {
			t.Errorf("%q: got an event", bad)
		}
	}
}

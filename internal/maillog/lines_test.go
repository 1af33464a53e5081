package maillog

import (
	"testing"
	"time"

	"mailgate/internal/rules"
)

// Cases marked "fail2ban:" reproduce, in lines written here, a case of
// fail2ban's test corpus (fail2ban/tests/files/logs/<file>, GPL-2; not
// copied): the description says which.

func TestPrefixes(t *testing.T) {
	t0 := at("2026-12-05T18:55:53Z")
	const body = "imap-login: Login: user=<a@x>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=1, session=<s>"
	want := ev(Dovecot, rules.IMAP, "a@x", "192.0.2.1", true, 0, "s", t0)
	loc := time.FixedZone("CET", 3600)
	_ = loc
	runLineCases(t, []lineCase{
		{"rfc3164", "Dec  5 18:55:53 mx dovecot: " + body, want},
		{"rfc3164 with pri", "<22>Dec  5 18:55:53 mx dovecot[12]: " + body, want},
		{"rfc3164 zero-padded day", "Dec 05 18:55:53 mx dovecot: " + body, want},
		{"fail2ban postfix: day without padding", "Dec 5 18:55:53 mx dovecot: " + body, want},
		{"rsyslog rfc3339", "2026-12-05T19:55:53.000000+01:00 mx dovecot[12]: " + body, want},
		{"rfc5424", "<22>1 2026-12-05T18:55:53Z mx dovecot 12 - - " + body, want},
		{"rfc5424 structured data", `<22>1 2026-12-05T18:55:53Z mx dovecot 12 ID1 [ex@1 a="x\"]" b="y"][ex@2 c="d"] ` + body, want},
		{"rfc5424 bom", "<22>1 2026-12-05T18:55:53Z mx dovecot 12 - - \xef\xbb\xbf" + body, want},
		{"rfc5424 no time", "<22>1 - mx dovecot 12 - - " + body, ev(Dovecot, rules.IMAP, "a@x", "192.0.2.1", true, 0, "s", time.Time{})},
		{"dovecot log_path", "Dec 05 18:55:53 imap-login: Info: " + body[len("imap-login: "):], want},
		{"dovecot iso log_timestamp", "2026-12-05 18:55:53 imap-login: Info: " + body[len("imap-login: "):], want},
		{"dovecot no log_timestamp", "imap-login: Info: " + body[len("imap-login: "):], ev(Dovecot, rules.IMAP, "a@x", "192.0.2.1", true, 0, "s", time.Time{})},
		{"crlf", "Dec  5 18:55:53 mx dovecot: " + body + "\r\n", want},
		{"december line read in january", "Dec 31 23:59:59 mx dovecot: " + body, nil}, // checked below with another ref
		{"not a month", "Foo  5 18:55:53 mx dovecot: " + body, nil},
		{"bad pri", "<x>Dec  5 18:55:53 mx dovecot: " + body, nil},
		{"other program", "Dec  5 18:55:53 mx sshd[1]: " + body, nil},
		{"empty", "", nil},
	}[:13])
	// A BSD time after ref (beyond a week) is from the year before.
	var e Event
	if !ParseLine([]byte("Dec 31 23:59:59 mx dovecot: "+body), time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC), &e) ||
		!e.Time.Equal(time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("December line read in January: %v", e.Time)
	}
	if !ParseLine([]byte("Dec 05 18:55:53 mx dovecot: "+body), time.Date(2026, 12, 5, 0, 0, 0, 0, loc), &e) ||
		!e.Time.Equal(time.Date(2026, 12, 5, 18, 55, 53, 0, loc)) {
		t.Errorf("zone from ref: %v", e.Time)
	}
	runLineCases(t, []lineCase{
		{"not a month", "Foo  5 18:55:53 mx dovecot: " + body, nil},
		{"bad pri", "<x>Dec  5 18:55:53 mx dovecot: " + body, nil},
		{"other program", "Dec  5 18:55:53 mx sshd[1]: " + body, nil},
		{"empty", "", nil},
		{"too long", "Dec  5 18:55:53 mx dovecot: " + body + string(make([]byte, MaxLineLen)), nil},
		{"fail2ban dovecot: daemontools tai64n", "@400000004c91b044077a9e94 " + body, nil},
	})
}

func TestDovecotVariants(t *testing.T) {
	t0 := at("2026-12-05T18:55:53Z")
	const p = "Dec  5 18:55:53 mx dovecot: "
	runLineCases(t, []lineCase{
		{"fail2ban dovecot: 2.2 aborted login without session", p + "imap-login: Aborted login (auth failed, 1 attempts): user=<martin@example.com>, method=CRAM-MD5, rip=192.0.2.33, lip=192.0.2.240, TLS",
			ev(Dovecot, rules.IMAP, "martin@example.com", "192.0.2.33", false, 1, "", t0)},
		{"fail2ban dovecot: no user element", p + "imap-login: Disconnected (auth failed, 1 attempts): method=PLAIN, rip=192.0.2.100, lip=192.0.2.194, TLS: Disconnected",
			ev(Dovecot, rules.IMAP, "", "192.0.2.100", false, 1, "", t0)},
		{"fail2ban dovecot: inactivity", p + "pop3-login: Disconnected: Inactivity (auth failed, 1 attempts in 178 secs): user=<ivo>, method=PLAIN, rip=192.0.2.4, lip=192.0.2.2, session=<6brQWt/vCADDhP/+>",
			ev(Dovecot, rules.POP3, "ivo", "192.0.2.4", false, 1, "6brQWt/vCADDhP/+", t0)},
		{"fail2ban dovecot: reset by peer in the reason", p + "imap-login: Disconnected: Connection closed: read(size=1003) failed: Connection reset by peer (auth failed, 1 attempts in 0 secs): user=<test@example.com>, rip=192.0.2.4, lip=127.0.0.19, session=<Lsz0Oo7WXti3b7xe>",
			ev(Dovecot, rules.IMAP, "test@example.com", "192.0.2.4", false, 1, "Lsz0Oo7WXti3b7xe", t0)},
		{"fail2ban dovecot: too many invalid commands", p + "managesieve-login: Disconnected: Too many invalid commands. (auth failed, 3 attempts in 2 secs): user=<myself>, method=PLAIN, rip=192.0.2.100, lip=0.0.0.0, TLS, TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 bits)",
			ev(Dovecot, rules.Sieve, "myself", "192.0.2.100", false, 3, "", t0)},
		{"fail2ban dovecot: submission client has quit", p + "submission-login: Client has quit the connection (auth failed, 1 attempts in 2 secs): user=<user1>, method=LOGIN, rip=192.0.2.133, lip=0.0.0.0",
			ev(Dovecot, rules.Submission, "user1", "192.0.2.133", false, 1, "", t0)},
		{"fail2ban dovecot: proxy dest auth failed", p + "imap-login: Disconnected (proxy dest auth failed): user=<r@example.com>, method=PLAIN, rip=192.0.2.4, lip=192.168.1.2, session=<NTI4FiZxcQCSud4G>",
			ev(Dovecot, rules.IMAP, "r@example.com", "192.0.2.4", false, 1, "NTI4FiZxcQCSud4G", t0)},
		{"dovecot 2.4 login aborted", p + "imap-login: Login aborted: Connection closed (auth failed, 2 attempts in 4 secs) (auth_failed): user=<alice@example.test>, method=PLAIN, rip=2001:db8::7, lip=2001:db8::1, session=<Qx7N>",
			ev(Dovecot, rules.IMAP, "alice@example.test", "2001:db8::7", false, 2, "Qx7N", t0)},
		{"ipv4-mapped", p + "imap-login: Login: user=<a>, method=PLAIN, rip=::ffff:192.0.2.9, lip=::ffff:192.0.2.1, mpid=9, session=<s>",
			ev(Dovecot, rules.IMAP, "a", "192.0.2.9", true, 0, "s", t0)},

		// Not outcomes.
		{"fail2ban dovecot: plaintext disabled (no password check)", p + "pop3-login: Aborted login (tried to use disallowed plaintext auth): rip=192.0.2.21, lip=192.0.2.193, session=<LgDINsQCkttVIMPg>", nil},
		{"fail2ban dovecot: no auth attempts", p + "pop3-login: Disconnected (no auth attempts in 58 secs): user=<>, rip=192.0.2.13, lip=192.0.2.17, session=<LgDINsQCkttVIMPg>", nil},
		{"fail2ban dovecot: before auth was ready", p + "imap-login: Disconnected (disconnected before auth was ready, waited 0 secs): user=<>, rip=192.0.2.5, lip=192.168.1.2, TLS handshaking: SSL_accept() syscall failed: Connection reset by peer", nil},
		{"fail2ban dovecot: client didn't finish SASL", p + "imap-login: Disconnected (client didn't finish SASL auth, waited 2 secs): user=<>, method=PLAIN, rip=192.0.2.6, lip=192.168.1.2, TLS: SSL_read() syscall failed: Connection reset by peer", nil},
		{"fail2ban dovecot: auth process password mismatch", p + "auth: sql(admin@example.ru,192.0.2.226,<6rXunFtu493AqJDi>): Password mismatch", nil},
		{"fail2ban dovecot: auth-worker unknown user", p + "auth-worker(304): pam(username,192.0.2.4): unknown user", nil},
		{"fail2ban dovecot: pam_unix rhost injected into ruser", "Dec  5 18:55:53 mx dovecot-auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=rhost=1.2.3.4 rhost=192.0.43.10", nil},
		{"zero attempts", p + "imap-login: Disconnected (auth failed, 0 attempts): user=<a>, rip=192.0.2.1", nil},
		{"bad address", p + "imap-login: Login: user=<a>, method=PLAIN, rip=192.0.2.300, lip=x", nil},
		{"no rip", p + "imap-login: Login: user=<a>, method=PLAIN, lip=192.0.2.1", nil},
		{"master", p + "master: Info: Dovecot v2.3.19.1 (9b53102964) starting up for imap, pop3", nil},
	})
}

func TestInjection(t *testing.T) {
	t0 := at("2026-12-05T18:55:53Z")
	const p = "Dec  5 18:55:53 mx dovecot: "
	runLineCases(t, []lineCase{
		{"dovecot: forged rip and session after a closing >", p + "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, session=<forged>>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, session=<real>",
			ev(Dovecot, rules.IMAP, "x>, method=plain, rip=6.6.6.6, lip=1.1.1.1, session=<forged>", "192.0.2.9", false, 1, "real", t0)},
		{"dovecot: fail2ban's 'user=<evil rip=6.6.6.6>'", p + "imap-login: Login: user=<evil rip=6.6.6.6>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1, mpid=2, session=<real>",
			ev(Dovecot, rules.IMAP, "evil rip=6.6.6.6", "192.0.2.9", true, 0, "real", t0)},
		{"dovecot: a forged rip on a line without its own (unix socket client)", p + "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, rip=6.6.6.6, lip=1.1.1.1>, method=PLAIN, session=<real>", nil},
		{"dovecot: forged reason in the login", p + "imap-login: Disconnected (no auth attempts in 0 secs): user=<x (auth failed, 9 attempts): >, rip=192.0.2.9, lip=192.0.2.1", nil},
		{"dovecot: a failure summary in an IMAP ID value (imap_id_log, captured from 2.3.19)", p + "imap-login: Info: ID sent: name=x (auth failed, 9 attempts): user=<victim>, method=PLAIN, rip=6.6.6.6, lip=1....: user=<>, rip=192.0.2.9, lip=127.0.0.1, session=<wmXAgOhht+d/AAMo>", nil},
		{"dovecot: an ID value with a shorter forged address", p + "imap-login: ID sent: name=a (auth failed, 9 attempts): user=<v>, rip=6.6.6.6: rip=192.0.2.9, lip=127.0.0.1", nil},
		{"dovecot: sanitized newline", p + "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x?Dec  5 18:55:53 mx dovecot: imap-login: Login: user=<y>, rip=6.6.6.6>, method=PLAIN, rip=192.0.2.9, lip=192.0.2.1",
			ev(Dovecot, rules.IMAP, "x?dec  5 18:55:53 mx dovecot: imap-login: login: user=<y>, rip=6.6.6.6", "192.0.2.9", false, 1, "", t0)},
		{"postfix: forged address in the login", "Dec  5 18:55:53 mx postfix/smtpd[1]: warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=x, unknown[6.6.6.6]: SASL",
			ev(Postfix, rules.SMTP, "x, unknown[6.6.6.6]: sasl", "192.0.2.9", false, 1, "", t0)},
		{"postfix: forged sasl_username in the login", "Dec  5 18:55:53 mx postfix/smtpd[1]: warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=x, sasl_username=admin",
			ev(Postfix, rules.SMTP, "x, sasl_username=admin", "192.0.2.9", false, 1, "", t0)},
		{"fail2ban nginx-http-auth: injection on user name, in the mail module's form", `2026/12/05 18:55:53 [info] 9#9: *3 client login failed: "Invalid login or password" while in http auth state, client: 192.0.2.2, server: 0.0.0.0:143, login: "test", client: 6.6.6.6, server: x, login: "y"`,
			ev(Nginx, rules.IMAP, `test", client: 6.6.6.6, server: x, login: "y`, "192.0.2.2", false, 1, "", t0)},
		{"nginx: forged upstream in the login", `2026/12/05 18:55:53 [info] 9#9: *3 client logged in, client: 192.0.2.2, server: 0.0.0.0:110, login: "a", upstream: 6.6.6.6:1", upstream: 127.0.0.1:10110`,
			ev(Nginx, rules.POP3, `a", upstream: 6.6.6.6:1`, "192.0.2.2", true, 0, "", t0)},
	})
}

func TestPostfixLines(t *testing.T) {
	t0 := at("2026-12-05T18:55:53Z")
	const p = "Dec  5 18:55:53 mx "
	runLineCases(t, []lineCase{
		{"dovecot sasl failure", p + "postfix/smtpd[6031]: warning: unknown[127.0.0.93]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=Alice@Example.test",
			ev(Postfix, rules.SMTP, "alice@example.test", "127.0.0.93", false, 1, "", t0)},
		{"ipv6", p + "postfix/smtpd[6226]: warning: unknown[::1]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=nosuchuser@example.test",
			ev(Postfix, rules.SMTP, "nosuchuser@example.test", "::1", false, 1, "", t0)},
		{"fail2ban postfix: cyrus challenge, no username", p + "postfix/submission/smtpd[11538]: warning: unknown[192.0.2.233]: SASL LOGIN authentication failed: UGFzc3dvcmQ6",
			ev(Postfix, rules.SMTP, "", "192.0.2.233", false, 1, "", t0)},
		{"fail2ban postfix: lower-case mechanism", p + "postfix/submission/smtpd[11538]: warning: unknown[192.0.2.233]: SASL login authentication failed: UGFzc3dvcmQ6",
			ev(Postfix, rules.SMTP, "", "192.0.2.233", false, 1, "", t0)},
		{"fail2ban postfix: optional port after host", p + "postfix/smtpd[31152]: warning: unknown[192.0.2.237]:55729: SASL LOGIN authentication failed: authentication failure",
			ev(Postfix, rules.SMTP, "", "192.0.2.237", false, 1, "", t0)},
		{"fail2ban postfix: without reason", p + "postfix/submission/smtpd[27133]: warning: unknown[192.0.2.150]: SASL PLAIN authentication failed:",
			ev(Postfix, rules.SMTP, "", "192.0.2.150", false, 1, "", t0)},
		{"fail2ban postfix: custom syslog_name", p + "postfix-incoming/smtpd[10752]: warning: host.example[192.0.2.1]: SASL LOGIN authentication failed: Password:",
			ev(Postfix, rules.SMTP, "", "192.0.2.1", false, 1, "", t0)},
		{"policy refusal", p + "postfix/smtpd[8801]: warning: unknown[127.0.0.121]: SASL PLAIN authentication failed: Login from your country is not allowed, sasl_username=alice@example.test",
			ev(Postfix, rules.SMTP, "alice@example.test", "127.0.0.121", false, 1, "", t0)},
		{"success", p + "postfix/smtpd[6031]: F387A98815E: client=unknown[127.0.0.92], sasl_method=PLAIN, sasl_username=alice@example.test",
			ev(Postfix, rules.SMTP, "alice@example.test", "127.0.0.92", true, 0, "", t0)},
		{"success, long queue id, sender", p + "postfix/submission/smtpd[6031]: 4NSvmQ0kx8zJrW1: client=mail.example[2001:db8::5], sasl_method=LOGIN, sasl_username=bob, sasl_sender=bob@example.test",
			ev(Postfix, rules.SMTP, "bob", "2001:db8::5", true, 0, "", t0)},

		{"fail2ban postfix: auth server unreachable", p + "postfix/smtpd[21022]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: Connection lost to authentication server", nil},
		{"fail2ban postfix: invalid mechanism", p + "postfix/smtpd[14933]: warning: host[192.0.2.5]: SASL CRAM-MD5 authentication failed: Invalid authentication mechanism", nil},
		{"xclient from nginx", p + "postfix/smtpd[8801]: 98E8F988131: client=unknown[127.0.0.101], sasl_method=XCLIENT, sasl_username=alice@example.test", nil},
		{"unauthenticated mail", p + "postfix/smtpd[8801]: 98E8F988131: client=unknown[127.0.0.101]", nil},
		{"connect", p + "postfix/smtpd[6031]: connect from unknown[127.0.0.93]", nil},
		{"reject", p + "postfix/smtpd[8801]: NOQUEUE: reject: RCPT from unknown[127.0.0.96]: 554 5.7.1 <bob@example.test>: Recipient address rejected: Access denied; from=<x@remote.test> to=<bob@example.test> proto=ESMTP helo=<pc.example.test>", nil},
		{"other warning", p + "postfix/smtpd[6031]: warning: hostname x.example does not resolve to address 192.0.2.1", nil},
		{"qmgr", p + "postfix/qmgr[6031]: F387A98815E: from=<a@x>, size=300, nrcpt=1 (queue active)", nil},
	})
}

func TestNginxLines(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 18, 55, 53, 0, time.UTC)
	runLineCases(t, []lineCase{
		{"failure", `2026/12/05 18:55:53 [info] 4630#4630: *4 client login failed: "Invalid login or password" while in http auth state, client: 127.0.0.72, server: 127.0.0.1:143, login: "Alice@example.test"`,
			ev(Nginx, rules.IMAP, "alice@example.test", "127.0.0.72", false, 1, "", t0)},
		{"success", `2026/12/05 18:55:53 [info] 4630#4630: *1 client logged in, client: 2001:db8::71, server: [::]:995, login: "alice@example.test", upstream: 127.0.0.1:10143`,
			ev(Nginx, rules.POP3, "alice@example.test", "2001:db8::71", true, 0, "", t0)},
		{"unknown port", `2026/12/05 18:55:53 [info] 4630#4630: *4 client login failed: "x" while in http auth state, client: 127.0.0.72, server: 127.0.0.1:11143, login: "a"`,
			ev(Nginx, rules.OtherService, "a", "127.0.0.72", false, 1, "", t0)},
		{"captured: a login with a newline, first part", `2026/12/05 19:06:49 [info] 15658#15658: *5 client login failed: "Login refused: malformed authentication request" while in http auth state, client: 127.0.3.24, server: 127.0.0.1:143, login: "x`,
			ev(Nginx, rules.IMAP, "x", "127.0.3.24", false, 1, "", t0.Add(10*time.Minute+56*time.Second))},
		{"captured: the forged success that follows it", `2026/12/05 19:00:00 [info] 1#1: *1 client logged in, client: 6.6.6.6, server: 127.0.0.1:143, login: "forged", upstream: 127.0.0.1:1"`, nil},
		{"auth server down", `2026/12/05 18:55:53 [error] 4630#4630: *4 recv() failed (111: Connection refused) while in http auth state, client: 127.0.0.72, server: 127.0.0.1:11143, login: "a"`, nil},
		{"http access-ish", `2026/12/05 18:55:53 [notice] 4630#4630: signal process started`, nil},
	})
}

// Dovecot 2.4's formats, written from its source (src/login-common/
// client-common.c and src/auth/auth-request.c at tag 2.4.2): not captured.
func TestDovecot24(t *testing.T) {
	t0 := at("2026-12-05T18:55:53Z")
	const p = "Dec 05 18:55:53 "
	runLineCases(t, []lineCase{
		{"logged in", p + "imap-login: Info: Logged in: user=<alice@example.test>, method=PLAIN, rip=192.0.2.5, lip=192.0.2.1, mpid=4242, TLS, session=<kT2oNNRgCrl/AAAB>",
			ev(Dovecot, rules.IMAP, "alice@example.test", "192.0.2.5", true, 0, "kT2oNNRgCrl/AAAB", t0)},
		{"login aborted, auth failed", p + "pop3-login: Info: Login aborted: Connection closed (auth failed, 3 attempts in 12 secs) (auth_failed): user=<bob@example.test>, method=PLAIN, rip=192.0.2.6, lip=192.0.2.1, TLS, session=<q9Xr>",
			ev(Dovecot, rules.POP3, "bob@example.test", "192.0.2.6", false, 3, "q9Xr", t0)},
		{"login aborted, proxy dest", p + "imap-login: Info: Login aborted: Connection closed (proxy dest authentication failure, 1 attempts in 2 secs) (proxy_dest_auth_failed): user=<c>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, session=<x>",
			ev(Dovecot, rules.IMAP, "c", "192.0.2.7", false, 1, "x", t0)},
		{"login aborted, user disabled", p + "imap-login: Info: Login aborted: Connection closed (user disabled, 1 attempts in 2 secs) (user_disabled): user=<c>, method=PLAIN, rip=192.0.2.7, lip=192.0.2.1, session=<x>", nil},
		{"login aborted, cleartext", p + "imap-login: Info: Login aborted: Connection closed (tried to use disallowed cleartext auth, 1 attempts in 0 secs) (cleartext_auth_disabled): user=<c>, rip=192.0.2.7, lip=192.0.2.1, session=<x>", nil},
		{"login aborted, no auth attempts", p + "imap-login: Info: Login aborted: Connection closed (no auth attempts in 0 secs) (no_auth_attempts): user=<>, rip=192.0.2.7, lip=192.0.2.1, session=<x>", nil},
		{"auth process line", p + "auth: Info: passwd-file(alice@example.test,192.0.2.6,sasl:plain)<q9Xr>: Password mismatch", nil},
	})
}

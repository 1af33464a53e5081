// Package loggen writes a synthetic mail log for benchmarks and
// comparisons: Dovecot 2.3 and Postfix 3.7 lines in syslog's RFC 3164
// form, as /var/log/mail.log holds them on Debian, with realistic ratios
// of noise, logins and failures, from a fixed seed (the same seed and
// length give the same bytes).
//
// It is not a simulator of attacks over time (see mailgate replay's
// scenario files): lines are drawn independently, and it knows nothing
// of the engine. Stats says what it wrote, so tests can check a parser's
// counts against the truth.
package loggen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Stats counts what Generate wrote.
type Stats struct {
	Lines int
	// DovecotLogins: imap-login/pop3-login "Login:" lines.
	DovecotLogins int
	// DovecotFailedConns: login-process lines "(auth failed, N attempts
	// ...)", one per connection that ended with failed password checks.
	DovecotFailedConns int
	// DovecotChecks: failed password checks inside those connections
	// (the sum of their N); each has its own auth-process line
	// ("Password mismatch" or "unknown user": auth_verbose = yes).
	DovecotChecks int
	// DovecotPlaintext: "(tried to use disabled plaintext auth)" lines: no
	// password was checked.
	DovecotPlaintext int
	// PostfixFailures and PostfixLogins: smtpd SASL failures and
	// client= lines of authenticated clients.
	PostfixFailures, PostfixLogins int
}

// Start is the time of the first line.
var Start = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

// Generate writes n lines from seed to w.
func Generate(w io.Writer, n int, seed uint64) (Stats, error) {
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), t: Start}
	bw := bufio.NewWriterSize(w, 1<<16)
	g.w = bw
	for g.st.Lines < n {
		g.step(n - g.st.Lines)
	}
	if err := bw.Flush(); err != nil {
		return g.st, fmt.Errorf("loggen: %w", err)
	}
	return g.st, nil
}

type gen struct {
	r   *rand.Rand
	w   *bufio.Writer
	t   time.Time
	st  Stats
	pid int
	buf []byte
}

// step writes one event's lines (at most room).
func (g *gen) step(room int) {
	g.t = g.t.Add(time.Duration(g.r.IntN(170)) * time.Millisecond)
	p := g.r.IntN(1000)
	switch {
	case p < 480:
		g.postfixNoise()
	case p < 640:
		g.dovecotNoise()
	case p < 720:
		g.dovecotLogin()
	case p < 860 && room >= 4:
		g.dovecotFailure()
	case p < 865:
		g.dovecotPlaintext()
	case p < 930:
		g.postfixFailure()
	case p < 950:
		g.postfixLogin()
	default:
		g.otherNoise()
	}
}

func (g *gen) line(format string, args ...any) {
	b := g.buf[:0]
	b = g.t.AppendFormat(b, time.Stamp)
	b = append(b, " mx "...)
	b = fmt.Appendf(b, format, args...)
	b = append(b, '\n')
	g.w.Write(b)
	g.buf = b
	g.st.Lines++
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func (g *gen) session() string {
	var s [16]byte
	for i := range s {
		s[i] = b64[g.r.IntN(64)]
	}
	return string(s[:])
}

func (g *gen) queueID() string {
	const hex = "0123456789ABCDEF"
	var s [11]byte
	for i := range s {
		s[i] = hex[g.r.IntN(16)]
	}
	return string(s[:])
}

// user is one of 500 mailboxes; attackers also try names that do not exist.
func (g *gen) user() string { return fmt.Sprintf("user%03d@example.com", g.r.IntN(500)) }

func (g *gen) guess() (login string, exists bool) {
	if g.r.IntN(3) == 0 {
		names := [...]string{"admin", "info", "test", "sales", "office", "support", "webmaster", "postmaster"}
		return names[g.r.IntN(len(names))] + "@example.com", false
	}
	return g.user(), true
}

// userAddr is a customer's address: 192.0.2.0/24 or 203.0.113.0/24.
func (g *gen) userAddr() netip.Addr {
	if g.r.IntN(2) == 0 {
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(g.r.IntN(254) + 1)})
	}
	return netip.AddrFrom4([4]byte{203, 0, 113, byte(g.r.IntN(254) + 1)})
}

// attacker is one of ~4000 addresses in 198.18.0.0/15, or, one time in
// ten, in 2001:db8::/32 (written plain or, one time in five for IPv4, as
// ::ffff:a.b.c.d as Dovecot writes it on a dual-stack listener).
func (g *gen) attacker() string {
	if g.r.IntN(10) == 0 {
		return fmt.Sprintf("2001:db8:%x::%x", g.r.IntN(64), g.r.IntN(64)+1)
	}
	a := netip.AddrFrom4([4]byte{198, 18 + byte(g.r.IntN(2)), byte(g.r.IntN(16)), byte(g.r.IntN(125) + 1)}).String()
	if g.r.IntN(5) == 0 {
		return "::ffff:" + a
	}
	return a
}

func (g *gen) nextPID() int { g.pid = 1000 + (g.pid+g.r.IntN(7)+1)%60000; return g.pid }

func (g *gen) postfixNoise() {
	pid, id, ip := g.nextPID(), g.queueID(), g.userAddr()
	switch g.r.IntN(6) {
	case 0:
		g.line("postfix/smtpd[%d]: connect from unknown[%s]", pid, ip)
	case 1:
		g.line("postfix/smtpd[%d]: disconnect from unknown[%s] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5", pid, ip)
	case 2:
		g.line("postfix/cleanup[%d]: %s: message-id=<%s@example.net>", pid, id, g.session())
	case 3:
		g.line("postfix/qmgr[%d]: %s: from=<%s>, size=%d, nrcpt=1 (queue active)", pid, id, g.user(), 1000+g.r.IntN(90000))
	case 4:
		g.line("postfix/lmtp[%d]: %s: to=<%s>, relay=mx[private/dovecot-lmtp], delay=0.1, delays=0.05/0/0.01/0.04, dsn=2.0.0, status=sent (250 2.0.0 <%s> Saved)", pid, id, g.user(), g.user())
	default:
		g.line("postfix/smtpd[%d]: %s: client=mail.example.net[%s]", pid, id, ip)
	}
}

func (g *gen) dovecotNoise() {
	switch g.r.IntN(4) {
	case 0:
		g.line("dovecot: imap(%s)<%d><%s>: Logged out in=%d out=%d deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0", g.user(), g.nextPID(), g.session(), g.r.IntN(900), g.r.IntN(90000))
	case 1:
		g.line("dovecot: lmtp(%s)<%d><%s>: msgid=<%s@example.net>: saved mail to INBOX", g.user(), g.nextPID(), g.session(), g.session())
	case 2:
		g.line("dovecot: imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=%s, lip=192.0.2.250, TLS handshaking: Connection closed, session=<%s>", g.attacker(), g.session())
	default:
		g.line("dovecot: pop3(%s)<%d><%s>: Disconnected: Logged out top=0/0, retr=1/%d, del=1/1, size=%d", g.user(), g.nextPID(), g.session(), g.r.IntN(90000), g.r.IntN(90000))
	}
}

func (g *gen) service() string {
	if g.r.IntN(4) == 0 {
		return "pop3"
	}
	return "imap"
}

func (g *gen) dovecotLogin() {
	g.line("dovecot: %s-login: Login: user=<%s>, method=PLAIN, rip=%s, lip=192.0.2.250, mpid=%d, TLS, session=<%s>", g.service(), g.user(), g.userAddr(), g.nextPID(), g.session())
	g.st.DovecotLogins++
}

// dovecotFailure writes a connection with 1 to 3 failed checks: one auth
// line per check, then the login process's summary.
func (g *gen) dovecotFailure() {
	svc, ip, sess := g.service(), g.attacker(), g.session()
	n := 1
	if g.r.IntN(5) == 0 {
		n = 2 + g.r.IntN(2)
	}
	var login string
	for range n {
		var exists bool
		login, exists = g.guess()
		if exists {
			g.line("dovecot: auth: passwd-file(%s,%s,<%s>): Password mismatch", login, ip, sess)
		} else {
			g.line("dovecot: auth: passwd-file(%s,%s,<%s>): unknown user", login, ip, sess)
		}
		g.t = g.t.Add(2 * time.Second)
	}
	g.line("dovecot: %s-login: Disconnected: Connection closed (auth failed, %d attempts in %d secs): user=<%s>, method=PLAIN, rip=%s, lip=192.0.2.250, TLS, session=<%s>", svc, n, 2*n, login, ip, sess)
	g.st.DovecotFailedConns++
	g.st.DovecotChecks += n
}

func (g *gen) dovecotPlaintext() {
	g.line("dovecot: pop3-login: Aborted login (tried to use disabled plaintext auth): user=<>, rip=%s, lip=192.0.2.250, session=<%s>", g.attacker(), g.session())
	g.st.DovecotPlaintext++
}

func (g *gen) postfixFailure() {
	login, _ := g.guess()
	ip := g.attacker()
	if len(ip) > 7 && ip[:7] == "::ffff:" {
		ip = ip[7:] // Postfix writes IPv4 plain
	}
	g.line("postfix/submission/smtpd[%d]: warning: unknown[%s]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=%s", g.nextPID(), ip, login)
	g.st.PostfixFailures++
}

func (g *gen) postfixLogin() {
	g.line("postfix/submission/smtpd[%d]: %s: client=unknown[%s], sasl_method=PLAIN, sasl_username=%s", g.nextPID(), g.queueID(), g.userAddr(), g.user())
	g.st.PostfixLogins++
}

func (g *gen) otherNoise() {
	switch g.r.IntN(3) {
	case 0:
		g.line("CRON[%d]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)", g.nextPID())
	case 1:
		g.line("systemd[1]: Started session-%d.scope - Session %d of User root.", g.r.IntN(9999), g.r.IntN(9999))
	default:
		g.line("opendkim[%d]: %s: DKIM-Signature field added (s=mail, d=example.com)", g.nextPID(), g.queueID())
	}
}

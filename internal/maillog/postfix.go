package maillog

import (
	"net/netip"

	"mailgate/internal/rules"
)

// Postfix's smtpd writes a failed SASL login as a warning and a
// successful one in the client= line of each message the client sends
// (Postfix 3.7 src/smtpd/smtpd_sasl_glue.c and smtpd.c):
//
//	postfix/smtpd[6031]: warning: unknown[127.0.0.93]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=alice@example.test
//	postfix/smtpd[6031]: warning: host.example[192.0.2.1]: SASL PLAIN authentication failed: UGFzc3dvcmQ6     (Cyrus SASL, older Postfix)
//	postfix/smtpd[6031]: F387A98815E: client=unknown[127.0.0.92], sasl_method=PLAIN, sasl_username=alice@example.test
//
// The tag is "<syslog_name>/smtpd"; syslog_name is "postfix" or a
// master.cf override such as "postfix/submission". Every Postfix login is
// service smtp, as the Dovecot policy API names Postfix's SASL logins.
// The login is client-chosen and comes last; the address comes before it,
// in brackets after a host name that cannot hold a bracket.

// isPostfixSmtpd reports whether a syslog tag name is Postfix's smtpd.
func isPostfixSmtpd(name []byte) bool {
	return hasSuffix(name, "/smtpd")
}

func parsePostfix(msg []byte, ev *Event) bool {
	if hasPrefix(msg, "warning: ") {
		return parsePostfixFailure(msg[len("warning: "):], ev)
	}
	// "QUEUEID: client=..." with a short or long queue id.
	i := indexString(msg, ": client=")
	if i < 1 || i > 32 || !isQueueID(msg[:i]) {
		return false
	}
	rest := msg[i+len(": client="):]
	addr, rest, ok := postfixNameAddr(rest)
	if !ok {
		return false
	}
	u := indexString(rest, ", sasl_username=")
	if u < 0 {
		return false // mail from a client that did not log in
	}
	m := indexString(rest[:u], ", sasl_method=")
	if m < 0 {
		return false
	}
	if string(rest[m+len(", sasl_method="):u]) == "XCLIENT" {
		// nginx's login, passed on with XCLIENT LOGIN=: nginx's auth
		// server checked the password and nginx's log has the outcome.
		return false
	}
	login := rest[u+len(", sasl_username="):]
	if s := lastIndexString(login, ", sasl_sender="); s >= 0 {
		login = login[:s]
	}
	*ev = Event{Program: Postfix, Service: rules.SMTP, Client: addr, Success: true}
	ev.Login = rules.NormalizeLogin(string(login))
	return true
}

// parsePostfixFailure parses what follows "warning: ":
// "name[addr]: SASL MECH authentication failed: reason[, sasl_username=login]".
func parsePostfixFailure(msg []byte, ev *Event) bool {
	addr, rest, ok := postfixNameAddr(msg)
	if !ok || !hasPrefix(rest, ": SASL ") {
		return false
	}
	rest = rest[len(": SASL "):]
	sp := indexByte(rest, ' ')
	if sp < 1 || !hasPrefix(rest[sp:], " authentication failed:") {
		return false
	}
	rest = rest[sp+len(" authentication failed:"):]
	if notPasswordCheck(rest) {
		return false
	}
	*ev = Event{Program: Postfix, Service: rules.SMTP, Client: addr, Attempts: 1}
	// The reason is the SASL server's text; the login, which the client
	// chose, is the rest of the line.
	if u := indexString(rest, ", sasl_username="); u >= 0 {
		ev.Login = rules.NormalizeLogin(string(rest[u+len(", sasl_username="):]))
	}
	return true
}

// postfixNameAddr parses "name[addr]" (with an optional ":port" after
// it, smtpd_client_port_logging) at b's start and returns what follows.
func postfixNameAddr(b []byte) (addr netip.Addr, rest []byte, ok bool) {
	o := indexByte(b, '[')
	if o < 1 || o > 255 || indexByte(b[:o], ' ') >= 0 {
		return netip.Addr{}, nil, false
	}
	c := indexByte(b[o:], ']')
	if c < 0 {
		return netip.Addr{}, nil, false
	}
	a, ok := parseAddr(b[o+1 : o+c])
	if !ok {
		return netip.Addr{}, nil, false
	}
	rest = b[o+c+1:]
	if len(rest) > 1 && rest[0] == ':' && isDigit(rest[1]) {
		rest = rest[1+digitsLen(rest[1:]):]
	}
	return a, rest, true
}

func isQueueID(b []byte) bool {
	for _, c := range b {
		if !(isDigit(c) || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return len(b) > 0
}

// notPasswordCheck reports the failure reasons of Cyrus SASL that say no
// password was checked: the SASL server was unreachable, or the client
// asked for a mechanism that is not offered (fail2ban's postfix filter
// leaves both out of its normal mode too).
func notPasswordCheck(reason []byte) bool {
	reason = trimPrefix(reason, " ")
	return hasPrefix(reason, "Connection lost to authentication server") ||
		hasPrefix(reason, "Invalid authentication mechanism")
}

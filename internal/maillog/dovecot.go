package maillog

import (
	"mailgate/internal/rules"
)

// Dovecot's login processes (imap-login, pop3-login, submission-login,
// managesieve-login) write one line per successful login and one line per
// connection that ends with failed password checks; those are the lines
// that count (docs/logs.md says why the auth process's per-check lines,
// "Password mismatch" and "unknown user", do not):
//
//	imap-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=23639, secured, session=<zHU7R9RgWLZ/AAAB>
//	imap-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured, session=<mf09R9RgaLZ/AAAB>
//	imap-login: Info: Aborted login (auth failed, 1 attempts): user=<x>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, TLS     (2.2)
//	imap-login: Info: Logged in: user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, mpid=23639, secured, session=<...>   (2.4)
//	imap-login: Info: Login aborted: Connection closed (auth failed, 1 attempts in 2 secs) (auth_failed): user=<alice@example.test>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, session=<...>   (2.4)
//	imap-login: Info: Disconnected (proxy dest auth failed): user=<x>, method=PLAIN, rip=192.0.2.4, lip=192.168.1.2, session=<...>
//
// Dovecot 2.4 (src/login-common/client-common.c, 2.4.2): a success is
// "Logged in", a failure "Login aborted: <reason> (<human reason>)
// (<event reason>)", where the human reason is "auth failed, N attempts
// in S secs" when passwords were wrong; other human reasons ("user
// disabled", "password expired", "authorization failed", "auth service
// reported temporary failure", "tried to use disallowed cleartext auth")
// are not wrong passwords and do not count.
//
// The elements after the colon come from login_log_format_elements
// (default "user=<%u> method=%m rip=%r lip=%l mpid=%e %c session=<%{session}>"):
// the login is the only one a client chooses, and it comes first.

// parseDovecot parses the message of a syslog line tagged "dovecot":
// "imap-login: Login: ..." (syslog) or "imap-login: Info: Login: ..."
// (journald keeps the level in some setups).
func parseDovecot(msg []byte, ev *Event) bool {
	sp := indexString(msg, ": ")
	if sp < 0 {
		return false
	}
	name := msg[:sp]
	if !isDovecotProcess(name) {
		return false
	}
	return parseDovecotProcess(name, msg[sp+2:], ev)
}

// isDovecotProcess reports whether name is a Dovecot login process
// ("imap-login", "pop3-login", ...), the only processes whose lines count.
func isDovecotProcess(name []byte) bool {
	return len(name) > len("-login") && hasSuffix(name, "-login")
}

// dovecotService maps a login process name to its service.
func dovecotService(name []byte) rules.Service {
	switch string(name[:len(name)-len("-login")]) {
	case "imap":
		return rules.IMAP
	case "pop3":
		return rules.POP3
	case "submission":
		return rules.Submission
	case "managesieve":
		return rules.Sieve
	case "smtp": // no such process today; keep the mapping total
		return rules.SMTP
	}
	return rules.OtherService
}

// parseDovecotProcess parses the message of a login process, after its
// name: "[Info: ]Login: fields" or "[Info: ]reason (auth failed, N attempts...): fields".
func parseDovecotProcess(name, msg []byte, ev *Event) bool {
	if !isDovecotProcess(name) {
		return false
	}
	msg = trimPrefix(msg, "Info: ")
	var fields []byte
	attempts := 0
	switch {
	case hasPrefix(msg, "Login: "): // 2.3
		fields = msg[len("Login: "):]
	case hasPrefix(msg, "Logged in: "): // 2.4
		fields = msg[len("Logged in: "):]
	default:
		// The reason is Dovecot's text; the elements start after the
		// first "): ", before which no client-chosen text appears.
		i := indexString(msg, "): ")
		if i < 0 {
			return false
		}
		head := msg[:i+1]
		fields = msg[i+3:]
		if !isDovecotEndHead(head) {
			// Another line of the login process, which may carry a
			// client's text before its elements: "ID sent: name=x
			// (auth failed, 9 attempts): user=<victim>..." when
			// imap_id_log is set (captured, Dovecot 2.3.19).
			return false
		}
		switch j := indexString(head, "(auth failed, "); {
		case j >= 0:
			n := head[j+len("(auth failed, "):]
			d := digitsLen(n)
			if d == 0 || !hasPrefix(n[d:], " attempt") {
				return false
			}
			attempts = atoi(n[:d])
			if attempts < 1 {
				return false
			}
		case hasSuffix(head, "(proxy dest auth failed)"): // 2.3
			attempts = 1
		case indexString(head, "(proxy dest authentication failure, ") >= 0: // 2.4
			attempts = 1
		default:
			return false
		}
	}
	rip := lastElement(fields, "rip=")
	if rip < 0 {
		return false
	}
	end := rip + elementEnd(fields[rip:])
	addr, ok := parseAddr(fields[rip:end])
	if !ok {
		return false
	}
	var login []byte
	if hasPrefix(fields, "user=<") {
		// The login runs to the last ">, " before rip=: whatever a
		// client puts in it ends up inside it. A rip= followed by the
		// end of the login is inside it (a line with no address of its
		// own, such as a unix-socket client): no event.
		if indexString(fields[rip:], ">, ") >= 0 || rip < len("user=<>, rip=") {
			return false
		}
		before := fields[len("user=<") : rip-len(", rip=")]
		k := lastIndexString(before, ">, ")
		if k < 0 {
			if !hasSuffix(before, ">") {
				return false
			}
			k = len(before) - 1 // "user=<x>, rip=..." with nothing in between
		}
		login = before[:k]
	}
	*ev = Event{
		Time:     ev.Time,
		Program:  Dovecot,
		Service:  dovecotService(name),
		Client:   addr,
		Success:  attempts == 0,
		Attempts: attempts,
	}
	if len(login) > 0 {
		ev.Login = rules.NormalizeLogin(string(login))
	}
	if s := lastElement(fields[end:], "session=<"); s >= 0 {
		v := fields[end+s:]
		if e := indexByte(v, '>'); e > 0 {
			ev.Session = string(v[:e])
		}
	}
	return true
}

// isDovecotEndHead reports whether head (a login process's message up
// to its elements) is one of the lines that end a connection: the only
// lines whose "(auth failed, N attempts" Dovecot wrote. Dovecot 2.3:
// "Disconnected[: reason] (...)", submission-login's "Client has quit the
// connection (...)"; 2.2: "Aborted login (...)"; 2.4: "Login aborted: ...".
func isDovecotEndHead(head []byte) bool {
	return hasPrefix(head, "Disconnected") || hasPrefix(head, "Aborted login") ||
		hasPrefix(head, "Login aborted") || hasPrefix(head, "Client has quit the connection")
}

// lastElement returns the index of the value of the last element key
// (such as "rip=") in fields, an element being at the start of fields or
// after ", "; -1 if there is none.
func lastElement(fields []byte, key string) int {
	b := fields
	for {
		i := lastIndexString(b, key)
		if i < 0 {
			return -1
		}
		if i == 0 || (i >= 2 && b[i-2] == ',' && b[i-1] == ' ') {
			return i + len(key)
		}
		b = b[:i]
	}
}

// elementEnd is the length of the element value at b's start: up to ", "
// or the end.
func elementEnd(b []byte) int {
	if i := indexString(b, ", "); i >= 0 {
		return i
	}
	return len(b)
}

// Package maillog parses mail server log lines into login outcomes: a
// successful login or a failed password check, with the client address,
// the login and the service. It understands Dovecot 2.3 and 2.4, Postfix
// SASL and nginx's mail proxy, behind an RFC 3164 or RFC 5424 syslog
// prefix, in Dovecot's and Postfix's own log files (log_path,
// maillog_file), in nginx's error.log, and in `journalctl -o json` output.
//
// The parsers are hand-written (no regular expressions) and do not
// allocate for lines that are not login outcomes, which are almost all
// lines of a mail log. A login name is chosen by the client: the parsers
// take every other field from a position the client cannot reach (see
// docs/logs.md), so a login such as `x>, rip=6.6.6.6` is a strange login,
// never another address.
//
// It is not a log follower (it reads no file and keeps no position) and it
// does not decide anything: callers feed its events to the engine. Which
// lines count as a failure, and why each password check is counted once,
// is in docs/logs.md.
package maillog

import (
	"net/netip"
	"time"

	"mailgate/internal/rules"
)

// MaxLineLen is the longest line ParseLine looks at; a longer line is not a
// login outcome (a log writer does not write one: Dovecot, Postfix and
// rsyslog cut lines at 8 KiB or less).
const MaxLineLen = 16 << 10

// Program names in Event.Program.
const (
	Dovecot = "dovecot"
	Postfix = "postfix"
	Nginx   = "nginx"
)

// Event is one login outcome read from a mail log.
type Event struct {
	Time    time.Time     // the line's time; zero when the line has none
	Program string        // "dovecot", "postfix", "nginx"
	Service rules.Service // imap, pop3, smtp, submission... (rules.ProtocolService names)
	Login   string        // rules.NormalizeLogin'd; "" when the line names none
	Client  netip.Addr    // unmapped (::ffff:1.2.3.4 -> 1.2.3.4)
	Success bool          // a successful login; false: a failed password check
	Session string        // Dovecot's session id when the line has one

	// Attempts is the number of failed password checks the line reports:
	// 1 for most failure lines; N for Dovecot's per-connection summary
	// "(auth failed, N attempts ...)"; 0 for a success. A follower counts
	// a failure event Attempts times, at most MaxAttempts.
	Attempts int
}

// MaxAttempts bounds the failures one line may count, in the log door
// and in replay alike: a Dovecot summary claiming more is counted as
// this many.
const MaxAttempts = 100

// ParseLine parses one syslog-style line (RFC 3164 or 5424 prefix, or a
// Dovecot/Postfix log_path file line, or an nginx error.log line). ref
// supplies what an RFC 3164 time lacks (the year, the zone). ok is false
// for a line that is not a login outcome; ev is then unspecified. A
// trailing "\n" or "\r\n" is ignored.
//
// ParseLine recognises every program's lines in any file. A caller
// reading a file that one program writes takes only that program's
// events (ev.Program): nginx writes a client's login raw, newlines
// included, so its error.log can hold a forged line of any format
// (docs/logs.md).
func ParseLine(line []byte, ref time.Time, ev *Event) (ok bool) {
	line = trimEOL(line)
	if len(line) == 0 || len(line) > MaxLineLen {
		return false
	}
	var p prefix
	if !p.parse(line, ref) {
		return false
	}
	*ev = Event{}
	if !parseMessage(p.tag, p.msg, ev) {
		return false
	}
	ev.Time = p.when()
	return true
}

// parseMessage dispatches on the program that wrote msg. tag is the
// syslog tag (program[pid]) or, in a Dovecot log_path file, the Dovecot
// process name; for an nginx error.log line tag is "nginx".
func parseMessage(tag, msg []byte, ev *Event) bool {
	name := tagName(tag)
	switch {
	case hasPrefix(name, "dovecot"):
		return parseDovecot(msg, ev)
	case isPostfixSmtpd(name):
		return parsePostfix(msg, ev)
	case hasPrefix(name, "nginx"):
		return parseNginx(msg, ev)
	case isDovecotProcess(name):
		// log_path file: the process name is the tag.
		return parseDovecotProcess(name, msg, ev)
	}
	return false
}

// tagName strips "[pid]" from a syslog tag.
func tagName(tag []byte) []byte {
	if i := indexByte(tag, '['); i >= 0 {
		return tag[:i]
	}
	return tag
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// parseAddr parses a client address: IPv4, IPv6, or IPv4-mapped IPv6
// (returned unmapped). It does not allocate.
func parseAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 64 {
		return netip.Addr{}, false
	}
	if a, ok := parseIPv4(b); ok {
		return a, true
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseIPv4 parses a dotted-quad IPv4 address without allocating.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	for i := range ip {
		n := digitsLen(b)
		if n == 0 || n > 3 || (n > 1 && b[0] == '0') {
			return netip.Addr{}, false
		}
		v := atoi(b[:n])
		if v > 255 {
			return netip.Addr{}, false
		}
		ip[i] = byte(v)
		b = b[n:]
		if i < 3 {
			if len(b) == 0 || b[0] != '.' {
				return netip.Addr{}, false
			}
			b = b[1:]
		}
	}
	if len(b) != 0 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

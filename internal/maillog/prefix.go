package maillog

import (
	"time"
)

// Time formats a prefix can carry. The time is converted only for a line
// that turned out to be a login outcome, so that other lines cost nothing.
const (
	timeNone    = iota
	timeBSD     // "Dec  5 18:55:53" or "Dec 05 18:55:53.123456" (RFC 3164, Dovecot's default log_timestamp)
	timeRFC3339 // "2026-12-05T18:55:53.123456+00:00" (RFC 5424, rsyslog's high-precision format)
	timeISO     // "2026-12-05 18:55:53" (a Dovecot log_timestamp of "%Y-%m-%d %H:%M:%S "), local
	timeNginx   // "2026/12/05 18:55:53" (nginx error.log), local
)

// prefix is a parsed line prefix: when, who wrote it, and the message.
type prefix struct {
	timeKind int
	timeRaw  []byte
	ref      time.Time
	tag      []byte // program[pid], or a Dovecot process name in a log_path file
	msg      []byte
}

// parse splits line into time, tag and message. It accepts:
//
//	[<PRI>]Mmm dd hh:mm:ss[.frac] host tag: msg      RFC 3164 (syslog, Postfix maillog_file)
//	[<PRI>]Mmm dd hh:mm:ss[.frac] process: msg       Dovecot log_path (no host)
//	[<PRI>]RFC3339 host tag: msg                     rsyslog's RFC3339 form
//	<PRI>1 RFC3339 host app procid msgid sd msg      RFC 5424
//	YYYY-MM-DD hh:mm:ss process: msg                 Dovecot with an ISO log_timestamp
//	YYYY/MM/DD hh:mm:ss [level] pid#tid: *n msg      nginx error.log
//	process: msg                                     Dovecot with an empty log_timestamp
func (p *prefix) parse(line []byte, ref time.Time) bool {
	p.ref = ref
	rest := line
	if len(rest) > 0 && rest[0] == '<' {
		i := indexByte(rest, '>')
		if i < 2 || i > 4 || !allDigits(rest[1:i]) {
			return false
		}
		rest = rest[i+1:]
		if len(rest) > 2 && rest[0] == '1' && rest[1] == ' ' {
			return p.parse5424(rest[2:])
		}
	}
	switch {
	case bsdTimeLen(rest) > 0:
		n := bsdTimeLen(rest)
		p.timeKind, p.timeRaw = timeBSD, rest[:n]
		rest = rest[n:]
	case isISODate(rest, '-') && len(rest) > 10 && rest[10] == 'T':
		n := indexByte(rest, ' ')
		if n < 0 {
			return false
		}
		p.timeKind, p.timeRaw = timeRFC3339, rest[:n]
		rest = rest[n:]
	case isISODate(rest, '-') && isClock(rest, 11):
		p.timeKind, p.timeRaw = timeISO, rest[:19]
		rest = rest[19:]
	case isISODate(rest, '/') && isClock(rest, 11):
		p.timeKind, p.timeRaw = timeNginx, rest[:19]
		return p.parseNginx(rest[19:])
	default:
		// Dovecot with log_timestamp = "": the line starts with the process.
		return p.tagMsg(rest, true)
	}
	if len(rest) == 0 || rest[0] != ' ' {
		return false
	}
	return p.tagMsg(rest[1:], false)
}

// tagMsg splits "host tag: msg" or "tag: msg". A first word that ends in
// ':' is the tag (a Dovecot log_path line has no host); otherwise it is the
// host and the next word is the tag. noHost demands the first form.
func (p *prefix) tagMsg(rest []byte, noHost bool) bool {
	sp := indexByte(rest, ' ')
	if sp < 2 {
		return false
	}
	if rest[sp-1] != ':' {
		if noHost {
			return false
		}
		rest = rest[sp+1:]
		sp = indexByte(rest, ' ')
		if sp < 2 || rest[sp-1] != ':' {
			return false
		}
	}
	p.tag, p.msg = rest[:sp-1], rest[sp+1:]
	return true
}

// parse5424 parses what follows "<PRI>1 ": TIMESTAMP HOSTNAME APP-NAME
// PROCID MSGID STRUCTURED-DATA [MSG] (RFC 5424 section 6).
func (p *prefix) parse5424(rest []byte) bool {
	var f [5][]byte
	for i := range f {
		sp := indexByte(rest, ' ')
		if sp <= 0 {
			return false
		}
		f[i], rest = rest[:sp], rest[sp+1:]
	}
	if string(f[0]) != "-" {
		p.timeKind, p.timeRaw = timeRFC3339, f[0]
	}
	p.tag = f[2]
	// STRUCTURED-DATA: "-" or one or more [id param="value"...] elements,
	// in which ']' and '"' inside values are escaped with '\'.
	switch {
	case len(rest) > 0 && rest[0] == '-':
		rest = rest[1:]
	case len(rest) > 0 && rest[0] == '[':
		inQuote := false
		i := 0
	sd:
		for ; i < len(rest); i++ {
			switch c := rest[i]; {
			case c == '\\' && inQuote:
				i++
			case c == '"':
				inQuote = !inQuote
			case c == ']' && !inQuote:
				if i+1 >= len(rest) || rest[i+1] != '[' {
					i++
					break sd
				}
			}
		}
		// A backslash as the very last byte steps i past the end.
		rest = rest[min(i, len(rest)):]
	default:
		return false
	}
	if len(rest) > 0 {
		if rest[0] != ' ' {
			return false
		}
		rest = rest[1:]
	}
	rest = trimPrefix(rest, "\xef\xbb\xbf") // BOM
	p.msg = rest
	return true
}

// parseNginx parses what follows an nginx error.log time:
// " [level] pid#tid: *connection msg".
func (p *prefix) parseNginx(rest []byte) bool {
	if len(rest) < 3 || rest[0] != ' ' || rest[1] != '[' {
		return false
	}
	i := indexByte(rest, ']')
	if i < 0 || i+2 > len(rest) {
		return false
	}
	rest = rest[i+2:]
	j := indexString(rest, ": ")
	if j < 0 {
		return false
	}
	p.tag, p.msg = nginxTag, rest[j+2:]
	return true
}

var nginxTag = []byte("nginx")

// when converts the prefix's time. A BSD time has no year and no zone:
// they come from ref, and a time more than a week after ref is taken to
// be from the year before (a December line read in January).
func (p *prefix) when() time.Time {
	b := p.timeRaw
	loc := p.ref.Location()
	switch p.timeKind {
	case timeBSD:
		mon := monthOf(b)
		d := b[4:]
		if d[0] == ' ' {
			d = d[1:]
		}
		day := atoi(d)
		c := len(b) - len(d) + digitsLen(d) + 1
		hh, mm, ss := clock(b, c)
		ns := frac(b[c+8:])
		t := time.Date(p.ref.Year(), mon, day, hh, mm, ss, ns, loc)
		if t.After(p.ref.Add(7 * 24 * time.Hour)) {
			t = time.Date(p.ref.Year()-1, mon, day, hh, mm, ss, ns, loc)
		}
		return t
	case timeRFC3339:
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return time.Time{}
		}
		return t
	case timeISO, timeNginx:
		y := atoi(b[0:4])
		mo := atoi(b[5:7])
		d := atoi(b[8:10])
		hh, mm, ss := clock(b, 11)
		return time.Date(y, time.Month(mo), d, hh, mm, ss, 0, loc)
	}
	return time.Time{}
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func monthOf(b []byte) time.Month {
	for i, m := range months {
		if b[0] == m[0] && b[1] == m[1] && b[2] == m[2] {
			return time.Month(i + 1)
		}
	}
	return 0
}

// bsdTimeLen is the length of the BSD time "Mmm dd hh:mm:ss" at b's
// start (the day padded with a space or a zero, or not padded: "Aug 3"),
// with an optional fraction ("Dec 05 18:55:53.123456"); 0 if there is
// none.
func bsdTimeLen(b []byte) int {
	if len(b) < 14 || b[3] != ' ' || monthOf(b) == 0 {
		return 0
	}
	n := 4
	switch {
	case b[4] == ' ' && isDigit(b[5]) && b[6] == ' ':
		n = 7
	case isDigit(b[4]) && isDigit(b[5]) && b[6] == ' ':
		n = 7
	case isDigit(b[4]) && b[5] == ' ':
		n = 6
	default:
		return 0
	}
	if !isClock(b, n) {
		return 0
	}
	n += 8
	if n < len(b) && b[n] == '.' {
		n++
		for n < len(b) && isDigit(b[n]) {
			n++
		}
	}
	return n
}

func isClock(b []byte, at int) bool {
	if len(b) < at+8 {
		return false
	}
	c := b[at : at+8]
	return isDigit(c[0]) && isDigit(c[1]) && c[2] == ':' && isDigit(c[3]) && isDigit(c[4]) &&
		c[5] == ':' && isDigit(c[6]) && isDigit(c[7])
}

func isISODate(b []byte, sep byte) bool {
	return len(b) >= 19 && allDigits(b[0:4]) && b[4] == sep && allDigits(b[5:7]) && b[7] == sep &&
		allDigits(b[8:10]) && (b[10] == ' ' || b[10] == 'T')
}

func clock(b []byte, at int) (h, m, s int) {
	return atoi(b[at : at+2]), atoi(b[at+3 : at+5]), atoi(b[at+6 : at+8])
}

// frac parses ".123456" into nanoseconds.
func frac(b []byte) int {
	if len(b) == 0 || b[0] != '.' {
		return 0
	}
	ns, scale := 0, 100000000
	for _, c := range b[1:] {
		if !isDigit(c) || scale == 0 {
			break
		}
		ns += int(c-'0') * scale
		scale /= 10
	}
	return ns
}

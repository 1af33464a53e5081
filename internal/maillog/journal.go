package maillog

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxJournalLineLen is the longest `journalctl -o json` line ParseJournal
// looks at (its MESSAGE is at most MaxLineLen; the rest is metadata).
const MaxJournalLineLen = 64 << 10

// ParseJournal parses one line of `journalctl -o json` output. cursor is
// the entry's __CURSOR (returned even when ok is false, so a follower can
// save it). It allocates the cursor string; ParseJournalBytes does not.
func ParseJournal(line []byte, ev *Event) (cursor string, ok bool) {
	c, ok := ParseJournalBytes(line, ev)
	return string(c), ok
}

// ParseJournalBytes is ParseJournal with the cursor as a slice of line
// (valid while line is), for a follower that keeps only the last one.
//
// The entry's SYSLOG_IDENTIFIER is the tag and MESSAGE the message, as in
// a syslog line; its time is __REALTIME_TIMESTAMP. A MESSAGE journald
// stored as bytes (a JSON array of numbers: not UTF-8) is decoded; a
// MESSAGE of null (over journalctl's size limit without --all) is no
// event.
func ParseJournalBytes(line []byte, ev *Event) (cursor []byte, ok bool) {
	line = trimEOL(line)
	if len(line) > MaxJournalLineLen {
		return nil, false
	}
	var j journalEntry
	if !j.scan(line) {
		return j.cursor, false
	}
	if j.ident == nil || j.msg == nil || j.identEsc {
		return j.cursor, false
	}
	name := tagName(j.ident)
	if !isMailProgram(name) {
		return j.cursor, false
	}
	msg := j.msg
	switch {
	case j.msgArray:
		msg = decodeByteArray(msg)
	case j.msgEsc:
		msg = unescapeJSON(msg)
	}
	if msg == nil || len(msg) > MaxLineLen {
		return j.cursor, false
	}
	*ev = Event{}
	if hasPrefix(name, "nginx") {
		// nginx logging to stderr: the message is an error.log line, and
		// nothing else (a client's login can hold a newline, which
		// starts an entry of its own: it must not pass for another
		// program's line).
		var p prefix
		if !p.parse(msg, time.Time{}) || p.timeKind != timeNginx || !parseNginx(p.msg, ev) {
			return j.cursor, false
		}
	} else if !parseMessage(j.ident, msg, ev) {
		return j.cursor, false
	}
	if us, err := strconv.ParseInt(string(j.realtime), 10, 64); err == nil && j.realtime != nil {
		ev.Time = time.UnixMicro(us)
	} else {
		ev.Time = time.Time{}
	}
	return j.cursor, true
}

// isMailProgram reports whether a tag name is one parseMessage knows,
// before a MESSAGE is decoded.
func isMailProgram(name []byte) bool {
	return hasPrefix(name, "dovecot") || hasPrefix(name, "nginx") || isPostfixSmtpd(name) || isDovecotProcess(name)
}

// journalEntry holds the fields of one journal JSON object that matter,
// as slices of the line (string values without their quotes, still
// escaped).
type journalEntry struct {
	cursor, realtime, ident, msg []byte
	identEsc, msgEsc, msgArray   bool
}

// scan walks one JSON object of string, null and array values (the shape
// `journalctl -o json` writes) without allocating.
func (j *journalEntry) scan(b []byte) bool {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipWS(b, i)
		if i < len(b) && b[i] == '}' {
			return true
		}
		if i >= len(b) || b[i] != '"' {
			return false
		}
		ks, ke, _, ok := scanString(b, i)
		if !ok {
			return false
		}
		key := b[ks:ke]
		i = skipWS(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '"':
			vs, ve, esc, ok := scanString(b, i)
			if !ok {
				return false
			}
			v := b[vs:ve]
			switch string(key) {
			case "__CURSOR":
				if !esc {
					j.cursor = v
				}
			case "__REALTIME_TIMESTAMP":
				j.realtime = v
			case "SYSLOG_IDENTIFIER":
				j.ident, j.identEsc = v, esc
			case "MESSAGE":
				j.msg, j.msgEsc = v, esc
			}
			i = ve + 1
		case '[':
			end, ok := skipArray(b, i)
			if !ok {
				return false
			}
			if string(key) == "MESSAGE" {
				j.msg, j.msgArray = b[i:end], true
			}
			i = end
		default: // null, a number or a literal
			for i < len(b) && b[i] != ',' && b[i] != '}' {
				i++
			}
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i++
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the JSON string starting at b[i] == '"' and returns
// the bounds of its contents and whether it has escapes.
func scanString(b []byte, i int) (start, end int, esc, ok bool) {
	start = i + 1
	for k := start; k < len(b); k++ {
		switch b[k] {
		case '\\':
			esc = true
			k++
		case '"':
			return start, k, esc, true
		}
	}
	return 0, 0, false, false
}

// skipArray skips the JSON array at b[i] == '[' (of numbers or strings)
// and returns the index after it.
func skipArray(b []byte, i int) (int, bool) {
	for k := i + 1; k < len(b); k++ {
		switch b[k] {
		case '"':
			_, e, _, ok := scanString(b, k)
			if !ok {
				return 0, false
			}
			k = e
		case '[':
			return 0, false
		case ']':
			return k + 1, true
		}
	}
	return 0, false
}

// decodeByteArray decodes "[104,105]" into the bytes it lists; nil when it
// is not an array of bytes.
func decodeByteArray(b []byte) []byte {
	out := make([]byte, 0, len(b)/3)
	for k := 1; k < len(b)-1; {
		k = skipWS(b, k)
		n := digitsLen(b[k:])
		if n == 0 || n > 3 {
			return nil
		}
		v := atoi(b[k : k+n])
		if v > 255 {
			return nil
		}
		out = append(out, byte(v))
		k = skipWS(b, k+n)
		if k < len(b)-1 {
			if b[k] != ',' {
				return nil
			}
			k++
		}
	}
	return out
}

// unescapeJSON decodes the escapes of a JSON string's contents; nil when
// one is malformed. A \u escape of a control character stays in the
// result: the parsers treat it as text.
func unescapeJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for k := 0; k < len(b); k++ {
		c := b[k]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		k++
		if k >= len(b) {
			return nil
		}
		switch b[k] {
		case '"', '\\', '/':
			out = append(out, b[k])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if k+4 >= len(b) {
				return nil
			}
			r, err := strconv.ParseUint(string(b[k+1:k+5]), 16, 16)
			if err != nil {
				return nil
			}
			k += 4
			rr := rune(r)
			if utf8.RuneLen(rr) < 0 { // a surrogate half
				rr = utf8.RuneError
			}
			out = utf8.AppendRune(out, rr)
		default:
			return nil
		}
	}
	return out
}

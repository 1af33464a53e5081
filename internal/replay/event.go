package replay

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"mailgate/internal/rules"
)

// MaxLineLen bounds one line of an events file (the JSON object and its
// newline). A login is at most 320 bytes; a line this long is not an
// event a generator meant to write.
const MaxLineLen = 4 << 10

// MaxPwHashLen bounds an event's pwhash (Dovecot's is 8 hex digits).
const MaxPwHashLen = 128

// Result is what the password check said.
type Result uint8

const (
	NoResult Result = iota // decide only: the input has no password check
	Success
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return ""
}

// Actor is who made an attempt, as the input labels it. The engine never
// sees it; the report uses it to count legitimate users refused and the
// attackers' guesses that reached a password check.
type Actor uint8

const (
	Unlabeled Actor = iota // a success counts as a user's, a failure as a guess
	User
	Attacker
)

func (a Actor) String() string {
	switch a {
	case User:
		return "user"
	case Attacker:
		return "attacker"
	}
	return ""
}

// Event is one login attempt to replay: from an events file (ParseEvent)
// or from a mail log line (FromLog).
type Event struct {
	Time    time.Time
	Door    string        // "dovecot", "nginx", "postfix"
	Service rules.Service // never AllServices
	Login   string        // rules.NormalizeLogin'd; may be ""
	Client  netip.Addr    // unmapped, no zone
	PwHash  string        // may be ""; never reported
	Result  Result
	Actor   Actor
	// Count is how many attempts the event stands for: 1, or N for a
	// log line that reports N failed password checks of one connection.
	Count int
}

// Doors an event may name.
var doors = []string{"dovecot", "nginx", "postfix"}

// ParseEvent parses one line of an events file: a JSON object with the
// fields time (RFC 3339, required), door (dovecot, nginx or postfix;
// default dovecot), service (imap, pop3, smtp, submission, sieve;
// required), login, address (required), pwhash, result ("success",
// "failure" or "" for decide only) and actor ("user", "attacker" or "").
// Unknown fields, duplicate or wrongly typed fields, and values out of
// range are errors; the error never quotes a pwhash.
func ParseEvent(line []byte, ev *Event) error {
	if len(line) > MaxLineLen {
		return fmt.Errorf("longer than %d bytes", MaxLineLen)
	}
	var w wireEvent
	if err := w.parse(line); err != nil {
		return err
	}
	*ev = Event{Door: "dovecot", Count: 1}
	v := &w.v
	if !w.has(fTime) {
		return errors.New("time: missing (RFC 3339, e.g. 2026-12-01T08:00:00Z)")
	}
	t, ok := parseTime(v[fTime])
	if !ok {
		return fmt.Errorf("time: %q is not an RFC 3339 time (e.g. 2026-12-01T08:00:00Z)", clip(string(v[fTime])))
	}
	if y := t.Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("time: %q is out of range", clip(string(v[fTime])))
	}
	ev.Time = t
	if len(v[fDoor]) > 0 {
		ok := false
		for _, d := range doors {
			if string(v[fDoor]) == d {
				ev.Door, ok = d, true
			}
		}
		if !ok {
			return fmt.Errorf("door: %q is not one of %s", clip(string(v[fDoor])), strings.Join(doors, ", "))
		}
	}
	if len(v[fService]) == 0 {
		return errors.New("service: missing (imap, pop3, smtp, submission or sieve)")
	}
	svc := parseService(v[fService])
	if svc == rules.AllServices {
		return fmt.Errorf("service: %q is not imap, pop3, smtp, submission or sieve", clip(string(v[fService])))
	}
	ev.Service = svc
	if l := v[fLogin]; len(l) > 0 {
		for _, c := range string(l) {
			if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
				return errors.New("login: holds a control character")
			}
		}
		ev.Login = rules.NormalizeLogin(string(l))
		if len(ev.Login) > rules.MaxAccountLen {
			return fmt.Errorf("login: longer than %d bytes", rules.MaxAccountLen)
		}
	}
	if len(v[fAddress]) == 0 {
		return errors.New("address: missing (the client's IP address)")
	}
	a, ok := parseAddr(v[fAddress])
	if !ok {
		return fmt.Errorf("address: %q is not an IP address", clip(string(v[fAddress])))
	}
	ev.Client = a
	if h := v[fPwHash]; len(h) > 0 {
		if len(h) > MaxPwHashLen {
			return fmt.Errorf("pwhash: longer than %d bytes", MaxPwHashLen)
		}
		ev.PwHash = string(h)
	}
	switch r := v[fResult]; string(r) {
	case "":
	case "success":
		ev.Result = Success
	case "failure":
		ev.Result = Failure
	default:
		return fmt.Errorf("result: %q is not \"success\", \"failure\" or \"\"", clip(string(r)))
	}
	switch a := v[fActor]; string(a) {
	case "":
	case "user":
		ev.Actor = User
	case "attacker":
		ev.Actor = Attacker
	default:
		return fmt.Errorf("actor: %q is not \"user\", \"attacker\" or \"\"", clip(string(a)))
	}
	return nil
}

// parseService parses an event's service: a protocol name as
// rules.ParseService takes it; AllServices when it is none.
func parseService(b []byte) rules.Service {
	switch string(b) {
	case "imap":
		return rules.IMAP
	case "pop3":
		return rules.POP3
	case "smtp":
		return rules.SMTP
	case "submission":
		return rules.Submission
	}
	s, err := rules.ParseService(string(b))
	if err != nil {
		return rules.AllServices
	}
	return s
}

// parseAddr parses an IP address, unmapped; a zone is refused. Dotted
// IPv4 is parsed here without allocating.
func parseAddr(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	i, n := 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9' && n < 4:
			if d := int(ip[i])*10 + int(c-'0'); d <= 255 && (n == 0 || ip[i] != 0) {
				ip[i] = byte(d)
				n++
				continue
			}
		case c == '.' && n > 0 && i < 3:
			i, n = i+1, 0
			continue
		}
		i = -1
		break
	}
	if i == 3 && n > 0 {
		return netip.AddrFrom4(ip), true
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// parseTime parses an RFC 3339 time, in UTC: the common form
// 2006-01-02T15:04:05[.frac](Z|+hh:mm) without allocating, anything else
// with time.Parse.
func parseTime(b []byte) (time.Time, bool) {
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if len(b) >= 20 && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' {
		y, ok1 := num(b[0:4])
		mo, ok2 := num(b[5:7])
		d, ok3 := num(b[8:10])
		h, ok4 := num(b[11:13])
		mi, ok5 := num(b[14:16])
		s, ok6 := num(b[17:19])
		rest := b[19:]
		ns := 0
		if len(rest) > 1 && rest[0] == '.' {
			j := 1
			for j < len(rest) && j <= 9 && rest[j] >= '0' && rest[j] <= '9' {
				ns = ns*10 + int(rest[j]-'0')
				j++
			}
			for k := j; k <= 9; k++ {
				ns *= 10
			}
			if j == 1 {
				return time.Time{}, false
			}
			rest = rest[j:]
		}
		off, okz := 0, false
		switch {
		case len(rest) == 1 && rest[0] == 'Z':
			okz = true
		case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
			oh, ok7 := num(rest[1:3])
			om, ok8 := num(rest[4:6])
			off, okz = (oh*60+om)*60, ok7 && ok8 && oh < 24 && om < 60
			if rest[0] == '-' {
				off = -off
			}
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && okz && mo >= 1 && mo <= 12 && d >= 1 && h < 24 && mi < 60 && s < 60 {
			t := time.Date(y, time.Month(mo), d, h, mi, s, ns, time.UTC)
			if t.Day() == d { // not February 30th
				return t.Add(-time.Duration(off) * time.Second), true
			}
		}
		// Fall through: time.Parse says what is wrong, or takes a leap
		// second's form.
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	if len(s) <= 64 {
		return strings.ToValidUTF8(s, "?")
	}
	return strings.ToValidUTF8(s[:64], "?") + "..."
}

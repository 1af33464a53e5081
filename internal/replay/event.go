package replay

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

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
	if !w.has(fTime) {
		return errors.New("time: missing (RFC 3339, e.g. 2026-12-01T08:00:00Z)")
	}
	t, err := time.Parse(time.RFC3339Nano, w.v[fTime])
	if err != nil {
		return fmt.Errorf("time: %q is not an RFC 3339 time (e.g. 2026-12-01T08:00:00Z)", clip(w.v[fTime]))
	}
	if y := t.Year(); y < 1970 || y > 9999 {
		return fmt.Errorf("time: %q is out of range", clip(w.v[fTime]))
	}
	ev.Time = t
	if w.v[fDoor] != "" {
		ok := false
		for _, d := range doors {
			if w.v[fDoor] == d {
				ev.Door, ok = d, true
			}
		}
		if !ok {
			return fmt.Errorf("door: %q is not one of %s", clip(w.v[fDoor]), strings.Join(doors, ", "))
		}
	}
	if w.v[fService] == "" {
		return errors.New("service: missing (imap, pop3, smtp, submission or sieve)")
	}
	svc, err := rules.ParseService(w.v[fService])
	if err != nil || svc == rules.AllServices {
		return fmt.Errorf("service: %q is not imap, pop3, smtp, submission or sieve", clip(w.v[fService]))
	}
	ev.Service = svc
	if w.has(fLogin) {
		if !utf8.ValidString(w.v[fLogin]) {
			return errors.New("login: not valid UTF-8")
		}
		for _, c := range w.v[fLogin] {
			if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
				return errors.New("login: holds a control character")
			}
		}
		ev.Login = rules.NormalizeLogin(w.v[fLogin])
		if len(ev.Login) > rules.MaxAccountLen {
			return fmt.Errorf("login: longer than %d bytes", rules.MaxAccountLen)
		}
	}
	if w.v[fAddress] == "" {
		return errors.New("address: missing (the client's IP address)")
	}
	a, err := netip.ParseAddr(w.v[fAddress])
	if err != nil || a.Zone() != "" {
		return fmt.Errorf("address: %q is not an IP address", clip(w.v[fAddress]))
	}
	ev.Client = a.Unmap()
	if w.has(fPwHash) {
		if len(w.v[fPwHash]) > MaxPwHashLen {
			return fmt.Errorf("pwhash: longer than %d bytes", MaxPwHashLen)
		}
		ev.PwHash = w.v[fPwHash]
	}
	if w.has(fResult) {
		switch w.v[fResult] {
		case "":
		case "success":
			ev.Result = Success
		case "failure":
			ev.Result = Failure
		default:
			return fmt.Errorf("result: %q is not \"success\", \"failure\" or \"\"", clip(w.v[fResult]))
		}
	}
	if w.has(fActor) {
		switch w.v[fActor] {
		case "":
		case "user":
			ev.Actor = User
		case "attacker":
			ev.Actor = Attacker
		default:
			return fmt.Errorf("actor: %q is not \"user\", \"attacker\" or \"\"", clip(w.v[fActor]))
		}
	}
	return nil
}

// clip shortens a value quoted in an error.
func clip(s string) string {
	if len(s) <= 64 {
		return strings.ToValidUTF8(s, "?")
	}
	return strings.ToValidUTF8(s[:64], "?") + "..."
}

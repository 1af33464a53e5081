package policy

import (
	"unicode/utf8"

	"mailgate/internal/rules"
)

// MaxLoginLen bounds the login of an attempt (rules.MaxAccountLen).
const MaxLoginLen = rules.MaxAccountLen

// BadLogin reports whether login cannot be an account: longer than
// MaxLoginLen bytes or not valid UTF-8. Every door refuses such a login
// itself (BadLoginVerdict) before asking the engine or reporting a
// result: it is never counted, banned or stored (a ban of it could not be
// read back at the next start).
func BadLogin(login string) bool {
	return len(login) > MaxLoginLen || !utf8.ValidString(login)
}

// BadLoginVerdict is the refusal of a login BadLogin refuses. It has no
// text of its own: the client sees what a wrong password gets.
func BadLoginVerdict() Verdict { return Verdict{Action: Deny, Reason: ReasonBadLogin} }

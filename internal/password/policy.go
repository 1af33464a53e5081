// Package password is mailgate's password policy: it says whether a
// password is good enough, with every reason when it is not, and makes
// passwords that are. The rules are the common ones (a minimum length,
// a number of character classes, or NIST SP 800-63B's length-only rule),
// a dictionary and pattern estimate (zxcvbn, whose frequency lists cover
// what cracklib checks), the account's own name and domain, and an
// optional list of breached passwords (Breached, a Pwned Passwords file
// searched in place).
//
// It does not store or log passwords, and it does not know where a
// password comes from: the CLI, the admin API and the nginx door call it.
package password

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
	"github.com/trustelem/zxcvbn/match"
)

// MaxLen is the longest password checked, in bytes. Longer input is an
// error (ErrTooLong), not a verdict: nobody types more, and the estimate's
// cost grows with the length.
const MaxLen = 1024

// zxcvbnLen bounds the part of a password given to zxcvbn: its cost grows
// faster than the length (about 50 ms for 130 characters), and what comes
// after 64 characters can only add strength.
const zxcvbnLen = 64

// ErrTooLong is returned for a password longer than MaxLen bytes.
var ErrTooLong = fmt.Errorf("password: longer than %d bytes", MaxLen)

// Defaults of Policy.
const (
	DefaultMinLength  = 12
	DefaultMinClasses = 3
	// DefaultMinScore is zxcvbn's score 3 of 0..4: at least 10^8 guesses
	// to find. Mail passwords are guessed online (rate-limited, banned)
	// but also offline when a control panel's hash table leaks; score 3
	// is "safely unguessable" against a throttled online attack and a
	// real obstacle offline, and it rejects the dictionary-word-plus-year
	// passwords that a class rule lets through ("Summer2024!" scores 3
	// only through its length; "Alice2024!" scores 2). Score 4 refuses
	// many passwords people can remember.
	DefaultMinScore = 3
)

// Policy is what a password must satisfy. The zero value checks nothing
// but the input size; use Default for the seed's rule.
type Policy struct {
	// MinLength is the fewest characters (Unicode code points).
	MinLength int
	// MinClasses is how many of the four classes (lower case, upper case,
	// digits, symbols) a password must use; 0 is NIST SP 800-63B's
	// length-only rule (§3.1.1.2: no composition rules).
	MinClasses int
	// MinScore is the lowest zxcvbn score (0..4) accepted; 0 turns the
	// estimate off.
	MinScore int
	// Breached, if set, refuses passwords found in it.
	Breached *Breached
}

// Default is the seed's rule: 12 characters, 3 of 4 classes, zxcvbn
// score 3, no breached list.
func Default() Policy {
	return Policy{MinLength: DefaultMinLength, MinClasses: DefaultMinClasses, MinScore: DefaultMinScore}
}

// Code is a stable reason code; scripts and the API match on it.
type Code string

const (
	CodeTooShort       Code = "too_short"        // fewer than MinLength characters
	CodeTooFewClasses  Code = "too_few_classes"  // fewer than MinClasses classes
	CodeGuessable      Code = "guessable"        // zxcvbn score below MinScore
	CodeContainsLogin  Code = "contains_login"   // holds the login's local part
	CodeContainsDomain Code = "contains_domain"  // holds the login's domain
	CodeBreached       Code = "breached"         // in the breached-password list
	CodeNotUTF8        Code = "not_utf8"         // not valid UTF-8
	CodeBreachedError  Code = "breached_unknown" // the breached list could not be read
)

// Reason is one rule a password failed.
type Reason struct {
	Code Code   `json:"code"`
	Text string `json:"text"`
}

// Result is a policy verdict.
type Result struct {
	OK bool `json:"ok"`
	// Score is zxcvbn's score, 0..4; -1 when the estimate did not run
	// (MinScore 0, or a Weak check that stopped early).
	Score   int      `json:"score"`
	Reasons []Reason `json:"reasons"`
}

// Check checks pw for the account login (a full address, a bare name or
// ""). It runs every rule and reports every failure. The only error is
// ErrTooLong.
func (p *Policy) Check(pw, login string) (Result, error) {
	return p.check(pw, login, false)
}

// Weak reports whether pw fails the policy, stopping at the first failed
// rule (cheap rules first, zxcvbn last). The nginx door uses it after a
// successful login, where only the flag is kept. Unlike Check, a
// breached list that cannot be searched is skipped here: a broken file
// must not flag (and, with refuse_weak_submission, stop) every account.
func (p *Policy) Weak(pw, login string) bool {
	r, err := p.check(pw, login, true)
	return err != nil || !r.OK
}

func (p *Policy) check(pw, login string, first bool) (Result, error) {
	res := Result{OK: true, Score: -1, Reasons: []Reason{}}
	if len(pw) > MaxLen {
		return Result{}, ErrTooLong
	}
	fail := func(c Code, format string, args ...any) bool {
		res.OK = false
		res.Reasons = append(res.Reasons, Reason{Code: c, Text: fmt.Sprintf(format, args...)})
		return first
	}
	if !utf8.ValidString(pw) {
		if fail(CodeNotUTF8, "the password is not valid UTF-8 text") {
			return res, nil
		}
	}
	if n := utf8.RuneCountInString(pw); n < p.MinLength {
		if fail(CodeTooShort, "has %d characters; at least %d are required", n, p.MinLength) {
			return res, nil
		}
	}
	if p.MinClasses > 0 {
		if n := Classes(pw); n < p.MinClasses {
			if fail(CodeTooFewClasses, "uses %d of the 4 character classes (lower case, upper case, digits, symbols); at least %d are required", n, p.MinClasses) {
				return res, nil
			}
		}
	}
	local, domain := splitLogin(login)
	lower := strings.ToLower(pw)
	if local != "" && strings.Contains(lower, local) {
		if fail(CodeContainsLogin, "contains the account's name") {
			return res, nil
		}
	}
	if domain != "" && (strings.Contains(lower, domain) || containsLabel(lower, domain)) {
		if fail(CodeContainsDomain, "contains the account's mail domain") {
			return res, nil
		}
	}
	if p.Breached != nil {
		n, err := p.Breached.Count(pw)
		switch {
		case err != nil && first:
			// At login: skipped (see Weak).
		case err != nil:
			// Fail closed for a new password: a list that cannot be
			// read says nothing, and the admin must see it.
			if fail(CodeBreachedError, "the breached-password list could not be searched: %v", err) {
				return res, nil
			}
		case n > 0:
			if fail(CodeBreached, "appears %d times in a list of breached passwords; attackers try those first", n) {
				return res, nil
			}
		}
	}
	if p.MinScore > 0 {
		s, hint := Estimate(pw, login)
		res.Score = s
		if s < p.MinScore {
			fail(CodeGuessable, "is too easy to guess (score %d of 4, at least %d is required)%s", s, p.MinScore, hint)
		}
	}
	return res, nil
}

// Estimate is zxcvbn's score (0..4) of pw, with the account's name and
// domain as words an attacker tries, and a hint naming the weakest
// pattern found ("" when none stands out).
func Estimate(pw, login string) (int, string) {
	if !utf8.ValidString(pw) {
		return 0, ""
	}
	cut := pw
	if len(cut) > zxcvbnLen {
		cut = cut[:zxcvbnLen]
		for !utf8.ValidString(cut) {
			cut = cut[:len(cut)-1]
		}
	}
	local, domain := splitLogin(login)
	var inputs []string
	for _, s := range []string{local, domain, domainLabel(domain)} {
		if s != "" {
			inputs = append(inputs, s)
		}
	}
	r := zxcvbn.PasswordStrength(cut, inputs)
	return r.Score, hint(r.Sequence)
}

// hint names the pattern of the longest guessable match.
func hint(seq []*match.Match) string {
	var best *match.Match
	for _, m := range seq {
		if m.Pattern == "bruteforce" {
			continue
		}
		if best == nil || len(m.Token) > len(best.Token) {
			best = m
		}
	}
	if best == nil {
		return ""
	}
	switch best.Pattern {
	case "dictionary":
		switch {
		case best.DictionaryName == "user_inputs":
			return ": it is built on the account's name or domain"
		case best.DictionaryName == "passwords":
			return ": it is built on a common password"
		case best.Reversed:
			return ": it is built on a reversed word"
		case best.L33t:
			return ": it is built on a word with predictable substitutions (like @ for a)"
		}
		return ": it is built on a common word or name"
	case "spatial":
		return ": it is a keyboard pattern"
	case "repeat":
		return ": it repeats characters or a group of characters"
	case "sequence":
		return ": it contains a sequence like abc or 1234"
	case "regex":
		return ": it contains a recent year"
	case "date":
		return ": it contains a date"
	}
	return ""
}

// Classes counts the character classes in pw: lower case, upper case,
// digits, and everything else (symbols, spaces, other scripts).
func Classes(pw string) int {
	var lo, up, dg, sy int
	for _, c := range pw {
		switch {
		case unicode.IsLower(c):
			lo = 1
		case unicode.IsUpper(c):
			up = 1
		case c >= '0' && c <= '9':
			dg = 1
		default:
			sy = 1
		}
	}
	return lo + up + dg + sy
}

// minPart is the shortest local part or domain label checked with
// Contains: a one- or two-letter name ("al@") is in too many passwords
// to mean anything.
const minPart = 3

// splitLogin returns the login's local part and domain, lower case, each
// "" when too short to check.
func splitLogin(login string) (local, domain string) {
	login = strings.ToLower(strings.TrimSpace(login))
	if i := strings.LastIndexByte(login, '@'); i >= 0 {
		local, domain = login[:i], login[i+1:]
	} else {
		local = login
	}
	if len(local) < minPart {
		local = ""
	}
	if len(domain) < minPart {
		domain = ""
	}
	return local, domain
}

// domainLabel is the domain's name without its top-level domain
// ("example" for example.com, "shop" for shop.example.co.uk is not
// attempted: the label before the TLD is taken, "co" for .co.uk is
// too short and skipped).
func domainLabel(domain string) string {
	parts := strings.Split(domain, ".")
	if len(parts) < 2 {
		return ""
	}
	l := parts[len(parts)-2]
	if len(l) < 4 {
		return ""
	}
	return l
}

// containsLabel reports whether pw holds the domain's main label
// ("example" of example.com).
func containsLabel(pw, domain string) bool {
	l := domainLabel(domain)
	return l != "" && strings.Contains(pw, l)
}

// errNotHex is for a bad hash argument.
var errNotHex = errors.New("password: not a 40-digit hex SHA-1")

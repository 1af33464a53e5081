// Package rules holds mailgate's IP rules: the global trusted and deny
// lists and the per-account allow/deny rules, and an in-memory index that
// answers "which rule applies to this login, service and address" without
// scanning.
//
// It is not the decision engine (see internal/policy, which orders the
// checks and writes the verdict), and it does no I/O: rules reach it from
// the store through the caller.
package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Service is a mail service in Dovecot's protocol naming. The zero value,
// AllServices, stands for "every service" in a rule.
type Service uint8

const (
	AllServices Service = iota
	IMAP
	POP3
	SMTP // in a rule, also covers Submission: users think "sending"
	Submission
	Sieve
	OtherService // an attempt over a protocol mailgate has no name for
	numServices
)

var serviceNames = [numServices]string{
	AllServices:  "all",
	IMAP:         "imap",
	POP3:         "pop3",
	SMTP:         "smtp",
	Submission:   "submission",
	Sieve:        "sieve",
	OtherService: "other",
}

var serviceTitles = [numServices]string{
	AllServices:  "mail",
	IMAP:         "IMAP",
	POP3:         "POP3",
	SMTP:         "SMTP (sending mail)",
	Submission:   "mail submission (sending mail)",
	Sieve:        "ManageSieve",
	OtherService: "this service",
}

// String returns the service's protocol name: imap, pop3, smtp,
// submission, sieve; "all" for AllServices.
func (s Service) String() string {
	if s < numServices {
		return serviceNames[s]
	}
	return fmt.Sprintf("service(%d)", uint8(s))
}

// Title is the name shown to a mail user ("POP3", "SMTP (sending mail)").
func (s Service) Title() string {
	if s < numServices {
		return serviceTitles[s]
	}
	return "this service"
}

// ParseService parses a rule's service: a protocol name, or "", "all" or
// "*" for every service. "managesieve" is accepted for sieve.
func ParseService(s string) (Service, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "all", "*":
		return AllServices, nil
	case "imap":
		return IMAP, nil
	case "pop3", "pop":
		return POP3, nil
	case "smtp":
		return SMTP, nil
	case "submission":
		return Submission, nil
	case "sieve", "managesieve":
		return Sieve, nil
	}
	return 0, fmt.Errorf("unknown service %q (want imap, pop3, smtp, submission, sieve or all)", s)
}

// ProtocolService maps a protocol name reported by a mail program to the
// attempt's service. Unlike ParseService it never fails: names mailgate
// does not know become OtherService, to which only all-service rules
// apply.
func ProtocolService(proto string) Service {
	s, err := ParseService(proto)
	if err != nil || s == AllServices {
		return OtherService
	}
	return s
}

// covers reports whether a rule for service r applies to an attempt over
// service a.
func (r Service) covers(a Service) bool {
	return r == AllServices || r == a || (r == SMTP && a == Submission)
}

// Action is what a rule does when it matches.
type Action uint8

const (
	Allow Action = iota + 1
	Deny
	// Extra rules are exceptions to the global country lists: an address or
	// country from which the account may log in although the global list
	// blocks it. Unlike Allow they do not make the account an allow list,
	// and unlike an address Allow they do not exempt it from bans.
	Extra
	numActions = Extra
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Extra:
		return "extra"
	}
	return "invalid"
}

// ParseAction parses "allow", "deny" or "extra" (also the ISPConfig modes
// "w" and "b").
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "allow", "w":
		return Allow, nil
	case "deny", "b":
		return Deny, nil
	case "extra":
		return Extra, nil
	}
	return 0, fmt.Errorf("unknown action %q (want allow, deny or extra)", s)
}

// Scope tells where a rule sits in the order of checks.
type Scope uint8

const (
	// ScopeAccount rules apply to one login, one domain or every account,
	// after the global lists.
	ScopeAccount Scope = iota
	// ScopeGlobal rules are the trusted networks (Allow) and the global
	// deny list (Deny), checked before any account rule.
	ScopeGlobal
)

func (s Scope) String() string {
	if s == ScopeGlobal {
		return "global"
	}
	return "account"
}

// Rule is one rule as the admin wrote it.
type Rule struct {
	ID      int64
	Scope   Scope
	Account string // ScopeAccount only: a login, "@domain" or "*"; normalized
	Service Service
	Action  Action
	// Match is the address or network the rule matches; the zero Prefix
	// means "none": an allow rule matching nothing, which closes the
	// service for the account.
	Match netip.Prefix
	// Countries, when not empty, makes the rule match clients from these
	// countries instead of an address: normalized ISO codes, "AT,DE"
	// (ParseCountries). Match is then the zero Prefix.
	Countries string
	Comment   string
	Expires   time.Time // zero: never
	Created   time.Time
	CreatedBy string
	Source    string // "" for stored rules, "config" for rules from the config file
}

// None reports whether the rule matches nothing (an allow rule with
// `none`).
func (r *Rule) None() bool { return !r.Match.IsValid() && r.Countries == "" }

// MatchString is the rule's match as the admin writes it: an address, a
// CIDR, "none" or "country:AT,DE".
func (r *Rule) MatchString() string {
	if r.Countries != "" {
		return CountryPrefix + r.Countries
	}
	if r.None() {
		return "none"
	}
	if r.Match.IsSingleIP() {
		return r.Match.Addr().String()
	}
	return r.Match.String()
}

// Expired reports whether the rule has expired at now.
func (r *Rule) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Validate checks a rule's fields and normalizes Account and Match in
// place. Its errors name the field.
func (r *Rule) Validate() error {
	switch r.Scope {
	case ScopeGlobal:
		if r.Account != "" {
			return errors.New("account: a global rule has no account")
		}
		if r.None() {
			return errors.New("match: a global rule needs an address or network, not none")
		}
		if r.Countries != "" {
			return errors.New("match: global country lists are set in the config file ([geoip] allow_countries or deny_countries); country rules belong to an account")
		}
		if r.Action == Extra {
			return errors.New("action: extra rules belong to an account; a global allow is a trusted network")
		}
	case ScopeAccount:
		acct, err := NormalizeAccount(r.Account)
		if err != nil {
			return fmt.Errorf("account: %w", err)
		}
		r.Account = acct
	default:
		return fmt.Errorf("scope: unknown scope %d", r.Scope)
	}
	if r.Service >= OtherService {
		return fmt.Errorf("service: %v cannot be used in a rule", r.Service)
	}
	switch r.Action {
	case Allow:
	case Deny:
		if r.None() {
			return errors.New("match: none closes a service and goes with allow; a deny rule needs an address or network")
		}
	case Extra:
		if r.None() {
			return errors.New("match: an extra rule needs an address, a network or countries, not none")
		}
	default:
		return errors.New("action: want allow, deny or extra")
	}
	if r.Countries != "" {
		if r.Match.IsValid() {
			return errors.New("match: a rule matches an address or countries, not both")
		}
		cc, err := ParseCountries(r.Countries)
		if err != nil {
			return fmt.Errorf("match: %w", err)
		}
		r.Countries = cc
	}
	if r.Match.IsValid() {
		r.Match = normalizePrefix(r.Match)
	}
	if len(r.Comment) > MaxCommentLen {
		return fmt.Errorf("comment: longer than %d bytes", MaxCommentLen)
	}
	return nil
}

// MaxCommentLen bounds a rule's comment.
const MaxCommentLen = 1024

// MaxAccountLen bounds an account name (RFC 5321 allows 254 for an address).
const MaxAccountLen = 320

// NormalizeLogin trims and lower-cases a login as the index keys it. It
// allocates only when the login has upper-case letters or surrounding
// space. A login that is not valid UTF-8 is only trimmed: lower-casing
// would turn its bad bytes into U+FFFD and hide them from
// policy.BadLogin, which every door asks next.
func NormalizeLogin(login string) string {
	s := strings.TrimSpace(login)
	if !utf8.ValidString(s) {
		return s
	}
	return strings.ToLower(s)
}

// PrintableLogin reports whether a login can be stored and shown, the
// test before a login grants a relay permit: valid UTF-8, no control
// characters, at most MaxAccountLen bytes.
func PrintableLogin(s string) bool {
	if s == "" || len(s) > MaxAccountLen || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false
		}
	}
	return true
}

// NormalizeAccount checks and normalizes a rule's account: an exact login
// (case-insensitive, trimmed), "@domain" or "*".
func NormalizeAccount(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%q is not valid UTF-8", s)
	}
	a := NormalizeLogin(s)
	switch {
	case a == "":
		return "", errors.New("empty account (want a login, @domain or *)")
	case len(a) > MaxAccountLen:
		return "", fmt.Errorf("account longer than %d bytes", MaxAccountLen)
	case a == "*":
		return a, nil
	case strings.HasPrefix(a, "@"):
		if len(a) == 1 || strings.ContainsAny(a[1:], "@ \t*") {
			return "", fmt.Errorf("%q is not a domain (want @example.com)", s)
		}
		return a, nil
	case strings.ContainsAny(a, " \t\r\n*"):
		return "", fmt.Errorf("%q is not a login: it has a space or '*'", s)
	}
	for _, c := range a {
		if c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%q has a control character", s)
		}
	}
	return a, nil
}

// ParseMatch parses a rule's match: an IPv4 or IPv6 address, a CIDR, or
// "none" (the zero Prefix). An IPv4-mapped IPv6 address or network
// (::ffff:192.0.2.1) becomes the IPv4 one. A CIDR with host bits set is
// refused, since 10.0.0.1/8 is more likely a typo than a wish.
func ParseMatch(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "none") {
		return netip.Prefix{}, nil
	}
	if s == "" {
		return netip.Prefix{}, errors.New("empty address (want an IP address, a CIDR or none)")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network: %w", s, err)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return normalizePrefix(p), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseAddr parses a client address as a door receives it, unmapping
// ::ffff:a.b.c.d and dropping any zone.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap().WithZone(""), nil
}

// normalizePrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96).
func normalizePrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

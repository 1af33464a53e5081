package policy

import (
	"net/netip"

	"mailgate/internal/rules"
)

// CountryKind is what a GeoIP lookup found for an address.
type CountryKind uint8

const (
	CountryFound   CountryKind = iota // the database names the country
	CountryPrivate                    // not in the database; a private, loopback or link-local address
	CountryUnknown                    // not in the database
)

// CountryLookup returns the country code of addr ("DE") and what kind of
// answer it is. It must be safe for concurrent use and should not
// allocate (internal/geoip's Locator, through a small adapter).
type CountryLookup func(addr netip.Addr) (cc string, kind CountryKind)

// CountryOutcome is what the global country check does with a private or
// unknown address.
type CountryOutcome uint8

const (
	// CountryAsListed treats the address like a country on no list: it is
	// blocked when there is an allow list, passes when there is a deny list.
	CountryAsListed CountryOutcome = iota
	CountryPass                    // always passes the country check
	CountryBlock                   // always fails the country check
)

// ParseCountryOutcome parses "list", "allow" or "deny".
func ParseCountryOutcome(s string) (CountryOutcome, bool) {
	switch s {
	case "list":
		return CountryAsListed, true
	case "allow":
		return CountryPass, true
	case "deny":
		return CountryBlock, true
	}
	return 0, false
}

// CountryPolicy is the global country list. Allow and Deny are normalized
// code lists ("AT,DE", rules.ParseCountries); at most one is set.
type CountryPolicy struct {
	Allow   string // logins only from these countries (plus per-account exceptions)
	Deny    string // no logins from these countries (save per-account exceptions)
	Private CountryOutcome
	Unknown CountryOutcome
}

// active reports whether the policy blocks anything at all.
func (p *CountryPolicy) active() bool {
	return p.Allow != "" || p.Deny != "" || p.Private == CountryBlock || p.Unknown == CountryBlock
}

// blocks reports whether the global list refuses a client whose lookup
// gave cc and kind. It does not allocate; why says it in words.
func (p *CountryPolicy) blocks(cc string, kind CountryKind) bool {
	switch p.outcome(kind) {
	case CountryPass:
		return false
	case CountryBlock:
		return true
	}
	if p.Allow != "" {
		return !rules.CountriesContain(p.Allow, cc)
	}
	return p.Deny != "" && rules.CountriesContain(p.Deny, cc)
}

func (p *CountryPolicy) outcome(kind CountryKind) CountryOutcome {
	switch kind {
	case CountryPrivate:
		return p.Private
	case CountryUnknown:
		return p.Unknown
	}
	return CountryAsListed
}

// why explains blocks' answer, for explanations.
func (p *CountryPolicy) why(cc string, kind CountryKind) string {
	switch p.outcome(kind) {
	case CountryPass:
		return "[geoip] " + kindKey(kind) + " = \"allow\""
	case CountryBlock:
		return "[geoip] " + kindKey(kind) + " = \"deny\""
	}
	in := func(set string) bool { return rules.CountriesContain(set, cc) }
	switch {
	case p.Allow != "" && !in(p.Allow):
		return "not in [geoip] allow_countries (" + p.Allow + ")"
	case p.Allow != "":
		return "in [geoip] allow_countries"
	case p.Deny != "" && in(p.Deny):
		return "in [geoip] deny_countries (" + p.Deny + ")"
	case p.Deny != "":
		return "not in [geoip] deny_countries"
	}
	return "no global country list"
}

func kindKey(k CountryKind) string {
	if k == CountryPrivate {
		return "private"
	}
	return "unknown"
}

// WithCountries makes the engine look up each client's country (shown in
// the decision log and matched by country rules) and apply the global
// country list p to logins. Call it while wiring, before the engine is
// used.
func (e *Engine) WithCountries(lookup CountryLookup, p CountryPolicy) *Engine {
	e.SetCountries(lookup, p)
	return e
}

// SetCountries replaces the GeoIP lookup (nil: none) and the global
// country list, for decisions that start after it returns.
func (e *Engine) SetCountries(lookup CountryLookup, p CountryPolicy) {
	e.update(func(s *Settings) { s.Geo, s.Countries = lookup, p })
}

// Country labels for Attempt.Country when the database names none.
const (
	countryPrivate = "private"
	countryUnknown = "unknown"
)

// country looks the client up once per attempt and records the answer in
// a.Country. cc is the code country rules match ("" for none).
func (s *Settings) country(a *Attempt) (cc string, kind CountryKind) {
	if s.Geo == nil || !a.Client.IsValid() {
		return "", CountryUnknown
	}
	cc, kind = s.Geo(a.Client)
	switch {
	case kind == CountryFound && len(cc) == 2:
		a.Country = cc
	case kind == CountryPrivate:
		cc, a.Country = "", countryPrivate
	default:
		cc, kind, a.Country = "", CountryUnknown, countryUnknown
	}
	return cc, kind
}

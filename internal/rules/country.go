package rules

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// CountryPrefix starts a rule's match text when the rule matches
// countries instead of addresses: "country:AT,DE".
const CountryPrefix = "country:"

// MaxCountries bounds the countries of one rule (ISO 3166-1 has 249).
const MaxCountries = 300

// ParseCountries parses a list of ISO 3166-1 alpha-2 country codes
// separated by commas or spaces ("de, at") into the normalized form a rule
// keeps: upper case, sorted, without duplicates, comma-separated ("AT,DE").
func ParseCountries(s string) (string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return "", errors.New("no country codes (want e.g. DE or DE,AT)")
	}
	if len(fields) > MaxCountries {
		return "", fmt.Errorf("more than %d country codes", MaxCountries)
	}
	codes := make([]string, 0, len(fields))
	for _, f := range fields {
		c, err := ParseCountry(f)
		if err != nil {
			return "", err
		}
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return strings.Join(slices.Compact(codes), ","), nil
}

// ParseCountry checks one country code: two ASCII letters, any case. It
// returns the code in upper case.
func ParseCountry(s string) (string, error) {
	if len(s) != 2 || !isLetter(s[0]) || !isLetter(s[1]) {
		if len(s) > 16 {
			s = s[:16] + "..."
		}
		return "", fmt.Errorf("%q is not a country code (want two letters, ISO 3166-1 alpha-2, e.g. DE)", s)
	}
	return strings.ToUpper(s), nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// countriesContain reports whether the normalized list set ("AT,DE")
// holds the code cc ("DE"). It does not allocate.
func countriesContain(set, cc string) bool {
	if len(cc) != 2 {
		return false
	}
	for i := 0; i+2 <= len(set); i += 3 {
		if set[i] == cc[0] && set[i+1] == cc[1] {
			return true
		}
	}
	return false
}

// CountriesContain reports whether the normalized list set ("AT,DE", as
// ParseCountries returns it) holds the code cc.
func CountriesContain(set, cc string) bool { return countriesContain(set, cc) }

// SetMatch parses a rule's match text into r: an address, a CIDR, "none",
// or "country:" followed by country codes.
func (r *Rule) SetMatch(s string) error {
	if rest, ok := cutPrefixFold(strings.TrimSpace(s), CountryPrefix); ok {
		cc, err := ParseCountries(rest)
		if err != nil {
			return err
		}
		r.Match, r.Countries = netip.Prefix{}, cc
		return nil
	}
	p, err := ParseMatch(s)
	if err != nil {
		return err
	}
	r.Match, r.Countries = p, ""
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

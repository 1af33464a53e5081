package notify

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// clean makes e's strings safe to put anywhere (a JSON field, a mail
// header, a template): control characters (CR, LF, NUL, and the Unicode
// line separators) and invalid UTF-8 become '?', and each is cut to
// MaxField bytes. A login is chosen by whoever types it.
func clean(e *Event) {
	e.Subject = cleanString(e.Subject)
	e.Login = cleanString(e.Login)
	e.Country = cleanString(e.Country)
	e.Service = cleanString(e.Service)
	e.Detail = cleanString(e.Detail)
	if len(e.Accounts) > maxAccounts {
		e.Accounts = e.Accounts[:maxAccounts]
	}
	acc := make([]string, len(e.Accounts))
	for i, a := range e.Accounts {
		acc[i] = cleanString(a)
	}
	e.Accounts = acc
}

// cleanString is clean for one string.
func cleanString(s string) string {
	if len(s) > MaxField {
		s = s[:MaxField]
		// Do not leave half a rune at the end.
		for i := 0; i < utf8.UTFMax-1 && len(s) > 0; i++ {
			if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
				break
			}
			s = s[:len(s)-1]
		}
	}
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == utf8.RuneError || unsafeRune(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unsafeRune reports a rune that may break a line or a header: C0 and C1
// controls, DEL, and the Unicode line and paragraph separators.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == '\u0085'
}

// Title is a one-line title of e, for a mail's subject and an alert's
// summary.
func (e *Event) Title() string {
	switch e.Kind {
	case LoginBanned:
		return "account " + e.Login + " is under attack: login banned"
	case SendLimit:
		return "account " + e.Login + " hit its sending limit"
	case NewCountry:
		return "account " + e.Login + " logged in from a new country (" + e.Country + ")"
	case SharedPermit:
		return "relay permit on shared address " + e.place()
	case FirewallFailed:
		return "firewall: table inet mailgate could not be applied"
	case DNSBLStale:
		return "DNSBL zone " + e.Subject + " fails its health check"
	case GeoIPStale:
		return "GeoIP database is stale"
	case Test:
		return "test notification"
	}
	return string(e.Kind)
}

func (e *Event) place() string {
	if e.Prefix.IsValid() {
		return e.Prefix.String()
	}
	if e.Addr.IsValid() {
		return e.Addr.String()
	}
	return "?"
}

// Text is a few lines that say what happened and what to do.
func (e *Event) Text() string {
	var b strings.Builder
	at := e.Time.UTC().Format(time.RFC3339)
	switch e.Kind {
	case LoginBanned:
		fmt.Fprintf(&b, "Failed logins for %s from several addresses got the login banned at %s", e.Login, at)
		if !e.Until.IsZero() {
			fmt.Fprintf(&b, " until %s", e.Until.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, ".\nLast address: %s%s.\n", e.place(), e.countrySuffix())
		b.WriteString("Its known-good addresses keep working. If the owner locked themselves out, lift it: mailgate ban rm --account " + e.Login + "\n")
	case SendLimit:
		fmt.Fprintf(&b, "%s reached %s at %s (%s).\n", e.Login, e.Detail, at, e.place())
		b.WriteString("An account that suddenly sends this much may have a stolen password: check its queue (mailq) and change its password.\n")
	case NewCountry:
		fmt.Fprintf(&b, "%s logged in successfully over %s from %s%s at %s, a country it did not log in from before.\n", e.Login, e.Service, e.place(), e.countrySuffix(), at)
		b.WriteString("If the owner is not travelling, the password may be stolen.\n")
	case SharedPermit:
		fmt.Fprintf(&b, "%s logged in over %s from %s at %s, and %d accounts logged in from there recently: %s.\n", e.Login, e.Service, e.place(), at, len(e.Accounts), strings.Join(e.Accounts, ", "))
		b.WriteString("A relay permit there lets everyone behind that address relay. Add it to relay.never_networks, or set relay.refuse_shared = true.\n")
	case FirewallFailed:
		fmt.Fprintf(&b, "At %s: %s.\nThe doors go on deciding without the firewall; every reconcile tries again. See mailgate firewall show.\n", at, e.Detail)
	case DNSBLStale:
		fmt.Fprintf(&b, "At %s the health check of %s failed: %s.\nIts answers may be wrong: check the zone name and the resolver, or remove the zone.\n", at, e.Subject, e.Detail)
	case GeoIPStale:
		fmt.Fprintf(&b, "At %s: %s.\nCountry rules decide on old data: check geoipupdate (or your download job).\n", at, e.Detail)
	case Test:
		fmt.Fprintf(&b, "A test notification sent at %s by 'mailgate notify test'.\n", at)
	}
	if e.Suppressed > 0 {
		fmt.Fprintf(&b, "(%d notifications before this one were suppressed by notifications.max_per_hour.)\n", e.Suppressed)
	}
	return b.String()
}

func (e *Event) countrySuffix() string {
	if e.Country == "" {
		return ""
	}
	return " (" + e.Country + ")"
}

// JSON is the webhook's body for an event.
type JSON struct {
	Event      string    `json:"event"`
	Time       time.Time `json:"time"`
	Host       string    `json:"host,omitempty"`
	Subject    string    `json:"subject,omitempty"`
	Login      string    `json:"login,omitempty"`
	IP         string    `json:"ip,omitempty"`
	Network    string    `json:"network,omitempty"`
	Country    string    `json:"country,omitempty"`
	Service    string    `json:"service,omitempty"`
	Until      time.Time `json:"until,omitzero"`
	Detail     string    `json:"detail,omitempty"`
	Accounts   []string  `json:"accounts,omitempty"`
	Title      string    `json:"title"`
	Text       string    `json:"text"`
	Suppressed uint64    `json:"suppressed,omitempty"`
}

// toJSON is e as the webhook sends it.
func (e *Event) toJSON(host string) JSON {
	j := JSON{Event: string(e.Kind), Time: e.Time.UTC(), Host: host, Subject: e.subject(), Login: e.Login,
		Country: e.Country, Service: e.Service, Detail: e.Detail, Accounts: e.Accounts,
		Title: e.Title(), Text: e.Text(), Suppressed: e.Suppressed}
	if e.Addr.IsValid() {
		j.IP = e.Addr.String()
	}
	if e.Prefix.IsValid() {
		j.Network = e.Prefix.String()
	}
	if !e.Until.IsZero() {
		j.Until = e.Until.UTC()
	}
	return j
}

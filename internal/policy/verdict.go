package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailgate/internal/rules"
)

// Attempt is one login or relay attempt as a door saw it. Doors parse their
// wire format into an Attempt at the edge; inside, addresses are netip
// values and the login is normalized (rules.NormalizeLogin).
type Attempt struct {
	Login   string        // normalized login; "" when the door has none
	Service rules.Service // rules.ProtocolService of the door's protocol name
	Client  netip.Addr    // the client's address, unmapped
	Local   netip.AddrPort
	TLS     bool
	// PwHash is the door's short hash of the password tried (Dovecot's
	// truncated pwhash). It is used to tell a stale client from a guesser
	// and is never logged.
	PwHash string
	// PwDigested says PwHash is already the engine's password digest
	// (WithPwDigest): a login result another node saw and published.
	PwDigested bool
	Session    string // the door's session id, if any
	Door       string // "dovecot", "nginx", "postfix", "cli"
	// AfterAuth is set on Dovecot's second allow call, which comes only
	// after the password was found correct.
	AfterAuth bool
	// WeakPassword is set by the nginx door when the password, found
	// correct, fails the password policy; the log lines say
	// weak_password=1. Nothing else of the password is kept.
	WeakPassword bool
	// Country is the client's country (ISO 3166-1 alpha-2, "DE"), or
	// "private"/"unknown" when the GeoIP database has none; "" when no
	// GeoIP database is configured. Decide fills it in.
	Country string
	// DNSBL is the DNS blocklists' answer for Client, filled in by the
	// door before Decide when Engine.NeedsDNSBL says so.
	DNSBL DNSBL
}

// Action is what the verdict tells the door to do.
type Action uint8

const (
	Allow Action = iota
	Deny
	Tarpit // delay the attempt by Verdict.Delay, then let it go on
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	case Tarpit:
		return "tarpit"
	}
	return "invalid"
}

// Reason is the check that decided a verdict. Its String is the stable
// code written to the decision log; people grep for these.
type Reason uint8

const (
	ReasonDefault        Reason = iota // no rule applied: allowed
	ReasonTrusted                      // the address is in a trusted network
	ReasonGlobalDeny                   // the address is on the global deny list
	ReasonAccountAllow                 // an allow rule of the account matched
	ReasonAccountDeny                  // a deny rule of the account matched
	ReasonNotInAllowlist               // the account has allow rules for the service; none matched
	ReasonServiceClosed                // the account's only allow rule for the service is "none"
	ReasonBadAddress                   // the door gave no usable client address
	ReasonBannedAddress                // the address is banned (brute force, or by hand)
	ReasonBannedLogin                  // the login is banned while under attack
	ReasonStalePassword                // a client repeating one wrong password: tarpitted
	ReasonCountryBlocked               // the global country list refuses the client's country
	ReasonRelayPermit                  // the address has a relay permit from a recent login (Postfix door)
	ReasonSendLimit                    // the authenticated sender is over a sending limit (Postfix door)
	ReasonUnderAttack                  // the server is under attack and the login comes from a new place
	ReasonBadLogin                     // the login cannot be an account (BadLogin): refused before it is counted
	ReasonDNSBL                        // the client's DNS blocklist score reaches the threshold
	ReasonWeakPassword                 // the login's password fails the password policy: SMTP submission refused ([password] refuse_weak_submission)
	numReasons
)

var reasonCodes = [numReasons]string{
	ReasonDefault:        "default",
	ReasonTrusted:        "trusted",
	ReasonGlobalDeny:     "global_deny",
	ReasonAccountAllow:   "account_allow",
	ReasonAccountDeny:    "account_deny",
	ReasonNotInAllowlist: "not_in_allowlist",
	ReasonServiceClosed:  "service_closed",
	ReasonBadAddress:     "bad_address",
	ReasonBannedAddress:  "banned_address",
	ReasonBannedLogin:    "banned_login",
	ReasonStalePassword:  "stale_password",
	ReasonCountryBlocked: "country_blocked",
	ReasonRelayPermit:    "relay_permit",
	ReasonSendLimit:      "send_limit",
	ReasonUnderAttack:    "under_attack",
	ReasonBadLogin:       "bad_login",
	ReasonDNSBL:          "dnsbl",
	ReasonWeakPassword:   "weak_password",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonCodes[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Reasons lists every reason code, for docs and config validation.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, bool) {
	for i, c := range reasonCodes {
		if c == s {
			return Reason(i), true
		}
	}
	return 0, false
}

// Verdict is the engine's answer to an Attempt. It is a plain value: the
// engine fills it without allocating, and the explanation is rendered only
// when someone asks for it.
type Verdict struct {
	Action Action
	Reason Reason
	// Delay is how long the door holds the attempt: the whole answer for
	// Tarpit; for Deny, a wait before the refusal (a banned login is
	// tarpitted and then refused).
	Delay time.Duration
	// RuleID is the id of the rule that decided, 0 when none did (or the
	// rule came from the config file; see Source).
	RuleID int64
	// Source is "config" when the deciding rule came from the config file.
	Source string
	// Match is the address or network of the deciding rule.
	Match netip.Prefix
	// Country is the client's country when a country rule decided.
	Country string
	// BanID is the ban behind a banned_* verdict.
	BanID int64
	// Limit is the sending limit behind a send_limit verdict, e.g.
	// "recipients_per_hour".
	Limit string
	// Level and LevelKey say which account level decided (see LevelName).
	Level    rules.LevelKind
	LevelKey string
}

// Check is one step of an explanation.
type Check struct {
	Name   string `json:"check"`
	Result string `json:"result"`
	RuleID int64  `json:"rule,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Trace collects the checks behind a verdict when Decide is asked to
// explain itself. A nil *Trace records nothing and costs nothing.
type Trace struct {
	Checks []Check
}

func (t *Trace) add(name, result string, id int64, detail string) {
	if t != nil {
		t.Checks = append(t.Checks, Check{Name: name, Result: result, RuleID: id, Detail: detail})
	}
}

// Messages are the texts a mail user sees when refused, keyed by reason.
// Placeholders: {service} (e.g. "POP3"), {ip}, {login}, {country},
// {zones} (the DNS blocklists listing the address).
type Messages map[string]string

// DefaultMessages returns the built-in user-visible texts.
func DefaultMessages() Messages {
	return Messages{
		ReasonGlobalDeny.String():     "Logins from your address ({ip}) are blocked on this server.",
		ReasonAccountDeny.String():    "This account may not use {service} from your address ({ip}).",
		ReasonNotInAllowlist.String(): "This account may not use {service} from your address ({ip}).",
		ReasonServiceClosed.String():  "{service} is disabled for this account.",
		ReasonBadAddress.String():     "Your address could not be checked; please try again later.",
		ReasonBannedAddress.String():  "Too many failed logins from your address ({ip}); please try again later.",
		ReasonBannedLogin.String():    "Too many failed logins for this account; please try again later or ask your mail administrator.",
		ReasonCountryBlocked.String(): "Logins to this account are not allowed from your country ({country}).",
		ReasonSendLimit.String():      "{login} has reached its sending limit; please try again later or ask your mail administrator.",
		ReasonDNSBL.String():          "Your address ({ip}) is on a blocklist of abused addresses ({zones}); logins from it are refused. Please use another network, or ask your mail administrator.",
		ReasonWeakPassword.String():   "Your password is too weak or known from a data breach: sending mail is disabled until you change it. Reading mail still works; please set a new password in your webmail or control panel.",
		ReasonUnderAttack.String():    "This server is under attack: logins from networks this account has not used before are paused; please use a network you used before, or ask your mail administrator.",
	}
}

// Message renders the user-visible text for a deny verdict.
func (m Messages) Message(a *Attempt, v *Verdict) string {
	t, ok := m[v.Reason.String()]
	if !ok {
		t = DefaultMessages()[v.Reason.String()]
	}
	if t == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(t) + 32)
	for {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			b.WriteString(t)
			return b.String()
		}
		b.WriteString(t[:i])
		t = t[i:]
		switch {
		case strings.HasPrefix(t, "{service}"):
			b.WriteString(a.Service.Title())
			t = t[len("{service}"):]
		case strings.HasPrefix(t, "{ip}"):
			if a.Client.IsValid() {
				b.WriteString(a.Client.String())
			} else {
				b.WriteString("unknown")
			}
			t = t[len("{ip}"):]
		case strings.HasPrefix(t, "{country}"):
			if a.Country != "" {
				b.WriteString(a.Country)
			} else {
				b.WriteString("unknown")
			}
			t = t[len("{country}"):]
		case strings.HasPrefix(t, "{zones}"):
			if a.DNSBL.Zones != "" {
				b.WriteString(a.DNSBL.Zones)
			} else {
				b.WriteString("none")
			}
			t = t[len("{zones}"):]
		case strings.HasPrefix(t, "{login}"):
			b.WriteString(a.Login)
			t = t[len("{login}"):]
		default:
			b.WriteByte('{')
			t = t[1:]
		}
	}
}

// Explain is a one-line human explanation of the verdict.
func (v *Verdict) Explain(a *Attempt) string {
	rule := ""
	if v.RuleID != 0 {
		rule = fmt.Sprintf(" (rule %d)", v.RuleID)
	} else if v.Source != "" {
		rule = " (" + v.Source + ")"
	}
	m := ""
	if v.Match.IsValid() {
		m = v.Match.String()
	} else if v.Country != "" {
		m = "country " + v.Country
	}
	switch v.Reason {
	case ReasonTrusted:
		return fmt.Sprintf("%s is in trusted network %s%s", a.Client, m, rule)
	case ReasonGlobalDeny:
		return fmt.Sprintf("%s is on the global deny list as %s%s", a.Client, m, rule)
	case ReasonAccountAllow:
		return fmt.Sprintf("rules of %s allow %s from %s%s", v.LevelName(), a.Service, m, rule)
	case ReasonAccountDeny:
		return fmt.Sprintf("rules of %s deny %s from %s%s", v.LevelName(), a.Service, m, rule)
	case ReasonNotInAllowlist:
		return fmt.Sprintf("rules of %s allow %s only from listed addresses, and %s is not one of them", v.LevelName(), a.Service, a.Client)
	case ReasonServiceClosed:
		return fmt.Sprintf("rules of %s close %s (allow none)%s", v.LevelName(), a.Service, rule)
	case ReasonBadAddress:
		return "the client address is missing or invalid"
	case ReasonBadLogin:
		return fmt.Sprintf("the login is longer than %d bytes or not valid UTF-8: it cannot be an account", MaxLoginLen)
	case ReasonBannedAddress:
		return fmt.Sprintf("%s is banned as %s (ban %d)", a.Client, m, v.BanID)
	case ReasonBannedLogin:
		return fmt.Sprintf("the login %s is banned (ban %d) and %s is not an address it logged in from before", a.Login, v.BanID, a.Client)
	case ReasonCountryBlocked:
		return fmt.Sprintf("logins from %s (country %s) are refused by the global country list%s", a.Client, a.Country, rule)
	case ReasonRelayPermit:
		return fmt.Sprintf("%s may relay: %s logged in from %s recently (relay permit)", a.Client, a.Login, m)
	case ReasonSendLimit:
		return fmt.Sprintf("%s has reached a sending limit", a.Login)
	case ReasonDNSBL:
		return fmt.Sprintf("%s is listed by %s: DNSBL score %d reaches the threshold", a.Client, a.DNSBL.Zones, a.DNSBL.Score)
	case ReasonWeakPassword:
		return fmt.Sprintf("%s logged in with a password that fails the password policy; sending is refused until it is changed", a.Login)
	case ReasonStalePassword:
		return fmt.Sprintf("%s keeps trying the same wrong password for %s: a stale client, tarpitted, not banned", a.Client, a.Login)
	}
	return "no rule applies; allowed by default"
}

// ReplyText makes a refusal text safe to put in a protocol reply line
// (an IMAP/POP3/SMTP response, an HTTP header, a Postfix action): control
// characters, CR and LF above all (messages may hold the login the client
// typed), become spaces, invalid UTF-8 is replaced, and it is cut to max
// bytes on a rune boundary.
func ReplyText(s string, max int) string {
	ok := len(s) <= max && utf8.ValidString(s)
	if ok {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] == 0x7f {
				ok = false
				break
			}
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		if b.Len()+utf8.RuneLen(c) > max {
			break
		}
		b.WriteRune(c)
	}
	return b.String()
}

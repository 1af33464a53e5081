// Package relay keeps mailgate's relay permits (POP/IMAP-before-SMTP): a
// successful login over a granting service (IMAP and POP3 by default)
// lets its client address relay mail through Postfix for a while (30
// minutes by default), and every new login refreshes the permit.
//
// It replaces pop-before-smtp.pl, DRAC, relay-ctrl and the SQL tables a
// Dovecot wrapper filled and a cron job purged (seeds/001): expiry is part
// of every lookup, so no cron job is needed; IPv4-mapped IPv6 addresses
// are the IPv4 address; configured networks (loopback by default) never
// get a permit; an IPv6 permit covers the client's /64 unless configured
// to cover only the one address. Because a permit opens relaying to
// everyone behind the address, each permit records the login that earned
// it, and an address many accounts log in from in a short time (a NAT
// pool, a hotspot) is marked shared, and may be refused permits.
//
// It is pure: time is an argument, no I/O, no goroutine. The daemon
// persists the permits Login and Add return and loads them back with
// Restore at start. A Table is safe for concurrent use; Check does not
// allocate. It is not the place for rules or bans: the Postfix door asks
// the policy engine about those before it honours a permit.
package relay

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"mailgate/internal/rules"
)

// Limits Validate enforces.
const (
	MinTTL          = time.Second
	MaxTTL          = 30 * 24 * time.Hour
	MaxSharedLogins = 1000
	MaxSharedWindow = 30 * 24 * time.Hour
	MaxPermits      = 10_000_000
	MaxNever        = 256 // Check walks the list on every lookup
	// MaxManualFor is how far ahead a manual permit may expire.
	MaxManualFor = 365 * 24 * time.Hour
)

// DoorManual is the Door of a permit added by hand (Table.Add).
const DoorManual = "manual"

// Config configures a Table. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// TTL is how long a permit lasts after the login that granted or
	// last refreshed it.
	TTL time.Duration
	// Services grant permits on a successful login (IMAP and POP3 by
	// default). rules.SMTP and rules.Submission are refused by Validate:
	// an authenticated sender needs no permit.
	Services []rules.Service
	// Never lists networks that never get a permit (loopback by default:
	// behind nginx or a webmail every login comes from 127.0.0.1).
	Never []netip.Prefix
	// IPv6Prefix is the size of the network an IPv6 permit covers: 64
	// (one customer's network, whose privacy addresses rotate) or up to
	// 128 (only the address that logged in). IPv4 permits always cover
	// one address.
	IPv6Prefix int
	// SharedLogins distinct logins succeeding from one permit network
	// within SharedWindow mark it shared (0 = off). With SharedWindow
	// set, the accounts seen are listed even when SharedLogins is 0;
	// with both 0 no logins are remembered.
	SharedLogins int
	SharedWindow time.Duration
	// RefuseShared: a shared network gets no new permit and loses the
	// one it has, until SharedWindow passes without enough logins.
	RefuseShared bool
	// MaxPermits bounds memory: when full, the permit closest to expiry
	// makes room. It also bounds the networks whose logins are
	// remembered for shared detection (the least recently seen is
	// forgotten first).
	MaxPermits int
}

// Permit lets one address (or one IPv6 network) relay until Expires.
type Permit struct {
	Prefix  netip.Prefix  // the address (/32, /128) or IPv6 network
	Login   string        // the login that granted or last refreshed it; "" for a manual permit no login refreshed
	Service rules.Service // that login's service
	Door    string        // where the login was seen: "dovecot", "nginx", "hook"; DoorManual for a manual permit
	Granted time.Time     // first granted (a refresh keeps it)
	Expires time.Time
	Logins  int    // successful logins that granted or refreshed it
	Comment string // manual permits: why
	By      string // manual permits: who (the audit actor)
}

// Manual reports whether p was added by hand. A login from its network
// refreshes it (Login, Service, Logins) but keeps it manual, with its
// Expires, Comment and By, as long as its Expires is later than the
// login's would be; RefuseShared never removes it.
func (p Permit) Manual() bool { return p.Door == DoorManual }

// Info is a permit as listed, with what is known about its network.
type Info struct {
	Permit
	// Shared is set when SharedLogins distinct logins succeeded from the
	// network within SharedWindow.
	Shared bool
	// Accounts are the distinct logins seen succeeding from the network
	// within SharedWindow, most recent first (at most 10).
	Accounts []string
}

// Outcome says what Login did.
type Outcome uint8

const (
	Granted       Outcome = iota // a new permit
	Refreshed                    // an existing permit got a new expiry
	NotGranting                  // the login's service grants no permit
	NeverNetwork                 // the address is in Config.Never
	SharedRefused                // the network is shared and RefuseShared is on
	BadAddress                   // not a valid address
)

var outcomeNames = [...]string{
	Granted:       "granted",
	Refreshed:     "refreshed",
	NotGranting:   "not_granting",
	NeverNetwork:  "never_network",
	SharedRefused: "shared_refused",
	BadAddress:    "bad_address",
}

// String returns the outcome's name as logged: granted, refreshed,
// not_granting, never_network, shared_refused, bad_address.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// DefaultConfig returns the defaults: 30-minute permits for IMAP and POP3
// logins, none for loopback, IPv6 permits covering the /64, networks with
// 3 distinct logins within 10 minutes reported as shared (not refused),
// at most 100000 permits.
func DefaultConfig() Config {
	return Config{
		TTL:          30 * time.Minute,
		Services:     []rules.Service{rules.IMAP, rules.POP3},
		Never:        []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		IPv6Prefix:   64,
		SharedLogins: 3,
		SharedWindow: 10 * time.Minute,
		MaxPermits:   100_000,
	}
}

// Validate reports every problem in c, each prefixed with its config key
// (ttl, services, never, ipv6_prefix, shared_logins, shared_window,
// max_permits).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if c.TTL < MinTTL || c.TTL > MaxTTL {
		bad("ttl", "%v is not from %v to %v", c.TTL, MinTTL, MaxTTL)
	}
	if len(c.Services) == 0 {
		bad("services", "empty: name the services whose logins grant permits, e.g. imap and pop3")
	}
	var seen [256]bool
	for _, s := range c.Services {
		switch s {
		case rules.SMTP, rules.Submission:
			bad("services", "%s cannot grant relay permits: an authenticated sender needs none", s)
		case rules.AllServices, rules.OtherService:
			bad("services", "%s is not a service that can grant relay permits", s)
		case rules.IMAP, rules.POP3, rules.Sieve:
			if seen[s] {
				bad("services", "%s is listed twice", s)
			}
			seen[s] = true
		default:
			bad("services", "%s is not a known service", s)
		}
	}
	if len(c.Never) > MaxNever {
		bad("never", "%d networks, more than %d", len(c.Never), MaxNever)
	}
	for i, p := range c.Never {
		if !p.IsValid() {
			bad("never", "entry %d is not a valid network", i+1)
		}
	}
	if c.IPv6Prefix < 56 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "%d is not a prefix length from 56 to 128", c.IPv6Prefix)
	}
	if c.SharedLogins != 0 && (c.SharedLogins < 2 || c.SharedLogins > MaxSharedLogins) {
		bad("shared_logins", "%d is not 0 (off) or from 2 to %d", c.SharedLogins, MaxSharedLogins)
	}
	switch {
	case c.SharedWindow < 0 || c.SharedWindow > MaxSharedWindow:
		bad("shared_window", "%v is not from 0 to %v", c.SharedWindow, MaxSharedWindow)
	case c.SharedWindow == 0 && c.SharedLogins > 0:
		bad("shared_window", "must be a positive duration when shared_logins is set")
	}
	if c.MaxPermits < 1 || c.MaxPermits > MaxPermits {
		bad("max_permits", "%d is not from 1 to %d", c.MaxPermits, MaxPermits)
	}
	return errors.Join(errs...)
}

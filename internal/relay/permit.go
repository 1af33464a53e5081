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
	"net/netip"
	"time"

	"mailgate/internal/rules"
)

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
	// within SharedWindow mark it shared (0 = off).
	SharedLogins int
	SharedWindow time.Duration
	// RefuseShared: a shared network gets no new permit and loses the
	// one it has, until SharedWindow passes without enough logins.
	RefuseShared bool
	// MaxPermits bounds memory: when full, the permit closest to expiry
	// makes room.
	MaxPermits int
}

// Permit lets one address (or one IPv6 network) relay until Expires.
type Permit struct {
	Prefix  netip.Prefix  // the address (/32, /128) or IPv6 network
	Login   string        // the login that granted or last refreshed it; "" for a manual permit
	Service rules.Service // that login's service
	Door    string        // where the login was seen: "dovecot", "nginx", "hook"; "manual"
	Granted time.Time     // first granted (a refresh keeps it)
	Expires time.Time
	Logins  int    // successful logins that granted or refreshed it
	Comment string // manual permits: why
	By      string // manual permits: who (the audit actor)
}

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
	Granted   Outcome = iota // a new permit
	Refreshed                // an existing permit got a new expiry
	NotGranting              // the login's service grants no permit
	NeverNetwork             // the address is in Config.Never
	SharedRefused            // the network is shared and RefuseShared is on
	BadAddress               // not a valid address
)

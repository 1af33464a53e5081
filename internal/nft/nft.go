// Package nft keeps mailgate's firewall in the kernel: one nftables table,
// `table inet mailgate`, with the sets and the input chain of the four
// firewall modes (public, autoban, protected, private) for the mail ports.
//
// The sets mailgate owns (trusted networks, trusted address.port pairs,
// banned addresses, banned networks) are a cache of mailgate's state: Sync
// re-asserts them from a State with each element's remaining time, in one
// netlink transaction, and never deletes anything when it could not read
// what it needed — a set is never emptied because of an error. The rate
// meters and the autoban sets are filled by the kernel from the rules and
// left alone. Render prints the ruleset mailgate wants in `nft -f` syntax;
// Kernel prints what the kernel has the same way, so Diff of the two is a
// text diff.
//
// It talks netlink through github.com/google/nftables and touches nothing
// outside its table: no `flush ruleset`, no other table, no chain of
// anyone else. It is not where bans are decided (internal/abuse) nor where
// they are stored (internal/store): the daemon passes the bans and the
// trusted addresses in. Time is an argument; the only clock read is the
// kernel's, which counts element timeouts down by itself.
package nft

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Mode is a firewall mode, as in the seed's `protection.type`.
type Mode string

// The four modes.
const (
	// Public: no filtering beyond mailgate's own bans (which may be off).
	Public Mode = "public"
	// Autoban: new connections to the retrieval and submission ports are
	// rate limited per address; an address over the rate is banned by
	// the kernel for AutobanFor. The default.
	Autoban Mode = "autoban"
	// Protected: as Autoban for the retrieval ports, and the submission
	// ports are open only to trusted networks and trusted addresses
	// (those that logged in over IMAP or POP3).
	Protected Mode = "protected"
	// Private: the retrieval and submission ports are open only to
	// trusted networks and trusted addresses.
	Private Mode = "private"
)

// Valid reports whether m is one of the four modes.
func (m Mode) Valid() bool {
	switch m {
	case Public, Autoban, Protected, Private:
		return true
	}
	return false
}

// Names of the kernel objects. mailgate touches nothing else.
const (
	TableName = "mailgate" // table inet mailgate
	ChainName = "input"    // its only chain, hooked on input
)

// Limits Validate enforces and sizes of the kernel-managed sets.
const (
	// MaxAutobanFor bounds how long the kernel keeps a rate offender
	// banned.
	MaxAutobanFor = 30 * 24 * time.Hour
	// MaxRate bounds Config.Rate.
	MaxRate = 1_000_000
	// MaxTrustedNets bounds Config.TrustedNets.
	MaxTrustedNets = 10_000
	// MaxTimeout caps the timeout of an element mailgate adds: a ban or
	// a trusted address further in the future is re-asserted by a later
	// Sync before the kernel drops it.
	MaxTimeout = 365 * 24 * time.Hour
	// MeterSize is the size of each rate and autoban set. When a set is
	// full the kernel cannot add to it and the rule does not match: new
	// addresses are then neither counted nor autobanned (mailgate's own
	// bans still apply).
	MeterSize = 65535
	// MinPriority: conntrack runs at -200 on the input hook; a chain
	// before it would never see `ct state new`.
	MinPriority = -199
)

// Config configures a Firewall. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	Mode Mode
	// RetrievalPorts: IMAP 143 and 993, POP3 110 and 995, ManageSieve
	// 4190.
	RetrievalPorts []uint16
	// SubmissionPorts: 587 and 465.
	SubmissionPorts []uint16
	// SMTPPorts get mailgate's bans only: never a rate limit, never
	// closed by a mode (port 25 must stay open for incoming mail). None
	// by default.
	SMTPPorts []uint16
	// Rate new connections per address per RatePer (autoban and
	// protected modes; 10 per minute by default) are let through, in a
	// burst or spread; the next one gets the address banned by the
	// kernel for AutobanFor. IPv6 addresses are counted and banned per
	// /64.
	Rate    uint32
	RatePer time.Duration // time.Second, time.Minute, time.Hour or 24h (nft's units)
	// AutobanFor is how long the kernel bans a rate offender (1h).
	AutobanFor time.Duration
	// Bans puts mailgate's bans in the kernel (true by default; turning
	// it off leaves the banned sets empty).
	Bans bool
	// TrustedNets are always allowed, checked before any ban.
	TrustedNets []netip.Prefix
	// Priority of the input hook: -10 by default, before a
	// distribution's filter table at 0 and after conntrack at -200.
	Priority int32
}

// DefaultConfig returns the configuration of the seed: autoban mode, 10
// new connections per minute, offenders banned for an hour.
func DefaultConfig() Config {
	return Config{
		Mode:            Autoban,
		RetrievalPorts:  []uint16{110, 143, 993, 995, 4190},
		SubmissionPorts: []uint16{465, 587},
		Rate:            10,
		RatePer:         time.Minute,
		AutobanFor:      time.Hour,
		Bans:            true,
		Priority:        -10,
	}
}

// Validate checks c. Each problem names its field as the config file
// spells it (rate_per: ...); all of them are joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if !c.Mode.Valid() {
		bad("mode", "%q is not one of public, autoban, protected, private", string(c.Mode))
	}
	seen := map[uint16]string{}
	ports := func(key string, ps []uint16) {
		for _, p := range ps {
			switch other, dup := seen[p]; {
			case p == 0:
				bad(key, "port 0 is not a port")
			case dup && other == key:
				bad(key, "port %d is listed twice", p)
			case dup:
				bad(key, "port %d is also in %s", p, other)
			default:
				seen[p] = key
			}
		}
	}
	ports("retrieval_ports", c.RetrievalPorts)
	ports("submission_ports", c.SubmissionPorts)
	ports("smtp_ports", c.SMTPPorts)
	if len(seen) == 0 {
		bad("retrieval_ports", "no mail port at all (retrieval, submission and smtp ports are all empty)")
	}
	if c.Rate < 1 || c.Rate > MaxRate {
		bad("rate", "%d is not from 1 to %d", c.Rate, MaxRate)
	}
	if _, ok := limitUnit(c.RatePer); !ok {
		bad("rate_per", "%v is not 1s, 1m, 1h or 24h (nft counts per second, minute, hour or day)", c.RatePer)
	}
	if c.AutobanFor < time.Second || c.AutobanFor > MaxAutobanFor || c.AutobanFor%time.Millisecond != 0 {
		bad("autoban_for", "%v is not a whole number of milliseconds from 1s to %v", c.AutobanFor, MaxAutobanFor)
	}
	if len(c.TrustedNets) > MaxTrustedNets {
		bad("trusted_nets", "%d networks, more than %d", len(c.TrustedNets), MaxTrustedNets)
	}
	for _, p := range c.TrustedNets {
		switch {
		case !p.IsValid():
			bad("trusted_nets", "an invalid network")
		case p != p.Masked():
			bad("trusted_nets", "%v has host bits set (the network is %v)", p, p.Masked())
		}
	}
	if c.Priority < MinPriority {
		bad("priority", "%d is before conntrack (-200): it must be at least %d", c.Priority, MinPriority)
	}
	return errors.Join(errs...)
}

// Ban is a ban mailgate wants in the kernel: one address (a /32 or /128
// prefix) or a network. A zero Expires means until removed.
type Ban struct {
	Prefix  netip.Prefix
	Expires time.Time
}

// Trusted is an address that logged in over IMAP or POP3: protected mode
// opens the submission ports to it, and in every mode it is exempt from
// bans and rate limits on every mail port until Expires (zero = until
// removed).
type Trusted struct {
	Addr    netip.Addr
	Expires time.Time
}

// State is mailgate's firewall state; the kernel sets are a cache of it.
type State struct {
	Bans    []Ban
	Trusted []Trusted
	// TrustedNets join Config.TrustedNets: networks trusted at run time
	// (mailgate's global allow rules). At most MaxTrustedNets.
	TrustedNets []netip.Prefix
}

// SyncResult counts the elements a Sync changed. An element whose timeout
// was refreshed counts as removed and added.
type SyncResult struct {
	Added, Removed int
}

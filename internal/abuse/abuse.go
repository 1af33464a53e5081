// Package abuse is mailgate's brute-force engine: it counts the login
// results the doors report in sliding windows, turns thresholds into bans
// of addresses and logins, recognises stale clients (the same wrong
// password, over and over, from one login and address) and remembers the
// addresses each login succeeded from, so that an attack on a login does
// not lock its owner out.
//
// The rules, with their defaults (DefaultConfig):
//
//   - (a) 3 failures within 1 minute for one login, from at least 2
//     addresses, ban the login for 10 minutes;
//   - (b) 5 failures within 1 minute from one address ban the address for
//     5 minutes;
//   - off by default: password spraying (many logins failing from one
//     address), progressive ban lengths, and widening IPv6 bans from /64
//     to /56 and /48.
//
// IPv6 clients are counted and banned per /64 (Config.IPv6Prefix). A
// failure that repeats a password hash already seen failing for the same
// (login, address) counts once. Failures while the address or the login
// is banned are not counted, so attempts never extend a ban.
//
// It is pure: time is an argument everywhere, there is no I/O, no
// goroutine and no persistence. The caller (the policy engine and the
// daemon) stores the bans Record returns, reloads them with AddBan at
// start, calls Expire periodically, and decides what a Status means for
// a verdict (refuse, tarpit, let a known-good address through). Trusted
// addresses and an account's own allow rules are the caller's business
// too: it does not report their results.
//
// A Tracker is safe for concurrent use. Memory is bounded: at most
// Config.MaxKeys keys of each kind (address, login, login and address)
// and Config.MaxKnownGood known-good entries, the least recently updated
// forgotten first.
package abuse

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config holds the thresholds. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	IPv6Prefix int // group IPv6 clients per /N; default 64

	// Rule (a): LoginFailures failures within LoginWindow for one login
	// from at least LoginMinAddrs distinct addresses (grouped per
	// IPv6Prefix) ban the login for LoginBan. Attempts on a banned login
	// are tarpitted LoginTarpit and then refused (the caller's part);
	// attempts during the ban never extend it.
	LoginFailures int
	LoginWindow   time.Duration
	LoginMinAddrs int
	LoginBan      time.Duration
	LoginTarpit   time.Duration

	// Rule (b): AddrFailures failures within AddrWindow from one address
	// (IPv6: its /IPv6Prefix) ban the address for AddrBan.
	AddrFailures int
	AddrWindow   time.Duration
	AddrBan      time.Duration

	// Slow windows, each off when its count is 0: AddrHourFailures fresh
	// failures from one address within an hour ban it for AddrHourBan,
	// AddrDayFailures within a day for AddrDayBan; likewise for a login,
	// counting only failures from addresses that are not known good for
	// it. Failures of a known-good (login, address) count toward no slow
	// window. The hour (HourWindow, an hour by default) is counted in
	// quarters (the window is 45 to 60 minutes long), the day (DayWindow)
	// in sixths (20 to 24 hours); see window.
	HourWindow        time.Duration
	DayWindow         time.Duration
	AddrHourFailures  int
	AddrHourBan       time.Duration
	AddrDayFailures   int
	AddrDayBan        time.Duration
	LoginHourFailures int
	LoginHourBan      time.Duration
	LoginDayFailures  int
	LoginDayBan       time.Duration

	// Password spraying, off when SprayLogins == 0: SprayLogins distinct
	// logins failing from one address within SprayWindow ban the address
	// for SprayBan.
	SprayLogins int
	SprayWindow time.Duration
	SprayBan    time.Duration

	// Progressive bans of addresses, off when RepeatFactor <= 1: an
	// address banned again within RepeatMemory of the end of its last
	// automatic ban gets the previous length × RepeatFactor, capped at
	// RepeatMax (and never less than the rule's own length).
	RepeatFactor float64
	// Progressive bans of logins, off when LoginRepeatFactor <= 1: the
	// same for logins, and a login on probation (its last automatic ban
	// ended within RepeatMemory) is banned again by a single fresh
	// failure from an address that is not known good for it: an attack
	// that waited out the ban gets one guess, not LoginFailures.
	LoginRepeatFactor float64
	RepeatMemory      time.Duration
	RepeatMax         time.Duration

	// IPv6 widening, off when WidenAfter == 0: when WidenAfter distinct
	// /IPv6Prefix networks inside one /56 are banned at once, the /56 is
	// banned too (and likewise /56 bans inside a /48 → the /48), until the
	// latest end among them.
	WidenAfter int

	// Stale clients: a failure whose (login, address, pwhash) already
	// failed within StaleWindow counts once toward rules (a), (b) and
	// spraying; once the same triple has failed StaleRepeats times,
	// further attempts with that pwhash are stale: tarpitted StaleTarpit
	// (the caller's part) and never banned.
	StaleRepeats int
	StaleWindow  time.Duration
	StaleTarpit  time.Duration

	// Under attack (surge.go), off unless SurgeEnabled: when the last 10
	// minutes hold at least SurgeMin fresh failures across the server and
	// SurgeFactor times the usual 10 minutes of the day before, Check
	// reports UnderAttack until SurgeHold after they fell below.
	SurgeEnabled bool
	SurgeFactor  float64
	SurgeMin     int
	SurgeHold    time.Duration
	// TrackCountries keeps each login's usual countries (UsualCountry,
	// NewCountry) also while SurgeEnabled is off: for the new-country
	// notification.
	TrackCountries bool

	// Lockout-proof accounts: an address (IPv6: its /IPv6Prefix) from
	// which a login succeeded within KnownGoodFor is known good for that
	// login. 0 turns it off.
	KnownGoodFor time.Duration

	// Memory bound: at most MaxKeys tracked keys per kind (address,
	// login, (login, address)) and MaxKnownGood known-good entries.
	MaxKeys      int
	MaxKnownGood int
}

// DefaultConfig returns the seed's two rules, progressive bans of
// addresses (a first ban keeps the rule's length), and spraying,
// progressive bans of logins and widening off.
func DefaultConfig() Config {
	return Config{
		IPv6Prefix:        64,
		LoginFailures:     3,
		LoginWindow:       time.Minute,
		LoginMinAddrs:     2,
		LoginBan:          10 * time.Minute,
		LoginTarpit:       60 * time.Second,
		AddrFailures:      5,
		AddrWindow:        time.Minute,
		AddrBan:           5 * time.Minute,
		HourWindow:        time.Hour,
		DayWindow:         24 * time.Hour,
		AddrHourFailures:  30,
		AddrHourBan:       time.Hour,
		AddrDayFailures:   100,
		AddrDayBan:        24 * time.Hour,
		LoginHourFailures: 20,
		LoginHourBan:      time.Hour,
		LoginDayFailures:  50,
		LoginDayBan:       24 * time.Hour,
		SprayLogins:       0,
		SprayWindow:       10 * time.Minute,
		SprayBan:          time.Hour,
		RepeatFactor:      2,
		RepeatMemory:      24 * time.Hour,
		RepeatMax:         24 * time.Hour,
		WidenAfter:        0,
		StaleRepeats:      2,
		StaleWindow:       time.Hour,
		StaleTarpit:       5 * time.Second,
		SurgeFactor:       10,
		SurgeMin:          30,
		SurgeHold:         30 * time.Minute,
		KnownGoodFor:      30 * 24 * time.Hour,
		MaxKeys:           1_000_000,
		MaxKnownGood:      1_000_000,
	}
}

// MaxThreshold bounds the failure and distinct-key thresholds: each is
// the size of a fixed ring kept per tracked key.
const MaxThreshold = 100

// MaxSlowThreshold bounds the slow windows' counts: each bucket of a
// window counts up to 255.
const MaxSlowThreshold = 250

// maxTable bounds MaxKeys and MaxKnownGood (slots are int32).
const maxTable = 1 << 30

// Validate checks c. Each problem names its field as the TOML config
// spells it (login_failures: ...); all of them are joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	count := func(key string, v, min int) {
		if v < min || v > MaxThreshold {
			bad(key, "%d is not from %d to %d", v, min, MaxThreshold)
		}
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "%v is not a positive duration", d)
		}
	}
	notNegative := func(key string, d time.Duration) {
		if d < 0 {
			bad(key, "%v is negative", d)
		}
	}
	if c.IPv6Prefix < 32 || c.IPv6Prefix > 128 {
		bad("ipv6_prefix", "%d is not a prefix length from 32 to 128", c.IPv6Prefix)
	}
	count("login_failures", c.LoginFailures, 1)
	count("login_min_addrs", c.LoginMinAddrs, 1)
	count("addr_failures", c.AddrFailures, 1)
	count("spray_logins", c.SprayLogins, 0)
	slow := func(key string, v int, ban time.Duration) {
		if v < 0 || v > MaxSlowThreshold {
			bad(key+"_failures", "%d is not 0 (off) or from 1 to %d", v, MaxSlowThreshold)
		}
		if v > 0 && ban <= 0 {
			bad(key+"_ban", "%v is not a positive duration", ban)
		}
	}
	if c.HourWindow < 4*time.Second || c.HourWindow > 7*24*time.Hour {
		bad("hour_window", "%v is not from 4s to 168h", c.HourWindow)
	}
	if c.DayWindow < c.HourWindow || c.DayWindow > 30*24*time.Hour {
		bad("day_window", "%v is not from hour_window (%v) to 720h", c.DayWindow, c.HourWindow)
	}
	slow("addr_hour", c.AddrHourFailures, c.AddrHourBan)
	slow("addr_day", c.AddrDayFailures, c.AddrDayBan)
	slow("login_hour", c.LoginHourFailures, c.LoginHourBan)
	slow("login_day", c.LoginDayFailures, c.LoginDayBan)
	count("stale_repeats", c.StaleRepeats, 1)
	if c.WidenAfter != 0 && (c.WidenAfter < 2 || c.WidenAfter > 256) {
		bad("widen_after", "%d is not 0 (off) or from 2 to 256", c.WidenAfter)
	}
	if c.RepeatFactor != 0 && (c.RepeatFactor < 1 || c.RepeatFactor > 100) {
		bad("repeat_factor", "%v is not 0 (off) or a factor from 1 to 100", c.RepeatFactor)
	}
	if c.LoginRepeatFactor != 0 && (c.LoginRepeatFactor < 1 || c.LoginRepeatFactor > 100) {
		bad("login_repeat_factor", "%v is not 0 (off) or a factor from 1 to 100", c.LoginRepeatFactor)
	}
	positive("login_window", c.LoginWindow)
	positive("login_ban", c.LoginBan)
	notNegative("login_tarpit", c.LoginTarpit)
	positive("addr_window", c.AddrWindow)
	positive("addr_ban", c.AddrBan)
	positive("spray_window", c.SprayWindow)
	positive("spray_ban", c.SprayBan)
	if c.SurgeFactor < 1 || c.SurgeFactor > 1000 {
		bad("under_attack_factor", "%v is not a factor from 1 to 1000", c.SurgeFactor)
	}
	if c.SurgeMin < 1 || c.SurgeMin > 1_000_000 {
		bad("under_attack_min", "%d is not from 1 to 1000000", c.SurgeMin)
	}
	positive("under_attack_hold", c.SurgeHold)
	positive("repeat_memory", c.RepeatMemory)
	positive("repeat_max", c.RepeatMax)
	positive("stale_window", c.StaleWindow)
	notNegative("stale_tarpit", c.StaleTarpit)
	notNegative("known_good_for", c.KnownGoodFor)
	if c.MaxKeys < 1 || c.MaxKeys > maxTable {
		bad("max_keys", "%d is not from 1 to %d", c.MaxKeys, maxTable)
	}
	if c.MaxKnownGood < 1 || c.MaxKnownGood > maxTable {
		bad("max_known_good", "%d is not from 1 to %d", c.MaxKnownGood, maxTable)
	}
	return errors.Join(errs...)
}

func (c *Config) spray() bool { return c.SprayLogins > 0 }

// factor is the progressive factor for bans of kind k; <= 1 means off.
func (c *Config) factor(k Kind) float64 {
	if k == BanLogin {
		return c.LoginRepeatFactor
	}
	return c.RepeatFactor
}

func (c *Config) progressive(k Kind) bool { return c.factor(k) > 1 }

// Kind says what a ban blocks.
type Kind uint8

const (
	BanAddr  Kind = iota + 1 // an address or network
	BanLogin                 // a login
)

func (k Kind) String() string {
	switch k {
	case BanAddr:
		return "address"
	case BanLogin:
		return "login"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Ban reasons.
const (
	ReasonLoginAttack  = "login_attack"  // rule (a)
	ReasonAddrFailures = "addr_failures" // rule (b)
	ReasonSpray        = "spray"         // password spraying
	ReasonAddrHour     = "addr_hour"     // an address's failures within an hour
	ReasonAddrDay      = "addr_day"      // an address's failures within a day
	ReasonLoginHour    = "login_hour"    // a login's failures from strangers within an hour
	ReasonLoginDay     = "login_day"     // a login's failures from strangers within a day
	ReasonWidened      = "widened"       // IPv6 widening
	ReasonManual       = "manual"        // mailgate ban add
)

// CreatedByMailgate is the CreatedBy of automatic bans.
const CreatedByMailgate = "mailgate"

// MaxCommentLen bounds a ban's comment; MaxLoginLen a banned login.
const (
	MaxCommentLen = 1024
	MaxLoginLen   = 320
)

// Ban is an active (or just expired) ban.
type Ban struct {
	ID        int64 // assigned by the Tracker (monotonic; SetNextID seeds it from the store)
	Kind      Kind
	Prefix    netip.Prefix // BanAddr: the address (/32, /128) or network (/64, /56, /48, any CIDR for manual bans)
	Login     string       // BanLogin: the normalized login
	Reason    string       // ReasonLoginAttack, ReasonAddrFailures, ReasonSpray, ReasonWidened or ReasonManual
	Created   time.Time
	Expires   time.Time // zero only for a manual ban without end
	Comment   string
	CreatedBy string // CreatedByMailgate for automatic bans; the actor for manual ones
}

// Target is the banned address, network or login, for messages.
func (b *Ban) Target() string {
	if b.Kind == BanLogin {
		return b.Login
	}
	return b.Prefix.String()
}

// Event is one login result a door reported.
type Event struct {
	Login   string     // normalized (rules.NormalizeLogin); may be ""
	Addr    netip.Addr // the client; IPv4-mapped IPv6 is taken as IPv4
	PwHash  string     // Dovecot's truncated hex pwhash, or any short password hash a door computes; may be ""
	Success bool
	Country string // the client's country (ISO 3166-1 alpha-2), if known: a success makes it a usual country of the login
}

// Status is what Check knows about an attempt.
type Status struct {
	AddrBan     BanRef // Found=false when none
	LoginBan    BanRef
	KnownGood   bool // (login, address) had a success within KnownGoodFor
	Stale       bool // (login, address, pwhash) is a stale client
	UnderAttack bool // the server is under attack (Surge)
}

// BanRef names the ban behind a Status.
type BanRef struct {
	Found   bool
	ID      int64
	Prefix  netip.Prefix // address bans
	Expires time.Time    // zero: no end
	Reason  string
}

// KnownGood is a login's known-good address (IPv6: its network).
type KnownGood struct {
	Login  string
	Prefix netip.Prefix
	Last   time.Time // the last success
}

// Counters are the window counts behind a verdict, for explanations.
// Counts at a rule's threshold mean "at least": each window keeps only as
// many entries as its rule needs.
type Counters struct {
	AddrFailures  int `json:"addr_failures"`  // distinct-counted failures from the address within AddrWindow
	LoginFailures int `json:"login_failures"` // distinct-counted failures for the login within LoginWindow
	LoginAddrs    int `json:"login_addrs"`    // distinct addresses among them (up to max(LoginMinAddrs, 4))
	PairFailures  int `json:"pair_failures"`  // failures of (login, address) still remembered (each password up to StaleWindow after its last failure)
	PairHashes    int `json:"pair_hashes"`    // distinct password hashes among them
	AddrLogins    int `json:"addr_logins"`    // distinct logins failing from the address within SprayWindow; 0 when spraying is off
	AddrHour      int `json:"addr_hour"`      // fresh failures from the address within the hour window (0 when off)
	AddrDay       int `json:"addr_day"`       // ... within the day window
	LoginHour     int `json:"login_hour"`     // fresh failures of the login from strangers within the hour window
	LoginDay      int `json:"login_day"`      // ... within the day window
}

// Stats sizes the tracker's state, for metrics and listings.
type Stats struct {
	Addrs      int // tracked addresses (IPv6: networks)
	Logins     int // tracked logins
	Pairs      int // tracked (login, address) pairs
	KnownGood  int // known-good (login, address) entries
	AddrBans   int // address bans held (expired ones until Expire runs)
	LoginBans  int // login bans held
	Remembered int // past automatic bans remembered for progressive lengths
	Stale      int // stale (login, address, password) triples
}

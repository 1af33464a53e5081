// Package dnsbld serves mailgate's current address bans as a DNSBL zone
// (RFC 5782), so that Postfix postscreen, rspamd or another mailgate can
// ask it: a banned 192.0.2.7 is listed as
//
//	7.2.0.192.bans.mailgate.local. A   127.0.0.2
//	7.2.0.192.bans.mailgate.local. TXT "mailgate: address ban (addr_failures) of 192.0.2.7/32 until 2026-12-05T20:00:00Z"
//
// and an IPv6 address by its 32 nibbles, least significant first. An
// address inside a banned network is listed (with the network in the
// TXT). Unlisted names in the zone get NXDOMAIN with the zone's SOA (for
// negative caching); the apex has an SOA and an NS; names outside the
// zone, zone transfers and clients outside the allow list get REFUSED.
// There is no recursion.
//
// It is not a DNS server for anything else, and not the DNSBL client
// (mailgate asking other lists). It never lists a login: a ban on a login
// is not an address listing, and the TXT names no account, no comment and
// no actor. What it answers is a Source's: the daemon asks the brute-force
// tracker (a read-locked table lookup, no copy of the bans) and a Table of
// the kernel's autobans refreshed from the firewall.
//
// A DNS listener cannot take a key: the allow list of client networks is
// its authentication. Answers are small (one A or one TXT, under 512
// bytes), UDP answers are truncated to the client's size, and each UDP
// client (IPv6: its /64) is rate limited, so the listener is no
// amplifier even when opened by mistake.
package dnsbld

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Listing is why an address is listed.
type Listing struct {
	Prefix  netip.Prefix // the banned address or network that covers the asked address
	Source  Source       // who banned it
	Reason  string       // the ban's reason code (abuse.Reason*); "" for a kernel autoban
	Expires time.Time    // zero: no end
}

// Source says who made a ban; each has its own A record.
type Source uint8

const (
	// Mailgate is a ban of mailgate's brute-force tracker, automatic or
	// made by hand ('mailgate ban add'): 127.0.0.2.
	Mailgate Source = iota + 1
	// Autoban is an address the kernel banned for going over the
	// firewall's connection rate: 127.0.0.3.
	Autoban
	// TestPoint is RFC 5782's test entry 127.0.0.2, listed by every
	// DNSBL so that clients can check the zone works (another mailgate's
	// [dnsbl] health check asks it): 127.0.0.2, and a TXT saying so.
	TestPoint
)

// testPoint is the address every DNSBL lists (RFC 5782 section 5).
var testPoint = netip.AddrFrom4([4]byte{127, 0, 0, 2})

// code returns the A record of a listing by s.
func (s Source) code() [4]byte {
	if s == Autoban {
		return [4]byte{127, 0, 0, 3}
	}
	return [4]byte{127, 0, 0, 2}
}

// Lookup answers whether a is listed at now, and why. It must be safe
// for concurrent use and should not allocate: it runs once per query.
type Lookup interface {
	Listed(a netip.Addr, now time.Time) (Listing, bool)
}

// Lookups asks each Lookup in turn; the first listing wins.
type Lookups []Lookup

// Listed implements Lookup.
func (ls Lookups) Listed(a netip.Addr, now time.Time) (Listing, bool) {
	for _, l := range ls {
		if l == nil {
			continue
		}
		if li, ok := l.Listed(a, now); ok {
			return li, true
		}
	}
	return Listing{}, false
}

// Config is what a reload may change.
type Config struct {
	Zone  string         // the zone's name, e.g. "bans.mailgate.local" (the final dot is optional)
	TTL   time.Duration  // of every answer and the SOA's negative-caching TTL, 1s to 1h
	Allow []netip.Prefix // the client networks that get answers; others get REFUSED
	Rate  int            // UDP queries per second per client (IPv6: per /64), 0 = no limit
}

// Limits of Config.Validate.
const (
	MinTTL  = time.Second
	MaxTTL  = time.Hour
	MaxRate = 1_000_000
)

// Validate checks c, naming the problem.
func (c *Config) Validate() error {
	var errs []error
	if _, err := zoneName(c.Zone); err != nil {
		errs = append(errs, err)
	}
	if c.TTL < MinTTL || c.TTL > MaxTTL || c.TTL%time.Second != 0 {
		errs = append(errs, fmt.Errorf("ttl %v is not a whole number of seconds from %v to %v", c.TTL, MinTTL, MaxTTL))
	}
	if c.Rate < 0 || c.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("rate %d is out of range (want 0 to %d)", c.Rate, MaxRate))
	}
	for _, p := range c.Allow {
		if !p.IsValid() {
			errs = append(errs, errors.New("an allowed network is invalid"))
		}
	}
	return errors.Join(errs...)
}

// zoneName returns the zone's canonical name: lower case, fully
// qualified. The root and single-label names are refused (a DNSBL zone
// must not shadow a top-level domain).
func zoneName(z string) (string, error) {
	if z == "" {
		return "", errors.New("zone is empty")
	}
	fq := dns.CanonicalName(z)
	if _, ok := dns.IsDomainName(fq); !ok || fq == "." || strings.Contains(fq, "..") {
		return "", fmt.Errorf("zone %q is not a domain name", z)
	}
	if dns.CountLabel(fq) < 2 {
		return "", fmt.Errorf("zone %q has a single label; use a name such as bans.mailgate.local", z)
	}
	for _, l := range dns.SplitDomainName(fq) {
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("zone %q: label %q has a character other than a-z, 0-9, '-' and '_'", z, l)
			}
		}
	}
	// The longest query name is 32 nibbles (64 bytes) and the zone.
	if len(fq)+64 > 255 {
		return "", fmt.Errorf("zone %q is too long to hold IPv6 names (at most %d bytes)", z, 255-64)
	}
	return fq, nil
}

// settings is a Config ready to answer from.
type settings struct {
	zone  string // canonical, fully qualified
	ttl   uint32 // seconds
	allow []netip.Prefix
	rate  int
	soa   *dns.SOA
	ns    *dns.NS
}

func newSettings(c Config) (*settings, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	zone, _ := zoneName(c.Zone)
	ttl := uint32(c.TTL / time.Second)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: zone, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	return &settings{
		zone: zone, ttl: ttl, allow: append([]netip.Prefix(nil), c.Allow...), rate: c.Rate,
		soa: &dns.SOA{Hdr: hdr(dns.TypeSOA), Ns: "localhost.", Mbox: "hostmaster." + zone,
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl},
		ns: &dns.NS{Hdr: hdr(dns.TypeNS), Ns: "localhost."},
	}, nil
}

func (s *settings) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Outcome is what a query got, for the metrics.
type Outcome uint8

const (
	Listed      Outcome = iota // a listed address
	NotListed                  // NXDOMAIN (or NODATA) in the zone
	Apex                       // the zone's SOA or NS
	Refused                    // outside the zone, a transfer, or a client not allowed
	Malformed                  // FORMERR: not one question of class IN
	RateLimited                // dropped: the UDP client asks too fast
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"listed", "not_listed", "apex", "refused", "malformed", "rate_limited"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Outcomes returns every Outcome, for metrics labels.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

// Stats are the counts since start, by outcome.
type Stats [numOutcomes]uint64

// Get returns the count of o.
func (s Stats) Get(o Outcome) uint64 { return s[o] }

// Total is the count of every query.
func (s Stats) Total() uint64 {
	var n uint64
	for _, v := range s {
		n += v
	}
	return n
}

// Handler answers DNSBL queries; see the package doc. Its zero value is
// not usable: call NewHandler.
type Handler struct {
	lookup Lookup
	now    func() time.Time
	count  func(Outcome) // extra counting (metrics); may be nil

	set    atomic.Pointer[settings]
	limit  *limiter
	counts [numOutcomes]atomic.Uint64
}

// NewHandler returns a handler answering from lookup; count, when not
// nil, is called once per query with its outcome.
func NewHandler(c Config, lookup Lookup, count func(Outcome)) (*Handler, error) {
	s, err := newSettings(c)
	if err != nil {
		return nil, err
	}
	h := &Handler{lookup: lookup, now: time.Now, count: count, limit: newLimiter()}
	h.set.Store(s)
	return h, nil
}

// SetConfig changes the zone, TTL, allow list and rate of a running
// handler; an invalid c changes nothing.
func (h *Handler) SetConfig(c Config) error {
	s, err := newSettings(c)
	if err != nil {
		return err
	}
	h.set.Store(s)
	return nil
}

// Zone returns the zone's canonical name.
func (h *Handler) Zone() string { return h.set.Load().zone }

// Stats returns the counts since start.
func (h *Handler) Stats() Stats {
	var s Stats
	for i := range s {
		s[i] = h.counts[i].Load()
	}
	return s
}

func (h *Handler) note(o Outcome) {
	h.counts[o].Add(1)
	if h.count != nil {
		h.count(o)
	}
}

// ServeDNS implements dns.Handler: the I/O around Answer, with the rate
// limit of UDP clients.
func (h *Handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	client := addrOf(w.RemoteAddr())
	udp := w.LocalAddr() != nil && w.LocalAddr().Network() == "udp"
	now := h.now()
	s := h.set.Load()
	if udp && !h.limit.allow(client, s.rate, now) {
		// Dropped, not answered: an answer to a forged source is what
		// an amplifier sends.
		h.note(RateLimited)
		return
	}
	resp, o := h.answer(s, req, client, udp, now)
	h.note(o)
	if resp != nil {
		_ = w.WriteMsg(resp) // a client gone away is no error of ours
	}
}

// Answer returns the reply to req from client at now (udp: the reply is
// truncated to what the client can take over UDP), and its outcome.
func (h *Handler) Answer(req *dns.Msg, client netip.Addr, udp bool, now time.Time) (*dns.Msg, Outcome) {
	return h.answer(h.set.Load(), req, client, udp, now)
}

// maxUDP is the largest UDP answer sent to an EDNS client (the DNS flag
// day 2020 size); without EDNS it is 512 bytes.
const maxUDP = 1232

func (h *Handler) answer(s *settings, req *dns.Msg, client netip.Addr, udp bool, now time.Time) (*dns.Msg, Outcome) {
	m := new(dns.Msg)
	if !s.allowed(client) {
		m.SetRcode(req, dns.RcodeRefused)
		m.Question = nil // tell a stranger nothing, not even the name back
		return finish(m, req, udp), Refused
	}
	if req.Response || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		m.Question = nil
		return finish(m, req, udp), Malformed
	}
	if len(req.Question) != 1 || len(req.Answer) > 0 || len(req.Ns) > 0 {
		m.SetRcode(req, dns.RcodeFormatError)
		m.Question = nil
		return finish(m, req, udp), Malformed
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.SetRcode(req, dns.RcodeRefused)
		return finish(m, req, udp), Refused
	}
	name := dns.CanonicalName(q.Name)
	if !dns.IsSubDomain(s.zone, name) {
		m.SetRcode(req, dns.RcodeRefused)
		return finish(m, req, udp), Refused
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		// No listing of every ban.
		m.SetRcode(req, dns.RcodeRefused)
		return finish(m, req, udp), Refused
	}
	m.SetReply(req)
	m.Authoritative = true
	m.Question[0].Name = q.Name // the client's case (0x20)
	if name == s.zone {
		switch q.Qtype {
		case dns.TypeSOA, dns.TypeANY:
			m.Answer = append(m.Answer, s.soaAt(now))
		case dns.TypeNS:
			m.Answer = append(m.Answer, s.ns)
		default:
			m.Ns = append(m.Ns, s.soaAt(now))
		}
		return finish(m, req, udp), Apex
	}
	a, ok := ParseName(name[:len(name)-len(s.zone)])
	var li Listing
	if ok {
		li, ok = h.lookup.Listed(a, now)
		if !ok && a == testPoint {
			li, ok = Listing{Prefix: netip.PrefixFrom(testPoint, 32), Source: TestPoint}, true
		}
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.soaAt(now))
		return finish(m, req, udp), NotListed
	}
	ttl := s.ttl
	if !li.Expires.IsZero() {
		// Not cached past the ban's end.
		left := (li.Expires.Sub(now) + time.Second - 1) / time.Second
		ttl = uint32(max(1, min(int64(ttl), int64(left))))
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
	switch q.Qtype {
	case dns.TypeA, dns.TypeANY:
		// ANY gets the A alone (RFC 8482: no large answers to ANY).
		hdr.Rrtype = dns.TypeA
		c := li.Source.code()
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: c[:]})
	case dns.TypeTXT:
		hdr.Rrtype = dns.TypeTXT
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{li.Text()}})
	default:
		m.Ns = append(m.Ns, s.soaAt(now)) // NODATA
	}
	return finish(m, req, udp), Listed
}

// soaAt returns the SOA; its serial is the time of the answer, so that a
// secondary never holds an old copy (there is none: no transfers).
func (s *settings) soaAt(now time.Time) *dns.SOA {
	soa := *s.soa
	soa.Serial = uint32(now.Unix())
	return &soa
}

// finish adds an OPT record when the query had one, and truncates a UDP
// answer to what the client can take.
func finish(m, req *dns.Msg, udp bool) *dns.Msg {
	m.RecursionAvailable = false
	m.Compress = true
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(dns.MinMsgSize, min(int(opt.UDPSize()), maxUDP))
		m.SetEdns0(maxUDP, false)
	}
	if udp {
		m.Truncate(size)
	}
	return m
}

// Text is the TXT of a listing: the kind of ban, its reason, the network
// and its end. It names no login, comment or actor.
func (l Listing) Text() string {
	var b strings.Builder
	if l.Source == TestPoint {
		return "mailgate: test point (RFC 5782), not a ban"
	}
	b.WriteString("mailgate: ")
	if l.Source == Autoban {
		b.WriteString("firewall autoban (connection rate)")
	} else {
		b.WriteString("address ban")
		if l.Reason != "" && safeReason(l.Reason) {
			b.WriteString(" (" + l.Reason + ")")
		}
	}
	b.WriteString(" of " + l.Prefix.String())
	if l.Expires.IsZero() {
		b.WriteString(" until lifted")
	} else {
		b.WriteString(" until " + l.Expires.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// safeReason reports whether r is a short reason code (never free text).
func safeReason(r string) bool {
	if len(r) > 32 {
		return false
	}
	for _, c := range []byte(r) {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

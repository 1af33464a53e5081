// Package dnsbl asks DNS blocklists about a client's address before a
// login is decided: zones in Postfix postscreen's syntax, asked in
// parallel through one resolver, their answers weighed into a score and
// cached.
//
// It is the client only: it does not decide (internal/policy compares the
// score with the threshold), does not know which attempts are exempt (the
// caller asks policy.Engine.NeedsDNSBL first) and does not serve a zone
// (internal/dnsbld does).
//
// Answers (RFC 5782 §2.1, §2.3): an A record in 127.0.0.0/8 that passes
// the zone's filter is a listing; NXDOMAIN or no A record is not. A
// 127.255.255.x answer is the list refusing the query (Spamhaus: a public
// resolver, or over the free limit) and an answer outside 127.0.0.0/8 is
// a resolver rewriting NXDOMAIN: both are errors, never listings. Errors,
// SERVFAIL and timeouts fail open for that zone.
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"mailgate/internal/throttle"
)

// Defaults.
const (
	DefaultTimeout   = time.Second
	DefaultBudget    = time.Second
	DefaultMissTTL   = 5 * time.Minute
	DefaultCacheSize = 100_000
	// MinListTTL and MaxListTTL clamp how long a listing is cached.
	MinListTTL = time.Minute
	MaxListTTL = time.Hour
	// FailTTL is how long a zone that failed (timeout, SERVFAIL, a
	// refusal code) is not asked again for that address, so that a dead
	// zone does not hold every login for the timeout (at most MissTTL).
	FailTTL = time.Minute
)

// Config configures a Checker.
type Config struct {
	Zones []Zone
	// Resolver is the DNS server asked, "host:port" or "host" (port 53).
	// "" means the first nameserver of /etc/resolv.conf.
	Resolver string
	Timeout  time.Duration // per zone; 0: DefaultTimeout
	Budget   time.Duration // for all zones together; 0: DefaultBudget
	MissTTL  time.Duration // 0: DefaultMissTTL
	// CacheSize bounds the cached addresses; 0: DefaultCacheSize.
	CacheSize int
}

// ResolvConf is where the system's resolver is read from.
const ResolvConf = "/etc/resolv.conf"

// resolver turns Config.Resolver into host:port.
func resolver(s string) (string, error) {
	if s == "" {
		cc, err := dns.ClientConfigFromFile(ResolvConf)
		if err != nil {
			return "", fmt.Errorf("resolver: reading %s: %w", ResolvConf, err)
		}
		if len(cc.Servers) == 0 {
			return "", fmt.Errorf("resolver: %s names no nameserver", ResolvConf)
		}
		s = cc.Servers[0]
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.AddrPortFrom(a, 53).String(), nil
		}
		return net.JoinHostPort(s, cc.Port), nil
	}
	return ParseResolver(s)
}

// ParseResolver checks a resolver address: an IP address with an optional
// port ("127.0.0.1", "127.0.0.1:5353", "[::1]:53").
func ParseResolver(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("resolver %q: want an IP address, optionally with a port (127.0.0.1, 127.0.0.1:5353, [::1]:53)", s)
	}
	return ap.String(), nil
}

// Status is a zone's answer for one address.
type Status uint8

const (
	NotListed Status = iota // NXDOMAIN, no A record, or none passing the filter
	Listed                  // an A record passing the filter
	Failed                  // timeout, SERVFAIL, refusal code: counts as not listed
)

func (s Status) String() string {
	switch s {
	case Listed:
		return "listed"
	case Failed:
		return "error"
	}
	return "not listed"
}

// Answer is one zone's answer for one address.
type Answer struct {
	Zone   string        `json:"zone"`
	Weight int           `json:"weight"`
	Status Status        `json:"-"`
	Result string        `json:"result"` // Status.String()
	Codes  []netip.Addr  `json:"codes,omitempty"`
	TTL    time.Duration `json:"-"`
	TTLSec int64         `json:"ttl,omitempty"`
	Err    string        `json:"error,omitempty"`
}

// Result is every zone's answer for one address and the score.
type Result struct {
	OK      bool     // false: no answer in time (the caller's context ended)
	Score   int      // sum of the weights of the listing zones
	Listed  string   // the listing zones' names, comma-separated
	Answers []Answer // one per zone, in the config's order; read only
}

// Exchanger sends one DNS query; the default speaks UDP with a TCP retry
// for a truncated answer. Tests may replace it.
type Exchanger interface {
	Exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error)
}

type netExchanger struct{}

func (netExchanger) Exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	c := dns.Client{Net: "udp", UDPSize: dns.DefaultMsgSize}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, server)
	}
	return r, err
}

// Checker asks the zones and caches their answers. It is safe for
// concurrent use; Reconfigure swaps its settings while it runs.
type Checker struct {
	log  *slog.Logger
	ex   Exchanger
	warn throttle.Log

	set atomic.Pointer[settings]

	mu       sync.Mutex
	cache    *cache
	inflight map[netip.Addr]*call

	stats Stats

	hmu    sync.Mutex
	health []ZoneHealth
	hAt    time.Time
}

// settings are a Checker's run-time settings; never modified once stored.
type settings struct {
	zones          []Zone
	server         string
	timeout        time.Duration
	budget         time.Duration
	missTTL        time.Duration
	cacheSize      int
	zonesKey       string
	resolverConfig string
}

// Stats are a Checker's counters since the start.
type Stats struct {
	CacheHits   atomic.Uint64
	CacheMisses atomic.Uint64
	Shared      atomic.Uint64 // lookups that waited for another's query
	Queries     atomic.Uint64
	Listed      atomic.Uint64 // zone answers: listed
	Failed      atomic.Uint64 // zone answers: error (timeout, SERVFAIL, refusal code)
	Refused     atomic.Uint64 // zone answers: 127.255.255.x (counted in Failed too)
}

type call struct {
	done chan struct{}
	res  Result
}

// New returns a checker; ex nil means the network.
func New(cfg Config, ex Exchanger, log *slog.Logger) (*Checker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ex == nil {
		ex = netExchanger{}
	}
	c := &Checker{log: log, ex: ex, inflight: map[netip.Addr]*call{}}
	if err := c.Reconfigure(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// Reconfigure applies new settings. The cache is emptied when the zones
// or the resolver change (old answers would be scored wrong).
func (c *Checker) Reconfigure(cfg Config) error {
	s, err := newSettings(cfg)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.set.Load()
	if old == nil || old.zonesKey != s.zonesKey || old.server != s.server || old.cacheSize != s.cacheSize {
		c.cache = newCache(s.cacheSize)
	}
	c.set.Store(s)
	if old != nil && old.zonesKey != s.zonesKey {
		c.hmu.Lock()
		c.health, c.hAt = nil, time.Time{}
		c.hmu.Unlock()
	}
	return nil
}

func newSettings(cfg Config) (*settings, error) {
	if len(cfg.Zones) == 0 {
		return nil, errors.New("no zones")
	}
	server, err := resolver(cfg.Resolver)
	if err != nil {
		return nil, err
	}
	s := &settings{zones: slices.Clone(cfg.Zones), server: server, timeout: cfg.Timeout, budget: cfg.Budget,
		missTTL: cfg.MissTTL, cacheSize: cfg.CacheSize, resolverConfig: cfg.Resolver}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.budget <= 0 {
		s.budget = DefaultBudget
	}
	if s.missTTL <= 0 {
		s.missTTL = DefaultMissTTL
	}
	if s.cacheSize <= 0 {
		s.cacheSize = DefaultCacheSize
	}
	var k []string
	for i := range s.zones {
		k = append(k, s.zones[i].String())
	}
	s.zonesKey = strings.Join(k, " ")
	return s, nil
}

// Zones returns the configured zones.
func (c *Checker) Zones() []Zone { return c.set.Load().zones }

// Server is the resolver asked (host:port).
func (c *Checker) Server() string { return c.set.Load().server }

// Budget is the longest a Lookup waits.
func (c *Checker) Budget() time.Duration { return c.set.Load().budget }

// Stats returns the counters.
func (c *Checker) Stats() *Stats { return &c.stats }

// Cached answers from the cache only; ok is false when addr has no fresh
// entry. It does not allocate.
func (c *Checker) Cached(addr netip.Addr, now time.Time) (r Result, ok bool) {
	c.mu.Lock()
	e := c.cache.get(addr, now)
	if e != nil {
		r = e.res
	}
	c.mu.Unlock()
	return r, e != nil
}

// Lookup returns addr's answers: from the cache when fresh, otherwise by
// asking every zone in parallel, within the budget. Concurrent lookups of
// one address share one query. A lookup whose ctx ends first returns a
// Result with OK false (the query goes on and fills the cache).
func (c *Checker) Lookup(ctx context.Context, addr netip.Addr, now time.Time) Result {
	addr = addr.Unmap()
	c.mu.Lock()
	if e := c.cache.get(addr, now); e != nil {
		r := e.res
		c.mu.Unlock()
		c.stats.CacheHits.Add(1)
		return r
	}
	cl, shared := c.inflight[addr]
	if !shared {
		cl = &call{done: make(chan struct{})}
		c.inflight[addr] = cl
	}
	cache := c.cache
	c.mu.Unlock()
	if shared {
		c.stats.Shared.Add(1)
	} else {
		c.stats.CacheMisses.Add(1)
		s := c.set.Load()
		go func() {
			qctx, cancel := context.WithTimeout(context.Background(), s.budget)
			defer cancel()
			res := c.ask(qctx, s, addr, now)
			c.mu.Lock()
			if c.cache == cache {
				c.cache.put(addr, res, expiry(s, &res, now))
			}
			delete(c.inflight, addr)
			cl.res = res
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	select {
	case <-cl.done:
		return cl.res
	case <-ctx.Done():
		return Result{}
	}
}

// Check asks every zone about addr now, without the cache, within the
// budget.
func (c *Checker) Check(ctx context.Context, addr netip.Addr, now time.Time) Result {
	s := c.set.Load()
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	return c.ask(ctx, s, addr.Unmap(), now)
}

// expiry is when a result leaves the cache: the earliest of its zones'
// (a listing: its TTL clamped to [MinListTTL, MaxListTTL]; not listed:
// MissTTL; failed: FailTTL, at most MissTTL).
func expiry(s *settings, r *Result, now time.Time) time.Time {
	d := MaxListTTL
	for i := range r.Answers {
		a := &r.Answers[i]
		var z time.Duration
		switch a.Status {
		case Listed:
			z = min(max(a.TTL, MinListTTL), MaxListTTL)
		case NotListed:
			z = s.missTTL
		default:
			z = min(FailTTL, s.missTTL)
		}
		d = min(d, z)
	}
	if !r.OK {
		d = min(d, FailTTL, s.missTTL)
	}
	return now.Add(d)
}

// ask queries every zone in parallel and scores the answers.
func (c *Checker) ask(ctx context.Context, s *settings, addr netip.Addr, now time.Time) Result {
	res := Result{OK: true, Answers: make([]Answer, len(s.zones))}
	var wg sync.WaitGroup
	for i := range s.zones {
		wg.Go(func() {
			res.Answers[i] = c.askZone(ctx, s, &s.zones[i], addr)
		})
	}
	wg.Wait()
	var listed []string
	for i := range res.Answers {
		a := &res.Answers[i]
		a.Result = a.Status.String()
		a.TTLSec = int64(a.TTL / time.Second)
		switch a.Status {
		case Listed:
			res.Score += a.Weight
			listed = append(listed, a.Zone)
			c.stats.Listed.Add(1)
		case Failed:
			c.stats.Failed.Add(1)
			if ok, suppressed := c.warn.Allow(now); ok {
				c.log.Warn("dnsbl: zone failed; counted as not listed", "zone", a.Zone, "resolver", s.server, "err", a.Err, "suppressed", suppressed)
			}
		}
	}
	res.Listed = strings.Join(listed, ",")
	return res
}

// askZone asks one zone about addr.
func (c *Checker) askZone(ctx context.Context, s *settings, z *Zone, addr netip.Addr) Answer {
	ans := Answer{Zone: z.Name, Weight: z.Weight}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	qname := QueryName(addr, z.Name)
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeA)
	m.RecursionDesired = true
	c.stats.Queries.Add(1)
	r, err := c.ex.Exchange(ctx, m, s.server)
	if err != nil {
		ans.Status = Failed
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			ans.Err = "timeout"
		} else {
			ans.Err = err.Error()
		}
		return ans
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, qname) {
		// Not the answer to this question (a forged or confused reply).
		ans.Status, ans.Err = Failed, "the answer is for another question"
		return ans
	}
	switch r.Rcode {
	case dns.RcodeNameError:
		return ans // NXDOMAIN: not listed
	case dns.RcodeSuccess:
	default:
		ans.Status = Failed
		ans.Err = dns.RcodeToString[r.Rcode]
		if ans.Err == "" {
			ans.Err = fmt.Sprintf("rcode %d", r.Rcode)
		}
		return ans
	}
	var ttl uint32
	for _, rr := range r.Answer {
		a, ok := rr.(*dns.A)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.A.To4())
		if !ok || len(ans.Codes) >= 8 {
			continue
		}
		ans.Codes = append(ans.Codes, ip)
		if len(ans.Codes) == 1 || a.Hdr.Ttl < ttl {
			ttl = a.Hdr.Ttl
		}
	}
	ans.TTL = time.Duration(ttl) * time.Second
	for _, ip := range ans.Codes {
		switch {
		case IsErrorCode(ip):
			c.stats.Refused.Add(1)
			ans.Status = Failed
			ans.Err = "the list refused the query (" + ip.String() + "): see docs/dnsbl.md on 127.255.255.x codes"
			return ans
		case ip.As4()[0] != 127:
			ans.Status = Failed
			ans.Err = "answer " + ip.String() + " is outside 127.0.0.0/8 (a resolver rewriting NXDOMAIN?)"
			return ans
		}
	}
	for _, ip := range ans.Codes {
		if z.Matches(ip) {
			ans.Status = Listed
			break
		}
	}
	return ans
}

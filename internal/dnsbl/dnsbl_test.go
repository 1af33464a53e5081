package dnsbl

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS answers from a table of names; it is the far edge (the e2e test
// in test/dnsbl_test.go asks a real nsd).
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string]fakeAnswer // by query name
	queries map[string]int
	block   chan struct{} // if set, every query waits for it to close
}

type fakeAnswer struct {
	rcode int
	codes []string
	ttl   uint32
	err   error
	hang  bool // never answer (until ctx ends)
	// otherQuestion answers for another name than asked
	otherQuestion bool
}

func newFake() *fakeDNS {
	return &fakeDNS{answers: map[string]fakeAnswer{}, queries: map[string]int{}}
}

func (f *fakeDNS) set(addr, zone string, a fakeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[QueryName(netip.MustParseAddr(addr), zone)] = a
}

func (f *fakeDNS) count(addr, zone string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[QueryName(netip.MustParseAddr(addr), zone)]
}

func (f *fakeDNS) Exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	name := m.Question[0].Name
	f.mu.Lock()
	f.queries[name]++
	a, ok := f.answers[name]
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if a.err != nil {
		return nil, a.err
	}
	r := new(dns.Msg)
	r.SetReply(m)
	if a.otherQuestion {
		r.Question[0].Name = "1.0.0.127." + name
	}
	if !ok {
		r.Rcode = dns.RcodeNameError
		return r, nil
	}
	r.Rcode = a.rcode
	for _, c := range a.codes {
		rr, err := dns.NewRR(name + " " + itoa(a.ttl) + " IN A " + c)
		if err != nil {
			return nil, err
		}
		r.Answer = append(r.Answer, rr)
	}
	return r, nil
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func newChecker(t *testing.T, f *fakeDNS, zones ...string) *Checker {
	t.Helper()
	zs, err := ParseZones(zones)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Zones: zs, Resolver: "127.0.0.1:53"}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestScore(t *testing.T) {
	f := newFake()
	c := newChecker(t, f, "zen.example=127.0.0.[4..7]*3", "auth.example=127.0.0.20*5", "any.example*1", "allow.example*-2", "off.example*4")
	ip := "192.0.2.1"
	f.set(ip, "zen.example", fakeAnswer{codes: []string{"127.0.0.4", "127.0.0.10"}, ttl: 300}) // XBL and PBL: counts once
	f.set(ip, "auth.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 300})              // not in the filter
	f.set(ip, "any.example", fakeAnswer{codes: []string{"127.0.0.9"}, ttl: 300})
	f.set(ip, "allow.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 300})
	r := c.Lookup(context.Background(), netip.MustParseAddr(ip), t0)
	if !r.OK || r.Score != 3+1-2 || r.Listed != "zen.example,any.example,allow.example" {
		t.Fatalf("score %d listed %q ok %v", r.Score, r.Listed, r.OK)
	}
	want := []Status{Listed, NotListed, Listed, Listed, NotListed}
	for i, a := range r.Answers {
		if a.Status != want[i] {
			t.Errorf("zone %s: %s, want %s", a.Zone, a.Status, want[i])
		}
	}
	if len(r.Answers[0].Codes) != 2 || r.Answers[0].TTL != 300*time.Second {
		t.Errorf("zen answer: %+v", r.Answers[0])
	}
	// A PBL-style code alone, outside the filter: not listed.
	pbl := "192.0.2.2"
	f.set(pbl, "zen.example", fakeAnswer{codes: []string{"127.0.0.11"}, ttl: 300})
	if r := c.Lookup(context.Background(), netip.MustParseAddr(pbl), t0); r.Score != 0 || r.Listed != "" {
		t.Errorf("PBL code outside the filter: score %d listed %q", r.Score, r.Listed)
	}
}

func TestErrorCodesAndFailures(t *testing.T) {
	var logs strings.Builder
	f := newFake()
	zs, _ := ParseZones([]string{"zen.example*3", "bad.example*3", "fail.example*3", "slow.example*3", "rewrite.example*3", "down.example*3", "forged.example*3"})
	c, err := New(Config{Zones: zs, Resolver: "127.0.0.1", Timeout: 50 * time.Millisecond}, f, newTextLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	ip := "198.51.100.7"
	f.set(ip, "zen.example", fakeAnswer{codes: []string{"127.255.255.254"}, ttl: 60}) // public resolver
	f.set(ip, "bad.example", fakeAnswer{codes: []string{"127.0.0.2", "127.255.255.252"}, ttl: 60})
	f.set(ip, "fail.example", fakeAnswer{rcode: dns.RcodeServerFailure})
	f.set(ip, "slow.example", fakeAnswer{hang: true})
	f.set(ip, "rewrite.example", fakeAnswer{codes: []string{"198.51.100.80"}, ttl: 60})
	f.set(ip, "down.example", fakeAnswer{err: errors.New("connection refused")})
	f.set(ip, "forged.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 60, otherQuestion: true})
	r := c.Lookup(context.Background(), netip.MustParseAddr(ip), t0)
	if r.Score != 0 || r.Listed != "" {
		t.Fatalf("errors counted as listings: score %d %q", r.Score, r.Listed)
	}
	for _, a := range r.Answers {
		if a.Status != Failed || a.Err == "" {
			t.Errorf("%s: %s %q, want an error", a.Zone, a.Status, a.Err)
		}
	}
	if !strings.Contains(r.Answers[0].Err, "127.255.255.254") || r.Answers[3].Err != "timeout" {
		t.Errorf("errors: %q, %q", r.Answers[0].Err, r.Answers[3].Err)
	}
	if c.stats.Refused.Load() != 2 || !strings.Contains(logs.String(), "dnsbl: zone failed") {
		t.Errorf("refused %d; log %q", c.stats.Refused.Load(), logs.String())
	}
	// The warning is rate-limited: many failing lookups, a bounded log.
	for i := range 100 {
		c.Check(context.Background(), netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), t0)
	}
	if n := strings.Count(logs.String(), "dnsbl: zone failed"); n > 10 {
		t.Errorf("%d warnings in one instant; want at most 10", n)
	}
}

func TestCacheTTL(t *testing.T) {
	f := newFake()
	zs, _ := ParseZones([]string{"a.example", "b.example"})
	c, err := New(Config{Zones: zs, Resolver: "127.0.0.1", MissTTL: 2 * time.Minute}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name         string
		a            fakeAnswer // of a.example; b.example has no entry (a miss)
		fresh, stale time.Duration
	}{
		{"short TTL clamped up to 60s", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 5}, 59 * time.Second, 60 * time.Second},
		{"listing for its TTL", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 90}, 89 * time.Second, 90 * time.Second},
		{"long TTL: the miss of b decides", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 86400}, 119 * time.Second, 120 * time.Second},
		{"miss for MissTTL", fakeAnswer{}, 119 * time.Second, 120 * time.Second},
		{"failure for a minute", fakeAnswer{rcode: dns.RcodeServerFailure}, 59 * time.Second, 60 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(len(tc.name))})
			if len(tc.a.codes) > 0 || tc.a.rcode != 0 {
				f.set(ip.String(), "a.example", tc.a)
			}
			c.Lookup(ctx, ip, t0)
			if _, ok := c.Cached(ip, t0.Add(tc.fresh)); !ok {
				t.Errorf("not cached after %v", tc.fresh)
			}
			if _, ok := c.Cached(ip, t0.Add(tc.stale)); ok {
				t.Errorf("still cached after %v", tc.stale)
			}
			n := f.count(ip.String(), "a.example")
			c.Lookup(ctx, ip, t0.Add(tc.stale))
			if f.count(ip.String(), "a.example") != n+1 {
				t.Errorf("a stale entry was not asked again")
			}
		})
	}
	// The listing TTL is capped at an hour (b gets a long listing too).
	c2, _ := New(Config{Zones: zs, Resolver: "127.0.0.1", MissTTL: 24 * time.Hour}, f, nil)
	ip := "203.0.113.200"
	f.set(ip, "a.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 86400})
	f.set(ip, "b.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 86400})
	c2.Lookup(ctx, netip.MustParseAddr(ip), t0)
	if _, ok := c2.Cached(netip.MustParseAddr(ip), t0.Add(time.Hour-time.Second)); !ok {
		t.Error("a day-long listing is not cached for an hour")
	}
	if _, ok := c2.Cached(netip.MustParseAddr(ip), t0.Add(time.Hour)); ok {
		t.Error("a day-long listing is cached beyond an hour")
	}
}

func TestCacheAnswersWithoutQuery(t *testing.T) {
	f := newFake()
	c := newChecker(t, f, "a.example*2")
	ip := "192.0.2.50"
	f.set(ip, "a.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 600})
	r1 := c.Lookup(context.Background(), netip.MustParseAddr(ip), t0)
	r2 := c.Lookup(context.Background(), netip.MustParseAddr(ip), t0.Add(time.Minute))
	if f.count(ip, "a.example") != 1 || r2.Score != 2 || r1.Listed != r2.Listed {
		t.Fatalf("queries %d, second score %d", f.count(ip, "a.example"), r2.Score)
	}
	if c.stats.CacheHits.Load() != 1 {
		t.Errorf("hits %d", c.stats.CacheHits.Load())
	}
	// Check is uncached.
	c.Check(context.Background(), netip.MustParseAddr(ip), t0)
	if f.count(ip, "a.example") != 2 {
		t.Errorf("Check used the cache")
	}
}

func TestSharedQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.block = make(chan struct{})
		c := newChecker(t, f, "a.example")
		ip := netip.MustParseAddr("192.0.2.77")
		f.set(ip.String(), "a.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 300})
		res := make(chan Result, 5)
		for range 5 {
			go func() { res <- c.Lookup(context.Background(), ip, t0) }()
		}
		synctest.Wait()
		close(f.block)
		for range 5 {
			if r := <-res; r.Score != 1 {
				t.Errorf("score %d", r.Score)
			}
		}
		if n := f.count(ip.String(), "a.example"); n != 1 {
			t.Errorf("%d queries for five concurrent lookups, want 1", n)
		}
		if c.stats.Shared.Load() != 4 {
			t.Errorf("shared %d", c.stats.Shared.Load())
		}
	})
}

func TestBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		zs, _ := ParseZones([]string{"dead.example*5", "live.example*1"})
		c, _ := New(Config{Zones: zs, Resolver: "127.0.0.1", Timeout: time.Second, Budget: 300 * time.Millisecond}, f, nil)
		ip := netip.MustParseAddr("192.0.2.88")
		f.set(ip.String(), "dead.example", fakeAnswer{hang: true})
		f.set(ip.String(), "live.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 300})
		start := time.Now()
		r := c.Lookup(context.Background(), ip, t0)
		if took := time.Since(start); took != 300*time.Millisecond {
			t.Errorf("took %v, want the budget (300ms)", took)
		}
		if r.Score != 1 || r.Answers[0].Status != Failed {
			t.Errorf("score %d, dead zone %s", r.Score, r.Answers[0].Status)
		}
		// A caller with less time gets no answer, and the query still
		// fills the cache.
		ip2 := netip.MustParseAddr("192.0.2.89")
		f.set(ip2.String(), "live.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 300})
		f.set(ip2.String(), "dead.example", fakeAnswer{hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		if r := c.Lookup(ctx, ip2, t0); r.OK {
			t.Errorf("an answer after the caller's deadline: %+v", r)
		}
		synctest.Wait()
		time.Sleep(time.Second) // fake time: the query's budget runs out
		if _, ok := c.Cached(ip2, t0); !ok {
			t.Error("the query did not fill the cache")
		}
	})
}

func TestCacheBound(t *testing.T) {
	f := newFake()
	zs, _ := ParseZones([]string{"a.example"})
	c, _ := New(Config{Zones: zs, Resolver: "127.0.0.1", CacheSize: 3}, f, nil)
	ctx := context.Background()
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
	for i := range 3 {
		c.Lookup(ctx, addr(i), t0)
	}
	c.Lookup(ctx, addr(0), t0) // 0 is now the most recent; 1 the least
	c.Lookup(ctx, addr(3), t0)
	if c.CacheLen() != 3 {
		t.Fatalf("cache holds %d, bound 3", c.CacheLen())
	}
	if _, ok := c.Cached(addr(1), t0); ok {
		t.Error("the least recently used entry was kept")
	}
	for _, i := range []int{0, 2, 3} {
		if _, ok := c.Cached(addr(i), t0); !ok {
			t.Errorf("entry %d evicted", i)
		}
	}
	for i := range 1000 {
		c.Lookup(ctx, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), t0)
	}
	if c.CacheLen() != 3 {
		t.Fatalf("cache holds %d, bound 3", c.CacheLen())
	}
}

func TestReconfigure(t *testing.T) {
	f := newFake()
	c := newChecker(t, f, "a.example")
	ip := netip.MustParseAddr("192.0.2.9")
	c.Lookup(context.Background(), ip, t0)
	zs, _ := ParseZones([]string{"a.example"})
	if err := c.Reconfigure(Config{Zones: zs, Resolver: "127.0.0.1:53", Budget: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Cached(ip, t0); !ok {
		t.Error("same zones and resolver: the cache was emptied")
	}
	zs, _ = ParseZones([]string{"a.example*2"})
	c.Reconfigure(Config{Zones: zs, Resolver: "127.0.0.1:53"})
	if _, ok := c.Cached(ip, t0); ok {
		t.Error("new weights: the old scores were kept")
	}
	if err := c.Reconfigure(Config{Zones: zs, Resolver: "nameserver"}); err == nil {
		t.Error("a bad resolver was accepted")
	}
}

func TestHealth(t *testing.T) {
	f := newFake()
	c := newChecker(t, f, "good.example=127.0.0.[4..7]", "empty.example", "wild.example", "refused.example")
	f.set("127.0.0.2", "good.example", fakeAnswer{codes: []string{"127.0.0.2", "127.0.0.4", "127.0.0.10"}, ttl: 60})
	f.set("127.0.0.2", "wild.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 60})
	f.set("127.0.0.1", "wild.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 60})
	f.set("127.0.0.2", "refused.example", fakeAnswer{codes: []string{"127.255.255.254"}, ttl: 60})
	h := c.CheckHealth(context.Background(), t0)
	want := []bool{true, false, false, false}
	for i := range h {
		if h[i].OK != want[i] {
			t.Errorf("%s: ok %v (%s), want %v", h[i].Zone, h[i].OK, h[i].Problem, want[i])
		}
	}
	if !strings.Contains(h[3].Problem, "127.255.255.254") {
		t.Errorf("refused zone's problem: %q", h[3].Problem)
	}
	if len(c.Health()) != 4 {
		t.Error("health not kept")
	}
}

func TestResolverConfig(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1": "127.0.0.1:53", "127.0.0.53:5353": "127.0.0.53:5353", "::1": "[::1]:53", "[::1]:5353": "[::1]:5353"} {
		if got, err := ParseResolver(in); err != nil || got != want {
			t.Errorf("ParseResolver(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"dns.example", "127.0.0.1:0", "127.0.0.1:x", "1.2.3.4:99999"} {
		if _, err := ParseResolver(in); err == nil {
			t.Errorf("ParseResolver(%q) accepted", in)
		}
	}
}

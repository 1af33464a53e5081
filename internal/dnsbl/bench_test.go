package dnsbl

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// benchEngine is an engine with the brute-force tracker and DNSBL on for
// IMAP, as the daemon wires it.
func benchEngine(b *testing.B) *policy.Engine {
	idx := rules.NewIndex()
	e := policy.New(idx, nil).WithAbuse(abuse.New(abuse.DefaultConfig()), true, time.Minute, 5*time.Second)
	p := policy.DNSBLPolicy{Threshold: 3}
	p.Services[rules.IMAP] = true
	e.SetDNSBL(p)
	return e
}

// BenchmarkDecideDNSBLCached is a decision whose DNSBL answer is in the
// cache: Gate.Fill then Decide. Compare with BenchmarkDecideNoDNSBL (the
// same decision with DNSBL off): the difference is what the check adds.
func BenchmarkDecideDNSBLCached(b *testing.B) {
	e := benchEngine(b)
	f := newFake()
	zs, _ := ParseZones([]string{"zen.example=127.0.0.[4..7]*3", "auth.example*5", "list.example*1"})
	c, err := New(Config{Zones: zs, Resolver: "127.0.0.1"}, f, nil)
	if err != nil {
		b.Fatal(err)
	}
	ip := netip.MustParseAddr("203.0.113.9")
	f.set(ip.String(), "list.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 3600})
	g := NewGate(e, c)
	a := policy.Attempt{Login: "anna@example.test", Service: rules.IMAP, Client: ip, Door: "dovecot"}
	g.Fill(context.Background(), &a, t0)
	if !a.DNSBL.Checked || a.DNSBL.Score != 1 {
		b.Fatalf("warm-up: %+v", a.DNSBL)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		a.DNSBL = policy.DNSBL{}
		g.Fill(ctx, &a, t0)
		if v := e.Decide(&a, t0, nil); v.Action != policy.Allow || !a.DNSBL.Checked {
			b.Fatal(v.Reason)
		}
	}
	if f.count(ip.String(), "list.example") != 1 {
		b.Fatal("the benchmark asked DNS again")
	}
}

// BenchmarkDecideNoDNSBL is the same decision without DNSBL.
func BenchmarkDecideNoDNSBL(b *testing.B) {
	e := benchEngine(b)
	e.SetDNSBL(policy.DNSBLPolicy{})
	a := policy.Attempt{Login: "anna@example.test", Service: rules.IMAP, Client: netip.MustParseAddr("203.0.113.9"), Door: "dovecot"}
	b.ReportAllocs()
	for b.Loop() {
		if v := e.Decide(&a, t0, nil); v.Action != policy.Allow {
			b.Fatal(v.Reason)
		}
	}
}

func TestCachedLookupDoesNotAllocate(t *testing.T) {
	f := newFake()
	c := newChecker(t, f, "a.example", "b.example*2")
	ip := netip.MustParseAddr("203.0.113.10")
	f.set(ip.String(), "b.example", fakeAnswer{codes: []string{"127.0.0.2"}, ttl: 600})
	c.Lookup(context.Background(), ip, t0)
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { c.Lookup(ctx, ip, t0) }); n != 0 {
		t.Errorf("a cached lookup allocates %v times", n)
	}
}

// BenchmarkFillCached is what a cached DNSBL answer adds to a decision on
// its own: NeedsDNSBL (the exemption checks) and the cache lookup.
func BenchmarkFillCached(b *testing.B) {
	e := benchEngine(b)
	f := newFake()
	zs, _ := ParseZones([]string{"zen.example=127.0.0.[4..7]*3", "auth.example*5", "list.example*1"})
	c, _ := New(Config{Zones: zs, Resolver: "127.0.0.1"}, f, nil)
	ip := netip.MustParseAddr("203.0.113.9")
	g := NewGate(e, c)
	a := policy.Attempt{Login: "anna@example.test", Service: rules.IMAP, Client: ip, Door: "dovecot"}
	g.Fill(context.Background(), &a, t0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		a.DNSBL = policy.DNSBL{}
		g.Fill(ctx, &a, t0)
	}
	if !a.DNSBL.Checked {
		b.Fatal("not filled")
	}
}

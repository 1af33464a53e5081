package sendlimit

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"
)

const benchLogins = 100_000 // DefaultConfig's MaxAccounts

// benchLimiter tracks benchLogins senders under limits that a sender in
// the benchmark reaches now and then (so both answers are measured).
func benchLimiter(b *testing.B) (*Limiter, []string, []string) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Default = Limits{MessagesPerHour: 100, MessagesPerDay: 1000, RecipientsPerHour: 500, RecipientsPerDay: 5000}
	cfg.Accounts = map[string]Limits{"@example.org": {MessagesPerHour: 1000}}
	l := New(cfg)
	logins := make([]string, benchLogins)
	for i := range logins {
		logins[i] = fmt.Sprintf("user%d@example.%s", i, []string{"com", "org"}[i%2])
		l.Rcpt(logins[i], "", t0)
	}
	insts := make([]string, 1024)
	for i := range insts {
		insts[i] = fmt.Sprintf("8a3c.5f3c4d1e.%d.%d", 10000+i, i%7)
	}
	if l.Len() != benchLogins {
		b.Fatalf("setup: %d tracked", l.Len())
	}
	return l, logins, insts
}

// BenchmarkRcpt is one RCPT of a tracked sender, with 100,000 tracked:
// five recipients per message, the clock advancing 1 ms a call (so
// buckets are cleared as minutes and hours pass). sequential and parallel
// spread the calls over all 100,000 (each call misses the CPU caches: the
// worst case); hot over 100 of them (the usual case: few senders at once).
func BenchmarkRcpt(b *testing.B) {
	b.Run("sequential", func(b *testing.B) {
		l, logins, insts := benchLimiter(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Rcpt(logins[(i*7919)%benchLogins], insts[(i/5)%len(insts)], t0.Add(time.Duration(i)*time.Millisecond))
			i++
		}
	})
	b.Run("hot", func(b *testing.B) {
		l, logins, insts := benchLimiter(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Rcpt(logins[(i*7919)%100], insts[(i/5)%len(insts)], t0.Add(time.Duration(i)*time.Millisecond))
			i++
		}
	})
	for _, p := range []struct {
		name   string
		logins int
	}{{"parallel", benchLogins}, {"parallel-hot", 100}} {
		b.Run(p.name, func(b *testing.B) {
			l, logins, insts := benchLimiter(b)
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 1_000_003
				for pb.Next() {
					l.Rcpt(logins[(i*7919)%p.logins], insts[(i/5)%len(insts)], t0.Add(time.Duration(i%math.MaxInt32)*time.Millisecond))
					i++
				}
			})
		})
	}
	// A sender not tracked, MaxAccounts full: the least recently active
	// is forgotten and its slot reused (the login is copied).
	b.Run("new-sender", func(b *testing.B) {
		l, _, _ := benchLimiter(b)
		fresh := make([]string, 2*benchLogins)
		for i := range fresh {
			fresh[i] = fmt.Sprintf("other%d@example.net", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Rcpt(fresh[i%len(fresh)], "", t0)
			i++
		}
	})
}

// BenchmarkList lists 100,000 senders with counts.
func BenchmarkList(b *testing.B) {
	l, _, _ := benchLimiter(b)
	b.ReportAllocs()
	for b.Loop() {
		if len(l.List(t0)) != benchLogins {
			b.Fatal("short list")
		}
	}
}

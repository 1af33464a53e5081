package abuse

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// benchAddr is the i-th of 16M distinct IPv4 addresses.
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

const benchKeys = 1_000_000

// benchTracker tracks benchKeys addresses, each with one failure for its
// own login (so as many logins and pairs; 1% of them stale clients),
// benchKeys/10 known-good entries and 10,000 address bans, spread over
// the last 100 s.
func benchTracker(b *testing.B) (*Tracker, time.Time) {
	b.Helper()
	cfg := DefaultConfig()
	tr := New(cfg)
	now := at(0)
	step := 100 * time.Second / benchKeys
	for i := range benchKeys {
		login := fmt.Sprintf("user%d@example.com", i)
		tr.Record(Event{Login: login, Addr: benchAddr(i), PwHash: "a1b"}, now)
		if i%100 == 50 { // a stale client
			tr.Record(Event{Login: login, Addr: benchAddr(i), PwHash: "a1b"}, now)
		}
		if i%10 == 0 {
			tr.Record(Event{Login: login, Addr: benchAddr(i), Success: true}, now)
		}
		if i%100 == 0 {
			if _, err := tr.AddBan(Ban{Kind: BanAddr, Prefix: netip.PrefixFrom(benchAddr(i), 32), Expires: now.Add(time.Hour)}, now); err != nil {
				b.Fatal(err)
			}
		}
		now = now.Add(step)
	}
	if s := tr.Stats(); s.Addrs != benchKeys || s.Logins != benchKeys || s.Pairs != benchKeys || s.Stale != benchKeys/100 {
		b.Fatalf("setup: %+v", s)
	}
	return tr, now
}

// BenchmarkCheck is the decision path with 1,000,000 tracked addresses:
// a mix of banned, tracked and unknown addresses, known-good and stale
// lookups.
func BenchmarkCheck(b *testing.B) {
	tr, now := benchTracker(b)
	logins := make([]string, 4096)
	for i := range logins {
		logins[i] = fmt.Sprintf("user%d@example.com", i*241)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		j := i * 241 % (2 * benchKeys) // half tracked, 1% of those banned
		tr.Check(logins[i%len(logins)], benchAddr(j), "a1b", now)
		i++
	}
	b.ReportMetric(float64(tr.Stats().Addrs), "addrs")
}

// BenchmarkCheckParallel is BenchmarkCheck from all CPUs at once.
func BenchmarkCheckParallel(b *testing.B) {
	tr, now := benchTracker(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			j := i * 241 % (2 * benchKeys)
			tr.Check("user42@example.com", benchAddr(j), "a1b", now)
			i++
		}
	})
}

// BenchmarkRecord reports failures with 1,000,000 tracked addresses:
// addresses cycle through 2,000,000 (so half the reports evict the least
// recently updated key of each kind), logins through 1,000,000, and the
// clock advances 100 µs per report, below every threshold.
func BenchmarkRecord(b *testing.B) {
	tr, now := benchTracker(b)
	logins := make([]string, benchKeys)
	for i := range logins {
		logins[i] = fmt.Sprintf("user%d@example.com", i)
	}
	pws := []string{"a1b", "c2d", "e3f", "0a9"}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		j := benchKeys + i%(2*benchKeys)
		tr.Record(Event{Login: logins[j%benchKeys], Addr: benchAddr(j % (1 << 24)), PwHash: pws[i%len(pws)]}, now)
		now = now.Add(100 * time.Microsecond)
		i++
	}
	b.StopTimer()
	s := tr.Stats()
	b.ReportMetric(float64(s.Addrs), "addrs")
	b.ReportMetric(float64(s.AddrBans+s.LoginBans), "bans")
}

// BenchmarkBytesPerKey measures the heap each tracked key costs, per
// kind, with b.N keys (run it with -benchtime=1000000x for a million).
func BenchmarkBytesPerKey(b *testing.B) {
	now := at(0)
	kinds := []struct {
		name string
		fill func(tr *Tracker, n int) (before uint64) // before: the heap to measure from, 0 for the start
	}{
		{"addr", func(tr *Tracker, n int) uint64 {
			for i := range n {
				tr.Record(Event{Addr: benchAddr(i), PwHash: "a1b"}, now) // no login: the address only
			}
			return 0
		}},
		{"addr+spray", func(tr *Tracker, n int) uint64 {
			for i := range n {
				tr.Record(Event{Addr: benchAddr(i), PwHash: "a1b"}, now)
			}
			return 0
		}},
		{"login", func(tr *Tracker, n int) uint64 {
			for i := range n {
				tr.logins.upsert(uint64(i)*0x9E3779B97F4A7C15, now.UnixNano())
			}
			return 0
		}},
		{"pair", func(tr *Tracker, n int) uint64 {
			for i := range n {
				tr.pairs.upsert(pairKey{uint64(i) * 0x9E3779B97F4A7C15, tr.keyOf(benchAddr(i))}, now.UnixNano())
			}
			return 0
		}},
		{"knowngood", func(tr *Tracker, n int) uint64 {
			logins := make([]string, n) // made before the measurement; the tracker keeps its own copy
			for i := range logins {
				logins[i] = fmt.Sprintf("user%d@example.com", i)
			}
			runtime.GC()
			before := heap()
			for i := range n {
				tr.Record(Event{Login: logins[i], Addr: benchAddr(i), Success: true}, now)
			}
			return before
		}},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.MaxKeys, cfg.MaxKnownGood = b.N, b.N
			if k.name == "addr+spray" {
				cfg.SprayLogins = 10
			}
			tr := New(cfg)
			runtime.GC()
			before := heap()
			b.ResetTimer()
			if from := k.fill(tr, b.N); from != 0 {
				before = from
			}
			b.StopTimer()
			runtime.GC()
			after := heap()
			b.ReportMetric(float64(after-before)/float64(b.N), "B/key")
			runtime.KeepAlive(tr)
		})
	}
}

func heap() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"mailgate/internal/rules"
)

const (
	benchRules   = 1_000_000
	benchClients = 1_000_000
)

// benchAddrs returns n distinct pseudo-random addresses, a tenth IPv6.
func benchAddrs(rng *rand.Rand, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		if i%10 == 9 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			for j := 2; j < 16; j++ {
				b[j] = byte(rng.Uint32())
			}
			out[i] = netip.AddrFrom16(b)
			continue
		}
		v := rng.Uint32()
		out[i] = netip.AddrFrom4([4]byte{byte(v>>24) | 1, byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return out
}

// BenchmarkDecide measures one decision with a million rules in the index,
// in three shapes: spread over 500,000 logins, all on "*" (one big allow
// list and deny list), and a million-entry global deny list. Clients come
// from a million distinct addresses.
func BenchmarkDecide(b *testing.B) {
	shapes := []struct {
		name string
		add  func(idx *rules.Index, rng *rand.Rand)
	}{
		{"logins", func(idx *rules.Index, rng *rand.Rand) {
			for i := range benchRules {
				r := rules.Rule{ID: int64(i + 1), Account: fmt.Sprintf("user%d@example.test", i/2), Action: rules.Allow,
					Service: rules.Service(1 + i%3)}
				v := rng.Uint32()
				r.Match = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
				idx.Add(&r)
			}
		}},
		{"star", func(idx *rules.Index, rng *rand.Rand) {
			for i := range benchRules {
				r := rules.Rule{ID: int64(i + 1), Account: "*", Action: rules.Action(1 + i%2), Service: rules.Service(i % 4)}
				v := rng.Uint32()
				r.Match = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32-i%9)
				r.Match = r.Match.Masked()
				idx.Add(&r)
			}
		}},
		{"global", func(idx *rules.Index, rng *rand.Rand) {
			for i := range benchRules {
				r := rules.Rule{ID: int64(i + 1), Scope: rules.ScopeGlobal, Action: rules.Deny}
				v := rng.Uint32()
				r.Match = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
				idx.Add(&r)
			}
		}},
	}
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			idx := rules.NewIndex()
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			s.add(idx, rng)
			runtime.GC()
			runtime.ReadMemStats(&m1)
			e := New(idx, nil)
			addrs := benchAddrs(rng, benchClients)
			attempts := make([]Attempt, 4096)
			for i := range attempts {
				attempts[i] = Attempt{
					Login:   fmt.Sprintf("user%d@example.test", rng.IntN(benchRules/2+1000)),
					Service: rules.Service(1 + rng.IntN(5)),
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				a := &attempts[i&4095]
				a.Client = addrs[i%benchClients]
				e.Decide(a, now, nil)
				i++
			}
			b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/benchRules, "heapB/rule")
		})
	}
}

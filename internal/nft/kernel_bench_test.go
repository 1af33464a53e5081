package nft

import (
	"net/netip"
	"testing"
	"time"
)

// ktBans returns n distinct bans of every kind the kernel holds, with
// expiries spread over a day: per 100, 70 IPv4 addresses, 20 IPv6
// addresses, 5 IPv4 /24s and 5 IPv6 /64s (none nested).
func ktBans(n int, now time.Time) []Ban {
	bs := make([]Ban, 0, n)
	for i := range n {
		exp := now.Add(time.Hour + time.Duration(i%86400)*time.Second)
		var p netip.Prefix
		k, r := i/100, i%100
		switch {
		case r < 70: // 10.0.0.0/8
			j := k*70 + r
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j >> 16), byte(j >> 8), byte(j)}), 32)
		case r < 90: // 2001:db8:1::/48
			j := k*20 + r - 70
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 12: byte(j >> 24), byte(j >> 16), byte(j >> 8), byte(j)}), 128)
		case r < 95: // 100.64.0.0/10
			j := k*5 + r - 90
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(j>>8), byte(j), 0}), 24)
		default: // 2001:db8:2::/48
			j := k*5 + r - 95
			p = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, byte(j >> 8), byte(j)}), 64)
		}
		bs = append(bs, Ban{Prefix: p, Expires: exp})
	}
	return bs
}

func TestKtBans(t *testing.T) {
	now := time.Now()
	bs := ktBans(100_000, now)
	seen := map[netip.Prefix]bool{}
	kinds := map[[2]int]int{}
	for _, b := range bs {
		if seen[b.Prefix] || b.Prefix != b.Prefix.Masked() {
			t.Fatalf("ban %s repeated or not masked", b.Prefix)
		}
		seen[b.Prefix] = true
		kinds[[2]int{b.Prefix.Addr().BitLen(), b.Prefix.Bits()}]++
	}
	want := map[[2]int]int{{32, 32}: 70_000, {128, 128}: 20_000, {32, 24}: 5_000, {128, 64}: 5_000}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d bans of /%d in %d-bit addresses, want %d", kinds[k], k[1], k[0], n)
		}
	}
}

// BenchmarkApply100kBans measures one Sync that puts 100,000 bans into
// empty sets in the kernel (a namespace's), the start of a daemon with a
// big ban list. Emptying the sets between runs is not timed.
func BenchmarkApply100kBans(b *testing.B) {
	const n = 100_000
	ns := ktNewNS(b, "nftbench")
	f := ns.firewall(b, ktConfig(Autoban))
	now := time.Now()
	st := State{Bans: ktBans(n, now)}
	if _, err := f.Apply(now, State{}); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	b.ResetTimer()
	for range b.N {
		res, err := f.Sync(now, st)
		if err != nil {
			b.Fatalf("Sync: %v", err)
		}
		if res.Added != n || res.Removed != 0 {
			b.Fatalf("Sync = %+v, want %d added", res, n)
		}
		b.StopTimer()
		if res, err := f.Sync(now, State{}); err != nil || res.Removed != n {
			b.Fatalf("Sync to empty = %+v, %v", res, err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "bans/s")
}

// BenchmarkSync100kSteady measures the periodic re-assertion of 100,000
// bans that are all in the kernel already (reading them back and
// comparing; nothing to write).
func BenchmarkSync100kSteady(b *testing.B) {
	const n = 100_000
	ns := ktNewNS(b, "nftbench")
	f := ns.firewall(b, ktConfig(Autoban))
	now := time.Now()
	st := State{Bans: ktBans(n, now)}
	if _, err := f.Apply(now, st); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	b.ResetTimer()
	for range b.N {
		res, err := f.Sync(now, st)
		if err != nil {
			b.Fatalf("Sync: %v", err)
		}
		if res != (SyncResult{}) {
			b.Fatalf("Sync = %+v, want no change", res)
		}
	}
}

// BenchmarkAddBan measures the steady-state cost of one ban: AddBans of
// one new address (one transaction) into sets that already hold 100,000.
func BenchmarkAddBan(b *testing.B) {
	ns := ktNewNS(b, "nftbench")
	f := ns.firewall(b, ktConfig(Autoban))
	now := time.Now()
	if _, err := f.Apply(now, State{Bans: ktBans(100_000, now)}); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	b.ResetTimer()
	for i := range b.N {
		// 172.16.0.0/12 is not in ktBans.
		a := netip.AddrFrom4([4]byte{172, 16 + byte(i>>16&0xf), byte(i >> 8), byte(i)})
		if err := f.AddBans(now, []Ban{{Prefix: netip.PrefixFrom(a, 32), Expires: now.Add(time.Hour)}}); err != nil {
			b.Fatalf("AddBans: %v", err)
		}
	}
	b.StopTimer()
	if b.N <= 1<<20 {
		sets := ns.sets(b)
		if got := len(sets["banned_v4"]); got != 70_000+b.N {
			b.Fatalf("banned_v4 has %d elements, want %d", got, 70_000+b.N)
		}
	}
}

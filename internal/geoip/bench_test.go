package geoip

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"

	"mailgate/internal/geoip/geoiptest"
)

// benchNets returns n random networks, 5 in 6 IPv4 /24s, the rest IPv6
// /32s in 2000::/3, and addresses to look up: half inside those networks,
// half anywhere.
func benchNets(n int) (map[string]string, []netip.Addr) {
	r := rand.New(rand.NewPCG(4, 2))
	ccs := []string{"DE", "US", "CN", "FR", "GB", "JP", "BR", "IN", "RU", "NL", "IT", "ES", "PL", "SE", "CA", "AU", "KR", "UA", "TR", "MX"}
	nets := make(map[string]string, n)
	var inside []netip.Addr
	for len(nets) < n {
		var p netip.Prefix
		if r.IntN(6) < 5 {
			x := r.Uint32()
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), 0}), 24)
		} else {
			var a [16]byte
			x := r.Uint32()
			a[0], a[1], a[2], a[3] = 0x20|byte(x>>24)&0x1f, byte(x>>16)|0x10, byte(x>>8), byte(x) // not 2001::/32, 2002::/16: aliases of IPv4 in mmdb
			p = netip.PrefixFrom(netip.AddrFrom16(a), 32)
		}
		nets[p.String()] = ccs[r.IntN(len(ccs))]
		if len(inside) < 4096 {
			inside = append(inside, p.Addr().Next())
		}
	}
	addrs := make([]netip.Addr, 0, 8192)
	for i := range 4096 {
		addrs = append(addrs, inside[i])
		if r.IntN(6) < 5 {
			x := r.Uint32()
			addrs = append(addrs, netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}))
		} else {
			var a [16]byte
			for j := range a {
				a[j] = byte(r.Uint32())
			}
			a[0] = 0x20 | a[0]&0x1f
			addrs = append(addrs, netip.AddrFrom16(a))
		}
	}
	r.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	return nets, addrs
}

// BenchmarkLookup looks up random addresses in databases of 300,000 random
// networks:
//
//	go test ./internal/geoip -run '^$' -bench BenchmarkLookup -benchmem
func BenchmarkLookup(b *testing.B) {
	nets, addrs := benchNets(300_000)
	dir := b.TempDir()
	files := []struct{ name, path string }{
		{"mmdb", filepath.Join(dir, "maxmind.mmdb")},
		{"bin-ipv4", filepath.Join(dir, "db1.bin")},
		{"bin-ipv6", filepath.Join(dir, "db1.ipv6.bin")},
	}
	if err := geoiptest.WriteMMDB(files[0].path, nets, geoiptest.ShapeMaxMind); err != nil {
		b.Fatal(err)
	}
	if err := geoiptest.WriteBIN(files[1].path, nets, false); err != nil {
		b.Fatal(err)
	}
	if err := geoiptest.WriteBIN(files[2].path, nets, true); err != nil {
		b.Fatal(err)
	}
	for _, f := range files {
		l, err := NewLocator(f.path, Options{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		found := 0
		for _, a := range addrs { // warm the record cache; the data must be real
			if l.Lookup(a).Kind == Found {
				found++
			}
		}
		if found < len(addrs)/3 {
			b.Fatalf("%s: only %d of %d addresses found", f.name, found, len(addrs))
		}
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				l.Lookup(addrs[i&(len(addrs)-1)])
				i++
			}
		})
		b.Run(f.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(addrs))
				for pb.Next() {
					l.Lookup(addrs[i&(len(addrs)-1)])
					i++
				}
			})
		})
	}
}

// BenchmarkOpen measures opening (and checking) the 300,000-network files.
//
//	go test ./internal/geoip -run '^$' -bench BenchmarkOpen -benchmem
func BenchmarkOpen(b *testing.B) {
	nets, _ := benchNets(300_000)
	dir := b.TempDir()
	mmdb, bin := filepath.Join(dir, "maxmind.mmdb"), filepath.Join(dir, "db1.ipv6.bin")
	if err := geoiptest.WriteMMDB(mmdb, nets, geoiptest.ShapeMaxMind); err != nil {
		b.Fatal(err)
	}
	if err := geoiptest.WriteBIN(bin, nets, true); err != nil {
		b.Fatal(err)
	}
	for name, path := range map[string]string{"mmdb": mmdb, "bin-ipv6": bin} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				db, err := Open(path, Options{})
				if err != nil {
					b.Fatal(err)
				}
				db.Close()
			}
		})
	}
}

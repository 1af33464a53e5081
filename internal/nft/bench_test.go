package nft

import (
	"net/netip"
	"testing"
	"time"
)

// benchBans returns n bans: n/2 IPv4 addresses, n/2 IPv6 addresses, each
// with its own expiry.
func fakeBenchBans(n int) []Ban {
	bs := make([]Ban, 0, n)
	for i := range n / 2 {
		a4 := netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)})
		a6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		exp := t0.Add(time.Hour + time.Duration(i)*time.Second)
		bs = append(bs, Ban{netip.PrefixFrom(a4, 32), exp}, Ban{netip.PrefixFrom(a6, 128), exp})
	}
	return bs
}

// BenchmarkBatch100kBans: Apply into an empty kernel with 100,000 bans —
// computing, encoding and sending the one transaction (table, sets,
// rules and 100,000 elements in ~60 messages) to a fake connection that
// only counts. The kernel's own cost is in kernel_bench_test.go.
func BenchmarkBatch100kBans(b *testing.B) {
	st := State{Bans: fakeBenchBans(100_000)}
	k := newFakeKernel(b, t0)
	k.countOnly = true
	fw, err := New(DefaultConfig(), k.conn(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		k.messages = 0
		res, err := fw.Apply(t0, st)
		if err != nil || res.Added != 100_000 {
			b.Fatalf("%+v %v", res, err)
		}
	}
	b.ReportMetric(float64(k.messages), "msgs/op")
}

// BenchmarkBatchOneBan: the steady-state cost of one ban with 100,000 already
// in the kernel: one small transaction, no read.
func BenchmarkBatchOneBan(b *testing.B) {
	k := newFakeKernel(b, t0)
	k.countOnly = true
	fw, err := New(DefaultConfig(), k.conn(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fw.Apply(t0, State{Bans: fakeBenchBans(100_000)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		a := netip.AddrFrom4([4]byte{101, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := fw.AddBans(t0, []Ban{{netip.PrefixFrom(a, 32), t0.Add(time.Hour)}}); err != nil {
			b.Fatal(err)
		}
	}
}

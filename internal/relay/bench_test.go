package relay

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"mailgate/internal/rules"
)

// benchTable returns a table holding n permits: n/2 IPv4, n/2 IPv6.
func benchTable(b *testing.B, n int) *Table {
	b.Helper()
	cfg := DefaultConfig()
	cfg.MaxPermits = n
	tab := New(cfg)
	for i := range n / 2 {
		tab.Login("user@example.com", rules.IMAP, "dovecot", netip.AddrFrom4([4]byte{100, byte(i >> 16), byte(i >> 8), byte(i)}), at(0))
		tab.Login("user@example.com", rules.IMAP, "dovecot", v6(i), at(0))
	}
	return tab
}

func v6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, byte(i >> 16), byte(i >> 8), 15: 1})
}

func BenchmarkCheck(b *testing.B) {
	tab := benchTable(b, 100_000)
	now := at(time.Minute)
	hit := netip.AddrFrom4([4]byte{100, 0, 1, 2})
	hit6 := v6(12345)
	miss := netip.AddrFrom4([4]byte{198, 51, 100, 1})
	for _, c := range []struct {
		name string
		a    netip.Addr
		want bool
	}{{"hit", hit, true}, {"hit6", hit6, true}, {"miss", miss, false}} {
		if _, ok := tab.Check(c.a, now); ok != c.want {
			b.Fatalf("%s: Check = %v", c.name, ok)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tab.Check(c.a, now)
			}
		})
	}
	b.Run("miss-churned", func(b *testing.B) {
		// After 300000 new networks have each evicted a permit.
		tab := benchTable(b, 100_000)
		for i := range 300_000 {
			tab.Login("u", rules.IMAP, "dovecot", netip.AddrFrom4([4]byte{101, byte(i >> 16), byte(i >> 8), byte(i)}), at(time.Duration(i)*time.Millisecond))
		}
		b.ReportAllocs()
		for b.Loop() {
			tab.Check(miss, now)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				if i&1 == 0 {
					tab.Check(hit, now)
				} else {
					tab.Check(miss, now)
				}
			}
		})
	})
}

func BenchmarkLogin(b *testing.B) {
	b.Run("refresh", func(b *testing.B) {
		tab := benchTable(b, 100_000)
		a := netip.AddrFrom4([4]byte{100, 0, 1, 2})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			tab.Login("user@example.com", rules.IMAP, "dovecot", a, at(time.Duration(i)*time.Millisecond))
		}
	})
	b.Run("grant-evict", func(b *testing.B) {
		// A full table: every login is a new network and evicts one.
		tab := benchTable(b, 100_000)
		logins := make([]string, 64)
		for i := range logins {
			logins[i] = fmt.Sprint("user", i, "@example.com")
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			a := netip.AddrFrom4([4]byte{101, byte(i >> 16), byte(i >> 8), byte(i)})
			tab.Login(logins[i&63], rules.IMAP, "dovecot", a, at(time.Duration(i)*time.Millisecond))
		}
	})
}

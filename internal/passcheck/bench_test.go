package passcheck

import (
	"context"
	"net/netip"
	"testing"
)

// BenchmarkVerify measures verifications of a correct password against
// the real Dovecot 2.3: over the auth service one at a time and from
// parallel goroutines sharing the one connection, and by IMAP LOGIN (a new
// connection and an imap process per verification). Run:
//
//	go test -run '^$' -bench BenchmarkVerify -benchmem ./internal/passcheck/
func BenchmarkVerify(b *testing.B) {
	dc := startRealDovecot(b, "")
	ctx := context.Background()
	r := &Request{
		Service: "smtp", Login: "bob@example.test", Password: "Bob-Secret-1701",
		Client: netip.MustParseAddr("127.0.60.1"), ClientPort: 40000, TLS: true,
	}
	run := func(b *testing.B, v verifier) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := v.Verify(ctx, r); !ok || err != nil {
				b.Fatalf("Verify: %v, %v", ok, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
	}
	b.Run("dovecot", func(b *testing.B) {
		d := NewDovecot(dc.AuthAddr, DovecotOptions{}, nil)
		defer d.Close()
		run(b, d)
	})
	b.Run("dovecot-parallel", func(b *testing.B) {
		d := NewDovecot(dc.AuthAddr, DovecotOptions{}, nil)
		defer d.Close()
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if ok, err := d.Verify(ctx, r); !ok || err != nil {
					b.Errorf("Verify: %v, %v", ok, err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
	})
	b.Run("imap", func(b *testing.B) {
		run(b, NewIMAP(dc.IMAPAddr, IMAPOptions{SendID: true}))
	})
}

// BenchmarkBuildAuth measures rendering one AUTH line.
func BenchmarkBuildAuth(b *testing.B) {
	r := &Request{Service: "smtp", Login: "alice@example.test", Password: "alicepw", Client: netip.MustParseAddr("198.51.100.20"), Session: "abc"}
	b.ReportAllocs()
	for b.Loop() {
		clear(buildAuth(1, r))
	}
}

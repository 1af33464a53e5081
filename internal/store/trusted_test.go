package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

func TestTrustedRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ts := []TrustedAddr{
		{Addr: netip.MustParseAddr("::ffff:192.0.2.7"), Login: "alice@example.com", Expires: now.Add(time.Hour)},
		{Addr: netip.MustParseAddr("2001:db8::7"), Login: "bob@example.com", Expires: now.Add(time.Minute)},
		{Addr: netip.MustParseAddr("192.0.2.8"), Login: "carol@example.com", Expires: now},
	}
	if err := s.SaveTrusted(ctx, ts); err != nil {
		t.Fatal(err)
	}
	// A later login refreshes.
	if err := s.SaveTrusted(ctx, []TrustedAddr{{Addr: netip.MustParseAddr("2001:db8::7"), Login: "dave@example.com", Expires: now.Add(2 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Trusted(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Addr.String() != "192.0.2.7" || !got[0].Expires.Equal(now.Add(time.Hour)) ||
		got[1].Login != "dave@example.com" || !got[1].Expires.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("got %+v", got)
	}
	if err := s.DeleteTrusted(ctx, []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.7")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Trusted(ctx, now); len(got) != 1 || got[0].Login != "dave@example.com" {
		t.Fatalf("after DeleteTrusted: %+v", got)
	}
	if n, err := s.DeleteExpiredTrusted(ctx, now.Add(90*time.Minute)); err != nil || n != 1 {
		t.Fatalf("deleted %d: %v", n, err)
	}
	if err := s.SaveTrusted(ctx, []TrustedAddr{{Addr: netip.Addr{}, Expires: now}}); err == nil {
		t.Error("an invalid address was stored")
	}
}

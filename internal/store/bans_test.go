package store

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/abuse"
)

func TestBansAndKnownGood(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	bans := []abuse.Ban{
		{ID: 7, Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Reason: "addr_failures", Created: now, Expires: now.Add(5 * time.Minute), CreatedBy: "mailgate"},
		{ID: 8, Kind: abuse.BanLogin, Login: "bob@example.com", Reason: "login_attack", Created: now, Expires: now.Add(10 * time.Minute), CreatedBy: "mailgate"},
		{ID: 9, Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Reason: "manual", Created: now, Comment: `a "quoted" comment`, CreatedBy: "root"},
	}
	if err := s.AddBans(ctx, now, "mailgate", bans[:2], false); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBans(ctx, now, "root", bans[2:], true); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBans(ctx, now, "", bans[2:], true); err == nil {
		t.Fatal("a ban without an actor was stored")
	}
	kg := []abuse.KnownGood{
		{Login: "bob@example.com", Prefix: netip.MustParsePrefix("198.51.100.7/32"), Last: now.Add(-time.Hour)},
		{Login: "bob@example.com", Prefix: netip.MustParsePrefix("2001:db8:9::/64"), Last: now.Add(-40 * 24 * time.Hour)},
	}
	if err := s.SaveKnownGood(ctx, kg, now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A later success moves Last forward; an older one does not move it back.
	kg[0].Last = now
	if err := s.SaveKnownGood(ctx, kg[:1], now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	kg[0].Last = now.Add(-2 * time.Hour)
	if err := s.SaveKnownGood(ctx, kg[:1], now.Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Everything is there after reopening.
	s, err = OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, maxID, err := s.Bans(ctx, now.Add(time.Minute))
	if err != nil || maxID != 9 || len(got) != 3 {
		t.Fatalf("Bans: %+v, max %d, %v", got, maxID, err)
	}
	for i := range got {
		if got[i].ID != bans[i].ID || got[i].Kind != bans[i].Kind || got[i].Prefix != bans[i].Prefix || got[i].Login != bans[i].Login ||
			got[i].Reason != bans[i].Reason || !got[i].Expires.Equal(bans[i].Expires) || got[i].Comment != bans[i].Comment || got[i].CreatedBy != bans[i].CreatedBy {
			t.Errorf("ban %d: got %+v, want %+v", i, got[i], bans[i])
		}
	}
	// At 6 minutes the address ban has expired and is not returned.
	if got, _, _ := s.Bans(ctx, now.Add(6*time.Minute)); len(got) != 2 {
		t.Errorf("after 6m: %d bans", len(got))
	}
	if err := s.DeleteExpiredBans(ctx, now.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Automatic bans leave no audit row; their ids are still not reused.
	if err := s.DeleteBans(ctx, now, "root", bans[2:]); err != nil {
		t.Fatal(err)
	}
	if got, maxID, _ := s.Bans(ctx, now); len(got) != 0 || maxID != 9 {
		t.Errorf("after deleting all: %+v (max id %d)", got, maxID)
	}
	if err := s.AddBans(ctx, now, "root", bans[2:], true); err != nil {
		t.Fatal(err)
	}
	if got, maxID, _ := s.Bans(ctx, now); len(got) != 1 || maxID != 9 {
		t.Errorf("after deleting expired: %+v (max id %d)", got, maxID)
	}
	if err := s.DeleteBans(ctx, now, "root", bans[2:]); err != nil {
		t.Fatal(err)
	}
	// The highest id is remembered through the audit trail, so ids are not reused.
	if got, maxID, _ := s.Bans(ctx, now); len(got) != 0 || maxID != 9 {
		t.Errorf("after deleting all: %+v (max id %d)", got, maxID)
	}
	audit, err := s.BanAudit(ctx, 10)
	if err != nil || len(audit) != 4 || audit[0].Op != OpUnban || audit[1].Op != OpBan || audit[1].RuleID != 9 || audit[0].Actor != "root" {
		t.Errorf("ban audit: %+v %v", audit, err)
	}
	good, err := s.KnownGood(ctx, now.Add(-30*24*time.Hour))
	if err != nil || len(good) != 1 || !good[0].Last.Equal(now) || good[0].Prefix != kg[0].Prefix {
		t.Errorf("known good: %+v %v", good, err)
	}
}

package storetest

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/store"
)

// StateStore is what RunState exercises: the live state a backend keeps
// (bans and their audit, known-good addresses, firewall trust, weak
// passwords).
type StateStore interface {
	AddBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban, audit bool) error
	DeleteBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban) error
	ForgetBans(ctx context.Context, ids []int64) error
	Bans(ctx context.Context, now time.Time) ([]abuse.Ban, int64, error)
	DeleteExpiredBans(ctx context.Context, now time.Time) error
	BanAudit(ctx context.Context, limit int) ([]store.AuditEntry, error)
	SaveKnownGood(ctx context.Context, kg []abuse.KnownGood, forgetBefore time.Time) error
	KnownGood(ctx context.Context, since time.Time) ([]abuse.KnownGood, error)
	SaveTrusted(ctx context.Context, ts []store.TrustedAddr) error
	Trusted(ctx context.Context, now time.Time) ([]store.TrustedAddr, error)
	DeleteExpiredTrusted(ctx context.Context, now time.Time) (int, error)
	DeleteTrusted(ctx context.Context, addrs []netip.Addr) error
	SaveWeak(ctx context.Context, ws []store.WeakLogin) error
	WeakLogins(ctx context.Context, since time.Time) ([]store.WeakLogin, error)
	DeleteWeakBefore(ctx context.Context, before time.Time) (int64, error)
	Close() error
}

// RunState runs the live-state suite; open works as for Run.
func RunState(t *testing.T, open func(t *testing.T) StateStore) {
	tests := []struct {
		name string
		f    func(t *testing.T, open func(t *testing.T) StateStore)
	}{
		{"BansAndKnownGood", testBansAndKnownGood},
		{"BanBadInputNoChange", testBanBadInput},
		{"Trusted", testTrusted},
		{"Weak", testWeak},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, open)
		})
	}
}

func openState(t *testing.T, open func(t *testing.T) StateStore) StateStore {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

var tState = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func sampleBans() []abuse.Ban {
	now := tState
	return []abuse.Ban{
		{ID: 7, Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Reason: "addr_failures", Created: now, Expires: now.Add(5 * time.Minute), CreatedBy: "mailgate"},
		{ID: 8, Kind: abuse.BanLogin, Login: "bob@example.com", Reason: "login_attack", Created: now, Expires: now.Add(10 * time.Minute), CreatedBy: "mailgate"},
		{ID: 9, Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.0/24"), Reason: "manual", Created: now, Comment: `a "quoted" comment`, CreatedBy: "root"},
	}
}

func testBansAndKnownGood(t *testing.T, open func(t *testing.T) StateStore) {
	ctx := context.Background()
	now := tState
	bans := sampleBans()
	s := open(t)
	if err := s.AddBans(ctx, now, "mailgate", bans[:2], false); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBans(ctx, now, "root", bans[2:], true); err != nil {
		t.Fatal(err)
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

	s = openState(t, open) // everything is there after reopening
	got, maxID, err := s.Bans(ctx, now.Add(time.Minute))
	if err != nil || maxID != 9 || len(got) != 3 {
		t.Fatalf("Bans: %+v, max %d, %v", got, maxID, err)
	}
	for i := range got {
		if got[i].ID != bans[i].ID || got[i].Kind != bans[i].Kind || got[i].Prefix != bans[i].Prefix || got[i].Login != bans[i].Login ||
			got[i].Reason != bans[i].Reason || !got[i].Created.Equal(bans[i].Created) || got[i].Created.Location() != time.UTC ||
			!got[i].Expires.Equal(bans[i].Expires) || got[i].Comment != bans[i].Comment || got[i].CreatedBy != bans[i].CreatedBy {
			t.Errorf("ban %d: got %+v, want %+v", i, got[i], bans[i])
		}
	}
	if got, _, _ := s.Bans(ctx, now.Add(6*time.Minute)); len(got) != 2 {
		t.Errorf("after 6m: %d bans, want 2 (the address ban expired)", len(got))
	}
	if err := s.DeleteExpiredBans(ctx, now.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Bans(ctx, now); len(got) != 1 || got[0].ID != 9 {
		t.Errorf("after DeleteExpiredBans: %+v", got)
	}
	// Replacing a ban by id (the tracker widened it).
	b := bans[2]
	b.Prefix = netip.MustParsePrefix("192.0.0.0/16")
	if err := s.AddBans(ctx, now, "mailgate", []abuse.Ban{b}, false); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Bans(ctx, now); len(got) != 1 || got[0].Prefix != b.Prefix {
		t.Errorf("after replacing ban 9: %+v", got)
	}
	if err := s.DeleteBans(ctx, now, "root", bans[2:]); err != nil {
		t.Fatal(err)
	}
	// Deleted bans' ids are not given again.
	if got, maxID, _ := s.Bans(ctx, now); len(got) != 0 || maxID != 9 {
		t.Errorf("after deleting all: %+v (max id %d)", got, maxID)
	}
	if err := s.AddBans(ctx, now, "mailgate", bans[:1], false); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetBans(ctx, []int64{7, 1234}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Bans(ctx, now); len(got) != 0 {
		t.Errorf("after ForgetBans: %+v", got)
	}
	audit, err := s.BanAudit(ctx, 10)
	if err != nil || len(audit) != 2 || audit[0].Op != store.OpUnban || audit[1].Op != store.OpBan ||
		audit[1].RuleID != 9 || audit[0].Actor != "root" || !audit[0].At.Equal(now) || audit[0].At.Location() != time.UTC ||
		audit[1].Detail != store.BanDetail(&bans[2]) {
		t.Errorf("ban audit: %+v %v", audit, err)
	}
	if all, _ := s.BanAudit(ctx, 0); len(all) != 2 {
		t.Errorf("ban audit, no limit: %d entries", len(all))
	}
	if one, _ := s.BanAudit(ctx, 1); len(one) != 1 || one[0].Op != store.OpUnban {
		t.Errorf("ban audit, limit 1: %+v", one)
	}
	good, err := s.KnownGood(ctx, now.Add(-30*24*time.Hour))
	if err != nil || len(good) != 1 || !good[0].Last.Equal(now) || good[0].Prefix != kg[0].Prefix || good[0].Login != kg[0].Login {
		t.Errorf("known good: %+v %v", good, err)
	}
}

// testBanBadInput: a batch with one bad ban, or no actor, stores nothing.
func testBanBadInput(t *testing.T, open func(t *testing.T) StateStore) {
	ctx := context.Background()
	s := openState(t, open)
	bans := sampleBans()
	bad := bans[1]
	bad.ID = 0
	if err := s.AddBans(ctx, tState, "root", []abuse.Ban{bans[0], bad}, true); err == nil {
		t.Error("a ban without an id was stored")
	}
	if err := s.AddBans(ctx, tState, "", bans[:1], true); err == nil {
		t.Error("a ban without an actor was stored")
	}
	if err := s.SaveKnownGood(ctx, []abuse.KnownGood{{Login: "", Prefix: netip.MustParsePrefix("192.0.2.1/32"), Last: tState}}, time.Time{}); err == nil {
		t.Error("a known-good pair without a login was stored")
	}
	got, _, err := s.Bans(ctx, tState)
	if err != nil || len(got) != 0 {
		t.Errorf("after bad input: %+v, %v", got, err)
	}
	if a, _ := s.BanAudit(ctx, 0); len(a) != 0 {
		t.Errorf("audit after bad input: %+v", a)
	}
	if kg, _ := s.KnownGood(ctx, time.Time{}); len(kg) != 0 {
		t.Errorf("known good after bad input: %+v", kg)
	}
}

func testTrusted(t *testing.T, open func(t *testing.T) StateStore) {
	ctx := context.Background()
	s := openState(t, open)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ts := []store.TrustedAddr{
		{Addr: netip.MustParseAddr("::ffff:192.0.2.7"), Login: "alice@example.com", Expires: now.Add(time.Hour)},
		{Addr: netip.MustParseAddr("2001:db8::7"), Login: "bob@example.com", Expires: now.Add(time.Minute)},
		{Addr: netip.MustParseAddr("192.0.2.8"), Login: "carol@example.com", Expires: now},
	}
	if err := s.SaveTrusted(ctx, ts); err != nil {
		t.Fatal(err)
	}
	// A later login refreshes.
	if err := s.SaveTrusted(ctx, []store.TrustedAddr{{Addr: netip.MustParseAddr("2001:db8::7"), Login: "dave@example.com", Expires: now.Add(2 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Trusted(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Addr.String() != "192.0.2.7" || !got[0].Expires.Equal(now.Add(time.Hour)) || got[0].Login != "alice@example.com" ||
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
		t.Fatalf("DeleteExpiredTrusted: %d, %v", n, err)
	}
	if err := s.SaveTrusted(ctx, []store.TrustedAddr{
		{Addr: netip.MustParseAddr("192.0.2.9"), Login: "eve@example.com", Expires: now.Add(3 * time.Hour)},
		{Addr: netip.Addr{}, Expires: now.Add(3 * time.Hour)},
	}); err == nil {
		t.Error("an invalid address was stored")
	}
	if got, _ := s.Trusted(ctx, now); len(got) != 1 || got[0].Login != "dave@example.com" {
		t.Errorf("a batch with a bad address was partly stored: %+v", got)
	}
}

// testWeak: flags are upserted (the later time wins), removed by a zero
// time, listed since a time, pruned, and a bad row is skipped.
func testWeak(t *testing.T, open func(t *testing.T) StateStore) {
	ctx := context.Background()
	s := openState(t, open)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.SaveWeak(ctx, []store.WeakLogin{
		{Login: "alice@example.com", Seen: t0},
		{Login: "bob@example.com", Seen: t0.Add(-48 * time.Hour)},
		{Login: "carol@example.com", Seen: t0.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	err := s.SaveWeak(ctx, []store.WeakLogin{
		{Login: "alice@example.com", Seen: t0.Add(-time.Hour)},
		{Login: "carol@example.com"},
		{Login: ""},
	})
	var br *store.BadRows
	if !errors.As(err, &br) {
		t.Fatalf("bad row: err = %v", err)
	}
	got, err := s.WeakLogins(ctx, t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Login != "alice@example.com" || !got[0].Seen.Equal(t0) {
		t.Fatalf("WeakLogins = %+v", got)
	}
	if all, _ := s.WeakLogins(ctx, time.Time{}); len(all) != 2 || all[0].Login != "alice@example.com" {
		t.Fatalf("all = %+v", all)
	}
	if n, err := s.DeleteWeakBefore(ctx, t0.Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("DeleteWeakBefore = %d, %v", n, err)
	}
	if all, _ := s.WeakLogins(ctx, time.Time{}); len(all) != 1 {
		t.Fatalf("after prune = %+v", all)
	}
}

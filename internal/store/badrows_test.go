package store

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
)

// A stored row of live state that cannot be read back (written by an
// older mailgate, or by hand) is skipped and reported; the good rows are
// still returned. Before, Bans failed on the first such row and mailgate
// did not start.
func TestBadRowsSkipped(t *testing.T) {
	ctx := t.Context()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	good := abuse.Ban{ID: 1, Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: abuse.ReasonAddrFailures,
		Created: now, Expires: now.Add(time.Hour), CreatedBy: "mailgate"}
	if err := s.AddBans(ctx, now, "mailgate", []abuse.Ban{good}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveKnownGood(ctx, []abuse.KnownGood{{Login: "bob@example.com", Prefix: netip.MustParsePrefix("192.0.2.9/32"), Last: now}}, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTrusted(ctx, []TrustedAddr{{Addr: netip.MustParseAddr("192.0.2.9"), Login: "bob@example.com", Expires: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 400)
	exp := now.Add(time.Hour).Unix()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by) VALUES (2, 'login', '', ?, 'login_attack', ?, ?, '', 'mailgate')`, []any{long, now.Unix(), exp}},
		{`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by) VALUES (3, 'address', '300.1.1.1/32', '', 'addr_failures', ?, ?, '', 'mailgate')`, []any{now.Unix(), exp}},
		{`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by) VALUES (4, 'address', '192.0.2.4/32', '', 'nonsense', ?, ?, '', 'root')`, []any{now.Unix(), exp}},
		{`INSERT INTO known_good (login, prefix, last) VALUES ('bob@example.com', 'nonsense', ?)`, []any{now.Unix()}},
		{`INSERT INTO known_good (login, prefix, last) VALUES (?, '192.0.2.10/32', ?)`, []any{long, now.Unix()}},
		{`INSERT INTO fw_trusted (addr, login, expires) VALUES ('192.0.2.300', 'x', ?)`, []any{exp}},
	} {
		if _, err := s.db.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	var bad *BadRows
	bans, maxID, err := s.Bans(ctx, now)
	if !errors.As(err, &bad) || len(bad.Errs) != 3 {
		t.Errorf("Bans error %v, want a *BadRows of 3 rows", err)
	}
	if len(bans) != 1 || bans[0].ID != 1 || maxID < 1 {
		t.Errorf("Bans = %+v (max id %d), want ban 1 only", bans, maxID)
	}
	kg, err := s.KnownGood(ctx, now.Add(-time.Hour))
	if !errors.As(err, &bad) || len(bad.Errs) != 2 {
		t.Errorf("KnownGood error %v, want a *BadRows of 2 rows", err)
	}
	if len(kg) != 1 || kg[0].Login != "bob@example.com" {
		t.Errorf("KnownGood = %+v, want bob's only", kg)
	}
	ts, err := s.Trusted(ctx, now)
	if !errors.As(err, &bad) || len(bad.Errs) != 1 {
		t.Errorf("Trusted error %v, want a *BadRows of 1 row", err)
	}
	if len(ts) != 1 || ts[0].Addr != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("Trusted = %+v, want 192.0.2.9 only", ts)
	}
}

// A ban the tracker would refuse at start is refused by AddBans, and so
// are known-good pairs and trusted addresses that could not be read back.
func TestBadRowsRefused(t *testing.T) {
	ctx := t.Context()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	long := strings.Repeat("x", 400)
	if err := s.AddBans(ctx, now, "mailgate", []abuse.Ban{{ID: 5, Kind: abuse.BanLogin, Login: long, Reason: abuse.ReasonLoginAttack,
		Created: now, Expires: now.Add(time.Hour), CreatedBy: "mailgate"}}, false); err == nil {
		t.Error("AddBans stored a ban of a 400-byte login")
	}
	if err := s.SaveKnownGood(ctx, []abuse.KnownGood{{Login: long, Prefix: netip.MustParsePrefix("192.0.2.9/32"), Last: now}}, now); err == nil {
		t.Error("SaveKnownGood stored a 400-byte login")
	}
	if err := s.SaveTrusted(ctx, []TrustedAddr{{Addr: netip.MustParseAddr("192.0.2.9"), Login: strings.Repeat("x", 600), Expires: now.Add(time.Hour)}}); err == nil {
		t.Error("SaveTrusted stored a 600-byte login")
	}
	if bans, _, err := s.Bans(ctx, now); err != nil || len(bans) != 0 {
		t.Errorf("Bans = %+v, %v after refused writes", bans, err)
	}
}

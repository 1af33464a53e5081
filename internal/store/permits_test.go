package store

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// A file made by schema version 3 gets the permit tables in version 4 and
// keeps its rules, bans and audit trail.
func TestMigrateToV4(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v3.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		migrations[0], migrations[1], migrations[2],
		`INSERT INTO schema_version (version) VALUES (3)`,
		`INSERT INTO rules (scope, account, service, action, "match", comment, expires, created, created_by) VALUES
			('account', 'alice@example.com', 'all', 'extra', 'country:FR', 'holiday', NULL, 1700000000, 'cli:root')`,
		`INSERT INTO audit (at, actor, op, rule_id, detail) VALUES (1700000000, 'cli:root', 'add', 1, 'account=alice@example.com')`,
		`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by) VALUES
			(5, 'address', '192.0.2.0/24', '', 'manual', 1700000000, NULL, 'scanner', 'cli:root')`,
		`UPDATE ban_ids SET max_id = 5`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1700000100, 0).UTC()
	rs, err := s.Rules(ctx)
	if err != nil || len(rs) != 1 || rs[0].Countries != "FR" || rs[0].Comment != "holiday" {
		t.Fatalf("rules after migration: %+v, %v", rs, err)
	}
	if a, err := s.Audit(ctx, 0); err != nil || len(a) != 1 {
		t.Fatalf("audit after migration: %+v, %v", a, err)
	}
	bans, maxID, err := s.Bans(ctx, now)
	if err != nil || len(bans) != 1 || maxID != 5 || bans[0].Comment != "scanner" {
		t.Fatalf("bans after migration: %+v, %d, %v", bans, maxID, err)
	}
	p := relay.Permit{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Login: "alice@example.com", Service: rules.IMAP,
		Door: "dovecot", Granted: now, Expires: now.Add(30 * time.Minute), Logins: 1}
	if err := s.SavePermits(ctx, []relay.Permit{p}); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.Permits(ctx, now); err != nil || len(ps) != 1 || ps[0].Login != p.Login {
		t.Fatalf("permits after migration: %+v, %v", ps, err)
	}
}

// A stored permit that no longer parses is skipped and reported (a
// *BadRows naming it), not silently dropped, and not fatal.
func TestPermitCorruptRow(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1700000000, 0).UTC()
	p := relay.Permit{Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Login: "alice@example.com", Service: rules.POP3,
		Door: "hook", Granted: now, Expires: now.Add(time.Hour), Logins: 1}
	if err := s.SavePermits(ctx, []relay.Permit{p}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ update, want string }{
		{`UPDATE permits SET service = 'uucp'`, `permit 2001:db8:1:2::/64: unknown service "uucp"`},
		{`UPDATE permits SET service = 'pop3', prefix = '2001:db8:1:2::/299'`, `permit "2001:db8:1:2::/299": bad prefix`},
	} {
		if _, err := s.db.Exec(c.update); err != nil {
			t.Fatal(err)
		}
		ps, err := s.Permits(ctx, now)
		var bad *BadRows
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("after %s: Permits error %v, want a *BadRows containing %q", c.update, err, c.want)
		}
		if len(ps) != 0 {
			t.Errorf("after %s: the bad row was returned: %+v", c.update, ps)
		}
	}
}

func TestPermitDetail(t *testing.T) {
	exp := time.Date(2026, 3, 1, 12, 30, 0, 0, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		p    relay.Permit
		want string
	}{
		{relay.Permit{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Login: "alice@example.com", Service: rules.IMAP, Door: "dovecot", Expires: exp, Logins: 2},
			"address=192.0.2.7/32 login=alice@example.com service=imap door=dovecot expires=2026-03-01T11:30:00Z logins=2"},
		{relay.Permit{Prefix: netip.MustParsePrefix("2001:db8::/64"), Service: rules.AllServices, Door: "manual", Expires: exp, Comment: `the "office"`, By: "cli:root"},
			`address=2001:db8::/64 service=all door=manual expires=2026-03-01T11:30:00Z comment="the \"office\""`},
	} {
		if got := PermitDetail(&c.p); got != c.want {
			t.Errorf("PermitDetail:\n got %s\nwant %s", got, c.want)
		}
	}
}

// BenchmarkSavePermits measures one SavePermits of b.N permits (one
// transaction), as at a flush after many logins.
func BenchmarkSavePermits(b *testing.B) {
	s, err := OpenSQLite(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Unix(1700000000, 0).UTC()
	ps := make([]relay.Permit, b.N)
	for i := range ps {
		ps[i] = relay.Permit{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
			Login: "user@example.com", Service: rules.IMAP, Door: "dovecot", Granted: now, Expires: now.Add(30 * time.Minute), Logins: 1}
	}
	b.ResetTimer()
	if err := s.SavePermits(b.Context(), ps); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if b.N >= 10000 {
		got, err := s.Permits(b.Context(), now)
		if err != nil || len(got) != b.N {
			b.Fatalf("Permits: %d, %v", len(got), err)
		}
	}
}

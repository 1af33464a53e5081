package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// PermitStore is what RunPermits exercises: the relay permit methods of a
// backend. It is separate from Store because permits and rules may live
// in different backends (permits in Redis, rules in PostgreSQL).
type PermitStore interface {
	SavePermits(ctx context.Context, ps []relay.Permit) error
	AddPermit(ctx context.Context, now time.Time, actor string, p relay.Permit) error
	DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error
	Permits(ctx context.Context, now time.Time) ([]relay.Permit, error)
	DeleteExpiredPermits(ctx context.Context, now time.Time) (int, error)
	PermitAudit(ctx context.Context, limit int) ([]store.AuditEntry, error)
	Close() error
}

// RunPermits runs the permit suite; open works as for Run.
func RunPermits(t *testing.T, open func(t *testing.T) PermitStore) {
	tests := []struct {
		name string
		f    func(t *testing.T, open func(t *testing.T) PermitStore)
	}{
		{"RoundTrip", testPermitRoundTrip},
		{"Upsert", testPermitUpsert},
		{"Expiry", testPermitExpiry},
		{"Audit", testPermitAudit},
		{"Reopen", testPermitReopen},
		{"BadInputNoChange", testPermitBadInput},
		{"Empty", testPermitEmpty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, open)
		})
	}
}

func openPermits(t *testing.T, open func(t *testing.T) PermitStore) PermitStore {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

// samplePermits covers every field: IPv4 and IPv6 (a /64 and a /128),
// every granting service, a manual permit with a comment, in an order
// that is not the listing's.
func samplePermits() []relay.Permit {
	return []relay.Permit{
		{Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Login: "alice@example.com", Service: rules.IMAP, Door: "dovecot",
			Granted: t0, Expires: t0.Add(30 * time.Minute), Logins: 3},
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Login: "bob@example.com", Service: rules.POP3, Door: "hook",
			Granted: t0.Add(-time.Hour), Expires: t0.Add(10 * time.Minute), Logins: 12},
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Service: rules.AllServices, Door: "manual",
			Granted: t0, Expires: t0.Add(24 * time.Hour), Comment: `office "printer", ünïcode`, By: "cli:root"},
		{Prefix: netip.MustParsePrefix("2001:db8:1:2::5/128"), Login: "carol@example.com", Service: rules.Sieve, Door: "nginx",
			Granted: t0, Expires: t0.Add(time.Hour), Logins: 1},
		{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Login: "dave@example.com", Service: rules.IMAP, Door: "dovecot",
			Granted: t0, Expires: t0.Add(time.Hour), Logins: 1},
		// Sorts first by address, last as text.
		{Prefix: netip.MustParsePrefix("9.9.9.9/32"), Login: "erin@example.com", Service: rules.POP3, Door: "dovecot",
			Granted: t0, Expires: t0.Add(time.Hour), Logins: 1},
	}
}

// sortedPermits returns ps in the listing's order: by address, then
// length, IPv4 first.
func sortedPermits(ps []relay.Permit) []relay.Permit {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b relay.Permit) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

func equalPermit(a, b relay.Permit) bool {
	return a.Prefix == b.Prefix && a.Login == b.Login && a.Service == b.Service && a.Door == b.Door &&
		a.Granted.Equal(b.Granted) && a.Granted.Location() == time.UTC &&
		a.Expires.Equal(b.Expires) && a.Expires.Location() == time.UTC &&
		a.Logins == b.Logins && a.Comment == b.Comment && a.By == b.By
}

func diffPermits(t *testing.T, what string, got, want []relay.Permit) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d permits, want %d:\ngot  %+v\nwant %+v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if !equalPermit(got[i], want[i]) {
			t.Errorf("%s: permit %d:\ngot  %+v\nwant %+v", what, i, got[i], want[i])
		}
	}
}

func testPermitRoundTrip(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := openPermits(t, open)
	in := samplePermits()
	// Times in another zone and with fractions come back as whole UTC seconds.
	cet := time.FixedZone("CET", 3600)
	in[0].Granted = in[0].Granted.Add(700 * time.Millisecond).In(cet)
	in[0].Expires = in[0].Expires.Add(999 * time.Millisecond).In(cet)
	if err := s.SavePermits(ctx, in); err != nil {
		t.Fatal(err)
	}
	want := sortedPermits(samplePermits())
	got, err := s.Permits(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	diffPermits(t, "Permits", got, want)
	if want[0].Prefix.String() != "9.9.9.9/32" || want[len(want)-1].Prefix.String() != "2001:db8:1:2::5/128" {
		t.Fatalf("test's own order is wrong: %v", want)
	}
	audit, err := s.PermitAudit(ctx, 0)
	if err != nil || len(audit) != 0 {
		t.Errorf("SavePermits wrote audit rows: %+v, %v", audit, err)
	}
}

func testPermitUpsert(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := openPermits(t, open)
	ps := samplePermits()
	if err := s.SavePermits(ctx, ps); err != nil {
		t.Fatal(err)
	}
	// A refresh keeps Granted and moves Expires; another login took over.
	ref := ps[1]
	ref.Expires = t0.Add(40 * time.Minute)
	ref.Logins++
	ref.Login = "bob2@example.com"
	ref.Service = rules.IMAP
	if err := s.SavePermits(ctx, []relay.Permit{ref}); err != nil {
		t.Fatal(err)
	}
	ps[1] = ref
	got, err := s.Permits(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	diffPermits(t, "after refresh", got, sortedPermits(ps))
	// A manual permit replaces an automatic one for the same prefix.
	man := relay.Permit{Prefix: ps[0].Prefix, Service: rules.AllServices, Door: "manual",
		Granted: t0, Expires: t0.Add(48 * time.Hour), Comment: "home", By: "ignored"}
	if err := s.AddPermit(ctx, t0, "api:admin", man); err != nil {
		t.Fatal(err)
	}
	man.By = "api:admin" // AddPermit records the actor
	ps[0] = man
	got, err = s.Permits(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	diffPermits(t, "after manual add", got, sortedPermits(ps))
}

func testPermitExpiry(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := openPermits(t, open)
	ps := samplePermits() // expiries: +30m, +10m, +24h, +1h, +1h, +1h
	if err := s.SavePermits(ctx, ps); err != nil {
		t.Fatal(err)
	}
	// Expires > now: a permit is gone at its expiry time exactly.
	for _, c := range []struct {
		at   time.Duration
		want []relay.Permit
	}{
		{10*time.Minute - time.Second, ps},
		{10 * time.Minute, []relay.Permit{ps[0], ps[2], ps[3], ps[4], ps[5]}},
		{time.Hour, []relay.Permit{ps[2]}},
		{24 * time.Hour, nil},
	} {
		got, err := s.Permits(ctx, t0.Add(c.at))
		if err != nil {
			t.Fatal(err)
		}
		diffPermits(t, fmt.Sprintf("Permits at +%v", c.at), got, sortedPermits(c.want))
	}
	n, err := s.DeleteExpiredPermits(ctx, t0.Add(10*time.Minute-time.Second))
	if err != nil || n != 0 {
		t.Fatalf("DeleteExpiredPermits before any expiry: %d, %v", n, err)
	}
	n, err = s.DeleteExpiredPermits(ctx, t0.Add(time.Hour))
	if err != nil || n != 5 {
		t.Fatalf("DeleteExpiredPermits at +1h: %d, %v; want 5", n, err)
	}
	// Deleted, not just hidden: an earlier now does not bring them back.
	got, err := s.Permits(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	diffPermits(t, "after DeleteExpiredPermits", got, []relay.Permit{ps[2]})
	audit, err := s.PermitAudit(ctx, 0)
	if err != nil || len(audit) != 0 {
		t.Errorf("expiry wrote audit rows: %+v, %v", audit, err)
	}
}

func testPermitAudit(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := openPermits(t, open)
	ps := samplePermits()
	if err := s.SavePermits(ctx, ps[:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPermit(ctx, t0, "cli:root", ps[2]); err != nil {
		t.Fatal(err)
	}
	// An automatic removal (a shared network lost its permit) leaves no
	// audit row; an admin's does.
	if err := s.DeletePermits(ctx, t0.Add(time.Minute), "mailgate", ps[1:2], false); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePermits(ctx, t0.Add(2*time.Minute), "api:alice", []relay.Permit{ps[0], ps[2]}, true); err != nil {
		t.Fatal(err)
	}
	got, err := s.Permits(ctx, t0)
	if err != nil || len(got) != 0 {
		t.Fatalf("permits left: %+v, %v", got, err)
	}
	all, err := s.PermitAudit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		at     time.Time
		actor  string
		op     string
		prefix string
	}
	want := []entry{
		{t0.Add(2 * time.Minute), "api:alice", store.OpRemove, "192.0.2.10/32"},
		{t0.Add(2 * time.Minute), "api:alice", store.OpRemove, "2001:db8:1:2::/64"},
		{t0, "cli:root", store.OpAdd, "192.0.2.10/32"},
	}
	if len(all) != len(want) {
		t.Fatalf("audit has %d entries, want %d: %+v", len(all), len(want), all)
	}
	for i, w := range want {
		e := all[i]
		if !e.At.Equal(w.at) || e.Actor != w.actor || e.Op != w.op || e.RuleID != 0 ||
			!strings.HasPrefix(e.Detail, "address="+w.prefix+" ") {
			t.Errorf("audit %d: %+v, want %+v", i, e, w)
		}
		if i > 0 && e.ID >= all[i-1].ID {
			t.Errorf("audit not newest first: id %d after %d", e.ID, all[i-1].ID)
		}
	}
	for _, part := range []string{"door=manual", "service=all", `comment="office \"printer\", ünïcode"`, "expires=2026-03-02T12:00:00Z"} {
		if !strings.Contains(all[2].Detail, part) {
			t.Errorf("add detail %q lacks %q", all[2].Detail, part)
		}
	}
	for _, part := range []string{"login=alice@example.com", "service=imap", "door=dovecot", "logins=3"} {
		if !strings.Contains(all[1].Detail, part) {
			t.Errorf("remove detail %q lacks %q", all[1].Detail, part)
		}
	}
	two, err := s.PermitAudit(ctx, 2)
	if err != nil || len(two) != 2 || two[0] != all[0] || two[1] != all[1] {
		t.Errorf("PermitAudit(2) = %+v, %v; want the two newest", two, err)
	}
	if err := s.AddPermit(ctx, t0, "", ps[2]); err == nil {
		t.Error("AddPermit with no actor succeeded")
	}
	if err := s.DeletePermits(ctx, t0, " ", ps[:1], true); err == nil {
		t.Error("DeletePermits with no actor succeeded")
	}
}

func testPermitReopen(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := open(t)
	ps := samplePermits()
	err := s.SavePermits(ctx, slices.Concat(ps[:4], ps[5:]))
	if err == nil {
		err = s.AddPermit(ctx, t0, "cli:root", ps[4])
	}
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openPermits(t, open)
	got, err := s2.Permits(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	ps[4].By = "cli:root"
	diffPermits(t, "Permits after reopen", got, sortedPermits(ps))
	audit, err := s2.PermitAudit(ctx, 0)
	if err != nil || len(audit) != 1 || audit[0].Op != store.OpAdd {
		t.Errorf("audit after reopen: %+v, %v", audit, err)
	}
}

func testPermitBadInput(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := openPermits(t, open)
	good := samplePermits()[:2]
	if err := s.SavePermits(ctx, good); err != nil {
		t.Fatal(err)
	}
	base := samplePermits()[3]
	bad := map[string]func(p *relay.Permit){
		"zero prefix":    func(p *relay.Permit) { p.Prefix = netip.Prefix{} },
		"host bits":      func(p *relay.Permit) { p.Prefix = netip.MustParsePrefix("2001:db8::1/64") },
		"other service":  func(p *relay.Permit) { p.Service = rules.OtherService },
		"no such svc":    func(p *relay.Permit) { p.Service = 200 },
		"no door":        func(p *relay.Permit) { p.Door = "" },
		"long door":      func(p *relay.Permit) { p.Door = strings.Repeat("d", store.MaxDoorLen+1) },
		"bad utf-8":      func(p *relay.Permit) { p.Login = "a\xff@example.com" },
		"control":        func(p *relay.Permit) { p.Comment = "a\nb" },
		"long login":     func(p *relay.Permit) { p.Login = strings.Repeat("x", rules.MaxAccountLen+1) },
		"long comment":   func(p *relay.Permit) { p.Comment = strings.Repeat("x", rules.MaxCommentLen+1) },
		"no granted":     func(p *relay.Permit) { p.Granted = time.Time{} },
		"no expiry":      func(p *relay.Permit) { p.Expires = time.Time{} },
		"negative count": func(p *relay.Permit) { p.Logins = -1 },
	}
	for name, f := range bad {
		p := base
		f(&p)
		// Good permits first: none of them may be stored.
		batch := append(samplePermits()[2:], p)
		if err := s.SavePermits(ctx, batch); err == nil {
			t.Errorf("%s: SavePermits accepted %+v", name, p)
		}
		if err := s.AddPermit(ctx, t0, "cli:root", p); err == nil {
			t.Errorf("%s: AddPermit accepted %+v", name, p)
		}
	}
	if err := s.DeletePermits(ctx, t0, "cli:root", []relay.Permit{good[0], {}}, true); err == nil {
		t.Error("DeletePermits accepted a zero prefix")
	}
	got, err := s.Permits(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	diffPermits(t, "after bad input", got, sortedPermits(good))
	if audit, err := s.PermitAudit(ctx, 0); err != nil || len(audit) != 0 {
		t.Errorf("bad input wrote audit rows: %+v, %v", audit, err)
	}
}

func testPermitEmpty(t *testing.T, open func(t *testing.T) PermitStore) {
	ctx := t.Context()
	s := openPermits(t, open)
	if got, err := s.Permits(ctx, t0); err != nil || len(got) != 0 {
		t.Fatalf("Permits on a new store: %v, %v", got, err)
	}
	if err := s.SavePermits(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePermits(ctx, t0, "test", nil, true); err != nil {
		t.Fatal(err)
	}
	// Deleting a permit that was never stored is not an error, and an
	// admin's removal is still audited.
	if err := s.DeletePermits(ctx, t0, "test", samplePermits()[:1], true); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpiredPermits(ctx, t0.Add(1000*time.Hour)); err != nil || n != 0 {
		t.Fatalf("DeleteExpiredPermits on a new store: %d, %v", n, err)
	}
	if audit, err := s.PermitAudit(ctx, 10); err != nil || len(audit) != 1 {
		t.Fatalf("PermitAudit: %v, %v", audit, err)
	}
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/nft"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

func openTestStore(t *testing.T) (*store.SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mailgate.db")
	st, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

var persistT0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// An automatic ban lifted with 'ban rm' before the next batch is not
// written back by it, and does not come back after a restart (finding 6:
// the persister wrote what was queued, not what the tracker still held).
func TestBanLiftedBeforeBatchStaysLifted(t *testing.T) {
	ctx := context.Background()
	st, _ := openTestStore(t)
	bf := config.Default().BruteForce
	tr := abuse.New(bf.Abuse())
	p := newAbusePersister(st, tr, bf, slog.New(slog.DiscardHandler))
	book := api.NewBanbook(p, tr)
	now := persistT0

	// Two failures from each of two addresses: a login ban.
	var made []abuse.Ban
	for i, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.2"} {
		made = append(made, tr.Record(abuse.Event{Login: "alice@example.com", Addr: netip.MustParseAddr(a), PwHash: fmt.Sprint(i)}, now)...)
	}
	if len(made) != 1 || made[0].Kind != abuse.BanLogin {
		t.Fatalf("bans made: %+v", made)
	}
	kept := abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("198.51.100.1/32"), Reason: abuse.ReasonAddrFailures,
		Created: now, Expires: now.Add(time.Hour), CreatedBy: abuse.CreatedByMailgate}
	kept, err := tr.AddBan(kept, now)
	if err != nil {
		t.Fatal(err)
	}
	p.ban(made[0])
	p.ban(kept)
	if _, err := book.Remove(ctx, now, "cli:root", made[0].ID); err != nil {
		t.Fatal(err)
	}
	p.bans.Flush(ctx, now.Add(time.Second))

	fresh := abuse.New(bf.Abuse())
	if err := loadAbuseState(ctx, st, fresh, bf, now.Add(2*time.Second), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	got := fresh.Bans(now.Add(2 * time.Second))
	if len(got) != 1 || got[0].ID != kept.ID {
		t.Fatalf("bans after a restart: %+v; want only ban %d (ban %d was lifted)", got, kept.ID, made[0].ID)
	}
}

// One over-long login does not fail a batch of trusted addresses: the
// others are stored (finding 8), and the bad one is logged.
func TestTrustedBatchSkipsBadRow(t *testing.T) {
	ctx := context.Background()
	st, _ := openTestStore(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	tr := abuse.New(abuse.DefaultConfig())
	f := newFirewallState(nil, nft.Config{}, config.Firewall{TrustedFor: time.Hour}, tr, st, log)
	now := persistT0
	good := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::1")}
	f.login("alice@example.com", rules.IMAP, good[0], now)
	f.login(strings.Repeat("x", store.MaxTrustedLoginLen+1), rules.IMAP, netip.MustParseAddr("192.0.2.2"), now)
	f.login("bob@example.com", rules.POP3, good[1], now)
	f.login("carol@example.com", rules.IMAP, good[2], now)
	f.persist.Flush(ctx, now)
	ts, err := st.Trusted(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	for _, t := range ts {
		addrs = append(addrs, t.Addr)
	}
	if fmt.Sprint(addrs) != fmt.Sprint([]netip.Addr{good[0], good[1], good[2]}) {
		t.Errorf("stored %v, want %v", addrs, good)
	}
	if !strings.Contains(logs.String(), "bad row skipped") || !strings.Contains(logs.String(), "192.0.2.2") {
		t.Errorf("the bad row was not logged:\n%s", logs.String())
	}
	if f.persist.Pending() != 0 {
		t.Errorf("%d rows still pending", f.persist.Pending())
	}
}

// A stored login ban of a login no account can have (written by an older
// mailgate: finding 3), a bad prefix and a bad permit are logged and
// skipped at load; everything else is loaded.
func TestLoadSkipsBadRows(t *testing.T) {
	ctx := context.Background()
	st, path := openTestStore(t)
	now := persistT0
	bf := config.Default().BruteForce
	good := abuse.Ban{ID: 1, Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: abuse.ReasonAddrFailures,
		Created: now, Expires: now.Add(time.Hour), CreatedBy: abuse.CreatedByMailgate}
	if err := st.AddBans(ctx, now, abuse.CreatedByMailgate, []abuse.Ban{good}, false); err != nil {
		t.Fatal(err)
	}
	execSQL(t, path,
		fmt.Sprintf(`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by)
			VALUES (2, 'login', '', '%s', 'login_attack', %d, %d, '', 'mailgate')`, strings.Repeat("a", 400), now.Unix(), now.Add(time.Hour).Unix()),
		fmt.Sprintf(`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by)
			VALUES (3, 'address', 'nonsense', '', 'addr_failures', %d, %d, '', 'mailgate')`, now.Unix(), now.Add(time.Hour).Unix()),
	)
	var logs bytes.Buffer
	tr := abuse.New(bf.Abuse())
	if err := loadAbuseState(ctx, st, tr, bf, now, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
		t.Fatalf("loading: %v", err)
	}
	if got := tr.Bans(now); len(got) != 1 || got[0].ID != 1 {
		t.Errorf("bans loaded: %+v, want ban 1", got)
	}
	if n := strings.Count(logs.String(), "stored row skipped"); n != 2 {
		t.Errorf("%d rows logged as skipped, want 2:\n%s", n, logs.String())
	}
	// The next ban gets a fresh id, above the skipped ones.
	b, err := tr.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.9/32")}, now)
	if err != nil || b.ID <= 3 {
		t.Errorf("next ban: %+v, %v; want an id above 3", b, err)
	}
}

// execSQL runs statements on the database file directly, as an older
// mailgate or an admin with sqlite3 could.
func execSQL(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

func newTestPermits(t *testing.T, st *store.SQLite) *permits {
	cfg := relay.DefaultConfig()
	return newPermits(relay.New(cfg), st, policy.NewDecisionLog(io.Discard), slog.New(slog.DiscardHandler))
}

// What the persister writes is the table's state when it writes: a login
// queued just before a 'permit rm' does not bring the permit back after
// a restart, and an older automatic permit does not overwrite a manual one.
func TestPermitsWriteTableState(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := newTestPermits(t, st)
	pb := api.NewPermitbook(p, p.t)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rmAddr := netip.MustParseAddr("198.51.100.7")
	manAddr := netip.MustParseAddr("198.51.100.8")

	// A login races 'permit rm': the table grants, rm runs, then the
	// login's queueing and the flush.
	pm, o := p.t.Login("alice@example.com", rules.IMAP, "dovecot", rmAddr, now)
	if o != relay.Granted {
		t.Fatal(o)
	}
	if _, err := pb.Remove(ctx, now, "cli:root", rmAddr); err != nil {
		t.Fatal(err)
	}
	p.queue(pm, false)

	// A login's permit is queued, then an admin replaces it by hand.
	pm2, _ := p.t.Login("bob@example.com", rules.IMAP, "dovecot", manAddr, now)
	p.queue(pm2, false)
	if _, err := pb.Add(ctx, now, "cli:root", relay.Permit{Prefix: netip.PrefixFrom(manAddr, 32), Expires: now.Add(7 * 24 * time.Hour), Comment: "office"}); err != nil {
		t.Fatal(err)
	}
	p.queue(pm2, false) // a stale copy, queued again
	p.j.Flush(ctx, now)

	later := now.Add(time.Second)
	p2 := newTestPermits(t, st)
	if _, err := p2.load(ctx, later); err != nil {
		t.Fatal(err)
	}
	if _, ok := p2.t.Check(rmAddr, later); ok {
		t.Error("a permit removed with 'permit rm' is back after a restart")
	}
	got, ok := p2.t.Check(manAddr, later)
	if !ok || !got.Manual() || got.Comment != "office" || !got.Expires.Equal(now.Add(7*24*time.Hour)) {
		t.Errorf("manual permit after restart: %+v %v", got, ok)
	}
}

// A login that could not come from a mail program (control characters,
// over 320 bytes) gets no permit and never reaches the store.
func TestPermitsRefuseUnprintableLogins(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := newTestPermits(t, st)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	addr := netip.MustParseAddr("198.51.100.9")
	for _, login := range []string{"\x1b[31mred\x07@example.com", "a\u0085b@example.com", string(make([]byte, 321)), "bad\xffutf8"} {
		if _, o := p.login(login, rules.IMAP, addr, "dovecot", now); o != relay.NotGranting {
			t.Errorf("%q: %v", login, o)
		}
	}
	if _, ok := p.t.Check(addr, now); ok {
		t.Error("a permit was granted")
	}
	if _, o := p.login("carol@example.com", rules.IMAP, addr, "dovecot", now); o != relay.Granted {
		t.Errorf("a plain login: %v", o)
	}
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// downStore is a store whose server cannot be reached: every change
// fails with *store.Unavailable.
type downStore struct{}

var errDown = &store.Unavailable{Store: "PostgreSQL mg@127.0.0.1:5432/mg", Err: errors.New("connect: connection refused")}

func (downStore) AddRules(context.Context, time.Time, string, []rules.Rule) ([]rules.Rule, error) {
	return nil, errDown
}
func (downStore) DeleteRule(context.Context, time.Time, string, int64) (rules.Rule, error) {
	return rules.Rule{}, errDown
}
func (downStore) Rules(context.Context) ([]rules.Rule, error) { return nil, nil }
func (downStore) Rule(context.Context, int64) (rules.Rule, error) {
	return rules.Rule{}, store.ErrNotFound
}
func (downStore) DeleteExpired(context.Context, time.Time) ([]rules.Rule, error) { return nil, errDown }
func (downStore) Audit(context.Context, int) ([]store.AuditEntry, error)         { return nil, nil }
func (downStore) AddBans(context.Context, time.Time, string, []abuse.Ban, bool) error {
	return errDown
}
func (downStore) DeleteBans(context.Context, time.Time, string, []abuse.Ban) error { return errDown }
func (downStore) BanAudit(context.Context, int) ([]store.AuditEntry, error)        { return nil, nil }
func (downStore) AddPermit(context.Context, time.Time, string, relay.Permit) error {
	return errDown
}
func (downStore) DeletePermits(context.Context, time.Time, string, []relay.Permit, bool) error {
	return errDown
}
func (downStore) PermitAudit(context.Context, int) ([]store.AuditEntry, error) { return nil, nil }

// TestStoreUnavailable: with the store's server down, a change through
// the API is answered 503 with the store's one message (no wrapping
// prefixes), and memory is as it was: a lifted ban and a withdrawn permit
// are back, no listener hears of them.
func TestStoreUnavailable(t *testing.T) {
	now := time.Now()
	tracker := abuse.New(abuse.DefaultConfig())
	ban, err := tracker.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("198.51.100.7/32"),
		Reason: "manual", Created: now, CreatedBy: "test"}, now)
	if err != nil {
		t.Fatal(err)
	}
	told := 0
	bans := NewBanbook(downStore{}, tracker).OnChange(func(_, _ []abuse.Ban) { told++ })
	if _, err := bans.Remove(t.Context(), now, "test", ban.ID); !errors.As(err, new(*store.Unavailable)) {
		t.Errorf("ban rm: %v", err)
	}
	if _, err := bans.RemoveFor(t.Context(), now, "test", ban.Prefix, ""); !errors.As(err, new(*store.Unavailable)) {
		t.Errorf("ban rm --ip: %v", err)
	}
	if got := tracker.Bans(now); len(got) != 1 || got[0].ID != ban.ID {
		t.Errorf("bans after refused removals: %+v", got)
	}
	if told != 0 {
		t.Errorf("the firewall was told of %d refused changes", told)
	}

	table := relay.New(relay.DefaultConfig())
	addr := netip.MustParseAddr("203.0.113.7")
	if _, err := table.Add(relay.Permit{Prefix: netip.PrefixFrom(addr, 32), Expires: now.Add(time.Hour), Door: relay.DoorManual}, now); err != nil {
		t.Fatal(err)
	}
	permits := NewPermitbook(downStore{}, table)
	if _, err := permits.Remove(t.Context(), now, "test", addr); !errors.As(err, new(*store.Unavailable)) {
		t.Errorf("permit rm: %v", err)
	}
	if _, ok := table.Check(addr, now); !ok {
		t.Errorf("a refused permit rm withdrew the permit from memory")
	}

	idx := rules.NewIndex()
	srv := NewServer(NewRulebook(downStore{}, idx, nil), bans, policy.New(idx, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "0123456789abcdef")
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPost, "/v1/rules", `{"scope":"account","account":"a@example.test","service":"all","action":"deny","match":"192.0.2.1"}`},
		{http.MethodDelete, "/v1/rules/1", ""},
		{http.MethodPost, "/v1/bans", `{"ip":"198.51.100.8"}`},
		{http.MethodDelete, "/v1/bans/1", ""},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer 0123456789abcdef")
		srv.Handler().ServeHTTP(rec, req)
		var e ErrorJSON
		json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != http.StatusServiceUnavailable || e.Error != errDown.Error() {
			t.Errorf("%s %s: %d %q, want 503 %q", c.method, c.path, rec.Code, e.Error, errDown.Error())
		}
	}
	if idx.Len() != 0 {
		t.Errorf("a refused rule add reached the index")
	}
	if got := tracker.Bans(now); len(got) != 1 {
		t.Errorf("a refused ban add stayed in memory: %+v", got)
	}
}

package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

type fixture struct {
	client  *Client
	idx     *rules.Index
	book    *Rulebook
	st      *store.SQLite
	engine  *policy.Engine
	tracker *abuse.Tracker
	srv     *Server
}

// start serves the API on a unix socket over a real SQLite store and a
// real engine.
func start(t *testing.T, dbPath string) *fixture {
	t.Helper()
	st, err := store.OpenSQLite(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := rules.NewIndex()
	trusted := rules.Rule{Scope: rules.ScopeGlobal, Action: rules.Allow, Match: prefix("192.0.2.0/24"), Source: "config"}
	book := NewRulebook(st, idx, []rules.Rule{trusted})
	if _, err := book.Load(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	tracker := abuse.New(abuse.DefaultConfig())
	engine := policy.New(idx, nil).WithAbuse(tracker, true, time.Minute, 5*time.Second)
	srv := NewServer(book, NewBanbook(st, tracker), engine, slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ConnContext: ConnContext}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &fixture{client: NewUnixClient(sock), idx: idx, book: book, st: st, engine: engine, tracker: tracker, srv: srv}
}

func prefix(s string) netip.Prefix {
	p, err := rules.ParseMatch(s)
	if err != nil {
		panic(err)
	}
	return p
}

func TestRuleLifecycle(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "m.db")
	f := start(t, db)

	shop, err := f.client.AddRule(ctx, RuleJSON{Account: " Shop@Example.com", Service: "smtp", Action: "allow", Match: "10.0.0.101", Comment: "web shop"})
	if err != nil {
		t.Fatal(err)
	}
	if shop.ID == 0 || shop.Account != "shop@example.com" || shop.Match != "10.0.0.101" || shop.CreatedBy == "" {
		t.Fatalf("added rule: %+v", shop)
	}
	closed, err := f.client.AddRule(ctx, RuleJSON{Account: "shop@example.com", Service: "pop3", Action: "allow", Match: "none"})
	if err != nil {
		t.Fatal(err)
	}

	// Memory follows disk at once.
	ex, err := f.client.Explain(ctx, ExplainRequest{Account: "shop@example.com", IP: "203.0.113.9", Service: "pop3"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Verdict != "deny" || ex.Reason != "service_closed" || ex.Rule != closed.ID || ex.RuleDetail == nil ||
		ex.Message != "POP3 is disabled for this account." || len(ex.Checks) != 3 {
		t.Fatalf("explain: %+v", ex)
	}
	ex, err = f.client.Explain(ctx, ExplainRequest{Account: "shop@example.com", IP: "192.0.2.5", Service: "pop3"})
	if err != nil || ex.Reason != "trusted" {
		t.Fatalf("explain from a trusted network: %+v, %v", ex, err)
	}

	list, err := f.client.Rules(ctx, "SHOP@example.com")
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %+v", err, list)
	}
	all, err := f.client.Rules(ctx, "")
	if err != nil || len(all) != 3 || all[2].Source != "config" {
		t.Fatalf("list all (with the config's trusted network): %v %+v", err, all)
	}

	if _, err := f.client.RemoveRule(ctx, closed.ID); err != nil {
		t.Fatal(err)
	}
	ex, _ = f.client.Explain(ctx, ExplainRequest{Account: "shop@example.com", IP: "203.0.113.9", Service: "pop3"})
	if ex.Verdict != "allow" {
		t.Fatalf("after rm: %+v", ex)
	}
	var apiErr *APIError
	if _, err := f.client.RemoveRule(ctx, closed.ID); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("rm twice: %v", err)
	}

	audit, err := f.client.Audit(ctx, 10)
	if err != nil || len(audit) != 3 || audit[0].Op != "remove" || audit[2].Op != "add" {
		t.Fatalf("audit: %v %+v", err, audit)
	}

	// A new daemon on the same file sees the same rules.
	g := start(t, db)
	ex, err = g.client.Explain(ctx, ExplainRequest{Account: "shop@example.com", IP: "10.0.0.102", Service: "submission"})
	if err != nil || ex.Reason != "not_in_allowlist" {
		t.Fatalf("after restart: %+v %v", ex, err)
	}
}

// Bad input gets a clear error naming the field, and changes nothing.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	bad := []struct {
		rule RuleJSON
		want string
	}{
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "allow", Match: "10.0.0.300"}, `match: "10.0.0.300" is not an IP address`},
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "allow", Match: "10.0.0.1/8"}, "host bits set; did you mean 10.0.0.0/8"},
		{RuleJSON{Account: "a@x.test", Service: "imapx", Action: "allow", Match: "none"}, `service: unknown service "imapx"`},
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "block", Match: "none"}, `action: unknown action "block"`},
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "deny", Match: "none"}, "match: none closes a service"},
		{RuleJSON{Account: "", Service: "imap", Action: "deny", Match: "10.0.0.1"}, "account: empty account"},
		{RuleJSON{Account: "a b@x.test", Service: "imap", Action: "deny", Match: "10.0.0.1"}, "account:"},
		{RuleJSON{Scope: "global", Service: "imap", Action: "allow", Match: "none"}, "match: a global rule needs an address"},
		{RuleJSON{Scope: "galaxy", Service: "imap", Action: "allow", Match: "10.0.0.1"}, "scope:"},
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "extra", Match: "country:FR"}, "match: country rules need a GeoIP database"},
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "allow", Match: "country:FRA"}, `match: "FRA" is not a country code`},
		{RuleJSON{Scope: "global", Service: "imap", Action: "deny", Match: "country:CN"}, "match: global country lists are set in the config file"},
		{RuleJSON{Scope: "global", Service: "imap", Action: "extra", Match: "10.0.0.1"}, "action: extra rules belong to an account"},
		{RuleJSON{Account: "a@x.test", Service: "imap", Action: "extra", Match: "none"}, "match: an extra rule needs"},
	}
	for _, b := range bad {
		_, err := f.client.AddRule(ctx, b.rule)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: got %v, want 400 with %q", b.rule, err, b.want)
		}
	}
	// A batch with one bad rule adds none of them.
	_, err := f.client.AddRules(ctx, []RuleJSON{
		{Account: "a@x.test", Service: "imap", Action: "allow", Match: "10.0.0.1"},
		{Account: "a@x.test", Service: "imap", Action: "allow", Match: "bogus"},
	})
	if err == nil || !strings.Contains(err.Error(), "rule 2: match:") {
		t.Errorf("bad batch: %v", err)
	}
	if n := f.idx.Len(); n != 1 { // the config's trusted network only
		t.Errorf("index has %d rules after bad input, want 1", n)
	}
	if rs, _ := f.st.Rules(ctx); len(rs) != 0 {
		t.Errorf("store has %d rules after bad input", len(rs))
	}
	_, err = f.client.Explain(ctx, ExplainRequest{Account: "a@x.test", IP: "nope", Service: "imap"})
	if err == nil || !strings.Contains(err.Error(), `ip: "nope" is not an IP address`) {
		t.Errorf("explain bad ip: %v", err)
	}
	_, err = f.client.Explain(ctx, ExplainRequest{Account: "a@x.test", IP: "10.0.0.1", Service: "all"})
	if err == nil || !strings.Contains(err.Error(), "service:") {
		t.Errorf("explain bad service: %v", err)
	}
}

// With a GeoIP database, country rules are stored, indexed and explained.
func TestCountryRules(t *testing.T) {
	ctx := context.Background()
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	f.srv.WithGeoIP(true)
	f.engine.WithCountries(func(a netip.Addr) (string, policy.CountryKind) {
		if prefix("198.51.100.0/24").Contains(a) {
			return "FR", policy.CountryFound
		}
		return "CN", policy.CountryFound
	}, policy.CountryPolicy{Allow: "DE"})
	added, err := f.client.AddRule(ctx, RuleJSON{Account: "Alice@x.test", Service: "all", Action: "extra", Match: "country:fr, at"})
	if err != nil {
		t.Fatal(err)
	}
	if added.Match != "country:AT,FR" || added.Action != "extra" {
		t.Errorf("added %+v", added)
	}
	e, err := f.client.Explain(ctx, ExplainRequest{Account: "alice@x.test", IP: "198.51.100.7", Service: "imap"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Verdict != "allow" || e.Country != "FR" {
		t.Errorf("explain alice from FR: %+v", e)
	}
	e, err = f.client.Explain(ctx, ExplainRequest{Account: "bob@x.test", IP: "198.51.100.7", Service: "imap"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Verdict != "deny" || e.Reason != "country_blocked" || e.Country != "FR" {
		t.Errorf("explain bob from FR: %+v", e)
	}
	rs, err := f.client.Rules(ctx, "alice@x.test")
	if err != nil || len(rs) != 1 || rs[0].Match != "country:AT,FR" {
		t.Errorf("rules: %v %+v", err, rs)
	}
}

func TestExpiredRulesLeave(t *testing.T) {
	ctx := context.Background()
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	exp := time.Now().Add(time.Hour)
	r, err := f.client.AddRule(ctx, RuleJSON{Account: "a@x.test", Service: "imap", Action: "allow", Match: "none", Expires: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if r.Expires == nil || !r.Expires.Equal(exp.Truncate(time.Second)) {
		t.Fatalf("expires: %v, want %v", r.Expires, exp)
	}
	gone, err := f.book.Expire(ctx, exp.Add(time.Second))
	if err != nil || len(gone) != 1 {
		t.Fatalf("expire: %v %v", gone, err)
	}
	if f.idx.Len() != 1 {
		t.Fatalf("index still has the expired rule")
	}
}

// TCP peers need the token; unix-socket peers do not.
func TestTokenOnTCP(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idx := rules.NewIndex()
	srv := NewServer(NewRulebook(st, idx, nil), nil, policy.New(idx, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "0123456789abcdef")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ConnContext: ConnContext}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	if _, err := NewTCPClient(base, "wrong").Version(context.Background()); err == nil || !strings.Contains(err.Error(), "bearer token") {
		t.Errorf("wrong token: %v", err)
	}
	v, err := NewTCPClient(base, "0123456789abcdef").Version(context.Background())
	if err != nil || v.Version != "test" {
		t.Errorf("right token: %+v %v", v, err)
	}
	// Tokens of every length but the right one are compared as hashes,
	// all refused alike.
	for _, h := range []string{"", "Bearer ", "Bearer 0123456789abcde", "Bearer 0123456789abcdef0", "Bearer  0123456789abcdef",
		"bearer 0123456789abcdef", "Basic 0123456789abcdef", "0123456789abcdef"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/version", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %s, want 401", h, resp.Status)
		}
	}
	// Without a token configured, TCP is refused whatever is sent.
	open := NewServer(NewRulebook(st, idx, nil), nil, policy.New(idx, nil), slog.New(slog.DiscardHandler), "test", "")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/version", nil)
	req.Header.Set("Authorization", "Bearer ")
	open.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("no token configured, empty bearer: %d, want 401", rec.Code)
	}
}

// Manual bans: added, listed, shown by explain, audited, lifted by id,
// by address and by login; bad requests change nothing.
func TestBans(t *testing.T) {
	ctx := context.Background()
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	b, err := f.client.AddBan(ctx, BanRequest{IP: "203.0.113.0/24", For: "1h", Comment: "botnet"})
	if err != nil {
		t.Fatal(err)
	}
	if b.ID == 0 || b.Kind != "address" || b.IP != "203.0.113.0/24" || b.Reason != "manual" || b.Expires == nil {
		t.Fatalf("ban: %+v", b)
	}
	lb, err := f.client.AddBan(ctx, BanRequest{Account: "Alice@Example.com"})
	if err != nil || lb.Account != "alice@example.com" || lb.Expires != nil {
		t.Fatalf("login ban: %+v %v", lb, err)
	}
	ex, err := f.client.Explain(ctx, ExplainRequest{Account: "bob@example.com", IP: "203.0.113.7", Service: "imap"})
	if err != nil || ex.Reason != "banned_address" || ex.Ban != b.ID || ex.BanDetail == nil || ex.Counters == nil {
		t.Fatalf("explain banned address: %+v %v", ex, err)
	}
	ex, _ = f.client.Explain(ctx, ExplainRequest{Account: "alice@example.com", IP: "198.51.100.1", Service: "imap"})
	if ex.Reason != "banned_login" || ex.Verdict != "deny" || ex.Delay != "1m0s" {
		t.Fatalf("explain banned login: %+v", ex)
	}
	// The address's own allow rule beats the ban.
	if _, err := f.client.AddRule(ctx, RuleJSON{Account: "bob@example.com", Service: "all", Action: "allow", Match: "203.0.113.7"}); err != nil {
		t.Fatal(err)
	}
	if ex, _ = f.client.Explain(ctx, ExplainRequest{Account: "bob@example.com", IP: "203.0.113.7", Service: "imap"}); ex.Reason != "account_allow" {
		t.Fatalf("allow rule vs ban: %+v", ex)
	}
	list, err := f.client.Bans(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, bad := range []BanRequest{{}, {IP: "1.2.3.4", Account: "a@x"}, {IP: "nope"}, {Account: "@x.test"}, {IP: "1.2.3.4", For: "-1h"}} {
		if _, err := f.client.AddBan(ctx, bad); err == nil {
			t.Errorf("bad ban %+v accepted", bad)
		}
	}
	if list, _ := f.client.Bans(ctx); len(list) != 2 {
		t.Fatalf("bad requests changed the bans: %+v", list)
	}
	if gone, err := f.client.RemoveBansFor(ctx, "203.0.113.99", ""); err != nil || len(gone) != 1 || gone[0].ID != b.ID {
		t.Fatalf("rm --ip: %+v %v", gone, err)
	}
	if _, err := f.client.RemoveBan(ctx, b.ID); err == nil {
		t.Fatal("removing a lifted ban worked")
	}
	if gone, err := f.client.RemoveBansFor(ctx, "", "ALICE@example.com"); err != nil || len(gone) != 1 {
		t.Fatalf("rm --account: %+v %v", gone, err)
	}
	audit, _ := f.client.Audit(ctx, 20)
	var ops []string
	for _, e := range audit {
		ops = append(ops, e.Op)
	}
	if got := strings.Join(ops, ","); strings.Count(got, "unban") != 2 || strings.Count(got, "ban") != 4 {
		t.Fatalf("audit ops: %s", got)
	}
	// Stored bans come back after a restart.
	if _, err := f.client.AddBan(ctx, BanRequest{IP: "192.0.2.66", For: "1h"}); err != nil {
		t.Fatal(err)
	}
	bans, maxID, err := f.st.Bans(ctx, time.Now())
	if err != nil || len(bans) != 1 || bans[0].Prefix.String() != "192.0.2.66/32" || maxID < 3 {
		t.Fatalf("stored bans: %+v %d %v", bans, maxID, err)
	}
}

package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
	"mailgate/internal/store"
)

// The real types are what the daemon passes.
var (
	_ PermitTable    = (*relay.Table)(nil)
	_ PermitStore    = (*store.SQLite)(nil)
	_ LimitLister    = (*sendlimit.Limiter)(nil)
	_ PermitEventLog = (*policy.DecisionLog)(nil)
)

// loginCall is one call of the OnLoginFunc.
type loginCall struct {
	login string
	svc   rules.Service
	addr  netip.Addr
	door  string
	now   time.Time
}

type relayFixture struct {
	client *Client
	st     *store.SQLite
	table  *relay.Table
	dlog   *bytes.Buffer
	now    time.Time

	mu    sync.Mutex
	calls []loginCall
}

func (f *relayFixture) onLogin(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
	f.mu.Lock()
	f.calls = append(f.calls, loginCall{login, svc, addr, door, now})
	f.mu.Unlock()
	return f.table.Login(login, svc, door, addr, now)
}

func (f *relayFixture) loginCalls() []loginCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]loginCall(nil), f.calls...)
}

// serveUnix serves h on a new unix socket and returns a client for it.
func serveUnix(t *testing.T, h http.Handler) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ConnContext: ConnContext}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return NewUnixClient(sock)
}

// startRelay serves the admin API with relay permits over a real table and
// SQLite store, its clock fixed at f.now; limiter may be nil.
func startRelay(t *testing.T, ps PermitStore, limiter LimitLister) *relayFixture {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if ps == nil {
		ps = st
	}
	f := &relayFixture{st: st, table: relay.New(relay.DefaultConfig()), dlog: &bytes.Buffer{},
		now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	idx := rules.NewIndex()
	srv := NewServer(NewRulebook(st, idx, nil), nil, policy.New(idx, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), "test", "").
		WithRelay(NewPermitbook(ps, f.table).WithLog(policy.NewDecisionLog(f.dlog)), f.onLogin)
	if limiter != nil {
		srv.WithLimits(limiter)
	}
	srv.now = func() time.Time { return f.now }
	f.client = serveUnix(t, srv.Handler())
	return f
}

func wantAPIError(t *testing.T, what string, err error, status int, text string) {
	t.Helper()
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != status || !strings.Contains(err.Error(), text) {
		t.Errorf("%s: got %v, want %d with %q", what, err, status, text)
	}
}

// Manual permits: added (an IPv6 address covers its /64), listed with the
// logins seen, stored with the actor, audited, withdrawn by any address
// they cover, and back after a restart.
func TestPermits(t *testing.T) {
	ctx := context.Background()
	f := startRelay(t, nil, nil)
	p, err := f.client.AddPermit(ctx, PermitRequest{IP: "203.0.113.7", For: "2h", Comment: "hotel wifi"})
	if err != nil {
		t.Fatal(err)
	}
	if p.IP != "203.0.113.7" || p.Door != "manual" || p.Account != "" || p.Service != "" || p.CreatedBy == "" ||
		p.Remaining != "2h0m0s" || !p.Expires.Equal(f.now.Add(2*time.Hour)) || !p.Granted.Equal(f.now) || p.Comment != "hotel wifi" {
		t.Fatalf("added: %+v", p)
	}
	if got, ok := f.table.Check(netip.MustParseAddr("203.0.113.7"), f.now); !ok || got.By != p.CreatedBy {
		t.Fatalf("table: %+v %v", got, ok)
	}
	v6, err := f.client.AddPermit(ctx, PermitRequest{IP: "2001:db8:1:2::5", For: "7d"})
	if err != nil || v6.IP != "2001:db8:1:2::/64" || v6.Remaining != "168h0m0s" {
		t.Fatalf("IPv6: %+v %v", v6, err)
	}
	def, err := f.client.AddPermit(ctx, PermitRequest{IP: "::ffff:198.51.100.20"})
	if err != nil || def.IP != "198.51.100.20" || def.Remaining != "30m0s" {
		t.Fatalf("default duration, mapped address: %+v %v", def, err)
	}

	// A login refreshes the manual permit's login fields; another network
	// gets a new permit; three accounts make a network shared.
	res, err := f.client.ReportLogin(ctx, LoginReport{Login: "Alice@Example.com", IP: "203.0.113.7", Service: "imap"})
	if err != nil || res.Outcome != "refreshed" || res.Permit == nil || res.Permit.Account != "alice@example.com" || res.Permit.Door != "manual" {
		t.Fatalf("login on a manual permit: %+v %v", res, err)
	}
	for i, who := range []string{"bob@example.com", "carol@example.com", "dave@example.com"} {
		res, err := f.client.ReportLogin(ctx, LoginReport{Login: who, IP: "192.0.2.80", Service: "pop3", Door: "dovecot"})
		want := "refreshed"
		if i == 0 {
			want = "granted"
		}
		if err != nil || res.Outcome != want || res.Permit == nil || res.Permit.Logins != i+1 || res.Permit.Service != "pop3" {
			t.Fatalf("login %d: %+v %v", i, res, err)
		}
	}
	list, err := f.client.Permits(ctx)
	if err != nil || len(list) != 4 {
		t.Fatalf("list: %+v %v", list, err)
	}
	byIP := map[string]PermitJSON{}
	for _, p := range list {
		byIP[p.IP] = p
	}
	nat := byIP["192.0.2.80"]
	if !nat.Shared || strings.Join(nat.Accounts, ",") != "dave@example.com,carol@example.com,bob@example.com" ||
		nat.Account != "dave@example.com" || nat.Door != "dovecot" || nat.Logins != 3 {
		t.Errorf("shared permit: %+v", nat)
	}
	if h := byIP["203.0.113.7"]; h.Shared || len(h.Accounts) != 1 || h.Account != "alice@example.com" || h.Door != "manual" {
		t.Errorf("hotel permit: %+v", h)
	}

	// Withdrawn by another address of its /64; then 404.
	gone, err := f.client.RemovePermit(ctx, "2001:db8:1:2::99")
	if err != nil || gone.IP != "2001:db8:1:2::/64" {
		t.Fatalf("rm: %+v %v", gone, err)
	}
	_, err = f.client.RemovePermit(ctx, "2001:db8:1:2::5")
	wantAPIError(t, "rm twice", err, http.StatusNotFound, "no relay permit covers 2001:db8:1:2::5")

	stored, err := f.st.Permits(ctx, f.now)
	if err != nil || len(stored) != 2 {
		t.Fatalf("stored: %+v %v", stored, err) // logins are persisted by the daemon, not here
	}
	for _, sp := range stored {
		if sp.Door != relay.DoorManual || sp.By != p.CreatedBy {
			t.Errorf("stored permit: %+v", sp)
		}
	}
	audit, err := f.client.Audit(ctx, 10)
	if err != nil || len(audit) != 4 {
		t.Fatalf("audit: %+v %v", audit, err)
	}
	var ops []string
	for _, e := range audit {
		if e.Object != "permit" {
			t.Errorf("audit object %q", e.Object)
		}
		ops = append(ops, e.Op)
	}
	if got := strings.Join(ops, ","); strings.Count(got, "add") != 3 || strings.Count(got, "remove") != 1 {
		t.Errorf("audit ops: %s", got)
	}
	if got := f.dlog.String(); strings.Count(got, "event=permit ") != 3 || strings.Count(got, "event=permit_removed ip=2001:db8:1:2::/64") != 1 {
		t.Errorf("decision log:\n%s", got)
	}

	// A new table loads the stored permits.
	fresh := relay.New(relay.DefaultConfig())
	if n := fresh.Restore(stored, f.now); n != 2 {
		t.Errorf("restored %d", n)
	}
}

// Bad manual permits are refused with the field at fault and change nothing.
func TestPermitBadInput(t *testing.T) {
	ctx := context.Background()
	f := startRelay(t, nil, nil)
	for _, c := range []struct {
		req  PermitRequest
		want string
	}{
		{PermitRequest{}, `ip: "" is not an address`},
		{PermitRequest{IP: "none"}, `ip: "none" is not an address`},
		{PermitRequest{IP: "nope"}, `ip: "nope" is not an address`},
		{PermitRequest{IP: "203.0.113.0/24"}, "an IPv4 permit covers one address"},
		{PermitRequest{IP: "2001:db8::/32"}, "not a /32"},
		{PermitRequest{IP: "127.0.0.5"}, "never gets relay permits"},
		{PermitRequest{IP: "203.0.113.1", For: "-1h"}, "for:"},
		{PermitRequest{IP: "203.0.113.1", For: "366d"}, "at most 365d"},
		{PermitRequest{IP: "203.0.113.1", For: "soon"}, `for: "soon" is not a duration`},
		{PermitRequest{IP: "203.0.113.1", Comment: "two\nlines"}, "comment: has a control character"},
		{PermitRequest{IP: "203.0.113.1", Comment: strings.Repeat("x", 1025)}, "comment: longer than 1024"},
	} {
		_, err := f.client.AddPermit(ctx, c.req)
		wantAPIError(t, "add "+c.req.IP+" "+c.req.For, err, http.StatusBadRequest, c.want)
	}
	_, err := f.client.RemovePermit(ctx, "nope")
	wantAPIError(t, "rm nope", err, http.StatusBadRequest, `ip: "nope" is not an address`)
	err = f.client.do(ctx, http.MethodPost, "/v1/permits", map[string]string{"ip": "203.0.113.1", "until": "x"}, nil)
	wantAPIError(t, "unknown field", err, http.StatusBadRequest, `unknown field "until"`)
	if n := f.table.Len(); n != 0 {
		t.Errorf("the table has %d permits after bad requests", n)
	}
}

// failingStore refuses to write.
type failingStore struct{ PermitStore }

func (failingStore) AddPermit(context.Context, time.Time, string, relay.Permit) error {
	return errors.New("disk full")
}

func (failingStore) DeletePermits(context.Context, time.Time, string, []relay.Permit, bool) error {
	return errors.New("disk full")
}

// When the store fails, a manual permit is not granted, and the login
// permit it would have replaced is back.
func TestPermitStoreFailure(t *testing.T) {
	ctx := context.Background()
	f := startRelay(t, failingStore{}, nil)
	if _, err := f.client.ReportLogin(ctx, LoginReport{Login: "a@x.test", IP: "203.0.113.9", Service: "imap"}); err != nil {
		t.Fatal(err)
	}
	_, err := f.client.AddPermit(ctx, PermitRequest{IP: "203.0.113.9", For: "1d"})
	wantAPIError(t, "add", err, http.StatusInternalServerError, "disk full")
	p, ok := f.table.Check(netip.MustParseAddr("203.0.113.9"), f.now)
	if !ok || p.Door != "hook" || p.Login != "a@x.test" || !p.Expires.Equal(f.now.Add(30*time.Minute)) {
		t.Errorf("after a failed add: %+v %v", p, ok)
	}
	_, err = f.client.AddPermit(ctx, PermitRequest{IP: "203.0.113.10"})
	wantAPIError(t, "add", err, http.StatusInternalServerError, "disk full")
	if _, ok := f.table.Check(netip.MustParseAddr("203.0.113.10"), f.now); ok {
		t.Error("a permit the store refused is in the table")
	}
	if strings.Contains(f.dlog.String(), "door=manual") {
		t.Errorf("a permit the store refused is in the decision log: %s", f.dlog)
	}
	_, err = f.client.RemovePermit(ctx, "203.0.113.9")
	wantAPIError(t, "rm", err, http.StatusInternalServerError, "disk full")
}

// Without WithRelay the permit endpoints say relay permits are off, and
// without WithLimits the limits list is empty.
func TestRelayDisabled(t *testing.T) {
	ctx := context.Background()
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	_, err := f.client.Permits(ctx)
	wantAPIError(t, "list", err, http.StatusConflict, "relay permits are disabled")
	_, err = f.client.AddPermit(ctx, PermitRequest{IP: "203.0.113.1"})
	wantAPIError(t, "add", err, http.StatusConflict, "relay permits are disabled")
	_, err = f.client.RemovePermit(ctx, "203.0.113.1")
	wantAPIError(t, "rm", err, http.StatusConflict, "relay permits are disabled")
	_, err = f.client.ReportLogin(ctx, LoginReport{Login: "a@x.test", IP: "203.0.113.1", Service: "imap"})
	wantAPIError(t, "login", err, http.StatusConflict, "relay permits are disabled")
	us, err := f.client.Limits(ctx)
	if err != nil || us == nil || len(us) != 0 {
		t.Errorf("limits off: %#v %v", us, err)
	}
	if _, err := f.client.Audit(ctx, 5); err != nil {
		t.Errorf("audit without permits: %v", err)
	}
}

// A login report is checked strictly; a bad one never reaches OnLogin.
func TestLoginReportChecks(t *testing.T) {
	ctx := context.Background()
	f := startRelay(t, nil, nil)
	for _, c := range []struct {
		r    LoginReport
		want string
	}{
		{LoginReport{Login: "", IP: "203.0.113.1", Service: "imap"}, "login: empty"},
		{LoginReport{Login: "  ", IP: "203.0.113.1", Service: "imap"}, "login: empty"},
		{LoginReport{Login: "a\x01b", IP: "203.0.113.1", Service: "imap"}, "login: \"a\\x01b\" has a control character"},
		{LoginReport{Login: strings.Repeat("a", 321), IP: "203.0.113.1", Service: "imap"}, "login: longer than 320"},
		{LoginReport{Login: "a@x", IP: "", Service: "imap"}, `ip: "" is not an IP address`},
		{LoginReport{Login: "a@x", IP: "203.0.113.0/24", Service: "imap"}, "is not an IP address"},
		{LoginReport{Login: "a@x", IP: "203.0.113.1", Service: "other"}, `service: "other" is not imap`},
		{LoginReport{Login: "a@x", IP: "203.0.113.1", Service: "all"}, "service:"},
		{LoginReport{Login: "a@x", IP: "203.0.113.1", Service: ""}, "service:"},
		{LoginReport{Login: "a@x", IP: "203.0.113.1", Service: "imap", Door: "Bad Door"}, "door:"},
	} {
		_, err := f.client.ReportLogin(ctx, c.r)
		wantAPIError(t, "report "+c.r.Login, err, http.StatusBadRequest, c.want)
	}
	// JSON carries no invalid UTF-8 (it becomes U+FFFD), but check refuses it.
	if _, err := (&LoginReport{Login: "a\xffb", IP: "203.0.113.1", Service: "imap"}).check(); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Errorf("invalid UTF-8: %v", err)
	}
	big := LoginReport{Login: "a@x", IP: "203.0.113.1", Service: "imap", Door: strings.Repeat("d", MaxLoginReportBytes)}
	_, err := f.client.ReportLogin(ctx, big)
	wantAPIError(t, "big body", err, http.StatusRequestEntityTooLarge, "too large")
	err = f.client.do(ctx, http.MethodPost, "/v1/logins", map[string]string{"login": "a@x", "ip": "203.0.113.1", "service": "imap", "password": "x"}, nil)
	wantAPIError(t, "unknown field", err, http.StatusBadRequest, "unknown field")
	if calls := f.loginCalls(); len(calls) != 0 {
		t.Fatalf("bad reports reached OnLogin: %+v", calls)
	}

	// A good one: trimmed, lower-cased, unmapped, door "hook" by default.
	res, err := f.client.ReportLogin(ctx, LoginReport{Login: " Alice@Example.COM ", IP: "::ffff:198.51.100.4", Service: "POP3"})
	if err != nil || res.Outcome != "granted" || res.Permit == nil || res.Permit.IP != "198.51.100.4" {
		t.Fatalf("good report: %+v %v", res, err)
	}
	want := loginCall{"alice@example.com", rules.POP3, netip.MustParseAddr("198.51.100.4"), "hook", f.now}
	if calls := f.loginCalls(); len(calls) != 1 || calls[0] != want {
		t.Fatalf("OnLogin got %+v, want %+v", calls, want)
	}
	// Outcomes that grant nothing carry no permit.
	for _, c := range []struct {
		r       LoginReport
		outcome string
	}{
		{LoginReport{Login: "a@x", IP: "198.51.100.5", Service: "smtp"}, "not_granting"},
		{LoginReport{Login: "a@x", IP: "127.0.0.9", Service: "imap"}, "never_network"},
	} {
		res, err := f.client.ReportLogin(ctx, c.r)
		if err != nil || res.Outcome != c.outcome || res.Permit != nil {
			t.Errorf("%+v: %+v %v", c.r, res, err)
		}
	}
}

// The hook socket takes login reports and nothing else.
func TestHookHandler(t *testing.T) {
	ctx := context.Background()
	f := &relayFixture{table: relay.New(relay.DefaultConfig())}
	c := serveUnix(t, HookHandler(f.onLogin, slog.New(slog.NewTextHandler(io.Discard, nil))))
	before := time.Now()
	res, err := c.ReportLogin(ctx, LoginReport{Login: "a@x.test", IP: "2001:db8::7", Service: "imap", Door: "hook"})
	if err != nil || res.Outcome != "granted" || res.Permit.IP != "2001:db8::/64" {
		t.Fatalf("report: %+v %v", res, err)
	}
	if calls := f.loginCalls(); len(calls) != 1 || calls[0].now.Before(before) || calls[0].now.After(time.Now()) {
		t.Fatalf("calls: %+v", calls)
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, "/v1/permits"}, {http.MethodPost, "/v1/permits"}, {http.MethodDelete, "/v1/permits?ip=2001:db8::7"},
		{http.MethodGet, "/v1/logins"}, {http.MethodGet, "/v1/version"}, {http.MethodGet, "/v1/rules"}, {http.MethodGet, "/"},
	} {
		err := c.do(ctx, r.method, r.path, nil, nil)
		wantAPIError(t, r.method+" "+r.path, err, http.StatusNotFound, "only POST /v1/logins")
	}
	if _, ok := f.table.Check(netip.MustParseAddr("2001:db8::7"), time.Now()); !ok {
		t.Error("the permit is gone")
	}
	// Whatever door a report names, the hook socket's reports are the
	// hook's: one cannot pass a permit off as an admin's.
	res, err = c.ReportLogin(ctx, LoginReport{Login: "b@x.test", IP: "192.0.2.8", Service: "pop3", Door: "manual"})
	if err != nil || res.Permit == nil || res.Permit.Door != "hook" {
		t.Fatalf("report with door manual: %+v %v", res, err)
	}
	// On the admin API, "manual" is refused as a login report's door.
	l := LoginReport{Login: "b@x.test", IP: "192.0.2.8", Service: "pop3", Door: "manual"}
	if _, err := l.check(); err == nil || !strings.Contains(err.Error(), "door:") {
		t.Errorf("door manual accepted: %v", err)
	}
	// With relay permits off, the hook socket says so.
	off := serveUnix(t, HookHandler(nil, slog.New(slog.NewTextHandler(io.Discard, nil))))
	_, err = off.ReportLogin(ctx, LoginReport{Login: "a@x.test", IP: "2001:db8::7", Service: "imap"})
	wantAPIError(t, "off", err, http.StatusConflict, "relay permits are disabled")
}

func TestParsePermitFor(t *testing.T) {
	good := map[string]time.Duration{
		"": DefaultPermitFor, "90m": 90 * time.Minute, "12h": 12 * time.Hour, "7d": 7 * 24 * time.Hour,
		"1.5d": 36 * time.Hour, "2w": 14 * 24 * time.Hour, "365d": MaxPermitFor, "8760h": MaxPermitFor, "1h30m": 90 * time.Minute,
	}
	for in, want := range good {
		if got, err := ParsePermitFor(in); err != nil || got != want {
			t.Errorf("ParsePermitFor(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0s", "-1h", "366d", "53w", "8761h", "d", "w", "xd", "1e3d", "0x1p3d", "Infd", "NaNd", ".d", "-1d", "0d", "1dd", "soon", strings.Repeat("1", 40) + "s"} {
		if d, err := ParsePermitFor(in); err == nil {
			t.Errorf("ParsePermitFor(%q) = %v, want an error", in, d)
		}
	}
}

package nginxauth

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// testNow is the tests' clock: the captures' day.
var testNow = time.Date(2026, 11, 22, 2, 31, 44, 0, time.UTC)

const testSecret = "shared-secret" // the captures' auth_http_header value

var testBackends = map[string]netip.AddrPort{
	"imap": netip.MustParseAddrPort("127.0.0.1:10143"),
	"pop3": netip.MustParseAddrPort("127.0.0.1:10110"),
	"smtp": netip.MustParseAddrPort("127.0.0.1:10025"),
}

// rule parses "ACCOUNT SERVICE ACTION MATCH" ("global" as the account for
// the global lists), e.g. "alice@example.test imap deny 127.0.0.9".
func rule(t testing.TB, id int64, spec string) rules.Rule {
	t.Helper()
	f := strings.Fields(spec)
	if len(f) != 4 {
		t.Fatalf("bad rule spec %q", spec)
	}
	r := rules.Rule{ID: id, Account: f[0]}
	if f[0] == "global" {
		r.Scope, r.Account = rules.ScopeGlobal, ""
	}
	var err error
	if r.Service, err = rules.ParseService(f[1]); err != nil {
		t.Fatal(err)
	}
	if r.Action, err = rules.ParseAction(f[2]); err != nil {
		t.Fatal(err)
	}
	if err := r.SetMatch(f[3]); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return r
}

func newEngine(t testing.TB, specs ...string) *policy.Engine {
	t.Helper()
	idx := rules.NewIndex()
	for i, s := range specs {
		r := rule(t, int64(i+1), s)
		idx.Add(&r)
	}
	return policy.New(idx, nil)
}

// fakeVerifier checks passwords against a map, in process, and records
// each call without its password.
type fakeVerifier struct {
	mu    sync.Mutex
	users map[string]string // login as sent → password
	err   error             // returned by every call when set
	calls []passcheck.Request
}

func (f *fakeVerifier) Verify(ctx context.Context, r *passcheck.Request) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *r
	c.Password = ""
	f.calls = append(f.calls, c)
	if f.err != nil {
		return false, f.err
	}
	pw, ok := f.users[r.Login]
	return ok && pw == r.Password, nil
}

func (f *fakeVerifier) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeVerifier) last() passcheck.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return passcheck.Request{}
	}
	return f.calls[len(f.calls)-1]
}

// report is one OnReport call.
type report struct {
	login, ip, pwhash string
	success           bool
}

// env is a handler over a real engine and a fake verifier, with its logs.
type env struct {
	h         *Handler
	e         *policy.Engine
	v         *fakeVerifier
	decisions bytes.Buffer
	diags     bytes.Buffer
	mu        sync.Mutex
	reports   []report
}

var testNonce = []byte("s3cr3t-nonce")

// newEnv builds an env; mod may change the config before the handler is
// built. With a tracker, the engine consults and feeds it.
func newEnv(t testing.TB, e *policy.Engine, tr *abuse.Tracker, mod func(*Config)) *env {
	t.Helper()
	ev := &env{e: e, v: &fakeVerifier{users: map[string]string{
		"alice@example.test": "alicepw",
		"bob@example.test":   "bobpw",
		"carol@example.test": "bad pass%",
	}}}
	cfg := Config{
		Secret:   testSecret,
		Backends: testBackends,
		Verify:   map[string]bool{"imap": true, "pop3": true},
		FailWait: 3 * time.Second,
		Now:      func() time.Time { return testNow },
		Nonce:    testNonce,
		OnReport: func(a *policy.Attempt, success bool, now time.Time) {
			ev.mu.Lock()
			ev.reports = append(ev.reports, report{a.Login, a.Client.String(), a.PwHash, success})
			ev.mu.Unlock()
			if tr != nil {
				e.Report(a, success, now)
			}
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(&ev.diags, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	ev.h = NewHandler(cfg, e, ev.v, policy.NewDecisionLog(&ev.decisions), log)
	return ev
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// nginxRequest is the request nginx sends for a login (protocols.md
// §2.3), without the secret header; pass is as nginx escapes it.
func nginxRequest(method, proto, user, pass, ip string, attempt int) string {
	var b strings.Builder
	b.WriteString("GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\n")
	b.WriteString("Auth-Method: " + method + "\r\n")
	b.WriteString("Auth-User: " + user + "\r\n")
	b.WriteString("Auth-Pass: " + pass + "\r\n")
	b.WriteString("Auth-Protocol: " + proto + "\r\n")
	b.WriteString("Auth-Login-Attempt: " + strconv.Itoa(attempt) + "\r\n")
	b.WriteString("Client-IP: " + ip + "\r\n")
	if proto == "smtp" {
		b.WriteString("Client-Host: [UNAVAILABLE]\r\n")
	}
	return b.String()
}

// withSecret ends a request with the secret header and the blank line.
func withSecret(raw string, extra ...string) string {
	for _, e := range extra {
		raw += e + "\r\n"
	}
	return raw + "X-Auth-Key: " + testSecret + "\r\n\r\n"
}

// serve runs a raw request through the handler.
func (ev *env) serve(t testing.TB, raw string) *httptest.ResponseRecorder {
	t.Helper()
	return serveRaw(t, ev.h, raw)
}

func serveRaw(t testing.TB, h http.Handler, raw string) *httptest.ResponseRecorder {
	t.Helper()
	req := mustRequest(t, raw)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// mustRequest reads a raw request as net/http's server would.
func mustRequest(t testing.TB, raw string) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("reading test request: %v\n%s", err, raw)
	}
	req.RemoteAddr = "127.0.0.1:40000"
	return req
}

// login is a plain login with the secret, the common case.
func (ev *env) login(t testing.TB, proto, user, pass, ip string, attempt int) *httptest.ResponseRecorder {
	t.Helper()
	return ev.serve(t, withSecret(nginxRequest("plain", proto, user, pass, ip, attempt)))
}

// want is the expected Auth-* headers of a reply; "" means absent.
type want struct {
	status, server, port, wait, code string
}

func check(t testing.TB, w *httptest.ResponseRecorder, x want) {
	t.Helper()
	hd := w.Result().Header
	got := want{hd.Get("Auth-Status"), hd.Get("Auth-Server"), hd.Get("Auth-Port"), hd.Get("Auth-Wait"), hd.Get("Auth-Error-Code")}
	if got != x {
		t.Fatalf("reply (HTTP %d):\n got %+v\nwant %+v", w.Code, got, x)
	}
	for k, vs := range hd {
		if len(vs) > 1 {
			t.Fatalf("header %s sent %d times", k, len(vs))
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				t.Fatalf("header %s has CR or LF: %q", k, v)
			}
		}
	}
}

var okIMAP = want{status: "OK", server: "127.0.0.1", port: "10143"}

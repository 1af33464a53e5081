package dovecot

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/throttle"
)

// fakeDecider returns verdict and records every attempt it saw.
type fakeDecider struct {
	mu       sync.Mutex
	verdict  policy.Verdict
	msg      string
	attempts []policy.Attempt
}

func (f *fakeDecider) Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, *a)
	return f.verdict
}

func (f *fakeDecider) Message(a *policy.Attempt, v *policy.Verdict) string { return f.msg }

const (
	aliceBody  = `{"device_id":"","login":"alice@example.test","protocol":"imap","pwhash":"06ca","remote":"127.0.0.1","session_id":"zHU7R9RgWLZ/AAAB","tls":false}`
	aliceOK    = `{"device_id":"","login":"alice@example.test","protocol":"imap","pwhash":"06ca","remote":"127.0.0.1","session_id":"zHU7R9RgWLZ/AAAB","success":true,"policy_reject":false,"tls":false}`
	aliceWrong = `{"device_id":"","login":"alice@example.test","protocol":"imap","pwhash":"0da9","remote":"127.0.0.1","session_id":"zHU7R9RgWLZ/AAAB","tls":false}`
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func post(h http.Handler, query, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/policy?"+query, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestReplies(t *testing.T) {
	tests := []struct {
		name      string
		verdict   policy.Verdict
		msg       string
		calls     []string // "allow" or "report" bodies, in order: allow body then report body
		wantLast  string
		wantLines int // decision + result lines written
		wantAfter []bool
	}{
		{
			name:     "allow",
			verdict:  policy.Verdict{Action: policy.Allow},
			calls:    []string{"allow"},
			wantLast: `{"status":0,"msg":""}`, wantLines: 1, wantAfter: []bool{false},
		},
		{
			name:     "deny with message",
			verdict:  policy.Verdict{Action: policy.Deny, Reason: policy.ReasonAccountDeny},
			msg:      "No \"POP3\" from\r\nhere \\ there",
			calls:    []string{"allow"},
			wantLast: `{"status":-1,"msg":"No \"POP3\" from  here \\ there"}`, wantLines: 1, wantAfter: []bool{false},
		},
		{
			name:     "deny without message",
			verdict:  policy.Verdict{Action: policy.Deny},
			calls:    []string{"allow"},
			wantLast: `{"status":-1,"msg":""}`, wantLines: 1, wantAfter: []bool{false},
		},
		{
			name:     "tarpit rounds up to whole seconds",
			verdict:  policy.Verdict{Action: policy.Tarpit, Delay: 2500 * time.Millisecond},
			calls:    []string{"allow"},
			wantLast: `{"status":3,"msg":""}`, wantLines: 1, wantAfter: []bool{false},
		},
		{
			name:     "tarpit of less than a second is one second",
			verdict:  policy.Verdict{Action: policy.Tarpit, Delay: time.Millisecond},
			calls:    []string{"allow"},
			wantLast: `{"status":1,"msg":""}`, wantLines: 1, wantAfter: []bool{false},
		},
		{
			name:     "tarpit on the after-auth call is status 0 and not logged",
			verdict:  policy.Verdict{Action: policy.Tarpit, Delay: 5 * time.Second},
			calls:    []string{"allow", "allow"},
			wantLast: `{"status":0,"msg":""}`, wantLines: 1, wantAfter: []bool{false, true},
		},
		{
			name:     "allow on the after-auth call is not logged again",
			verdict:  policy.Verdict{Action: policy.Allow},
			calls:    []string{"allow", "allow", "report"},
			wantLast: `{"status":0,"msg":""}`, wantLines: 2, wantAfter: []bool{false, true},
		},
		{
			// The after-auth call comes only for a right password: its
			// refusal must read like a wrong password's (Dovecot's own text).
			name:     "deny on the after-auth call is logged, without a message",
			verdict:  policy.Verdict{Action: policy.Deny},
			msg:      "no",
			calls:    []string{"allow", "allow"},
			wantLast: `{"status":-1,"msg":""}`, wantLines: 2, wantAfter: []bool{false, true},
		},
		{
			name:     "report forgets the session: a new login on the same connection",
			verdict:  policy.Verdict{Action: policy.Allow},
			calls:    []string{"allow", "report", "allow", "allow"},
			wantLast: `{"status":0,"msg":""}`, wantLines: 3, wantAfter: []bool{false, false, true},
		},
		{
			name:     "a different body in the same session is a new attempt",
			verdict:  policy.Verdict{Action: policy.Allow},
			calls:    []string{"allow", "wrong"},
			wantLast: `{"status":0,"msg":""}`, wantLines: 2, wantAfter: []bool{false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeDecider{verdict: tt.verdict, msg: tt.msg}
			var dl bytes.Buffer
			h := NewHandler(Config{}, f, policy.NewDecisionLog(&dl), nil)
			var w *httptest.ResponseRecorder
			for _, c := range tt.calls {
				switch c {
				case "allow":
					w = post(h, "command=allow", aliceBody)
				case "wrong":
					w = post(h, "command=allow", aliceWrong)
				case "report":
					w = post(h, "command=report", aliceOK)
				}
				if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("%s: %d %q %s", c, w.Code, w.Header().Get("Content-Type"), w.Body)
				}
			}
			if got := w.Body.String(); got != tt.wantLast {
				t.Errorf("last reply %s, want %s", got, tt.wantLast)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Errorf("reply is not JSON: %s", w.Body)
			}
			if n := strings.Count(dl.String(), "\n"); n != tt.wantLines {
				t.Errorf("%d log lines, want %d:\n%s", n, tt.wantLines, dl.String())
			}
			var after []bool
			for _, a := range f.attempts {
				after = append(after, a.AfterAuth)
			}
			if fmt.Sprint(after) != fmt.Sprint(tt.wantAfter) {
				t.Errorf("AfterAuth per Decide call %v, want %v", after, tt.wantAfter)
			}
		})
	}
}

func TestAttemptFields(t *testing.T) {
	f := &fakeDecider{}
	h := NewHandler(Config{}, f, nil, nil)
	body := `{"conn":{"mech":"PLAIN"},"device_id":"x","local":"::ffff:192.0.2.1","login":"  Alice@Example.TEST ","lport":"993","protocol":"IMAP","pwhash":"06ca","remote":"::ffff:198.51.100.7","session_id":"s1","tls":true,"extra":[1,2,{"a":null}]}`
	if w := post(h, "command=allow", body); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	want := policy.Attempt{
		Login:   "alice@example.test",
		Service: rules.IMAP,
		Client:  netip.MustParseAddr("198.51.100.7"),
		Local:   netip.MustParseAddrPort("192.0.2.1:993"),
		TLS:     true,
		PwHash:  "06ca",
		Session: "s1",
		Door:    "dovecot",
	}
	if len(f.attempts) != 1 || f.attempts[0] != want {
		t.Fatalf("attempts %+v\nwant %+v", f.attempts, want)
	}
}

// A missing remote reaches the engine as an invalid address, which it
// refuses (bad_address): failing closed is safest, since every real
// Dovecot request has one and rules cannot be checked without it. An
// empty login is decided on the global lists only.
func TestMissingRemoteAndLogin(t *testing.T) {
	idx := rules.NewIndex()
	for _, r := range []rules.Rule{
		{ID: 1, Scope: rules.ScopeGlobal, Action: rules.Deny, Match: netip.MustParsePrefix("192.0.2.0/24")},
		{ID: 2, Scope: rules.ScopeAccount, Account: "*", Service: rules.POP3, Action: rules.Allow},
	} {
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
		idx.Add(&r)
	}
	var dl bytes.Buffer
	h := NewHandler(Config{}, policy.New(idx, nil), policy.NewDecisionLog(&dl), nil)
	tests := []struct{ body, want string }{
		{`{"login":"a@example.test","protocol":"imap","tls":false}`, `{"status":-1,"msg":"Your address could not be checked; please try again later."}`},
		{`{"login":"a@example.test","protocol":"imap","remote":"","tls":false}`, `{"status":-1,"msg":"Your address could not be checked; please try again later."}`},
		{`{"login":"a@example.test","protocol":"imap","remote":null,"tls":false}`, `{"status":-1,"msg":"Your address could not be checked; please try again later."}`},
		{`{"login":"","protocol":"imap","remote":"192.0.2.9","tls":false}`, `{"status":-1,"msg":"Logins from your address (192.0.2.9) are blocked on this server."}`},
		{`{"login":"","protocol":"imap","remote":"198.51.100.1","tls":false}`, `{"status":0,"msg":""}`},
		{`{"login":"a@example.test","protocol":"pop3","remote":"198.51.100.1","tls":false}`, `{"status":-1,"msg":"POP3 is disabled for this account."}`},
	}
	for _, tt := range tests {
		w := post(h, "command=allow", tt.body)
		if w.Code != 200 || w.Body.String() != tt.want {
			t.Errorf("%s: %d %s, want %s", tt.body, w.Code, w.Body, tt.want)
		}
	}
	if !strings.Contains(dl.String(), "reason=bad_address rule=- door=dovecot service=imap login=a@example.test ip=-") {
		t.Errorf("decision log:\n%s", dl.String())
	}
}

func TestErrors(t *testing.T) {
	f := &fakeDecider{}
	var diag bytes.Buffer
	log := slog.New(slog.NewTextHandler(&diag, nil))
	h := NewHandler(Config{MaxBodyBytes: 256}, f, nil, log)
	tests := []struct {
		name, method, query, body string
		want                      int
	}{
		{"GET", http.MethodGet, "command=allow", "", 405},
		{"PUT", http.MethodPut, "command=allow", aliceBody, 405},
		{"too large", http.MethodPost, "command=allow", `{"login":"` + strings.Repeat("a", 300) + `"}`, 413},
		{"empty body", http.MethodPost, "command=allow", "", 400},
		{"null", http.MethodPost, "command=allow", "null", 400},
		{"string", http.MethodPost, "command=allow", `"x"`, 400},
		{"truncated", http.MethodPost, "command=allow", `{"login":"a`, 400},
		{"two objects", http.MethodPost, "command=allow", `{}{}`, 400},
		{"login number", http.MethodPost, "command=allow", `{"login":1}`, 400},
		{"session object", http.MethodPost, "command=allow", `{"session_id":{}}`, 400},
		{"success string", http.MethodPost, "command=report", `{"success":"true"}`, 400},
		{"report without success", http.MethodPost, "command=report", aliceBody, 400},
		{"bad remote", http.MethodPost, "command=allow", `{"remote":"1.2.3"}`, 400},
		{"remote with port", http.MethodPost, "command=allow", `{"remote":"127.0.0.1:143"}`, 400},
		{"bad local", http.MethodPost, "command=allow", `{"remote":"127.0.0.1","local":"x"}`, 400},
		{"bad lport", http.MethodPost, "command=allow", `{"remote":"127.0.0.1","lport":"70000"}`, 400},
		{"no command", http.MethodPost, "", aliceBody, 400},
		{"unknown command", http.MethodPost, "command=drop", aliceBody, 400},
		{"bad escape in command", http.MethodPost, "command=%zz", aliceBody, 400},
		{"other params first", http.MethodPost, "node=a&b=c&command=allow", aliceBody, 200},
		{"escaped command", http.MethodPost, "command=%61llow", aliceBody, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "/any/path?"+tt.query, strings.NewReader(tt.body))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
			if tt.want == 405 && w.Header().Get("Allow") != "POST" {
				t.Errorf("Allow header %q", w.Header().Get("Allow"))
			}
		})
	}
	// Only the two good requests reached the decider; no session was
	// remembered by a bad one.
	if len(f.attempts) != 2 {
		t.Errorf("decider called %d times, want 2", len(f.attempts))
	}
	if strings.Contains(diag.String(), "06ca") {
		t.Errorf("pwhash logged:\n%s", diag.String())
	}
	for line := range strings.Lines(diag.String()) {
		if len(line) > 600 {
			t.Errorf("long diagnostic line: %s", line)
		}
	}
}

func TestAPIKey(t *testing.T) {
	tests := []struct {
		name string
		hdr  []string
		user string // basic auth user; "" with pass "" means none
		pass string
		want int
	}{
		{"dovecot's header, two spaces", []string{"X-API-Key", "  myapikey"}, "", "", 200},
		{"header", []string{"X-API-Key", "myapikey"}, "", "", 200},
		{"header, other case", []string{"x-api-key", "myapikey"}, "", "", 200},
		{"wrong header", []string{"X-API-Key", "myapikeyx"}, "", "", 401},
		{"prefix", []string{"X-API-Key", "myapi"}, "", "", 401},
		{"empty header", []string{"X-API-Key", ""}, "", "", 401},
		{"none", nil, "", "", 401},
		{"basic", nil, "dovecot", "myapikey", 200},
		{"basic, no user", nil, "", "myapikey", 200},
		{"basic, wrong", nil, "myapikey", "x", 401},
		{"wrong header, right basic", []string{"X-API-Key", "no"}, "u", "myapikey", 200},
		{"bearer is not supported", []string{"Authorization", "Bearer myapikey"}, "", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeDecider{}
			var diag bytes.Buffer
			h := NewHandler(Config{APIKey: "myapikey"}, f, nil, slog.New(slog.NewTextHandler(&diag, nil)))
			r := httptest.NewRequest(http.MethodPost, "/?command=allow", strings.NewReader(aliceBody))
			if tt.hdr != nil {
				r.Header.Set(tt.hdr[0], tt.hdr[1])
			}
			if tt.user != "" || tt.pass != "" {
				r.SetBasicAuth(tt.user, tt.pass)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == 401 {
				if len(f.attempts) != 0 {
					t.Error("decider called for an unauthorized request")
				}
				if !strings.Contains(diag.String(), "API key") || strings.Contains(diag.String(), "myapikey") {
					t.Errorf("diagnostic: %s", diag.String())
				}
			}
		})
	}
	// Without a key configured, anything goes.
	h := NewHandler(Config{}, &fakeDecider{}, nil, nil)
	if w := post(h, "command=allow", aliceBody, "X-API-Key", "whatever"); w.Code != 200 {
		t.Errorf("no key configured: %d", w.Code)
	}
}

func TestReport(t *testing.T) {
	type rep struct {
		a       policy.Attempt
		success bool
		now     time.Time
	}
	var got []rep
	clock := &testClock{t: time.Date(2026, 11, 22, 2, 31, 44, 0, time.UTC)}
	var dl bytes.Buffer
	f := &fakeDecider{}
	h := NewHandler(Config{Now: clock.now, OnReport: func(a *policy.Attempt, success bool, now time.Time) {
		got = append(got, rep{*a, success, now})
	}}, f, policy.NewDecisionLog(&dl), nil)
	bodies := []string{
		aliceOK,
		`{"device_id":"","login":"alice@example.test","protocol":"imap","pwhash":"06ca","remote":"127.0.0.11","session_id":"37wnS9Rgy5l/AAAL","success":false,"policy_reject":true,"tls":false}`,
		`{"device_id":"","fail_type":"credentials","login":"bob@example.test","protocol":"pop3","pwhash":"0687","remote":"::1","session_id":"","success":false,"policy_reject":false,"tls":true}`,
	}
	for _, b := range bodies {
		w := post(h, "command=report", b)
		if w.Code != 200 || w.Body.String() != `{"status":0,"msg":""}` {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
	}
	if len(f.attempts) != 0 {
		t.Error("report asked the decider")
	}
	// The policy_reject report is mailgate's own refusal: not a password
	// result, so OnReport does not get it.
	if len(got) != 2 || !got[0].success || got[1].success ||
		got[0].a.Login != "alice@example.test" || got[1].a.Client != netip.MustParseAddr("::1") ||
		got[1].a.Service != rules.POP3 || !got[1].a.TLS || !got[0].now.Equal(clock.t) {
		t.Errorf("OnReport got %+v", got)
	}
	want := "time=2026-11-22T02:31:44.000Z auth=success door=dovecot service=imap login=alice@example.test ip=127.0.0.1 session=zHU7R9RgWLZ/AAAB\n" +
		"time=2026-11-22T02:31:44.000Z auth=failure door=dovecot service=pop3 login=bob@example.test ip=::1\n"
	if dl.String() != want {
		t.Errorf("decision log (the policy_reject report writes nothing):\n%s\nwant:\n%s", dl.String(), want)
	}
}

func TestSessionsExpire(t *testing.T) {
	clock := &testClock{t: time.Unix(1_800_000_000, 0)}
	f := &fakeDecider{}
	h := NewHandler(Config{Now: clock.now}, f, nil, nil)
	post(h, "command=allow", aliceBody)
	clock.t = clock.t.Add(DefaultSessionTTL)
	post(h, "command=allow", aliceBody) // too late: a new before-auth call
	clock.t = clock.t.Add(DefaultSessionTTL - time.Nanosecond)
	post(h, "command=allow", aliceBody) // just in time
	if fmt.Sprint(f.attempts[0].AfterAuth, f.attempts[1].AfterAuth, f.attempts[2].AfterAuth) != "false false true" {
		t.Errorf("AfterAuth: %v %v %v", f.attempts[0].AfterAuth, f.attempts[1].AfterAuth, f.attempts[2].AfterAuth)
	}
	if h.Sessions() != 1 {
		t.Errorf("Sessions() = %d", h.Sessions())
	}
	post(h, "command=report", aliceOK)
	if h.Sessions() != 0 {
		t.Errorf("Sessions() after report = %d", h.Sessions())
	}
}

// TestKeepAlive runs the handler behind a real HTTP server on loopback
// and sends one login's allow, allow, report on one keep-alive
// connection, as Dovecot does (protocols.md §1.1, §1.5).
func TestKeepAlive(t *testing.T) {
	idx := rules.NewIndex()
	var dl bytes.Buffer
	var mu sync.Mutex
	var reports []bool
	h := NewHandler(Config{APIKey: "myapikey", OnReport: func(a *policy.Attempt, ok bool, now time.Time) {
		mu.Lock()
		reports = append(reports, ok)
		mu.Unlock()
	}}, policy.New(idx, nil), policy.NewDecisionLog(&syncWriter{w: &dl, mu: &mu}), nil)
	srv := httptest.NewUnstartedServer(h)
	var conns int
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()

	client := srv.Client()
	for i, step := range []struct{ cmd, body string }{
		{"allow", aliceBody}, {"allow", aliceBody}, {"report", aliceOK},
	} {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/policy?command="+step.cmd, strings.NewReader(step.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "dovecot/auth-policy-client")
		req.Header.Set("X-API-Key", " myapikey")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || string(b) != `{"status":0,"msg":""}` || resp.ContentLength != int64(len(b)) {
			t.Fatalf("step %d: %d %q (Content-Length %d)", i, resp.StatusCode, b, resp.ContentLength)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("%d connections, want 1 (keep-alive)", conns)
	}
	if fmt.Sprint(reports) != "[true]" {
		t.Errorf("reports %v", reports)
	}
	if n := strings.Count(dl.String(), "\n"); n != 2 || !strings.Contains(dl.String(), "decision=allow") || !strings.Contains(dl.String(), "auth=success") {
		t.Errorf("decision log:\n%s", dl.String())
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestAppendJSONString(t *testing.T) {
	var s struct{ Msg string }
	in := "quote \" backslash \\ <tag> & é \u2028"
	if err := json.Unmarshal(appendJSONString([]byte(`{"Msg":`), in), &s); err == nil {
		t.Fatal("unterminated object parsed")
	}
	b := append(appendJSONString([]byte(`{"Msg":`), in), '}')
	if err := json.Unmarshal(b, &s); err != nil || s.Msg != in {
		t.Errorf("round trip %s: %q %v", b, s.Msg, err)
	}
}

// A flood of bad requests logs at most throttle.Burst lines per interval, and
// the next line after a quiet spell says how many were left out.
func TestBadRequestLogIsRateLimited(t *testing.T) {
	var logBuf bytes.Buffer
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	h := NewHandler(Config{APIKey: "k", Now: func() time.Time { return now }}, nil, nil,
		slog.New(slog.NewTextHandler(&logBuf, nil)))
	for range 100 {
		req := httptest.NewRequest(http.MethodPost, "/?command=allow", strings.NewReader("{}"))
		req.Header.Set("X-API-Key", "wrong")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if n := strings.Count(logBuf.String(), "\n"); n != throttle.Burst {
		t.Fatalf("%d log lines for 100 bad requests, want %d", n, throttle.Burst)
	}
	now = now.Add(throttle.Interval)
	req := httptest.NewRequest(http.MethodPost, "/?command=allow", strings.NewReader("{}"))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if !strings.Contains(logBuf.String(), "similar_lines_suppressed=90") {
		t.Fatalf("no suppressed count in:\n%s", logBuf.String())
	}
}

// A banned login is tarpitted on the before-auth call and refused on the
// after-auth call, even when the tarpit is longer than the usual session
// memory; without a session id the refusal comes at once.
// A banned login is refused on the before-auth call, so Dovecot never
// checks its password (a guess during the ban learns nothing), and a
// refusal is -1 on every call: a flood of other sessions that evicts the
// session table cannot turn it into a wait that Dovecot would ignore on
// the after-auth call (letting the login in).
func TestBannedLoginRefusedBeforeAuth(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	f := &fakeDecider{verdict: policy.Verdict{Action: policy.Deny, Reason: policy.ReasonBannedLogin, Delay: 2 * time.Minute}, msg: "banned"}
	h := NewHandler(Config{Now: clock.now, MaxTarpit: 2 * time.Minute}, f, nil, nil)
	if got := post(h, "command=allow", aliceBody).Body.String(); got != `{"status":-1,"msg":"banned"}` {
		t.Fatalf("before-auth: %s", got)
	}
	noSession := strings.Replace(aliceBody, `"session_id":"zHU7R9RgWLZ/AAAB"`, `"session_id":""`, 1)
	if noSession == aliceBody {
		t.Fatal("test body has no session id to remove")
	}
	if got := post(h, "command=allow", noSession).Body.String(); got != `{"status":-1,"msg":"banned"}` {
		t.Fatalf("without a session: %s", got)
	}

	// The flood: more sessions than the table holds, then the (forged or
	// late) second call of the first session.
	for i := range DefaultMaxSession + 1 {
		body := strings.Replace(aliceBody, `"session_id":"zHU7R9RgWLZ/AAAB"`, fmt.Sprintf(`"session_id":"flood%07d"`, i), 1)
		if got := post(h, "command=allow", body).Body.String(); !strings.HasPrefix(got, `{"status":-1,`) {
			t.Fatalf("flood request %d: %s", i, got)
		}
	}
	if got := post(h, "command=allow", aliceBody).Body.String(); !strings.HasPrefix(got, `{"status":-1,`) {
		t.Fatalf("after the flood: %s", got)
	}
}

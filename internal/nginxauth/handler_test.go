package nginxauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
	"mailgate/internal/throttle"
)

func TestCorrectPasswordIMAP(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	w := ev.serve(t, withSecret(nginxRequest("plain", "imap", "Alice@Example.test", "alicepw", "127.0.0.71", 1), "Auth-SSL: on"))
	// The verifier gets the login as typed; this fake is case-sensitive.
	check(t, w, want{status: "Invalid login or password", wait: "3"})

	w = ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.0.71", 2)
	check(t, w, okIMAP)
	if w.Code != http.StatusOK {
		t.Errorf("HTTP %d", w.Code)
	}
	got := ev.v.last()
	wantReq := passcheck.Request{Service: "imap", Login: "alice@example.test", Client: netip.MustParseAddr("127.0.0.71")}
	if got != wantReq {
		t.Errorf("verifier got %+v, want %+v", got, wantReq)
	}
	if first := ev.v.calls[0]; first.Login != "Alice@Example.test" || !first.TLS {
		t.Errorf("first call %+v: want the login as typed and TLS", first)
	}
	wantHash := passcheck.PwHash(testNonce, "alice@example.test", "alicepw")
	if len(ev.reports) != 2 || ev.reports[1] != (report{"alice@example.test", "127.0.0.71", wantHash, true}) {
		t.Errorf("reports %+v, want the success with pwhash %s last", ev.reports, wantHash)
	}
	// Both use the normalized login for the hash: the same password is the same bucket.
	if ev.reports[0].pwhash != wantHash {
		t.Errorf("pwhash of the mixed-case login %s, want %s", ev.reports[0].pwhash, wantHash)
	}
	wantLog := "time=2026-11-22T02:31:44.000Z decision=allow reason=default rule=- door=nginx service=imap login=alice@example.test ip=127.0.0.71\n" +
		"time=2026-11-22T02:31:44.000Z auth=failure door=nginx service=imap login=alice@example.test ip=127.0.0.71\n" +
		"time=2026-11-22T02:31:44.000Z decision=allow reason=default rule=- door=nginx service=imap login=alice@example.test ip=127.0.0.71\n" +
		"time=2026-11-22T02:31:44.000Z auth=success door=nginx service=imap login=alice@example.test ip=127.0.0.71\n"
	if ev.decisions.String() != wantLog {
		t.Errorf("decision log:\n%s\nwant:\n%s", ev.decisions.String(), wantLog)
	}
	if ev.diags.Len() != 0 {
		t.Errorf("diagnostics: %s", ev.diags.String())
	}
}

func TestWrongPassword(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	check(t, ev.login(t, "imap", "alice@example.test", "wrong", "127.0.0.72", 1), want{status: "Invalid login or password", wait: "3"})
	check(t, ev.login(t, "pop3", "alice@example.test", "wrong", "127.0.0.72", 1), want{status: "Invalid login or password", wait: "3"})
	check(t, ev.login(t, "smtp", "alice@example.test", "wrong", "127.0.0.72", 1), want{status: "Invalid login or password", wait: "3", code: "535 5.7.8"})
	// Attempts 10 and 11: Auth-Wait stops after MaxWaitAttempts.
	check(t, ev.login(t, "imap", "alice@example.test", "wrong", "127.0.0.72", 10), want{status: "Invalid login or password", wait: "3"})
	check(t, ev.login(t, "imap", "alice@example.test", "wrong", "127.0.0.72", 11), want{status: "Invalid login or password"})
	check(t, ev.login(t, "smtp", "alice@example.test", "wrong", "127.0.0.72", 11), want{status: "Invalid login or password", code: "535 5.7.8"})
	if len(ev.reports) != 6 {
		t.Fatalf("%d reports, want 6", len(ev.reports))
	}
	for _, r := range ev.reports {
		if r.success || r.pwhash != passcheck.PwHash(testNonce, "alice@example.test", "wrong") {
			t.Errorf("report %+v", r)
		}
	}
	if n := strings.Count(ev.decisions.String(), "auth=failure"); n != 6 {
		t.Errorf("%d failure lines, want 6:\n%s", n, ev.decisions.String())
	}
}

func TestConfigDefaultsAndOptions(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, func(c *Config) {
		c.FailWait = 0
		c.MaxWaitAttempts = 2
		c.SMTPErrorCode = "535 5.7.0"
		c.FailMessage = "Nope\r\nAuth-Status: OK"
		c.TempFailMessage = "Later"
		c.SecretHeader = "x-mailgate-key"
		c.Backends = map[string]netip.AddrPort{"smtp": netip.MustParseAddrPort("[::ffff:127.0.0.1]:25"), "imap": netip.MustParseAddrPort("[::1]:143")}
	})
	send := func(proto, pass string, attempt int) want {
		w := ev.serve(t, nginxRequest("plain", proto, "alice@example.test", pass, "127.0.0.73", attempt)+"X-Mailgate-Key: "+testSecret+"\r\n\r\n")
		hd := w.Result().Header
		return want{hd.Get("Auth-Status"), hd.Get("Auth-Server"), hd.Get("Auth-Port"), hd.Get("Auth-Wait"), hd.Get("Auth-Error-Code")}
	}
	if got := send("smtp", "wrong", 1); got != (want{status: "Nope  Auth-Status: OK", code: "535 5.7.0"}) {
		t.Errorf("FailWait 0: %+v", got)
	}
	if got := send("smtp", "alicepw", 1); got != (want{status: "OK", server: "127.0.0.1", port: "25"}) {
		t.Errorf("mapped backend: %+v", got)
	}
	if got := send("imap", "alicepw", 3); got != (want{status: "OK", server: "::1", port: "143"}) {
		t.Errorf("IPv6 backend: %+v", got)
	}
	if got := send("pop3", "alicepw", 1); got != (want{status: "Later"}) {
		t.Errorf("no pop3 backend: %+v", got)
	}
	// The default header name is no longer accepted.
	w := ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.0.73", 1)
	check(t, w, want{status: "Later"})

	// Zero config: defaults.
	h := NewHandler(Config{Backends: testBackends}, newEngine(t), &fakeVerifier{}, nil, nil)
	w = serveRaw(t, h, nginxRequest("plain", "smtp", "x@example.test", "y", "127.0.0.74", 1)+"\r\n")
	check(t, w, want{status: DefaultFailMessage, code: DefaultSMTPErrorCode})
	if h.maxWait != DefaultMaxWaitAttempts || h.maxTarpit != DefaultMaxTarpit || len(h.nonce) != 16 {
		t.Errorf("defaults: maxWait %d maxTarpit %v nonce %d bytes", h.maxWait, h.maxTarpit, len(h.nonce))
	}
}

// nginx %XX-escapes space, '%' and control characters only; '+' and
// bytes ≥ 0x80 are sent as they are (protocols.md §2.1).
func TestPasswordUnescaped(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	// The capture: the client typed "bad pass%".
	check(t, ev.login(t, "imap", "carol@example.test", "bad%20pass%25", "127.0.0.75", 1), okIMAP)
	ev.v.users["dave@example.test"] = "a+b\tc\x7fé"
	check(t, ev.login(t, "imap", "dave@example.test", "a+b%09c%7Fé", "127.0.0.75", 1), okIMAP)
	check(t, ev.login(t, "imap", "dave@example.test", "a b\tcé", "127.0.0.75", 1), want{status: "Invalid login or password", wait: "3"})
}

func TestVerifyOnlyWhereAsked(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, func(c *Config) {
		c.Verify = map[string]bool{"imap": false, "pop3": false, "smtp": false}
	})
	// IMAP and POP3: OK without a check; the backend checks the password.
	check(t, ev.login(t, "imap", "alice@example.test", "wrong", "127.0.0.76", 1), okIMAP)
	check(t, ev.login(t, "pop3", "alice@example.test", "wrong", "127.0.0.76", 1), want{status: "OK", server: "127.0.0.1", port: "10110"})
	if ev.v.n() != 0 || len(ev.reports) != 0 || strings.Contains(ev.decisions.String(), "auth=") {
		t.Fatalf("verifier calls %d, reports %d, log %s: want none", ev.v.n(), len(ev.reports), ev.decisions.String())
	}
	// SMTP is always checked (protocols.md §2.4: OK for a wrong password relays mail).
	check(t, ev.login(t, "smtp", "alice@example.test", "wrong", "127.0.0.76", 1), want{status: "Invalid login or password", wait: "3", code: "535 5.7.8"})
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.0.76", 1), want{status: "OK", server: "127.0.0.1", port: "10025"})
	if ev.v.n() != 2 || ev.v.last().Service != "smtp" {
		t.Fatalf("verifier calls %+v", ev.v.calls)
	}
}

// smtp_auth none: an MTA delivering mail, decided on its address alone.
func TestMethodNone(t *testing.T) {
	ev := newEnv(t, newEngine(t, "global all deny 127.0.0.66"), nil, nil)
	none := func(ip string) string {
		return withSecret(nginxRequest("none", "smtp", "", "", ip, 1),
			"Auth-SMTP-Helo: mta.remote.test", "Auth-SMTP-From: MAIL FROM:<sender@remote.test>", "Auth-SMTP-To: RCPT TO:<bob@example.test>")
	}
	check(t, ev.serve(t, none("127.0.0.104")), want{status: "OK", server: "127.0.0.1", port: "10025"})
	check(t, ev.serve(t, none("127.0.0.66")), want{status: "Logins from your address (127.0.0.66) are blocked on this server.", code: "535 5.7.8"})
	if ev.v.n() != 0 || len(ev.reports) != 0 {
		t.Fatalf("verifier %d calls, %d reports: want none", ev.v.n(), len(ev.reports))
	}
	wantLog := "time=2026-11-22T02:31:44.000Z decision=allow reason=default rule=- door=nginx service=smtp login=\"\" ip=127.0.0.104\n" +
		"time=2026-11-22T02:31:44.000Z decision=deny reason=global_deny rule=1 door=nginx service=smtp login=\"\" ip=127.0.0.66\n"
	if ev.decisions.String() != wantLog {
		t.Errorf("decision log:\n%s\nwant:\n%s", ev.decisions.String(), wantLog)
	}
	// Even when nginx sends a user with it, method none has no login.
	check(t, ev.serve(t, withSecret(nginxRequest("none", "smtp", "alice@example.test", "x", "127.0.0.104", 1))), want{status: "OK", server: "127.0.0.1", port: "10025"})
	if !strings.HasSuffix(ev.decisions.String(), "login=\"\" ip=127.0.0.104\n") {
		t.Errorf("decision log:\n%s", ev.decisions.String())
	}
}

func TestUnsupportedMethods(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	apop := withSecret(nginxRequest("apop", "pop3", "bob@example.test", "aa959446b8b39935879c9a5cf5168339", "127.0.0.1", 1),
		"Auth-Salt: <106817736.1795314951@mx.example.test>")
	check(t, ev.serve(t, apop), want{status: UnsupportedMessage})
	check(t, ev.serve(t, withSecret(nginxRequest("cram-md5", "imap", "bob@example.test", "d41d8cd98f00b204e9800998ecf8427e", "127.0.0.1", 1))), want{status: UnsupportedMessage})
	check(t, ev.serve(t, withSecret(nginxRequest("cram-md5", "smtp", "bob@example.test", "d41d8cd98f00b204e9800998ecf8427e", "127.0.0.1", 1))), want{status: UnsupportedMessage, code: "535 5.7.8"})
	check(t, ev.serve(t, withSecret(nginxRequest("external", "smtp", "", "", "127.0.0.1", 1))), want{status: UnsupportedMessage, code: "535 5.7.8"})
	if ev.v.n() != 0 || ev.decisions.Len() != 0 {
		t.Fatalf("verifier %d calls, decisions %q: want none", ev.v.n(), ev.decisions.String())
	}
	if !strings.Contains(ev.diags.String(), "pop3_auth plain") || !strings.Contains(ev.diags.String(), "method=apop") {
		t.Errorf("diagnostics should tell the admin what to configure:\n%s", ev.diags.String())
	}
}

func TestPolicyRefusal(t *testing.T) {
	e := newEngine(t,
		"alice@example.test imap deny 127.0.0.9",
		"alice@example.test pop3 allow none",
		"@example.test smtp allow 127.0.5.0/24",
	)
	ev := newEnv(t, e, nil, nil)
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.0.9", 1), want{status: "This account may not use IMAP from your address (127.0.0.9)."})
	check(t, ev.login(t, "pop3", "alice@example.test", "alicepw", "127.0.0.77", 1), want{status: "POP3 is disabled for this account."})
	check(t, ev.login(t, "smtp", "bob@example.test", "bobpw", "127.0.0.77", 1), want{status: "This account may not use SMTP (sending mail) from your address (127.0.0.77).", code: "535 5.7.8"})
	if ev.v.n() != 0 || len(ev.reports) != 0 {
		t.Fatalf("a refused attempt's password was checked (%d) or reported (%d)", ev.v.n(), len(ev.reports))
	}
	check(t, ev.login(t, "smtp", "bob@example.test", "bobpw", "127.0.5.1", 1), want{status: "OK", server: "127.0.0.1", port: "10025"})
	for _, want := range []string{"reason=account_deny rule=1", "reason=service_closed rule=2", "reason=not_in_allowlist", "decision=allow reason=account_allow rule=3"} {
		if !strings.Contains(ev.decisions.String(), want) {
			t.Errorf("decision log lacks %q:\n%s", want, ev.decisions.String())
		}
	}
}

// An engine message may quote the login the client typed; nginx copies
// Auth-Status into the client's reply line.
func TestRefusalTextSanitised(t *testing.T) {
	idx := newEngine(t, "global all deny 127.0.0.9").Index()
	e := policy.New(idx, policy.Messages{"global_deny": "No {login} from {ip}"})
	ev := newEnv(t, e, nil, nil)
	// (A login that is not UTF-8 never reaches the engine: bad_login.)
	w := ev.login(t, "imap", "é"+strings.Repeat("x", 250), "pw", "127.0.0.9", 1)
	st := w.Result().Header.Get("Auth-Status")
	if len(st) > maxMessage || strings.ContainsAny(st, "\r\n\x00\x01\x7f") || !strings.HasPrefix(st, "No éxxx") {
		t.Fatalf("Auth-Status %q", st)
	}
	for _, tt := range []struct{ in, want string }{
		{"a\r\nb", "a  b"},
		{"", "def"},
		{"  ", "def"},
		{"OK", "def"},
		{"WAIT", "def"},
		{" OK ", "def"},
		{"OK then", "OK then"},
		{"\x00\x01", "def"},
		{strings.Repeat("é", 300), strings.Repeat("é", 200)},
	} {
		if got := statusText(tt.in, "def"); got != tt.want {
			t.Errorf("statusText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeDecider answers a fixed verdict.
type fakeDecider struct {
	v   policy.Verdict
	msg string
	n   int
}

func (f *fakeDecider) Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict {
	f.n++
	return f.v
}
func (f *fakeDecider) Message(a *policy.Attempt, v *policy.Verdict) string { return f.msg }

func TestEngineMessageCannotForgeOK(t *testing.T) {
	for _, msg := range []string{"", "OK", "WAIT", "\r\n"} {
		d := &fakeDecider{v: policy.Verdict{Action: policy.Deny, Reason: policy.ReasonGlobalDeny}, msg: msg}
		h := NewHandler(Config{Backends: testBackends}, d, &fakeVerifier{}, nil, nil)
		w := serveRaw(t, h, nginxRequest("plain", "smtp", "a@example.test", "pw", "127.0.0.1", 1)+"\r\n")
		check(t, w, want{status: DefaultFailMessage, code: DefaultSMTPErrorCode})
	}
}

// A banned login under attack is tarpitted, then refused: nginx holds the
// client for Auth-Wait seconds and the password is not checked.
func TestBannedLogin(t *testing.T) {
	tr := abuse.New(abuse.DefaultConfig())
	e := newEngine(t).WithAbuse(tr, true, time.Minute, 5*time.Second)
	ev := newEnv(t, e, tr, nil)
	// Rule (a): three failures for one login from two or more addresses.
	for i, ip := range []string{"127.0.1.1", "127.0.1.2", "127.0.1.3"} {
		check(t, ev.login(t, "imap", "bob@example.test", fmt.Sprintf("guess%d", i), ip, 1), want{status: "Invalid login or password", wait: "3"})
	}
	calls := ev.v.n()
	msg := "Too many failed logins for this account; please try again later or ask your mail administrator."
	check(t, ev.login(t, "imap", "bob@example.test", "bobpw", "127.0.1.4", 1), want{status: msg, wait: "60"})
	check(t, ev.login(t, "smtp", "bob@example.test", "bobpw", "127.0.1.4", 10), want{status: msg, wait: "60", code: "535 5.7.8"})
	check(t, ev.login(t, "imap", "bob@example.test", "bobpw", "127.0.1.4", 11), want{status: msg})
	if ev.v.n() != calls {
		t.Errorf("a banned login's password was checked")
	}
	if !strings.Contains(ev.decisions.String(), "decision=deny reason=banned_login rule=- ban=1 delay=60 door=nginx service=imap login=bob@example.test ip=127.0.1.4") {
		t.Errorf("decision log:\n%s", ev.decisions.String())
	}
	// Other logins from those addresses are not affected.
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.1.1", 1), okIMAP)
}

func TestBannedAddress(t *testing.T) {
	tr := abuse.New(abuse.DefaultConfig())
	e := newEngine(t).WithAbuse(tr, true, time.Minute, 5*time.Second)
	ev := newEnv(t, e, tr, nil)
	// Rule (b): five failures from one address, different passwords.
	for i := range 5 {
		check(t, ev.login(t, "smtp", fmt.Sprintf("user%d@example.test", i), "guess", "127.0.2.9", 1), want{status: "Invalid login or password", wait: "3", code: "535 5.7.8"})
	}
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.2.9", 1),
		want{status: "Too many failed logins from your address (127.0.2.9); please try again later.", code: "535 5.7.8"})
	if ev.v.n() != 5 {
		t.Errorf("%d verifier calls, want 5", ev.v.n())
	}
}

// A stale client (the same wrong password again and again) is tarpitted on
// the server side, then its password is checked as usual; the sleep is
// capped by MaxTarpit and abandoned when nginx gives up.
func TestStaleClientTarpit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := abuse.New(abuse.DefaultConfig())
		e := newEngine(t).WithAbuse(tr, true, time.Minute, 5*time.Second)
		ev := newEnv(t, e, tr, func(c *Config) { c.Now = time.Now })
		for range 2 {
			check(t, ev.login(t, "imap", "alice@example.test", "oldpw", "127.0.3.1", 1), want{status: "Invalid login or password", wait: "3"})
		}
		start := time.Now()
		check(t, ev.login(t, "imap", "alice@example.test", "oldpw", "127.0.3.1", 1), want{status: "Invalid login or password", wait: "3"})
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("stale client held %v, want 5s", d)
		}
		if !strings.Contains(ev.decisions.String(), "decision=tarpit reason=stale_password rule=- delay=5 door=nginx") {
			t.Errorf("decision log:\n%s", ev.decisions.String())
		}
		// A new password is not stale: no tarpit.
		start = time.Now()
		check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.3.1", 2), okIMAP)
		if d := time.Since(start); d != 0 {
			t.Errorf("fresh password held %v", d)
		}
		if ev.v.n() != 4 {
			t.Errorf("%d verifier calls, want 4", ev.v.n())
		}
	})
}

func TestTarpitCappedAndAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &fakeDecider{v: policy.Verdict{Action: policy.Tarpit, Reason: policy.ReasonStalePassword, Delay: time.Hour}}
		v := &fakeVerifier{users: map[string]string{"a@example.test": "pw"}}
		h := NewHandler(Config{Backends: testBackends, MaxTarpit: 2 * time.Second}, d, v, nil, nil)
		start := time.Now()
		check(t, serveRaw(t, h, nginxRequest("plain", "smtp", "a@example.test", "pw", "127.0.0.1", 1)+"\r\n"), want{status: "OK", server: "127.0.0.1", port: "10025"})
		if el := time.Since(start); el != 2*time.Second {
			t.Errorf("held %v, want MaxTarpit 2s", el)
		}

		// nginx gives up after 1s: the door stops sleeping and checks nothing.
		h = NewHandler(Config{Backends: testBackends}, d, v, nil, nil)
		req := mustRequest(t, nginxRequest("plain", "smtp", "a@example.test", "pw", "127.0.0.1", 1)+"\r\n")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w := httptest.NewRecorder()
		start = time.Now()
		h.ServeHTTP(w, req.WithContext(ctx))
		if el := time.Since(start); el != time.Second {
			t.Errorf("abandoned after %v, want 1s", el)
		}
		check(t, w, want{status: DefaultTempFailMessage, code: TempFailSMTPCode})
		if v.n() != 1 {
			t.Errorf("%d verifier calls, want 1 (none after the abandoned tarpit)", v.n())
		}
	})
}

func TestVerifierDown(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	ev.v.err = errors.New("dial tcp 127.0.0.1:12345: connect: connection refused")
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.0.78", 1), want{status: DefaultTempFailMessage, wait: "3", code: "454 4.7.0"})
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.0.78", 11), want{status: DefaultTempFailMessage})
	if len(ev.reports) != 0 || strings.Contains(ev.decisions.String(), "auth=") {
		t.Errorf("a verifier error was reported as a result: %+v\n%s", ev.reports, ev.decisions.String())
	}
	if !strings.Contains(ev.diags.String(), `msg="nginx: password check failed" protocol=smtp login=alice@example.test ip=127.0.0.78 err="dial tcp`) {
		t.Errorf("diagnostics:\n%s", ev.diags.String())
	}

	// No verifier at all: SMTP cannot be let through.
	h := NewHandler(Config{Backends: testBackends}, newEngine(t), nil, nil, nil)
	check(t, serveRaw(t, h, nginxRequest("plain", "smtp", "a@example.test", "pw", "127.0.0.1", 1)+"\r\n"), want{status: DefaultTempFailMessage, code: TempFailSMTPCode})
	check(t, serveRaw(t, h, nginxRequest("plain", "imap", "a@example.test", "pw", "127.0.0.1", 1)+"\r\n"), okIMAP)
}

func TestNoBackend(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, func(c *Config) {
		c.Backends = map[string]netip.AddrPort{"imap": testBackends["imap"], "smtp": {}}
	})
	check(t, ev.login(t, "pop3", "alice@example.test", "alicepw", "127.0.0.79", 1), want{status: DefaultTempFailMessage, wait: "3"})
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.0.79", 1), want{status: DefaultTempFailMessage, wait: "3", code: "454 4.7.0"})
	if ev.v.n() != 0 {
		t.Errorf("password checked for a protocol without backend")
	}
	if strings.Count(ev.diags.String(), "no backend configured") != 2 {
		t.Errorf("diagnostics:\n%s", ev.diags.String())
	}
}

func TestSecret(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	base := nginxRequest("plain", "imap", "alice@example.test", "alicepw", "127.0.0.80", 1)
	for name, raw := range map[string]string{
		"wrong":   base + "X-Auth-Key: shared-secreT\r\n\r\n",
		"missing": base + "\r\n",
		"prefix":  base + "X-Auth-Key: shared\r\n\r\n",
		"twice":   base + "X-Auth-Key: shared-secret\r\nX-Auth-Key: shared-secret\r\n\r\n",
	} {
		w := ev.serve(t, raw)
		check(t, w, want{status: DefaultTempFailMessage})
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: HTTP %d, want 403", name, w.Code)
		}
	}
	w := ev.serve(t, strings.Replace(base, "imap", "smtp", 1)+"\r\n")
	check(t, w, want{status: DefaultTempFailMessage, code: TempFailSMTPCode})
	if ev.v.n() != 0 || ev.decisions.Len() != 0 {
		t.Fatalf("an unauthorized request got to the engine or verifier")
	}
	if n := strings.Count(ev.diags.String(), "missing or wrong shared secret"); n != 5 {
		t.Errorf("%d diagnostic lines, want 5:\n%s", n, ev.diags.String())
	}
	check(t, ev.serve(t, base+"x-auth-key:   shared-secret  \r\n\r\n"), okIMAP)
}

// Diagnostics of a flood are rate limited: 10 lines per 10 s, and the
// next line counts what was left out.
func TestDiagnosticsRateLimited(t *testing.T) {
	now := testNow
	ev := newEnv(t, newEngine(t), nil, func(c *Config) { c.Now = func() time.Time { return now } })
	for range 25 {
		ev.serve(t, "GET / HTTP/1.0\r\n\r\n")
	}
	if n := strings.Count(ev.diags.String(), "\n"); n != 10 {
		t.Fatalf("%d lines, want 10:\n%s", n, ev.diags.String())
	}
	now = now.Add(throttle.Interval)
	ev.serve(t, "GET / HTTP/1.0\r\n\r\n")
	if !strings.Contains(ev.diags.String(), "similar_lines_suppressed=15") {
		t.Fatalf("no count of suppressed lines:\n%s", ev.diags.String())
	}
}

func TestMalformedRequests(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	ok := nginxRequest("plain", "imap", "alice@example.test", "alicepw", "127.0.0.81", 1)
	// Before a request is parsed its protocol is not known for sure:
	// refusals carry Auth-Error-Code unless it says imap or pop3.
	tests := []struct {
		name, raw, err string
	}{
		{"no headers", "GET / HTTP/1.0\r\n", "missing Auth-Method"},
		{"bad Client-IP", strings.Replace(ok, "127.0.0.81", "127.0.0.256", 1), `Client-Ip \"127.0.0.256\" is not an IP address`},
		{"host name as Client-IP", strings.Replace(ok, "127.0.0.81", "mail.example.test", 1), "is not an IP address"},
		{"no Client-IP", strings.Replace(ok, "Client-IP: 127.0.0.81\r\n", "", 1), "missing Client-Ip"},
		{"unknown protocol", strings.Replace(ok, "imap", "nntp", 1), `Auth-Protocol \"nntp\": not imap, pop3 or smtp`},
		{"unknown method", strings.Replace(ok, "plain", "gssapi", 1), `Auth-Method \"gssapi\": unknown method`},
		{"none over imap", strings.Replace(ok, "plain", "none", 1), "nginx uses it only for SMTP"},
		{"attempt 0", strings.Replace(ok, "Attempt: 1", "Attempt: 0", 1), "out of range"},
		{"attempt -1", strings.Replace(ok, "Attempt: 1", "Attempt: -1", 1), "not an attempt number"},
		{"attempt huge", strings.Replace(ok, "Attempt: 1", "Attempt: 99999999999", 1), "not an attempt number"},
		{"two users", strings.Replace(ok, "Auth-User:", "Auth-User: x\r\nAuth-User:", 1), "Auth-User header sent 2 times"},
		{"bad escape in user", strings.Replace(ok, "alice@", "alice%2@", 1), "'%' not followed by two hex digits"},
		{"control char in user", strings.Replace(ok, "alice@", "alice%0A@", 1), "has a control character"},
		{"bad escape in password", strings.Replace(ok, "alicepw", "alicepw%", 1), "Auth-Pass is not validly escaped"},
		{"long login", strings.Replace(ok, "alice@", strings.Repeat("a", 300)+"@", 1), "Auth-User is 313 bytes long, over the limit of 256"},
		{"long escaped login", strings.Replace(ok, "alice@", strings.Repeat("%41", 300)+"@", 1), "Auth-User header is 913 bytes long"},
		{"long password", strings.Replace(ok, "alicepw", strings.Repeat("p", 1025), 1), "Auth-Pass is 1025 bytes long, over the limit of 1024"},
		{"bad proxy addr", ok + "Proxy-Protocol-Addr: 1.2.3\r\n", `Proxy-Protocol-Addr \"1.2.3\" is not an IP address`},
		{"bad proxy port", ok + "Proxy-Protocol-Addr: 192.0.2.1\r\nProxy-Protocol-Port: 65536\r\n", "not a port number"},
		{"huge header block", ok + "Auth-SSL-Cert: " + strings.Repeat("x", MaxHeaderBytes) + "\r\n", "header block of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev.diags.Reset()
			ev.h.limit = throttle.Log{}
			w := ev.serve(t, withSecret(tt.raw))
			if w.Code != http.StatusBadRequest {
				t.Errorf("HTTP %d, want 400", w.Code)
			}
			code := ""
			if tt.name == "no headers" || tt.name == "unknown protocol" {
				code = "535 5.7.8"
			}
			check(t, w, want{status: BadRequestMessage, code: code})
			if !strings.Contains(ev.diags.String(), tt.err) {
				t.Errorf("diagnostic lacks %q:\n%s", tt.err, ev.diags.String())
			}
			if strings.Contains(ev.diags.String(), "alicepw") {
				t.Errorf("password in diagnostics:\n%s", ev.diags.String())
			}
		})
	}
	if ev.v.n() != 0 || ev.decisions.Len() != 0 {
		t.Fatalf("malformed requests reached the engine (%q) or verifier (%d)", ev.decisions.String(), ev.v.n())
	}
	// SMTP refusals carry the code.
	w := ev.serve(t, withSecret(strings.Replace(nginxRequest("plain", "smtp", "a", "b", "127.0.0.81", 1), "Attempt: 1", "Attempt: x", 1)))
	check(t, w, want{status: BadRequestMessage, code: "535 5.7.8"})
}

func TestProxyProtocolAndIPv6(t *testing.T) {
	ev := newEnv(t, newEngine(t, "global all deny 203.0.113.0/24"), nil, nil)
	// Behind a load balancer: Client-IP is the balancer, the PROXY header the client.
	raw := withSecret(nginxRequest("plain", "smtp", "alice@example.test", "alicepw", "127.0.0.82", 1),
		"Proxy-Protocol-Addr: 203.0.113.5", "Proxy-Protocol-Port: 51234",
		"Proxy-Protocol-Server-Addr: 198.51.100.1", "Proxy-Protocol-Server-Port: 465")
	check(t, ev.serve(t, raw), want{status: "Logins from your address (203.0.113.5) are blocked on this server.", code: "535 5.7.8"})
	raw = strings.Replace(raw, "203.0.113.5", "::ffff:192.0.2.7", 1)
	check(t, ev.serve(t, raw), want{status: "OK", server: "127.0.0.1", port: "10025"})
	got := ev.v.last()
	wantReq := passcheck.Request{Service: "smtp", Login: "alice@example.test", Client: netip.MustParseAddr("192.0.2.7"),
		ClientPort: 51234, Local: netip.MustParseAddr("198.51.100.1")}
	if got != wantReq {
		t.Errorf("verifier got %+v, want %+v", got, wantReq)
	}
	// IPv6 clients come bare; mapped ones are IPv4.
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "::1", 1), okIMAP)
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "::ffff:127.0.0.83", 1), okIMAP)
	for _, want := range []string{"ip=192.0.2.7\n", "ip=::1\n", "ip=127.0.0.83\n"} {
		if !strings.Contains(ev.decisions.String(), want) {
			t.Errorf("decision log lacks %q:\n%s", want, ev.decisions.String())
		}
	}
}

// The password lives only in the request and the Verify call: a full
// cycle of every outcome leaves no trace of it in either log.
func TestPasswordNeverLogged(t *testing.T) {
	const pw = "Zq9-distinctive-Pw-7731"
	tr := abuse.New(abuse.DefaultConfig())
	e := newEngine(t, "global all deny 127.0.9.9").WithAbuse(tr, true, time.Minute, time.Second)
	ev := newEnv(t, e, tr, nil)
	ev.v.users["erin@example.test"] = pw
	for _, raw := range []string{
		withSecret(nginxRequest("plain", "smtp", "erin@example.test", pw, "127.0.9.1", 1)),                           // correct
		withSecret(nginxRequest("plain", "smtp", "erin@example.test", pw+"x", "127.0.9.1", 2)),                       // wrong
		withSecret(nginxRequest("plain", "imap", "erin@example.test", pw, "127.0.9.9", 1)),                           // refused
		withSecret(nginxRequest("plain", "imap", "erin@example.test", pw+"%", "127.0.9.1", 1)),                       // malformed password
		withSecret(nginxRequest("plain", "imap", "erin@example.test", pw+strings.Repeat("x", 1100), "127.0.9.1", 1)), // too long
		withSecret(nginxRequest("plain", "nntp", "erin@example.test", pw, "127.0.9.1", 1)),                           // bad protocol
		withSecret(nginxRequest("plain", "imap", "erin@example.test", pw, "127.0.9.1", 0)),                           // bad attempt
		nginxRequest("plain", "imap", "erin@example.test", pw, "127.0.9.1", 1) + "X-Auth-Key: " + pw + "\r\n\r\n",    // wrong secret
	} {
		ev.serve(t, raw)
	}
	ev.v.err = fmt.Errorf("backend said: bad password %q for erin", pw) // a careless verifier
	ev.serve(t, withSecret(nginxRequest("plain", "smtp", "erin@example.test", pw, "127.0.9.1", 1)))

	if !strings.Contains(ev.decisions.String(), "auth=success") || !strings.Contains(ev.decisions.String(), "auth=failure") ||
		!strings.Contains(ev.decisions.String(), "global_deny") || !strings.Contains(ev.diags.String(), "[redacted]") ||
		strings.Count(ev.diags.String(), "\n") < 6 {
		t.Fatalf("the cycle did not cover every outcome:\n%s\n%s", ev.decisions.String(), ev.diags.String())
	}
	for name, l := range map[string]string{"decision log": ev.decisions.String(), "diagnostics": ev.diags.String()} {
		if strings.Contains(l, pw) || strings.Contains(l, "distinctive") {
			t.Errorf("the password is in the %s:\n%s", name, l)
		}
		for _, r := range ev.reports {
			if strings.Contains(l, r.pwhash) {
				t.Errorf("a password hash is in the %s:\n%s", name, l)
			}
		}
	}
	for _, c := range ev.v.calls {
		if c.Password != "" {
			t.Errorf("fake verifier kept a password")
		}
	}
}

func TestParseRequest(t *testing.T) {
	req, err := ParseRequest(mustRequest(t, withSecret(nginxRequest("plain", "SMTP", "Bob%20Smith@example.test", "p%25%2B+%C3", "127.0.0.1", 7),
		"Auth-SSL: on", "Auth-SMTP-Helo: "+strings.Repeat("h", 600))).Header)
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Method: MethodPlain, Protocol: SMTP, User: "Bob Smith@example.test", Pass: "p%++\xc3", Attempt: 7,
		Client: netip.MustParseAddr("127.0.0.1"), Peer: netip.MustParseAddr("127.0.0.1"), TLS: true,
		SMTPHelo: strings.Repeat("h", MaxInfoLen)}
	if req != want {
		t.Errorf("got  %+v\nwant %+v", req, want)
	}
	for _, tt := range []struct{ in, out, err string }{
		{"", "", ""},
		{"plain", "plain", ""},
		{"a%20b", "a b", ""},
		{"%25%25", "%%", ""},
		{"%e9", "\xe9", ""},
		{"+", "+", ""},
		{"%", "", "not followed"},
		{"%2", "", "not followed"},
		{"%zz", "", "not followed"},
		{"ab%2", "", "not followed"},
	} {
		got, err := unescape(tt.in)
		if (err != nil) != (tt.err != "") || got != tt.out || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("unescape(%q) = %q, %v", tt.in, got, err)
		}
	}
	if MethodCRAMMD5.String() != "cram-md5" || Method(9).String() != "method(9)" || POP3.String() != "pop3" || Protocol(7).String() != "protocol(7)" {
		t.Error("String methods")
	}
}

package nginxauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"mailgate/internal/passcheck"
	"mailgate/internal/password"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// discardWriter is a ResponseWriter that keeps nothing but the header map.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// constVerifier answers ok without looking, and costs nothing: the
// benchmark measures the door, not a password backend.
type constVerifier bool

func (v constVerifier) Verify(context.Context, *passcheck.Request) (bool, error) { return bool(v), nil }

func benchEngine(b *testing.B) *policy.Engine {
	idx := rules.NewIndex()
	for _, r := range []rules.Rule{
		{ID: 1, Scope: rules.ScopeGlobal, Action: rules.Deny, Match: netip.MustParsePrefix("203.0.113.0/24")},
		{ID: 2, Scope: rules.ScopeAccount, Account: "alice@example.test", Service: rules.IMAP, Action: rules.Allow, Match: netip.MustParsePrefix("127.0.0.0/8")},
		{ID: 3, Scope: rules.ScopeAccount, Account: "@example.test", Service: rules.POP3, Action: rules.Allow},
	} {
		if err := r.Validate(); err != nil {
			b.Fatal(err)
		}
		idx.Add(&r)
	}
	return policy.New(idx, nil)
}

// BenchmarkHandler is one allowed login through ServeHTTP, from parsed
// headers to the reply headers: secret check, parsing and unescaping,
// the real engine, the decision and result lines (to io.Discard), the
// local pwhash, a verifier that says yes at no cost, and OnReport. imap
// is let through unverified (the backend checks); smtp is verified.
func BenchmarkHandler(b *testing.B) {
	for _, proto := range []string{"imap", "smtp"} {
		b.Run(proto, func(b *testing.B) {
			now := time.Unix(1_800_000_000, 0)
			var reports int
			h := NewHandler(Config{
				Secret:   testSecret,
				Backends: testBackends,
				Verify:   map[string]bool{"imap": false},
				FailWait: 3 * time.Second,
				Now:      func() time.Time { return now },
				Nonce:    testNonce,
				OnReport: func(*policy.Attempt, bool, time.Time) { reports++ },
			}, benchEngine(b), constVerifier(true), policy.NewDecisionLog(io.Discard), nil)
			raw := withSecret(nginxRequest("plain", proto, "alice@example.test", "bad%20pass%25", "127.0.0.71", 1))
			r := mustRequest(b, raw)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			if w.h.Get("Auth-Status") != "OK" {
				b.Fatalf("reply %v", w.h)
			}
			if want := proto == "smtp"; (reports > 0) != want {
				b.Fatalf("%d reports", reports)
			}
		})
	}
}

// BenchmarkParseRequest is the header parser alone, on the capture.
func BenchmarkParseRequest(b *testing.B) {
	r := mustRequest(b, withSecret(nginxRequest("plain", "smtp", "alice@example.test", "bad%20pass%25", "127.0.0.103", 1)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(r.Header); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandlerRecorder is BenchmarkHandler/smtp with httptest's
// recorder, for comparison with the dovecot door's benchmark.
func BenchmarkHandlerRecorder(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	h := NewHandler(Config{Secret: testSecret, Backends: testBackends, Now: func() time.Time { return now }, Nonce: testNonce},
		benchEngine(b), constVerifier(true), policy.NewDecisionLog(io.Discard), nil)
	r := mustRequest(b, withSecret(nginxRequest("plain", "smtp", "alice@example.test", "alicepw", "127.0.0.71", 1)))
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
}

// BenchmarkHandlerWeakCheck is BenchmarkHandler's smtp login (verified,
// correct password) with the password policy checked after it
// ([password] check_at_login, the default policy, no breached list),
// against the same login without the check: what a successful login
// pays. A wrong password never pays it.
func BenchmarkHandlerWeakCheck(b *testing.B) {
	for _, c := range []struct {
		name string
		pw   string
		on   bool
	}{{"off", "vK8%23qm2Lp0zR", false}, {"strong", "vK8%23qm2Lp0zR", true}, {"weak", "Summer2024", true}} {
		b.Run(c.name, func(b *testing.B) {
			now := time.Unix(1_800_000_000, 0)
			cfg := Config{
				Secret:   testSecret,
				Backends: testBackends,
				Now:      func() time.Time { return now },
				Nonce:    testNonce,
			}
			if c.on {
				cfg.Password = password.NewChecker(password.Default())
				cfg.Flags = password.NewFlags(time.Hour, 0, nil)
			}
			h := NewHandler(cfg, benchEngine(b), constVerifier(true), policy.NewDecisionLog(io.Discard), nil)
			r := mustRequest(b, withSecret(nginxRequest("plain", "smtp", "alice@example.test", c.pw, "127.0.0.71", 1)))
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			if w.h.Get("Auth-Status") != "OK" {
				b.Fatalf("reply %v", w.h)
			}
		})
	}
}

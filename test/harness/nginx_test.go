package harness

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// authCall is one auth_http request the fake auth server saw.
type authCall struct {
	Method, User, Pass, Protocol, Attempt, ClientIP, Secret string
}

// fakeAuthHTTP is an nginx auth_http server for the harness self-test: it
// accepts the password "good" (and "alicepw", Dovecot's, for IMAP and
// POP3, which Dovecot checks again) and sends nginx to the backend of the
// request's protocol; any other password fails with Auth-Wait: 1.
type fakeAuthHTTP struct {
	backends map[string]string // protocol → host:port
	srv      *http.Server
	addr     string

	mu    sync.Mutex
	calls []authCall
}

func startFakeAuthHTTP(t *testing.T, backends map[string]string) *fakeAuthHTTP {
	t.Helper()
	f := &fakeAuthHTTP{backends: backends}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 5 * time.Second}
	go f.srv.Serve(l)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

func (f *fakeAuthHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	c := authCall{
		Method: h.Get("Auth-Method"), User: h.Get("Auth-User"), Pass: h.Get("Auth-Pass"),
		Protocol: h.Get("Auth-Protocol"), Attempt: h.Get("Auth-Login-Attempt"),
		ClientIP: h.Get("Client-IP"), Secret: h.Get("X-Auth-Key"),
	}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
	backend, ok := f.backends[c.Protocol]
	switch {
	case c.Secret != "harness-secret":
		w.Header().Set("Auth-Status", "Wrong shared secret")
	case !ok:
		w.Header().Set("Auth-Status", "No backend for "+c.Protocol)
	case c.Pass == "good" || c.Pass == "alicepw" || c.Method == "none":
		host, port, _ := net.SplitHostPort(backend)
		w.Header().Set("Auth-Status", "OK")
		w.Header().Set("Auth-Server", host)
		w.Header().Set("Auth-Port", port)
	default:
		w.Header().Set("Auth-Status", "Harness says no")
		w.Header().Set("Auth-Wait", "1")
		if c.Protocol == "smtp" {
			w.Header().Set("Auth-Error-Code", "535 5.7.8")
		}
	}
	// nginx reads only the headers: status line and body do not matter.
}

// seen returns the calls made from clientIP.
func (f *fakeAuthHTTP) seen(clientIP string) []authCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cs []authCall
	for _, c := range f.calls {
		if c.ClientIP == clientIP {
			cs = append(cs, c)
		}
	}
	return cs
}

// TestNginxPostfixHarness checks the nginx and Postfix harness without
// mailgate: a real nginx, asking a fake auth_http server, proxies IMAP and
// POP3 to the harness's Dovecot and SMTP to the harness's Postfix. It
// proves the configs start, that nginx passes the client's source address
// and the shared secret, that the raw IMAP session survives a failure
// with Auth-Wait, and the claim the nginx door's design rests on: Postfix
// relays for a client nginx authenticated (XCLIENT LOGIN=), and for
// nobody else on loopback.
func TestNginxPostfixHarness(t *testing.T) {
	dc := StartDovecot(t, DovecotOptions{Users: map[string]string{"alice@example.test": "alicepw"}, AuthListener: true})
	pf := StartPostfix(t, PostfixOptions{DovecotSASL: dc.AuthAddr})
	auth := startFakeAuthHTTP(t, map[string]string{"imap": dc.IMAPAddr, "pop3": dc.POP3Addr, "smtp": pf.SMTPAddr})
	ng := StartNginx(t, NginxOptions{
		AuthURL:    auth.addr + "/auth",
		AuthHeader: "X-Auth-Key",
		AuthSecret: "harness-secret",
		Extra:      "    smtp_capabilities PIPELINING 8BITMIME;",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// calls checks what the fake auth server heard from src.
	calls := func(t *testing.T, src string, want ...authCall) {
		t.Helper()
		got := auth.seen(src)
		if len(got) != len(want) {
			t.Fatalf("auth_http calls from %s: %+v, want %d", src, got, len(want))
		}
		for i, w := range want {
			w.ClientIP, w.Secret = src, "harness-secret"
			if got[i] != w {
				t.Errorf("auth_http call %d from %s = %+v, want %+v", i+1, src, got[i], w)
			}
		}
	}

	// The subtests run in parallel; the group returns when all are done.
	t.Run("through nginx", func(t *testing.T) { proxyCases(t, ctx, ng, pf, calls) })
	if t.Failed() {
		return
	}
	log := ng.ErrorLog()
	for _, want := range []string{
		`client logged in, client: 127.0.0.221`,
		`client login failed: "Harness says no" while in http auth state, client: 127.0.0.223`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("nginx's error log lacks %q:\n%s", want, log)
		}
	}
}

func proxyCases(t *testing.T, ctx context.Context, ng *Nginx, pf *Postfix, calls func(*testing.T, string, ...authCall)) {
	ip := netip.MustParseAddr
	t.Run("imap", func(t *testing.T) {
		t.Parallel()
		const src = "127.0.0.221"
		if err := IMAPLogin(ctx, ip(src), ng.IMAPAddr, "alice@example.test", "alicepw"); err != nil {
			t.Fatal(err)
		}
		calls(t, src, authCall{Method: "plain", User: "alice@example.test", Pass: "alicepw", Protocol: "imap", Attempt: "1"})
	})
	t.Run("pop3", func(t *testing.T) {
		t.Parallel()
		const src = "127.0.0.222"
		if err := POP3Login(ctx, ip(src), ng.POP3Addr, "alice@example.test", "alicepw"); err != nil {
			t.Fatal(err)
		}
		calls(t, src, authCall{Method: "plain", User: "alice@example.test", Pass: "alicepw", Protocol: "pop3", Attempt: "1"})
	})
	t.Run("imap refused then retried", func(t *testing.T) {
		t.Parallel()
		const src = "127.0.0.223"
		s, err := DialIMAP(ctx, ip(src), ng.IMAPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		start := time.Now()
		r, err := s.Login("alice@example.test", `bad "pass\`)
		if err != nil || r.Status != "NO" || r.Text != "Harness says no" {
			t.Fatalf("first login: %v, %v; want NO Harness says no", r, err)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("the refusal with Auth-Wait: 1 came after %v, want about 1 s", d)
		}
		// Auth-Wait kept the session: a second try on it works.
		if r, err = s.Login("alice@example.test", "alicepw"); err != nil || r.Status != "OK" {
			t.Fatalf("second login on the same connection: %v, %v; want OK", r, err)
		}
		if r, err = s.Logout(); err != nil || r.Status != "OK" {
			t.Errorf("logout: %v, %v", r, err)
		}
		calls(t, src,
			// nginx escapes space and % in Auth-Pass (protocols.md §2.1).
			authCall{Method: "plain", User: "alice@example.test", Pass: `bad%20"pass\`, Protocol: "imap", Attempt: "1"},
			authCall{Method: "plain", User: "alice@example.test", Pass: "alicepw", Protocol: "imap", Attempt: "2"})
	})
	t.Run("smtp auth plain and relay", func(t *testing.T) {
		t.Parallel()
		const src = "127.0.0.224"
		s := dialSMTP(t, ctx, src, ng.SMTPAddr)
		defer s.Close()
		expect(t, s, 250, "AUTH PLAIN LOGIN")(s.Ehlo("client.example.test"))
		expect(t, s, 235, "")(s.AuthPlain("alice@example.test", "good"))
		expect(t, s, 250, "queued as")(s.Send("alice@example.test", "rcpt224@remote.test", "relay 224"))
		expect(t, s, 221, "")(s.Quit())
		calls(t, src, authCall{Method: "plain", User: "alice@example.test", Pass: "good", Protocol: "smtp", Attempt: "1"})
		pf.WaitMailLog(t, "client=unknown[127.0.0.224]", "sasl_method=XCLIENT", "sasl_username=alice@example.test")
		pf.WaitMailLog(t, "to=<rcpt224@remote.test>", "status=sent", "discard")
	})
	t.Run("smtp auth login refused then accepted", func(t *testing.T) {
		t.Parallel()
		const src = "127.0.0.225"
		s := dialSMTP(t, ctx, src, ng.SMTPAddr)
		defer s.Close()
		expect(t, s, 250, "")(s.Ehlo("client.example.test"))
		expect(t, s, 535, "5.7.8 Harness says no")(s.AuthLogin("alice@example.test", "bad"))
		expect(t, s, 235, "")(s.AuthLogin("alice@example.test", "good"))
		expect(t, s, 250, "")(s.Send("alice@example.test", "rcpt225@remote.test", "relay 225"))
		expect(t, s, 221, "")(s.Quit())
		calls(t, src,
			authCall{Method: "plain", User: "alice@example.test", Pass: "bad", Protocol: "smtp", Attempt: "1"},
			authCall{Method: "plain", User: "alice@example.test", Pass: "good", Protocol: "smtp", Attempt: "2"})
		pf.WaitMailLog(t, "to=<rcpt225@remote.test>", "status=sent")
	})
	t.Run("smtp without auth may not relay", func(t *testing.T) {
		t.Parallel()
		// nginx lets the session through (the fake says OK to
		// Auth-Method: none), but Postfix sees no login: loopback is not
		// in mynetworks.
		const src = "127.0.0.226"
		s := dialSMTP(t, ctx, src, ng.SMTPNoAuthAddr)
		defer s.Close()
		expect(t, s, 250, "")(s.Ehlo("mta.remote.test"))
		expect(t, s, 250, "")(s.Mail("sender@remote.test"))
		expect(t, s, 554, "Relay access denied")(s.Rcpt("rcpt226@elsewhere.test"))
		expect(t, s, 250, "")(s.Rcpt("bob@example.test"))
		expect(t, s, 221, "")(s.Quit())
	})
	t.Run("postfix direct without auth may not relay", func(t *testing.T) {
		t.Parallel()
		const src = "127.0.0.227"
		s := dialSMTP(t, ctx, src, pf.SMTPAddr)
		defer s.Close()
		expect(t, s, 250, "")(s.Ehlo("client.example.test"))
		expect(t, s, 250, "")(s.Mail("alice@example.test"))
		expect(t, s, 554, "Relay access denied")(s.Rcpt("rcpt227@remote.test"))
		// Only the authorized XCLIENT host may claim a login, and that is
		// 127.0.0.1, not this client.
		expect(t, s, 250, "")(s.Cmd("RSET"))
		expect(t, s, 550, "")(s.Cmd("XCLIENT LOGIN=alice@example.test"))
		expect(t, s, 221, "")(s.Quit())
	})
}

// dialSMTP connects from src to addr and wants a 220 greeting.
func dialSMTP(t *testing.T, ctx context.Context, src, addr string) *SMTPSession {
	t.Helper()
	s, err := DialSMTP(ctx, netip.MustParseAddr(src), addr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Greeting.Code != 220 {
		t.Fatalf("greeting from %s: %v", addr, s.Greeting)
	}
	return s
}

// expect returns a check of a command's reply: its code is code and its
// text contains want; otherwise t fails with the session's transcript.
// Use it as expect(t, s, 250, "")(s.Ehlo("x")).
func expect(t *testing.T, s *SMTPSession, code int, want string) func(SMTPReply, error) {
	return func(r SMTPReply, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\ntranscript:\n%s", err, s.Transcript())
		}
		if r.Code != code || !strings.Contains(r.Text, want) {
			t.Fatalf("got %v, want %d %q\ntranscript:\n%s", r, code, want, s.Transcript())
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailgate/internal/nginxauth"
	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// startDovecotAuth runs the fake auth service on 127.0.0.1:0 until the
// test ends.
func startDovecotAuth(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveDovecotAuth(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serveDovecotAuth: %v", err)
		}
	})
	return ln.Addr().String()
}

// startDoor serves mailgate's nginx door on 127.0.0.1:0 and counts the
// connections it accepts.
func startDoor(t *testing.T, v nginxauth.Verifier, secret string) (url string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	h := nginxauth.NewHandler(nginxauth.Config{
		Secret: secret,
		Backends: map[string]netip.AddrPort{
			"imap": netip.MustParseAddrPort("127.0.0.1:143"),
			"pop3": netip.MustParseAddrPort("127.0.0.1:110"),
			"smtp": netip.MustParseAddrPort("127.0.0.1:25"),
		},
		Verify:   map[string]bool{"imap": true, "pop3": true},
		FailWait: 3 * time.Second,
	}, policy.New(rules.NewIndex(), nil), v, policy.NewDecisionLog(io.Discard), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/auth", conns
}

func nginxCfg(t *testing.T, url string, concurrency int, d time.Duration) *nginxConfig {
	t.Helper()
	tg, err := parseNginxTarget(url)
	if err != nil {
		t.Fatal(err)
	}
	return &nginxConfig{target: tg, protocol: "smtp", password: "benchmark pw%", concurrency: concurrency,
		duration: d, timeout: 5 * time.Second, logins: 50, addresses: 50}
}

// The whole chain: the load tool as nginx, mailgate's door, passcheck's
// Dovecot client, and the fake auth service. Every request is a new
// connection and gets OK.
func TestNginxLoadThroughDoorAndFakeDovecot(t *testing.T) {
	auth := startDovecotAuth(t)
	v := passcheck.NewDovecot(auth, passcheck.DovecotOptions{}, nil)
	defer v.Close()
	url, conns := startDoor(t, v, "s3cret")
	cfg := nginxCfg(t, url, 4, 300*time.Millisecond)
	cfg.secretHeader, cfg.secret = "X-Auth-Key", "s3cret"
	res, err := runNginxLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests in %v, %.0f/s, p50 %v p99 %v", res.Requests, res.Duration, res.rps(),
		res.Hist.percentile(0.5), res.Hist.percentile(0.99))
	if res.Requests == 0 || res.Errors != 0 || res.OK != res.Requests {
		t.Fatalf("requests %d ok %d refused %d errors %d (%s)", res.Requests, res.OK, res.Refused, res.Errors, res.FirstError)
	}
	if got := conns.Load(); got != int64(res.Requests) {
		t.Fatalf("the door accepted %d connections for %d requests: want one per request", got, res.Requests)
	}
	if st := v.Stats(); st.OK != res.Requests || st.Connects != 1 {
		t.Fatalf("verifier stats %+v for %d requests", st, res.Requests)
	}

	// A wrong secret: every request refused, none an error (nginx would
	// show the text to the client).
	cfg.secret = "wrong"
	res, err = runNginxLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Errors != 0 || res.Refused != res.Requests {
		t.Fatalf("wrong secret: requests %d ok %d refused %d errors %d", res.Requests, res.OK, res.Refused, res.Errors)
	}
}

// TestNginxLoadSendsNginxRequests checks what arrives: GET HTTP/1.0, the
// headers nginx sends, escaped as nginx escapes, one connection each.
func TestNginxLoadSendsNginxRequests(t *testing.T) {
	var mu sync.Mutex
	var bad []string
	conns := map[string]bool{}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		req, err := nginxauth.ParseRequest(r.Header)
		mu.Lock()
		defer mu.Unlock()
		n++
		if conns[r.RemoteAddr] {
			bad = append(bad, "connection reused: "+r.RemoteAddr)
		}
		conns[r.RemoteAddr] = true
		switch {
		case err != nil:
			bad = append(bad, "parse: "+err.Error())
		case r.Method != "GET" || r.Proto != "HTTP/1.0" || r.URL.RequestURI() != "/mail/auth?x=1" || r.Host != "127.0.0.1":
			bad = append(bad, r.Method+" "+r.URL.String()+" "+r.Proto+" host "+r.Host)
		case req.Pass != "p w%+é\t" || req.Protocol != nginxauth.POP3 || req.Method != nginxauth.MethodPlain || req.Attempt != 1:
			bad = append(bad, "request: "+req.User+" "+req.Protocol.String())
		case !strings.HasPrefix(req.User, "user") || !strings.HasSuffix(req.User, "@example.test"):
			bad = append(bad, "user "+req.User)
		case !netip.MustParsePrefix("10.0.0.0/8").Contains(req.Client):
			bad = append(bad, "client "+req.Client.String())
		case r.Header.Get("X-Mail-Key") != "k" || r.Header.Get("Client-Host") != "":
			bad = append(bad, "headers "+r.Header.Get("X-Mail-Key"))
		}
		rw.Header().Set("Auth-Status", "OK")
		rw.Header().Set("Auth-Server", "127.0.0.1")
		rw.Header().Set("Auth-Port", "110")
	}))
	defer srv.Close()
	cfg := nginxCfg(t, srv.URL+"/mail/auth?x=1", 3, 200*time.Millisecond)
	cfg.protocol, cfg.password, cfg.secretHeader, cfg.secret = "pop3", "p w%+é\t", "X-Mail-Key", "k"
	res, err := runNginxLoad(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if res.Requests == 0 || res.Errors != 0 || res.OK != res.Requests || uint64(n) != res.Requests {
		t.Fatalf("requests %d ok %d errors %d (%s), server saw %d", res.Requests, res.OK, res.Errors, res.FirstError, n)
	}
	if len(bad) > 0 {
		t.Fatalf("%d bad requests, first: %s", len(bad), bad[0])
	}
}

func TestNginxLoadCountsOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		kind    int // -1: no error
		refused bool
		wait    bool
	}{
		{"refused", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Auth-Status", "Invalid login or password")
		}, -1, true, false},
		{"refused with wait, HTTP 500", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Auth-Status", "Invalid login or password")
			rw.Header().Set("Auth-Wait", "3")
			rw.WriteHeader(500) // nginx ignores the status
		}, -1, true, true},
		{"no Auth-Status", func(rw http.ResponseWriter, r *http.Request) {}, errBody, false, false},
		{"OK without server", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Auth-Status", "OK")
		}, errBody, false, false},
		{"reply too large", func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Auth-Status", "OK")
			io.WriteString(rw, strings.Repeat("x", maxNginxReply))
		}, errBody, false, false},
		{"connection dropped", func(rw http.ResponseWriter, r *http.Request) {
			if c, _, err := rw.(http.Hijacker).Hijack(); err == nil {
				c.Close()
			}
		}, errIO, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			res, err := runNginxLoad(context.Background(), nginxCfg(t, srv.URL, 2, 150*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 {
				t.Fatal("no requests")
			}
			if tt.kind < 0 {
				if res.Errors != 0 || (res.Refused == res.Requests) != tt.refused || (res.Waits == res.Requests) != tt.wait {
					t.Fatalf("requests %d refused %d waits %d errors %d (%s)", res.Requests, res.Refused, res.Waits, res.Errors, res.FirstError)
				}
				return
			}
			if res.Errors != res.Requests || res.ErrorsBy[tt.kind] != res.Errors || res.FirstError == "" {
				t.Fatalf("requests %d errors %v (%s), want every request a %s error", res.Requests, res.ErrorsBy, res.FirstError, errKindNames[tt.kind])
			}
		})
	}
}

func TestNginxLoadConnectErrorsAndCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/"
	ln.Close()
	res, err := runNginxLoad(context.Background(), nginxCfg(t, url, 2, 150*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.ErrorsBy[errConnect] != res.Errors || res.Errors > 2*(150/50+2) {
		t.Fatalf("errors %v: want a few connect errors, with backoff", res.ErrorsBy)
	}

	// A server that never answers: cancelling does not wait for the timeout.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := nginxCfg(t, "http://"+ln.Addr().String()+"/", 2, time.Minute)
	cfg.timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err = runNginxLoad(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second || res.Requests != 0 {
		t.Fatalf("took %v, %d requests counted", el, res.Requests)
	}
}

func TestNginxConfigLimits(t *testing.T) {
	base := func() *nginxConfig { return nginxCfg(t, "http://127.0.0.1:1/", 1, time.Second) }
	for _, tt := range []struct {
		name string
		mod  func(*nginxConfig)
		err  string
	}{
		{"concurrency 0", func(c *nginxConfig) { c.concurrency = 0 }, "concurrency"},
		{"duration 11m", func(c *nginxConfig) { c.duration = 11 * time.Minute }, "duration"},
		{"protocol", func(c *nginxConfig) { c.protocol = "nntp" }, "protocol"},
		{"secret without header", func(c *nginxConfig) { c.secret = "x" }, "secret header"},
		{"bad header name", func(c *nginxConfig) { c.secretHeader, c.secret = "X Key", "x" }, "not an HTTP header name"},
		{"secret newline", func(c *nginxConfig) { c.secretHeader, c.secret = "X-Key", "a\r\nAuth-Status: OK" }, "control characters"},
		{"password too long", func(c *nginxConfig) { c.password = strings.Repeat("p", 1025) }, "password"},
		{"addresses", func(c *nginxConfig) { c.addresses = 0 }, "addresses"},
	} {
		c := base()
		tt.mod(c)
		if _, err := runNginxLoad(context.Background(), c); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v, want one containing %q", tt.name, err, tt.err)
		}
	}
}

func TestParseNginxTarget(t *testing.T) {
	for _, tt := range []struct{ url, dial, host, uri, err string }{
		{url: "http://127.0.0.1:4002/auth", dial: "127.0.0.1:4002", host: "127.0.0.1", uri: "/auth"},
		{url: "127.0.0.1:4002/auth", dial: "127.0.0.1:4002", host: "127.0.0.1", uri: "/auth"}, // auth_http's own form
		{url: "http://localhost:4002", dial: "127.0.0.1:4002", host: "localhost", uri: "/"},
		{url: "http://[::1]:4002/a?b=c", dial: "[::1]:4002", host: "[::1]", uri: "/a?b=c"},
		{url: "http://10.0.0.1:4002/", err: "not a loopback address"},
		{url: "http://mail.example.com/", err: "not a loopback address"},
		{url: "https://127.0.0.1:4002/", err: "only http"},
		{url: "http://u:p@127.0.0.1:4002/", err: "user info"},
		{url: "http://127.0.0.1:0/", err: "bad port"},
	} {
		got, err := parseNginxTarget(tt.url)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err = %v, want %q", tt.url, err, tt.err)
			}
			continue
		}
		if err != nil || got.dial.String() != tt.dial || got.host != tt.host || got.uri != tt.uri {
			t.Errorf("%s: %+v, %v", tt.url, got, err)
		}
	}
	if got := string(appendMailAuthEscaped(nil, "bad pass%\x00\x7f+é")); got != "bad%20pass%25%00%7F+é" {
		t.Errorf("escaped %q", got)
	}
}

// authClient is a minimal client of the fake: it reads the handshake and
// then one reply line per call.
type authClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialAuth(t *testing.T, addr string) *authClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	a := &authClient{c: c, br: bufio.NewReader(c)}
	var hs []string
	for {
		l := a.line(t)
		hs = append(hs, strings.SplitN(l, "\t", 2)[0])
		if l == "DONE" {
			break
		}
	}
	if strings.Join(hs, " ") != "VERSION MECH MECH SPID CUID COOKIE DONE" {
		t.Fatalf("handshake %v", hs)
	}
	io.WriteString(c, "VERSION\t1\t2\nCPID\t4242\n")
	return a
}

func (a *authClient) line(t *testing.T) string {
	t.Helper()
	l, err := a.br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(l, "\n")
}

func (a *authClient) ask(t *testing.T, req string) string {
	t.Helper()
	if _, err := io.WriteString(a.c, req+"\n"); err != nil {
		t.Fatal(err)
	}
	return a.line(t)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestDovecotAuthFake(t *testing.T) {
	a := dialAuth(t, startDovecotAuth(t))
	for _, tt := range []struct{ req, want string }{
		// protocols.md §2.4, verbatim but for the id.
		{"AUTH\t1\tPLAIN\tservice=smtp\tnologin\trip=198.51.100.20\tlip=127.0.0.1\tsecured\tresp=AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZXB3", "OK\t1\tuser=alice@example.test"},
		{"AUTH\t2\tPLAIN\tservice=imap\tresp=" + b64("admin\x00bob\x00x"), "OK\t2\tuser=admin"},
		{"AUTH\t3\tPLAIN\tservice=imap\tresp=" + b64("\x00tab\tuser\x00x"), "OK\t3\tuser=tab\x01tuser"},
		{"AUTH\t4\tCRAM-MD5\tservice=imap", "FAIL\t4\treason=Unsupported authentication mechanism"},
		{"AUTH\t5\tPLAIN\tservice=imap", "CONT\t5\t"},
		{"CONT\t5\t" + b64("\x00carol\x00pw"), "OK\t5\tuser=carol"},
		{"AUTH\t6\tLOGIN\tservice=smtp", "CONT\t6\t" + b64("Username:")},
		{"CONT\t6\t" + b64("dave"), "CONT\t6\t" + b64("Password:")},
		{"CONT\t6\t" + b64("pw"), "OK\t6\tuser=dave"},
		{"CONT\t99\tx", "FAIL\t99\treason=Unknown request"},
	} {
		if got := a.ask(t, tt.req); got != tt.want {
			t.Errorf("%q:\n got %q\nwant %q", tt.req, got, tt.want)
		}
	}
	// A bad AUTH line closes the connection, as Dovecot does.
	io.WriteString(a.c, "AUTH\tx\n")
	if _, err := a.br.ReadString('\n'); err == nil {
		t.Error("connection still open after a bad AUTH line")
	}
}

func TestRunNginxCommandLine(t *testing.T) {
	url, _ := startDoor(t, yes{}, "")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"nginx", "--url", url, "--concurrency", "2", "--duration", "100ms", "--json", "--protocol", "smtp"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v (stderr %s)", err, errOut.String())
	}
	var got nginxJSON
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if got.Requests == 0 || got.Errors != 0 || got.OK != got.Requests || got.RPS <= 0 || got.P50us <= 0 || got.P99us < got.P50us || got.Protocol != "smtp" {
		t.Fatalf("implausible result %+v", got)
	}
	out.Reset()
	if err := run(context.Background(), []string{"nginx", "--url", url, "--concurrency", "1", "--duration", "50ms"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one new TCP connection per request", "Auth-Status OK", "errors:      0", "requests/s:", "p50", "p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, out.String())
		}
	}

	for _, args := range [][]string{
		{"nginx", "--url", "http://10.0.0.1:4002/"},
		{"dovecot-auth", "--listen", "0.0.0.0:12345"},
		{"dovecot-auth", "--listen", "192.0.2.1:12345"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("%v: err = %v, want a loopback refusal", args, err)
		}
	}
	for _, args := range [][]string{{"nginx"}, {"nginx", "--url", url, "x"}, {"nginx", "--bogus"}, {"dovecot-auth", "x"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}

	// dovecot-auth runs until cancelled and says it is a fake.
	var logBuf syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"dovecot-auth", "--listen", "127.0.0.1:0"}, io.Discard, &logBuf) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logBuf.String(), "addr=") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dovecot-auth: %v", err)
	}
	if !strings.Contains(logBuf.String(), "FAKE") || !strings.Contains(logBuf.String(), "every password is accepted") {
		t.Errorf("start line does not say it is a fake:\n%s", logBuf.String())
	}
}

type yes struct{}

func (yes) Verify(context.Context, *passcheck.Request) (bool, error) { return true, nil }

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

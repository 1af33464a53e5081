package harness

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// policyCall is one request the fake policy server saw.
type policyCall struct {
	Command string
	APIKey  string
	Body    map[string]any
}

// TestDovecotAndClients checks the harness itself, without mailgate: a
// real Dovecot pointed at a fake policy server that refuses one source
// address. It proves that StartDovecot's config works, that the clients
// log in from the source address they are given, and that a refusal
// carries the policy server's message.
func TestDovecotAndClients(t *testing.T) {
	// Each client uses its own source address so that Dovecot's per-IP
	// failure penalty does not slow the next one down.
	const refusedIMAP, refusedPOP3, msg = "127.0.0.212", "127.0.0.217", "Blocked by the harness test"
	var (
		mu    sync.Mutex
		calls []policyCall
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("fake policy server: bad body %q: %v", b, err)
		}
		mu.Lock()
		calls = append(calls, policyCall{r.URL.Query().Get("command"), r.Header.Get("X-API-Key"), body})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("command") == "allow" && (body["remote"] == refusedIMAP || body["remote"] == refusedPOP3) {
			io.WriteString(w, `{"status":-1,"msg":"`+msg+`"}`)
			return
		}
		io.WriteString(w, `{"status":0,"msg":""}`)
	}))
	defer fake.Close()

	dc := StartDovecot(t, DovecotOptions{
		Users:     map[string]string{"alice@example.test": "alicepw"},
		PolicyURL: fake.URL + "/",
		APIKey:    "harness-key",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refused := func(t *testing.T, err error, want string) {
		t.Helper()
		var le *LoginError
		if !errors.As(err, &le) {
			t.Fatalf("got %v, want a refusal", err)
		}
		if !strings.Contains(le.Response, want) {
			t.Fatalf("refusal %q does not contain %q", le.Response, want)
		}
	}

	// The logins run in parallel; the group returns when all are done.
	t.Run("logins", func(t *testing.T) { loginCases(t, ctx, dc, refused, refusedIMAP, refusedPOP3, msg) })

	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, c := range calls {
		if c.APIKey != "harness-key" {
			t.Errorf("policy call %s without the API key: X-API-Key %q", c.Command, c.APIKey)
		}
		proto, _ := c.Body["protocol"].(string)
		remote, _ := c.Body["remote"].(string)
		seen[proto+" "+c.Command+" "+remote] = true
	}
	for _, want := range []string{
		"imap allow 127.0.0.211", "imap report 127.0.0.211",
		"pop3 allow 127.0.0.213", "imap allow " + refusedIMAP, "pop3 allow " + refusedPOP3,
		"imap report 127.0.0.214",
	} {
		if !seen[want] {
			t.Errorf("the fake policy server never saw %q; saw %v", want, seen)
		}
	}
}

func loginCases(t *testing.T, ctx context.Context, dc *Dovecot, refused func(*testing.T, error, string), refusedIMAP, refusedPOP3, msg string) {
	ip := netip.MustParseAddr
	t.Run("imap ok", func(t *testing.T) {
		t.Parallel()
		if err := IMAPLogin(ctx, ip("127.0.0.211"), dc.IMAPAddr, "alice@example.test", "alicepw"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("pop3 ok", func(t *testing.T) {
		t.Parallel()
		if err := POP3Login(ctx, ip("127.0.0.213"), dc.POP3Addr, "alice@example.test", "alicepw"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("imap refused by policy", func(t *testing.T) {
		t.Parallel()
		err := IMAPLogin(ctx, ip(refusedIMAP), dc.IMAPAddr, "alice@example.test", "alicepw")
		refused(t, err, "NO [ALERT] "+msg)
	})
	t.Run("pop3 refused by policy", func(t *testing.T) {
		t.Parallel()
		err := POP3Login(ctx, ip(refusedPOP3), dc.POP3Addr, "alice@example.test", "alicepw")
		refused(t, err, "-ERR [AUTH] "+msg)
	})
	t.Run("imap wrong password", func(t *testing.T) {
		t.Parallel()
		err := IMAPLogin(ctx, ip("127.0.0.214"), dc.IMAPAddr, "alice@example.test", "wrong")
		refused(t, err, "AUTHENTICATIONFAILED")
	})
	t.Run("pop3 wrong password", func(t *testing.T) {
		t.Parallel()
		err := POP3Login(ctx, ip("127.0.0.215"), dc.POP3Addr, "alice@example.test", "wrong")
		refused(t, err, "-ERR [AUTH] Authentication failed")
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		err := POP3Login(ctx, ip("127.0.0.216"), "127.0.0.1:1", "alice@example.test", "x")
		var le *LoginError
		if err == nil || errors.As(err, &le) {
			t.Fatalf("got %v, want a connection error", err)
		}
	})
}

func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want LogLine // nil: not a key=value line
	}{
		{`time=2026-11-22T03:58:45.123Z decision=deny reason=service_closed rule=2 door=dovecot service=pop3 login=shop@example.test ip=127.0.0.31 session=zHU7R9RgWLZ/AAAB`,
			LogLine{"time": "2026-11-22T03:58:45.123Z", "decision": "deny", "reason": "service_closed", "rule": "2", "door": "dovecot",
				"service": "pop3", "login": "shop@example.test", "ip": "127.0.0.31", "session": "zHU7R9RgWLZ/AAAB"}},
		{`auth=failure door=dovecot login="a b=\"c\"" ip=-`, LogLine{"auth": "failure", "door": "dovecot", "login": `a b="c"`, "ip": "-"}},
		{`decision=allow login=""`, LogLine{"decision": "allow", "login": ""}},
		{`2026/11/22 04:00:00 INFO listening addr=127.0.0.1:4001`, nil},
		{`level=INFO msg="a" x`, nil},
		{`login="unterminated`, nil},
		{`login="a"b`, nil},
		{``, nil},
	} {
		got, ok := ParseLine(tc.line)
		if ok != (tc.want != nil) || len(got) != len(tc.want) {
			t.Errorf("ParseLine(%q) = %v, %v; want %v", tc.line, got, ok, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("ParseLine(%q)[%q] = %q, want %q", tc.line, k, got[k], v)
			}
		}
	}
	lines := ParseLog("decision=allow ip=1\nnoise\ndecision=deny ip=2\nauth=success ip=2\n")
	if n := len(Find(lines, map[string]string{"ip": "2"})); n != 2 {
		t.Errorf("Find ip=2: %d lines, want 2", n)
	}
	if n := len(Find(lines, map[string]string{"decision": "deny", "ip": "2"})); n != 1 {
		t.Errorf("Find decision=deny ip=2: %d lines, want 1", n)
	}
}

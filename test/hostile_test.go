package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"mailgate/test/harness"
)

// The hostile-input suite: every door of one running `mailgate serve`
// (the Dovecot policy HTTP door, the nginx auth_http door, the Postfix
// policy, socketmap and tcp_table servers, the post-login hook socket and
// the admin API) gets over-long and odd logins, malformed bodies and
// headers, and slow clients, over raw sockets; the logins a real client
// can send go through the real Dovecot and the real nginx too. After each
// case the daemon must be alive and answer a normal request; at the end
// nothing may have been granted or stored (no relay permit, no
// known-good address, no ban, no rule), every decision line must still
// parse, and the shipped fail2ban filter (run by the real fail2ban-regex)
// must find every reported failure and no address that was not a client.
//
// Two cases fail until findings of the hardening issue fixed on other
// branches are merged: "postfix held connections" (finding 5: a full
// Postfix pool refuses new connections instead of evicting the longest
// idle one) and the fail2ban check for logins with a Unicode space such
// as U+00A0 or U+2003 (finding 7: the decision log quotes only bytes up
// to the ASCII space). Their failure messages name the finding.

const hostileKey = "hostile-policy-key-5521"
const hostileSecret = "hostile-nginx-secret-7730"

// oddLogins are logins a client can type or a peer can send: the same
// set goes to every door (through whatever escaping the door's protocol
// needs).
var oddLogins = []struct {
	name, login string
}{
	{"nul", "bob\x00@example.test"},
	{"crlf", "bob\r\nX-Injected: 1@example.test"},
	{"lf ip", "bob\nip=10.9.9.9"},
	{"quotes", `bob" ip=10.9.9.8 x="@example.test`},
	{"backslash", `bob\" ip=10.9.9.7 \\@example.test`},
	{"not utf8", "bob\xff\xfe@example.test"},
	{"nbsp", "bob\u00a0ip=10.9.9.6@example.test"},
	{"em space", "bob\u2003@example.test"},
	{"ideographic space", "bob\u3000x@example.test"},
	{"bidi override", "bob\u202e@example.test"},
	{"zero width", "bob\u200b@example.test"},
	{"tab", "bob\t@example.test"},
	{"equals", "ip=10.9.9.5"},
	{"400 bytes", strings.Repeat("x", 387) + "@example.test"},
}

// badLogin: no account can have this login (over 320 bytes, or not
// UTF-8); every door refuses it itself, and it is never counted, banned
// or stored (finding 3).
func badLogin(s string) bool { return len(s) > 320 || !utf8.ValidString(s) }

// hostileEnv is what the cases share.
type hostileEnv struct {
	mg  *harness.MG
	dc  *harness.Dovecot
	ng  *harness.Nginx
	pf  *harness.Postfix
	dir string

	nginxDoor, policy, socketmap, tcpTable, hook string

	mu       sync.Mutex
	next     int // last octet of the next source address in 127.0.77.0/24
	sessions int // for the session ids of alive's requests
	// reported are the source addresses Dovecot or a raw report said
	// failed; fail2ban must find exactly those among the failure lines.
	clients map[string]bool
}

// src returns a fresh source address: Dovecot penalises an address after
// a failure, and mailgate counts failures per address.
func (e *hostileEnv) src() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.next++
	if e.next > 240 {
		panic("hostile: out of source addresses")
	}
	a := fmt.Sprintf("127.0.77.%d", e.next)
	e.clients[a] = true
	return a
}

func TestHostileInput(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	harness.Require(t, harness.NginxPackages)
	harness.Require(t, map[string]string{"/usr/bin/fail2ban-regex": "fail2ban"})
	dir := harness.TempDir(t, "hostile-")
	e := &hostileEnv{dir: dir, clients: map[string]bool{}}
	doveport := harness.FreePort(t)
	e.dc = harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{alice: alicePW},
		PolicyURL: fmt.Sprintf("http://127.0.0.1:%d/", doveport),
		APIKey:    hostileKey,
		// The nginx door checks passwords with an IMAP LOGIN carrying
		// the client's address in ID, believed from trusted networks.
		TrustedNetworks: "127.0.0.1/32",
		// Postfix's SASL.
		AuthListener: true,
	})
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)) }
	e.nginxDoor, e.policy, e.socketmap, e.tcpTable = port(), port(), port(), port()
	e.hook = filepath.Join(dir, "hook.sock")
	e.mg = harness.StartMailgate(t, fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
listen = "127.0.0.1:%d"
api_key = %q

[nginx]
enabled = true
listen = %q
secret = %q
verify_with = "imap"
imap_verify = %q
imap_backend = %q
pop3_backend = %q
smtp_backend = ""
fail_wait = "0s"

[postfix]
enabled = true
listen = %q
socketmap_listen = %q
tcp_table_listen = %q
max_connections = 16

[relay]
enabled = true
hook_socket = %q
never_networks = ["::1/128"]
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), doveport, hostileKey,
		e.nginxDoor, hostileSecret, e.dc.IMAPAddr, e.dc.IMAPAddr, e.dc.POP3Addr,
		e.policy, e.socketmap, e.tcpTable, e.hook))
	waitListening(t, e.nginxDoor)
	waitListening(t, e.policy)
	waitListeningOn(t, "unix", e.hook)
	harness.RequirePostfix(t)
	e.pf = harness.StartPostfix(t, harness.PostfixOptions{
		DovecotSASL: e.dc.AuthAddr,
		Extra:       replaceAll(t, readSnippet(t, pfMainSnippet), pfDocPolicy, "inet:"+e.policy, "etc/"+pfMainSnippet),
	})
	e.ng = harness.StartNginx(t, harness.NginxOptions{AuthURL: e.nginxDoor + "/auth", AuthHeader: "X-Auth-Key", AuthSecret: hostileSecret})

	t.Run("doors", func(t *testing.T) {
		t.Run("dovecot logins", func(t *testing.T) { t.Parallel(); hostileDovecotLogins(t, e) })
		t.Run("dovecot bodies", func(t *testing.T) { t.Parallel(); hostileDovecotBodies(t, e) })
		t.Run("dovecot no key", func(t *testing.T) { t.Parallel(); hostileDovecotNoKey(t, e) })
		t.Run("http headers", func(t *testing.T) { t.Parallel(); hostileHTTPHeaders(t, e) })
		t.Run("slow clients", func(t *testing.T) { t.Parallel(); hostileSlowClients(t, e) })
		t.Run("nginx door", func(t *testing.T) { t.Parallel(); hostileNginxDoor(t, e) })
		t.Run("postfix policy", func(t *testing.T) { t.Parallel(); hostilePostfixPolicy(t, e) })
		t.Run("postfix tables", func(t *testing.T) { t.Parallel(); hostilePostfixTables(t, e) })
		t.Run("hook socket", func(t *testing.T) { t.Parallel(); hostileHook(t, e) })
		t.Run("admin api", func(t *testing.T) { t.Parallel(); hostileAdmin(t, e) })
		t.Run("real dovecot", func(t *testing.T) { t.Parallel(); hostileRealDovecot(t, e) })
		t.Run("real nginx", func(t *testing.T) { t.Parallel(); hostileRealNginx(t, e) })
		t.Run("real postfix", func(t *testing.T) { t.Parallel(); hostileRealPostfix(t, e) })
	})
	// Alone: while it holds the connections, other cases' normal requests
	// would be locked out too (finding 5).
	t.Run("postfix held connections", func(t *testing.T) { hostilePostfixHeld(t, e) })
	hostileNothingGranted(t, e)
	hostileFail2ban(t, e)
	// The state the daemon wrote reads back.
	e.mg.Restart()
	hostileNothingGranted(t, e)
}

// alive fails t unless the daemon runs and answers a normal request on
// the Dovecot door and on the Postfix policy server.
func (e *hostileEnv) alive(t *testing.T, after string) {
	t.Helper()
	pid := e.mg.PID()
	if pid == 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("after %s: mailgate (pid %d) is gone\nstderr:\n%s", after, pid, e.mg.Stderr())
	}
	// net/http recovers a handler's panic and logs it ("http: panic
	// serving ..."): the daemon lives on, but the door crashed.
	if stderr := e.mg.Stderr(); strings.Contains(stderr, "panic") {
		t.Fatalf("after %s: a panic in mailgate's log:\n%s", after, stderr)
	}
	e.mu.Lock()
	e.sessions++
	session := fmt.Sprint("alive-", e.sessions)
	e.mu.Unlock()
	code, body, err := e.dovecotPost("allow", hostileKey, hostileBody("carol@example.test", "127.0.77.250", session))
	if err != nil || code != http.StatusOK || !strings.Contains(body, `"status":0`) {
		t.Fatalf("after %s: a normal allow got %d %q %v", after, code, body, err)
	}
	got, err := policyExchange(e.policy, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\n")
	if err != nil || got != "action=DUNNO\n\n" {
		t.Fatalf("after %s: a normal policy request got %q %v", after, got, err)
	}
}

// hostileBody is a Dovecot allow/report body for login from remote,
// written by hand so that any byte of login reaches the door as sent
// (encoding/json would replace invalid UTF-8). extra is appended inside
// the object.
func hostileBody(login, remote, session string, extra ...string) string {
	b := `{"device_id":"","login":` + jsonString(login) +
		fmt.Sprintf(`,"protocol":"imap","pwhash":"a1b","remote":%q,"session_id":%q,"tls":false`, remote, session)
	for _, x := range extra {
		b += "," + x
	}
	return b + "}"
}

// jsonString quotes s as a JSON string, escaping quotes, backslashes and
// control characters and leaving every byte >= 0x80 raw, valid UTF-8 or
// not (encoding/json would mend invalid UTF-8).
func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// dovecotPost POSTs body to the Dovecot door's command with key (none
// when empty) and returns the status and body.
func (e *hostileEnv) dovecotPost(command, key, body string) (int, string, error) {
	h := fmt.Sprintf("POST /?command=%s HTTP/1.1\r\nHost: mailgate\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n", command, len(body))
	if key != "" {
		h += "X-API-Key: " + key + "\r\n"
	}
	return rawHTTP("tcp", e.mg.DovecotAddr, h+"\r\n"+body)
}

// rawHTTP writes req as is to addr and reads one HTTP response.
func rawHTTP(network, addr, req string) (int, string, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, "", err
	}
	return readHTTP(c)
}

func readHTTP(c net.Conn) (int, string, error) {
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), nil
}

// clientError fails t unless code is a 4xx.
func clientError(t *testing.T, what string, code int, body string, err error) {
	t.Helper()
	if err != nil || code < 400 || code > 499 {
		t.Errorf("%s: got %d %q (err %v), want a 4xx", what, code, body, err)
	}
}

// hostileDovecotLogins: every odd login on the allow and report calls.
// An allow gets a JSON status (or a 4xx), never a crash; an over-long one
// is refused at once (finding 3: never counted, banned or stored); a
// failure report is logged in a line fail2ban still reads.
func hostileDovecotLogins(t *testing.T, e *hostileEnv) {
	for _, l := range oddLogins {
		src := e.src()
		code, body, err := e.dovecotPost("allow", hostileKey, hostileBody(l.login, src, "s-"+src))
		switch {
		case err != nil:
			t.Errorf("%s: allow: %v", l.name, err)
		case code == http.StatusOK:
			var r struct {
				Status *int `json:"status"`
			}
			if json.Unmarshal([]byte(body), &r) != nil || r.Status == nil {
				t.Errorf("%s: allow answered 200 %q, not a status", l.name, body)
			} else if len(l.login) > 320 && *r.Status != -1 {
				// (Invalid UTF-8 is read as U+FFFD, as encoding/json and
				// Dovecot's own JSON writer do: a valid login then.)
				t.Errorf("%s: a login no account can have got status %d, want -1 (bad_login, finding 3)", l.name, *r.Status)
			}
		case code < 400 || code > 499:
			t.Errorf("%s: allow answered %d %q, want 200 or a 4xx", l.name, code, body)
		}
		code, body, err = e.dovecotPost("report", hostileKey, hostileBody(l.login, src, "s-"+src, `"success":false`, `"policy_reject":false`))
		if err != nil || (code != http.StatusOK && (code < 400 || code > 499)) {
			t.Errorf("%s: report answered %d %q %v", l.name, code, body, err)
		}
		e.alive(t, "dovecot login "+l.name)
	}
	// 64 KiB: over the body limit.
	src := e.src()
	code, body, err := e.dovecotPost("allow", hostileKey, hostileBody(strings.Repeat("y", 64<<10), src, "s-big"))
	if err != nil || code != http.StatusRequestEntityTooLarge {
		t.Errorf("64 KiB login: got %d %q %v, want 413", code, body, err)
	}
	// A success report of an over-long login makes no known-good pair.
	code, body, err = e.dovecotPost("report", hostileKey, hostileBody(oddLogins[len(oddLogins)-1].login, src, "s-long-ok", `"success":true`))
	if err != nil || (code != http.StatusOK && (code < 400 || code > 499)) {
		t.Errorf("over-long success report: %d %q %v", code, body, err)
	}
	e.alive(t, "dovecot 64 KiB login")
}

// hostileDovecotBodies: malformed JSON bodies get a 400 (or 413), never
// a crash and never a status.
func hostileDovecotBodies(t *testing.T, e *hostileEnv) {
	good := hostileBody("dave@example.test", "127.0.77.251", "sb")
	bodies := map[string]string{
		"empty":          "",
		"not json":       "login=bob&remote=1.2.3.4",
		"truncated":      good[:len(good)/2],
		"array":          `[` + good + `]`,
		"two objects":    good + good,
		"trailing junk":  good + "x",
		"nested":         strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000),
		"deep array":     `{"login":"bob","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
		"login number":   `{"login":1e999999,"remote":"127.0.0.1"}`,
		"login object":   `{"login":{"a":"b"},"remote":"127.0.0.1"}`,
		"bad escape":     `{"login":"bob\u12","remote":"127.0.0.1"}`,
		"lone surrogate": `{"login":"bob\ud800","remote":"127.0.0.1","session_id":"x"}`,
		"raw control":    "{\"login\":\"bob\x01\",\"remote\":\"127.0.0.1\"}",
		"remote garbage": `{"login":"bob","remote":"127.0.0.1; rm -rf /"}`,
		"remote 64 KiB":  `{"login":"bob","remote":"` + strings.Repeat("1", 64<<10) + `"}`,
		"lport garbage":  `{"login":"bob","remote":"127.0.0.1","local":"127.0.0.1","lport":"99999999999"}`,
		"success string": `{"login":"bob","remote":"127.0.0.1","success":"true"}`,
		"nul bytes":      strings.Repeat("\x00", 1000),
		"utf16 bom":      "\xff\xfe{\x00}\x00",
	}
	for name, b := range bodies {
		for _, cmd := range []string{"allow", "report"} {
			code, body, err := e.dovecotPost(cmd, hostileKey, b)
			if cmd == "allow" && name == "lone surrogate" && code == http.StatusOK {
				continue // a JSON decoder may take it as U+FFFD; nothing to refuse
			}
			clientError(t, name+" "+cmd, code, body, err)
		}
	}
	// Unknown commands and methods.
	for _, req := range []string{
		"POST /?command=ban HTTP/1.1\r\nHost: m\r\nX-API-Key: " + hostileKey + "\r\nContent-Length: 2\r\n\r\n{}",
		"POST /?command=allow&command=report HTTP/1.1\r\nHost: m\r\nX-API-Key: " + hostileKey + "\r\nContent-Length: 2\r\n\r\n{}",
		"POST /?command=%zz HTTP/1.1\r\nHost: m\r\nX-API-Key: " + hostileKey + "\r\nContent-Length: 2\r\n\r\n{}",
		"GET /?command=allow HTTP/1.1\r\nHost: m\r\nX-API-Key: " + hostileKey + "\r\n\r\n",
		"PUT /?command=allow HTTP/1.1\r\nHost: m\r\nX-API-Key: " + hostileKey + "\r\nContent-Length: 2\r\n\r\n{}",
	} {
		code, body, err := rawHTTP("tcp", e.mg.DovecotAddr, req)
		clientError(t, strings.SplitN(req, "\r\n", 2)[0], code, body, err)
	}
	e.alive(t, "malformed dovecot bodies")
}

// hostileDovecotNoKey: without the key (or with a near miss) nothing
// changes: six failure reports for one address and one login from one
// address ban nothing, and a success report makes nothing known good.
func hostileDovecotNoKey(t *testing.T, e *hostileEnv) {
	src := e.src()
	for i, key := range []string{"", "hostile-policy-key-552", hostileKey + "x", strings.ToUpper(hostileKey), hostileKey + "\x00", strings.Repeat("k", 8000)} {
		code, body, err := e.dovecotPost("report", key, hostileBody("victim@example.test", src, fmt.Sprint("nk", i), `"success":false`))
		clientError(t, fmt.Sprintf("report with key %.20q", key), code, body, err)
	}
	code, body, err := e.dovecotPost("report", "", hostileBody("victim@example.test", src, "nk-ok", `"success":true`))
	clientError(t, "success report without key", code, body, err)
	// Basic auth with the wrong password.
	b := hostileBody("victim@example.test", src, "nk-basic", `"success":false`)
	code, body, err = rawHTTP("tcp", e.mg.DovecotAddr, fmt.Sprintf("POST /?command=report HTTP/1.1\r\nHost: m\r\nAuthorization: Basic %s\r\nContent-Length: %d\r\n\r\n%s", "eDp5", len(b), b))
	clientError(t, "wrong basic auth", code, body, err)
	e.alive(t, "reports without the key")
}

// hostileHTTPHeaders: malformed request lines and headers on every HTTP
// door (Dovecot, nginx, hook, admin) get a 4xx or a closed connection,
// never a crash.
func hostileHTTPHeaders(t *testing.T, e *hostileEnv) {
	doors := []struct{ network, addr string }{
		{"tcp", e.mg.DovecotAddr}, {"tcp", e.nginxDoor}, {"unix", e.hook}, {"unix", e.mg.AdminSocket},
	}
	reqs := map[string]string{
		"garbage":          "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
		"http2 preface":    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"no host":          "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		"nul in header":    "POST / HTTP/1.1\r\nHost: m\r\nX-API-Key: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"64 KiB header":    "POST / HTTP/1.1\r\nHost: m\r\nX-Pad: " + strings.Repeat("a", 64<<10) + "\r\n\r\n",
		"many headers":     "POST / HTTP/1.1\r\nHost: m\r\n" + strings.Repeat("X-A: b\r\n", 10000) + "\r\n",
		"bad length":       "POST / HTTP/1.1\r\nHost: m\r\nContent-Length: -1\r\n\r\n",
		"two lengths":      "POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"huge length":      "POST / HTTP/1.1\r\nHost: m\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"bad chunk":        "POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"chunk and length": "POST / HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"bare lf folding":  "POST / HTTP/1.1\nHost: m\n continued\n\n",
		"space in name":    "POST / HTTP/1.1\r\nHost: m\r\nBad Name: x\r\n\r\n",
		"long uri":         "POST /?" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: m\r\n\r\n",
		"http/0.9":         "GET /\r\n\r\n",
		"http/9.9":         "GET / HTTP/9.9\r\nHost: m\r\n\r\n",
	}
	for _, d := range doors {
		for name, req := range reqs {
			code, body, err := rawHTTP(d.network, d.addr, req)
			if err == nil && (code < 400 || code > 499) && code != http.StatusHTTPVersionNotSupported {
				t.Errorf("%s %s: got %d %q, want a 4xx (or 505) or a closed connection", d.addr, name, code, body)
			}
		}
		e.alive(t, "malformed headers on "+d.addr)
	}
}

// hostileSlowClients: headers trickled, bodies never finished and idle
// connections held open on the HTTP doors are closed by the server's
// timeouts, while normal requests keep being answered.
func hostileSlowClients(t *testing.T, e *hostileEnv) {
	type slow struct {
		name, network, addr, head string
		limit                     time.Duration // the door closes it by then
	}
	body := hostileBody("erin@example.test", "127.0.77.252", "slow")
	post := func(key string) string {
		return fmt.Sprintf("POST /?command=allow HTTP/1.1\r\nHost: m\r\nX-API-Key: %s\r\nContent-Length: %d\r\n\r\n%s", key, len(body)+100, body)
	}
	cases := []slow{
		{"dovecot trickled headers", "tcp", e.mg.DovecotAddr, "", 15 * time.Second},
		{"dovecot unfinished body", "tcp", e.mg.DovecotAddr, post(hostileKey), 15 * time.Second},
		{"dovecot idle", "tcp", e.mg.DovecotAddr, "-", 15 * time.Second},
		{"nginx trickled headers", "tcp", e.nginxDoor, "", 15 * time.Second},
		{"nginx idle", "tcp", e.nginxDoor, "-", 15 * time.Second},
		{"hook trickled headers", "unix", e.hook, "", 15 * time.Second},
		{"hook unfinished body", "unix", e.hook, "POST /v1/logins HTTP/1.1\r\nHost: m\r\nContent-Length: 500\r\n\r\n{\"login\":", 15 * time.Second},
		{"admin trickled headers", "unix", e.mg.AdminSocket, "", 20 * time.Second},
		{"admin unfinished body", "unix", e.mg.AdminSocket, "POST /v1/rules HTTP/1.1\r\nHost: m\r\nContent-Length: 500\r\n\r\n[{\"account\":", 130 * time.Second}, // ReadTimeout 2m
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout(c.network, c.addr, 5*time.Second)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				return
			}
			defer conn.Close()
			start := time.Now()
			conn.SetDeadline(start.Add(c.limit + 5*time.Second))
			switch c.head {
			case "-": // say nothing
			case "": // slowloris: one byte of a header every 200 ms, forever
				go func() {
					io.WriteString(conn, "POST /?command=allow HTTP/1.1\r\nHost: m\r\n")
					for i := 0; ; i++ {
						if _, err := conn.Write([]byte{"X-Slow: abcdefgh\r\n"[i%18]}); err != nil {
							return
						}
						time.Sleep(200 * time.Millisecond)
					}
				}()
			default:
				io.WriteString(conn, c.head)
			}
			// The server closes, maybe after an error reply.
			_, err = io.Copy(io.Discard, conn)
			if err != nil || time.Since(start) > c.limit {
				t.Errorf("%s: held for %v (err %v), want the door to close it within %v", c.name, time.Since(start).Round(time.Millisecond), err, c.limit)
			}
		}()
	}
	// Meanwhile, normal requests are answered.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			e.alive(t, "slow clients")
			return
		case <-time.After(time.Second):
			e.alive(t, "slow clients, while they hold connections")
		}
	}
}

// nginxReq is an auth_http request as nginx sends it, with user and pass
// escaped by the caller.
func nginxReq(secret, user, pass, proto, src string) string {
	return "GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\nAuth-User: " + user +
		"\r\nAuth-Pass: " + pass + "\r\nAuth-Protocol: " + proto + "\r\nAuth-Login-Attempt: 1\r\nClient-IP: " + src +
		"\r\nClient-Host: [UNAVAILABLE]\r\nX-Auth-Key: " + secret + "\r\n\r\n"
}

// nginxEscape escapes s as nginx does for Auth-User (space, '%' and
// control characters as %XX; other bytes raw).
func nginxEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '%' || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// nginxAuthStatus sends req to the nginx door and returns the HTTP code
// and Auth-Status.
func nginxAuthStatus(addr, req string) (int, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Auth-Status"), nil
}

// hostileNginxDoor: odd logins and malformed auth_http requests; none is
// ever answered Auth-Status OK.
func hostileNginxDoor(t *testing.T, e *hostileEnv) {
	for _, l := range oddLogins {
		src := e.src()
		code, status, err := nginxAuthStatus(e.nginxDoor, nginxReq(hostileSecret, nginxEscape(l.login), "Wrong-Pass", "imap", src))
		if err != nil || status == "OK" || (code != http.StatusOK && (code < 400 || code > 499)) {
			t.Errorf("nginx %s: got %d Auth-Status %q (%v)", l.name, code, status, err)
		}
	}
	src := e.src()
	reqs := map[string]string{
		"64 KiB login":     nginxReq(hostileSecret, strings.Repeat("a", 64<<10), "x", "imap", src),
		"raw crlf in user": nginxReq(hostileSecret, "bob\r\nAuth-Status: OK", "x", "imap", src),
		"bad escape":       nginxReq(hostileSecret, "bob%zz", "x", "imap", src),
		"half escape":      nginxReq(hostileSecret, "bob%4", "x", "imap", src),
		"escaped nul":      nginxReq(hostileSecret, "bob%00", "x", "imap", src),
		"2 KiB password":   nginxReq(hostileSecret, "bob", strings.Repeat("p", 2048), "imap", src),
		"bad protocol":     nginxReq(hostileSecret, "bob", "x", "gopher", src),
		"bad client ip":    nginxReq(hostileSecret, "bob", "x", "imap", "127.0.0.1, 10.0.0.1"),
		"no secret":        nginxReq("", "bob", "x", "imap", src),
		"wrong secret":     nginxReq(hostileSecret+"x", "bob", "x", "imap", src),
		"no headers":       "GET /auth HTTP/1.0\r\nX-Auth-Key: " + hostileSecret + "\r\n\r\n",
		"two users": strings.Replace(nginxReq(hostileSecret, "bob", "x", "imap", src),
			"Auth-User: bob\r\n", "Auth-User: bob\r\nAuth-User: alice@example.test\r\n", 1),
		"method none imap": strings.Replace(nginxReq(hostileSecret, "bob", "x", "imap", src), "Auth-Method: plain", "Auth-Method: none", 1),
		"attempt garbage":  strings.Replace(nginxReq(hostileSecret, "bob", "x", "imap", src), "Auth-Login-Attempt: 1", "Auth-Login-Attempt: -99999999999999999999", 1),
	}
	for name, req := range reqs {
		code, status, err := nginxAuthStatus(e.nginxDoor, req)
		if err == nil && (status == "OK" || (code != http.StatusOK && (code < 400 || code > 499))) {
			t.Errorf("nginx %s: got %d Auth-Status %q", name, code, status)
		}
		if err == nil && strings.Contains(name, "secret") && code != http.StatusForbidden {
			t.Errorf("nginx %s: got %d, want 403", name, code)
		}
	}
	e.alive(t, "nginx door")
}

// policyExchange sends one policy request (or any bytes) and returns
// what the server answered before it closed or 10 s passed.
func policyExchange(addr, req string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		// One answer ends with a blank line (policy), a netstring's ','
		// or a newline (tcp_table): stop at the first complete one.
		if strings.HasSuffix(string(out), "\n\n") || (len(out) > 0 && !strings.HasPrefix(req, "request=") && (strings.HasSuffix(string(out), ",") || strings.HasSuffix(string(out), "\n"))) {
			return string(out), nil
		}
		if err != nil {
			if err == io.EOF {
				return string(out), nil
			}
			return string(out), err
		}
	}
}

// hostilePostfixPolicy: odd sasl_usernames and broken requests on the
// policy server. An answer is never OK (no relay for anyone: no permit
// exists), a broken request gets no answer and a closed connection.
func hostilePostfixPolicy(t *testing.T, e *hostileEnv) {
	req := func(attrs ...string) string {
		return "request=smtpd_access_policy\nprotocol_state=RCPT\n" + strings.Join(attrs, "\n") + "\n\n"
	}
	for _, l := range oddLogins {
		src := e.src()
		login := strings.NewReplacer("\n", "", "\r", "").Replace(l.login) // a line break ends the attribute
		for _, ctx := range []string{"", "policy_context=relaycheck"} {
			got, err := policyExchange(e.policy, req("client_address="+src, "sasl_method=PLAIN", "sasl_username="+login, ctx))
			if err != nil || !strings.HasPrefix(got, "action=") || strings.HasPrefix(got, "action=OK") {
				t.Errorf("policy %s %s: got %q %v", l.name, ctx, got, err)
			}
			if ctx == "" && badLogin(login) && !strings.HasPrefix(got, "action=REJECT ") {
				t.Errorf("policy %s: a login no account can have got %q, want a REJECT (bad_login)", l.name, got)
			}
		}
	}
	broken := map[string]string{
		"64 KiB line":        req("sasl_username=" + strings.Repeat("a", 64<<10)),
		"no equals":          req("sasl_username"),
		"too many":           req(strings.Repeat("x=y\n", 200)),
		"64 KiB request":     req(strings.Repeat(strings.Repeat("x", 1000)+"=y\n", 70)),
		"binary":             "\x00\x01\x02\xff\n\n",
		"unfinished":         "request=smtpd_access_policy\nclient_address=1.2.3.4",
		"empty name":         req("=x"),
		"cr only":            "request=smtpd_access_policy\rclient_address=1.2.3.4\r\r",
		"http on the policy": "GET / HTTP/1.1\r\nHost: m\r\n\r\n",
	}
	for name, r := range broken {
		got, err := policyExchange(e.policy, r)
		if strings.Contains(got, "action=OK") {
			t.Errorf("policy %s: got %q %v", name, got, err)
		}
	}
	// A relay check from any address: DUNNO (nothing was granted).
	for _, a := range []string{"", "garbage", "127.0.77.1%eth0", "::ffff:127.0.77.2", strings.Repeat("1", 3000)} {
		got, err := policyExchange(e.policy, req("client_address="+a, "policy_context=relaycheck"))
		if err != nil || got != "action=DUNNO\n\n" {
			t.Errorf("relay check for %.20q: got %q %v", a, got, err)
		}
	}
	e.alive(t, "postfix policy")
}

// hostilePostfixTables: broken netstrings and tcp_table lines, odd keys.
func hostilePostfixTables(t *testing.T, e *hostileEnv) {
	ns := func(s string) string { return fmt.Sprintf("%d:%s,", len(s), s) }
	for _, l := range oddLogins {
		for _, m := range []string{"relay", "block", "client"} {
			got, err := policyExchange(e.socketmap, ns(m+" "+l.login))
			if err != nil || strings.Contains(got, "OK") {
				t.Errorf("socketmap %s %s: got %q %v", m, l.name, got, err)
			}
		}
		got, err := policyExchange(e.tcpTable, "get "+nginxEscape(l.login)+"\n")
		if err != nil || strings.HasPrefix(got, "200 OK") {
			t.Errorf("tcp_table %s: got %q %v", l.name, got, err)
		}
	}
	broken := map[string]string{
		"socketmap huge length": "99999999:x,",
		"socketmap 8 digits":    "00000001:x,",
		"socketmap no comma":    "3:abcX",
		"socketmap not digits":  "abc:relay 1.2.3.4,",
		"socketmap negative":    "-1:,",
		"socketmap over limit":  ns("relay " + strings.Repeat("1", 10001)),
		"socketmap unfinished":  "100:relay",
		"socketmap no map":      ns("127.0.77.3"),
		"socketmap unknown map": ns("passwd 127.0.77.3"),
	}
	for name, r := range broken {
		got, _ := policyExchange(e.socketmap, r)
		if strings.Contains(got, "OK ") {
			t.Errorf("%s: got %q", name, got)
		}
	}
	tcp := map[string]string{
		"64 KiB":       "get " + strings.Repeat("a", 64<<10) + "\n",
		"bad hex":      "get %zz\n",
		"put":          "put 127.0.77.4 OK\n",
		"no newline":   "get 127.0.77.4",
		"nul":          "get \x00\n",
		"empty":        "\n",
		"escaped nl":   "get 127.0.77.4%0Aget%20x\n",
		"many at once": strings.Repeat("get 127.0.77.5\n", 2000),
	}
	for name, r := range tcp {
		got, _ := policyExchange(e.tcpTable, r)
		if strings.Contains(got, "200 OK") {
			t.Errorf("tcp_table %s: got %q", name, got)
		}
	}
	e.alive(t, "postfix tables")
}

// hostilePostfixHeld: a local process holding every allowed connection
// (max_connections = 16 here) does not lock smtpd out: a new connection
// is still answered (finding 5: the longest-idle one makes room).
func hostilePostfixHeld(t *testing.T, e *hostileEnv) {
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 40 {
		c, err := net.DialTimeout("tcp", e.policy, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(200 * time.Millisecond) // let the server accept them all
	got, err := policyExchange(e.policy, "request=smtpd_access_policy\nclient_address=192.0.2.9\n\n")
	if err != nil || got != "action=DUNNO\n\n" {
		t.Errorf("with 40 idle connections held, a new policy request got %q %v, want action=DUNNO (finding 5)", got, err)
	}
}

// hookPost POSTs body to the hook socket.
func (e *hostileEnv) hookPost(body string) (int, string, error) {
	return rawHTTP("unix", e.hook, fmt.Sprintf("POST /v1/logins HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body))
}

// hostileHook: the post-login hook socket refuses every malformed report
// with a 4xx and grants no permit for it.
func hostileHook(t *testing.T, e *hostileEnv) {
	report := func(login, ip string) string {
		return `{"login":` + jsonString(login) + `,"ip":"` + ip + `","service":"imap"}`
	}
	// The ip here is a documentation address: were any of these
	// accepted, it would get a permit (never_networks leaves it open).
	bad := map[string]string{
		"nul":          report("bob\x00@example.test", "192.0.2.50"),
		"crlf":         report("bob\r\n@example.test", "192.0.2.51"),
		"not utf8":     report("bob\xff", "192.0.2.52"),
		"400 bytes":    report(strings.Repeat("x", 400), "192.0.2.53"),
		"64 KiB":       report(strings.Repeat("x", 64<<10), "192.0.2.54"),
		"empty login":  `{"login":"","ip":"192.0.2.55","service":"imap"}`,
		"spaces login": `{"login":"   ","ip":"192.0.2.56","service":"imap"}`,
		"bad ip":       `{"login":"bob","ip":"192.0.2.57/0","service":"imap"}`,
		"no ip":        `{"login":"bob","service":"imap"}`,
		"smtp":         `{"login":"bob","ip":"192.0.2.58","service":"smtp2"}`,
		"manual door":  `{"login":"bob","ip":"192.0.2.59","service":"imap","door":"manual"}`,
		"extra key":    `{"login":"bob","ip":"192.0.2.60","service":"imap","ttl":"720h"}`,
		"array":        `[{"login":"bob","ip":"192.0.2.61","service":"imap"}]`,
		"two objects":  `{"login":"bob","ip":"192.0.2.62","service":"imap"}{}`,
		"not json":     `login=bob&ip=192.0.2.63`,
		"nested":       strings.Repeat(`{"login":`, 5000),
		"empty":        ``,
	}
	for name, b := range bad {
		code, body, err := e.hookPost(b)
		if name == "manual door" && code == http.StatusOK {
			// The hook socket sets the door itself; the permit it makes is
			// the hook's, checked below like any other.
			continue
		}
		clientError(t, "hook "+name, code, body, err)
	}
	// Other paths and methods on the hook socket.
	for _, r := range []string{"GET /v1/permits HTTP/1.1\r\nHost: m\r\n\r\n", "POST /v1/permits HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\n{}", "DELETE /v1/bans HTTP/1.1\r\nHost: m\r\n\r\n"} {
		code, body, err := rawHTTP("unix", e.hook, r)
		clientError(t, "hook "+strings.SplitN(r, "\r\n", 2)[0], code, body, err)
	}
	out := e.mg.MustCLI(t, "permit", "list", "--json")
	for _, ip := range []string{"192.0.2.50", "192.0.2.51", "192.0.2.52", "192.0.2.53", "192.0.2.54", "192.0.2.55", "192.0.2.56", "192.0.2.57", "192.0.2.58", "192.0.2.60", "192.0.2.61", "192.0.2.62", "192.0.2.63"} {
		if strings.Contains(out, `"`+ip) {
			t.Errorf("a refused hook report left a permit for %s:\n%s", ip, out)
		}
	}
	// Clean up the one a well-formed report may have made.
	if strings.Contains(out, "192.0.2.59") {
		e.mg.MustCLI(t, "permit", "rm", "--ip", "192.0.2.59")
	}
	e.alive(t, "hook socket")
}

// hostileAdmin: malformed requests to the admin API change nothing.
func hostileAdmin(t *testing.T, e *hostileEnv) {
	post := func(path, body string) (int, string, error) {
		return rawHTTP("unix", e.mg.AdminSocket, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", path, len(body), body))
	}
	for _, l := range oddLogins {
		if !strings.ContainsAny(l.login, "\x00\r\n\t") && utf8.ValidString(l.login) && len(l.login) <= 320 {
			continue // a printable login is a valid account name
		}
		account := jsonString(l.login)
		code, body, err := post("/v1/bans", `{"account":`+account+`,"for":"1h"}`)
		clientError(t, "ban of "+l.name, code, body, err)
		code, body, err = post("/v1/rules", `[{"account":`+account+`,"action":"deny","service":"all","match":"192.0.2.1"}]`)
		clientError(t, "rule for "+l.name, code, body, err)
	}
	for name, b := range map[string]string{
		"rules not json":    "[{",
		"rules 64 KiB":      `[{"account":"` + strings.Repeat("a", 64<<10) + `"}]`,
		"rules nested":      strings.Repeat("[", 100000),
		"bans bad ip":       `{"ip":"300.1.1.1","for":"1h"}`,
		"bans bad for":      `{"ip":"192.0.2.9","for":"-1h"}`,
		"permits bad ip":    `{"ip":"192.0.2.9/0","for":"1h"}`,
		"explain bad ip":    `{"account":"bob","ip":"x","service":"imap"}`,
		"explain bad svc":   `{"account":"bob","ip":"192.0.2.9","service":"gopher"}`,
		"logins over long":  `{"login":"` + strings.Repeat("x", 400) + `","ip":"192.0.2.64","service":"imap"}`,
		"logins not utf8":   `{"login":"bob` + "\xff" + `","ip":"192.0.2.65","service":"imap"}`,
		"logins nul":        `{"login":"bob\u0000","ip":"192.0.2.66","service":"imap"}`,
		"logins empty body": ``,
	} {
		path := "/v1/" + strings.Fields(name)[0]
		code, body, err := post(path, b)
		clientError(t, "admin "+name, code, body, err)
	}
	e.alive(t, "admin api")
}

// hostileRealDovecot: odd logins a real IMAP or POP3 client can send,
// through the real Dovecot asking mailgate: every one fails, Dovecot and
// mailgate stay up.
func hostileRealDovecot(t *testing.T, e *hostileEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, l := range oddLogins {
		if strings.ContainsAny(l.login, "\x00\r\n") {
			continue // not sendable in an IMAP quoted string or a POP3 line
		}
		src := e.src()
		if err := harness.IMAPLogin(ctx, netip.MustParseAddr(src), e.dc.IMAPAddr, l.login, "Wrong-Pass-1"); err == nil {
			t.Errorf("imap login %s was let in", l.name)
		}
		src = e.src()
		if err := harness.POP3Login(ctx, netip.MustParseAddr(src), e.dc.POP3Addr, l.login, "Wrong-Pass-2"); err == nil {
			t.Errorf("pop3 login %s was let in", l.name)
		}
	}
	// POP3 USER of 64 KiB, and an IMAP LOGIN of 64 KiB as a literal.
	src := e.src()
	if err := harness.POP3Login(ctx, netip.MustParseAddr(src), e.dc.POP3Addr, strings.Repeat("u", 64<<10), "x"); err == nil {
		t.Errorf("a 64 KiB POP3 USER was let in")
	}
	src = e.src()
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr(src), e.dc.IMAPAddr, strings.Repeat("u", 64<<10), "x"); err == nil {
		t.Errorf("a 64 KiB IMAP LOGIN was let in")
	}
	// The real user still logs in.
	src = e.src()
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr(src), e.dc.IMAPAddr, alice, alicePW); err != nil {
		t.Errorf("alice after the hostile logins: %v", err)
	}
	e.alive(t, "real dovecot")
}

// hostileRealNginx: the same logins through the real nginx mail proxy.
func hostileRealNginx(t *testing.T, e *hostileEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, l := range oddLogins {
		if strings.ContainsAny(l.login, "\x00\r\n") {
			continue
		}
		src := e.src()
		s, err := harness.DialIMAP(ctx, netip.MustParseAddr(src), e.ng.IMAPAddr)
		if err != nil {
			t.Fatalf("nginx imap: %v", err)
		}
		r, err := s.Login(l.login, "Wrong-Pass-3")
		s.Close()
		if err == nil && r.Status == "OK" {
			t.Errorf("nginx imap login %s was let in: %v", l.name, r)
		}
		src = e.src()
		if err := harness.POP3Login(ctx, netip.MustParseAddr(src), e.ng.POP3Addr, l.login, "Wrong-Pass-4"); err == nil {
			t.Errorf("nginx pop3 login %s was let in", l.name)
		}
	}
	src := e.src()
	if err := harness.POP3Login(ctx, netip.MustParseAddr(src), e.ng.POP3Addr, strings.Repeat("u", 64<<10), "x"); err == nil {
		t.Errorf("a 64 KiB POP3 USER through nginx was let in")
	}
	e.alive(t, "real nginx")
}

// hostileRealPostfix: odd logins in SMTP AUTH and odd envelopes through
// the real Postfix, whose relay and recipient restrictions ask mailgate's
// policy server (the shipped main.cf snippet): no login succeeds, nothing
// is relayed, and Postfix never has trouble talking to mailgate.
func hostileRealPostfix(t *testing.T, e *hostileEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	try := func(name string, do func(s *harness.SMTPSession) (harness.SMTPReply, error), wantFail bool) {
		t.Helper()
		s, err := harness.DialSMTP(ctx, netip.MustParseAddr(e.src()), e.pf.SMTPAddr)
		if err != nil {
			t.Fatalf("postfix %s: %v", name, err)
		}
		defer s.Close()
		if _, err := s.Ehlo("hostile.example"); err != nil {
			t.Fatalf("postfix %s: %v", name, err)
		}
		r, err := do(s)
		if err == nil && wantFail && r.OK() {
			t.Errorf("postfix %s: accepted (%v)\n%s", name, r, s.Transcript())
		}
		// Whatever the login did, mail to another domain is not relayed.
		if _, err := s.Mail("someone@example.org"); err == nil {
			if r, err := s.Rcpt("victim@elsewhere.example"); err == nil && r.OK() {
				t.Errorf("postfix %s: relayed to another domain (%v)\n%s", name, r, s.Transcript())
			}
		}
	}
	for _, l := range oddLogins {
		if strings.ContainsAny(l.login, "\x00") {
			continue // ends the user name in AUTH PLAIN
		}
		try("auth plain "+l.name, func(s *harness.SMTPSession) (harness.SMTPReply, error) { return s.AuthPlain(l.login, "Wrong-Pass-5") }, true)
	}
	try("auth login 64 KiB", func(s *harness.SMTPSession) (harness.SMTPReply, error) {
		return s.AuthLogin(strings.Repeat("u", 64<<10), "x")
	}, true)
	try("auth plain nul", func(s *harness.SMTPSession) (harness.SMTPReply, error) {
		return s.AuthPlain("bob\x00"+alice, alicePW) // authzid smuggling
	}, true)
	try("odd envelope", func(s *harness.SMTPSession) (harness.SMTPReply, error) {
		return s.Cmd("MAIL FROM:<\"bob\u00a0ip=10.9.9.4\"@example.org> SIZE=1")
	}, false)
	try("long helo", func(s *harness.SMTPSession) (harness.SMTPReply, error) {
		return s.Cmd("HELO " + strings.Repeat("h", 4000))
	}, false)
	for _, w := range e.pf.Warnings() {
		if strings.Contains(w, "policy") || strings.Contains(w, e.policy) {
			t.Errorf("Postfix had trouble with mailgate's policy server: %s", w)
		}
	}
	e.alive(t, "real postfix")
}

// hostileNothingGranted: no permit, no ban, no rule, and no known-good
// address came of the hostile input (alice's one real login is the only
// known-good pair).
func hostileNothingGranted(t *testing.T, e *hostileEnv) {
	t.Helper()
	// alice's one real login earns her address a permit; nothing else.
	var permits []struct {
		Account string `json:"account"`
	}
	out := e.mg.MustCLI(t, "permit", "list", "--json")
	if err := json.Unmarshal([]byte(out), &permits); err != nil {
		t.Fatalf("permit list --json: %v\n%s", err, out)
	}
	for _, p := range permits {
		if p.Account != alice {
			t.Errorf("relay permits after the hostile input: %s", out)
			break
		}
	}
	// An odd login that the real Dovecot and nginx saw fail from several
	// addresses is banned (login_attack): that is the protection working.
	// Nothing else: no address failed more than once, no manual ban was
	// accepted, and an over-long login is never banned (finding 3).
	for _, b := range bfBansByID(t, e.mg) {
		if b.Kind != "login" || b.Reason != "login_attack" || len(b.Account) > 320 {
			t.Errorf("ban after the hostile input: %+v", b)
		}
	}
	if out := e.mg.MustCLI(t, "rule", "list", "--json"); strings.Contains(out, "account") {
		t.Errorf("rules after the hostile input: %s", out)
	}
	var st struct {
		BruteForce struct {
			KnownGood *int `json:"known_good"`
		} `json:"bruteforce"`
	}
	out = e.mg.MustCLI(t, "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.BruteForce.KnownGood == nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if kg := *st.BruteForce.KnownGood; kg > 1 {
		t.Errorf("%d known-good pairs after the hostile input, want at most alice's one:\n%s", kg, out)
	}
}

// hostileFail2ban: every decision line parses, and the shipped filter
// finds every reported failure's address and nothing else (an address
// inside a login is never taken for the client's).
func hostileFail2ban(t *testing.T, e *hostileEnv) {
	t.Helper()
	log := e.mg.DecisionLog()
	path := filepath.Join(e.dir, "decisions.log")
	var want []string
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if !strings.HasPrefix(line, "time=") {
			continue
		}
		l, ok := harness.ParseLine(line)
		if !ok {
			t.Errorf("decision line does not parse: %q", line)
			continue
		}
		n++
		if l["auth"] != "" && badLogin(l["login"]) {
			t.Errorf("a login no account can have was reported as a result (counted): %q", line)
		}
		if l["auth"] == "failure" {
			want = append(want, l["ip"])
		}
	}
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fail2ban-regex", "-o", "ip", path, filepath.Join("..", "etc", "fail2ban", "filter.d", "mailgate.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	found := map[string]int{}
	for _, ip := range strings.Fields(string(out)) {
		found[ip]++
		if !e.clients[ip] {
			t.Errorf("fail2ban found %s, which was never a client (taken from a login?)", ip)
		}
	}
	for _, ip := range want {
		if found[ip] == 0 {
			t.Errorf("fail2ban missed the failure of %s (finding 7: a Unicode space in the login?):\n%s", ip, grepLines(log, "ip="+ip))
		}
		found[ip]--
	}
	t.Logf("%d decision lines, %d failures; fail2ban-regex found %d", n, len(want), len(strings.Fields(string(out))))
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub+" ") || strings.HasSuffix(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/test/harness"
)

// The copy-paste files of docs/postfix.md and docs/relay.md, and the
// addresses mailgate listens on in them.
const (
	pfMainSnippet      = "postfix/main-mailgate.cf"
	pfSocketmapSnippet = "postfix/main-mailgate-socketmap.cf"
	pfMasterSnippet    = "postfix/master-mailgate.cf"
	dcPostloginSnippet = "dovecot/97-mailgate-postlogin.conf"
	pfDocPolicy        = "inet:127.0.0.1:10040"
	pfDocSocketmap     = "socketmap:inet:127.0.0.1:10041:"
)

// TestPostfixDocSnippets checks that the docs pages carry the etc/ files
// verbatim, each in a ``` block, and name them.
func TestPostfixDocSnippets(t *testing.T) {
	for doc, files := range map[string][]string{
		"postfix.md": {pfMainSnippet, pfSocketmapSnippet, pfMasterSnippet},
		"relay.md":   {dcPostloginSnippet},
	} {
		page, err := os.ReadFile(filepath.Join("..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			snippet := readSnippet(t, f)
			if !strings.Contains(string(page), "\n```\n"+snippet+"```\n") {
				t.Errorf("docs/%s does not contain etc/%s verbatim in a ``` block", doc, f)
			}
			if !strings.Contains(string(page), "etc/"+f) {
				t.Errorf("docs/%s does not name etc/%s", doc, f)
			}
		}
	}
}

// readSnippet reads a file under etc/.
func readSnippet(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "etc", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// replaceAll replaces old in s, failing t when old is not there: the test
// must notice when a snippet stops saying what it rewrites.
func replaceAll(t *testing.T, s, old, new, what string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("%s no longer contains %q; update this test", what, old)
	}
	return strings.ReplaceAll(s, old, new)
}

// TestPostfixDocConfig runs the real Postfix with the main.cf and
// master.cf lines of docs/postfix.md (etc/postfix/*.cf, only mailgate's
// addresses changed to the test's), against fake policy and socketmap
// servers standing in for mailgate, and checks what the page claims of
// them without depending on mailgate's own code: postconf accepts them
// without a warning; the relay check reaches the policy server with
// policy_context=relaycheck and an OK there lets the client relay; a
// DUNNO leaves "Relay access denied" for other domains and accepts mail
// for the server's own; authenticated senders skip the relay check and
// reach the recipient check with their sasl_username, whose REJECT text
// the client sees; with the policy server down, mail for the server's own
// domains still comes in (default_action=DUNNO) and nobody relays; the
// submission service of master.cf starts and offers AUTH only after
// STARTTLS; the socketmap variant relays on OK, refuses a blocked client
// with its text, looks up the client name ("unknown") before the address,
// and fails closed (451 4.3.5) when the socketmap server is down; Postfix
// logs no warning.
func TestPostfixDocConfig(t *testing.T) {
	start := time.Now()
	harness.RequirePostfix(t)
	harness.RequireSwaks(t)
	dir := harness.TempDir(t, "pfdoc-")
	cert, key := writeTestCert(t, dir)
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:        map[string]string{"alice@example.test": "Doc-Alice-Secret-1"},
		AuthListener: true,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t.Run("policy", func(t *testing.T) { pfDocPolicyVariant(t, ctx, dc, cert, key) })
	t.Run("socketmap", func(t *testing.T) { pfDocSocketmapVariant(t, ctx, dc) })
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

func pfDocPolicyVariant(t *testing.T, ctx context.Context, dc *harness.Dovecot, cert, key string) {
	const permitted, other, alice, aliceRefused, down = "127.0.0.71", "127.0.0.70", "127.0.0.72", "127.0.0.73", "127.0.0.74"
	const refusal = "fake mailgate: alice may not send from here"
	fake := startFakePolicy(t, func(req map[string]string) string {
		switch {
		case req["policy_context"] == "relaycheck" && req["client_address"] == permitted:
			return "OK"
		case req["policy_context"] == "" && req["sasl_username"] == "alice@example.test" && req["client_address"] == aliceRefused:
			return "REJECT " + refusal
		}
		return "DUNNO"
	})
	main := replaceAll(t, readSnippet(t, pfMainSnippet), pfDocPolicy, "inet:"+fake.addr, "etc/"+pfMainSnippet)
	submission := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t)))
	master := replaceAll(t, readSnippet(t, pfMasterSnippet), "\nsubmission inet ", "\n"+submission+" inet ", "etc/"+pfMasterSnippet)
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		DovecotSASL: dc.AuthAddr,
		// The site's own TLS settings, which the snippet leaves alone.
		Extra:       main + fmt.Sprintf("smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n", cert, key),
		MasterExtra: master,
	})
	pfPostconfClean(t, pf.Dir)

	send := func(src string, to []string, auth bool) *harness.SwaksResult {
		t.Helper()
		o := harness.SwaksOptions{Server: pf.SMTPAddr, Source: netip.MustParseAddr(src), From: "someone@remote.test", To: to}
		if auth {
			o.AuthUser, o.AuthPassword = "alice@example.test", "Doc-Alice-Secret-1"
		}
		r, err := harness.Swaks(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	wantRcpt := func(r *harness.SwaksResult, codes []int, text string) {
		t.Helper()
		rs := r.Replies("RCPT")
		ok := len(rs) == len(codes)
		for i := 0; ok && i < len(rs); i++ {
			ok = rs[i].Code == codes[i]
		}
		if !ok || (text != "" && !strings.Contains(rs[len(rs)-1].Text, text)) {
			t.Errorf("RCPT replies %v, want codes %v and %q\n%s", rs, codes, text, r)
		}
	}

	// No permit: refused for other domains, accepted for the server's own.
	r := send(other, []string{"friend@remote.test", "bob@example.test"}, false)
	wantRcpt(r, []int{554, 250}, "")
	if !strings.Contains(r.Replies("RCPT")[0].Text, "Relay access denied") || !r.Accepted() {
		t.Errorf("without a permit: want Relay access denied, then the local recipient accepted\n%s", r)
	}
	// A permit (OK to the relay check): relaying.
	r = send(permitted, []string{"friend@remote.test"}, false)
	if !r.Accepted() {
		t.Errorf("the policy server answered OK to the relay check, but relaying was refused\n%s", r)
	}
	// Authenticated: no relay check; the recipient check sees the login.
	if r = send(alice, []string{"friend@remote.test"}, true); !r.Accepted() {
		t.Errorf("authenticated relaying refused\n%s", r)
	}
	r = send(aliceRefused, []string{"friend@remote.test"}, true)
	wantRcpt(r, []int{554}, "Recipient address rejected: "+refusal)

	byClient := func(ip string) []map[string]string {
		var out []map[string]string
		for _, req := range fake.requests() {
			if req["client_address"] == ip {
				out = append(out, req)
			}
		}
		return out
	}
	// Each RCPT is asked about twice: the relay check, then the recipient
	// check (the refused relay recipient only once: Postfix stops there).
	var contexts []string
	for _, req := range byClient(other) {
		contexts = append(contexts, req["protocol_state"]+":"+req["recipient"]+":"+req["policy_context"])
	}
	if got, want := strings.Join(contexts, " "), "RCPT:friend@remote.test:relaycheck RCPT:bob@example.test:relaycheck RCPT:bob@example.test:"; got != want {
		t.Errorf("requests for %s (state:recipient:context) = %s, want %s", other, got, want)
	}
	for _, req := range byClient(alice) {
		if req["policy_context"] == "relaycheck" {
			t.Errorf("an authenticated sender was relay-checked (permit_sasl_authenticated must come first): %v", req)
		}
		if req["sasl_username"] != "alice@example.test" {
			t.Errorf("recipient check without the login: %v", req)
		}
	}
	if len(byClient(alice)) == 0 {
		t.Errorf("no recipient check for the authenticated sender")
	}

	// The submission service: TLS first, AUTH only after it.
	s, err := harness.DialSMTP(ctx, netip.MustParseAddr("127.0.0.75"), submission)
	if err != nil {
		t.Fatal(err)
	}
	ehlo, err := s.Ehlo("client.example.test")
	if err != nil || !strings.Contains(ehlo.Text, "STARTTLS") || strings.Contains(ehlo.Text, "AUTH") {
		t.Errorf("submission EHLO: %v %v, want STARTTLS and no AUTH before TLS\n%s", ehlo, err, s.Transcript())
	}
	s.Quit()
	pf.WaitMailLog(t, "postfix/submission/smtpd", "connect from unknown[127.0.0.75]")

	// mailgate down: fail open (default_action=DUNNO) for both checks.
	fake.close()
	begin := time.Now()
	r = send(down, []string{"friend@remote.test", "bob@example.test"}, false)
	wantRcpt(r, []int{554, 250}, "")
	if !r.Accepted() || !strings.Contains(r.Replies("RCPT")[0].Text, "Relay access denied") {
		t.Errorf("policy server down: want Relay access denied, then the local recipient accepted\n%s", r)
	}
	t.Logf("with the policy server down the session took %v", time.Since(begin).Round(time.Millisecond))
	pf.WaitMailLog(t, "warning: connect to "+fake.addr)
	for _, w := range pf.Warnings() {
		if !strings.Contains(w, fake.addr) {
			t.Errorf("postfix warning: %s", w)
		}
	}
}

func pfDocSocketmapVariant(t *testing.T, ctx context.Context, dc *harness.Dovecot) {
	const other, permitted, blocked, down = "127.0.0.80", "127.0.0.81", "127.0.0.82", "127.0.0.83"
	const refusal = "fake mailgate: your address is blocked"
	fake := startFakeSocketmap(t, func(name, key string) string {
		switch {
		case name == "relay" && key == permitted:
			return "OK OK"
		case name == "block" && key == blocked:
			return "OK REJECT " + refusal
		}
		return "NOTFOUND "
	})
	main := replaceAll(t, readSnippet(t, pfSocketmapSnippet), pfDocSocketmap, "socketmap:inet:"+fake.addr+":", "etc/"+pfSocketmapSnippet)
	pf := harness.StartPostfix(t, harness.PostfixOptions{DovecotSASL: dc.AuthAddr, Extra: main})
	pfPostconfClean(t, pf.Dir)

	send := func(src, to string) *harness.SwaksResult {
		t.Helper()
		r, err := harness.Swaks(ctx, harness.SwaksOptions{Server: pf.SMTPAddr, Source: netip.MustParseAddr(src),
			From: "someone@remote.test", To: []string{to}, QuitAfter: "RCPT"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rcpt := func(r *harness.SwaksResult, code int, text string) {
		t.Helper()
		rs := r.Replies("RCPT")
		if len(rs) != 1 || rs[0].Code != code || !strings.Contains(rs[0].Text, text) {
			t.Errorf("RCPT: %v, want %d %q\n%s", rs, code, text, r)
		}
	}
	rcpt(send(other, "friend@remote.test"), 554, "Relay access denied")
	rcpt(send(other, "bob@example.test"), 250, "")
	rcpt(send(permitted, "friend@remote.test"), 250, "")
	rcpt(send(blocked, "bob@example.test"), 554, "Client host rejected: "+refusal)
	// Postfix asks for the client's name first (unknown without DNS),
	// then its address; never for a network.
	var keys []string
	for _, q := range fake.requests() {
		if strings.HasSuffix(q, " "+other) || strings.HasSuffix(q, " unknown") {
			keys = append(keys, q)
		}
	}
	if got := strings.Join(keys, ","); !strings.HasPrefix(got, "block unknown,block "+other+",relay unknown,relay "+other) {
		t.Errorf("socketmap lookups for %s: %s; want the block map, then the relay map, each by name (unknown), then address", other, got)
	}
	if w := pf.Warnings(); len(w) > 0 {
		t.Errorf("postfix warnings:\n%s", strings.Join(w, "\n"))
	}
	// mailgate down: a table fails closed, inbound mail too.
	fake.close()
	rcpt(send(down, "bob@example.test"), 451, "4.3.5")
}

// TestPostfixMasterOptionSpaces checks what docs/postfix.md says of -o
// values in master.cf, with postconf -P (what Postfix understood): a
// plain value ends at the first space, without a warning; braces and a
// $parameter keep a list with spaces whole.
func TestPostfixMasterOptionSpaces(t *testing.T) {
	harness.RequirePostfix(t)
	dir := harness.TempDir(t, "pfopt-")
	files := map[string]string{
		"main.cf": "compatibility_level = 3.6\nsubmission_relay_restrictions = permit_sasl_authenticated, reject\n",
		"master.cf": "127.0.0.1:2525 inet n - n - - smtpd\n  -o smtpd_relay_restrictions=permit_sasl_authenticated, reject\n" +
			"127.0.0.1:2526 inet n - n - - smtpd\n  -o { smtpd_relay_restrictions = permit_sasl_authenticated, reject }\n" +
			"127.0.0.1:2527 inet n - n - - smtpd\n  -o smtpd_relay_restrictions=$submission_relay_restrictions\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/usr/sbin/postconf", "-c", dir, "-P")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("postconf -P: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{
		"127.0.0.1:2525/inet/smtpd_relay_restrictions = permit_sasl_authenticated,\n",
		"127.0.0.1:2526/inet/smtpd_relay_restrictions = permit_sasl_authenticated, reject\n",
		"127.0.0.1:2527/inet/smtpd_relay_restrictions = $submission_relay_restrictions\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("postconf -P lacks %q:\n%s", want, out)
		}
	}
	// The truncation is silent.
	cmd = exec.Command("/usr/sbin/postconf", "-c", dir, "-n")
	cmd.Stderr = &stderr
	if _, err := cmd.Output(); err != nil || stderr.Len() > 0 {
		t.Errorf("postconf -n: %v, warned %q; want silence", err, stderr.String())
	}
}

// pfPostconfClean runs postconf on a Postfix config dir (main.cf,
// master.cf) and fails t on any warning.
func pfPostconfClean(t *testing.T, dir string) {
	t.Helper()
	for _, flag := range []string{"-n", "-M", "-P"} {
		cmd := exec.Command("/usr/sbin/postconf", "-c", dir, flag)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("postconf -c %s %s: %v\n%s\n%s", dir, flag, err, stderr.String(), out)
		}
	}
}

// fakePolicy is a Postfix policy delegation server (protocols.md §3.1)
// answering with decide.
type fakePolicy struct {
	addr string
	l    net.Listener

	mu    sync.Mutex
	reqs  []map[string]string
	conns []net.Conn
}

func startFakePolicy(t *testing.T, decide func(map[string]string) string) *fakePolicy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePolicy{addr: l.Addr().String(), l: l}
	t.Cleanup(f.close)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			go f.serve(c, decide)
		}
	}()
	return f
}

func (f *fakePolicy) serve(c net.Conn, decide func(map[string]string) string) {
	defer c.Close()
	r := bufio.NewReader(c)
	req := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			k, v, _ := strings.Cut(line, "=")
			req[k] = v
			continue
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		if _, err := io.WriteString(c, "action="+decide(req)+"\n\n"); err != nil {
			return
		}
		req = map[string]string{}
	}
}

func (f *fakePolicy) requests() []map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]string(nil), f.reqs...)
}

// close stops listening and drops the connections Postfix keeps open.
func (f *fakePolicy) close() {
	f.l.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

// fakeSocketmap is a socketmap server (protocols.md §3.5): netstring
// requests "name key", netstring replies.
type fakeSocketmap struct {
	addr string
	l    net.Listener

	mu    sync.Mutex
	reqs  []string
	conns []net.Conn
}

func startFakeSocketmap(t *testing.T, answer func(name, key string) string) *fakeSocketmap {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSocketmap{addr: l.Addr().String(), l: l}
	t.Cleanup(f.close)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			go f.serve(c, answer)
		}
	}()
	return f
}

func (f *fakeSocketmap) serve(c net.Conn, answer func(name, key string) string) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		n, err := r.ReadString(':')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
		if err != nil || size < 0 || size > 10000 {
			return
		}
		buf := make([]byte, size+1)
		if _, err := io.ReadFull(r, buf); err != nil || buf[size] != ',' {
			return
		}
		q := string(buf[:size])
		f.mu.Lock()
		f.reqs = append(f.reqs, q)
		f.mu.Unlock()
		name, key, _ := strings.Cut(q, " ")
		a := answer(name, key)
		if _, err := fmt.Fprintf(c, "%d:%s,", len(a), a); err != nil {
			return
		}
	}
}

func (f *fakeSocketmap) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func (f *fakeSocketmap) close() {
	f.l.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
}

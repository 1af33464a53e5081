package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/internal/geoip/geoiptest"
	"mailgate/test/harness"
)

// The nginx test's users, secrets and timings.
const (
	ngAlice, ngAlicePW = "alice@example.test", "Ng-Alice-Secret-1111"
	ngBob, ngBobPW     = "bob@example.test", "Ng-Bob-Secret-2222"
	ngCarol, ngCarolPW = "carol@example.test", "Ng-Carol-Secret-3333"
	ngDave, ngDavePW   = "dave@example.test", "Ng-Dave-Secret-4444"
	// Wrong passwords, each tried once (a repeated one is a stale client).
	ngCarolWrong  = "Ng-Carol-Wrong-5555"
	ngDaveWrong1  = "Ng-Dave-Wrong-6666"
	ngDaveWrong2  = "Ng-Dave-Wrong-7777"
	ngBobWrong    = "Ng-Bob-Wrong-9999"
	ngSecret      = "ng-e2e-shared-secret-8888"
	ngSecretHdr   = "X-Auth-Key"
	ngFailWait    = 2 * time.Second
	ngCountryText = "not allowed from your country"
	ngFailText    = "Invalid login or password"
)

// Source addresses: the test's GeoIP database puts 127.0.1.0/24 in DE
// (the allowed country), 127.0.2.0/24 in CN and 127.0.3.0/24 in FR; every
// scenario uses its own addresses (Dovecot penalises an address that
// failed, and mailgate counts failures per address).
var ngGeo = map[string]string{
	"127.0.1.0/24": "DE",
	"127.0.2.0/24": "CN",
	"127.0.3.0/24": "FR",
}

// ngEnv is what the scenarios share.
type ngEnv struct {
	mg *harness.MG
	dc *harness.Dovecot
	pf *harness.Postfix
	ng *harness.Nginx
	// geoPath is the [geoip] database file.
	geoPath string
	// door is the nginx door's unix socket.
	door string
}

// TestNginxEndToEnd is issue 4's end-to-end test: the real nginx mail
// proxy asks a running `mailgate serve` (auth_http), which checks the
// client's country in a GeoIP database the test wrote, verifies the
// password through the real Dovecot's auth service and sends nginx on to
// Dovecot (IMAP, POP3) or Postfix (SMTP, with XCLIENT). Real clients
// connect from 127.0.x.y addresses chosen for their country.
//
// It covers: an allowed country over IMAP, POP3 and SMTP AUTH (with a
// relayed message); a blocked country over each protocol; per-account
// extra countries and addresses; a wrong SMTP password refused before
// Postfix sees the client (nginx never re-checks SMTP passwords);
// Auth-Wait between failures on one connection; the seed's way of
// checking passwords (an IMAP LOGIN, verify_with = "imap") in a second
// mailgate; a database swapped while running; and no password in
// mailgate's logs. It takes about 25 s, most of it Dovecot's failure
// delay and per-address penalty in the Auth-Wait scenario.
func TestNginxEndToEnd(t *testing.T) {
	start := time.Now()
	harness.Require(t, harness.NginxPackages)
	harness.RequirePostfix(t)
	dir := harness.TempDir(t, "ngx-e2e-")
	env := &ngEnv{geoPath: filepath.Join(dir, "countries.mmdb")}
	writeGeoIP(t, env.geoPath, ngGeo)

	// mailgate checks passwords over the auth socket the shipped snippet
	// adds, which only root (mailgate's user) may open.
	authSnippet, err := os.ReadFile(filepath.Join("..", "etc", "dovecot", "96-mailgate-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	env.dc = harness.StartDovecot(t, harness.DovecotOptions{
		Users: map[string]string{ngAlice: ngAlicePW, ngBob: ngBobPW, ngCarol: ngCarolPW, ngDave: ngDavePW},
		// Postfix's SASL (the SMTP backend's) uses a TCP listener.
		AuthListener: true,
		// mailgate's IMAP password check (verify_with = "imap") passes
		// the client's address with the IMAP ID command, which Dovecot
		// believes from trusted networks only.
		TrustedNetworks: "127.0.0.1/32",
		Extra:           string(authSnippet),
	})
	env.pf = harness.StartPostfix(t, harness.PostfixOptions{DovecotSASL: env.dc.AuthAddr})
	// The door on a unix socket for nginx's workers (user nobody, group
	// nogroup, as nginx started by root runs them), without a secret.
	env.door = filepath.Join(dir, "nginx.sock")
	env.mg, env.ng = ngStartMailgate(t, env, dir, env.door, fmt.Sprintf("verify_with = \"dovecot\"\ndovecot_auth = %q", env.dc.Socket("auth-mailgate")))
	ngCheckSockets(t, env)

	env.mg.MustCLI(t, "rule", "add", "--account", ngAlice, "--extra", "--country", "FR", "--comment", "alice travels to France")
	env.mg.MustCLI(t, "rule", "add", "--account", ngAlice, "--extra", "--ip", "127.0.2.9", "--comment", "alice's hotel in China")
	t.Logf("setup took %v", time.Since(start).Round(time.Millisecond))

	// The scenarios run in parallel (each has its own addresses), longest
	// first: go test runs GOMAXPROCS of them at a time.
	t.Run("countries", func(t *testing.T) {
		t.Run("auth wait between failures", func(t *testing.T) { t.Parallel(); ngAuthWait(t, env) })
		t.Run("wrong smtp password", func(t *testing.T) { t.Parallel(); ngWrongSMTPPassword(t, env) })
		t.Run("allowed country", func(t *testing.T) { t.Parallel(); ngAllowedCountry(t, env) })
		t.Run("blocked country", func(t *testing.T) { t.Parallel(); ngBlockedCountry(t, env) })
		t.Run("extra country", func(t *testing.T) { t.Parallel(); ngExtraCountry(t, env) })
		t.Run("extra address", func(t *testing.T) { t.Parallel(); ngExtraAddress(t, env) })
		t.Run("verify with imap", func(t *testing.T) { t.Parallel(); ngVerifyWithIMAP(t, env) })
	})
	if t.Failed() {
		return
	}
	// After the scenarios that need 127.0.2.0/24 in CN.
	t.Run("database swapped while running", func(t *testing.T) { ngSwapDatabase(t, env) })
	ngCheckNoSecrets(t, env)
	t.Logf("whole test took %v", time.Since(start).Round(time.Millisecond))
}

// ngStartMailgate starts a mailgate with its database in dir, the test's
// GeoIP database allowing DE, and the nginx door pointed at the test's
// Dovecot and Postfix, verifying passwords as verify says (a verify_with
// line and what it needs); then an nginx asking it. The door listens on
// the unix socket sock (group nogroup, no secret), or with sock "" on a
// free TCP port with the secret.
func ngStartMailgate(t *testing.T, env *ngEnv, dir, sock, verify string) (*harness.MG, *harness.Nginx) {
	t.Helper()
	doorAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(harness.FreePort(t)))
	door := fmt.Sprintf("listen = %q\nsecret = %q", doorAddr, ngSecret)
	nopts := harness.NginxOptions{AuthURL: doorAddr + "/auth", AuthHeader: ngSecretHdr, AuthSecret: ngSecret}
	if sock != "" {
		door = fmt.Sprintf("listen = %q\nsocket_group = \"nogroup\"", sock)
		nopts = harness.NginxOptions{AuthURL: "unix:" + sock + ":/auth"}
	}
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", fmt.Sprintf(`
[geoip]
database = %q
allow_countries = ["DE"]
private = "allow"
unknown = "list"

[nginx]
enabled = true
secret_header = %q
%s
%s
verify = ["imap", "pop3", "smtp"]
imap_backend = %q
pop3_backend = %q
smtp_backend = %q
fail_wait = %q
max_wait_attempts = 10
`, env.geoPath, ngSecretHdr, door, verify,
		env.dc.IMAPAddr, env.dc.POP3Addr, env.pf.SMTPAddr, ngFailWait.String())))
	if sock != "" {
		waitListeningOn(t, "unix", sock)
	} else {
		waitListening(t, doorAddr)
	}
	return mg, harness.StartNginx(t, nopts)
}

// ngCheckSockets: the door's socket and Dovecot's auth socket for
// mailgate are closed to a local user outside their group, who could
// otherwise check passwords from a made-up client address and get any
// address banned; the door's socket is open to nginx's group.
func ngCheckSockets(t *testing.T, env *ngEnv) {
	t.Helper()
	fi, err := os.Stat(env.door)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || !ngIsGroup(st.Gid, "nogroup") {
		t.Errorf("%s: mode %04o gid %d, want 0660 and group nogroup", env.door, fi.Mode().Perm(), st.Gid)
	}
	auth := env.dc.Socket("auth-mailgate")
	for _, c := range []struct {
		path   string
		groups string // supplementary groups of the connecting user
		ok     bool
	}{
		{env.door, "", false},
		{auth, "", false},
		{env.door, "nogroup", true},
		{auth, "nogroup", false},
	} {
		err := harness.DialUnixAs(t, 12345, 12345, c.groups, c.path)
		if c.ok && err != nil || !c.ok && (err == nil || !strings.Contains(err.Error(), "ermission denied")) {
			t.Errorf("uid 12345 (groups %q) connecting to %s: %v, want ok=%v (else permission denied)", c.groups, c.path, err, c.ok)
		}
	}
}

// ngIsGroup reports whether gid is the group name.
func ngIsGroup(gid uint32, name string) bool {
	g, err := user.LookupGroup(name)
	return err == nil && g.Gid == fmt.Sprint(gid)
}

// ngAllowedCountry: a client in DE logs in over IMAP, POP3, SMTP AUTH
// PLAIN (and relays a message through Postfix) and SMTP AUTH LOGIN.
func ngAllowedCountry(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	const imapSrc, pop3Src, smtpSrc, smtpLoginSrc = "127.0.1.10", "127.0.1.11", "127.0.1.12", "127.0.1.13"
	ngNoError(t, harness.IMAPLogin(ctx, netip.MustParseAddr(imapSrc), env.ng.IMAPAddr, ngBob, ngBobPW))
	ngNoError(t, harness.POP3Login(ctx, netip.MustParseAddr(pop3Src), env.ng.POP3Addr, ngBob, ngBobPW))

	s := ngDialSMTP(t, ctx, smtpSrc, env.ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("roadwarrior.example.test"))
	ngExpect(t, s, 235, "")(s.AuthPlain(ngBob, ngBobPW))
	ngExpect(t, s, 250, "")(s.Send(ngBob, "friend127-0-1-12@remote.test", "from DE"))
	ngExpect(t, s, 221, "")(s.Quit())

	s = ngDialSMTP(t, ctx, smtpLoginSrc, env.ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("roadwarrior.example.test"))
	ngExpect(t, s, 235, "")(s.AuthLogin(ngBob, ngBobPW))
	ngExpect(t, s, 221, "")(s.Quit())

	for _, c := range []struct{ src, service string }{{imapSrc, "imap"}, {pop3Src, "pop3"}, {smtpSrc, "smtp"}, {smtpLoginSrc, "smtp"}} {
		env.mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "nginx", "service": c.service, "login": ngBob, "ip": c.src, "country": "DE"})
		env.mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "nginx", "service": c.service, "login": ngBob, "ip": c.src})
	}
	// Postfix got the session from nginx with the client's address and
	// login, and relayed the message (to the discard transport).
	env.pf.WaitMailLog(t, "client=unknown["+smtpSrc+"]", "sasl_method=XCLIENT", "sasl_username="+ngBob)
	env.pf.WaitMailLog(t, "to=<friend127-0-1-12@remote.test>", "status=sent")
}

// ngBlockedCountry: a client in CN gets mailgate's refusal over each
// protocol, with the correct password, and the backends never see it.
func ngBlockedCountry(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	const imapSrc, pop3Src, smtpSrc = "127.0.2.20", "127.0.2.21", "127.0.2.22"
	ngRefused(t, harness.IMAPLogin(ctx, netip.MustParseAddr(imapSrc), env.ng.IMAPAddr, ngBob, ngBobPW), "NO ", ngCountryText+" (CN)")
	ngRefused(t, harness.POP3Login(ctx, netip.MustParseAddr(pop3Src), env.ng.POP3Addr, ngBob, ngBobPW), "-ERR ", ngCountryText+" (CN)")

	s := ngDialSMTP(t, ctx, smtpSrc, env.ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("roadwarrior.example.test"))
	ngExpect(t, s, 535, ngCountryText+" (CN)")(s.AuthPlain(ngBob, ngBobPW))
	s.Close()

	for _, c := range []struct{ src, service string }{{imapSrc, "imap"}, {pop3Src, "pop3"}, {smtpSrc, "smtp"}} {
		env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "country_blocked", "door": "nginx",
			"service": c.service, "login": ngBob, "ip": c.src, "country": "CN"})
	}
	if log := env.pf.MailLog(); strings.Contains(log, smtpSrc) {
		t.Errorf("postfix saw the refused client %s:\n%s", smtpSrc, log)
	}

	// explain shows the country, in text and JSON.
	out := env.mg.MustCLI(t, "explain", "--account", ngBob, "--ip", imapSrc, "--service", "imap")
	if !strings.Contains(out, "country: CN") || !strings.Contains(out, "country_blocked") {
		t.Errorf("explain for %s from %s lacks \"country: CN\" or country_blocked:\n%s", ngBob, imapSrc, out)
	}
	if e := ngExplain(t, env.mg, ngBob, imapSrc); e.Verdict != "deny" || e.Reason != "country_blocked" || e.Country != "CN" {
		t.Errorf("explain --json for %s from %s = %+v, want deny country_blocked CN", ngBob, imapSrc, e)
	}
}

// ngExtraCountry: alice may also log in from FR (an extra country that
// does not restrict her); bob, without such a rule, may not.
func ngExtraCountry(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	ngNoError(t, harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.3.30"), env.ng.IMAPAddr, ngAlice, ngAlicePW))
	env.mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "nginx", "service": "imap", "login": ngAlice, "ip": "127.0.3.30", "country": "FR"})
	ngRefused(t, harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.3.31"), env.ng.IMAPAddr, ngBob, ngBobPW), "NO ", ngCountryText+" (FR)")
	env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "country_blocked", "door": "nginx", "service": "imap", "login": ngBob, "ip": "127.0.3.31", "country": "FR"})
	// The extra country does not make DE an "only these countries" list.
	ngNoError(t, harness.POP3Login(ctx, netip.MustParseAddr("127.0.1.32"), env.ng.POP3Addr, ngAlice, ngAlicePW))
}

// ngExtraAddress: alice may log in from one CN address her extra rule
// names, and from no other CN address.
func ngExtraAddress(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	ngNoError(t, harness.POP3Login(ctx, netip.MustParseAddr("127.0.2.9"), env.ng.POP3Addr, ngAlice, ngAlicePW))
	env.mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "nginx", "service": "pop3", "login": ngAlice, "ip": "127.0.2.9", "country": "CN"})
	ngRefused(t, harness.POP3Login(ctx, netip.MustParseAddr("127.0.2.10"), env.ng.POP3Addr, ngAlice, ngAlicePW), "-ERR ", ngCountryText+" (CN)")
	env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "country_blocked", "door": "nginx", "service": "pop3", "login": ngAlice, "ip": "127.0.2.10", "country": "CN"})
	// Bob has no such rule for that address.
	ngRefused(t, harness.POP3Login(ctx, netip.MustParseAddr("127.0.2.9"), env.ng.POP3Addr, ngBob, ngBobPW), "-ERR ", ngCountryText+" (CN)")
}

// ngWrongSMTPPassword: nginx hands an authenticated SMTP session to
// Postfix with XCLIENT LOGIN= and no password, so mailgate must refuse a
// wrong password itself; Postfix never sees the client, and the failure
// is logged.
func ngWrongSMTPPassword(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	const src = "127.0.1.40"
	s := ngDialSMTP(t, ctx, src, env.ng.SMTPAddr)
	defer s.Close()
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("roadwarrior.example.test"))
	ngExpect(t, s, 535, ngFailText)(s.AuthPlain(ngCarol, ngCarolWrong))
	// Auth-Wait kept the session, still unauthenticated: nginx itself
	// refuses a mail transaction.
	r, err := s.Mail(ngCarol)
	if err != nil || r.OK() {
		t.Errorf("MAIL FROM after a refused AUTH: %v, %v; want a refusal\n%s", r, err, s.Transcript())
	}
	s.Quit()

	env.mg.WaitLogLine(t, map[string]string{"auth": "failure", "door": "nginx", "service": "smtp", "login": ngCarol, "ip": src})
	if found := harness.Find(harness.ParseLog(env.mg.DecisionLog()), map[string]string{"auth": "success", "login": ngCarol}); len(found) > 0 {
		t.Errorf("a wrong password was logged as a success: %v", found)
	}
	if log := env.pf.MailLog(); strings.Contains(log, src) || strings.Contains(log, ngCarol) {
		t.Errorf("postfix saw the client %s or %s after a wrong password:\n%s", src, ngCarol, log)
	}
}

// ngAuthWait: failures on one IMAP connection get Auth-Wait: nginx keeps
// the connection and tells the client only after fail_wait; the client
// may then try again on it.
func ngAuthWait(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	const src = "127.0.1.50"
	s, err := harness.DialIMAP(ctx, netip.MustParseAddr(src), env.ng.IMAPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	login := func(pass, want string) (took time.Duration) {
		t.Helper()
		start := time.Now()
		r, err := s.Login(ngDave, pass)
		took = time.Since(start)
		if err != nil {
			t.Fatalf("LOGIN after %v: %v (nginx closed the connection: no Auth-Wait?)", took.Round(time.Millisecond), err)
		}
		if r.Status != want {
			t.Fatalf("LOGIN: %v after %v, want %s", r, took.Round(time.Millisecond), want)
		}
		if want == "NO" && !strings.Contains(r.Text, ngFailText) {
			t.Errorf("LOGIN refused with %q, want %q", r.Text, ngFailText)
		}
		return took
	}
	first := login(ngDaveWrong1, "NO")
	firstAt := time.Now()
	second := login(ngDaveWrong2, "NO")
	gap := time.Since(firstAt)
	t.Logf("auth wait: first failure after %v, second %v after the first (its own wait %v)",
		first.Round(time.Millisecond), gap.Round(time.Millisecond), second.Round(time.Millisecond))
	if first < ngFailWait || second < ngFailWait {
		t.Errorf("failures answered after %v and %v, want each after at least fail_wait = %v", first, second, ngFailWait)
	}
	third := login(ngDavePW, "OK")
	t.Logf("auth wait: the right password on the same connection logged in after %v", third.Round(time.Millisecond))
	s.Logout()
	for _, want := range []map[string]string{
		{"auth": "failure", "door": "nginx", "service": "imap", "login": ngDave, "ip": src},
		{"auth": "success", "door": "nginx", "service": "imap", "login": ngDave, "ip": src},
	} {
		env.mg.WaitLogLine(t, want)
	}
	if n := len(harness.Find(harness.ParseLog(env.mg.DecisionLog()), map[string]string{"auth": "failure", "login": ngDave, "ip": src})); n != 2 {
		t.Errorf("%d auth=failure lines for %s from %s, want 2", n, ngDave, src)
	}
}

// ngVerifyWithIMAP: a second mailgate and nginx in front of the same
// Dovecot and Postfix check passwords the seed's way, by an IMAP LOGIN
// (verify_with = "imap"): a right SMTP password relays, a wrong one is
// refused before Postfix sees the client, and Dovecot sees the real
// client's address (IMAP ID from a trusted network).
func ngVerifyWithIMAP(t *testing.T, env *ngEnv) {
	ctx := ngContext(t)
	mg, ng := ngStartMailgate(t, env, harness.TempDir(t, "ngx-imapv-"), "", fmt.Sprintf("verify_with = \"imap\"\nimap_verify = %q", env.dc.IMAPAddr))
	const okSrc, wrongSrc = "127.0.1.70", "127.0.1.71"

	s := ngDialSMTP(t, ctx, okSrc, ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("roadwarrior.example.test"))
	ngExpect(t, s, 235, "")(s.AuthPlain(ngBob, ngBobPW))
	ngExpect(t, s, 250, "")(s.Send(ngBob, "friend127-0-1-70@remote.test", "verified by imap"))
	ngExpect(t, s, 221, "")(s.Quit())

	s = ngDialSMTP(t, ctx, wrongSrc, ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("roadwarrior.example.test"))
	ngExpect(t, s, 535, ngFailText)(s.AuthPlain(ngBob, ngBobWrong))
	s.Close()

	mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "nginx", "service": "smtp", "login": ngBob, "ip": okSrc})
	mg.WaitLogLine(t, map[string]string{"auth": "failure", "door": "nginx", "service": "smtp", "login": ngBob, "ip": wrongSrc})
	env.pf.WaitMailLog(t, "to=<friend127-0-1-70@remote.test>", "status=sent")
	if log := env.pf.MailLog(); strings.Contains(log, wrongSrc) {
		t.Errorf("postfix saw the client %s after a wrong password:\n%s", wrongSrc, log)
	}
	// Dovecot logged the verifying logins with the real client address.
	ngWaitDovecotLog(t, env.dc, "Login: user=<"+ngBob+">", "rip="+okSrc)
	ngWaitDovecotLog(t, env.dc, "user=<"+ngBob+">", "rip="+wrongSrc, "auth failed")
	ngCheckNoSecretsIn(t, "second mailgate", mg)
}

// ngWaitDovecotLog waits up to 5 s for a line of Dovecot's log containing
// every one of parts.
func ngWaitDovecotLog(t *testing.T, dc *harness.Dovecot, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		log := dc.Log()
		for _, line := range strings.Split(log, "\n") {
			if ngContainsAll(line, parts) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in Dovecot's log:\n%s", parts, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ngContainsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// ngSwapDatabase: a new database file renamed over the old one (as
// geoipupdate does) is used within seconds, without a restart: the CN
// range becomes DE.
func ngSwapDatabase(t *testing.T, env *ngEnv) {
	const src = "127.0.2.60"
	pid := env.mg.PID()
	if e := ngExplain(t, env.mg, ngBob, src); e.Country != "CN" || e.Verdict != "deny" {
		t.Fatalf("before the swap: explain %s from %s = %+v, want deny, CN", ngBob, src, e)
	}
	swapped := map[string]string{}
	for p, cc := range ngGeo {
		swapped[p] = cc
	}
	swapped["127.0.2.0/24"] = "DE"
	start := time.Now()
	writeGeoIP(t, env.geoPath, swapped)
	deadline := start.Add(10 * time.Second)
	for {
		e := ngExplain(t, env.mg, ngBob, src)
		if e.Country == "DE" && e.Verdict == "allow" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the swap: explain %s from %s = %+v, want allow, DE\nmailgate stderr:\n%s", ngBob, src, e, env.mg.Stderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the swapped database was in use after %v", time.Since(start).Round(time.Millisecond))
	ngNoError(t, harness.IMAPLogin(ngContext(t), netip.MustParseAddr(src), env.ng.IMAPAddr, ngBob, ngBobPW))
	env.mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "nginx", "service": "imap", "login": ngBob, "ip": src, "country": "DE"})
	// The same process: no restart did this.
	if got := env.mg.PID(); got != pid || pid == 0 {
		t.Errorf("mailgate pid %d before the swap, %d after", pid, got)
	}
}

// ngCheckNoSecrets checks that no password and not the shared secret is in
// mailgate's decision log or diagnostics.
func ngCheckNoSecrets(t *testing.T, env *ngEnv) {
	t.Helper()
	ngCheckNoSecretsIn(t, "mailgate", env.mg)
}

func ngCheckNoSecretsIn(t *testing.T, who string, mg *harness.MG) {
	t.Helper()
	logs := map[string]string{"decision log": mg.DecisionLog(), "stderr": mg.Stderr()}
	if len(harness.Find(harness.ParseLog(logs["decision log"]), map[string]string{"door": "nginx"})) == 0 {
		t.Errorf("%s's decision log has no door=nginx lines:\n%s", who, logs["decision log"])
	}
	for name, log := range logs {
		for _, secret := range []string{ngAlicePW, ngBobPW, ngCarolPW, ngDavePW, ngCarolWrong, ngDaveWrong1, ngDaveWrong2, ngBobWrong, ngSecret} {
			if strings.Contains(log, secret) {
				t.Errorf("%s's %s contains the secret %q", who, name, secret)
			}
		}
	}
}

// writeGeoIP writes a MaxMind-format country database mapping each prefix
// to its country; geoiptest writes a temporary file and renames it over
// path, the way geoipupdate replaces a database.
func writeGeoIP(t *testing.T, path string, nets map[string]string) {
	t.Helper()
	if err := geoiptest.WriteMMDB(path, nets, geoiptest.ShapeMaxMind); err != nil {
		t.Fatalf("write GeoIP database: %v", err)
	}
}

// waitListening waits up to 10 s for addr to accept TCP connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	waitListeningOn(t, "tcp", addr)
}

// waitListeningOn waits up to 10 s for addr to accept connections.
func waitListeningOn(t *testing.T, network, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ngContext bounds one scenario's client calls.
func ngContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ngExplained is the part of `mailgate explain --json` the test checks.
type ngExplained struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Country string `json:"country"`
	Message string `json:"message"`
}

func ngExplain(t *testing.T, mg *harness.MG, account, src string) ngExplained {
	t.Helper()
	out := mg.MustCLI(t, "explain", "--account", account, "--ip", src, "--service", "imap", "--json")
	var e ngExplained
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	return e
}

func ngNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("login refused: %v", err)
	}
}

// ngRefused wants a refusal whose reply starts with prefix ("NO ",
// "-ERR ") and contains want.
func ngRefused(t *testing.T, err error, prefix, want string) {
	t.Helper()
	var le *harness.LoginError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want the login refused", err)
	}
	if !strings.HasPrefix(le.Response, prefix) || !strings.Contains(le.Response, want) {
		t.Fatalf("the client saw %q, want %q...%q", le.Response, prefix, want)
	}
}

func ngDialSMTP(t *testing.T, ctx context.Context, src, addr string) *harness.SMTPSession {
	t.Helper()
	s, err := harness.DialSMTP(ctx, netip.MustParseAddr(src), addr)
	if err != nil {
		t.Fatal(err)
	}
	if s.Greeting.Code != 220 {
		t.Fatalf("greeting from %s: %v", addr, s.Greeting)
	}
	return s
}

// ngExpect returns a check of an SMTP reply: code, and text containing
// want. Use it as ngExpect(t, s, 250, "")(s.Ehlo("x")).
func ngExpect(t *testing.T, s *harness.SMTPSession, code int, want string) func(harness.SMTPReply, error) {
	return func(r harness.SMTPReply, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\ntranscript:\n%s", err, s.Transcript())
		}
		if r.Code != code || !strings.Contains(r.Text, want) {
			t.Fatalf("got %v, want %d %q\ntranscript:\n%s", r, code, want, s.Transcript())
		}
	}
}

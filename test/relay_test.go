package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// The relay test's users, secrets and settings.
const (
	rlAlice, rlAlicePW = "alice@example.test", "Rl-Alice-Secret-1111"
	rlBob, rlBobPW     = "bob@example.test", "Rl-Bob-Secret-2222"
	rlCarol, rlCarolPW = "carol@example.test", "Rl-Carol-Secret-3333"
	rlDave, rlDavePW   = "dave@example.test", "Rl-Dave-Secret-4444"
	rlAPIKey           = "rl-e2e-policy-key-5151"
	// rlTTL is [relay] ttl: short, so that the test sees permits expire.
	rlTTL = 3 * time.Second
	// rlNever is [relay] never_networks (loopback, the default, is where
	// every test client comes from).
	rlNever = "127.0.9.0/24"
	// rlRelayTo is a recipient in another domain: mail to it is relayed.
	rlRelayTo = "friend@remote.test"
	// rlLocalTo is a recipient in the server's own domain.
	rlLocalTo = "postmaster@example.test"
)

// rlEnv is what the scenarios share: one mailgate, two Dovecots, two
// Postfixes.
type rlEnv struct {
	mg *harness.MG
	// dcPolicy asks mailgate (auth policy): its logins reach mailgate's
	// Dovecot door, whose report grants permits.
	dcPolicy *harness.Dovecot
	// dcHook does not ask mailgate; its IMAP and POP3 post-login script is
	// `mailgate hook postlogin` (etc/dovecot/97-mailgate-postlogin.conf).
	// It is also the SASL backend of both Postfixes, so that mailgate
	// sees SMTP AUTH only through the Postfix door.
	dcHook *harness.Dovecot
	// pfPolicy runs etc/postfix/main-mailgate.cf (policy delegation);
	// pfTables runs etc/postfix/main-mailgate-socketmap.cf.
	pfPolicy, pfTables *harness.Postfix
	// policyAddr is mailgate's policy listener (TCP).
	policyAddr string
	// unixSMTP is pfPolicy's second smtpd, which asks mailgate over
	// [postfix] socket with the snippet's restrictions.
	unixSMTP string
	tcpTable string // mailgate's tcp_table listener
}

// rlPermit is a permit as `mailgate permit list --json` prints it.
type rlPermit struct {
	IP        string    `json:"ip"`
	Account   string    `json:"account"`
	Service   string    `json:"service"`
	Door      string    `json:"door"`
	Granted   time.Time `json:"granted"`
	Expires   time.Time `json:"expires"`
	Logins    int       `json:"logins"`
	Comment   string    `json:"comment"`
	CreatedBy string    `json:"created_by"`
}

// rlUsage is a sender as `mailgate limit list --json` prints it.
type rlUsage struct {
	Login  string `json:"login"`
	Limits struct {
		RecipientsPerHour int `json:"recipients_per_hour"`
	} `json:"limits"`
	MessagesHour   int      `json:"messages_hour"`
	RecipientsHour int      `json:"recipients_hour"`
	Over           []string `json:"over"`
	Refused        int      `json:"refused"`
}

// TestRelayPermitsEndToEnd is issue 5's end-to-end test: the real Postfix
// 3.7, configured with the main.cf lines of docs/postfix.md, asks a
// running `mailgate serve` (policy delegation, socketmap, tcp_table)
// while the real Dovecot 2.3 tells it about logins (auth policy report,
// and the post-login script of docs/relay.md); swaks sends from distinct
// 127.0.5.x addresses.
//
// Scenarios: relaying is refused, allowed after an IMAP or POP3 login from
// the address (through the Dovecot door, through `mailgate hook
// postlogin`, and through the socketmap variant), and refused again once
// the permit expired; a login from a never_networks address grants
// nothing; a manual permit (`permit add`/`rm`) takes effect at once and
// survives a restart; a banned address is refused by the socketmap block
// map; an authenticated sender whose account rule denies smtp from its
// address gets mailgate's text; a sender over its recipient limit is
// deferred (450 4.7.1) and shows in `limit list`. Each of them fails
// against a mailgate that answers DUNNO to everything.
func TestRelayPermitsEndToEnd(t *testing.T) {
	start := time.Now()
	harness.RequirePostfix(t)
	harness.RequireSwaks(t)
	harness.Require(t, harness.DovecotPackages)
	env := rlSetup(t)
	t.Logf("setup took %v", time.Since(start).Round(time.Millisecond))

	// Each scenario has its own addresses; the permit ones wait out the
	// TTL, in parallel.
	t.Run("scenarios", func(t *testing.T) {
		t.Run("dovecot report grants a permit", func(t *testing.T) { t.Parallel(); rlDovecotReport(t, env) })
		t.Run("post-login hook grants a permit", func(t *testing.T) { t.Parallel(); rlHook(t, env) })
		t.Run("socketmap", func(t *testing.T) { t.Parallel(); rlSocketmap(t, env) })
		t.Run("account rule refuses smtp", func(t *testing.T) { t.Parallel(); rlAccountRule(t, env) })
		t.Run("sending limit", func(t *testing.T) { t.Parallel(); rlSendLimit(t, env) })
	})
	if t.Failed() {
		return
	}
	t.Run("a local process holding every connection", func(t *testing.T) { rlPoolFull(t, env) })
	t.Run("manual permit survives a restart", func(t *testing.T) { rlRestart(t, env) })
	rlCheckWarnings(t, env)
	rlCheckNoSecrets(t, env)
	t.Logf("whole test took %v", time.Since(start).Round(time.Millisecond))
}

// rlSetup starts the two Postfixes, the hook Dovecot (its SASL backend),
// mailgate (whose policy unix socket lives in pfPolicy's queue
// directory), then the Dovecot that asks mailgate.
func rlSetup(t *testing.T) *rlEnv {
	dir := harness.TempDir(t, "relay-e2e-")
	free := func() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t))) }
	policyAddr, socketmapAddr, tcpAddr := free(), free(), free()
	hookSock := filepath.Join(dir, "hook.sock")
	env := &rlEnv{tcpTable: tcpAddr, unixSMTP: free(), policyAddr: policyAddr}
	users := map[string]string{rlAlice: rlAlicePW, rlBob: rlBobPW, rlCarol: rlCarolPW, rlDave: rlDavePW}

	// The post-login snippet as an admin installs it, only the paths
	// changed: it runs as Dovecot's internal user, which must be able to
	// run the binary (the harness builds it in a private dir) and reach
	// the hook socket (hook_socket_group). Until mailgate listens there,
	// the hook would only log that it cannot report.
	bin := filepath.Join(dir, "mailgate")
	rlCopyFile(t, harness.Mailgate(t), bin, 0o755)
	postlogin := readSnippet(t, dcPostloginSnippet)
	postlogin = replaceAll(t, postlogin, "/usr/local/bin/mailgate", bin, "etc/"+dcPostloginSnippet)
	postlogin = replaceAll(t, postlogin, "/run/mailgate/hook.sock", hookSock, "etc/"+dcPostloginSnippet)
	env.dcHook = harness.StartDovecot(t, harness.DovecotOptions{Users: users, AuthListener: true, Extra: postlogin})

	// pfPolicy: the snippet, plus a second smtpd asking mailgate over the
	// unix socket (docs/postfix.md, "Over a unix socket") with the
	// snippet's restrictions, the address replaced.
	main := readSnippet(t, pfMainSnippet)
	unixMain := ""
	for _, name := range []string{"smtpd_relay_restrictions", "smtpd_recipient_restrictions"} {
		v := replaceAll(t, rlMainCFValue(t, main, name), pfDocPolicy, "unix:private/mailgate", "etc/"+pfMainSnippet)
		unixMain += "rl_unix_" + name + " = " + v + "\n"
	}
	env.pfPolicy = harness.StartPostfix(t, harness.PostfixOptions{
		DovecotSASL: env.dcHook.AuthAddr,
		Extra:       replaceAll(t, main, pfDocPolicy, "inet:"+policyAddr, "etc/"+pfMainSnippet) + unixMain,
		MasterExtra: env.unixSMTP + ` inet n - n - - smtpd
  -o syslog_name=postfix/unix
  -o smtpd_relay_restrictions=$rl_unix_smtpd_relay_restrictions
  -o smtpd_recipient_restrictions=$rl_unix_smtpd_recipient_restrictions
`,
	})
	tables := replaceAll(t, readSnippet(t, pfSocketmapSnippet), pfDocSocketmap, "socketmap:inet:"+socketmapAddr+":", "etc/"+pfSocketmapSnippet)
	env.pfTables = harness.StartPostfix(t, harness.PostfixOptions{DovecotSASL: env.dcHook.AuthAddr, Extra: tables})

	env.mg = harness.StartMailgate(t, mailgateConfig(t, dir, rlAPIKey, fmt.Sprintf(`
[relay]
enabled = true
ttl = %q
never_networks = [%q]
hook_socket = %q
hook_socket_group = "dovecot"

[postfix]
enabled = true
listen = %q
socket = %q
socketmap_listen = %q
tcp_table_listen = %q
tcp_table_map = "client"
limit_action = "defer"
# Small, so that rlPoolFull can fill it.
max_connections = %d

[[limits.account]]
account = %q
recipients_per_hour = 2
`, rlTTL.String(), rlNever, hookSock, policyAddr, filepath.Join(env.pfPolicy.Dir, "spool", "private", "mailgate"),
		socketmapAddr, tcpAddr, rlMaxConns, rlCarol)))
	for _, a := range []string{policyAddr, socketmapAddr, tcpAddr} {
		waitListening(t, a)
	}
	env.dcPolicy = harness.StartDovecot(t, harness.DovecotOptions{Users: users, PolicyURL: env.mg.DovecotURL(), APIKey: rlAPIKey})
	return env
}

// rlMainCFValue returns the value of parameter name in main.cf text: its
// line and the continuation lines (starting with white space) after it,
// joined with single spaces.
func rlMainCFValue(t *testing.T, text, name string) string {
	t.Helper()
	var val []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		switch {
		case in && line != "" && (line[0] == ' ' || line[0] == '\t'):
			val = append(val, strings.TrimSpace(line))
		case strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"="):
			in = true
			_, v, _ := strings.Cut(line, "=")
			if v = strings.TrimSpace(v); v != "" {
				val = append(val, v)
			}
		default:
			in = false
		}
	}
	if len(val) == 0 {
		t.Fatalf("main.cf text sets no %s", name)
	}
	return strings.Join(val, " ")
}

// rlDovecotReport: IMAP login through the Dovecot that asks mailgate;
// first from a never_networks address, which gets no permit.
func rlDovecotReport(t *testing.T, env *rlEnv) {
	const src = "127.0.5.11"
	rlNeverNetwork(t, env)
	rlPermitCycle(t, env, env.pfPolicy, src, rlAlice, "imap", "dovecot", func(ctx context.Context) error {
		return harness.IMAPLogin(ctx, netip.MustParseAddr(src), env.dcPolicy.IMAPAddr, rlAlice, rlAlicePW)
	})
}

// rlHook: IMAP login through the Dovecot whose post-login script is the
// hook; that Dovecot never talks to mailgate otherwise.
func rlHook(t *testing.T, env *rlEnv) {
	const src = "127.0.5.21"
	rlPermitCycle(t, env, env.pfPolicy, src, rlBob, "imap", "hook", func(ctx context.Context) error {
		return harness.IMAPLogin(ctx, netip.MustParseAddr(src), env.dcHook.IMAPAddr, rlBob, rlBobPW)
	})
	// The hook went on to the mail session: Dovecot logged the user in and
	// out, no post-login error.
	ngWaitDovecotLog(t, env.dcHook, "imap("+rlBob+")", "Logged out")
	if log := env.dcHook.Log(); strings.Contains(log, "Post-login script denied") || strings.Contains(log, "script-login") && strings.Contains(log, "Error") {
		t.Errorf("the post-login script failed:\n%s", log)
	}
}

// rlSocketmap: the socketmap variant; a POP3 login grants the permit.
// Then a manual permit and a ban, answered at once, also by tcp_table.
func rlSocketmap(t *testing.T, env *rlEnv) {
	const src, manual, banned = "127.0.5.31", "127.0.5.32", "127.0.5.33"
	rlPermitCycle(t, env, env.pfTables, src, rlDave, "pop3", "dovecot", func(ctx context.Context) error {
		return harness.POP3Login(ctx, netip.MustParseAddr(src), env.dcPolicy.POP3Addr, rlDave, rlDavePW)
	})

	// A manual permit works from the next lookup on, and stops when
	// withdrawn.
	rlRcpt(t, rlSend(t, env.pfTables, manual, rlRelayTo, ""), 554, "Relay access denied")
	env.mg.MustCLI(t, "permit", "add", "--ip", manual, "--for", "30m", "--comment", "e2e manual")
	if p := rlFindPermit(t, env.mg, manual); p == nil || p.Door != "manual" || p.Comment != "e2e manual" {
		t.Errorf("permit list after permit add: %+v, want a manual permit with its comment", p)
	}
	rlAccepted(t, rlSend(t, env.pfTables, manual, rlRelayTo, ""))
	if out := rlPostmap(t, env.pfTables, manual, "tcp:"+env.tcpTable); out != "OK" {
		t.Errorf("tcp_table lookup of %s with a permit: %q, want OK", manual, out)
	}
	env.mg.MustCLI(t, "permit", "rm", "--ip", manual)
	rlRcpt(t, rlSend(t, env.pfTables, manual, rlRelayTo, ""), 554, "Relay access denied")
	if out := rlPostmap(t, env.pfTables, manual, "tcp:"+env.tcpTable); out != "" {
		t.Errorf("tcp_table lookup of %s after permit rm: %q, want not found", manual, out)
	}

	// The block map: a banned address may not even deliver locally, and
	// sees mailgate's text.
	rlAccepted(t, rlSend(t, env.pfTables, banned, rlLocalTo, ""))
	env.mg.MustCLI(t, "ban", "add", "--ip", banned, "--for", "10m", "--comment", "e2e ban")
	r := rlSend(t, env.pfTables, banned, rlLocalTo, "")
	rlRcpt(t, r, 554, "Client host rejected: Too many failed logins from your address ("+banned+")")
	t.Logf("the banned client saw: %v", r.Replies("RCPT")[0])
	if out := rlPostmap(t, env.pfTables, banned, "tcp:"+env.tcpTable); !strings.HasPrefix(out, "REJECT Too many failed logins") {
		t.Errorf("tcp_table lookup of the banned %s: %q, want REJECT and mailgate's text", banned, out)
	}
	env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "banned_address", "door": "postfix", "ip": banned})
}

// rlNeverNetwork: a login from a never_networks address grants nothing.
func rlNeverNetwork(t *testing.T, env *rlEnv) {
	const src = "127.0.9.41"
	ctx := rlContext(t)
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr(src), env.dcPolicy.IMAPAddr, rlAlice, rlAlicePW); err != nil {
		t.Fatal(err)
	}
	// The login reached mailgate (the report is what would grant)...
	env.mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "dovecot", "login": rlAlice, "ip": src})
	// ...and granted no permit.
	rlRcpt(t, rlSend(t, env.pfPolicy, src, rlRelayTo, ""), 554, "Relay access denied")
	if p := rlFindPermit(t, env.mg, src); p != nil {
		t.Errorf("a login from never_networks %s got a permit: %+v", rlNever, p)
	}
	if found := harness.Find(harness.ParseLog(env.mg.DecisionLog()), map[string]string{"event": "permit", "ip": src}); len(found) > 0 {
		t.Errorf("permit granted to %s: %v", src, found)
	}
}

// rlAccountRule: alice may not send (service smtp) from one address; she
// logs in with SMTP AUTH at Postfix (Dovecot SASL, which does not ask
// mailgate), so the refusal comes from the Postfix door.
func rlAccountRule(t *testing.T, env *rlEnv) {
	const denied, other = "127.0.5.51", "127.0.5.52"
	out := env.mg.MustCLI(t, "rule", "add", "--account", rlAlice, "--service", "smtp", "--deny", "--ip", denied, "--comment", "e2e: no smtp from here", "--json")
	var rule struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &rule); err != nil || rule.ID == 0 {
		t.Fatalf("rule add --json: %v\n%s", err, out)
	}
	r := rlSend(t, env.pfPolicy, denied, rlRelayTo, rlAlice)
	if rs := r.Replies("AUTH"); len(rs) != 1 || rs[0].Code != 235 {
		t.Fatalf("SMTP AUTH as %s from %s: %v, want 235 (Dovecot SASL does not ask mailgate)\n%s", rlAlice, denied, rs, r)
	}
	rlRcpt(t, r, 554, "Recipient address rejected: This account may not use SMTP")
	rlRcpt(t, r, 554, "from your address ("+denied+").")
	t.Logf("the refused sender saw: %v", r.Replies("RCPT")[0])
	// The same over the policy unix socket.
	r = rlSendTo(t, env.unixSMTP, denied, rlRelayTo, rlAlice)
	rlRcpt(t, r, 554, "Recipient address rejected: This account may not use SMTP")
	env.pfPolicy.WaitMailLog(t, "postfix/unix/smtpd", "NOQUEUE: reject: RCPT from unknown["+denied+"]")
	env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "account_deny", "rule": strconv.FormatInt(rule.ID, 10),
		"door": "postfix", "service": "smtp", "login": rlAlice, "ip": denied})
	env.pfPolicy.WaitMailLog(t, "NOQUEUE: reject: RCPT from unknown["+denied+"]", "This account may not use SMTP")
	// From another address she sends.
	rlAccepted(t, rlSend(t, env.pfPolicy, other, rlRelayTo, rlAlice))
}

// rlMaxConns is the test's postfix.max_connections.
const rlMaxConns = 20

// rlPoolFull is the review's finding 5: a local process opens
// max_connections connections to the policy listener and holds them
// idle. Before, every new connection of Postfix's smtpd was refused, and
// Postfix went on with default_action=DUNNO: alice's account rule was
// skipped and she sent from the address it denies. Now mailgate closes
// the longest idle connection to make room, and the rule holds.
func rlPoolFull(t *testing.T, env *rlEnv) {
	const denied = "127.0.5.71"
	env.mg.MustCLI(t, "rule", "add", "--account", rlAlice, "--service", "smtp", "--deny", "--ip", denied, "--comment", "e2e: pool full")
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range rlMaxConns {
		c, err := net.DialTimeout("tcp", env.policyAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("holding connections: %v", err)
		}
		held = append(held, c)
	}
	// Give mailgate time to have accepted them all (the last ones may
	// have evicted the Postfix connections of the earlier scenarios).
	time.Sleep(200 * time.Millisecond)
	r := rlSend(t, env.pfPolicy, denied, rlRelayTo, rlAlice)
	rlRcpt(t, r, 554, "Recipient address rejected: This account may not use SMTP")
	env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "account_deny", "door": "postfix", "login": rlAlice, "ip": denied})
	if !strings.Contains(env.mg.Stderr(), "closing the longest idle one") {
		t.Errorf("no warning about the full pool in mailgate's log")
	}
}

// rlSendLimit: carol may send to 2 recipients an hour; the third is
// deferred with mailgate's text, and the CLI shows her over the limit.
func rlSendLimit(t *testing.T, env *rlEnv) {
	const src = "127.0.5.61"
	ctx := rlContext(t)
	r, err := harness.Swaks(ctx, harness.SwaksOptions{Server: env.pfPolicy.SMTPAddr, Source: netip.MustParseAddr(src),
		From: rlCarol, To: []string{"one@remote.test", "two@remote.test", "three@remote.test"},
		AuthUser: rlCarol, AuthPassword: rlCarolPW})
	if err != nil {
		t.Fatal(err)
	}
	rs := r.Replies("RCPT")
	if len(rs) != 3 || rs[0].Code != 250 || rs[1].Code != 250 || rs[2].Code != 450 ||
		!strings.Contains(rs[2].Text, "4.7.1 <three@remote.test>: Recipient address rejected: "+rlCarol+" has reached its sending limit") {
		t.Fatalf("RCPT replies %v, want 250, 250, then 450 4.7.1 with mailgate's text\n%s", rs, r)
	}
	t.Logf("the sender over its limit saw: %v", rs[2])
	if !r.Accepted() {
		t.Errorf("the message to the two recipients within the limit was not accepted\n%s", r)
	}
	env.mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "send_limit", "door": "postfix", "service": "smtp", "login": rlCarol, "ip": src})
	// The next message: deferred at once.
	r = rlSend(t, env.pfPolicy, src, "four@remote.test", rlCarol)
	rlRcpt(t, r, 450, "has reached its sending limit")

	out := env.mg.MustCLI(t, "limit", "list", "--json")
	var us []rlUsage
	if err := json.Unmarshal([]byte(out), &us); err != nil {
		t.Fatalf("limit list --json: %v\n%s", err, out)
	}
	var carol *rlUsage
	for i := range us {
		if us[i].Login == rlCarol {
			carol = &us[i]
		}
	}
	if carol == nil || carol.RecipientsHour != 2 || carol.Limits.RecipientsPerHour != 2 || carol.Refused != 2 ||
		strings.Join(carol.Over, ",") != "recipients_per_hour" {
		t.Errorf("limit list --json for %s: %+v, want 2 of 2 recipients this hour, 2 refused, over recipients_per_hour\n%s", rlCarol, carol, out)
	}
	if text := env.mg.MustCLI(t, "limit", "list"); !strings.Contains(text, rlCarol) {
		t.Errorf("limit list does not show %s:\n%s", rlCarol, text)
	}
}

// rlRestart: a manual permit is kept across a restart of mailgate; it
// works over TCP and over the unix socket, before and after.
func rlRestart(t *testing.T, env *rlEnv) {
	const src = "127.0.5.71"
	rlRcpt(t, rlSendTo(t, env.unixSMTP, src, rlRelayTo, ""), 554, "Relay access denied")
	env.mg.MustCLI(t, "permit", "add", "--ip", src, "--for", "30m")
	rlAccepted(t, rlSend(t, env.pfPolicy, src, rlRelayTo, ""))
	rlAccepted(t, rlSendTo(t, env.unixSMTP, src, rlRelayTo, ""))
	env.mg.Restart()
	if p := rlFindPermit(t, env.mg, src); p == nil || p.Door != "manual" {
		t.Fatalf("after a restart, permit list has %+v for %s, want the manual permit", p, src)
	}
	rlAccepted(t, rlSend(t, env.pfPolicy, src, rlRelayTo, ""))
	rlAccepted(t, rlSendTo(t, env.unixSMTP, src, rlRelayTo, ""))
}

// rlPermitCycle is the permit scenario for one address: relaying from
// src through pf is refused; login (which must log in as login over
// service) grants src a permit from door; relaying is then accepted, with
// a relay_permit decision line naming login; once the TTL has passed it
// is refused again.
func rlPermitCycle(t *testing.T, env *rlEnv, pf *harness.Postfix, src, login, service, door string, loginFn func(context.Context) error) {
	t.Helper()
	rlRcpt(t, rlSend(t, pf, src, rlRelayTo, ""), 554, "Relay access denied")
	if p := rlFindPermit(t, env.mg, src); p != nil {
		t.Fatalf("%s has a permit before logging in: %+v", src, p)
	}

	if err := loginFn(rlContext(t)); err != nil {
		t.Fatalf("%s login as %s from %s: %v", service, login, src, err)
	}
	var p *rlPermit
	deadline := time.Now().Add(5 * time.Second)
	for p == nil {
		if p = rlFindPermit(t, env.mg, src); p == nil && time.Now().After(deadline) {
			t.Fatalf("no permit for %s 5 s after the login:\n%s", src, env.mg.MustCLI(t, "permit", "list"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.Account != login || p.Service != service || p.Door != door {
		t.Errorf("permit list --json: %+v, want account %s, service %s, door %s", p, login, service, door)
	}
	if ttl := p.Expires.Sub(p.Granted); ttl < rlTTL-time.Second || ttl > rlTTL+time.Second {
		t.Errorf("permit for %s lasts %v, want the ttl %v", src, ttl, rlTTL)
	}
	env.mg.WaitLogLine(t, map[string]string{"event": "permit", "ip": src, "login": login, "service": service, "door": door})

	r := rlSend(t, pf, src, rlRelayTo, "")
	rlAccepted(t, r)
	pf.WaitMailLog(t, "to=<"+rlRelayTo+">", "status=sent")
	env.mg.WaitLogLine(t, map[string]string{"decision": "allow", "reason": "relay_permit", "door": "postfix", "service": "smtp", "login": login, "ip": src})

	// Expired: refused again, and no longer listed. Relaying does not
	// refresh a permit; only a login does.
	for {
		r := rlSend(t, pf, src, rlRelayTo, "")
		rs := r.Replies("RCPT")
		if len(rs) == 1 && rs[0].Code == 554 && strings.Contains(rs[0].Text, "Relay access denied") {
			break
		}
		if !r.Accepted() {
			t.Fatalf("relaying from %s while waiting for the permit to expire: %v\n%s", src, rs, r)
		}
		if time.Now().After(p.Expires.Add(5 * time.Second)) {
			t.Fatalf("relaying from %s still accepted 5 s after the permit expired at %v", src, p.Expires)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if now := time.Now(); now.Before(p.Expires) {
		t.Errorf("relaying refused at %v, before the permit expired at %v", now, p.Expires)
	}
	if p := rlFindPermit(t, env.mg, src); p != nil {
		t.Errorf("the expired permit is still listed: %+v", p)
	}
}

// rlSend sends one message from src through pf to one recipient, with
// SMTP AUTH as authUser when set; it stops after RCPT when that is
// refused.
func rlSend(t *testing.T, pf *harness.Postfix, src, to, authUser string) *harness.SwaksResult {
	t.Helper()
	return rlSendTo(t, pf.SMTPAddr, src, to, authUser)
}

// rlSendTo is rlSend to the smtpd at server.
func rlSendTo(t *testing.T, server, src, to, authUser string) *harness.SwaksResult {
	t.Helper()
	o := harness.SwaksOptions{Server: server, Source: netip.MustParseAddr(src), From: "someone@remote.test", To: []string{to}}
	if authUser != "" {
		pw := map[string]string{rlAlice: rlAlicePW, rlBob: rlBobPW, rlCarol: rlCarolPW, rlDave: rlDavePW}[authUser]
		o.From, o.AuthUser, o.AuthPassword = authUser, authUser, pw
	}
	r, err := harness.Swaks(rlContext(t), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rlRcpt wants exactly one RCPT reply, with code and text in it.
func rlRcpt(t *testing.T, r *harness.SwaksResult, code int, text string) {
	t.Helper()
	rs := r.Replies("RCPT")
	if len(rs) != 1 || rs[0].Code != code || !strings.Contains(rs[0].Text, text) {
		t.Fatalf("RCPT: %v, want %d %q\n%s", rs, code, text, r)
	}
}

// rlAccepted wants the message accepted.
func rlAccepted(t *testing.T, r *harness.SwaksResult) {
	t.Helper()
	if !r.Accepted() || r.ExitCode != 0 {
		t.Fatalf("message not accepted\n%s", r)
	}
}

// rlFindPermit returns the permit `permit list --json` shows for ip, or
// nil.
func rlFindPermit(t *testing.T, mg *harness.MG, ip string) *rlPermit {
	t.Helper()
	out := mg.MustCLI(t, "permit", "list", "--json")
	var ps []rlPermit
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("permit list --json: %v\n%s", err, out)
	}
	for i := range ps {
		if ps[i].IP == ip {
			return &ps[i]
		}
	}
	return nil
}

// rlPostmap looks key up in a Postfix table with postmap -q (pf's
// config) and returns
// the result, "" when not found (exit 1).
func rlPostmap(t *testing.T, pf *harness.Postfix, key, table string) string {
	t.Helper()
	out, err := exec.Command("/usr/sbin/postmap", "-c", pf.Dir, "-q", key, table).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 1 && len(out) == 0 {
		return ""
	}
	if err != nil {
		t.Fatalf("postmap -q %s %s: %v\n%s", key, table, err, out)
	}
	return strings.TrimSpace(string(out))
}

// rlCheckWarnings fails on Postfix warnings, but for those about the
// policy connection the restart broke.
func rlCheckWarnings(t *testing.T, env *rlEnv) {
	t.Helper()
	for name, pf := range map[string]*harness.Postfix{"policy": env.pfPolicy, "tables": env.pfTables} {
		for _, w := range pf.Warnings() {
			if strings.Contains(w, "problem talking to server") || strings.Contains(w, "read TCP map reply") {
				continue
			}
			t.Errorf("postfix (%s) warning: %s", name, w)
		}
	}
}

// rlCheckNoSecrets: no password in mailgate's logs.
func rlCheckNoSecrets(t *testing.T, env *rlEnv) {
	t.Helper()
	for name, log := range map[string]string{"decision log": env.mg.DecisionLog(), "stderr": env.mg.Stderr()} {
		for _, pw := range []string{rlAlicePW, rlBobPW, rlCarolPW, rlDavePW, rlAPIKey} {
			if strings.Contains(log, pw) {
				t.Errorf("mailgate's %s contains the secret %q", name, pw)
			}
		}
	}
}

// rlCopyFile copies src to dst with mode.
func rlCopyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// rlContext bounds one scenario's client calls.
func rlContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	return ctx
}

package test

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"mailgate/test/harness"
)

// TestOverlongLoginRestart is finding 3 of the hardening issue: three
// failed logins of a 400-byte login from two addresses, through a real
// Dovecot, made a stored login ban that the next start could not read
// back ("login longer than 320 bytes"): mailgate exited 1, systemd gave
// up, Postfix failed closed. Now the Dovecot door refuses such a login on
// its first call (bad_login): it is never counted, banned or stored, and
// the daemon restarts.
func TestOverlongLoginRestart(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	dir := harness.TempDir(t, "long-")
	const key = "long-login-policy-key-9061"
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, key, ""))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{alice: alicePW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    key,
	})
	long := strings.Repeat("x", 400-len("@example.test")) + "@example.test"
	srcs := []string{"127.0.0.150", "127.0.0.151", "127.0.0.150", "127.0.0.151"}
	for i, src := range srcs {
		// Distinct passwords: a repeated one is a stale client, not
		// counted. Dovecot reports a result before the client sees it.
		if _, err := bfLogin("imap", dc, src, long, fmt.Sprint(wrongPW, i)); err == nil {
			t.Fatalf("a 400-byte login from %s was let in", src)
		}
	}
	lines := harness.ParseLog(mg.DecisionLog())
	if n := len(harness.Find(lines, map[string]string{"decision": "deny", "reason": "bad_login"})); n != len(srcs) {
		t.Errorf("%d bad_login refusals in the decision log, want %d", n, len(srcs))
	}
	for _, l := range harness.Find(lines, map[string]string{"auth": "failure"}) {
		t.Errorf("a refused over-long login was counted as a password failure: %v", l)
	}
	mg.Restart() // fails the test if the daemon does not start
	if bans := bfBansByID(t, mg); len(bans) != 0 {
		t.Errorf("bans after the over-long logins: %+v, want none", bans)
	}
	// An ordinary login still works.
	bfOK(t, "imap", dc, "127.0.0.152", alice, alicePW)
}

// TestBadStoredRowsStart: a store with rows mailgate cannot read back (an
// older version's over-long login ban, a bad prefix, a bad permit and
// trusted address, written directly with SQL) still starts; each bad row
// is logged and skipped, and the good state is loaded.
func TestBadStoredRowsStart(t *testing.T) {
	dir := harness.TempDir(t, "badrow-")
	mg := harness.StartMailgate(t, fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
enabled = false

[relay]
enabled = true
hook_socket = ""
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock")))
	mg.MustCLI(t, "ban", "add", "--ip", "192.0.2.10", "--for", "1h", "--comment", "good")
	mg.MustCLI(t, "permit", "add", "--ip", "192.0.2.20", "--for", "1h")

	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	db, err := sql.Open("sqlite", filepath.Join(dir, "mailgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf(`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by)
			VALUES (1000, 'login', '', '%s', 'login_attack', %d, %d, '', 'mailgate')`, strings.Repeat("x", 400), now.Unix(), exp),
		fmt.Sprintf(`INSERT INTO bans (id, kind, prefix, login, reason, created, expires, comment, created_by)
			VALUES (1001, 'address', '300.0.0.1/32', '', 'addr_failures', %d, %d, '', 'mailgate')`, now.Unix(), exp),
		fmt.Sprintf(`INSERT INTO known_good (login, prefix, last) VALUES ('bob@example.test', 'not-a-prefix', %d)`, now.Unix()),
		fmt.Sprintf(`INSERT INTO permits (prefix, login, service, door, granted, expires, logins, comment, created_by)
			VALUES ('192.0.2.30/32', 'bob@example.test', 'uucp', 'dovecot', %d, %d, 1, '', '')`, now.Unix(), exp),
		fmt.Sprintf(`INSERT INTO fw_trusted (addr, login, expires) VALUES ('192.0.2.300', 'bob@example.test', %d)`, exp),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	mg.Restart() // fails the test if the daemon does not start
	errs := mg.Stderr()
	for _, want := range []string{"ban 1000", "ban 1001", "not-a-prefix", "192.0.2.30/32"} {
		if !strings.Contains(errs, want) {
			t.Errorf("no log line names the bad row %q:\n%s", want, errs)
		}
	}
	if n := strings.Count(errs, "stored row skipped"); n != 4 {
		t.Errorf("%d rows logged as skipped, want 4 (fw_trusted is read only with the firewall on)", n)
	}
	bans := bfBansByID(t, mg)
	if len(bans) != 1 {
		t.Errorf("bans after the restart: %+v, want the manual one only", bans)
	}
	if out := mg.MustCLI(t, "permit", "list"); !strings.Contains(out, "192.0.2.20") || strings.Contains(out, "192.0.2.30") {
		t.Errorf("permit list after the restart:\n%s\nwant 192.0.2.20 and not 192.0.2.30", out)
	}
	// A new ban gets an id the bad rows do not hold.
	mg.MustCLI(t, "ban", "add", "--ip", "192.0.2.11", "--for", "1h")
	for id := range bfBansByID(t, mg) {
		if id == 1000 || id == 1001 {
			t.Errorf("a new ban took the id %d of a skipped row", id)
		}
	}
}

// TestShutdownWaitsForInflight is finding 9 of the hardening issue: on
// SIGTERM the last write of the live state ran 5 s after the doors were
// told to stop, while an nginx request could still be in its password
// check (up to a tarpit plus verify_timeout), so the ban its failure made
// was lost. Now shutdown waits for the requests in flight (bounded), then
// writes. Real nginx asks the door; real Dovecot checks the password,
// answering a wrong one after auth_failure_delay = 8 s.
func TestShutdownWaitsForInflight(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:        map[string]string{alice: alicePW},
		AuthListener: true,
		Extra:        "auth_failure_delay = 8 secs\n",
	})
	const secretHdr, secret = "X-Mailgate-Secret", "shutdown-e2e-secret-5521"
	dir := harness.TempDir(t, "drain-")
	doorAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", fmt.Sprintf(`
[bruteforce]
addr_failures = 1

[nginx]
enabled = true
listen = %q
secret_header = %q
secret = %q
verify_with = "dovecot"
dovecot_auth = %q
imap_backend = %q
`, doorAddr, secretHdr, secret, dc.AuthAddr, dc.IMAPAddr)))
	waitListening(t, doorAddr)
	ng := harness.StartNginx(t, harness.NginxOptions{AuthURL: doorAddr + "/auth", AuthHeader: secretHdr, AuthSecret: secret})

	const src = "127.0.0.170"
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- harness.IMAPLogin(ctx, netip.MustParseAddr(src), ng.IMAPAddr, alice, wrongPW)
	}()
	// The door has decided and is in the password check.
	mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "nginx", "ip": src})
	took := mg.Terminate(30 * time.Second)
	t.Logf("mailgate exited %v after SIGTERM", took.Round(time.Millisecond))
	<-done
	if strings.Contains(mg.Stderr(), "cut off") {
		t.Errorf("the request in flight was cut off:\n%s", mg.Stderr())
	}
	mg.Restart()
	var found bool
	for _, b := range bfBansByID(t, mg) {
		found = found || b.Kind == "address" && b.IP == src
	}
	if !found {
		t.Errorf("the ban made by the request in flight at shutdown is lost: ban list %+v\ndecision log:\n%s", bfBansByID(t, mg), mg.DecisionLog())
	}
}

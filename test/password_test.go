package test

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// The weak-password test's users. weakPW is correct for pwWeak but fails
// the default policy (10 characters, a word and a year); strongPW passes.
const (
	pwWeak, pwWeakPW     = "weak@example.test", "Summer2024"
	pwStrong, pwStrongPW = "strong@example.test", "vK8#qm2Lp0zR-Tq"
	pwWrong              = "Wrong-Summer-2025"
	// pwPwned's password passes every rule but is in the breached list.
	pwPwned, pwPwnedPW = "pwned@example.test", "Kx7-qWv9-Tr2mZq"
	pwWeakText         = "Your password is too weak"
)

// TestWeakPasswordEndToEnd is issue 12's password-at-login test: the
// real nginx asks a running mailgate, which verifies passwords through
// the real Dovecot's auth service and checks each correct one against
// the password policy (password.check_at_login):
//   - a weak but correct IMAP login succeeds, with weak_password=1 on its
//     auth=success line, and so does one whose password passes every rule
//     but is in the breached list; `mailgate password weak` lists both;
//   - with refuse_weak_submission the same login is refused SMTP AUTH at
//     nginx (mailgate's text, before Postfix sees it), and at Postfix's
//     own submission (SASL by Dovecot) by the policy door at RCPT, while
//     IMAP still logs in; a strong password sends;
//   - a wrong password gets the usual answer;
//   - the password is in no log file (mailgate's, nginx's, Dovecot's,
//     Postfix's) and not in the store (the SQLite file, -wal and -shm),
//     which does hold the flag.
func TestWeakPasswordEndToEnd(t *testing.T) {
	harness.Require(t, harness.NginxPackages)
	harness.RequirePostfix(t)
	dir := harness.TempDir(t, "pw-e2e-")
	authSnippet, err := os.ReadFile(filepath.Join("..", "etc", "dovecot", "96-mailgate-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:        map[string]string{pwWeak: pwWeakPW, pwStrong: pwStrongPW, pwPwned: pwPwnedPW},
		AuthListener: true,
		Extra:        string(authSnippet),
	})
	policyAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(harness.FreePort(t)))
	pf := harness.StartPostfix(t, harness.PostfixOptions{
		DovecotSASL: dc.AuthAddr,
		Extra:       "smtpd_recipient_restrictions = check_policy_service inet:" + policyAddr,
	})
	door := filepath.Join(dir, "nginx.sock")
	breached := filepath.Join(dir, "pwned.txt")
	writeBreached(t, breached, pwPwnedPW)
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", fmt.Sprintf(`
[nginx]
enabled = true
listen = %q
socket_group = "nogroup"
verify_with = "dovecot"
dovecot_auth = %q
verify = ["imap", "pop3", "smtp"]
imap_backend = %q
pop3_backend = %q
smtp_backend = %q
fail_wait = "1s"

[postfix]
enabled = true
listen = %q

[password]
check_at_login = true
refuse_weak_submission = true
breached_file = %q
`, door, dc.Socket("auth-mailgate"), dc.IMAPAddr, dc.POP3Addr, pf.SMTPAddr, policyAddr, breached)))
	waitListeningOn(t, "unix", door)
	waitListening(t, policyAddr)
	ng := harness.StartNginx(t, harness.NginxOptions{AuthURL: "unix:" + door + ":/auth"})
	ctx := ngContext(t)

	// A weak, correct IMAP login: in, flagged.
	ngNoError(t, harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.5.10"), ng.IMAPAddr, pwWeak, pwWeakPW))
	mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "nginx", "service": "imap", "login": pwWeak, "ip": "127.0.5.10", "weak_password": "1"})
	// A password that passes every rule but is in the breached list.
	ngNoError(t, harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.5.16"), ng.IMAPAddr, pwPwned, pwPwnedPW))
	mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "nginx", "service": "imap", "login": pwPwned, "ip": "127.0.5.16", "weak_password": "1"})
	var listed []struct {
		Login    string    `json:"login"`
		LastSeen time.Time `json:"last_seen"`
	}
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "password", "weak", "--days", "1", "--json")), &listed); err != nil || len(listed) != 2 || listed[0].Login != pwPwned || listed[1].Login != pwWeak {
		t.Fatalf("password weak: %+v %v", listed, err)
	}

	// SMTP AUTH through nginx: refused with mailgate's text; Postfix
	// never sees the client.
	s := ngDialSMTP(t, ctx, "127.0.5.11", ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("laptop.example.test"))
	ngExpect(t, s, 535, pwWeakText)(s.AuthPlain(pwWeak, pwWeakPW))
	s.Close()
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "weak_password", "door": "nginx", "service": "smtp", "login": pwWeak, "ip": "127.0.5.11"})
	if log := pf.MailLog(); strings.Contains(log, "127.0.5.11") {
		t.Errorf("postfix saw the refused client:\n%s", log)
	}
	// A wrong password: the usual answer, no flag, no weak line.
	s = ngDialSMTP(t, ctx, "127.0.5.12", ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("laptop.example.test"))
	ngExpect(t, s, 535, ngFailText)(s.AuthPlain(pwStrong, pwWrong))
	s.Close()
	mg.WaitLogLine(t, map[string]string{"auth": "failure", "door": "nginx", "service": "smtp", "login": pwStrong, "ip": "127.0.5.12"})

	// Submission straight to Postfix (SASL by Dovecot): the policy door
	// refuses the flagged sender at RCPT.
	s = ngDialSMTP(t, ctx, "127.0.5.13", pf.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("laptop.example.test"))
	ngExpect(t, s, 235, "")(s.AuthPlain(pwWeak, pwWeakPW))
	ngExpect(t, s, 250, "")(s.Mail(pwWeak))
	ngExpect(t, s, 554, pwWeakText)(s.Rcpt("friend@remote.test"))
	s.Close()
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "weak_password", "door": "postfix", "login": pwWeak, "ip": "127.0.5.13"})

	// IMAP still works, so the user can read why; a strong password sends.
	ngNoError(t, harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.5.14"), ng.IMAPAddr, pwWeak, pwWeakPW))
	s = ngDialSMTP(t, ctx, "127.0.5.15", ng.SMTPAddr)
	ngExpect(t, s, 250, "AUTH")(s.Ehlo("laptop.example.test"))
	ngExpect(t, s, 235, "")(s.AuthPlain(pwStrong, pwStrongPW))
	ngExpect(t, s, 250, "")(s.Send(pwStrong, "friend127-0-5-15@remote.test", "strong"))
	ngExpect(t, s, 221, "")(s.Quit())
	line := mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "nginx", "service": "smtp", "login": pwStrong, "ip": "127.0.5.15"})
	if _, ok := line["weak_password"]; ok {
		t.Errorf("strong password flagged: %v", line)
	}

	// The flag reaches the store (written behind within seconds), the
	// password never does, nor any log.
	db := filepath.Join(dir, "mailgate.db")
	deadline := time.Now().Add(20 * time.Second)
	for !storeHas(db, pwWeak) {
		if time.Now().After(deadline) {
			t.Fatalf("the flag of %s never reached %s", pwWeak, db)
		}
		time.Sleep(200 * time.Millisecond)
	}
	secrets := []string{pwWeakPW, pwStrongPW, pwWrong, pwPwnedPW}
	checkNoSecretFiles(t, secrets, 8, []string{db, db + "-wal", db + "-shm"}, mg.Dir, ng.Dir, dc.Dir, pf.Dir)
	// After the last write at shutdown (the WAL is checkpointed into the
	// file and removed).
	mg.Terminate(10 * time.Second)
	if !storeHas(db, pwWeak) {
		t.Errorf("the flag of %s is not in %s after shutdown", pwWeak, db)
	}
	checkNoSecretFiles(t, secrets, 3, []string{db, db + "-wal", db + "-shm"}, mg.Dir)
}

// writeBreached writes a small Pwned Passwords file, sorted by hash,
// listing pw among made-up hashes.
func writeBreached(t *testing.T, path, pw string) {
	t.Helper()
	h := sha1.Sum([]byte(pw))
	lines := []string{strings.ToUpper(hex.EncodeToString(h[:])) + ":42"}
	for i := range 200 {
		x := sha1.Sum([]byte(fmt.Sprint("other-", i)))
		lines = append(lines, strings.ToUpper(hex.EncodeToString(x[:]))+":1")
	}
	slices.Sort(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\r\n")+"\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// storeHas reports whether the login's bytes are in the database file or
// its WAL.
func storeHas(db, login string) bool {
	for _, p := range []string{db, db + "-wal"} {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(login)) {
			return true
		}
	}
	return false
}

// checkNoSecretFiles greps the files and every *.log (and mailgate's
// stdout/stderr) under the dirs for the secrets. Dovecot's passwd-file
// (its users, the verifier's own database) is not a log and is skipped.
func checkNoSecretFiles(t *testing.T, secrets []string, atLeast int, files []string, dirs ...string) {
	t.Helper()
	n := 0
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() && (strings.HasSuffix(p, ".log") || strings.Contains(filepath.Base(p), "log")) && e.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		n++
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains the password %q", f, s)
			}
		}
	}
	if n < atLeast {
		t.Errorf("only %d files checked for passwords: %v", n, files)
	}
	t.Logf("checked %d files for passwords", n)
}

// TestPasswordReload: `mailgate reload` applies a new policy and a new
// breached list to the running check; a breached file that is not sorted
// refuses the reload and the running policy stays.
func TestPasswordReload(t *testing.T) {
	dir := harness.TempDir(t, "pwreload-")
	listen := net.JoinHostPort("127.0.0.1", fmt.Sprint(harness.FreePort(t)))
	base := mailgateConfig(t, dir, "pw-reload-policy-key-4242", "")
	withPw := func(extra string) string {
		return base + fmt.Sprintf("\n[password]\ncheck_listen = %q\n%s", listen, extra)
	}
	mg := harness.StartMailgate(t, withPw(""))
	waitListening(t, listen)
	const pw = "Kx7-qWv9-Tr2mZ" // 14 characters, passes the default policy
	check := func() string {
		t.Helper()
		resp, err := http.Post("http://"+listen+"/v1/password/check", "application/json", strings.NewReader(`{"password":"`+pw+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			OK      bool `json:"ok"`
			Reasons []struct {
				Code string `json:"code"`
			} `json:"reasons"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		var codes []string
		for _, x := range r.Reasons {
			codes = append(codes, x.Code)
		}
		return fmt.Sprintf("%v %s", r.OK, strings.Join(codes, ","))
	}
	if got := check(); got != "true " {
		t.Fatalf("before: %s", got)
	}
	// A breached list holding the password, and a longer minimum.
	h := sha1.Sum([]byte(pw))
	listed := strings.ToUpper(hex.EncodeToString(h[:]))
	good := filepath.Join(dir, "pwned.txt")
	lines := []string{strings.Repeat("0", 40) + ":1", listed + ":7", strings.Repeat("F", 40) + ":2"}
	slices.Sort(lines)
	os.WriteFile(good, []byte(strings.Join(lines, "\r\n")+"\r\n"), 0o644)
	os.WriteFile(mg.ConfigPath, []byte(withPw(fmt.Sprintf("min_length = 16\nbreached_file = %q\n", good))), 0o600)
	mg.MustCLI(t, "reload")
	if got := check(); got != "false too_short,breached" {
		t.Fatalf("after reload: %s", got)
	}
	// An unsorted file: the reload is refused, the policy above stays.
	bad := filepath.Join(dir, "unsorted.txt")
	os.WriteFile(bad, []byte(strings.Repeat("F", 40)+":1\r\n"+strings.Repeat("0", 40)+":1\r\n"), 0o644)
	os.WriteFile(mg.ConfigPath, []byte(withPw(fmt.Sprintf("min_length = 12\nbreached_file = %q\n", bad))), 0o600)
	out, _, err := mg.CLI("reload")
	if err == nil || !strings.Contains(out+err.Error(), "not sorted") {
		t.Errorf("reload with an unsorted file: %v\n%s", err, out)
	}
	if got := check(); got != "false too_short,breached" {
		t.Fatalf("after the refused reload: %s", got)
	}
}

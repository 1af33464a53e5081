package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"mailgate/internal/maillog"
	"mailgate/internal/maillog/loggen"
	"mailgate/test/harness"
)

// TestMaillogAgreesWithFail2ban generates a mixed mail log (loggen, seed
// 1, Dovecot with auth_verbose = yes as on the e2e servers), runs the real
// fail2ban-regex with Debian's stock dovecot filter over it, parses it
// with internal/maillog, and checks that both see the same failures:
//
//   - fail2ban's per-check rule ("passwd-file(...): Password mismatch" /
//     "unknown user") matches exactly the password checks maillog counts
//     (the sum of Event.Attempts over Dovecot failures);
//   - fail2ban's total is larger by principle: it also matches the login
//     process's "(auth failed, N attempts)" summary of those same checks
//     (so it counts each check twice) and "(tried to use disabled
//     plaintext auth)", where no password was checked;
//   - `mailgate replay --log` of the same file reports those failures:
//     its unlabelled failed attempts (attackers.attempts) are fail2ban's
//     per-check matches plus Postfix's SASL failures (which fail2ban's
//     dovecot filter does not read), and its attempts add the logins.
//
// MAILGATE_MAILLOG_LINES sets the length (default 200000; the benchmark
// in docs/performance.md uses 1000000).
func TestMaillogAgreesWithFail2ban(t *testing.T) {
	harness.Require(t, map[string]string{"/usr/bin/fail2ban-regex": "fail2ban"})
	n := 200000
	if s := os.Getenv("MAILGATE_MAILLOG_LINES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "mail.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := loggen.Generate(f, n, 1)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %+v", st)

	// maillog, reading the file as a follower does.
	start := time.Now()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var failures, checks, logins, lines int
	ref := loggen.Start.Add(30 * 24 * time.Hour)
	var ev maillog.Event
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		lines++
		if !maillog.ParseLine(sc.Bytes(), ref, &ev) || ev.Program != maillog.Dovecot {
			continue
		}
		if ev.Success {
			logins++
		} else {
			failures++
			checks += ev.Attempts
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	parse := time.Since(start)

	start = time.Now()
	out, err := exec.Command("fail2ban-regex", path, "/etc/fail2ban/filter.d/dovecot.conf").CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	f2b := time.Since(start)
	t.Logf("maillog: %d lines in %v (%.0f lines/s); fail2ban-regex: %v (%.0f lines/s)",
		lines, parse.Round(time.Millisecond), float64(lines)/parse.Seconds(), f2b.Round(time.Millisecond), float64(lines)/f2b.Seconds())

	m := regexp.MustCompile(`Lines: (\d+) lines, \d+ ignored, (\d+) matched`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("fail2ban-regex output without a Lines: summary:\n%s", out)
	}
	f2bLines, _ := strconv.Atoi(string(m[1]))
	matched, _ := strconv.Atoi(string(m[2]))
	// The per-check rule is the one whose text has "[Pp]assword mismatch".
	pc := regexp.MustCompile(`(?m)^\|\s+\d+\) \[(\d+)\] .*\[Pp\]assword mismatch`).FindSubmatch(out)
	if pc == nil {
		t.Fatalf("fail2ban-regex output without the per-check rule's hits:\n%s", out)
	}
	perCheck, _ := strconv.Atoi(string(pc[1]))

	if f2bLines != lines || lines != n {
		t.Errorf("lines: fail2ban %d, maillog %d, generated %d", f2bLines, lines, n)
	}
	if failures != st.DovecotFailedConns || checks != st.DovecotChecks || logins != st.DovecotLogins {
		t.Errorf("maillog: %d failure lines, %d checks, %d logins; generated %d, %d, %d",
			failures, checks, logins, st.DovecotFailedConns, st.DovecotChecks, st.DovecotLogins)
	}
	if perCheck != checks {
		t.Errorf("fail2ban's per-check rule matched %d lines, maillog counted %d password checks", perCheck, checks)
	}
	if matched != checks+failures+st.DovecotPlaintext {
		t.Errorf("fail2ban matched %d lines, want %d checks + %d summaries of them + %d plaintext refusals = %d",
			matched, checks, failures, st.DovecotPlaintext, checks+failures+st.DovecotPlaintext)
	}
	t.Logf("fail2ban matched %d = %d password checks (maillog: %d) + %d per-connection summaries + %d plaintext refusals",
		matched, perCheck, checks, failures, st.DovecotPlaintext)

	// mailgate replay, the command, on the same file. Its RFC 3164 times
	// take their year from the file's modification time.
	if err := os.Chtimes(path, ref, ref); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "mailgate.toml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "[store]\npath = %q\n", filepath.Join(dir, "mailgate.db")), 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	cmd := exec.Command(harness.Mailgate(t), "replay", "--config", cfgPath, "--json", "--log", path)
	cmd.Stderr = os.Stderr
	rout, err := cmd.Output()
	if err != nil {
		t.Fatalf("mailgate replay: %v", err)
	}
	t.Logf("mailgate replay: %v", time.Since(start).Round(time.Millisecond))
	var rep struct {
		Input     struct{ Lines, Attempts int64 }
		Attackers struct{ Attempts int64 }
	}
	if err := json.Unmarshal(rout, &rep); err != nil {
		t.Fatalf("mailgate replay --json: %v\n%.2000s", err, rout)
	}
	if rep.Input.Lines != int64(lines) {
		t.Errorf("replay read %d lines, want %d", rep.Input.Lines, lines)
	}
	if want := int64(perCheck + st.PostfixFailures); rep.Attackers.Attempts != want {
		t.Errorf("replay reports %d failed attempts, want fail2ban's %d password checks + %d Postfix SASL failures = %d",
			rep.Attackers.Attempts, perCheck, st.PostfixFailures, want)
	}
	if want := int64(perCheck + st.PostfixFailures + st.DovecotLogins + st.PostfixLogins); rep.Input.Attempts != want {
		t.Errorf("replay replayed %d attempts, want %d failures + %d logins = %d",
			rep.Input.Attempts, perCheck+st.PostfixFailures, st.DovecotLogins+st.PostfixLogins, want)
	}
}

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailgate/test/harness"
)

// The log door test's users.
const (
	ldAlice, ldAlicePW = "alice@example.test", "Ld-Alice-Secret-7171"
	ldWrongPW          = "Ld-Wrong-Secret-0000"
)

// ldEnv is what the log door scenarios share.
type ldEnv struct {
	dir string
	mg  *harness.MG
	dc  *harness.Dovecot // policy door OFF: mailgate learns only from its log
	pf  *harness.Postfix // asks mailgate's Postfix door (relay checks)
}

// TestLogDoorEndToEnd is issue 13's log door against the real Dovecot
// 2.3 (no auth_policy_server_url: mailgate's Dovecot door is off) and
// Postfix 3.7 (relay checks through the Postfix door): mailgate follows
// Dovecot's log_path file and nothing else.
//
//   - failed IMAP logins from one address ban it, through the log alone;
//   - an IMAP login grants a relay permit that Postfix honours;
//   - the log is rotated by rename (Dovecot reopens on SIGUSR1) and by
//     copytruncate in the middle of a run of failures: every failure is
//     counted once (the decision log has one auth=failure line per
//     failed login Dovecot logged), and the run still bans;
//   - failures logged while mailgate is stopped are counted after its
//     restart, and nothing read before is counted again.
//
// Without the log door none of it happens: no door reports anything.
func TestLogDoorEndToEnd(t *testing.T) {
	harness.RequirePostfix(t)
	harness.RequireSwaks(t)
	harness.Require(t, harness.DovecotPackages)
	env := ldSetup(t)

	t.Run("failures ban through the log", func(t *testing.T) {
		const src = "127.0.31.1"
		ldFail(t, env, src, 5)
		ldWaitFailures(t, env, src, 5)
		env.mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": src})
		ldWantBanned(t, env, src)
	})
	t.Run("login grants a relay permit Postfix honours", func(t *testing.T) {
		const src = "127.0.32.1"
		rlRcpt(t, rlSend(t, env.pf, src, rlRelayTo, ""), 554, "Relay access denied")
		if err := harness.IMAPLogin(ldContext(t), netip.MustParseAddr(src), env.dc.IMAPAddr, ldAlice, ldAlicePW); err != nil {
			t.Fatal(err)
		}
		env.mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "log", "service": "imap", "login": ldAlice, "ip": src})
		env.mg.WaitLogLine(t, map[string]string{"event": "permit", "ip": src})
		rlAccepted(t, rlSend(t, env.pf, src, rlRelayTo, ""))
		if p := rlFindPermit(t, env.mg, src); p == nil || p.Door != "log" || p.Account != ldAlice {
			t.Errorf("permit of %s: %+v, want one granted by the log door to %s", src, p, ldAlice)
		}
	})
	t.Run("SMTP AUTH failures through Postfix's log", func(t *testing.T) {
		const src = "127.0.39.1"
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				r, err := harness.Swaks(ldContext(t), harness.SwaksOptions{Server: env.pf.SMTPAddr, Source: netip.MustParseAddr(src),
					From: "guess39@example.test", To: []string{rlRelayTo}, AuthUser: "guess39@example.test", AuthPassword: ldWrongPW, QuitAfter: "AUTH"})
				if err != nil {
					t.Error(err)
				} else if rs := r.Replies("AUTH"); len(rs) != 1 || rs[0].Code != 535 {
					t.Errorf("SMTP AUTH with a wrong password: %v, want 535\n%s", rs, r)
				}
			})
		}
		wg.Wait()
		// Once each: Dovecot's auth process logs these checks too
		// ("Password mismatch"), and they are not counted again.
		ldWaitFailures(t, env, src, 5)
		env.mg.WaitLogLine(t, map[string]string{"auth": "failure", "door": "log", "service": "smtp", "ip": src})
		env.mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": src})
		if !strings.Contains(env.dc.Log(), src) {
			t.Errorf("Dovecot's log does not name %s: the double-count check checked nothing", src)
		}
	})
	t.Run("rotation by rename", func(t *testing.T) {
		const src = "127.0.33.1"
		ldFail(t, env, src, 2)
		ldWaitFailures(t, env, src, 2)
		if err := os.Rename(env.dc.LogPath, env.dc.LogPath+".1"); err != nil {
			t.Fatal(err)
		}
		// Dovecot still writes to the renamed file until it reopens.
		ldFail(t, env, src, 1)
		ldWaitDovecotLines(t, env.dc.LogPath+".1", src, 1)
		ldDovecotReopen(t, env.dc)
		ldFail(t, env, src, 2)
		ldWaitFailures(t, env, src, 5)
		env.mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": src})
	})
	t.Run("copytruncate", func(t *testing.T) {
		const src = "127.0.34.1"
		ldFail(t, env, src, 2)
		ldWaitFailures(t, env, src, 2)
		b, err := os.ReadFile(env.dc.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(env.dc.LogPath+".2", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(env.dc.LogPath, 0); err != nil {
			t.Fatal(err)
		}
		ldFail(t, env, src, 3)
		ldWaitFailures(t, env, src, 5)
		env.mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": src})
		st := ldStatus(t, env)
		if st.Rotations < 1 || st.Truncations < 1 || st.State != "ok" || st.Problem != "" {
			t.Errorf("status of the log source: %+v, want ok with a rotation and a truncation", st)
		}
	})
	t.Run("restart resumes from the saved position", func(t *testing.T) {
		const src = "127.0.35.1"
		before := ldFailureCounts(env)
		env.mg.Terminate(10 * time.Second)
		ldFail(t, env, src, 2)
		ldWaitDovecotLines(t, env.dc.LogPath, src, 2)
		env.mg.Restart()
		ldWaitFailures(t, env, src, 2)
		// Let a few polls pass: nothing read before the restart may come
		// again (a wrong resume re-reads the whole file).
		ldFail(t, env, "127.0.35.2", 1)
		ldWaitFailures(t, env, "127.0.35.2", 1)
		after := ldFailureCounts(env)
		for ip, n := range before {
			if after[ip] != n {
				t.Errorf("%s: %d failures counted before the restart, %d after: read again", ip, n, after[ip])
			}
		}
	})
	// Every failure Dovecot logged was counted exactly once.
	logged := ldDovecotFailures(t, env.dc.LogPath+".1", env.dc.LogPath+".2", env.dc.LogPath)
	counted := ldFailureCounts(env)
	for ip, n := range logged {
		if counted[ip] != n {
			t.Errorf("%s: Dovecot logged %d failed logins, the log door counted %d", ip, n, counted[ip])
		}
	}
	t.Logf("failed logins per address, as Dovecot logged them: %v", logged)
}

func ldSetup(t *testing.T) *ldEnv {
	dir := harness.TempDir(t, "logdoor-e2e-")
	env := &ldEnv{dir: dir}
	users := map[string]string{ldAlice: ldAlicePW}
	// No PolicyURL: this Dovecot never talks to mailgate.
	env.dc = harness.StartDovecot(t, harness.DovecotOptions{Users: users, AuthListener: true})
	policyAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t)))
	main := readSnippet(t, pfMainSnippet)
	env.pf = harness.StartPostfix(t, harness.PostfixOptions{
		DovecotSASL: env.dc.AuthAddr,
		Extra:       replaceAll(t, main, pfDocPolicy, "inet:"+policyAddr, "etc/"+pfMainSnippet),
	})
	env.mg = harness.StartMailgate(t, ldConfig(dir, policyAddr, env.dc.LogPath, filepath.Join(env.pf.Dir, "maillog")))
	waitListening(t, policyAddr)
	return env
}

// ldConfig is mailgate's config: the Dovecot door off, the log door on
// Dovecot's log file, relay permits and the Postfix door on.
func ldConfig(dir, policyAddr, logPath, maillog string) string {
	return fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
enabled = false

[relay]
enabled = true
ttl = "10m"
never_networks = ["127.0.9.0/24"]
hook_socket = ""

[postfix]
enabled = true
listen = %q

[logs]
enabled = true
poll = "50ms"
state_dir = %q

[[logs.file]]
path = %q
programs = ["dovecot"]

# Postfix's SMTP AUTH goes to Dovecot's auth service (Dovecot SASL); its
# failures are in Postfix's log only (Dovecot's auth lines do not count).
[[logs.file]]
path = %q
programs = ["postfix"]
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), policyAddr, filepath.Join(dir, "state"), logPath, maillog)
}

func ldContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ldFail makes n failed IMAP logins from src, at once (Dovecot delays
// each failure by 2 s), as a login of src's own (an unknown user), so
// that each scenario's failures ban its address and never a shared login.
func ldFail(t *testing.T, env *ldEnv, src string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			login := "guess-" + strings.ReplaceAll(src, ".", "-") + "@example.test"
			err := harness.IMAPLogin(ldContext(t), netip.MustParseAddr(src), env.dc.IMAPAddr, login, ldWrongPW)
			var le *harness.LoginError
			if err == nil || !asLoginError(err, &le) {
				errs <- fmt.Errorf("IMAP login with a wrong password from %s: %v, want a refusal", src, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func asLoginError(err error, le **harness.LoginError) bool {
	e, ok := err.(*harness.LoginError)
	*le = e
	return ok
}

// ldFailureCounts counts the log door's auth=failure lines per address.
func ldFailureCounts(env *ldEnv) map[string]int {
	out := map[string]int{}
	for _, l := range harness.Find(harness.ParseLog(env.mg.DecisionLog()), map[string]string{"auth": "failure", "door": "log"}) {
		out[l["ip"]]++
	}
	return out
}

// ldWaitFailures waits until the log door counted exactly n failures of
// src, and fails if it counts more.
func ldWaitFailures(t *testing.T, env *ldEnv, src string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := ldFailureCounts(env)[src]
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			dlog := ""
			if env.dc != nil {
				dlog = "\nDovecot log:\n" + env.dc.Log()
			}
			st, _, _ := env.mg.CLI("status", "--json")
			t.Fatalf("log door failures of %s: %d, want %d\nstatus: %s%s", src, got, n, st, dlog)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ldDovecotFailures counts the failed logins Dovecot logged per address
// (one "auth failed, N attempts" disconnect line per connection).
func ldDovecotFailures(t *testing.T, paths ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			i := strings.Index(line, "(auth failed, ")
			if i < 0 || !strings.Contains(line, "imap-login:") {
				continue
			}
			n, _ := strconv.Atoi(strings.Fields(line[i+len("(auth failed, "):])[0])
			_, rest, _ := strings.Cut(line, "rip=")
			ip, _, _ := strings.Cut(rest, ",")
			out[ip] += n
		}
	}
	return out
}

// ldWaitDovecotLines waits until the Dovecot log at path has n failed
// logins of src.
func ldWaitDovecotLines(t *testing.T, path, src string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ldDovecotFailures(t, path)[src] < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d failed logins of %s logged", path, n, src)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ldDovecotReopen makes Dovecot reopen its log files (what logrotate's
// postrotate does: doveadm log reopen, i.e. SIGUSR1 to the master).
func ldDovecotReopen(t *testing.T, dc *harness.Dovecot) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dc.Dir, "run", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(dc.LogPath); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dovecot did not reopen %s after SIGUSR1", dc.LogPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ldWantBanned wants src in `mailgate ban list`.
func ldWantBanned(t *testing.T, env *ldEnv, src string) {
	t.Helper()
	out := env.mg.MustCLI(t, "ban", "list", "--json")
	var bans []struct {
		IP string `json:"ip"`
	}
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatalf("ban list --json: %v\n%s", err, out)
	}
	for _, b := range bans {
		if b.IP == src || b.IP == src+"/32" {
			return
		}
	}
	t.Fatalf("%s not in ban list:\n%s", src, out)
}

// ldSource is a log source as `mailgate status --json` shows it.
type ldSource struct {
	Source      string `json:"source"`
	State       string `json:"state"`
	Problem     string `json:"problem"`
	Lines       int    `json:"lines"`
	Events      int    `json:"events"`
	Rotations   int    `json:"rotations"`
	Truncations int    `json:"truncations"`
	PID         int    `json:"pid"`
	Starts      int    `json:"starts"`
}

func ldStatus(t *testing.T, env *ldEnv) ldSource {
	t.Helper()
	out := env.mg.MustCLI(t, "status", "--json")
	var s struct {
		Logs []ldSource `json:"logs"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || len(s.Logs) == 0 {
		t.Fatalf("status --json: %v, want log sources\n%s", err, out)
	}
	return s.Logs[0] // the first [[logs.file]], or the journal
}

// TestLogDoorJournald is the journald path where the test machine has no
// journal: mailgate's [logs.journald] command is a script that plays
// recorded `journalctl -o json` entries (testdata/logdoor/journal.json:
// Dovecot's failed and successful IMAP logins through syslog, and other
// entries) as `journalctl --follow` would, honouring --after-cursor.
//
//   - five failures from one address ban it, through the journal alone;
//   - a journalctl that dies is started again after the last entry read
//     (the failures around it are counted once);
//   - entries written while mailgate is stopped are counted after its
//     restart (the cursor file), and nothing read before comes again;
//   - at shutdown journalctl is stopped by its PID.
func TestLogDoorJournald(t *testing.T) {
	dir := harness.TempDir(t, "logdoor-journal-")
	recorded, err := os.ReadFile("testdata/logdoor/journal.json")
	if err != nil {
		t.Fatal(err)
	}
	entries := strings.SplitAfter(string(recorded), "\n")
	entries = entries[:len(entries)-1] // after the last newline
	if len(entries) != 9 {
		t.Fatalf("testdata/logdoor/journal.json: %d entries, want 9", len(entries))
	}
	rec := filepath.Join(dir, "journal.json")
	if err := os.WriteFile(rec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	replay, err := filepath.Abs("../internal/logfollow/testdata/journalctl-replay")
	if err != nil {
		t.Fatal(err)
	}
	cmd := filepath.Join(dir, "journalctl")
	script := fmt.Sprintf("#!/bin/sh\nJOURNAL_REPLAY_FILE=%s exec %s \"$@\"\n", rec, replay)
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := &ldEnv{dir: dir}
	env.mg = harness.StartMailgate(t, fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
enabled = false

[logs]
enabled = true
state_dir = %q
# The recorded entries carry last year's times.
max_age = "0s"

[logs.journald]
enabled = true
command = %q
units = ["dovecot.service", "postfix@-.service"]
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), filepath.Join(dir, "state"), cmd))

	// starts waits for the n-th start of the replayer, past the point
	// where it knows where to start, and returns its arguments.
	starts := func(n int) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, _ := os.ReadFile(rec + ".args")
			if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(b) > 0 && len(lines) >= n {
				return lines[n-1]
			}
			if time.Now().After(deadline) {
				t.Fatalf("journalctl not started %d times; arguments so far:\n%s", n, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	add := func(from, to int) {
		t.Helper()
		f, err := os.OpenFile(rec, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(strings.Join(entries[from:to], "")); err != nil {
			t.Fatal(err)
		}
	}
	cursor := func(i int) string {
		var e struct {
			Cursor string `json:"__CURSOR"`
		}
		if err := json.Unmarshal([]byte(entries[i]), &e); err != nil {
			t.Fatal(err)
		}
		return e.Cursor
	}

	args := starts(1)
	for _, want := range []string{"--follow", "--output=json", "--all", "--since=now", "_SYSTEMD_UNIT=dovecot.service", "_SYSTEMD_UNIT=postfix@-.service"} {
		if !strings.Contains(" "+args+" ", " "+want+" ") {
			t.Errorf("journalctl arguments %q lack %s", args, want)
		}
	}
	add(0, 3) // two failures, a Postfix line
	ldWaitFailures(t, env, "127.0.36.1", 2)

	// journalctl dies; it is started again after the last entry read.
	st := ldStatus(t, env)
	if st.PID == 0 || st.State != "ok" || st.Source != "journald" {
		t.Fatalf("status of the journal source: %+v, want ok with journalctl's PID", st)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if args := starts(2); !strings.Contains(args, "--after-cursor="+cursor(2)) {
		t.Errorf("journalctl started again with %q, want --after-cursor=%s", args, cursor(2))
	}
	add(3, 8) // three more failures, alice's login
	ldWaitFailures(t, env, "127.0.36.1", 5)
	env.mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": "127.0.36.1"})
	ldWantBanned(t, env, "127.0.36.1")
	env.mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "log", "service": "imap", "login": ldAlice, "ip": "127.0.37.1"})
	if st := ldStatus(t, env); st.Starts != 2 || st.Events != 6 {
		t.Errorf("status of the journal source: %+v, want 2 starts and 6 events", st)
	}

	// Stopped: journalctl goes with mailgate; an entry comes meanwhile.
	pid := ldStatus(t, env).PID
	env.mg.Terminate(10 * time.Second)
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("journalctl (pid %d) still runs after mailgate stopped", pid)
	}
	add(8, 9)
	env.mg.Restart()
	if args := starts(3); !strings.Contains(args, "--after-cursor="+cursor(7)) {
		t.Errorf("journalctl after the restart started with %q, want --after-cursor=%s", args, cursor(7))
	}
	ldWaitFailures(t, env, "127.0.38.1", 1)
	if n := ldFailureCounts(env)["127.0.36.1"]; n != 5 {
		t.Errorf("127.0.36.1: %d failures counted, want 5 (read again after the restart?)", n)
	}
}

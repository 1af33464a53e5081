package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/internal/geoip/geoiptest"
	"mailgate/test/harness"
)

// reloadReply is `mailgate reload --json`.
type reloadReply struct {
	OK           bool     `json:"ok"`
	File         string   `json:"file"`
	Errors       []string `json:"errors"`
	Applied      []string `json:"applied"`
	NeedsRestart []string `json:"needs_restart"`
}

// reloadEnv is a running daemon and the parts of its config file the
// test rewrites.
type reloadEnv struct {
	mg                   *harness.MG
	dir, dovecot, policy string
	geo                  string
}

// config renders the config file: the fixed part and extra.
func (e *reloadEnv) config(extra string) string {
	return fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
listen = %q
api_key = %q

[postfix]
listen = %q

[relay]
enabled = true
hook_socket = ""
`, filepath.Join(e.dir, "mailgate.db"), filepath.Join(e.dir, "admin.sock"), e.dovecot, rlKey, e.policy) + extra
}

func (e *reloadEnv) write(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(e.mg.ConfigPath, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload runs `mailgate reload --json --socket S` (the daemon answers,
// whatever the file holds); a refused config exits 1.
func (e *reloadEnv) reload(t *testing.T, wantOK bool) reloadReply {
	t.Helper()
	out, errOut, err := e.mg.CLI("reload", "--json", "--socket", e.mg.AdminSocket)
	var r reloadReply
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Fatalf("reload --json: %v\n%s\n%s", jerr, out, errOut)
	}
	if r.OK != wantOK || (err == nil) != wantOK {
		t.Fatalf("reload: ok=%v, exit error %v, want ok=%v\n%s\n%s", r.OK, err, wantOK, out, errOut)
	}
	return r
}

// hup sends SIGHUP and waits until the daemon logged the n-th reload
// outcome containing what.
func (e *reloadEnv) hup(t *testing.T, what string, n int) {
	t.Helper()
	if err := syscall.Kill(e.mg.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(e.mg.Stderr(), what) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q (%d) in the daemon's log after SIGHUP:\n%s", what, n, e.mg.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *reloadEnv) explain(t *testing.T, account, ip string) bfExplained {
	t.Helper()
	// --socket: the file may be broken on purpose.
	out := e.mg.MustCLI(t, "explain", "--account", account, "--ip", ip, "--service", "imap", "--json", "--socket", e.mg.AdminSocket)
	var v bfExplained
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	return v
}

// fail reports a failed IMAP login to the Dovecot door, as Dovecot does.
func (e *reloadEnv) fail(t *testing.T, login, src string, i int) {
	t.Helper()
	body := fmt.Sprintf(`{"device_id":"","login":%q,"protocol":"imap","pwhash":"%04x","remote":%q,"session_id":"s%d","tls":false,"success":false,"policy_reject":false}`, login, 0xa000+i, src, i)
	req := fmt.Sprintf("POST /?command=report HTTP/1.1\r\nHost: mailgate\r\nContent-Type: application/json\r\nX-API-Key: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", rlKey, len(body), body)
	if code, resp, err := rawHTTP("tcp", e.dovecot, req); err != nil || code/100 != 2 {
		t.Fatalf("report: %d %s %v", code, resp, err)
	}
}

// rcpt asks the Postfix policy door about one recipient of an
// authenticated sender and returns the action.
func (e *reloadEnv) rcpt(t *testing.T, login, instance string) string {
	t.Helper()
	got, err := policyExchange(e.policy, "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.0.0.93\nsasl_method=PLAIN\nsasl_username="+login+"\ninstance="+instance+"\nrecipient=x@remote.test\n\n")
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return strings.TrimSpace(got)
}

const rlKey = "reload-policy-key-4410"

// TestReload is item 2 of issue 11: a running daemon re-reads its config
// on `mailgate reload` and on SIGHUP. Each reloadable setting is changed
// in the file and `explain` (and the Dovecot and Postfix doors) follow;
// a ban, a brute-force counter, a relay permit and a sending-limit count
// survive; a listen address is reported as needing a restart and keeps
// running; a broken config is refused, and the old one keeps deciding.
func TestReload(t *testing.T) {
	dir := harness.TempDir(t, "reload-")
	e := &reloadEnv{dir: dir, dovecot: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)), policy: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}
	e.geo = filepath.Join(dir, "countries.mmdb")
	if err := geoiptest.WriteMMDB(e.geo, map[string]string{"198.51.100.0/24": "CN", "203.0.113.0/24": "DE"}, geoiptest.ShapeMaxMind); err != nil {
		t.Fatal(err)
	}
	e.mg = harness.StartMailgate(t, e.config(`
[bruteforce]
addr_failures = 5

[limits]
recipients_per_hour = 10
`))
	mg := e.mg

	// State that must survive: a ban, a permit, two failures of an
	// address, three recipients of a sender.
	mg.MustCLI(t, "ban", "add", "--ip", "192.0.2.10", "--for", "1h")
	mg.MustCLI(t, "permit", "add", "--ip", "192.0.2.20", "--for", "1h")
	const attacker = "127.0.0.91"
	for i := range 2 {
		e.fail(t, fmt.Sprint("victim", i, "@example.test"), attacker, i)
	}
	for i := range 3 {
		if got := e.rcpt(t, "carol@example.test", "msg1"); got != "action=DUNNO" {
			t.Fatalf("recipient %d: %q", i+1, got)
		}
	}
	if v := e.explain(t, "bob@example.test", "192.0.2.50"); v.Verdict != "allow" {
		t.Fatalf("before any reload: %+v", v)
	}

	// 1. mailgate reload: every reloadable section changes, and one
	// listen address.
	decisions := filepath.Join(dir, "decisions.log")
	newDovecot := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	v2 := strings.Replace(e.config(fmt.Sprintf(`
[log]
level = "debug"
decisions = %q

[policy]
deny_networks = ["192.0.2.50/32"]
trusted_networks = ["192.0.2.10/32"]

[geoip]
database = %q
deny_countries = ["CN"]

[bruteforce]
addr_failures = 3

[limits]
recipients_per_hour = 4

[messages]
global_deny = "Reloaded: go away ({ip})."
`, decisions, e.geo)), fmt.Sprintf("listen = %q\napi_key", e.dovecot), fmt.Sprintf("listen = %q\napi_key", newDovecot), 1)
	e.write(t, v2)
	r := e.reload(t, true)
	for _, k := range []string{"log.level", "log.decisions", "policy.deny_networks", "policy.trusted_networks", "geoip.database", "geoip.deny_countries", "bruteforce.addr_failures", "limits.recipients_per_hour", "messages"} {
		if !slices.Contains(r.Applied, k) {
			t.Errorf("applied %v: no %s", r.Applied, k)
		}
	}
	if !slices.Equal(r.NeedsRestart, []string{"dovecot.listen"}) {
		t.Errorf("needs_restart = %v, want [dovecot.listen]", r.NeedsRestart)
	}
	if out, _, _ := mg.CLI("reload"); !strings.Contains(out, "needs a restart: dovecot.listen") {
		t.Errorf("reload without --json:\n%s", out)
	}
	if !strings.Contains(mg.Stderr(), "needs_restart=dovecot.listen") {
		t.Errorf("the daemon's log does not name dovecot.listen:\n%s", mg.Stderr())
	}

	// explain follows every change.
	if v := e.explain(t, "bob@example.test", "192.0.2.50"); v.Verdict != "deny" || v.Reason != "global_deny" || v.Message != "Reloaded: go away (192.0.2.50)." {
		t.Errorf("deny_networks and messages: %+v", v)
	}
	if v := e.explain(t, "bob@example.test", "198.51.100.7"); v.Verdict != "deny" || v.Reason != "country_blocked" {
		t.Errorf("geoip and deny_countries: %+v", v)
	}
	if v := e.explain(t, "bob@example.test", "203.0.113.7"); v.Verdict != "allow" {
		t.Errorf("a country not denied: %+v", v)
	}
	if v := e.explain(t, "bob@example.test", "192.0.2.10"); v.Verdict != "allow" || v.Reason != "trusted" {
		t.Errorf("trusted_networks (over the ban): %+v", v)
	}
	// The state survived: the ban, the permit, the counters.
	if out := mg.MustCLI(t, "ban", "list"); !strings.Contains(out, "192.0.2.10") {
		t.Errorf("ban list after reload:\n%s", out)
	}
	if out := mg.MustCLI(t, "permit", "list"); !strings.Contains(out, "192.0.2.20") {
		t.Errorf("permit list after reload:\n%s", out)
	}
	// Two failures before, one after: addr_failures = 3 bans.
	e.fail(t, "victim9@example.test", attacker, 9)
	if v := e.explain(t, "someone@example.test", attacker); v.Verdict != "deny" || v.Reason != "banned_address" {
		t.Errorf("two failures before the reload and one after, addr_failures = 3: %+v", v)
	}
	// Three recipients before, a limit of 4 now: one more, then deferred.
	if got := e.rcpt(t, "carol@example.test", "msg1"); got != "action=DUNNO" {
		t.Errorf("4th recipient of 4: %q", got)
	}
	if got := e.rcpt(t, "carol@example.test", "msg1"); !strings.HasPrefix(got, "action=DEFER") && !strings.HasPrefix(got, "action=4") {
		t.Errorf("5th recipient of 4 (3 counted before the reload): %q", got)
	}
	// log.decisions: the decision lines go to the new file, the
	// level to debug.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(decisions)
		if strings.Contains(string(b), "reason=send_limit") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no send_limit decision in %s after the reload:\n%s", decisions, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(mg.DecisionLog(), "reason=send_limit") {
		t.Errorf("a decision after the reload still went to stdout")
	}
	// The Dovecot door still listens where it did (needs a restart).
	if code, _, err := rawHTTP("tcp", e.dovecot, "GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"); err != nil || code == 0 {
		t.Errorf("the old dovecot.listen no longer answers: %v", err)
	}

	// 2. A broken config is refused, with its errors, and the old one
	// keeps deciding.
	e.write(t, strings.Replace(v2, "addr_failures = 3", "addr_failures = \"three\"\nno_such_key = 1", 1))
	r = e.reload(t, false)
	if len(r.Errors) == 0 || !strings.Contains(strings.Join(r.Errors, "\n"), "addr_failures") {
		t.Errorf("errors of the broken config: %v", r.Errors)
	}
	// Without --socket the CLI cannot read the socket's path from the
	// broken file: it shows the same errors and asks nothing.
	out, _, err := mg.CLI("reload")
	if err == nil || !strings.Contains(out, "refused") || !strings.Contains(out, "addr_failures") {
		t.Errorf("reload of a broken config: %v\n%s", err, out)
	}
	if v := e.explain(t, "bob@example.test", "192.0.2.50"); v.Reason != "global_deny" || v.Message != "Reloaded: go away (192.0.2.50)." {
		t.Errorf("after a refused reload: %+v", v)
	}

	// 3. SIGHUP: the same, logged.
	e.write(t, strings.Replace(strings.Replace(v2, `deny_networks = ["192.0.2.50/32"]`, `deny_networks = ["192.0.2.51/32"]`, 1), `deny_countries = ["CN"]`, `allow_countries = ["CN"]`, 1))
	e.hup(t, "msg=\"config reloaded\"", 3) // the two successful reloads above and this one
	if v := e.explain(t, "bob@example.test", "192.0.2.51"); v.Reason != "global_deny" {
		t.Errorf("SIGHUP: deny_networks: %+v", v)
	}
	if v := e.explain(t, "bob@example.test", "198.51.100.7"); v.Verdict != "allow" {
		t.Errorf("SIGHUP: allow_countries = [CN]: %+v", v)
	}
	if v := e.explain(t, "bob@example.test", "203.0.113.7"); v.Reason != "country_blocked" {
		t.Errorf("SIGHUP: DE not in allow_countries: %+v", v)
	}
	e.write(t, "[bruteforce\n")
	e.hup(t, "config reload refused", 2) // the one the daemon refused above and this one
	if v := e.explain(t, "bob@example.test", "192.0.2.51"); v.Reason != "global_deny" {
		t.Errorf("after a refused SIGHUP: %+v", v)
	}
	if out := mg.MustCLI(t, "ban", "list", "--socket", mg.AdminSocket); !strings.Contains(out, "192.0.2.10") || !strings.Contains(out, attacker) {
		t.Errorf("ban list at the end:\n%s", out)
	}
}

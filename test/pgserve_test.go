package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// pgMailgateConfig is a daemon config in dir on the PostgreSQL store dsn,
// the password in a file (as docs/store-postgres.md advises).
func pgMailgateConfig(t testing.TB, dir, dsn, password string) string {
	t.Helper()
	pwFile := filepath.Join(dir, "pg-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[store]
driver = "postgres"
path = %q
dsn = %q
password_file = %q

[admin]
socket = %q

[dovecot]
listen = "127.0.0.1:%d"
api_key = "e2e-policy-key-31337"

[relay]
enabled = true
hook_socket = ""
`, filepath.Join(dir, "mailgate.db"), dsn, pwFile, filepath.Join(dir, "admin.sock"), harness.FreePort(t))
}

// TestServePostgres runs two `mailgate serve` on one real PostgreSQL
// database: a rule added or removed through node A acts on node B within
// 1 s (LISTEN/NOTIFY), and B resyncs after its listening connection is
// cut; a rule, a ban and a relay permit added through node A are in the
// database and in node B after B restarts; no SQLite file is made; no
// log shows the password; backup says to use pg_dump.
func TestServePostgres(t *testing.T) {
	pg := harness.StartPostgres(t, "127.0.0.63")
	const pw = "pg-Secret-e2e-4242"
	dsn := pg.CreateDatabase(t, "mg_serve", pw)
	// The password goes in password_file, not in the DSN.
	dsnNoPW := strings.Replace(dsn, ":"+pw+"@", "@", 1)
	if dsnNoPW == dsn {
		t.Fatalf("no password in %q to take out", dsn)
	}
	dirA, dirB := harness.TempDir(t, "pga-"), harness.TempDir(t, "pgb-")
	a := harness.StartMailgate(t, pgMailgateConfig(t, dirA, dsnNoPW, pw))
	b := harness.StartMailgate(t, pgMailgateConfig(t, dirB, dsnNoPW, pw))

	// A rule added and removed through node A acts on node B within 1 s
	// (LISTEN/NOTIFY), without a restart.
	a.MustCLI(t, "rule", "add", "--account", "carol@example.test", "--deny", "--ip", "192.0.2.67", "--json")
	if d := waitExplain(t, b, "carol@example.test", "192.0.2.67", "account_deny", time.Second); d < 0 {
		t.Errorf("node B did not apply node A's new rule within 1 s")
	} else {
		t.Logf("rule add on A → applied on B: at most %v after the CLI returned", d)
	}
	// B counts the change it applied, with when and its lag; A applied
	// it itself and heard no other node.
	waitStatus(t, b, func(s statusRuleSync) bool { return s.Connected && s.Notices == 1 && s.LastNotice != nil })
	if s := getStatus(t, a); s.Notices != 0 {
		t.Errorf("node A counted its own change: %+v", s)
	}
	id := strings.TrimSpace(pgSQLIn(t, pg, "mg_serve", `SELECT id FROM rules WHERE account = 'carol@example.test'`))
	a.MustCLI(t, "rule", "rm", id)
	if d := waitExplain(t, b, "carol@example.test", "192.0.2.67", "default", time.Second); d < 0 {
		t.Errorf("node B did not drop the rule node A removed within 1 s")
	} else {
		t.Logf("rule rm on A → applied on B: at most %v", d)
	}
	// A forged notice (any role that can connect may NOTIFY) does not
	// take a stored rule out of a node's memory.
	a.MustCLI(t, "rule", "add", "--account", "erin@example.test", "--deny", "--ip", "192.0.2.69")
	if d := waitExplain(t, b, "erin@example.test", "192.0.2.69", "account_deny", time.Second); d < 0 {
		t.Fatalf("node B did not apply erin's rule")
	}
	erin := strings.TrimSpace(pgSQLIn(t, pg, "mg_serve", `SELECT id FROM rules WHERE account = 'erin@example.test'`))
	pgSQLIn(t, pg, "mg_serve", `SELECT pg_notify('mailgate_rules', '{"v":1,"node":"forged","del":[{"id":`+erin+
		`,"scope":"account","account":"erin@example.test","service":"all","action":"deny","match":"192.0.2.69"}]}')`)
	// The forged notice and a real one after it arrive in order: once
	// the real one is applied, the forged one was handled.
	a.MustCLI(t, "rule", "add", "--account", "frank@example.test", "--deny", "--ip", "192.0.2.70")
	if d := waitExplain(t, b, "frank@example.test", "192.0.2.70", "account_deny", time.Second); d < 0 {
		t.Fatalf("node B did not apply frank's rule")
	}
	if d := waitExplain(t, b, "erin@example.test", "192.0.2.69", "account_deny", 0); d < 0 {
		t.Errorf("a forged notice took erin's stored rule out of node B's memory")
	}

	// A rule written behind mailgate's back (no notice) while B's
	// listening connection is cut reaches B by the resync after its
	// reconnect.
	pgSQLIn(t, pg, "mg_serve", `UPDATE rule_ids SET max_id = max_id + 1000`)
	pgSQLIn(t, pg, "mg_serve", `INSERT INTO rules (id, scope, account, service, action, "match", comment, expires, created, created_by)
		SELECT max_id, 'account', 'dave@example.test', 'all', 'deny', '192.0.2.68', '', NULL, now(), 'psql' FROM rule_ids`)
	if got := waitExplain(t, b, "dave@example.test", "192.0.2.68", "account_deny", 300*time.Millisecond); got >= 0 {
		t.Fatalf("node B saw a rule nobody announced (the test cannot tell a resync from a notice)")
	}
	if n := pgSQLIn(t, pg, "mg_serve", `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'`); n != "2" {
		t.Fatalf("terminated %s listening connections, want 2 (one per node)", n)
	}
	if d := waitExplain(t, b, "dave@example.test", "192.0.2.68", "account_deny", 5*time.Second); d < 0 {
		t.Errorf("node B did not resync after its listening connection was cut")
	}

	a.MustCLI(t, "rule", "add", "--account", "alice@example.test", "--deny", "--ip", "192.0.2.66", "--comment", "from node A")
	a.MustCLI(t, "ban", "add", "--ip", "198.51.100.0/24", "--for", "1h", "--comment", "from node A")
	a.MustCLI(t, "permit", "add", "--ip", "203.0.113.9", "--for", "1h")

	if got := pgSQLIn(t, pg, "mg_serve", `SELECT account || ' ' || "match" FROM rules WHERE created_by <> 'psql' AND account NOT IN ('erin@example.test', 'frank@example.test')`); got != "alice@example.test 192.0.2.66" {
		t.Errorf("rules in PostgreSQL: %q", got)
	}
	if got := pgSQLIn(t, pg, "mg_serve", `SELECT prefix::text || ' ' || comment FROM bans`); got != "198.51.100.0/24 from node A" {
		t.Errorf("bans in PostgreSQL: %q", got)
	}
	if got := pgSQLIn(t, pg, "mg_serve", `SELECT prefix::text FROM permits`); got != "203.0.113.9/32" {
		t.Errorf("permits in PostgreSQL: %q", got)
	}

	b.Restart()
	out := b.MustCLI(t, "explain", "--account", "alice@example.test", "--ip", "192.0.2.66", "--service", "imap", "--json")
	if !strings.Contains(out, `"account_deny"`) {
		t.Errorf("node B after restart: explain: %s", out)
	}
	if out := b.MustCLI(t, "ban", "list"); !strings.Contains(out, "198.51.100.0/24") {
		t.Errorf("node B after restart: ban list: %s", out)
	}
	if out := b.MustCLI(t, "permit", "list"); !strings.Contains(out, "203.0.113.9") {
		t.Errorf("node B after restart: permit list: %s", out)
	}
	if out := b.MustCLI(t, "rule", "list"); !strings.Contains(out, "from node A") {
		t.Errorf("node B after restart: rule list: %s", out)
	}

	// Neither node made a SQLite database.
	for _, d := range []string{dirA, dirB} {
		if _, err := os.Stat(filepath.Join(d, "mailgate.db")); err == nil {
			t.Errorf("%s: a SQLite file was created with driver = postgres", d)
		}
	}
	_, stderr, err := a.CLI("backup", filepath.Join(dirA, "backup.db"))
	if err == nil || !strings.Contains(stderr, "pg_dump") {
		t.Errorf("backup on postgres: err %v, stderr %s", err, stderr)
	}
	for name, m := range map[string]*harness.MG{"A": a, "B": b} {
		if strings.Contains(m.Stderr(), pw) {
			t.Errorf("node %s's log shows the database password", name)
		}
		if !strings.Contains(m.Stderr(), "postgres mg_serve@127.0.0.63:") {
			t.Errorf("node %s's log does not name the database as user@host:port/db:\n%s", name, m.Stderr())
		}
	}
}

// waitExplain asks m's explain every 20 ms until account from ip gets
// reason for IMAP, for at most limit; it returns how long that took, or
// -1 if it never did.
func waitExplain(t *testing.T, m *harness.MG, account, ip, reason string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		out := m.MustCLI(t, "explain", "--account", account, "--ip", ip, "--service", "imap", "--json")
		var e struct{ Reason string }
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("explain: %v: %s", err, out)
		}
		if e.Reason == reason {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			return -1
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgSQLIn runs sql in database db as the superuser.
func pgSQLIn(t *testing.T, pg *harness.Postgres, db, sql string) string {
	t.Helper()
	return pg.SQLIn(t, db, sql)
}

// TestServePostgresDown stops PostgreSQL under a running node with a
// real Dovecot in front of it, and starts it again:
//   - while it is down, the Dovecot door still refuses by a stored rule
//     and lets a good login in, and the node's own automatic writes (a
//     relay permit from that login, a ban from failed logins) are kept in
//     memory;
//   - every CLI change (rule, ban and permit, add and rm) is refused with
//     one designed message, and memory is unchanged;
//   - status and metrics say the rule sync is disconnected;
//   - when it is back, the rule sync resyncs (a rule written by SQL while
//     the node could not connect appears), the automatic writes reach the
//     database, and CLI changes work again;
//   - no log and no error shows the password.
func TestServePostgresDown(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	pg := harness.StartPostgres(t, "127.0.0.64")
	const pw = "pg-Secret-down-5151"
	dsn := strings.Replace(pg.CreateDatabase(t, "mg_down", pw), ":"+pw+"@", "@", 1)
	dir := harness.TempDir(t, "pgd-")
	metrics := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := strings.Replace(pgMailgateConfig(t, dir, dsn, pw), "hook_socket = \"\"\n", `hook_socket = ""
never_networks = ["::1/128"]

[bruteforce]
addr_failures = 2

[metrics]
listen = "`+metrics+`"
`, 1)
	m := harness.StartMailgate(t, cfg)
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{alice: alicePW},
		PolicyURL: m.DovecotURL(),
		APIKey:    "e2e-policy-key-31337",
		Nonce:     nonce,
	})
	const (
		aliceDeniedPG = "127.0.0.81" // a stored rule denies alice from here
		aliceLogin    = "127.0.0.82" // alice logs in from here while PG is down
		guesser       = "127.0.0.83" // fails twice while PG is down: banned
	)
	m.MustCLI(t, "rule", "add", "--account", alice, "--deny", "--ip", aliceDeniedPG)
	m.MustCLI(t, "ban", "add", "--ip", "198.51.100.7", "--comment", "before the outage")
	m.MustCLI(t, "permit", "add", "--ip", "203.0.113.7", "--for", "1h")
	waitStatus(t, m, func(s statusRuleSync) bool { return s.Connected && s.Resyncs >= 1 })
	ruleID := pgSQLIn(t, pg, "mg_down", `SELECT id FROM rules WHERE account = '`+alice+`'`)

	pg.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ip := netip.MustParseAddr

	// Decisions go on from memory, through a real Dovecot.
	if d := waitExplain(t, m, alice, aliceDeniedPG, "account_deny", 0); d < 0 {
		t.Errorf("with the database down, the node lost its rule")
	}
	mustBeRefused(t, harness.IMAPLogin(ctx, ip(aliceDeniedPG), dc.IMAPAddr, alice, alicePW), "may not use IMAP")
	mustLogIn(t, harness.IMAPLogin(ctx, ip(aliceLogin), dc.IMAPAddr, alice, alicePW))
	for _, pw := range []string{wrongPW, wrongPW + "2"} { // a repeated password counts once
		mustBeRefused(t, harness.IMAPLogin(ctx, ip(guesser), dc.IMAPAddr, alice, pw), "")
	}
	// The node's own writes are kept in memory.
	if out := m.MustCLI(t, "permit", "list"); !strings.Contains(out, aliceLogin) {
		t.Errorf("the login's relay permit is not in memory: %s", out)
	}
	var autoBan string
	for deadline := time.Now().Add(5 * time.Second); autoBan == ""; time.Sleep(50 * time.Millisecond) {
		for _, l := range strings.Split(m.MustCLI(t, "ban", "list"), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[1] == guesser {
				autoBan = f[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no automatic ban of %s: %s", guesser, m.MustCLI(t, "ban", "list"))
		}
	}

	// Every CLI change is refused with the designed message, and memory
	// is what it was (rule list reads the database: explain shows the
	// rules in memory).
	before := map[string]string{}
	for _, what := range []string{"ban", "permit"} {
		before[what] = m.MustCLI(t, what, "list")
	}
	for _, args := range [][]string{
		{"rule", "add", "--account", "hank@example.test", "--deny", "--ip", "192.0.2.72"},
		{"rule", "rm", ruleID},
		{"ban", "add", "--ip", "198.51.100.8"},
		{"ban", "rm", autoBan},
		{"ban", "rm", "--ip", "198.51.100.7"},
		{"permit", "add", "--ip", "203.0.113.8", "--for", "1h"},
		{"permit", "rm", "--ip", aliceLogin},
	} {
		_, stderr, err := m.CLI(args...)
		if err == nil {
			t.Errorf("%s succeeded with the database down", strings.Join(args, " "))
			continue
		}
		want := "the store (PostgreSQL mg_down@" + pg.Addr + "/mg_down) is unreachable: connect: connection refused; nothing was changed; decisions go on from memory"
		if !strings.Contains(stderr, want) || strings.Contains(stderr, "failed to connect") {
			t.Errorf("%s with the database down:\n got %s\nwant %s", strings.Join(args, " "), strings.TrimSpace(stderr), want)
		}
	}
	for _, args := range [][]string{{"rule", "list"}, {"audit"}} {
		_, stderr, err := m.CLI(args...)
		if want := "the store (PostgreSQL mg_down@" + pg.Addr + "/mg_down) is unreachable: connect: connection refused"; err == nil || !strings.Contains(stderr, want) {
			t.Errorf("%s with the database down: %v: %s; want %q", strings.Join(args, " "), err, stderr, want)
		}
	}
	for _, what := range []string{"ban", "permit"} {
		if after := m.MustCLI(t, what, "list"); stripLeft(after) != stripLeft(before[what]) {
			t.Errorf("a refused %s change changed the node's memory:\nbefore %s\nafter %s", what, before[what], after)
		}
	}
	if d := waitExplain(t, m, "hank@example.test", "192.0.2.72", "default", 0); d < 0 {
		t.Errorf("a refused rule add changed the node's memory")
	}
	if d := waitExplain(t, m, alice, aliceDeniedPG, "account_deny", 0); d < 0 {
		t.Errorf("a refused rule rm changed the node's memory")
	}
	waitStatus(t, m, func(s statusRuleSync) bool { return !s.Connected })
	if out := m.MustCLI(t, "status"); !strings.Contains(out, "rule sync: DISCONNECTED from PostgreSQL mg_down@"+pg.Addr+"/mg_down for ") ||
		!strings.Contains(out, "(connect: connection refused): decisions go on from memory") {
		t.Errorf("status with the database down:\n%s", out)
	}
	if body := metricsBody(t, metrics); !strings.Contains(body, "mailgate_rulesync_connected 0\n") {
		t.Errorf("metrics with the database down:\n%s", rulesyncLines(body))
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(m.Stderr(), "rule sync: lost the database"); {
		if time.Now().After(deadline) {
			t.Fatalf("the rule sync did not log that it lost the database:\n%s", m.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A rule written while the node cannot connect (the server is up on
	// its unix socket only), with no notice: the resync after the
	// reconnect brings it.
	pg.StartUnixOnly(t)
	pgSQLIn(t, pg, "mg_down", `UPDATE rule_ids SET max_id = max_id + 1`)
	pgSQLIn(t, pg, "mg_down", `INSERT INTO rules (id, scope, account, service, action, "match", comment, expires, created, created_by)
		SELECT max_id, 'account', 'ivan@example.test', 'all', 'deny', '192.0.2.73', '', NULL, now(), 'psql' FROM rule_ids`)
	pg.Stop(t)
	resyncs := getStatus(t, m).Resyncs
	pg.Start(t)
	if d := waitExplain(t, m, "ivan@example.test", "192.0.2.73", "account_deny", 40*time.Second); d < 0 {
		t.Errorf("the rule written while the node was cut off did not arrive after the database came back")
	} else {
		t.Logf("the database back → the rule written meanwhile applied after %v (reconnect backoff included)", d)
	}
	waitStatus(t, m, func(s statusRuleSync) bool { return s.Connected && s.Resyncs > resyncs })
	if out := m.MustCLI(t, "status"); !strings.Contains(out, "rule sync: connected to PostgreSQL mg_down@"+pg.Addr+"/mg_down for ") {
		t.Errorf("status with the database back:\n%s", out)
	}
	if body := metricsBody(t, metrics); !strings.Contains(body, "mailgate_rulesync_connected 1\n") {
		t.Errorf("metrics with the database back:\n%s", rulesyncLines(body))
	}

	// The automatic writes made while it was down reach the database.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		permit := pgSQLIn(t, pg, "mg_down", `SELECT count(*) FROM permits WHERE prefix = '`+aliceLogin+`/32'`)
		ban := pgSQLIn(t, pg, "mg_down", `SELECT count(*) FROM bans WHERE id = `+autoBan+` AND prefix = '`+guesser+`/32'`)
		if permit == "1" && ban == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("automatic writes made while the database was down are not in it after its return: permit %s, ban %s", permit, ban)
		}
	}

	// CLI changes work again.
	m.MustCLI(t, "rule", "add", "--account", "hank@example.test", "--deny", "--ip", "192.0.2.72")
	m.MustCLI(t, "ban", "rm", autoBan)
	if got := pgSQLIn(t, pg, "mg_down", `SELECT count(*) FROM rules WHERE account = 'hank@example.test'`); got != "1" {
		t.Errorf("hank's rule in the database: %s", got)
	}
	if got := pgSQLIn(t, pg, "mg_down", `SELECT count(*) FROM bans WHERE id = `+autoBan); got != "0" {
		t.Errorf("ban %s still in the database after ban rm", autoBan)
	}
	if strings.Contains(m.Stderr(), pw) {
		t.Errorf("the password shows in the log")
	}
}

// stripLeft drops the LEFT column's countdown from a list (it ticks
// between two calls): every duration-like field becomes "-".
func stripLeft(s string) string { return leftField.ReplaceAllString(s, "-") }

var leftField = regexp.MustCompile(`\b(\d+h)?(\d+m)?\d+(\.\d+)?s\b`)

// statusRuleSync is the rule sync's part of GET /v1/status.
type statusRuleSync struct {
	Connected  bool       `json:"connected"`
	Resyncs    int64      `json:"resyncs"`
	Notices    int64      `json:"notices"`
	LastNotice *time.Time `json:"last_notice"`
}

func getStatus(t *testing.T, m *harness.MG) statusRuleSync {
	t.Helper()
	var s struct {
		RuleSync *statusRuleSync `json:"rule_sync"`
	}
	out := m.MustCLI(t, "status", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json: %v: %s", err, out)
	}
	if s.RuleSync == nil {
		t.Fatalf("status --json has no rule_sync: %s", out)
	}
	return *s.RuleSync
}

// waitStatus waits up to 10 s until the node's rule sync status is ok.
func waitStatus(t *testing.T, m *harness.MG, ok func(statusRuleSync) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		s := getStatus(t, m)
		if ok(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rule sync status stays %+v", s)
		}
	}
}

// metricsBody is the text of GET /metrics at addr.
func metricsBody(t *testing.T, addr string) string {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	return body
}

// rulesyncLines returns the mailgate_rulesync_ lines of a metrics text.
func rulesyncLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "mailgate_rulesync_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestConfigCheckConnect: config check --connect reaches the PostgreSQL
// store as serve would and reports its schema version: none yet before
// the first start, current after it; a wrong password and a stopped
// server are clear errors; neither the password nor the DSN is shown.
func TestConfigCheckConnect(t *testing.T) {
	pg := harness.StartPostgres(t, "127.0.0.65")
	const pw = "pg-Secret-check-6262"
	dsn := strings.Replace(pg.CreateDatabase(t, "mg_check", pw), ":"+pw+"@", "@", 1)
	dir := harness.TempDir(t, "pgc-")
	cfg := pgMailgateConfig(t, dir, dsn, pw)
	path := filepath.Join(dir, "mailgate.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := harness.Mailgate(t)
	check := func(wantCode int, want string) {
		t.Helper()
		out, errOut, code := remoteCLI(t, bin, nil, "config", "check", "--connect", "--config", path)
		if code != wantCode || !strings.Contains(out+errOut, want) {
			t.Errorf("config check --connect: exit %d, want %d and %q:\n%s%s", code, wantCode, want, out, errOut)
		}
		if strings.Contains(out+errOut, pw) || strings.Contains(out+errOut, "postgres://") {
			t.Errorf("config check --connect shows the password or the DSN:\n%s%s", out, errOut)
		}
	}
	check(0, "no mailgate schema yet")
	m := harness.StartMailgate(t, cfg)
	check(0, "store: PostgreSQL mg_check@"+pg.Addr+"/mg_check: connected (server 15.")
	check(0, "schema version 1 (current)")
	m.Terminate(10 * time.Second)

	if err := os.WriteFile(filepath.Join(dir, "pg-password"), []byte("wrong-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check(1, "cannot connect to PostgreSQL mg_check@"+pg.Addr+"/mg_check: FATAL: password authentication failed")
	pg.Stop(t)
	check(1, "cannot connect to PostgreSQL mg_check@"+pg.Addr+"/mg_check: connect: connection refused")
}

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// pgMailgateConfig is a daemon config in dir on the PostgreSQL store dsn,
// the password in a file (as docs/store-postgres.md advises).
func pgMailgateConfig(t *testing.T, dir, dsn, password string) string {
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

// TestServePostgresDown: with PostgreSQL stopped, a node keeps deciding
// from memory (explain answers with the rule it had), a rule change
// through the CLI fails with an error (and the daemon stays up), the
// rule sync says it lost the database, and nothing shows the password.
func TestServePostgresDown(t *testing.T) {
	pg := harness.StartPostgres(t, "127.0.0.64")
	const pw = "pg-Secret-down-5151"
	dsn := strings.Replace(pg.CreateDatabase(t, "mg_down", pw), ":"+pw+"@", "@", 1)
	dir := harness.TempDir(t, "pgd-")
	m := harness.StartMailgate(t, pgMailgateConfig(t, dir, dsn, pw))
	m.MustCLI(t, "rule", "add", "--account", "gina@example.test", "--deny", "--ip", "192.0.2.71")

	pg.Stop(t)
	if d := waitExplain(t, m, "gina@example.test", "192.0.2.71", "account_deny", 0); d < 0 {
		t.Errorf("with the database down, the node lost its rule")
	}
	_, stderr, err := m.CLI("rule", "add", "--account", "hank@example.test", "--deny", "--ip", "192.0.2.72")
	if err == nil {
		t.Fatalf("rule add succeeded with the database down")
	}
	t.Logf("rule add with the database down: %s", strings.TrimSpace(stderr))
	if d := waitExplain(t, m, "hank@example.test", "192.0.2.72", "default", 0); d < 0 {
		t.Errorf("a failed rule add changed the node's memory")
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(m.Stderr(), "rule sync: lost the database"); {
		if time.Now().After(deadline) {
			t.Fatalf("the rule sync did not log that it lost the database:\n%s", m.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(m.Stderr(), pw) || strings.Contains(stderr, pw) {
		t.Errorf("the password shows in the log or the CLI's error")
	}
}

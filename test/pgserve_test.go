package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
// database: a rule, a ban and a relay permit added through node A are in
// the database and in node B after B restarts (live propagation without
// a restart is LISTEN/NOTIFY, not built yet); node B's
// database has no SQLite file; no log shows the password; backup says to
// use pg_dump.
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

	a.MustCLI(t, "rule", "add", "--account", "alice@example.test", "--deny", "--ip", "192.0.2.66", "--comment", "from node A")
	a.MustCLI(t, "ban", "add", "--ip", "198.51.100.0/24", "--for", "1h", "--comment", "from node A")
	a.MustCLI(t, "permit", "add", "--ip", "203.0.113.9", "--for", "1h")

	if got := pgSQLIn(t, pg, "mg_serve", `SELECT account || ' ' || "match" FROM rules`); got != "alice@example.test 192.0.2.66" {
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

// pgSQLIn runs sql in database db as the superuser.
func pgSQLIn(t *testing.T, pg *harness.Postgres, db, sql string) string {
	t.Helper()
	return pg.SQLIn(t, db, sql)
}

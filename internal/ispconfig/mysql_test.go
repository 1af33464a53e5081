package ispconfig

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailgate/test/harness"
)

// The shop example of the howto, its blacklist example, an IPv6 address
// ("Don't forget IPv6!"), a network, and an email with a quote in it.
var mariaDBSetup = []string{
	"CREATE DATABASE dbispconfig",
	"USE dbispconfig",
	// mail_user as in ISPConfig 3.2 (install/sql/ispconfig3.sql)
	"CREATE TABLE `mail_user` (" +
		"`mailuser_id` int(11) unsigned NOT NULL AUTO_INCREMENT," +
		"`sys_userid` int(11) unsigned NOT NULL DEFAULT '0'," +
		"`sys_groupid` int(11) unsigned NOT NULL DEFAULT '0'," +
		"`sys_perm_user` varchar(5) NOT NULL DEFAULT ''," +
		"`sys_perm_group` varchar(5) NOT NULL DEFAULT ''," +
		"`sys_perm_other` varchar(5) NOT NULL DEFAULT ''," +
		"`server_id` int(11) unsigned NOT NULL DEFAULT '0'," +
		"`email` varchar(255) NOT NULL DEFAULT ''," +
		"`login` varchar(255) NOT NULL DEFAULT ''," +
		"`password` varchar(255) NOT NULL DEFAULT ''," +
		"`name` varchar(255) NOT NULL DEFAULT ''," +
		"`uid` int(11) NOT NULL DEFAULT '5000'," +
		"`gid` int(11) NOT NULL DEFAULT '5000'," +
		"`maildir` varchar(255) NOT NULL DEFAULT ''," +
		"`maildir_format` varchar(255) NOT NULL DEFAULT 'maildir'," +
		"`quota` bigint(20) NOT NULL DEFAULT '-1'," +
		"`cc` varchar(255) NOT NULL DEFAULT ''," +
		"`homedir` varchar(255) NOT NULL DEFAULT ''," +
		"`autoresponder` enum('n','y') NOT NULL DEFAULT 'n'," +
		"`autoresponder_start_date` datetime NULL DEFAULT NULL," +
		"`autoresponder_subject` varchar(255) NOT NULL DEFAULT 'Out of office reply'," +
		"`autoresponder_text` mediumtext NULL," +
		"`postfix` enum('n','y') NOT NULL DEFAULT 'y'," +
		"`access` enum('n','y') NOT NULL DEFAULT 'y'," +
		"`disableimap` enum('n','y') NOT NULL DEFAULT 'n'," +
		"`disablepop3` enum('n','y') NOT NULL DEFAULT 'n'," +
		"`disablesmtp` enum('n','y') NOT NULL DEFAULT 'n'," +
		"`disablesieve-filter` enum('n','y') NOT NULL DEFAULT 'n'," +
		"`backup_copies` INT NOT NULL DEFAULT '1'," +
		"PRIMARY KEY (`mailuser_id`)," +
		"KEY `server_id` (`server_id`,`email`)," +
		"KEY `email_access` (`email`,`access`)" +
		") ENGINE=MyISAM DEFAULT CHARSET=utf8",
	// verbatim from the howto
	"CREATE TABLE mail_user_ip_restriction ( restriction_id INT(11) UNSIGNED NOT NULL auto_increment, mailuser_id INT(11) UNSIGNED NOT NULL DEFAULT '0', ip VARCHAR(50) NOT NULL DEFAULT '', mode ENUM('w','b') NOT NULL DEFAULT 'w', service VARCHAR(10) NOT NULL DEFAULT '', PRIMARY KEY (`restriction_id`), KEY `ident` (`mailuser_id`, `mode`, `service`, `ip`) ) ENGINE=MyISAM",
	// an unrelated table whose text looks like what we parse
	"CREATE TABLE `sys_log` (`syslog_id` int unsigned NOT NULL AUTO_INCREMENT, `message` text, PRIMARY KEY (`syslog_id`))",
	"INSERT INTO `mail_user` (mailuser_id, sys_userid, sys_groupid, sys_perm_user, sys_perm_group, server_id, email, login, password, name, maildir, autoresponder_text) VALUES " +
		"(12345, 1, 1, 'riud', 'riud', 1, 'shop@example.com', 'shop@example.com', '$6$rounds=5000$abc$notarealhash', 'Shop', '/var/vmail/example.com/shop', NULL)," +
		"(12346, 1, 1, 'riud', 'riud', 1, 'info@example.com', 'info', '$6$x', 'Info; \"Desk\"', '/var/vmail/example.com/info', 'Out of office;\\nINSERT INTO `mail_user_ip_restriction` VALUES (9,12346,''6.6.6.6'',''w'','''');\\n-- back Monday \\\\o/')," +
		"(12347, 1, 1, 'riud', 'riud', 1, 'o''brien@example.org', 'o''brien@example.org', '$6$y', 'O''Brien', '/var/vmail/example.org/obrien', '')",
	"INSERT INTO `mail_user_ip_restriction` VALUES (NULL, 12345, '10.0.0.101', 'w', 'smtp')",
	"INSERT INTO `mail_user_ip_restriction` VALUES (NULL, 12345, 'none', 'w', 'pop3')",
	"INSERT INTO `mail_user_ip_restriction` VALUES (NULL, 12346, '123.234.123.234', 'b', '')",
	"INSERT INTO `mail_user_ip_restriction` VALUES (NULL, 12346, '123.234.123.235', 'b', 'smtp')",
	"INSERT INTO `mail_user_ip_restriction` VALUES (NULL, 12345, '2001:db8::101', 'w', 'smtp')",
	"INSERT INTO `mail_user_ip_restriction` VALUES (NULL, 12347, '192.0.2.0/24', 'w', 'imap')",
	"INSERT INTO `sys_log` (message) VALUES ('INSERT INTO `mail_user_ip_restriction` VALUES (1,1,''x'',''w'','''');'), ('it''s a \\'quote\\' \\\\')",
}

// mariaDBRows is what the setup holds, ordered by restriction_id.
var mariaDBRows = []Row{
	{Email: "shop@example.com", IP: "10.0.0.101", Mode: "w", Service: "smtp", RestrictionID: 1},
	{Email: "shop@example.com", IP: "none", Mode: "w", Service: "pop3", RestrictionID: 2},
	{Email: "info@example.com", IP: "123.234.123.234", Mode: "b", Service: "", RestrictionID: 3},
	{Email: "info@example.com", IP: "123.234.123.235", Mode: "b", Service: "smtp", RestrictionID: 4},
	{Email: "shop@example.com", IP: "2001:db8::101", Mode: "w", Service: "smtp", RestrictionID: 5},
	{Email: "o'brien@example.org", IP: "192.0.2.0/24", Mode: "w", Service: "imap", RestrictionID: 6},
}

// mariaDB is a private MariaDB server for one test.
type mariaDB struct {
	port   int
	client string // mariadb / mysql client binary
	dumper string // mariadb-dump / mysqldump binary
}

func (m *mariaDB) dsn(db string) string {
	return fmt.Sprintf("root@tcp(127.0.0.1:%d)/%s", m.port, db)
}

// lookBin finds the first of names on PATH or in /usr/sbin, /usr/bin.
func lookBin(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
			if p := filepath.Join(dir, n); fileExists(p) {
				return p
			}
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startMariaDB starts a MariaDB server in a temporary directory on a free
// loopback port, installing mariadb-server from Debian first if needed,
// and stops it (by its PID) when the test ends.
func startMariaDB(t *testing.T) *mariaDB {
	t.Helper()
	harness.Require(t, map[string]string{
		"/usr/sbin/mariadbd":          "mariadb-server",
		"/usr/bin/mariadb":            "mariadb-client",
		"/usr/bin/mariadb-dump":       "mariadb-client",
		"/usr/bin/mariadb-install-db": "mariadb-server",
	})
	server := lookBin("mariadbd", "mysqld")
	if server == "" {
		t.Fatal("mariadb-server installed, but no mariadbd or mysqld found")
	}
	installDB := lookBin("mariadb-install-db", "mysql_install_db")
	m := &mariaDB{client: lookBin("mariadb", "mysql"), dumper: lookBin("mariadb-dump", "mysqldump")}
	if installDB == "" || m.client == "" || m.dumper == "" {
		t.Fatalf("MariaDB is incomplete: install-db %q, client %q, dump %q", installDB, m.client, m.dumper)
	}

	dir := t.TempDir()
	datadir := filepath.Join(dir, "data")
	// A unix socket path is limited to 108 bytes; t.TempDir() may be longer.
	sockDir, err := os.MkdirTemp("", "mg-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })

	start := time.Now()
	out, err := exec.CommandContext(t.Context(), installDB, "--no-defaults", "--datadir="+datadir,
		"--user=root", "--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", installDB, err, lastLines(out, 30))
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.port = l.Addr().(*net.TCPAddr).Port
	l.Close()

	logFile := filepath.Join(dir, "error.log")
	cmd := exec.Command(server, "--no-defaults",
		"--datadir="+datadir,
		"--socket="+filepath.Join(sockDir, "s"),
		"--pid-file="+filepath.Join(dir, "mariadb.pid"),
		"--log-error="+logFile,
		fmt.Sprintf("--port=%d", m.port),
		"--bind-address=127.0.0.1",
		"--user=root",
		"--skip-grant-tables", // no accounts: the server is ours and on loopback only
		"--innodb-buffer-pool-size=16M",
		"--skip-name-resolve",
	)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", server, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})

	db, err := sql.Open("mysql", m.dsn("")+"?timeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			log, _ := os.ReadFile(logFile)
			t.Fatalf("mariadbd exited: %v\n%s", werr, lastLines(log, 30))
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile)
			t.Fatalf("mariadbd not ready after 30 s: %v\n%s", err, lastLines(log, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("MariaDB ready on port %d in %v", m.port, time.Since(start).Round(time.Millisecond))
	return m
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (m *mariaDB) exec(t *testing.T, stmts ...string) {
	t.Helper()
	db, err := sql.Open("mysql", m.dsn(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(t.Context()) // one connection, so USE sticks
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func (m *mariaDB) run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	args = append([]string{"--no-defaults", "--protocol=tcp", "-h127.0.0.1", fmt.Sprintf("-P%d", m.port), "-uroot"}, args...)
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}

func TestReadMySQL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MariaDB server")
	}
	m := startMariaDB(t)
	m.exec(t, mariaDBSetup...)

	rows, err := ReadMySQL(t.Context(), m.dsn("dbispconfig"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows, mariaDBRows) {
		t.Errorf("ReadMySQL:\ngot  %+v\nwant %+v", rows, mariaDBRows)
	}
	checkShopRules(t, rows)

	// The same data through a dump and through mysql -B, as an admin would
	// export it; with -update these become the golden files.
	dumps := map[string][]string{
		"mariadb-dump.sql":                 {"--skip-dump-date", "dbispconfig"},
		"mariadb-dump-complete.sql":        {"--skip-dump-date", "--complete-insert", "--skip-extended-insert", "dbispconfig"},
		"mariadb-dump-tables-nocreate.sql": {"--skip-dump-date", "--no-create-info", "dbispconfig", "mail_user", "mail_user_ip_restriction"},
	}
	for name, args := range dumps {
		out := m.run(t, m.dumper, args...)
		got, err := ReadSQLDump(bytes.NewReader(out))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !equalIgnoringLine(got, mariaDBRows) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", name, got, mariaDBRows)
		}
		updateGolden(t, name, out)
	}
	tsv := m.run(t, m.client, "-B", "dbispconfig", "-e",
		"SELECT r.restriction_id, m.email, r.ip, r.mode, r.service FROM mail_user_ip_restriction r JOIN mail_user m USING (mailuser_id) ORDER BY r.restriction_id")
	got, err := ReadCSV(bytes.NewReader(tsv))
	if err != nil {
		t.Errorf("mysql -B output: %v", err)
	} else if !equalIgnoringLine(got, mariaDBRows) {
		t.Errorf("mysql -B output:\ngot  %+v\nwant %+v", got, mariaDBRows)
	}
	updateGolden(t, "mysql-batch.tsv", tsv)

	// A restriction whose mail user was deleted is reported, not dropped.
	m.exec(t, "USE dbispconfig", "INSERT INTO mail_user_ip_restriction VALUES (77, 99999, '192.0.2.9', 'b', '')")
	_, err = ReadMySQL(t.Context(), m.dsn("dbispconfig"))
	if err == nil || !strings.Contains(err.Error(), "restriction_id 77") || !strings.Contains(err.Error(), "99999") {
		t.Errorf("orphan restriction: %v", err)
	}
	_, err = ReadSQLDump(bytes.NewReader(m.run(t, m.dumper, "dbispconfig")))
	if err == nil || !strings.Contains(err.Error(), "restriction_id 77") {
		t.Errorf("orphan restriction in a dump: %v", err)
	}

	// Errors name the server and never the password.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = ReadMySQL(ctx, m.dsn("nosuchdb"))
	if err == nil || !strings.Contains(err.Error(), "nosuchdb") {
		t.Errorf("missing database: %v", err)
	}
	_, err = ReadMySQL(ctx, fmt.Sprintf("root:s3cret@tcp(127.0.0.1:%d)/nosuchdb", m.port))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error with a password: %v", err)
	}
}

func TestReadMySQLBadDSN(t *testing.T) {
	_, err := ReadMySQL(t.Context(), "root:s3cret@tcp(127.0.0.1:1/db")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad DSN: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// nothing listens on port 1
	_, err = ReadMySQL(ctx, "u:s3cret@tcp(127.0.0.1:1)/db?timeout=2s")
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("refused connection: %v", err)
	}
}

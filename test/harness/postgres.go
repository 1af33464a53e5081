package harness

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PostgresBin is where Debian's postgresql-15 puts the server programs.
const PostgresBin = "/usr/lib/postgresql/15/bin"

// PostgresPackages maps the PostgreSQL binaries the store tests need to
// their Debian package.
var PostgresPackages = map[string]string{
	PostgresBin + "/initdb":   "postgresql-15",
	PostgresBin + "/postgres": "postgresql-15",
	PostgresBin + "/psql":     "postgresql-client-15",
}

// Postgres is a running PostgreSQL server in a temp dir, listening on a
// 127.0.0.x loopback address and a unix socket in its dir.
type Postgres struct {
	Addr     string // host:port of its TCP listener
	Dir      string // data dir's parent: holds the unix socket and the log
	User     string // superuser name
	Password string // superuser password (scram-sha-256 over TCP)

	proc *process // nil while stopped
	log  string
	args []string // postgres's arguments: the same data dir and port on every start
	cred *syscall.Credential
}

// StartPostgres runs initdb in a temp dir and starts postgres on ip (a
// 127.0.0.x address; "" for 127.0.0.1) and a free port, as the Debian
// user "postgres" (PostgreSQL refuses to run as root). TCP logins need a
// password (scram-sha-256); unix socket logins from the postgres user
// are trusted. It waits until the server accepts connections and stops
// it by PID when the test ends (its log is shown if the test failed).
func StartPostgres(t testing.TB, ip string) *Postgres {
	t.Helper()
	Require(t, PostgresPackages)
	if ip == "" {
		ip = "127.0.0.1"
	}
	if a := net.ParseIP(ip); a == nil || !a.IsLoopback() || a.To4() == nil {
		t.Fatalf("harness: StartPostgres: %q is not a 127.0.0.x address", ip)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("harness: StartPostgres needs the user postgres (package postgresql-common): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}

	dir := TempDir(t, "pg-")
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("harness: %v", err)
	}
	p := &Postgres{Dir: dir, User: "mailgate_admin", Password: "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	data := filepath.Join(dir, "data")
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(p.Password+"\n"), 0o600); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := os.Chown(pwfile, uid, gid); err != nil {
		t.Fatalf("harness: %v", err)
	}
	initdb := exec.Command(PostgresBin+"/initdb", "-D", data, "-U", p.User, "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("harness: initdb: %v\n%s", err, trimOutput(out))
	}
	os.Remove(pwfile)

	port := FreePort(t)
	p.Addr = net.JoinHostPort(ip, strconv.Itoa(port))
	p.log = filepath.Join(dir, "postgres.log")
	p.args = []string{"-D", data,
		"-c", "listen_addresses=" + ip,
		"-c", "port=" + strconv.Itoa(port),
		"-c", "unix_socket_directories=" + dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=16MB",
		"-c", "log_destination=stderr", "-c", "logging_collector=off"}
	p.cred = cred
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("harness: postgres log:\n%s", trimOutput([]byte(readFile(p.log))))
		}
	})
	p.start(t, true)
	return p
}

// start runs postgres on the data dir and address of p (on its unix
// socket only, without tcp) and waits until it accepts connections.
func (p *Postgres) start(t testing.TB, tcp bool) {
	t.Helper()
	args := p.args
	if !tcp {
		// The last -c of a setting wins.
		args = append(slices.Clip(args), "-c", "listen_addresses=")
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(PostgresBin+"/postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = p.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	proc, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start postgres: %v", err)
	}
	p.proc = proc
	if err := waitFor(20*time.Second, proc.done, func() error {
		if tcp {
			if err := dialTCP(p.Addr); err != nil {
				return err
			}
		}
		out, err := p.psqlErr("SELECT 1")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("harness: postgres did not come up: %v\n%s", err, trimOutput([]byte(readFile(p.log))))
	}
}

// stop stops the running server (fast shutdown), if any, and reports
// whether it had to be killed.
func (p *Postgres) stop() (error, bool) {
	if p.proc == nil {
		return nil, false
	}
	// SIGTERM is PostgreSQL's "smart" shutdown, which waits for
	// clients; SIGINT ("fast") disconnects them.
	p.proc.cmd.Process.Signal(syscall.SIGINT)
	err, killed := p.proc.stop(10 * time.Second)
	p.proc = nil
	return err, killed
}

// psqlErr runs one SQL command as the superuser over the unix socket.
func (p *Postgres) psqlErr(sql string) ([]byte, error) { return p.psqlIn("postgres", sql) }

// psqlIn runs one SQL command as the superuser in database db.
func (p *Postgres) psqlIn(db, sql string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, port, _ := net.SplitHostPort(p.Addr)
	cmd := exec.CommandContext(ctx, PostgresBin+"/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-h", p.Dir, "-p", port, "-U", p.User, "-d", db, "-At", "-c", sql)
	return cmd.CombinedOutput()
}

// SQL runs one SQL command as the superuser over the unix socket and
// returns its unaligned output.
func (p *Postgres) SQL(t testing.TB, sql string) string {
	t.Helper()
	out, err := p.psqlErr(sql)
	if err != nil {
		t.Fatalf("harness: psql %q: %v\n%s", sql, err, trimOutput(out))
	}
	return strings.TrimSpace(string(out))
}

// SQLIn is SQL in database db.
func (p *Postgres) SQLIn(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := p.psqlIn(db, sql)
	if err != nil {
		t.Fatalf("harness: psql -d %s %q: %v\n%s", db, sql, err, trimOutput(out))
	}
	return strings.TrimSpace(string(out))
}

// CreateDatabase creates a database owned by a new role of the same name
// with password pw, and returns a DSN (URL form) that logs in as that
// role over TCP with sslmode=disable.
func (p *Postgres) CreateDatabase(t testing.TB, name, pw string) string {
	t.Helper()
	p.SQL(t, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, quoteIdent(name), strings.ReplaceAll(pw, "'", "''")))
	p.SQL(t, fmt.Sprintf(`CREATE DATABASE %s OWNER %s`, quoteIdent(name), quoteIdent(name)))
	u := url.URL{Scheme: "postgres", User: url.UserPassword(name, pw), Host: p.Addr, Path: "/" + name,
		RawQuery: "sslmode=disable&connect_timeout=5"}
	return u.String()
}

// Stop stops the server now (fast shutdown) and waits for it to exit.
// The data dir is kept: Start brings the same server back.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	if err, killed := p.stop(); killed {
		t.Logf("harness: postgres had to be killed (%v)", err)
	}
}

// Start starts a server Stop stopped again, on the same data dir,
// address and port, and waits until it accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if p.proc != nil {
		t.Fatalf("harness: Postgres.Start: the server is running")
	}
	p.start(t, true)
}

// StartUnixOnly starts a server Stop stopped on its unix socket only: SQL
// and SQLIn work, and clients over TCP (mailgate) still find it down.
func (p *Postgres) StartUnixOnly(t testing.TB) {
	t.Helper()
	if p.proc != nil {
		t.Fatalf("harness: Postgres.StartUnixOnly: the server is running")
	}
	p.start(t, false)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

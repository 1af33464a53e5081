package harness

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DovecotOptions configures StartDovecot.
type DovecotOptions struct {
	// Users maps login to plain password, written to a passwd-file passdb.
	Users map[string]string
	// PolicyURL is auth_policy_server_url (e.g. (*MG).DovecotURL());
	// empty leaves the auth policy off.
	PolicyURL string
	// APIKey, when set, is sent as auth_policy_server_api_header =
	// X-API-Key: <key>.
	APIKey string
	// Nonce is auth_policy_hash_nonce; a random one is used when empty.
	Nonce string
	// RejectOnFail sets auth_policy_reject_on_fail = yes.
	RejectOnFail bool
	// AuthListener adds a TCP listener on 127.0.0.1 (a free port, in
	// Dovecot.AuthAddr) to the auth service: the auth client protocol
	// Postfix's SASL and mailgate's password verification speak
	// (protocols.md §2.4 and §5.1):
	//   service auth { inet_listener auth-inet { address = 127.0.0.1  port = N } }
	AuthListener bool
	// TrustedNetworks is login_trusted_networks (space-separated CIDRs):
	// clients connecting from there may set their original address with
	// IMAP ID x-originating-ip.
	TrustedNetworks string
	// PostLogin maps a protocol ("imap", "pop3") to the post-login script
	// Dovecot runs after each successful login over it (protocols.md
	// §4.2): the command line script-login runs, e.g.
	// "/path/to/mailgate hook postlogin --socket /path/hook.sock imap".
	// Dovecot appends the continuation (/usr/lib/dovecot/script-login),
	// which the script must exec. Rendered as
	//   service imap { executable = imap imap-postlogin }
	//   service imap-postlogin {
	//     executable = script-login <command line>
	//     user = <PostLoginUser>
	//     unix_listener imap-postlogin { }
	//   }
	PostLogin map[string]string
	// PostLoginUser is the user the post-login script runs as; empty
	// means root (the harness's temp dirs and the mailgate binary it
	// builds are not for other users).
	PostLoginUser string
	// Extra is appended verbatim to dovecot.conf.
	Extra string
}

// Dovecot is a running Dovecot 2.3 instance in a temp dir, listening on
// 127.0.0.1 only.
type Dovecot struct {
	Dir      string // config, users, log, mail, run dirs
	Conf     string // dovecot.conf
	LogPath  string // Dovecot's log_path
	IMAPAddr string // 127.0.0.1:port
	POP3Addr string // 127.0.0.1:port
	Nonce    string // auth_policy_hash_nonce in use
	// AuthAddr is 127.0.0.1:port of the auth service's TCP listener when
	// DovecotOptions.AuthListener is set, else empty.
	AuthAddr string
	// AuthSocket is the auth service's default client socket
	// (base_dir/auth-client), which root may connect to.
	AuthSocket string

	instance string // instance_name, which every process of this Dovecot shows
	proc     *process
}

// StartDovecot installs Dovecot if missing (Require), writes a config like
// protocols.md §5.1 into a temp dir with free ports for IMAP and POP3 (and
// the auth service, with AuthListener), runs the master in the foreground
// (`dovecot -F -c <conf>`) and waits until every port accepts. It stops the
// master by the PID in base_dir/master.pid when the test ends and logs
// Dovecot's log if the test failed.
func StartDovecot(t testing.TB, opts DovecotOptions) *Dovecot {
	t.Helper()
	Require(t, DovecotPackages)
	dir := TempDir(t, "dc-")
	d := &Dovecot{
		Dir:      dir,
		Conf:     filepath.Join(dir, "dovecot.conf"),
		LogPath:  filepath.Join(dir, "dovecot.log"),
		IMAPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		POP3Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		Nonce:    opts.Nonce,
		instance: "mailgate-e2e-" + randomHex(4),
	}
	d.AuthSocket = filepath.Join(dir, "run", "auth-client")
	if opts.AuthListener {
		d.AuthAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	}
	if d.IMAPAddr == d.POP3Addr || d.AuthAddr == d.IMAPAddr || d.AuthAddr == d.POP3Addr {
		t.Fatalf("harness: got the same free port twice: imap %s pop3 %s auth %s", d.IMAPAddr, d.POP3Addr, d.AuthAddr)
	}
	if d.Nonce == "" {
		d.Nonce = randomHex(8)
	}
	for proto, cmdline := range opts.PostLogin {
		if proto != "imap" && proto != "pop3" {
			t.Fatalf("harness: DovecotOptions.PostLogin: protocol %q, want imap or pop3", proto)
		}
		if strings.TrimSpace(cmdline) == "" || strings.ContainsAny(cmdline, "\n{}") {
			t.Fatalf("harness: DovecotOptions.PostLogin[%q] = %q: want one command line", proto, cmdline)
		}
	}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	// Mail is written by the mail processes, which run as uid dovecot.
	if out, err := exec.Command("chown", "dovecot:dovecot", filepath.Join(dir, "mail")).CombinedOutput(); err != nil {
		t.Fatalf("harness: chown dovecot mail dir: %v\n%s", err, out)
	}
	var users strings.Builder
	logins := make([]string, 0, len(opts.Users))
	for u := range opts.Users {
		logins = append(logins, u)
	}
	sort.Strings(logins)
	for _, u := range logins {
		p := opts.Users[u]
		if strings.ContainsAny(u+p, ":\n") {
			t.Fatalf("harness: user %q or its password contains ':' or a newline, which passwd-file cannot hold", u)
		}
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::::\n", u, p)
	}
	usersPath := filepath.Join(dir, "users")
	if err := os.WriteFile(usersPath, []byte(users.String()), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if err := os.WriteFile(d.Conf, []byte(d.config(opts, usersPath)), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}

	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("harness: dovecot stdout/stderr:\n%s", readFile(filepath.Join(dir, "stderr.log")))
			t.Logf("harness: dovecot log (%s):\n%s", d.LogPath, readFile(d.LogPath))
		}
	})
	d.start(t)
	return d
}

// start runs the master in the foreground with d.Conf and waits until
// every listener accepts.
func (d *Dovecot) start(t testing.TB) {
	t.Helper()
	out, err := os.OpenFile(filepath.Join(d.Dir, "stderr.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	defer out.Close()
	cmd := exec.Command("/usr/sbin/dovecot", "-F", "-c", d.Conf)
	cmd.Stdout = out
	cmd.Stderr = out
	start := time.Now()
	d.proc, err = startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start dovecot: %v", err)
	}
	addrs := []string{d.IMAPAddr, d.POP3Addr}
	if d.AuthAddr != "" {
		addrs = append(addrs, d.AuthAddr)
	}
	// Ready means greeted: imap-login and pop3-login greet only once they
	// are connected to the auth service. (Stopped before that, the master
	// hangs for 5 s waiting for its half-started children.)
	err = waitFor(15*time.Second, d.proc.done, func() error {
		if err := greeted(d.IMAPAddr, "* OK"); err != nil {
			return err
		}
		if err := greeted(d.POP3Addr, "+OK"); err != nil {
			return err
		}
		if d.AuthAddr != "" {
			return dialTCP(d.AuthAddr)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("harness: dovecot did not start listening: %v\nstderr:\n%s\nlog:\n%s",
			err, readFile(filepath.Join(d.Dir, "stderr.log")), readFile(d.LogPath))
	}
	t.Logf("harness: dovecot pid %d listening on %s in %v",
		cmd.Process.Pid, strings.Join(addrs, " "), time.Since(start).Round(time.Millisecond))
}

// greeted checks that the server at addr sends a greeting line starting
// with prefix.
func greeted(addr, prefix string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, prefix) {
		return fmt.Errorf("greeting from %s: %q", addr, line)
	}
	return nil
}

// Stop stops Dovecot now (it is also stopped when the test ends): the
// master and every process it had, so that its listeners refuse
// connections and connected auth clients see the connection close, until
// Restart.
func (d *Dovecot) Stop(t testing.TB) {
	t.Helper()
	d.stop(t)
}

// Restart starts a stopped Dovecot again with the same config, on the
// same ports, and waits until it listens; a running one is stopped first.
func (d *Dovecot) Restart(t testing.TB) {
	t.Helper()
	d.stop(t)
	d.start(t)
}

// config renders dovecot.conf.
func (d *Dovecot) config(opts DovecotOptions, usersPath string) string {
	dir := d.Dir
	_, imapPort, _ := net.SplitHostPort(d.IMAPAddr)
	_, pop3Port, _ := net.SplitHostPort(d.POP3Addr)
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by mailgate's test harness.
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = %[2]s
log_path = %[3]s
info_log_path = %[3]s
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:%[1]s/mail/%%u
first_valid_uid = 0
passdb {
  driver = passwd-file
  args = %[4]s
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=%[1]s/mail/%%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = %[5]s
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[6]s
  }
  inet_listener pop3s {
    port = 0
  }
}
`, dir, d.instance, d.LogPath, usersPath, imapPort, pop3Port)
	if opts.PolicyURL != "" {
		fmt.Fprintf(&b, "auth_policy_server_url = %s\n", opts.PolicyURL)
		fmt.Fprintf(&b, "auth_policy_hash_nonce = %s\n", d.Nonce)
		if opts.APIKey != "" {
			fmt.Fprintf(&b, "auth_policy_server_api_header = X-API-Key: %s\n", opts.APIKey)
		}
		if opts.RejectOnFail {
			b.WriteString("auth_policy_reject_on_fail = yes\n")
		}
	}
	if d.AuthAddr != "" {
		_, authPort, _ := net.SplitHostPort(d.AuthAddr)
		fmt.Fprintf(&b, `service auth {
  inet_listener auth-inet {
    address = 127.0.0.1
    port = %s
  }
}
`, authPort)
	}
	if opts.TrustedNetworks != "" {
		fmt.Fprintf(&b, "login_trusted_networks = %s\n", opts.TrustedNetworks)
	}
	protos := make([]string, 0, len(opts.PostLogin))
	for p := range opts.PostLogin {
		protos = append(protos, p)
	}
	sort.Strings(protos)
	user := opts.PostLoginUser
	if user == "" {
		user = "root"
	}
	for _, p := range protos {
		fmt.Fprintf(&b, `service %[1]s {
  executable = %[1]s %[1]s-postlogin
}
service %[1]s-postlogin {
  executable = script-login %[2]s
  user = %[3]s
  unix_listener %[1]s-postlogin {
  }
}
`, p, opts.PostLogin[p], user)
	}
	if opts.Extra != "" {
		b.WriteString(opts.Extra)
		b.WriteString("\n")
	}
	return b.String()
}

// stop sends SIGTERM to the master named in base_dir/master.pid (which is
// the process the harness started, as it runs in the foreground), waits up
// to 5 s, then kills it.
func (d *Dovecot) stop(t testing.TB) {
	if d.proc == nil {
		return
	}
	pidFile := filepath.Join(d.Dir, "run", "master.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid != d.proc.cmd.Process.Pid {
			t.Logf("harness: %s says pid %s, but the harness started pid %d; stopping the latter",
				pidFile, strings.TrimSpace(string(b)), d.proc.cmd.Process.Pid)
		}
	}
	master := d.proc.cmd.Process.Pid
	children := childPIDs(master)
	start := time.Now()
	_, killed := d.proc.stop(5 * time.Second)
	t.Logf("harness: dovecot stopped in %v", time.Since(start).Round(time.Millisecond))
	if killed {
		t.Logf("harness: dovecot ignored SIGTERM for 5 s and was killed")
	}
	d.proc = nil
	// The master's auth, anvil, log and stats children outlive it for as
	// long as an auth client (Postfix, mailgate) stays connected to the
	// auth service. Stop them too, by the PIDs the master had, so that a
	// stopped Dovecot is gone as after a crash or a reboot.
	if n := d.stopOrphans(children, 5*time.Second); n > 0 {
		t.Logf("harness: stopped %d dovecot processes that outlived the master", n)
	}
}

// stopOrphans sends SIGTERM to those of pids that still run as a process of
// this instance, waits up to grace for them to exit, then kills the rest.
// It returns how many were still running.
func (d *Dovecot) stopOrphans(pids []int, grace time.Duration) int {
	ours := func(pid int) bool {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		return err == nil && strings.Contains(string(b), d.instance+"/")
	}
	var alive []int
	for _, pid := range pids {
		if ours(pid) {
			alive = append(alive, pid)
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	for _, pid := range alive {
		for ours(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if ours(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return len(alive)
}

// childPIDs lists the processes whose parent is pid, from /proc.
func childPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// Socket is the path of a unix_listener named name (relative names are
// relative to base_dir), e.g. "auth-mailgate" of
// etc/dovecot/96-mailgate-auth.conf added with DovecotOptions.Extra.
func (d *Dovecot) Socket(name string) string {
	return filepath.Join(d.Dir, "run", name)
}

// Log returns Dovecot's log so far.
func (d *Dovecot) Log() string {
	return readFile(d.LogPath)
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

package harness

import (
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

	proc *process
}

// StartDovecot installs Dovecot if missing (Require), writes a config like
// protocols.md §5.1 into a temp dir with free ports for IMAP and POP3, runs
// the master in the foreground (`dovecot -F -c <conf>`) and waits until
// both ports accept. It stops the master by the PID in base_dir/master.pid
// when the test ends and logs Dovecot's log if the test failed.
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
	}
	if d.IMAPAddr == d.POP3Addr {
		t.Fatalf("harness: got the same free port twice: %s", d.IMAPAddr)
	}
	if d.Nonce == "" {
		d.Nonce = randomHex(8)
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

	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	defer out.Close()
	cmd := exec.Command("/usr/sbin/dovecot", "-F", "-c", d.Conf)
	cmd.Stdout = out
	cmd.Stderr = out
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("harness: dovecot stdout/stderr:\n%s", readFile(filepath.Join(dir, "stderr.log")))
			t.Logf("harness: dovecot log (%s):\n%s", d.LogPath, readFile(d.LogPath))
		}
	})
	start := time.Now()
	d.proc, err = startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start dovecot: %v", err)
	}
	err = waitFor(15*time.Second, d.proc.done, func() error {
		for _, a := range []string{d.IMAPAddr, d.POP3Addr} {
			if err := dialTCP(a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("harness: dovecot did not start listening: %v\nstderr:\n%s\nlog:\n%s",
			err, readFile(filepath.Join(dir, "stderr.log")), readFile(d.LogPath))
	}
	t.Logf("harness: dovecot pid %d listening on imap %s pop3 %s in %v",
		cmd.Process.Pid, d.IMAPAddr, d.POP3Addr, time.Since(start).Round(time.Millisecond))
	return d
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
instance_name = mailgate-e2e-%[2]s
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
`, dir, randomHex(4), d.LogPath, usersPath, imapPort, pop3Port)
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
	start := time.Now()
	_, killed := d.proc.stop(5 * time.Second)
	t.Logf("harness: dovecot stopped in %v", time.Since(start).Round(time.Millisecond))
	if killed {
		t.Logf("harness: dovecot ignored SIGTERM for 5 s and was killed")
	}
	d.proc = nil
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

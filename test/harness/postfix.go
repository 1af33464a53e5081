package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// postfixDaemonDir is Debian's daemon_directory, where master lives.
const postfixDaemonDir = "/usr/lib/postfix/sbin"

// PostfixPackages maps each Postfix binary the tests need to the Debian
// package that installs it. Postfix's installer asks a debconf question;
// RequirePostfix answers it ("No configuration") before installing.
var PostfixPackages = map[string]string{
	"/usr/sbin/postfix":               "postfix",
	postfixDaemonDir + "/master":      "postfix",
	postfixDaemonDir + "/smtpd":       "postfix",
	postfixDaemonDir + "/postlogd":    "postfix",
	postfixDaemonDir + "/discard":     "postfix",
	"/usr/sbin/postconf":              "postfix",
	"/usr/bin/script":                 "bsdutils",
	"/usr/bin/debconf-set-selections": "debconf",
}

// PostfixDebconf is the debconf answer that makes installing Postfix
// non-interactive and leaves /etc/postfix/main.cf alone (the tests bring
// their own config): feed it to `debconf-set-selections` before
// `apt-get install postfix`.
const PostfixDebconf = "postfix postfix/main_mailer_type select No configuration"

// PostfixOptions configures StartPostfix.
type PostfixOptions struct {
	// XClientHosts is smtpd_authorized_xclient_hosts: the clients allowed
	// to send XCLIENT (nginx). Empty means 127.0.0.1.
	XClientHosts string
	// DovecotSASL is the address (host:port) of a Dovecot auth service
	// listener (Dovecot.AuthAddr with DovecotOptions.AuthListener) for
	// smtpd_sasl_type = dovecot. Required: Postfix counts an XCLIENT
	// LOGIN= as authenticated (permit_sasl_authenticated) only while SASL
	// is enabled, and its Dovecot SASL client kills each smtpd that
	// cannot reach the auth service ("fatal: no SASL authentication
	// mechanisms"). Clients may also AUTH at Postfix directly, checked by
	// Dovecot.
	DovecotSASL string
	// Extra is appended verbatim to main.cf. A parameter it sets (a
	// line "name = ..." at the start of a line) replaces the harness's
	// line for that parameter, which is left out: Postfix would use the
	// last value but warn "overriding earlier entry". main.cf has no
	// inline comments: "x = y # c" makes "# c" part of the value.
	Extra string
	// MasterExtra is appended verbatim to master.cf: more services, such
	// as a second smtpd on another port (take one from FreePort) with its
	// own "-o" overrides.
	MasterExtra string
}

// Postfix is a running Postfix 3.7 instance in a temp dir with one smtpd
// on 127.0.0.1. It relays for SASL-authenticated clients only (XCLIENT
// LOGIN= from an authorized XCLIENT host counts as authenticated):
// mynetworks holds no loopback address. Every message, local or relayed,
// is delivered by the discard transport, so a relayed message is
// accepted, logged and dropped.
type Postfix struct {
	Dir      string // main.cf, master.cf, spool/, data/, maillog
	SMTPAddr string // the smtpd, 127.0.0.1:port

	maillog string
	proc    *process
}

// RequirePostfix installs Postfix if it is missing, answering its debconf
// question first (PostfixDebconf) so that apt does not ask.
func RequirePostfix(t testing.TB) {
	t.Helper()
	if len(missingPackages(PostfixPackages)) == 0 {
		return
	}
	if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
		if _, err := exec.LookPath("debconf-set-selections"); err == nil {
			cmd := exec.Command("debconf-set-selections")
			cmd.Stdin = strings.NewReader(PostfixDebconf + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("harness: debconf-set-selections %q: %v\n%s", PostfixDebconf, err, out)
			}
		}
	}
	Require(t, PostfixPackages)
}

// StartPostfix installs Postfix if missing (RequirePostfix), writes a
// main.cf and master.cf like protocols.md §5.3 into a temp dir (one smtpd
// on a free 127.0.0.1 port, maillog_file in the temp dir), checks it with
// `postfix -c DIR check` (which also creates the queue directories), runs
// the master in the foreground as the harness's child (`master -c DIR
// -s`, what `postfix start-fg` runs) and waits until the smtpd port
// accepts. The master is stopped by its PID (SIGTERM, which is what
// `postfix stop` sends) when the test ends; the maillog is logged if the
// test failed.
func StartPostfix(t testing.TB, opts PostfixOptions) *Postfix {
	t.Helper()
	RequirePostfix(t)
	if opts.DovecotSASL == "" {
		t.Fatalf("harness: PostfixOptions.DovecotSASL is required (start Dovecot with AuthListener: true and pass its AuthAddr)")
	}
	if opts.XClientHosts == "" {
		opts.XClientHosts = "127.0.0.1"
	}
	dir := TempDir(t, "pf-")
	p := &Postfix{
		Dir:      dir,
		SMTPAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		maillog:  filepath.Join(dir, "maillog"),
	}
	for _, sub := range []string{"spool", "data"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	// The master's lock file and the smtpd's caches live in
	// data_directory, which must belong to mail_owner.
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("harness: chown postfix data dir: %v\n%s", err, out)
	}
	// Postfix waits (300 ms at a time) until a config file it reads is
	// older than a second or two, in case an editor is still writing it:
	// date the files back to skip that wait in every postfix program.
	past := time.Now().Add(-time.Hour)
	for name, content := range map[string]string{"main.cf": p.mainCF(opts), "master.cf": p.masterCF(opts)} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatalf("harness: %v", err)
		}
		if err := os.Chtimes(path, past, past); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("harness: postfix maillog (%s):\n%s", p.maillog, readFile(p.maillog))
		}
	})

	start := time.Now()
	// postfix prints its fatal errors only to a terminal (protocols.md §6
	// gotcha 2): run it under script(1) to see them. `check` creates the
	// missing queue directories with the right owners.
	if out, err := runOnTTY(30*time.Second, "/usr/sbin/postfix", "-c", dir, "check"); err != nil {
		t.Fatalf("harness: postfix -c %s check: %v\n%s\nmaillog:\n%s", dir, err, out, readFile(p.maillog))
	}
	stderrPath := filepath.Join(dir, "master.stderr")
	out, err := os.Create(stderrPath)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	defer out.Close()
	cmd := exec.Command(postfixDaemonDir+"/master", "-c", dir, "-s")
	cmd.Stdout = out
	cmd.Stderr = out
	p.proc, err = startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start postfix master: %v", err)
	}
	err = waitFor(15*time.Second, p.proc.done, func() error { return dialTCP(p.SMTPAddr) })
	if err != nil {
		t.Fatalf("harness: postfix did not start listening on %s: %v\nmaster stderr:\n%s\nmaillog:\n%s",
			p.SMTPAddr, err, readFile(stderrPath), readFile(p.maillog))
	}
	t.Logf("harness: postfix master pid %d listening on smtp %s in %v",
		cmd.Process.Pid, p.SMTPAddr, time.Since(start).Round(time.Millisecond))
	return p
}

// mainCF renders main.cf. No inline comments: Postfix would take them as
// part of the value.
func (p *Postfix) mainCF(opts PostfixOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by mailgate's test harness.
compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
maillog_file = %[2]s
maillog_file_prefixes = %[1]s
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# No loopback address here: test clients connect from 127.0.0.0/8 and
# must not be trusted as mynetworks.
mynetworks = 192.0.2.0/24
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = example.test
virtual_mailbox_maps =
virtual_transport = discard:
default_transport = discard:
relay_transport = discard:
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
biff = no
smtpd_banner = $myhostname ESMTP test
# XCLIENT LOGIN= only counts for permit_sasl_authenticated while SASL is on.
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:%[4]s
smtpd_authorized_xclient_hosts = %[3]s
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
`, p.Dir, p.maillog, opts.XClientHosts, opts.DovecotSASL)
	if opts.Extra == "" {
		return b.String()
	}
	set := extraParams(opts.Extra)
	var out strings.Builder
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if name, _, ok := strings.Cut(line, "="); ok && set[strings.TrimSpace(name)] && !strings.HasPrefix(line, "#") {
			continue
		}
		out.WriteString(line)
	}
	out.WriteString(opts.Extra)
	out.WriteString("\n")
	return out.String()
}

// extraParams returns the names of the parameters main.cf text sets:
// lines "name = value" that start at the first column (continuation
// lines start with white space, comments with #).
func extraParams(text string) map[string]bool {
	set := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
			continue
		}
		if name, _, ok := strings.Cut(line, "="); ok {
			set[strings.TrimSpace(name)] = true
		}
	}
	return set
}

// masterCF renders master.cf: one smtpd on SMTPAddr and the services it
// and the discard transport need (postlog for maillog_file, tlsmgr for an
// smtpd with TLS); chroot off everywhere; then opts.MasterExtra.
func (p *Postfix) masterCF(opts PostfixOptions) string {
	s := fmt.Sprintf(`# Written by mailgate's test harness.
%s inet n - n - - smtpd
pickup    unix  n  -  n  60     1  pickup
cleanup   unix  n  -  n  -      0  cleanup
qmgr      unix  n  -  n  300    1  qmgr
rewrite   unix  -  -  n  -      -  trivial-rewrite
bounce    unix  -  -  n  -      0  bounce
defer     unix  -  -  n  -      0  bounce
trace     unix  -  -  n  -      0  bounce
verify    unix  -  -  n  -      1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -      -  proxymap
proxywrite unix -  -  n  -      1  proxymap
smtp      unix  -  -  n  -      -  smtp
relay     unix  -  -  n  -      -  smtp
showq     unix  n  -  n  -      -  showq
error     unix  -  -  n  -      -  error
retry     unix  -  -  n  -      -  error
discard   unix  -  -  n  -      -  discard
anvil     unix  -  -  n  -      1  anvil
scache    unix  -  -  n  -      1  scache
postlog   unix-dgram n - n  -   1  postlogd
tlsmgr    unix  -  -  n  1000?  1  tlsmgr
`, p.SMTPAddr)
	if opts.MasterExtra != "" {
		s += opts.MasterExtra
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
	}
	return s
}

// stop sends SIGTERM to the master (what `postfix stop` does; the master
// then stops its children), waits up to 5 s, then kills it.
func (p *Postfix) stop(t testing.TB) {
	if p.proc == nil {
		return
	}
	pidFile := filepath.Join(p.Dir, "spool", "pid", "master.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid != p.proc.cmd.Process.Pid {
			t.Logf("harness: %s says pid %d, but the harness started pid %d; stopping the latter",
				pidFile, pid, p.proc.cmd.Process.Pid)
		}
	}
	start := time.Now()
	_, killed := p.proc.stop(5 * time.Second)
	t.Logf("harness: postfix stopped in %v", time.Since(start).Round(time.Millisecond))
	if killed {
		t.Logf("harness: postfix master ignored SIGTERM for 5 s and was killed")
	}
	p.proc = nil
}

// MailLog returns Postfix's maillog so far.
func (p *Postfix) MailLog() string {
	return readFile(p.maillog)
}

// Warnings returns the maillog lines with "warning:", "fatal:" or
// "panic:" in them since the master started: a config Postfix accepts at
// start can still make smtpd warn (an unknown restriction, a table it
// cannot reach) when a client comes. (`postfix check`'s complaints about
// the harness's temp dirs, logged before, are left out.)
func (p *Postfix) Warnings() []string {
	log := p.MailLog()
	if i := strings.LastIndex(log, " daemon started -- "); i >= 0 {
		log = log[i:]
	}
	var ws []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, " warning: ") || strings.Contains(line, " fatal: ") || strings.Contains(line, " panic: ") {
			ws = append(ws, line)
		}
	}
	return ws
}

// WaitMailLog waits up to 5 s for a maillog line containing every one of
// parts and returns it; it fails t, showing the maillog, otherwise.
// Postfix writes its log through postlogd, a moment after the SMTP reply.
func (p *Postfix) WaitMailLog(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		log := p.MailLog()
		for _, line := range strings.Split(log, "\n") {
			if containsAll(line, parts) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in postfix's maillog:\n%s", parts, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containsAll reports whether s contains every one of parts.
func containsAll(s string, parts []string) bool {
	for _, part := range parts {
		if !strings.Contains(s, part) {
			return false
		}
	}
	return true
}

// runOnTTY runs a command under script(1), so that it believes its
// output is a terminal, and returns what it printed. script -e passes on
// the command's exit status.
func runOnTTY(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	line := name
	for _, a := range args {
		line += " " + shellQuote(a)
	}
	cmd := exec.CommandContext(ctx, "/usr/bin/script", "-qec", line, "/dev/null")
	out, err := cmd.CombinedOutput()
	return out, err
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

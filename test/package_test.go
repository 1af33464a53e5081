package test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPackage builds the Debian package with `make deb`, installs it on
// this machine, verifies the unit with systemd-analyze, starts the daemon
// the way the unit would (its ExecStart as its User, with its runtime,
// state and logs directories, in a mount namespace where everything else
// is read-only, a private /tmp and /home; in a network namespace of its
// own so that it clashes with nothing), asks it `mailgate status`, stops
// it by PID, then removes the package (the data stays) and purges it
// (the data, the config and the user go). The package is purged at the
// end even when the test fails.
//
// It changes the machine (a package, a user, /var/lib/mailgate): it runs
// only as root, and `make test` is meant for a test machine.
func TestPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installs a package: needs root")
	}
	for _, p := range []string{"dpkg", "dpkg-deb", "setpriv", "unshare", "systemd-analyze", "make", "ip"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("no %s (make deps installs it)", p)
		}
	}
	// One package test at a time on this machine.
	lock, err := os.OpenFile("/run/lock/mailgate-package-test", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", "mailgate").Output(); err == nil && strings.Contains(string(out), "installed") {
		t.Fatalf("a mailgate package is installed already (%s): this test would replace and purge it", out)
	}
	if _, err := user.Lookup("mailgate"); err == nil {
		t.Fatal("a user mailgate exists already: this test would delete it on purge")
	}

	root := repoRoot(t)
	debdir := t.TempDir()
	out := must(t, root, "make", "-s", "deb", "DEBDIR="+debdir)
	deb := strings.TrimSpace(lastLine(out))
	if !strings.HasPrefix(filepath.Base(deb), "mailgate_") || !strings.HasSuffix(deb, "_amd64.deb") {
		t.Fatalf("make deb printed %q", out)
	}

	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "-P", "mailgate").CombinedOutput(); err != nil {
			t.Errorf("dpkg -P mailgate: %v\n%s", err, out)
		}
	})
	must(t, root, "dpkg", "-i", deb)
	// Installing again is an upgrade: the user and the config stay.
	must(t, root, "dpkg", "-i", deb)

	for path, mode := range map[string]os.FileMode{
		"/usr/bin/mailgate":                               0o755,
		"/lib/systemd/system/mailgate.service":            0o644,
		"/etc/mailgate/mailgate.toml":                     0o640,
		"/etc/logrotate.d/mailgate":                       0o644,
		"/usr/share/man/man8/mailgate.8.gz":               0o644,
		"/usr/share/bash-completion/completions/mailgate": 0o644,
		"/usr/share/doc/mailgate/mailgate.toml.example":   0o644,
		"/var/lib/mailgate":                               os.ModeDir | 0o750,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("after dpkg -i: %v", err)
		} else if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	if _, err := user.Lookup("mailgate"); err != nil {
		t.Fatalf("no user mailgate after dpkg -i: %v", err)
	}
	if got := must(t, root, "dpkg-query", "-W", "-f=${Conffiles}", "mailgate"); !strings.Contains(got, "/etc/mailgate/mailgate.toml") {
		t.Errorf("/etc/mailgate/mailgate.toml is not a conffile: %q", got)
	}
	// The short config is valid as shipped.
	if got := must(t, root, "/usr/bin/mailgate", "config", "check", "--config", "/etc/mailgate/mailgate.toml"); !strings.Contains(got, "/etc/mailgate/mailgate.toml: ok") {
		t.Errorf("config check: %s", got)
	}
	if got := must(t, root, "/usr/bin/mailgate", "version"); !strings.Contains(got, "commit ") || strings.Contains(got, "commit unknown") {
		t.Errorf("mailgate version: %q", got)
	}

	// The unit, as systemd reads it (no running systemd needed).
	unitPath := "/lib/systemd/system/mailgate.service"
	cmd := exec.Command("systemd-analyze", "verify", unitPath)
	vout, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(vout, []byte("mailgate.service")) {
		t.Errorf("systemd-analyze verify: %v\n%s", err, vout)
	}
	unit := readUnit(t, unitPath)
	for key, want := range map[string]string{
		"User": "mailgate", "Group": "mailgate", "ProtectSystem": "strict", "StateDirectory": "mailgate",
		"RuntimeDirectory": "mailgate", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
		"Documentation": "man:mailgate(8) file:///usr/share/doc/mailgate/install.md",
	} {
		if unit[key] != want {
			t.Errorf("unit: %s=%q, want %q", key, unit[key], want)
		}
	}
	if _, err := os.Stat("/usr/share/doc/mailgate/install.md"); err != nil {
		t.Errorf("the unit's Documentation=: %v", err)
	}

	// Start it as the unit would, in namespaces of its own.
	script := `
set -eu
ip link set lo up
# /run of our own: no clash with a /run/mailgate of the host.
mount -t tmpfs -o mode=0755 tmpfs /run
# RuntimeDirectory=, StateDirectory=, LogsDirectory= (modes from the unit)
install -d -o "$SVC_USER" -g "$SVC_GROUP" -m "$RUNTIME_MODE" /run/mailgate
install -d -o "$SVC_USER" -g "$SVC_GROUP" -m "$STATE_MODE" /var/lib/mailgate
install -d -o "$SVC_USER" -g "$SVC_GROUP" -m "$LOGS_MODE" /var/log/mailgate
# ProtectSystem=strict: every mount read-only but the API file systems...
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r mp; do
	case $mp in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
	mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
# ...and the unit's writable directories.
for d in /run/mailgate /var/lib/mailgate /var/log/mailgate; do mount --bind "$d" "$d"; mount -o remount,bind,rw "$d"; done
# PrivateTmp=, ProtectHome=
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o ro,mode=0755 tmpfs /home
mount -t tmpfs -o ro,mode=0700 tmpfs /root
if touch /usr/lib/mailgate-probe /etc/mailgate/probe 2>/dev/null; then echo "SANDBOX: / is writable"; exit 1; fi

# ExecStart= as User=/Group= with NoNewPrivileges=
setpriv --reuid="$SVC_USER" --regid="$SVC_GROUP" --init-groups --no-new-privs -- $EXEC_START 2>&3 &
pid=$!
i=0
until /usr/bin/mailgate status --config /etc/mailgate/mailgate.toml >/tmp/status 2>/tmp/status.err; do
	i=$((i+1))
	if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then echo "STATUS FAILED"; cat /tmp/status.err; kill $pid 2>/dev/null; exit 1; fi
	sleep 0.1
done
echo "STATUS:"; cat /tmp/status
echo "DAEMON USER: $(ps -o user= -p $pid)"
# A user outside the socket's group is told why and what to do.
echo "OTHER USER:"; setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/mailgate status 2>&1 || echo "exit $?"
echo "OTHER USER, SOCKET:"; setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/mailgate status --socket /run/mailgate/admin.sock 2>&1 || echo "exit $?"
echo "GROUP MEMBER:"; setpriv --reuid=nobody --regid=nogroup --groups="$SVC_GROUP" /usr/bin/mailgate status --config /etc/mailgate/mailgate.toml 2>&1 | head -1
kill -TERM $pid
wait $pid && echo "STOPPED: 0" || echo "STOPPED: $?"
`
	env := append(os.Environ(),
		"SVC_USER="+unit["User"], "SVC_GROUP="+unit["Group"], "EXEC_START="+unit["ExecStart"],
		"RUNTIME_MODE="+orDefault(unit["RuntimeDirectoryMode"], "0755"),
		"STATE_MODE="+orDefault(unit["StateDirectoryMode"], "0755"),
		"LOGS_MODE="+orDefault(unit["LogsDirectoryMode"], "0755"))
	sb := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "--fork", "sh", "-c", script+"\n", "sandbox")
	sb.Env = env
	var daemonLog bytes.Buffer
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	sb.ExtraFiles = []*os.File{w}
	done := make(chan struct{})
	go func() { daemonLog.ReadFrom(r); close(done) }()
	sout, err := sb.CombinedOutput()
	w.Close()
	<-done
	r.Close()
	s := string(sout)
	if err != nil {
		t.Fatalf("sandbox: %v\n%s\ndaemon:\n%s", err, s, daemonLog.String())
	}
	for _, want := range []string{
		"STATUS:\nmailgate ", "DAEMON USER: mailgate",
		"permission denied reading /etc/mailgate/mailgate.toml (it names the admin socket): run this as root, or as a member of the group mailgate (adduser $USER mailgate, then log in again)\nexit 1",
		"permission denied on the admin socket /run/mailgate/admin.sock: run this as root, or as a member of the group mailgate (adduser $USER mailgate, then log in again)\nexit 1",
		"GROUP MEMBER:\nmailgate ", "STOPPED: 0",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("sandbox output lacks %q:\n%s\ndaemon:\n%s", want, s, daemonLog.String())
		}
	}
	for _, f := range []string{"/var/lib/mailgate/mailgate.db", "/var/lib/mailgate/dovecot-api-key"} {
		if fi, err := os.Stat(f); err != nil {
			t.Errorf("the daemon did not write %s: %v", f, err)
		} else if st := fi.Sys().(*syscall.Stat_t); lookupUID(t, "mailgate") != st.Uid {
			t.Errorf("%s is not owned by mailgate", f)
		}
	}

	// Remove: the data, the config and the user stay; the binary goes.
	must(t, root, "dpkg", "-r", "mailgate")
	for _, f := range []string{"/var/lib/mailgate/mailgate.db", "/etc/mailgate/mailgate.toml"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after dpkg -r: %v", err)
		}
	}
	if _, err := os.Stat("/usr/bin/mailgate"); err == nil {
		t.Error("after dpkg -r: /usr/bin/mailgate is still there")
	}
	if _, err := user.Lookup("mailgate"); err != nil {
		t.Errorf("after dpkg -r: %v", err)
	}
	// Purge: all gone.
	must(t, root, "dpkg", "-P", "mailgate")
	for _, f := range []string{"/var/lib/mailgate", "/etc/mailgate", "/var/log/mailgate", "/lib/systemd/system/mailgate.service"} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("after dpkg -P: %s is still there", f)
		}
	}
	if _, err := user.Lookup("mailgate"); err == nil {
		t.Error("after dpkg -P: the user mailgate is still there")
	}
	if _, err := user.LookupGroup("mailgate"); err == nil {
		t.Error("after dpkg -P: the group mailgate is still there")
	}
}

func repoRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func must(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// readUnit reads the [Service] and [Unit] keys of a unit file (the last
// value of a key wins, as in systemd for these keys).
func readUnit(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

func lookupUID(t *testing.T, name string) uint32 {
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	var uid uint32
	for _, c := range u.Uid {
		uid = uid*10 + uint32(c-'0')
	}
	return uid
}

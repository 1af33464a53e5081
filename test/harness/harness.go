// Package harness runs mailgate end to end: it builds the real mailgate
// binary, starts `mailgate serve` with a config in a temp dir, starts the
// real mail programs (Dovecot, nginx, Postfix) pointed at
// it, installs those programs from Debian when they are missing, and logs in
// with real clients from distinct 127.0.0.x source addresses.
//
// It is for tests under test/ only. It is not a mock of anything: every
// helper talks to a real process over real sockets, and every helper fails
// the test (never skips it) when the environment cannot provide what the
// test needs.
//
// The harness is Linux-only (any 127.0.0.0/8 address can be a source
// address on Linux loopback) and expects to run as root, as the mail
// programs drop privileges to their own users.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Debian packages that provide the programs the doors are tested against.
var (
	// DovecotPackages maps each Dovecot binary the tests need to the
	// Debian package that installs it.
	DovecotPackages = map[string]string{
		"/usr/sbin/dovecot":           "dovecot-core",
		"/usr/lib/dovecot/imap-login": "dovecot-imapd",
		"/usr/lib/dovecot/pop3-login": "dovecot-pop3d",
	}
)

// aptLockPath serializes apt runs between test binaries of one `go test`
// run (go test runs packages in parallel).
const aptLockPath = "/tmp/mailgate-e2e-apt.lock"

// aptUpdated makes `apt-get update` run at most once per test process.
var aptUpdated struct {
	once sync.Once
	out  []byte
	err  error
}

// Require makes sure every binary in binaries (path → Debian package that
// provides it) exists. Missing ones are installed with apt-get (after one
// `apt-get update` per process), under a file lock so parallel test
// binaries do not run apt at the same time. If that fails the test fails
// with apt's output: the end-to-end tests must not pass by skipping.
func Require(t testing.TB, binaries map[string]string) {
	t.Helper()
	if len(missingPackages(binaries)) == 0 {
		return
	}
	unlock, err := lockFile(aptLockPath)
	if err != nil {
		t.Fatalf("harness: lock %s: %v", aptLockPath, err)
	}
	defer unlock()
	// Another test binary may have installed them while we waited.
	pkgs := missingPackages(binaries)
	if len(pkgs) == 0 {
		return
	}
	t.Logf("harness: installing %s with apt-get", strings.Join(pkgs, " "))
	start := time.Now()
	aptUpdated.once.Do(func() {
		aptUpdated.out, aptUpdated.err = runApt("update")
	})
	if aptUpdated.err != nil {
		t.Fatalf("harness: apt-get update: %v\n%s", aptUpdated.err, aptUpdated.out)
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if out, err := runApt(args...); err != nil {
		t.Fatalf("harness: apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if still := missingPackages(binaries); len(still) > 0 {
		t.Fatalf("harness: apt-get installed %s but these binaries are still missing: %s",
			strings.Join(pkgs, " "), strings.Join(missingBinaries(binaries), " "))
	}
	t.Logf("harness: installed %s in %v", strings.Join(pkgs, " "), time.Since(start).Round(time.Millisecond))
}

// missingBinaries lists the binaries that do not exist, sorted.
func missingBinaries(binaries map[string]string) []string {
	var miss []string
	for bin := range binaries {
		if _, err := os.Stat(bin); err != nil {
			miss = append(miss, bin)
		}
	}
	sort.Strings(miss)
	return miss
}

// missingPackages lists the packages of the missing binaries, sorted and
// without duplicates.
func missingPackages(binaries map[string]string) []string {
	var pkgs []string
	for _, bin := range missingBinaries(binaries) {
		pkgs = append(pkgs, binaries[bin])
	}
	sort.Strings(pkgs)
	return slices.Compact(pkgs)
}

// runApt runs apt-get non-interactively with a generous timeout and returns
// its combined output. It waits for dpkg's lock (someone else's apt run)
// instead of failing at once.
func runApt(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args = append([]string{"-o", "DPkg::Lock::Timeout=300"}, args...)
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.Stdin = nil
	return cmd.CombinedOutput()
}

// lockFile takes an exclusive flock on path, creating it if needed.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// small race (someone else may take it before it is used) is accepted: the
// program that binds it then fails to start, and the test says so.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("harness: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TempDir makes a directory with a short path (unix socket paths are
// limited to 107 bytes) readable by every user (the mail programs run as
// their own users and must reach their config, sockets and mail), and
// removes it when the test ends.
func TempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("harness: temp dir: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("harness: chmod %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("harness: remove %s: %v", dir, err)
		}
	})
	return dir
}

// waitFor polls cond every 20 ms until it returns nil, the deadline
// passes (then it returns cond's last error) or stop is closed.
func waitFor(timeout time.Duration, stop <-chan struct{}, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %v: %w", timeout, err)
		}
		select {
		case <-stop:
			return fmt.Errorf("process exited: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dialTCP checks that something accepts TCP connections at addr.
func dialTCP(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// readFile returns a file's contents, or a note saying why it could not.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", filepath.Base(path), err)
	}
	return string(b)
}

// process is a child process the harness started and must stop.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, valid after done
}

// startProcess starts cmd. The child gets SIGTERM if the test process dies
// without running its cleanups (a go test timeout), so no daemon outlives
// the test.
func startProcess(cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the process and waits up to grace for it to exit,
// then kills it. It reports how the process ended and whether SIGKILL was
// needed.
func (p *process) stop(grace time.Duration) (err error, killed bool) {
	select {
	case <-p.done:
		return p.err, false
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM pid %d: %w", p.cmd.Process.Pid, err), false
	}
	select {
	case <-p.done:
		return p.err, false
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
	return p.err, true
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// trimOutput shortens long program output for error messages.
func trimOutput(b []byte) string {
	b = bytes.TrimSpace(b)
	const max = 4000
	if len(b) > max {
		return "…" + string(b[len(b)-max:])
	}
	return string(b)
}

// Eventually polls cond every 20 ms until it returns nil, and fails t with
// cond's last error when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := waitFor(timeout, nil, cond); err != nil {
		t.Fatal(err)
	}
}

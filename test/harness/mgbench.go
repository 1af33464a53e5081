package harness

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Mgbench builds this module's cmd/mgbench (the doors' load tool) into a
// temp dir of t and returns its path.
func Mgbench(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("harness: go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "mgbench")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "mailgate/cmd/mgbench")
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("harness: go build mailgate/cmd/mgbench: %v\n%s", err, trimOutput(out))
	}
	return bin
}

// StartProcess starts cmd as a child the test owns: it gets SIGTERM if
// the test process dies, and is killed (by its PID) and waited for when
// the test ends. Wait returns its exit once it ended.
func StartProcess(t testing.TB, cmd *exec.Cmd) (wait func() error) {
	t.Helper()
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return func() error {
		<-p.done
		return p.err
	}
}

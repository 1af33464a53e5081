package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// remoteCLI runs the mailgate CLI with args and env (only these
// variables, and PATH), never with a config or socket: it reaches the
// daemon through --server alone. code is the exit status.
func remoteCLI(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Dir = t.TempDir()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("mailgate %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// TestCLIRemoteServer: the CLI reaches a node's admin TCP listener
// ([admin] listen + token) with --server: it adds a rule (token from
// --token-file) and lists bans (token from MAILGATE_TOKEN); the change is
// on the node, audited as the token's. A wrong token is refused with a
// clear message and changes nothing; a closed port, a token file others
// can read, plain http to another host and a missing token are refused
// with what to do.
func TestCLIRemoteServer(t *testing.T) {
	const token = "remote-admin-token-7f3a9c"
	dir := harness.TempDir(t, "remote-")
	listen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := strings.Replace(mailgateConfig(t, dir, apiKey, ""), "[admin]\n", fmt.Sprintf("[admin]\nlisten = %q\ntoken = %q\n", listen, token), 1)
	m := harness.StartMailgate(t, cfg)
	server := "http://" + listen
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m.MustCLI(t, "ban", "add", "--ip", "198.51.100.9", "--comment", "banned locally")

	out, errOut, code := remoteCLI(t, m.Bin, nil, "rule", "add", "--server", server, "--token-file", tokFile,
		"--account", "remote@example.test", "--deny", "--ip", "192.0.2.90", "--comment", "over tcp")
	if code != 0 || !strings.Contains(out, "added rule") {
		t.Fatalf("rule add --server: exit %d\n%s%s", code, out, errOut)
	}
	if got := m.MustCLI(t, "rule", "list"); !strings.Contains(got, "remote@example.test") {
		t.Errorf("the rule added over TCP is not on the node: %s", got)
	}
	if got := m.MustCLI(t, "audit"); !strings.Contains(got, "api-token") {
		t.Errorf("the audit trail does not name the token as the actor: %s", got)
	}
	out, errOut, code = remoteCLI(t, m.Bin, []string{"MAILGATE_TOKEN=" + token}, "ban", "list", "--server", server)
	if code != 0 || !strings.Contains(out, "198.51.100.9") {
		t.Errorf("ban list --server with MAILGATE_TOKEN: exit %d\n%s%s", code, out, errOut)
	}

	// A wrong token: refused, nothing changed.
	before := m.MustCLI(t, "rule", "list")
	_, errOut, code = remoteCLI(t, m.Bin, []string{"MAILGATE_TOKEN=not-the-token-0000000"}, "rule", "add", "--server", server,
		"--account", "intruder@example.test", "--deny", "--ip", "192.0.2.91")
	if code != 1 || !strings.Contains(errOut, server+" refused the token (HTTP 401)") || !strings.Contains(errOut, "nothing was changed") {
		t.Errorf("wrong token: exit %d, stderr %s", code, errOut)
	}
	if after := m.MustCLI(t, "rule", "list"); after != before {
		t.Errorf("a refused token changed the rules:\nbefore %s\nafter %s", before, after)
	}
	if strings.Contains(m.Stderr(), "not-the-token") || strings.Contains(m.Stderr(), token) {
		t.Errorf("the daemon's log shows a token")
	}

	closed := fmt.Sprintf("http://127.0.0.1:%d", harness.FreePort(t))
	worldReadable := filepath.Join(dir, "token-644")
	if err := os.WriteFile(worldReadable, []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(worldReadable, 0o644)
	for _, c := range []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"ban", "list", "--server", closed}, []string{"MAILGATE_TOKEN=" + token}, 1, "nothing answers at " + closed + " (connection refused)"},
		{[]string{"ban", "list", "--server", server, "--token-file", worldReadable}, nil, 1, "chmod 600"},
		{[]string{"ban", "list", "--server", "http://192.0.2.1:4080"}, []string{"MAILGATE_TOKEN=" + token}, 2, "clear text"},
		{[]string{"ban", "list", "--server", server}, nil, 2, "MAILGATE_TOKEN"},
	} {
		_, errOut, code := remoteCLI(t, m.Bin, c.env, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %s; want exit %d and %q", strings.Join(c.args, " "), code, errOut, c.code, c.want)
		}
	}
}

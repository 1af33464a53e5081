package postfix

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/internal/policy"
)

// TestPostmap asks the socketmap and tcp_table servers with the real
// Postfix client, `postmap -q` (protocols.md §3.5), when Postfix is
// installed: the answers Postfix decodes must be the handler's, '%' and
// UTF-8 included, and an unknown socketmap name must be a query error.
func TestPostmap(t *testing.T) {
	postmap, err := exec.LookPath("postmap")
	if err != nil {
		t.Skip("postmap not installed (Debian package postfix)")
	}
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte("compatibility_level = 3.6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEngineMsgs(t, []string{"global all deny 198.51.100.0/24"}, []string{"127.0.0.93/32"},
		policy.Messages{"global_deny": "Blocked 100% (é) for {ip}"})
	ev := newEnv(t, DefaultConfig(), e)
	ev.permits.add("127.0.0.91/32", "alice@example.test")
	_, smap := startServer(t, ev.h, nil, "socketmap")
	_, tcp := startServer(t, ev.h, nil, "tcp:client")

	query := func(key, table string) (string, int) {
		t.Helper()
		cmd := exec.Command(postmap, "-c", conf, "-q", key, table)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("postmap: %v", err)
		}
		return string(out), 0
	}
	for key, want := range map[string]string{
		"unknown":          "",
		"127.0.0.91":       "OK\n",
		"127.0.0.92":       "",
		"::1":              "",
		"198.51.100.7":     "REJECT Blocked 100% (é) for 198.51.100.7\n",
		"127.0.0.93":       "REJECT Too many failed logins from your address (127.0.0.93); please try again later.\n",
		"a key%with space": "",
	} {
		for _, table := range []string{"socketmap:inet:" + smap + ":client", "tcp:" + tcp} {
			out, code := query(key, table)
			if want == "" && (code != 1 || out != "") || want != "" && (code != 0 || out != want) {
				t.Errorf("postmap -q %q %s: exit %d, %q; want %q", key, table, code, out, want)
			}
		}
	}
	out, code := query("127.0.0.91", "socketmap:inet:"+smap+":clientmap")
	if code == 0 || !strings.Contains(out, "permanent error: unknown map name") {
		t.Errorf("unknown map: exit %d, %q", code, out)
	}
}

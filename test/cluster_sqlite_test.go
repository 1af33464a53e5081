package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// TestClusterSQLitePermitStored: with a SQLite store on each node, a
// relay permit added by hand on node A is stored by node B too
// (docs/multi-server.md: "With SQLite, each node stores everything in its
// own file"), so B still has it after a restart.
func TestClusterSQLitePermitStored(t *testing.T) {
	r := harness.StartRedis(t, "127.0.0.102")
	node := func(name string) *harness.MG {
		dir := harness.TempDir(t, "cls"+name+"-")
		rFile := filepath.Join(dir, "redis-password")
		if err := os.WriteFile(rFile, []byte(r.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return harness.StartMailgate(t, fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
listen = "127.0.0.1:%d"
api_key = %q

[relay]
enabled = true
ttl = "1h"
never_networks = ["127.0.9.0/24"]
hook_socket = ""

[cluster]
enabled = true
redis = "redis://%s"
password_file = %q
node = %q
timeout = "500ms"
dial_timeout = "500ms"
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), harness.FreePort(t), clKey, r.Addr, rFile, "node-"+name))
	}
	a, b := node("a"), node("b")
	clWait(t, 10*time.Second, "both nodes connected", func() bool {
		sa, sb := clStatus(t, a), clStatus(t, b)
		return sa.Up && sb.Up && len(sa.Nodes) >= 2 && len(sb.Nodes) >= 2
	})
	a.MustCLI(t, "permit", "add", "--ip", "127.0.6.41", "--for", "1h")
	clWait(t, time.Second, "A's permit on B", func() bool {
		return strings.Contains(b.MustCLI(t, "permit", "list"), "127.0.6.41")
	})
	b.Restart()
	if out := b.MustCLI(t, "permit", "list"); !strings.Contains(out, "127.0.6.41") {
		t.Errorf("B lost A's permit at its restart (not in its own store):\n%s", out)
	}
	// Withdrawn on A: B's store forgets it too.
	a.MustCLI(t, "permit", "rm", "--ip", "127.0.6.41")
	clWait(t, time.Second, "A's withdrawal on B", func() bool {
		return !strings.Contains(b.MustCLI(t, "permit", "list"), "127.0.6.41")
	})
	b.Restart()
	if out := b.MustCLI(t, "permit", "list"); strings.Contains(out, "127.0.6.41") {
		t.Errorf("A's withdrawn permit came back on B at its restart:\n%s", out)
	}
}

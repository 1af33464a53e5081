package test

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"mailgate/test/harness"
)

const clNotifyRedisIP = "127.0.0.87"

// clNotifyConfig is a node with its own SQLite store, the shared Redis
// and a webhook for login_banned to its own receiver.
func clNotifyConfig(t *testing.T, dir, name string, r *harness.Redis, hookURL string) string {
	t.Helper()
	rFile, keyFile := filepath.Join(dir, "redis-password"), filepath.Join(dir, "webhook.key")
	if err := os.WriteFile(rFile, []byte(r.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(ntWebhookKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return mailgateConfig(t, dir, clKey, fmt.Sprintf(`
[cluster]
enabled = true
redis = "redis://%s"
password_file = %q
node = %q
timeout = "500ms"
dial_timeout = "500ms"

[[notify]]
name = "hook"
kind = "webhook"
url = %q
secret_file = %q
events = ["login_banned"]
`, r.Addr, rFile, name, hookURL, keyFile))
}

// TestClusterNotifyOnce: a login banned by failures one node saw is
// notified by that node only; the other node, which makes the same ban
// from the published failures, tells nobody. Each receiver's events come
// in order through one queue, so a later ban of the node's own is the
// marker that nothing else is on its way.
func TestClusterNotifyOnce(t *testing.T) {
	r := harness.StartRedis(t, clNotifyRedisIP)
	rcv := map[string]*ntReceiver{}
	nodes := map[string]*harness.MG{}
	for _, name := range []string{"a", "b"} {
		rcv[name] = &ntReceiver{got: make(chan struct{}, 16)}
		hook := httptest.NewServer(rcv[name]) // 127.0.0.1
		t.Cleanup(hook.Close)
		nodes[name] = harness.StartMailgate(t, clNotifyConfig(t, harness.TempDir(t, "cln"+name+"-"), "node-"+name, r, hook.URL))
	}
	a, b := nodes["a"], nodes["b"]
	clWait(t, 10*time.Second, "both nodes connected and seeing two nodes", func() bool {
		for _, m := range []*harness.MG{a, b} {
			if s := clStatus(t, m); !s.Up || len(s.Nodes) < 2 {
				return false
			}
		}
		return true
	})

	// ban makes three failures of login on m (rule (a): 3 from 2+
	// addresses) and waits until both nodes hold the ban.
	ban := func(m *harness.MG, login string, net int) {
		t.Helper()
		for i := range 3 {
			clReport(t, m, login, "198.51."+strconv.Itoa(net)+"."+strconv.Itoa(10+i), "0d0e0f0"+strconv.Itoa(i), false)
		}
		clWait(t, 5*time.Second, login+" banned on both nodes", func() bool {
			return clBanID(t, a, login) != 0 && clBanID(t, b, login) != 0
		})
	}
	// wait returns the logins of node's events once want of them came.
	wait := func(node string, want int) []string {
		t.Helper()
		x := rcv[node]
		deadline := time.After(10 * time.Second) // a bound on a hang
		for {
			x.mu.Lock()
			n, bad := len(x.events), len(x.bad)
			var logins []string
			for _, e := range x.events {
				logins = append(logins, string(e.Event)+":"+e.Login)
			}
			x.mu.Unlock()
			if bad > 0 {
				t.Fatalf("node %s's receiver got %d bad requests", node, bad)
			}
			if n >= want {
				return logins
			}
			select {
			case <-x.got:
			case <-deadline:
				t.Fatalf("node %s's receiver got %q, want %d events; its log:\n%s", node, logins, want, nodes[node].Stderr())
			}
		}
	}

	ban(a, "first@example.test", 100)  // seen by A
	ban(b, "second@example.test", 101) // seen by B: B's first event
	if got := wait("b", 1); len(got) != 1 || got[0] != "login_banned:second@example.test" {
		t.Errorf("node B told %q, want only its own ban of second@example.test", got)
	}
	ban(a, "third@example.test", 102) // seen by A: A's second event
	if got := wait("a", 2); len(got) != 2 || got[0] != "login_banned:first@example.test" || got[1] != "login_banned:third@example.test" {
		t.Errorf("node A told %q, want its own bans of first@ and third@example.test", got)
	}
}

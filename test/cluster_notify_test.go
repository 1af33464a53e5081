package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/api"
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
	// told collects what both receivers got until want arrived, then
	// waits two more settle times (2 s each) for a second notification
	// of a ban: the nodes tell banSettle after the ban, so a duplicate
	// would come within that time of the first.
	told := func(want int) map[string]int {
		t.Helper()
		count := func() (map[string]int, int) {
			seen, n := map[string]int{}, 0
			for name, x := range rcv {
				x.mu.Lock()
				if len(x.bad) > 0 {
					t.Fatalf("node %s's receiver got %d bad requests", name, len(x.bad))
				}
				for _, e := range x.events {
					seen[string(e.Event)+":"+e.Login]++
					n++
				}
				x.mu.Unlock()
			}
			return seen, n
		}
		clWait(t, 15*time.Second, fmt.Sprintf("%d ban notifications", want), func() bool { _, n := count(); return n >= want })
		time.Sleep(4 * time.Second) // a duplicate would arrive within 2 s
		seen, _ := count()
		return seen
	}

	ban(a, "first@example.test", 100)  // every failure seen by A
	ban(b, "second@example.test", 101) // every failure seen by B
	// crossed@: the first failure through A, then the second through A
	// and the third through B at once, inside one 50 ms publishing batch:
	// each node then crosses the threshold on the other's attempt, and
	// no node saw the deciding attempt itself.
	const crossed = "crossed@example.test"
	clReport(t, a, crossed, "198.51.103.10", "0d0e0f00", false)
	clWait(t, 5*time.Second, "B counted crossed@'s first failure", func() bool {
		var ex api.ExplainResponse
		out := b.MustCLI(t, "explain", "--account", crossed, "--ip", "198.51.103.99", "--service", "imap", "--json")
		if err := json.Unmarshal([]byte(out), &ex); err != nil {
			t.Fatalf("explain --json: %v\n%s", err, out)
		}
		return ex.Counters != nil && ex.Counters.LoginFailures >= 1
	})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, m := range []*harness.MG{a, b} {
		wg.Go(func() { errs <- clReportErr(m, crossed, "198.51.103.1"+strconv.Itoa(i+1), "0d0e0f0"+strconv.Itoa(i+1)) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	clWait(t, 5*time.Second, crossed+" banned on both nodes", func() bool {
		return clBanID(t, a, crossed) != 0 && clBanID(t, b, crossed) != 0
	})

	seen := told(3)
	for _, login := range []string{"first@example.test", "second@example.test", crossed} {
		if n := seen["login_banned:"+login]; n != 1 {
			t.Errorf("%s's ban was told %d times over both nodes, want once; all: %v", login, n, seen)
		}
	}
	if len(seen) != 3 {
		t.Errorf("told %v, want three bans, each once", seen)
	}
}

// clReportErr is clReport for a goroutine: it returns its error.
func clReportErr(m *harness.MG, login, remote, pwhash string) error {
	body := fmt.Sprintf(`{"device_id":"","login":%q,"protocol":"imap","pwhash":%q,"remote":%q,"session_id":"cl%d","success":false,"policy_reject":false,"tls":false}`,
		login, pwhash, remote, time.Now().UnixNano())
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, m.DovecotURL()+"?command=report", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", clKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("report: HTTP %d", resp.StatusCode)
	}
	return nil
}

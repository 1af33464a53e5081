package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/api"
	"mailgate/test/harness"
)

const (
	clKey      = "e2e-cluster-key-2718"
	clUser     = "ursula@example.test"
	clUserPW   = "Ursula-Secret-1234"
	clVictim   = "victor@example.test"
	clRedisIP  = "127.0.0.95"
	clPGIP     = "127.0.0.96"
	clRelaySrc = "127.0.6.21"
)

// clusterConfig is a node's config: the shared PostgreSQL store, the
// shared Redis (password in a file), the Dovecot door, relay permits;
// extra is appended.
func clusterConfig(t *testing.T, dir, name, dsn, pgPW string, r *harness.Redis, extra string) string {
	t.Helper()
	pgFile, rFile := filepath.Join(dir, "pg-password"), filepath.Join(dir, "redis-password")
	if err := os.WriteFile(pgFile, []byte(pgPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rFile, []byte(r.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
[store]
driver = "postgres"
path = %q
dsn = %q
password_file = %q

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
`, filepath.Join(dir, "mailgate.db"), dsn, pgFile, filepath.Join(dir, "admin.sock"), harness.FreePort(t), clKey,
		r.Addr, rFile, name) + extra
}

// clReport posts a login result to a node's Dovecot door as Dovecot's
// auth policy does (command=report).
func clReport(t *testing.T, m *harness.MG, login, remote, pwhash string, success bool) {
	t.Helper()
	body := fmt.Sprintf(`{"device_id":"","login":%q,"protocol":"imap","pwhash":%q,"remote":%q,"session_id":"cl%d","success":%t,"policy_reject":false,"tls":false}`,
		login, pwhash, remote, time.Now().UnixNano(), success)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, m.DovecotURL()+"?command=report", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", clKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("report: HTTP %d", resp.StatusCode)
	}
}

// clStatus is a node's cluster status.
func clStatus(t *testing.T, m *harness.MG) *api.ClusterJSON {
	t.Helper()
	var s api.StatusJSON
	out := m.MustCLI(t, "status", "--json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if s.Cluster == nil {
		t.Fatalf("status --json has no cluster part:\n%s", out)
	}
	return s.Cluster
}

// clWait polls cond every 20 ms for at most limit and returns how long
// it took, or fails the test with what.
func clWait(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("not within %v: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// clBanID is the id of the ban `ban list --json` on m shows for target
// (an address/network or a login), or 0.
func clBanID(t *testing.T, m *harness.MG, target string) int64 {
	t.Helper()
	var bans []api.BanJSON
	out := m.MustCLI(t, "ban", "list", "--json")
	if err := json.Unmarshal([]byte(out), &bans); err != nil {
		t.Fatalf("ban list --json: %v\n%s", err, out)
	}
	for _, b := range bans {
		if b.IP == target || b.Account == target || strings.TrimSuffix(b.IP, "/32") == target {
			return b.ID
		}
	}
	return 0
}

// TestCluster runs three `mailgate serve` nodes on one real PostgreSQL
// database and one real Redis: failures spread over the three ban the
// login on all three; a ban, a rule and a permit made through one node
// act on the others within 1 s; an IMAP login through node A's Dovecot
// lets a real Postfix asking node B relay; with Redis killed, decisions
// go on, a ban made and one lifted during the outage merge back after
// its restart, and a node started during the outage starts and joins.
func TestCluster(t *testing.T) {
	harness.RequirePostfix(t)
	harness.RequireSwaks(t)
	harness.Require(t, harness.DovecotPackages)
	start := time.Now()
	r := harness.StartRedis(t, clRedisIP)
	pg := harness.StartPostgres(t, clPGIP)
	const pgPW = "pg-Secret-cluster-777"
	dsn := strings.Replace(pg.CreateDatabase(t, "mg_cluster", pgPW), ":"+pgPW+"@", "@", 1)

	policyAddr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	metricsAddr := "127.0.0.1:" + strconv.Itoa(harness.FreePort(t))
	nodes := map[string]*harness.MG{}
	for _, name := range []string{"a", "b", "c"} {
		extra := ""
		if name == "a" {
			extra = fmt.Sprintf("\n[metrics]\nlisten = %q\n", metricsAddr)
		}
		if name == "b" {
			extra = fmt.Sprintf("\n[postfix]\nenabled = true\nlisten = %q\n", policyAddr)
		}
		nodes[name] = harness.StartMailgate(t, clusterConfig(t, harness.TempDir(t, "cl"+name+"-"), "node-"+name, dsn, pgPW, r, extra))
	}
	a, b, c := nodes["a"], nodes["b"], nodes["c"]
	all := []*harness.MG{a, b, c}
	clWait(t, 10*time.Second, "every node connected and seeing three nodes", func() bool {
		for _, m := range all {
			s := clStatus(t, m)
			if !s.Up || len(s.Nodes) < 3 {
				return false
			}
		}
		return true
	})
	t.Logf("three nodes up in %v", time.Since(start).Round(time.Millisecond))

	// Failures spread over the nodes: one each, from three addresses.
	// Rule (a) bans a login after 3 failures from 2+ addresses; no node
	// sees more than one of them itself.
	for i, m := range all {
		clReport(t, m, clVictim, "198.51.100."+strconv.Itoa(11+i), "0a0b0c0"+strconv.Itoa(i), false)
	}
	d := clExplainAll(t, all, clVictim, "192.0.2.200", "banned_login", time.Second)
	t.Logf("login banned on all three nodes %v after the last failure", d)
	victimBan := clBanID(t, a, clVictim)
	clWait(t, 2*time.Second, "one login ban, one id, on every node", func() bool {
		for _, m := range all {
			if clBanID(t, m, clVictim) != victimBan {
				return false
			}
		}
		return victimBan != 0
	})

	// A ban made through node A refuses on B and C within 1 s.
	a.MustCLI(t, "ban", "add", "--ip", "203.0.113.50", "--for", "1h", "--comment", "cluster e2e")
	d = clExplainAll(t, []*harness.MG{b, c}, "any@example.test", "203.0.113.50", "banned_address", time.Second)
	t.Logf("ban add on A → refusing on B and C after %v", d)
	banA := clBanID(t, a, "203.0.113.50")
	if got := clBanID(t, b, "203.0.113.50"); got != banA || banA == 0 {
		t.Errorf("ban id on A %d, on B %d", banA, got)
	}
	// A rule (through PostgreSQL) made on C acts on A.
	c.MustCLI(t, "rule", "add", "--account", "rita@example.test", "--deny", "--ip", "192.0.2.77")
	if waitExplain(t, a, "rita@example.test", "192.0.2.77", "account_deny", time.Second) < 0 {
		t.Errorf("C's rule not applied on A within 1 s")
	}
	// A phone behind the load balancer with an old password: it fails
	// once through A and once through B. A sees one password repeated
	// (a stale client, tarpitted), not two passwords (a guesser).
	const phone, phoneIP, oldPw = "phone@example.test", "198.51.100.40", "5e5e5e5e"
	clReport(t, a, phone, phoneIP, oldPw, false)
	clReport(t, b, phone, phoneIP, oldPw, false)
	clWait(t, time.Second, "the phone's password, failed on A and on B, is stale on A", func() bool {
		out := a.MustCLI(t, "explain", "--account", phone, "--ip", phoneIP, "--service", "imap", "--pwhash", oldPw, "--json")
		var e struct{ Reason string }
		return json.Unmarshal([]byte(out), &e) == nil && e.Reason == "stale_password"
	})

	// A manual permit made on C lets B's Postfix relay.
	c.MustCLI(t, "permit", "add", "--ip", "127.0.6.31", "--for", "1h")
	clWait(t, time.Second, "C's permit on B", func() bool {
		return strings.Contains(b.MustCLI(t, "permit", "list"), "127.0.6.31")
	})

	// An IMAP login through A's Dovecot lets a real Postfix asking B
	// relay from that address.
	users := map[string]string{clUser: clUserPW}
	dc := harness.StartDovecot(t, harness.DovecotOptions{Users: users, PolicyURL: a.DovecotURL(), APIKey: clKey, AuthListener: true})
	pf := harness.StartPostfix(t, harness.PostfixOptions{DovecotSASL: dc.AuthAddr,
		Extra: replaceAll(t, readSnippet(t, pfMainSnippet), pfDocPolicy, "inet:"+policyAddr, "etc/"+pfMainSnippet)})
	rlRcpt(t, rlSend(t, pf, clRelaySrc, rlRelayTo, ""), 554, "Relay access denied")
	rlAccepted(t, rlSend(t, pf, "127.0.6.31", rlRelayTo, "")) // the manual permit from C
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr(clRelaySrc), dc.IMAPAddr, clUser, clUserPW); err != nil {
		t.Fatalf("IMAP login through A's Dovecot: %v", err)
	}
	d = clWait(t, time.Second, "A's login permit on B", func() bool {
		return strings.Contains(b.MustCLI(t, "permit", "list"), clRelaySrc)
	})
	t.Logf("IMAP login on A → permit on B after %v", d)
	rlAccepted(t, rlSend(t, pf, clRelaySrc, rlRelayTo, ""))
	b.WaitLogLine(t, map[string]string{"decision": "allow", "reason": "relay_permit", "door": "postfix", "ip": clRelaySrc})

	// Redis killed mid-run.
	r.Stop()
	clWait(t, 5*time.Second, "every node reporting Redis down", func() bool {
		for _, m := range all {
			if clStatus(t, m).Up {
				return false
			}
		}
		return true
	})
	if out := b.MustCLI(t, "status"); !strings.Contains(out, "DOWN") {
		t.Errorf("status on B does not say the cluster is down:\n%s", out)
	}
	if m := clScrape(t, metricsAddr); !strings.Contains(m, "\nmailgate_cluster_up 0\n") {
		t.Errorf("node A's metrics during the outage:\n%s", m)
	}
	// Decisions go on from each node's own state.
	if waitExplain(t, c, "any@example.test", "203.0.113.50", "banned_address", 0) < 0 {
		t.Errorf("C forgot A's ban while Redis is down")
	}
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.6.22"), dc.IMAPAddr, clUser, clUserPW); err != nil {
		t.Errorf("IMAP login through A while Redis is down: %v", err)
	}
	// During the outage: a ban on B, A's ban lifted on C.
	b.MustCLI(t, "ban", "add", "--ip", "203.0.113.60", "--for", "1h", "--comment", "made during the outage")
	c.MustCLI(t, "ban", "rm", strconv.FormatInt(banA, 10))
	if waitExplain(t, a, "any@example.test", "203.0.113.60", "default", 0) < 0 {
		t.Errorf("A knows B's outage ban while Redis is down (the test cannot tell a merge from a message)")
	}
	// A node started while Redis is down starts.
	dDir := harness.TempDir(t, "cld-")
	dNode := harness.StartMailgate(t, clusterConfig(t, dDir, "node-d", dsn, pgPW, r, ""))
	if s := clStatus(t, dNode); s.Up {
		t.Errorf("node D says Redis is up while it is stopped")
	}
	all = append(all, dNode)

	r.Start() // empty: it keeps nothing on disk here
	d = clWait(t, 10*time.Second, "merged after Redis returned", func() bool {
		for _, m := range all {
			if !clStatus(t, m).Up {
				return false
			}
		}
		for _, m := range all {
			if waitExplain(t, m, "any@example.test", "203.0.113.60", "banned_address", 0) < 0 {
				return false // the outage ban is not everywhere
			}
			if waitExplain(t, m, "any@example.test", "203.0.113.50", "default", 0) < 0 {
				return false // the lifted ban is back or still there
			}
		}
		return true
	})
	t.Logf("state merged on all four nodes %v after Redis restarted", d)
	m := clScrape(t, metricsAddr)
	for _, want := range []string{"\nmailgate_cluster_up 1\n", "\nmailgate_cluster_nodes 4\n", "\nmailgate_cluster_resyncs_total ",
		"\nmailgate_cluster_events_published_total ", "\nmailgate_cluster_messages_received_total ", "\nmailgate_cluster_dropped_total ",
		"\nmailgate_cluster_rejected_total 0\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("node A's metrics after the merge have no %q", strings.TrimSpace(want))
		}
	}
	// The victim's login ban lived through the outage on every node.
	for _, m := range all {
		if waitExplain(t, m, clVictim, "192.0.2.200", "banned_login", 0) < 0 {
			t.Errorf("a node lost the login ban across the outage")
		}
	}
	for name, m := range map[string]*harness.MG{"a": a, "b": b, "c": c, "d": dNode} {
		if strings.Contains(m.Stderr(), r.Password) || strings.Contains(m.Stderr(), pgPW) {
			t.Errorf("node %s's log shows a password", name)
		}
		if !strings.Contains(m.Stderr(), "cluster: lost Redis") && name != "d" {
			t.Errorf("node %s did not log the Redis outage", name)
		}
	}
	t.Logf("whole test took %v", time.Since(start).Round(time.Millisecond))
}

// clScrape returns a node's /metrics.
func clScrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// clExplainAll polls explain on every node at once (each every 20 ms)
// until each gives reason for account from ip, and returns how long the
// slowest took; it fails the test when one did not within limit.
func clExplainAll(t *testing.T, nodes []*harness.MG, account, ip, reason string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	type result struct {
		d   time.Duration
		err error
	}
	res := make(chan result, len(nodes))
	for _, m := range nodes {
		go func() {
			for {
				out, _, err := m.CLI("explain", "--account", account, "--ip", ip, "--service", "imap", "--json")
				var e struct{ Reason string }
				if err == nil && json.Unmarshal([]byte(out), &e) == nil && e.Reason == reason {
					res <- result{d: time.Since(start)}
					return
				}
				if time.Since(start) > limit {
					res <- result{err: fmt.Errorf("explain %s %s: %q (err %v), want %s", account, ip, e.Reason, err, reason)}
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	var slowest time.Duration
	for range nodes {
		r := <-res
		if r.err != nil {
			t.Fatalf("not within %v on a node: %v", limit, r.err)
		}
		slowest = max(slowest, r.d)
	}
	return slowest
}

package test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/cluster"
	"mailgate/test/harness"
)

// testNode is a cluster.Node over its own tracker, as serve wires it:
// remote login results go into the tracker, and the bans that makes are
// published again.
type testNode struct {
	t    *abuse.Tracker
	n    *cluster.Node
	stop func()

	notify chan abuse.Ban // every ban merged in from another node, if there is room

	mu      sync.Mutex
	added   []abuse.Ban
	removed []abuse.Ban
}

func startTestNode(t testing.TB, r *harness.Redis, name string, cfg abuse.Config) *testNode {
	t.Helper()
	return startTestNodeAs(t, r, "", r.Password, name, cfg)
}

// startTestNodeAs is startTestNode logging in to Redis as user.
func startTestNodeAs(t testing.TB, r *harness.Redis, user, password, name string, cfg abuse.Config) *testNode {
	t.Helper()
	return startTestNodeTLS(t, r, user, password, name, cfg, nil)
}

// startTestNodeTLS is startTestNodeAs speaking TLS to Redis with tc.
func startTestNodeTLS(t testing.TB, r *harness.Redis, user, password, name string, cfg abuse.Config, tc *tls.Config) *testNode {
	t.Helper()
	tn := &testNode{t: abuse.New(cfg), notify: make(chan abuse.Ban, 1024)}
	var log *slog.Logger
	if _, isTest := t.(*testing.T); testing.Verbose() && isTest {
		log = slog.New(slog.NewTextHandler(&tlogWriter{t: t, prefix: name}, nil))
	} else {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tn.n = cluster.New(cluster.Options{Addr: r.Addr, Username: user, Password: password, TLS: tc, DialTimeout: time.Second, Timeout: time.Second,
		Node: name, Prefix: "mgtest:", Version: "test", Started: time.Now(), BeatEvery: 200 * time.Millisecond},
		tn.t, cluster.Hooks{
			Event: func(ev cluster.Event, now time.Time) {
				bans := tn.t.Record(abuse.Event{Login: ev.Login, Addr: ev.Addr, PwHash: ev.PwHash, Success: ev.Success}, now)
				tn.n.Banned(bans)
			},
			BansChanged: func(added, removed []abuse.Ban, _ time.Time) {
				tn.mu.Lock()
				defer tn.mu.Unlock()
				tn.added = append(tn.added, added...)
				tn.removed = append(tn.removed, removed...)
				for _, b := range added {
					select {
					case tn.notify <- b:
					default:
					}
				}
			},
		}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tn.n.Run(ctx)
	}()
	tn.stop = func() { cancel(); <-done }
	t.Cleanup(tn.stop)
	return tn
}

type tlogWriter struct {
	t      testing.TB
	prefix string
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.prefix, p)
	return len(p), nil
}

// fail records a local failure as serve does: counted here, published.
func (tn *testNode) fail(login string, addr netip.Addr, pw string) []abuse.Ban {
	bans := tn.t.Record(abuse.Event{Login: login, Addr: addr, PwHash: pw}, time.Now())
	tn.n.Event(cluster.Event{Login: login, Addr: addr, PwHash: cluster.Digest(pw), Door: "test"})
	tn.n.Banned(bans)
	return bans
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func loginBanned(tr *abuse.Tracker, login string) (abuse.BanRef, bool) {
	st := tr.Check(login, netip.MustParseAddr("192.0.2.250"), "", time.Now())
	return st.LoginBan, st.LoginBan.Found
}

func testAbuseConfig() abuse.Config {
	c := abuse.DefaultConfig()
	c.LoginFailures, c.LoginMinAddrs = 6, 2
	return c
}

// TestClusterNodes: three nodes on one real Redis. Failures spread over
// them ban the login on all three with one ID; a manual ban and its
// removal on one node act on the others; a ban made while Redis is down
// and one lifted while it is down merge back after its restart.
func TestClusterNodes(t *testing.T) {
	r := harness.StartRedis(t, "127.0.0.94")
	// Other keys in the same Redis: a single SCAN call would miss some.
	r.Do("EVAL", "for i = 1, 20000 do redis.call('SET', 'mgtest:filler:' .. i, 'x') end", "0")
	cfg := testAbuseConfig()
	nodes := []*testNode{startTestNode(t, r, "a", cfg), startTestNode(t, r, "b", cfg), startTestNode(t, r, "c", cfg)}
	waitUntil(t, 5*time.Second, "all nodes up, each with the heartbeats of all three", func() bool {
		for _, n := range nodes {
			s := n.n.Status(time.Now())
			if !s.Up || len(s.Nodes) != 3 {
				return false
			}
			for _, ns := range s.Nodes {
				if ns.LastBeat.IsZero() {
					return false
				}
			}
		}
		return true
	})

	// Rule (a): 6 failures of one login from 2+ addresses. Two per node,
	// each under any node's threshold alone.
	for i := range 6 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		nodes[i%3].fail("victim@example.net", a, "pw"+string(rune('a'+i)))
		time.Sleep(20 * time.Millisecond) // let each reach the others: one window
	}
	var id int64
	waitUntil(t, time.Second, "login banned on every node", func() bool {
		for _, n := range nodes {
			if _, ok := loginBanned(n.t, "victim@example.net"); !ok {
				return false
			}
		}
		return true
	})
	// One ban, one ID, everywhere (duplicates converge on the smallest).
	waitUntil(t, 2*time.Second, "one ban id on every node", func() bool {
		ids := map[int64]bool{}
		for _, n := range nodes {
			b, _ := loginBanned(n.t, "victim@example.net")
			ids[b.ID] = true
			id = b.ID
			if len(n.t.Bans(time.Now())) != 1 {
				return false
			}
		}
		return len(ids) == 1
	})

	// Redis keeps the one ban; the copies under larger IDs are gone.
	waitUntil(t, 2*time.Second, "one ban kept in Redis", func() bool {
		return r.Do("EVAL", "return #redis.call('KEYS', 'mgtest:ban:*')", "0") == ":1"
	})

	// A manual ban on b reaches a and c.
	now := time.Now()
	mb, err := nodes[1].t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("203.0.113.7/32"), CreatedBy: "test"}, now)
	if err != nil {
		t.Fatal(err)
	}
	nodes[1].n.Banned([]abuse.Ban{mb})
	if mb.ID == id {
		t.Fatalf("manual ban got the automatic ban's id %d", id)
	}
	d := waitUntil(t, time.Second, "manual ban on a and c", func() bool {
		_, oka := nodes[0].t.Held(mb.ID, time.Now())
		_, okc := nodes[2].t.Held(mb.ID, time.Now())
		return oka && okc
	})
	t.Logf("manual ban reached the other nodes in %s", d)

	// Its removal on c reaches a and b.
	gone, _ := nodes[2].t.RemoveBan(mb.ID)
	nodes[2].n.Lifted([]abuse.Ban{gone}, time.Now())
	waitUntil(t, time.Second, "manual ban lifted on a and b", func() bool {
		_, oka := nodes[0].t.Held(mb.ID, time.Now())
		_, okb := nodes[1].t.Held(mb.ID, time.Now())
		return !oka && !okb
	})

	// Outage: Redis goes away (and comes back empty: no persistence).
	r.Stop()
	waitUntil(t, 5*time.Second, "every node sees Redis down", func() bool {
		for _, n := range nodes {
			if n.n.Up() {
				return false
			}
		}
		return true
	})
	// Decisions go on locally: a ban made on a, the login ban lifted on b.
	ob, err := nodes[0].t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("203.0.113.99/32"), CreatedBy: "test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nodes[0].n.Banned([]abuse.Ban{ob})
	lifted, ok := nodes[1].t.RemoveBan(id)
	if !ok {
		t.Fatal("login ban not held on b")
	}
	nodes[1].n.Lifted([]abuse.Ban{lifted}, time.Now())

	r.Start()
	waitUntil(t, 10*time.Second, "merged after Redis returned", func() bool {
		for _, n := range nodes {
			if !n.n.Up() {
				return false
			}
			if _, ok := n.t.Held(ob.ID, time.Now()); !ok {
				return false // the outage ban was lost
			}
			if _, ok := n.t.Held(id, time.Now()); ok {
				return false // the lifted ban came back
			}
		}
		return true
	})
	// Redis came back without its data: ban ids go on far above every id
	// reserved before, so none is handed out twice.
	nb, err := nodes[2].t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("203.0.113.100/32"), CreatedBy: "test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if nb.ID <= ob.ID+1<<20 || nb.ID >= 1<<52 {
		t.Errorf("ban id %d after Redis lost its counter (the last before: %d)", nb.ID, ob.ID)
	}
	// A node that starts now loads the state from Redis.
	late := startTestNode(t, r, "d", cfg)
	waitUntil(t, 5*time.Second, "late node loaded the outage ban", func() bool {
		_, ok := late.t.Held(ob.ID, time.Now())
		return ok
	})
	if _, ok := late.t.Held(id, time.Now()); ok {
		t.Error("late node holds the ban lifted during the outage")
	}
}

// clusterACL is the Redis ACL docs/multi-server.md gives the mailgate
// user, with the test's key prefix.
const clusterACL = "on >%s resetkeys ~mgtest:* resetchannels &mgtest:bus -@all +@connection +get +set +del +exists +mget +incrby +scan +sadd +srem +srandmember +eval +evalsha +publish +subscribe"

// TestClusterACL: nodes work as a Redis ACL user limited to mailgate's
// keys, channel and commands (the one docs/multi-server.md gives), and
// that user can do nothing else.
func TestClusterACL(t *testing.T) {
	r := harness.StartRedis(t, "127.0.0.99")
	const pw = "acl-Secret-5544"
	args := append([]string{"ACL", "SETUSER", "mailgate"}, strings.Fields(fmt.Sprintf(clusterACL, pw))...)
	if got := r.Do(args...); got != "+OK" {
		t.Fatalf("ACL SETUSER: %s", got)
	}
	a := startTestNodeAs(t, r, "mailgate", pw, "a", testAbuseConfig())
	b := startTestNodeAs(t, r, "mailgate", pw, "b", testAbuseConfig())
	waitUntil(t, 5*time.Second, "both nodes up as the ACL user", func() bool { return a.n.Up() && b.n.Up() })
	ban, err := a.t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("203.0.113.8/32"), CreatedBy: "t"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.n.Banned([]abuse.Ban{ban})
	waitUntil(t, time.Second, "the ban on node b", func() bool { _, ok := b.t.Held(ban.ID, time.Now()); return ok })
	gone, _ := b.t.RemoveBan(ban.ID)
	b.n.Lifted([]abuse.Ban{gone}, time.Now())
	waitUntil(t, time.Second, "the lift on node a", func() bool { _, ok := a.t.Held(ban.ID, time.Now()); return !ok })
	for _, s := range []*testNode{a, b} {
		if st := s.n.Status(time.Now()); !st.Up {
			t.Errorf("node %s: %+v", st.Node, st)
		}
	}
	// The user cannot touch other keys nor run FLUSHALL or CONFIG.
	for _, cmd := range [][]string{{"SET", "other:key", "x"}, {"FLUSHALL"}, {"CONFIG", "GET", "requirepass"}, {"KEYS", "*"}} {
		if out, err := r.CommandAs("mailgate", pw, cmd...); err == nil {
			t.Errorf("ACL user ran %v: %s", cmd, out)
		}
	}
}

// TestClusterTLS: nodes reach a TLS-only Redis when they trust its CA
// (cluster.tls_ca_file) for its name (tls_server_name), and do not with
// the wrong name.
func TestClusterTLS(t *testing.T) {
	r := harness.StartRedisTLS(t, "127.0.0.100")
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA in", r.CAFile)
	}
	good := func() *tls.Config {
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: r.ServerName}
	}
	a := startTestNodeTLS(t, r, "", r.Password, "a", testAbuseConfig(), good())
	b := startTestNodeTLS(t, r, "", r.Password, "b", testAbuseConfig(), good())
	wrong := startTestNodeTLS(t, r, "", r.Password, "w", testAbuseConfig(),
		&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "other.test"})
	waitUntil(t, 5*time.Second, "both nodes up over TLS", func() bool { return a.n.Up() && b.n.Up() })
	ban, err := a.t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("203.0.113.9/32"), CreatedBy: "t"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.n.Banned([]abuse.Ban{ban})
	waitUntil(t, time.Second, "the ban on node b over TLS", func() bool { _, ok := b.t.Held(ban.ID, time.Now()); return ok })
	if s := wrong.n.Status(time.Now()); s.Up || !strings.Contains(s.LastError, "certificate") {
		t.Errorf("node with the wrong server name: up %v, last error %q", s.Up, s.LastError)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/dnsbld"
	"mailgate/internal/geoip"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// scrapeAll is a scrape of a daemon's telemetry with every metric that
// exists without a GeoIP database.
func scrapeAll(t *testing.T) string {
	t.Helper()
	tel := newTelemetry(time.Now())
	tr := abuse.New(config.Default().BruteForce.Abuse())
	tel.gauges(tr, func() int { return 3 }, func() *geoip.Locator { return nil }, &storeProbe{st: fakePinger{}})
	now := time.Now()
	a := policy.Attempt{Door: "dovecot"}
	tel.m.Verdict(now, &a, &policy.Verdict{})
	tel.m.Result(now, &a, true)
	tel.m.Latency("dovecot", time.Millisecond)
	tel.dnsblCounter()(dnsbld.Listed)
	// DNSBL on, with a resolver on a closed port: its health check fails
	// at once, so mailgate_dnsbl_zone_up is there (0).
	dc := config.Default().DNSBL
	dc.Zones, dc.Resolver, dc.Budget = []string{"bl.example*2"}, "127.0.0.1:9", 200*time.Millisecond
	bl, err := newDNSBL(dc, policy.New(rules.NewIndex(), nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	bl.gate.Checker().CheckHealth(context.Background(), now)
	tel.m.Writer(bl.writeMetrics)
	withRuleSync(func(time.Time, *api.StatusJSON) {}, tel, fakeRuleSync{})
	lc := config.Default()
	lc.Logs.Files = []config.LogFile{{Path: filepath.Join(t.TempDir(), "mail.log")}}
	newLogDoor(&lc, func(*policy.Attempt, bool, time.Time) {}, slog.New(slog.DiscardHandler)).gauges(tel)
	nc := config.Default()
	nc.Notify = []config.NotifyTarget{{Name: "ops", Kind: "mail", Sendmail: []string{"/usr/sbin/sendmail"}, From: "mailgate@example.com", To: []string{"admin@example.com"}, Queue: 1}}
	notes, err := newNotifier(&nc, tr, policy.New(rules.NewIndex(), nil), now, nil)
	if err != nil {
		t.Fatal(err)
	}
	tel.m.Writer(notes.writeMetrics)
	var b bytes.Buffer
	tel.m.WritePrometheus(&b)
	return b.String()
}

// fakeRuleSync is a PostgreSQL store's rule sync, connected.
type fakeRuleSync struct{}

func (fakeRuleSync) Name() string { return "mg@127.0.0.1:5432/mg" }
func (fakeRuleSync) RuleSyncStatus() store.RuleSyncStatus {
	return store.RuleSyncStatus{Connected: true, Resyncs: 1, Notices: 2, LastNotice: time.Unix(1e9, 0), Lag: 40 * time.Millisecond}
}

type fakePinger struct{ err error }

func (f fakePinger) Ping(context.Context) error { return f.err }

var metricName = regexp.MustCompile(`\b(?:mailgate|process|go)_[a-z_]+`)

// documented returns the metric names of docs/metrics.md's table.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for l := range strings.Lines(string(b)) {
		if strings.HasPrefix(l, "| `") {
			for _, n := range metricName.FindAllString(strings.SplitN(l, "|", 3)[1], -1) {
				out[n] = true
			}
		}
	}
	return out
}

// exposed reports whether name (a family: histograms without their
// suffixes) is in a scrape.
func exposed(scrape, name string) bool {
	return strings.Contains(scrape, "\n"+name+"{") || strings.Contains(scrape, "\n"+name+" ") ||
		strings.Contains(scrape, "\n"+name+"_bucket{") || strings.HasPrefix(scrape, name)
}

func TestDocumentedMetricsAreExposed(t *testing.T) {
	docs := documented(t)
	scrape := scrapeAll(t)
	for n := range docs {
		if strings.HasPrefix(n, "mailgate_geoip_") || strings.HasPrefix(n, "mailgate_cluster_") || !strings.HasPrefix(n, "mailgate_") {
			continue // needs a GeoIP database, or Redis (test/cluster_test.go scrapes those); process_ and go_ are families
		}
		if !exposed(scrape, n) {
			t.Errorf("docs/metrics.md names %s; the endpoint has no such metric", n)
		}
	}
	for _, n := range metricName.FindAllString(scrape, -1) {
		n = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(n, "mailgate_") && !docs[n] {
			t.Errorf("the endpoint has %s; docs/metrics.md does not say what it is", n)
		}
	}
}

func TestDashboardUsesDocumentedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../etc/grafana/mailgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("etc/grafana/mailgate.json: %v", err)
	}
	docs := documented(t)
	scrape := scrapeAll(t)
	n := 0
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			for _, m := range metricName.FindAllString(q.Expr, -1) {
				n++
				fam := strings.TrimSuffix(m, "_bucket")
				if strings.HasPrefix(m, "mailgate_") && !docs[fam] {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not list", p.Title, m)
				}
				if !strings.HasPrefix(m, "mailgate_geoip_") && !exposed(scrape, fam) {
					t.Errorf("panel %q queries %s, which the endpoint does not have", p.Title, m)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("the dashboard queries only %d metrics", n)
	}
}

func TestHealth(t *testing.T) {
	tel := newTelemetry(time.Now())
	stopped := tel.listening("dovecot", "127.0.0.1:4001")
	ok := &storeProbe{st: fakePinger{}}
	if err := tel.health(ok)(context.Background()); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	broken := &storeProbe{st: fakePinger{err: errors.New("disk I/O error")}}
	if err := tel.health(broken)(context.Background()); err == nil || !strings.Contains(err.Error(), "store") {
		t.Errorf("store failing: %v", err)
	}
	stopped()
	if err := tel.health(ok)(context.Background()); err == nil || !strings.Contains(err.Error(), "dovecot (127.0.0.1:4001) is down") {
		t.Errorf("listener down: %v", err)
	}
}

// hangingPinger blocks until released, counting the pings in flight.
type hangingPinger struct {
	release chan struct{}
	calls   atomic.Int32
}

func (h *hangingPinger) Ping(context.Context) error {
	h.calls.Add(1)
	<-h.release
	return nil
}

func TestHealthStoreHangs(t *testing.T) {
	h := &hangingPinger{release: make(chan struct{})}
	p := &storeProbe{st: h}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		err := p.check(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "store does not answer within") {
			t.Fatalf("hanging store: %v", err)
		}
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("%d pings in flight, want 1: a hanging store must not pile them up", n)
	}
	close(h.release)
	if err := p.check(context.Background()); err != nil {
		t.Errorf("after the store answered: %v", err)
	}
}

func TestErrorRing(t *testing.T) {
	tel := newTelemetry(time.Now())
	var out bytes.Buffer
	log := tel.wrapLog(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	fw := log.With("component", "firewall")
	fw.Info("not kept")
	fw.Error("adding bans failed", "bans", 2, "err", errors.New("netlink: operation not permitted"))
	for i := range errorRingSize {
		log.With("component", "bruteforce").Error("bans: writing to the store failed", "kind", "store", "n", i)
	}
	list := tel.errs.list()
	if len(list) != errorRingSize {
		t.Fatalf("%d records kept, want %d", len(list), errorRingSize)
	}
	if !strings.Contains(list[0].Message, `n="0"`) || !strings.Contains(list[len(list)-1].Message, `n="9"`) {
		t.Errorf("not the last records, oldest first: %q … %q", list[0].Message, list[len(list)-1].Message)
	}
	if !strings.Contains(out.String(), "adding bans failed") || strings.Contains(out.String(), "not kept") {
		t.Errorf("the wrapped handler did not get what it should:\n%s", out.String())
	}
	var b bytes.Buffer
	tel.m.WritePrometheus(&b)
	for _, want := range []string{`mailgate_errors_total{component="firewall"} 1`, `mailgate_errors_total{component="store"} 10`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
}

// TestScrapeCached: /metrics renders at most once a second.
func TestScrapeCached(t *testing.T) {
	tel := newTelemetry(time.Now())
	t0 := time.Unix(1_800_000_000, 0)
	var offset atomic.Int64 // the server's goroutines read the clock
	tel.now = func() time.Time { return t0.Add(time.Duration(offset.Load())) }
	srv := httptest.NewServer(tel.metricsServer(nil, slog.New(slog.DiscardHandler)).Handler)
	defer srv.Close()
	count := func() string {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for l := range strings.Lines(string(b)) {
			if strings.HasPrefix(l, "mailgate_decisions_total{") {
				return strings.TrimSpace(l[strings.LastIndexByte(l, ' '):])
			}
		}
		return "none"
	}
	a := policy.Attempt{Door: "dovecot"}
	tel.m.Verdict(t0, &a, &policy.Verdict{})
	if got := count(); got != "1" {
		t.Fatalf("first scrape: %s", got)
	}
	tel.m.Verdict(t0, &a, &policy.Verdict{})
	offset.Store(int64(500 * time.Millisecond))
	if got := count(); got != "1" {
		t.Errorf("half a second later: %s, want the cached 1", got)
	}
	offset.Store(int64(time.Second))
	if got := count(); got != "2" {
		t.Errorf("a second later: %s, want 2", got)
	}
}

func TestDNSBLServerMetrics(t *testing.T) {
	scrape := scrapeAll(t)
	for _, want := range []string{
		"\n" + `mailgate_dnsbl_server_queries_total{answer="listed"} 1` + "\n",
		"\n" + `mailgate_dnsbl_server_queries_total{answer="rate_limited"} 0` + "\n",
		"# TYPE mailgate_dnsbl_server_queries_total counter",
	} {
		if !strings.Contains(scrape, want) {
			t.Errorf("the scrape has no %q", want)
		}
	}
}

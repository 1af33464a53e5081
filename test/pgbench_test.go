package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mailgate/internal/api"
	"mailgate/test/harness"
)

// BenchmarkPostgresRulePropagation measures how long a rule added through
// node A takes to decide on node B, two `mailgate serve` on one real
// PostgreSQL (LISTEN/NOTIFY): each iteration adds a deny rule through A's
// admin API and asks B's explain (admin socket, no process spawned) in a
// tight loop until B refuses by it. It reports p50, p99 and max in ms;
// docs/performance.md has a run.
//
//	go test -run '^$' -bench PostgresRulePropagation -benchtime 300x ./test/
func BenchmarkPostgresRulePropagation(b *testing.B) {
	pg := harness.StartPostgres(b, "127.0.0.66")
	const pw = "pg-Secret-bench-7373"
	dsn := strings.Replace(pg.CreateDatabase(b, "mg_bench", pw), ":"+pw+"@", "@", 1)
	mk := func(prefix string) *harness.MG {
		dir := harness.TempDir(b, prefix)
		return harness.StartMailgate(b, pgMailgateConfig(b, dir, dsn, pw))
	}
	a, bn := mk("pgba-"), mk("pgbb-")
	ca, cb := api.NewUnixClient(a.AdminSocket), api.NewUnixClient(bn.AdminSocket)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var took []time.Duration
	i := 0
	for b.Loop() {
		i++
		acct := fmt.Sprintf("bench%d@example.test", i)
		if _, err := ca.AddRule(ctx, api.RuleJSON{Scope: "account", Account: acct, Service: "all", Action: "deny", Match: "192.0.2.99"}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for {
			e, err := cb.Explain(ctx, api.ExplainRequest{Account: acct, IP: "192.0.2.99", Service: "imap"})
			if err != nil {
				b.Fatal(err)
			}
			if e.Reason == "account_deny" {
				break
			}
			if time.Since(start) > 5*time.Second {
				b.Fatalf("node B did not apply rule %d within 5 s", i)
			}
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}

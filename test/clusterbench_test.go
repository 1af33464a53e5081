package test

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/test/harness"
)

// BenchmarkBanPropagation: a ban made on node A until node B holds it,
// two cluster nodes on one real Redis (docs/performance.md). Reports
// p50 and p99 in µs.
//
//	go test ./test -run '^$' -bench BanPropagation -benchtime 500x
func BenchmarkBanPropagation(b *testing.B) {
	r := harness.StartRedis(b, "127.0.0.97")
	cfg := testAbuseConfig()
	na, nb := startTestNode(b, r, "a", cfg), startTestNode(b, r, "b", cfg)
	for !na.n.Up() || !nb.n.Up() {
		time.Sleep(5 * time.Millisecond)
	}
	var ds []time.Duration
	i := 0
	for b.Loop() {
		i++
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		start := time.Now()
		ban, err := na.t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: p, CreatedBy: "bench"}, start)
		if err != nil {
			b.Fatal(err)
		}
		na.n.Banned([]abuse.Ban{ban})
		timeout := time.After(5 * time.Second)
	wait:
		for {
			select {
			case got := <-nb.notify:
				if got.ID == ban.ID {
					break wait
				}
			case <-timeout:
				b.Fatalf("ban %d not on node B within 5 s", ban.ID)
			}
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRedisMemory: what Redis holds per ban and per lifted ban
// (tombstone), measured with INFO memory and MEMORY USAGE on a real
// Redis after node A published 10000 of each (docs/multi-server.md).
//
//	go test ./test -run '^$' -bench RedisMemory -benchtime 1x
func BenchmarkRedisMemory(b *testing.B) {
	const n = 10000
	for b.Loop() {
		r := harness.StartRedis(b, "127.0.0.98")
		na := startTestNode(b, r, "a", testAbuseConfig())
		for !na.n.Up() {
			time.Sleep(5 * time.Millisecond)
		}
		base := redisUsed(b, r)
		now := time.Now()
		var bans []abuse.Ban
		for i := range n {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
			ban, err := na.t.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: p, Reason: abuse.ReasonAddrFailures,
				Expires: now.Add(time.Hour), CreatedBy: abuse.CreatedByMailgate}, now)
			if err != nil {
				b.Fatal(err)
			}
			bans = append(bans, ban)
		}
		na.n.Banned(bans)
		waitKeys(b, r, "mgtest:ban:*", n)
		withBans := redisUsed(b, r)
		usage := r.Do("MEMORY", "USAGE", "mgtest:ban:"+strconv.FormatInt(bans[0].ID, 10))
		for _, ban := range bans {
			na.t.RemoveBan(ban.ID)
		}
		na.n.Lifted(bans, time.Now())
		waitKeys(b, r, "mgtest:tomb:*", n)
		waitKeys(b, r, "mgtest:ban:*", 0)
		withTombs := redisUsed(b, r)
		tombUsage := r.Do("MEMORY", "USAGE", "mgtest:tomb:"+strconv.FormatInt(bans[0].ID, 10))
		b.ReportMetric(float64(withBans-base)/n, "B/ban")
		b.ReportMetric(float64(withTombs-base)/n, "B/tombstone")
		b.Logf("MEMORY USAGE of one ban key %s, of one tombstone %s; used_memory %d → %d (10000 bans) → %d (10000 tombstones)",
			strings.TrimPrefix(usage, ":"), strings.TrimPrefix(tombUsage, ":"), base, withBans, withTombs)
		r.Stop()
	}
}

func redisUsed(tb testing.TB, r *harness.Redis) int64 {
	tb.Helper()
	for l := range strings.Lines(r.Do("INFO", "memory")) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Fatal("INFO memory has no used_memory")
	return 0
}

func waitKeys(tb testing.TB, r *harness.Redis, pattern string, want int) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.Do("EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern) != ":"+strconv.Itoa(want) {
		if time.Now().After(deadline) {
			tb.Fatalf("Redis has not %d keys %s", want, pattern)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

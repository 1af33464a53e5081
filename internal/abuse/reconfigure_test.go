package abuse

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// failOnce records a failure of login from addr with a distinct password.
func failOnce(tr *Tracker, login, addr string, i int, now time.Time) []Ban {
	return tr.Record(Event{Login: login, Addr: mustAddr(addr), PwHash: fmt.Sprint("h", i)}, now)
}

func TestReconfigureKeepsCountsAndBans(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SprayLogins = 5
	tr := New(cfg)
	now := time.Unix(1_700_000_000, 0)
	// A ban, and counts below every threshold.
	b, err := tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.9/32"), Reason: ReasonManual}, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		failOnce(tr, fmt.Sprint("u", i, "@example.com"), "198.51.100.1", i, now.Add(time.Duration(i)*time.Second))
	}
	failOnce(tr, "victim@example.com", "198.51.100.2", 10, now)
	now = now.Add(5 * time.Second)
	before := tr.Counters("u0@example.com", mustAddr("198.51.100.1"), now)
	if before.AddrFailures != 3 || before.AddrLogins != 3 || before.AddrHour != 3 {
		t.Fatalf("before: %+v", before)
	}

	// Lower thresholds, a longer window, a longer hour: every count stays.
	cfg2 := cfg
	cfg2.AddrFailures, cfg2.AddrWindow = 4, 2*time.Minute
	cfg2.LoginFailures, cfg2.LoginMinAddrs = 2, 1
	cfg2.SprayLogins = 2
	cfg2.HourWindow = 2 * time.Hour
	cfg2.StaleRepeats = 1
	if err := tr.Reconfigure(cfg2, now); err != nil {
		t.Fatal(err)
	}
	after := tr.Counters("u0@example.com", mustAddr("198.51.100.1"), now)
	if after.AddrFailures != 3 || after.AddrLogins != 2 || after.AddrHour != 3 {
		t.Errorf("after: %+v, want 3 failures, 2 logins (the spray set shrank to 2), 3 in the hour", after)
	}
	if c := tr.Counters("victim@example.com", mustAddr("198.51.100.2"), now); c.LoginFailures != 1 {
		t.Errorf("login counters after: %+v", c)
	}
	if st := tr.Check("", mustAddr("192.0.2.9"), "", now); st.AddrBan.ID != b.ID {
		t.Errorf("the ban did not survive: %+v", st)
	}
	if got := tr.Config(); got.AddrFailures != 4 || got.HourWindow != 2*time.Hour {
		t.Errorf("Config() = %+v", got)
	}
	// The new thresholds decide: the 4th failure of the address bans
	// it (with 5, the old threshold, it would not have).
	bans := failOnce(tr, "u3@example.com", "198.51.100.3", 20, now)
	if len(bans) != 0 {
		t.Fatalf("unexpected bans %+v", bans)
	}
	bans = failOnce(tr, "u4@example.com", "198.51.100.1", 21, now)
	if len(bans) != 1 || bans[0].Kind != BanAddr {
		t.Fatalf("4th failure under addr_failures = 4 (spray 2): got %+v", bans)
	}
	// One more failure of the victim from the address counted before
	// the reload reaches login_failures = 2.
	bans = failOnce(tr, "victim@example.com", "198.51.100.7", 22, now)
	if len(bans) != 1 || bans[0].Kind != BanLogin {
		t.Fatalf("victim: got %+v", bans)
	}
	// A stale client under stale_repeats = 1: the pair's one failure is stale now.
	if st := tr.Check("u1@example.com", mustAddr("198.51.100.1"), "h1", now); !st.Stale {
		t.Errorf("stale set not recomputed: %+v", st)
	}
}

func TestReconfigureSizesNeedRestart(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.IPv6Prefix = 56 },
		func(c *Config) { c.MaxKeys = 10 },
		func(c *Config) { c.MaxKnownGood = 10 },
	} {
		tr := New(DefaultConfig())
		c := DefaultConfig()
		mod(&c)
		c.AddrFailures = 2
		if err := tr.Reconfigure(c, time.Unix(1, 0)); !errors.Is(err, ErrNeedsRestart) {
			t.Errorf("got %v", err)
		}
		if tr.Config().AddrFailures != 5 {
			t.Errorf("a refused reconfigure changed the config")
		}
	}
}

func TestMoveWindow(t *testing.T) {
	from := newWindow(time.Hour, hourBuckets)
	to := newWindow(2*time.Hour, hourBuckets)
	n := int64(1_700_000_000) * int64(time.Second)
	var w int64
	for i := range 5 {
		from.add(&w, n-int64(4-i)*int64(10*time.Minute))
	}
	n += int64(time.Minute)
	if got := to.count(moveWindow(to, from, w, n), n); got != from.count(w, n) {
		t.Errorf("moved count %d, want %d", got, from.count(w, n))
	}
	// Shorter: what lies before the new window's start is dropped.
	short := newWindow(20*time.Minute, hourBuckets)
	if got := short.count(moveWindow(short, from, w, n), n); got < 1 || got >= 5 {
		t.Errorf("shorter window kept %d of 5", got)
	}
}

package notify

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeTarget records deliveries; fail makes the first fail attempts fail;
// block holds every delivery until it is closed. It is the far edge: the
// real receivers are tested in http_test.go and test/notify_test.go.
type fakeTarget struct {
	name   string
	events []Kind
	queue  int
	policy RetryPolicy
	block  chan struct{}

	mu       sync.Mutex
	fail     int
	attempts []time.Time
	got      []Event
}

func (f *fakeTarget) Name() string       { return f.name }
func (f *fakeTarget) Wants(k Kind) bool  { return wants(f.events, k) }
func (f *fakeTarget) Retry() RetryPolicy { return f.policy }
func (f *fakeTarget) QueueLen() int      { return f.queue }
func (f *fakeTarget) Deliver(ctx context.Context, e *Event) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, time.Now())
	if f.fail > 0 {
		f.fail--
		return errors.New("receiver down")
	}
	f.got = append(f.got, *e)
	return nil
}

func (f *fakeTarget) delivered() []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Event(nil), f.got...)
}

func allOn(every time.Duration) map[Kind]EventConfig {
	m := map[Kind]EventConfig{}
	for _, k := range Kinds() {
		m[k] = EventConfig{Enabled: true, Every: every}
	}
	return m
}

// run starts n in the bubble and returns its stop.
func run(n *Notifier) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func ban(login string, at time.Time) Event {
	return Event{Kind: LoginBanned, Time: at, Login: login, Addr: netip.MustParseAddr("203.0.113.9"), Until: at.Add(10 * time.Minute)}
}

// TestRateLimitPerSubject: one notification per account per every; other
// accounts are not held back; after every the account is told again.
func TestRateLimitPerSubject(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTarget{name: "t", queue: 100}
		n := New(Config{Events: allOn(time.Hour), Targets: []Target{ft}}, nil)
		stop := run(n)
		defer stop()
		now := time.Now()
		n.Notify(ban("alice@example.com", now))
		n.Notify(ban("alice@example.com", now.Add(time.Minute)))
		n.Notify(ban("bob@example.com", now.Add(time.Minute)))
		n.Notify(ban("alice@example.com", now.Add(59*time.Minute)))
		n.Notify(ban("alice@example.com", now.Add(time.Hour)))
		// Another kind of the same account has its own rate.
		n.Notify(Event{Kind: NewCountry, Time: now, Login: "alice@example.com", Country: "BR"})
		synctest.Wait()
		got := ft.delivered()
		var logins []string
		for _, e := range got {
			logins = append(logins, string(e.Kind)+":"+e.Login)
		}
		want := []string{"login_banned:alice@example.com", "login_banned:bob@example.com", "login_banned:alice@example.com", "new_country:alice@example.com"}
		if len(logins) != len(want) {
			t.Fatalf("delivered %q, want %q", logins, want)
		}
		for i := range want {
			if logins[i] != want[i] {
				t.Fatalf("delivered %q, want %q", logins, want)
			}
		}
		if s := n.Stats(); s.RateSubject != 2 {
			t.Errorf("RateSubject = %d, want 2", s.RateSubject)
		}
	})
}

// TestGlobalRateLimit: an attacker banning a thousand distinct logins
// gets max_per_hour notifications out, not a thousand; the next one that
// goes out says how many were suppressed; the bucket refills over time.
func TestGlobalRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTarget{name: "t", queue: 2000}
		n := New(Config{Events: allOn(time.Hour), MaxPerHour: 10, Targets: []Target{ft}}, nil)
		stop := run(n)
		defer stop()
		now := time.Now()
		for i := range 1000 {
			n.Notify(ban("user"+itoa(i)+"@example.com", now))
			if i%100 == 99 {
				synctest.Wait() // the intake holds DefaultIntake
			}
		}
		synctest.Wait()
		if got := len(ft.delivered()); got != 10 {
			t.Fatalf("delivered %d, want 10 (max_per_hour)", got)
		}
		if s := n.Stats(); s.RateGlobal != 990 || s.IntakeDropped != 0 {
			t.Fatalf("RateGlobal = %d, IntakeDropped = %d; want 990, 0", s.RateGlobal, s.IntakeDropped)
		}
		// Six minutes refill one token (10 per hour).
		n.Notify(ban("late@example.com", now.Add(6*time.Minute)))
		synctest.Wait()
		got := ft.delivered()
		if len(got) != 11 || got[10].Login != "late@example.com" || got[10].Suppressed != 990 {
			t.Fatalf("after refill: %d delivered, last %+v; want 11, late@ with Suppressed 990", len(got), got[len(got)-1])
		}
	})
}

// TestHealthNotSilencedBySpray: an attacker who bans a thousand made-up
// logins uses up max_per_hour and fills the subject table, but the
// firewall failing still reaches the admin (once per every).
func TestHealthNotSilencedBySpray(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTarget{name: "t", queue: 2000}
		n := New(Config{Events: allOn(time.Hour), MaxPerHour: 10, MaxSubjects: 100, Targets: []Target{ft}}, nil)
		stop := run(n)
		defer stop()
		now := time.Now()
		spray := func(at time.Time, from int) {
			for i := range 1000 {
				n.Notify(ban("user"+itoa(from+i)+"@example.com", at))
				if i%100 == 99 {
					synctest.Wait() // the intake holds DefaultIntake
				}
			}
		}
		fw := Event{Kind: FirewallFailed, Time: now, Subject: "firewall", Detail: "nft: exit 1"}
		n.Notify(fw)
		for i, d := range []time.Duration{0, 30 * time.Minute, 61 * time.Minute} {
			spray(now.Add(d), i*1000)
			if d > 0 {
				fw.Time = now.Add(d)
				n.Notify(fw) // at 30 minutes within every: held back
			}
		}
		synctest.Wait()
		var fws int
		for _, e := range ft.delivered() {
			if e.Kind == FirewallFailed {
				fws++
			}
		}
		if fws != 2 {
			t.Fatalf("firewall_failed delivered %d times, want 2 (at 0 and after every, whatever the logins sprayed)", fws)
		}
	})
}

// TestSubjectTableBounded: the per-subject table never holds more than
// max_subjects, whatever is sprayed.
func TestSubjectTableBounded(t *testing.T) {
	l := newLimiter(100, 0)
	now := time.Unix(1_700_000_000, 0)
	for i := range 10_000 {
		l.allow("login_banned\x00u"+itoa(i), time.Hour, now)
	}
	if l.len() != 100 || len(l.seen) != 100 || l.evicted != 9_900 {
		t.Fatalf("table holds %d (map %d), evicted %d; want 100, 100, 9900", l.len(), len(l.seen), l.evicted)
	}
	// The most recent subjects are the ones kept.
	if l.allow("login_banned\x00u9999", time.Hour, now) != denySubject {
		t.Error("the newest subject was forgotten")
	}
}

// TestNotifyNeverBlocks: with no dispatcher running (a stuck receiver is
// the same), Notify returns at once and counts what it drops.
func TestNotifyNeverBlocks(t *testing.T) {
	n := New(Config{Events: allOn(0), Intake: 8}, nil)
	now := time.Unix(1_700_000_000, 0)
	for i := range 100 {
		n.Notify(ban("u"+itoa(i), now))
	}
	if s := n.Stats(); s.Accepted != 8 || s.IntakeDropped != 92 {
		t.Fatalf("Accepted %d, IntakeDropped %d; want 8, 92", s.Accepted, s.IntakeDropped)
	}
	var nilN *Notifier
	nilN.Notify(ban("x", now)) // a daemon without [[notify]] passes nil
}

// TestQueueBound: a target whose receiver hangs holds at most its queue
// (plus the one in flight); the rest is dropped and counted, and other
// targets are not held back.
func TestQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stuck := &fakeTarget{name: "stuck", queue: 3, block: make(chan struct{})}
		fine := &fakeTarget{name: "fine", queue: 100}
		n := New(Config{Events: allOn(0), Targets: []Target{stuck, fine}}, nil)
		stop := run(n)
		now := time.Now()
		for i := range 10 {
			n.Notify(ban("u"+itoa(i), now))
			if i == 0 {
				synctest.Wait() // the first is in flight, held by the receiver
			}
		}
		synctest.Wait()
		if got := len(fine.delivered()); got != 10 {
			t.Errorf("the other target got %d, want 10", got)
		}
		s := n.Stats()
		if s.Targets[0].QueueFull != 6 || s.Targets[0].Queued != 3 {
			t.Errorf("stuck target: QueueFull %d, Queued %d; want 6, 3", s.Targets[0].QueueFull, s.Targets[0].Queued)
		}
		close(stuck.block)
		stop()
		if got := len(stuck.delivered()); got != 4 {
			t.Errorf("stuck target delivered %d after release, want 4 (1 in flight + 3 queued)", got)
		}
	})
}

// TestRetryBackoff: failures are retried after 1s, 2s, 4s, capped at 5s,
// and given up after the retries; the waits are exact in the bubble.
func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTarget{name: "t", queue: 10, fail: 100, policy: RetryPolicy{Retries: 4, Backoff: time.Second, Max: 5 * time.Second}}
		n := New(Config{Events: allOn(0), Targets: []Target{ft}}, nil)
		stop := run(n)
		defer stop()
		start := time.Now()
		n.Notify(ban("alice", start))
		time.Sleep(time.Minute) // fake time: every retry happens
		synctest.Wait()
		ft.mu.Lock()
		var waits []time.Duration
		for _, a := range ft.attempts {
			waits = append(waits, a.Sub(start))
		}
		ft.mu.Unlock()
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 12 * time.Second}
		if len(waits) != len(want) {
			t.Fatalf("attempts at %v, want %v", waits, want)
		}
		for i := range want {
			if waits[i] != want[i] {
				t.Fatalf("attempts at %v, want %v", waits, want)
			}
		}
		if s := n.Stats().Targets[0]; s.Failed != 1 || s.Retries != 4 || s.Sent != 0 {
			t.Errorf("stats %+v, want Failed 1, Retries 4", s)
		}
	})
}

// TestRetryThenSuccess: a receiver down once gets the event on the retry.
func TestRetryThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTarget{name: "t", queue: 10, fail: 1, policy: RetryPolicy{Retries: 3, Backoff: time.Second, Max: time.Minute}}
		n := New(Config{Events: allOn(0), Targets: []Target{ft}}, nil)
		stop := run(n)
		defer stop()
		n.Notify(ban("alice", time.Now()))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := len(ft.delivered()); got != 1 {
			t.Fatalf("delivered %d, want 1", got)
		}
		if s := n.Stats().Targets[0]; s.Retries != 1 || s.Sent != 1 {
			t.Errorf("stats %+v, want Retries 1, Sent 1", s)
		}
	})
}

// TestPermanentNotRetried: a 4xx-like error is not retried.
func TestPermanentNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pt := &permTarget{}
		n := New(Config{Events: allOn(0), Targets: []Target{pt}}, nil)
		stop := run(n)
		defer stop()
		n.Notify(ban("alice", time.Now()))
		time.Sleep(time.Hour)
		synctest.Wait()
		if pt.n != 1 {
			t.Fatalf("%d attempts, want 1", pt.n)
		}
	})
}

type permTarget struct{ n int }

func (p *permTarget) Name() string    { return "perm" }
func (p *permTarget) Wants(Kind) bool { return true }
func (p *permTarget) QueueLen() int   { return 1 }
func (p *permTarget) Retry() RetryPolicy {
	return RetryPolicy{Retries: 5, Backoff: time.Second, Max: time.Second}
}
func (p *permTarget) Deliver(context.Context, *Event) error {
	p.n++
	return &Permanent{errors.New("400 Bad Request")}
}

// TestSwitchesAndTargetEvents: a kind switched off goes nowhere; a
// target's events list filters what it gets.
func TestSwitchesAndTargetEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		evs := allOn(0)
		evs[SendLimit] = EventConfig{Enabled: false}
		only := &fakeTarget{name: "only", queue: 10, events: []Kind{NewCountry}}
		all := &fakeTarget{name: "all", queue: 10}
		n := New(Config{Events: evs, Targets: []Target{only, all}}, nil)
		stop := run(n)
		defer stop()
		now := time.Now()
		n.Notify(Event{Kind: SendLimit, Time: now, Login: "a"})
		n.Notify(Event{Kind: NewCountry, Time: now, Login: "a", Country: "BR"})
		n.Notify(ban("a", now))
		synctest.Wait()
		if got := only.delivered(); len(got) != 1 || got[0].Kind != NewCountry {
			t.Errorf("only-new_country target got %v", got)
		}
		if got := all.delivered(); len(got) != 2 {
			t.Errorf("all target got %d, want 2 (send_limit is off)", len(got))
		}
		if n.Stats().Off != 1 {
			t.Errorf("Off = %d, want 1", n.Stats().Off)
		}
		if n.Enabled(SendLimit) || !n.Enabled(LoginBanned) {
			t.Error("Enabled does not follow the config")
		}
	})
}

// TestOwnerRouting: owner mails go only to accounts with an address in
// owner.domains (or mapped), once per owner every, through Run and the
// owner's sendmail (a stand-in script that logs its recipient).
func TestOwnerRouting(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nfor a; do last=$a; done\necho \"$last\" >> \""+dir+"/rcpts\"\ncat >/dev/null\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		evs := allOn(0)
		evs[LoginBanned] = EventConfig{Enabled: true, Owner: true}
		o := &Owner{Sendmail: []string{script}, From: "postmaster@example.com", Domains: []string{"example.com"},
			Addresses: map[string]string{"bob": "bob@example.org"}, Every: time.Hour, MaxPerHour: 100, Queue: 10, Timeout: time.Minute}
		n := New(Config{Events: evs, Owner: o}, nil)
		stop := run(n)
		now := time.Now()
		n.Notify(ban("alice@example.com", now))
		n.Notify(ban("alice@example.com", now.Add(time.Minute))) // within owner every
		n.Notify(ban("victim@gmail.com", now))                   // an address at a stranger's domain
		n.Notify(ban("bob", now))                                // mapped
		n.Notify(ban("carol", now))                              // no address
		synctest.Wait()
		stop()
		b, _ := os.ReadFile(filepath.Join(dir, "rcpts"))
		if got := string(b); got != "alice@example.com\nbob@example.org\n" {
			t.Fatalf("owner mails to %q, want alice@example.com and bob@example.org", got)
		}
		if s := n.Stats(); s.Targets[0].Name != "owner" || s.Targets[0].Sent != 2 || s.Targets[0].OwnerLimit != 1 {
			t.Errorf("owner stats %+v", s.Targets)
		}
	})
}

// TestReconfigure: new targets take over; the old ones deliver what they
// hold; the rate-limit state stays.
func TestReconfigure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &fakeTarget{name: "a", queue: 10}
		b := &fakeTarget{name: "b", queue: 10}
		n := New(Config{Events: allOn(time.Hour), Targets: []Target{a}}, nil)
		stop := run(n)
		defer stop()
		now := time.Now()
		n.Notify(ban("alice", now))
		synctest.Wait()
		n.Reconfigure(Config{Events: allOn(time.Hour), Targets: []Target{b}})
		n.Notify(ban("alice", now.Add(time.Minute))) // still rate-limited
		n.Notify(ban("bob", now.Add(time.Minute)))
		synctest.Wait()
		if len(a.delivered()) != 1 || len(b.delivered()) != 1 || b.delivered()[0].Login != "bob" {
			t.Fatalf("a got %v, b got %v", a.delivered(), b.delivered())
		}
	})
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// BenchmarkNotify is the cost a door pays per event: a non-blocking
// send into the intake, with the dispatcher draining it (what it cannot
// take in time is dropped, as in the daemon), or
// with the intake full (dropped).
func BenchmarkNotify(b *testing.B) {
	e := ban("alice@example.com", time.Unix(1_700_000_000, 0))
	b.Run("dispatcher_running", func(b *testing.B) {
		n := New(Config{Events: allOn(time.Hour)}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go n.Run(ctx)
		b.ReportAllocs()
		for b.Loop() {
			n.Notify(e)
		}
	})
	b.Run("intake_full", func(b *testing.B) {
		n := New(Config{Events: allOn(time.Hour), Intake: 1}, nil)
		n.Notify(e)
		b.ReportAllocs()
		for b.Loop() {
			n.Notify(e)
		}
	})
}

// TestShutdownBounded: at shutdown a receiver that hangs (until its
// context ends) holds the exit for DrainTimeout, not an attempt's
// timeout per queued event; what was not delivered is counted failed.
func TestShutdownBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &hangTarget{}
		n := New(Config{Events: allOn(0), Targets: []Target{h}}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { n.Run(ctx); close(done) }()
		now := time.Now()
		for i := range 50 {
			n.Notify(ban("u"+itoa(i), now))
		}
		synctest.Wait()
		start := time.Now()
		cancel()
		<-done
		if took := time.Since(start); took != DrainTimeout {
			t.Errorf("shutdown took %v, want DrainTimeout %v", took, DrainTimeout)
		}
		if s := n.Stats().Targets[0]; s.Failed != 50 || s.Sent != 0 {
			t.Errorf("stats %+v, want 50 failed", s)
		}
	})
}

// hangTarget answers nothing until the attempt's context ends (an
// hour's timeout of its own).
type hangTarget struct{}

func (hangTarget) Name() string    { return "hang" }
func (hangTarget) Wants(Kind) bool { return true }
func (hangTarget) QueueLen() int   { return 100 }
func (hangTarget) Retry() RetryPolicy {
	return RetryPolicy{Retries: 3, Backoff: time.Second, Max: time.Second}
}
func (hangTarget) Deliver(ctx context.Context, _ *Event) error {
	ctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	<-ctx.Done()
	return ctx.Err()
}

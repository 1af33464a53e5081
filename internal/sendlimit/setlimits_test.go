package sendlimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// SetLimits applies new limits to senders already counted; their counts
// stay.
func TestSetLimitsKeepsCounts(t *testing.T) {
	l := newLimiter(t, Limits{RecipientsPerHour: 10}, nil)
	for i := range 4 {
		if e := l.Rcpt("alice@example.com", "m1", at(time.Duration(i)*time.Second)); !e.OK() {
			t.Fatalf("rcpt %d: %+v", i, e)
		}
	}
	cfg := DefaultConfig()
	cfg.Default = Limits{RecipientsPerHour: 5}
	cfg.Accounts = map[string]Limits{"@example.org": {RecipientsPerHour: 1}}
	l.SetLimits(cfg)
	if u := l.Usage("alice@example.com", at(time.Minute)); u.RecipientsHour != 4 || u.Limits.RecipientsPerHour != 5 {
		t.Fatalf("usage after SetLimits: %+v", u)
	}
	if e := l.Rcpt("alice@example.com", "m1", at(time.Minute)); !e.OK() {
		t.Fatalf("5th of 5 refused: %+v", e)
	}
	if e := l.Rcpt("alice@example.com", "m1", at(time.Minute)); e.OK() || e.Max != 5 || e.Used != 5 {
		t.Errorf("6th of 5: %+v", e)
	}
	if got := l.LimitsFor("bob@example.org"); got.RecipientsPerHour != 1 {
		t.Errorf("a new account entry: %+v", got)
	}
}

func TestSetLimitsRace(t *testing.T) {
	l := newLimiter(t, Limits{RecipientsPerHour: 10}, nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 2000 {
			l.Rcpt(fmt.Sprint("u", i%50, "@example.com"), "", at(time.Duration(i)*time.Millisecond))
		}
	})
	for i := range 100 {
		cfg := DefaultConfig()
		cfg.Default = Limits{RecipientsPerHour: i + 1}
		l.SetLimits(cfg)
	}
	wg.Wait()
}

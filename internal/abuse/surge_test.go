package abuse

import (
	"fmt"
	"testing"
	"time"
)

func TestSurge(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SurgeEnabled = true
	tr := New(cfg)
	start := at(0)
	fail := func(i int, now time.Time) {
		tr.Record(Event{Login: fmt.Sprintf("u%d@example.com", i), Addr: mustAddr(fmt.Sprintf("198.51.100.%d", 1+i%200)), PwHash: fmt.Sprint(i)}, now)
	}
	// A usual day: 6 failures an hour (one per 10 minutes).
	for i := range 144 {
		fail(i, start.Add(time.Duration(i)*10*time.Minute))
	}
	now := start.Add(24 * time.Hour)
	if s, changed := tr.Surge(now); s.On || changed || s.Threshold != cfg.SurgeMin {
		t.Fatalf("after a usual day: %+v changed=%t, want off with threshold %d (the minimum: 10 × 1)", s, changed, cfg.SurgeMin)
	}
	// A spray: 30 failures in 5 minutes.
	for i := range 30 {
		fail(1000+i, now.Add(time.Duration(i)*10*time.Second))
	}
	now = now.Add(5 * time.Minute)
	s, changed := tr.Surge(now)
	if !s.On || !changed || s.Recent != 30 {
		t.Fatalf("during the spray: %+v changed=%t, want on with 30 recent", s, changed)
	}
	if !tr.Check("x@example.com", mustAddr("192.0.2.1"), "", now).UnderAttack {
		t.Error("Check does not report UnderAttack")
	}
	// The spray stops; the state holds for SurgeHold after the last time
	// the count was over the threshold.
	if s, changed := tr.Surge(now.Add(10 * time.Minute)); !s.On || changed {
		t.Errorf("10 minutes later: %+v changed=%t, want still on", s, changed)
	}
	if s, changed := tr.Surge(now.Add(cfg.SurgeHold + time.Second)); s.On || !changed {
		t.Errorf("after the hold: %+v changed=%t, want off", s, changed)
	}
	if tr.Check("x@example.com", mustAddr("192.0.2.1"), "", now.Add(cfg.SurgeHold+time.Second)).UnderAttack {
		t.Error("Check still reports UnderAttack")
	}

	// An admin ends it: it stays off for SurgeHold even if failures go on.
	now = now.Add(2 * time.Hour)
	for i := range 40 {
		fail(2000+i, now)
	}
	if s, _ := tr.Surge(now); !s.On {
		t.Fatalf("second spray: %+v", s)
	}
	if !tr.EndSurge(now) {
		t.Error("EndSurge: was not on")
	}
	for i := range 40 {
		fail(3000+i, now.Add(time.Minute))
	}
	if s, _ := tr.Surge(now.Add(time.Minute)); s.On {
		t.Errorf("on again right after EndSurge: %+v", s)
	}
}

func TestSurgeOffByDefault(t *testing.T) {
	tr := New(DefaultConfig())
	now := at(0)
	for i := range 100 {
		tr.Record(Event{Login: fmt.Sprintf("u%d@example.com", i), Addr: mustAddr(fmt.Sprintf("198.51.100.%d", 1+i)), PwHash: "x"}, now)
	}
	if s, changed := tr.Surge(now); s.On || changed || s.Enabled || s.Recent != 100 {
		t.Errorf("%+v changed=%t, want off (but counting)", s, changed)
	}
}

func TestUsualCountry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SurgeEnabled = true
	tr := New(cfg)
	now := at(0)
	ok := func(cc string, d time.Duration) {
		tr.Record(Event{Login: "alice@example.com", Addr: mustAddr("192.0.2.1"), Success: true, Country: cc}, now.Add(d))
	}
	for i, cc := range []string{"AT", "DE", "AT", "FR", "IT", "ES"} {
		ok(cc, time.Duration(i)*time.Minute)
	}
	later := now.Add(time.Hour)
	for cc, want := range map[string]bool{"ES": true, "IT": true, "FR": true, "AT": true, "DE": false, "US": false, "": false, "private": false} {
		if got := tr.UsualCountry("alice@example.com", cc, later); got != want {
			t.Errorf("UsualCountry(%q) = %t, want %t (the four most recent)", cc, got, want)
		}
	}
	if tr.UsualCountry("bob@example.com", "AT", later) {
		t.Error("bob has no usual country")
	}
	if tr.UsualCountry("alice@example.com", "AT", now.Add(cfg.KnownGoodFor+time.Hour)) {
		t.Error("usual countries outlive known_good_for")
	}
	if n := testing.AllocsPerRun(100, func() { tr.UsualCountry("alice@example.com", "AT", later) }); n != 0 {
		t.Errorf("UsualCountry allocates %v times", n)
	}
}

// TestNewCountry: a login's first country is not new; a country outside
// its recent ones is; one of them is not; after known_good_for nothing
// is new (the account starts over).
func TestNewCountry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SurgeEnabled = true
	tr := New(cfg)
	now := at(0)
	if tr.NewCountry("alice@example.com", "DE", now) {
		t.Error("the first login's country is new")
	}
	tr.Record(Event{Login: "alice@example.com", Addr: mustAddr("192.0.2.1"), Success: true, Country: "DE"}, now)
	later := now.Add(time.Hour)
	for cc, want := range map[string]bool{"DE": false, "BR": true, "": false, "private": false} {
		if got := tr.NewCountry("alice@example.com", cc, later); got != want {
			t.Errorf("NewCountry(%q) = %t, want %t", cc, got, want)
		}
	}
	if tr.NewCountry("alice@example.com", "BR", now.Add(cfg.KnownGoodFor+time.Hour)) {
		t.Error("a country is new after known_good_for passed without logins")
	}
	if n := testing.AllocsPerRun(100, func() { tr.NewCountry("alice@example.com", "BR", later) }); n != 0 {
		t.Errorf("NewCountry allocates %v times", n)
	}
}

// TestTrackCountries: usual countries are kept with TrackCountries while
// under attack is off, not without either; a reconfigure turns them on
// and off.
func TestTrackCountries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SurgeEnabled = false
	now := at(0)
	learn := func(tr *Tracker) bool {
		tr.Record(Event{Login: "alice@example.com", Addr: mustAddr("192.0.2.1"), Success: true, Country: "DE"}, now)
		return tr.NewCountry("alice@example.com", "BR", now.Add(time.Minute))
	}
	if learn(New(cfg)) {
		t.Error("countries kept with neither SurgeEnabled nor TrackCountries")
	}
	cfg.TrackCountries = true
	if !learn(New(cfg)) {
		t.Error("TrackCountries kept no countries")
	}
	tr := New(DefaultConfig())
	if err := tr.Reconfigure(cfg, now); err != nil {
		t.Fatal(err)
	}
	if !learn(tr) {
		t.Error("a reconfigure with TrackCountries kept no countries")
	}
}

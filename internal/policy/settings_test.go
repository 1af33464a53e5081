package policy

import (
	"sync"
	"testing"
	"time"
)

func TestSetMessages(t *testing.T) {
	e := engine(t, "global all deny 192.0.2.0/24")
	a := attempt("bob@example.com", "imap", "192.0.2.7")
	v := e.Decide(a, now, nil)
	before := e.Message(a, &v)
	if before == "" || before == "Go away" {
		t.Fatalf("before: %q", before)
	}
	e.SetMessages(Messages{ReasonGlobalDeny.String(): "Go away"})
	if got := e.Message(a, &v); got != "Go away" {
		t.Errorf("after: %q", got)
	}
	// A reason the new messages leave out falls back to the default.
	v2 := Verdict{Action: Deny, Reason: ReasonAccountDeny}
	if got := e.Message(a, &v2); got == "" || got == "Go away" {
		t.Errorf("fallback: %q", got)
	}
}

func TestSetCountries(t *testing.T) {
	e := engine(t)
	a := func() *Attempt { return attempt("bob@example.com", "imap", "198.51.100.7") } // IN
	if v := e.Decide(a(), now, nil); v.Action != Allow {
		t.Fatalf("no GeoIP: %+v", v)
	}
	e.SetCountries(fakeGeo(testNets), CountryPolicy{Deny: "IN"})
	if v := e.Decide(a(), now, nil); v.Action != Deny || v.Reason != ReasonCountryBlocked {
		t.Errorf("deny IN: %+v", v)
	}
	e.SetCountries(fakeGeo(testNets), CountryPolicy{Allow: "IN"})
	if v := e.Decide(a(), now, nil); v.Action != Allow {
		t.Errorf("allow IN: %+v", v)
	}
	e.SetCountries(nil, CountryPolicy{})
	if aa := a(); e.Decide(aa, now, nil).Action != Allow || aa.Country != "" {
		t.Errorf("GeoIP off again: country %q", aa.Country)
	}
}

func TestSetAbuse(t *testing.T) {
	e, _ := engineWithAbuse(t)
	e.SetAbuse(false, time.Minute, 5*time.Second)
	for i := range 10 {
		if b := fail(e, "x@example.com", "198.51.100.9", string(rune('a'+i)), now); len(b) != 0 {
			t.Fatalf("counted with count = false: %+v", b)
		}
	}
	e.SetAbuse(true, time.Minute, 7*time.Second)
	for i := range 2 {
		fail(e, "phone@x.test", "198.51.100.20", "0d0d", now.Add(time.Duration(i)*time.Minute))
	}
	a := attempt("phone@x.test", "imap", "198.51.100.20")
	a.PwHash = "0d0d"
	if v := e.Decide(a, now.Add(2*time.Minute), nil); v.Action != Tarpit || v.Delay != 7*time.Second {
		t.Errorf("stale tarpit after SetAbuse: %+v", v)
	}
}

// Setters race with decisions (go test -race).
func TestSettersRaceDecisions(t *testing.T) {
	e, _ := engineWithAbuse(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			a := attempt("bob@example.com", "imap", "198.51.100.7")
			v := e.Decide(a, now, nil)
			e.Message(a, &v)
			e.Report(a, false, now)
		}
	})
	for i := range 200 {
		e.SetMessages(Messages{"global_deny": "x"})
		e.SetCountries(fakeGeo(testNets), CountryPolicy{Deny: "CN"})
		e.SetAbuse(i%2 == 0, time.Minute, time.Second)
	}
	close(stop)
	wg.Wait()
}

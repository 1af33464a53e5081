package dnsbl

import (
	"context"
	"net/netip"
	"time"
)

// HealthEvery is how often the daemon checks the zones.
const HealthEvery = time.Hour

// Test points every DNSBL answers the same way (RFC 5782 §5): 127.0.0.2
// is listed, 127.0.0.1 is not.
var (
	testListed    = netip.AddrFrom4([4]byte{127, 0, 0, 2})
	testNotListed = netip.AddrFrom4([4]byte{127, 0, 0, 1})
)

// ZoneHealth is the result of a zone's health check.
type ZoneHealth struct {
	Zone    string    `json:"zone"`
	OK      bool      `json:"ok"`
	Problem string    `json:"problem,omitempty"`
	At      time.Time `json:"at"`
}

// CheckHealth asks every zone about the test points (127.0.0.2 must be
// listed, 127.0.0.1 must not), uncached, remembers the result for Health
// and returns it. A zone's "listed" here is any answer in 127.0.0.0/8
// that is not an error code, whatever its filter.
func (c *Checker) CheckHealth(ctx context.Context, now time.Time) []ZoneHealth {
	s := c.set.Load()
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	out := make([]ZoneHealth, len(s.zones))
	type pair struct{ two, one Answer }
	ans := make([]pair, len(s.zones))
	done := make(chan struct{}, 2*len(s.zones))
	for i := range s.zones {
		// Any answer counts as listed here: a zone without filter.
		z := Zone{Name: s.zones[i].Name, Weight: 1}
		go func() { ans[i].two = c.askZone(ctx, s, &z, testListed); done <- struct{}{} }()
		go func() { ans[i].one = c.askZone(ctx, s, &z, testNotListed); done <- struct{}{} }()
	}
	for range 2 * len(s.zones) {
		<-done
	}
	for i := range s.zones {
		h := ZoneHealth{Zone: s.zones[i].Name, At: now, OK: true}
		two, one := ans[i].two, ans[i].one
		switch {
		case two.Status == Failed:
			h.OK, h.Problem = false, "127.0.0.2: "+two.Err
		case two.Status != Listed:
			h.OK, h.Problem = false, "127.0.0.2 (the test point every list has) is not listed: a wrong zone name, or the resolver does not reach the list"
		case one.Status == Failed:
			h.OK, h.Problem = false, "127.0.0.1: "+one.Err
		case one.Status == Listed:
			h.OK, h.Problem = false, "127.0.0.1 is listed: the zone lists everything (a wildcard, or a resolver rewriting answers)"
		}
		out[i] = h
	}
	c.hmu.Lock()
	if c.set.Load() == s {
		c.health, c.hAt = out, now
	}
	c.hmu.Unlock()
	return out
}

// Health returns the last health check's result (nil before the first).
func (c *Checker) Health() []ZoneHealth {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	return c.health
}

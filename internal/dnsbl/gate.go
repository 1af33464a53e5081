package dnsbl

import (
	"context"
	"sync/atomic"
	"time"

	"mailgate/internal/policy"
)

// Exempter says whether an attempt is looked up at all; *policy.Engine is
// one.
type Exempter interface {
	NeedsDNSBL(a *policy.Attempt, now time.Time) bool
}

// Gate is what a door calls before it asks the engine: it fills in
// a.DNSBL for attempts the engine wants checked, from the cache or by
// asking the zones within the budget. A reload swaps its Checker.
type Gate struct {
	e Exempter
	c atomic.Pointer[Checker]
}

// NewGate returns a gate asking e which attempts to look up; c may be nil
// (off until Set).
func NewGate(e Exempter, c *Checker) *Gate {
	g := &Gate{e: e}
	g.c.Store(c)
	return g
}

// Set replaces the checker; nil turns the lookups off.
func (g *Gate) Set(c *Checker) { g.c.Store(c) }

// Checker is the current checker, nil when off.
func (g *Gate) Checker() *Checker { return g.c.Load() }

// Fill looks a's client up when the engine wants it (Exempter) and sets
// a.DNSBL. It waits at most the checker's budget (less if ctx ends
// first); an answer from the cache does not allocate.
func (g *Gate) Fill(ctx context.Context, a *policy.Attempt, now time.Time) {
	if g == nil {
		return
	}
	c := g.c.Load()
	if c == nil || !g.e.NeedsDNSBL(a, now) {
		return
	}
	r := c.Lookup(ctx, a.Client, now)
	a.DNSBL = policy.DNSBL{Checked: r.OK, Score: r.Score, Zones: r.Listed}
}

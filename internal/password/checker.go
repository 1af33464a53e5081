package password

import (
	"sync"
	"sync/atomic"
	"time"
)

// Checker holds the policy in force, for the doors and the API; a reload
// swaps it without a lock on the request path.
type Checker struct {
	p atomic.Pointer[Policy]
}

// NewChecker returns a checker of p.
func NewChecker(p Policy) *Checker {
	c := &Checker{}
	c.p.Store(&p)
	return c
}

// Policy is the policy in force.
func (c *Checker) Policy() *Policy { return c.p.Load() }

// Set puts p in force and returns the policy it replaces. The caller
// closes the old breached list, if it differs, once no check can still
// use it (CloseLater).
func (c *Checker) Set(p Policy) *Policy { return c.p.Swap(&p) }

// Check checks pw for login with the policy in force.
func (c *Checker) Check(pw, login string) (Result, error) { return c.p.Load().Check(pw, login) }

// Weak reports whether pw fails the policy in force.
func (c *Checker) Weak(pw, login string) bool { return c.p.Load().Weak(pw, login) }

// CloseLater closes b after d, when checks that loaded the old policy
// have long finished; nil b is a no-op.
func CloseLater(b *Breached, d time.Duration) {
	if b != nil {
		time.AfterFunc(d, func() { b.Close() })
	}
}

// Limiter is a token bucket: n checks per second, bursts of 2n. Time is
// an argument.
type Limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second; 0 = no limit
	tokens float64
	last   time.Time
}

// NewLimiter allows perSecond calls a second; 0 means no limit.
func NewLimiter(perSecond int) *Limiter {
	l := &Limiter{}
	l.SetRate(perSecond)
	return l
}

// SetRate changes the rate (a reload).
func (l *Limiter) SetRate(perSecond int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate = float64(perSecond)
	l.tokens = 2 * l.rate
}

// Allow takes a token, if there is one.
func (l *Limiter) Allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rate == 0 {
		return true
	}
	if !l.last.IsZero() {
		l.tokens = min(2*l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

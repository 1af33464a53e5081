// Package throttle keeps a flood of bad requests (a wrong key, a scanner,
// a mail program misconfigured) from flooding a door's diagnostic log: at
// most Burst lines per Interval, and the next line logged says how many
// were left out. It is not a rate limiter for requests.
package throttle

import (
	"sync"
	"time"
)

// The limit: Burst lines per Interval.
const (
	Burst    = 10
	Interval = 10 * time.Second
)

// Log is the state of one log's limit. The zero value is ready to use.
type Log struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

// Allow reports whether a line may be logged at now, and how many lines
// were left out before it.
func (l *Log) Allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= Interval || now.Before(l.start) {
		l.start, l.n = now, 0
	}
	if l.n >= Burst {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

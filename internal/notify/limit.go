package notify

import (
	"container/list"
	"time"
)

// DefaultMaxSubjects bounds the per-subject table when the config says 0.
const DefaultMaxSubjects = 10_000

type verdict int

const (
	allowed verdict = iota
	denySubject
	denyGlobal
)

// limiter is the dispatcher's rate limit: at most one event per subject
// per interval, in a table of at most max subjects (the least recently
// notified is forgotten first, so an attacker spraying logins cannot grow
// memory), and at most perHour events over all subjects (a token bucket
// of perHour tokens refilled over an hour; 0 = no global limit). Not safe
// for concurrent use: the Notifier's lock guards it.
type limiter struct {
	max   int
	seen  map[string]*list.Element
	order *list.List // of *seenEntry, most recent first

	perHour    int
	tokens     float64
	refilled   time.Time
	suppressed uint64 // global denials since the last event that went out
	evicted    uint64
}

type seenEntry struct {
	key string
	at  time.Time
}

func newLimiter(maxSubjects, perHour int) *limiter {
	l := &limiter{seen: map[string]*list.Element{}, order: list.New()}
	l.resize(maxSubjects, perHour)
	l.tokens = float64(l.perHour)
	return l
}

// resize changes the bounds, forgetting the oldest subjects past the new
// size; the bucket keeps its tokens, capped at the new size.
func (l *limiter) resize(maxSubjects, perHour int) {
	if maxSubjects <= 0 {
		maxSubjects = DefaultMaxSubjects
	}
	l.max, l.perHour = maxSubjects, max(perHour, 0)
	l.tokens = min(l.tokens, float64(l.perHour))
	for l.order.Len() > l.max {
		l.evictOldest()
	}
}

func (l *limiter) evictOldest() {
	e := l.order.Back()
	delete(l.seen, e.Value.(*seenEntry).key)
	l.order.Remove(e)
	l.evicted++
}

// allow decides one event of subject key at now, with at most one per
// every for the subject. A subject denied by the global limit still
// counts as notified: its next event waits for every, so that a flood
// cannot retry its way through.
func (l *limiter) allow(key string, every time.Duration, now time.Time) verdict {
	if el, ok := l.seen[key]; ok {
		s := el.Value.(*seenEntry)
		if now.Sub(s.at) < every {
			return denySubject
		}
		s.at = now
		l.order.MoveToFront(el)
	} else {
		if l.order.Len() >= l.max {
			l.evictOldest()
		}
		l.seen[key] = l.order.PushFront(&seenEntry{key: key, at: now})
	}
	if l.perHour == 0 {
		return allowed
	}
	if l.refilled.IsZero() {
		l.refilled = now
	}
	if d := now.Sub(l.refilled); d > 0 {
		l.tokens = min(float64(l.perHour), l.tokens+float64(l.perHour)*d.Hours())
		l.refilled = now
	}
	if l.tokens < 1 {
		l.suppressed++
		return denyGlobal
	}
	l.tokens--
	return allowed
}

// takeSuppressed returns and resets the count of global denials.
func (l *limiter) takeSuppressed() uint64 {
	n := l.suppressed
	l.suppressed = 0
	return n
}

// len is the number of subjects remembered.
func (l *limiter) len() int { return l.order.Len() }

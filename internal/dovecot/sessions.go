package dovecot

import (
	"hash/maphash"
	"sync"
	"time"
)

// Dovecot calls command=allow twice for a correct password: before the
// passdb lookup and again after it, with byte-identical bodies
// (protocols.md §1.2, §1.5). The only way to tell the second call apart is
// to remember the first. sessions remembers, per non-empty session_id,
// that an allow was seen and a hash of its body; a later allow with the
// same session and the same body is the after-auth call. report forgets
// the session (a client may AUTHENTICATE again on the same connection,
// which keeps the session id).
//
// The table is bounded: entries expire after ttl, and when it holds max
// entries the oldest is evicted. An evicted or expired entry makes a
// late after-auth call look like a before-auth one, which is the safe
// direction: it is decided again in full.
//
// Sessions are keyed by a seeded 64-bit hash of the session id, so the
// table holds no pointers for the garbage collector to scan; a collision
// would also need the same body hash to matter.
type sessions struct {
	ttl  time.Duration
	max  int
	seed maphash.Seed

	mu   sync.Mutex
	m    map[uint64]sessionEntry
	ring []queued // insertion order, oldest at head; may hold stale entries
	head int
	n    int // entries in ring
	seq  uint64
}

type sessionEntry struct {
	seq     uint64
	body    uint64 // hash of the allow body
	expires int64  // unix nanoseconds
}

type queued struct {
	key     uint64
	seq     uint64
	expires int64
}

// Defaults for the session table.
const (
	DefaultSessionTTL = 60 * time.Second
	DefaultMaxSession = 100_000
)

func newSessions(ttl time.Duration, max int) *sessions {
	if max < 1 {
		max = 1
	}
	return &sessions{ttl: ttl, max: max, seed: maphash.MakeSeed(), m: make(map[uint64]sessionEntry)}
}

// allow records an allow call for session id with the given body and
// reports whether it is the after-auth call: an earlier allow of the same
// session with the same body was seen within ttl. The after-auth call
// keeps the entry, so a repeated after-auth call is also after-auth; a
// body that differs starts the session over.
func (s *sessions) allow(id string, body []byte, now time.Time) (afterAuth bool) {
	if id == "" {
		return false
	}
	k := maphash.String(s.seed, id)
	h := maphash.Bytes(s.seed, body)
	n := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(n)
	if e, ok := s.m[k]; ok && e.expires > n && e.body == h {
		return true
	}
	if s.n == s.max {
		s.popLocked()
	}
	if s.n == len(s.ring) {
		s.growLocked()
	}
	s.seq++
	exp := n + int64(s.ttl)
	s.m[k] = sessionEntry{seq: s.seq, body: h, expires: exp}
	s.ring[(s.head+s.n)%len(s.ring)] = queued{key: k, seq: s.seq, expires: exp}
	s.n++
	return false
}

// forget drops session id (on report).
func (s *sessions) forget(id string, now time.Time) {
	if id == "" {
		return
	}
	k := maphash.String(s.seed, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
	s.expireLocked(now.UnixNano())
}

// len is the number of remembered sessions.
func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// expireLocked pops ring entries that expired at n. The ring is in
// insertion order and ttl is fixed, so expiry times are ordered as long
// as the clock does not go back; if it does, entries live a little longer
// and are still bounded by max.
func (s *sessions) expireLocked(n int64) {
	for s.n > 0 && s.ring[s.head].expires <= n {
		s.popLocked()
	}
}

// popLocked removes the oldest ring entry and, if it is still the live
// entry of its session, the session.
func (s *sessions) popLocked() {
	q := s.ring[s.head]
	s.head = (s.head + 1) % len(s.ring)
	s.n--
	if e, ok := s.m[q.key]; ok && e.seq == q.seq {
		delete(s.m, q.key)
	}
}

// growLocked doubles the ring, up to max entries.
func (s *sessions) growLocked() {
	size := min(max(2*len(s.ring), 64), s.max)
	ring := make([]queued, size)
	for i := range s.n {
		ring[i] = s.ring[(s.head+i)%len(s.ring)]
	}
	s.ring, s.head = ring, 0
}

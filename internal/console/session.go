package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/netip"
	"sync"
	"time"
)

// maxSessions bounds the sessions held; past it the oldest is dropped.
const maxSessions = 10000

// session is one signed-in browser.
type session struct {
	name    string // the user; TokenUser for the admin token
	hash    string // the user's stored hash at sign-in ("" for the token)
	csrf    string // the form token of every POST
	expires time.Time
	flash   string // a message shown once on the next page
}

// sessions holds the sessions by the SHA-256 of their cookie value, so
// that a lookup's timing says nothing about the ids held.
type sessions struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[[32]byte]*session
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, m: map[[32]byte]*session{}}
}

// randomToken is 256 random bits, base64url.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) //nolint:errcheck // crypto/rand never fails on Linux; it panics
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session for name and returns its cookie value.
func (s *sessions) create(name, hash string, now time.Time) (string, *session) {
	id := randomToken()
	ss := &session{name: name, hash: hash, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.pruneLocked(now)
	}
	for len(s.m) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

func (s *sessions) pruneLocked(now time.Time) {
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
}

// get returns a copy of the live session of cookie value id.
func (s *sessions) get(id string, now time.Time) (session, bool) {
	if id == "" || len(id) > 100 {
		return session{}, false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[k]
	if !ok {
		return session{}, false
	}
	if !now.Before(ss.expires) {
		delete(s.m, k)
		return session{}, false
	}
	return *ss, true
}

// takeFlash returns the session's message and clears it.
func (s *sessions) takeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.m[sha256.Sum256([]byte(id))]; ok {
		f := ss.flash
		ss.flash = ""
		return f
	}
	return ""
}

func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.m[sha256.Sum256([]byte(id))]; ok {
		ss.flash = msg
	}
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// tokenEqual compares two tokens in constant time (hashed first, so the
// length is not told either).
func tokenEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1 && a != "" && b != ""
}

// maxLimiterKeys bounds the failure counters; past it new keys are not
// counted until old ones age out, and counts held are never evicted (a
// flood of names cannot wipe an attacker's own address count).
const maxLimiterKeys = 50000

// limiter counts failed sign-ins per client address and per user name in
// a fixed window that starts at the first failure.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	m      map[string]*failures
}

type failures struct {
	n     int
	since time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, m: map[string]*failures{}}
}

func addrKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "a:" + p.String()
	}
	return "a:" + a.String()
}

// take reports whether any key is at the limit and, when none is, counts
// the attempt as a failure for each key in the same step: concurrent
// sign-ins cannot all pass the check before the first of them has failed
// (the password check is slow). A sign-in that succeeds gives its count
// back (undo).
func (l *limiter) take(now time.Time, keys ...string) (blocked bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		f, ok := l.m[k]
		if ok && now.Sub(f.since) >= l.window {
			delete(l.m, k)
			continue
		}
		if ok && f.n >= l.max {
			return true
		}
	}
	l.failLocked(now, keys...)
	return false
}

// undo gives back the count take made for keys.
func (l *limiter) undo(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if f, ok := l.m[k]; ok && f.n > 0 {
			f.n--
		}
	}
}

// failLocked counts one failure for each key.
func (l *limiter) failLocked(now time.Time, keys ...string) {
	if len(l.m) >= maxLimiterKeys {
		for k, f := range l.m {
			if now.Sub(f.since) >= l.window {
				delete(l.m, k)
			}
		}
	}
	for _, k := range keys {
		f, ok := l.m[k]
		if !ok || now.Sub(f.since) >= l.window {
			if len(l.m) >= maxLimiterKeys {
				continue
			}
			f = &failures{since: now}
			l.m[k] = f
		}
		f.n++
	}
}

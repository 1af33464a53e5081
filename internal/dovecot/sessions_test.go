package dovecot

import (
	"strconv"
	"testing"
	"time"
)

func TestSessions(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := newSessions(time.Minute, 3)
	b := []byte("body")

	for range 2 {
		if s.allow("", b, t0) {
			t.Error("empty session id must never be after-auth")
		}
	}
	if s.len() != 0 {
		t.Errorf("empty id remembered: %d", s.len())
	}
	if s.allow("a", b, t0) {
		t.Error("first allow is after-auth")
	}
	if !s.allow("a", b, t0.Add(time.Second)) {
		t.Error("second allow is not after-auth")
	}
	if !s.allow("a", b, t0.Add(2*time.Second)) {
		t.Error("a repeated after-auth call is after-auth")
	}
	if s.allow("a", []byte("other"), t0.Add(3*time.Second)) {
		t.Error("a different body is after-auth")
	}
	s.forget("a", t0.Add(4*time.Second))
	if s.allow("a", []byte("other"), t0.Add(5*time.Second)) {
		t.Error("forgotten session is after-auth")
	}

	// Eviction: max 3; the oldest goes first.
	s = newSessions(time.Minute, 3)
	for i := range 4 {
		s.allow(strconv.Itoa(i), b, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if s.len() != 3 {
		t.Errorf("len %d, want 3", s.len())
	}
	now := t0.Add(time.Second)
	if s.allow("0", b, now) {
		t.Error("evicted oldest session is still there")
	}
	// "0" came back and evicted "1"; "2" and "3" remain.
	for _, id := range []string{"2", "3", "0"} {
		if !s.allow(id, b, now) {
			t.Errorf("session %s lost", id)
		}
	}

	// Expiry: entries live exactly ttl.
	s = newSessions(time.Minute, 10)
	s.allow("x", b, t0)
	s.allow("y", b, t0.Add(30*time.Second))
	if s.allow("x", b, t0.Add(time.Minute)) {
		t.Error("x did not expire after ttl")
	}
	if !s.allow("y", b, t0.Add(89*time.Second)) {
		t.Error("y expired early")
	}
	s.forget("zz", t0.Add(10*time.Minute))
	if s.len() != 0 {
		t.Errorf("len %d after everything expired", s.len())
	}
}

// TestSessionsBounded churns many sessions with reports and checks that
// neither the map nor the queue grows past max.
func TestSessionsBounded(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	s := newSessions(time.Minute, 1000)
	b := []byte("body")
	for i := range 100_000 {
		id := strconv.Itoa(i)
		now := t0.Add(time.Duration(i) * time.Microsecond)
		s.allow(id, b, now)
		if i%2 == 0 {
			s.forget(id, now)
		}
		if len(s.m) > 1000 || s.n > 1000 || len(s.ring) > 1000 {
			t.Fatalf("i=%d: map %d ring %d/%d", i, len(s.m), s.n, len(s.ring))
		}
	}
	// The newest odd sessions are still there.
	if !s.allow("99999", b, t0.Add(time.Second)) {
		t.Error("newest session lost")
	}
}

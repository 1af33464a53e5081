package password

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var saved [][]Seen
	fail := true
	f := NewFlags(24*time.Hour, 3, func(_ context.Context, ss []Seen) error {
		if fail {
			return errors.New("disk full")
		}
		saved = append(saved, ss)
		return nil
	})
	f.Mark("a@x", t0)
	f.Mark("", t0)
	f.Mark(strings.Repeat("x", 600), t0)
	f.Mark("b@x", t0.Add(time.Minute))
	if !f.Weak("a@x", t0.Add(23*time.Hour)) || f.Weak("a@x", t0.Add(25*time.Hour)) || f.Weak("c@x", t0) {
		t.Fatal("Weak")
	}
	if l := f.List(t0); len(l) != 2 || l[0].Login != "b@x" {
		t.Fatalf("List = %+v", l)
	}
	// A failed write stays pending; a later change wins over it.
	if err := f.Flush(context.Background()); err == nil {
		t.Fatal("no error")
	}
	f.Clear("a@x")
	fail = false
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]time.Time{}
	for _, s := range saved[0] {
		got[s.Login] = s.At
	}
	if len(got) != 2 || !got["a@x"].IsZero() || !got["b@x"].Equal(t0.Add(time.Minute)) {
		t.Fatalf("saved %+v", saved)
	}
	// Repeated weak logins are written at most once per writeEvery.
	f.Mark("b@x", t0.Add(2*time.Minute))
	if err := f.Flush(context.Background()); err != nil || len(saved) != 1 {
		t.Fatalf("rewritten within writeEvery: %+v", saved)
	}
	// The bound: old flags make room, then arbitrary ones.
	f.Mark("c@x", t0)
	f.Mark("d@x", t0)
	f.Mark("e@x", t0.Add(48*time.Hour))
	if n := len(f.List(time.Time{})); n > 3 || !f.Weak("e@x", t0.Add(48*time.Hour)) {
		t.Fatalf("bound: %d flags, e@x weak %v", n, f.Weak("e@x", t0.Add(48*time.Hour)))
	}
	// Load keeps the later time.
	f.Load([]Seen{{Login: "e@x", At: t0}})
	if !f.Weak("e@x", t0.Add(48*time.Hour)) {
		t.Fatal("Load moved a flag back")
	}
}

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(5)
	n := 0
	for range 100 {
		if l.Allow(t0) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("burst %d; want 10", n)
	}
	if !l.Allow(t0.Add(time.Second)) {
		t.Fatal("no token after a second")
	}
	if !NewLimiter(0).Allow(t0) {
		t.Fatal("rate 0 limits")
	}
}

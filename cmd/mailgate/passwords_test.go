package main

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"mailgate/internal/config"
	"mailgate/internal/password"
)

// A reload sets weak_days while the admin API (GET /v1/password/weak)
// and the hourly prune read it: no data race (go test -race).
func TestPwStateWeakDaysReloadRace(t *testing.T) {
	c := config.Default().Password
	c.WeakDays = 30
	s, err := newPwState(context.Background(), c, nil, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			c.WeakDays = 1 + i%10
			s.reconfigure(c, password.Default())
		}
	})
	for range 200 {
		if d := s.days(); d < 1 || d > 30 {
			t.Fatalf("days() = %d", d)
		}
	}
	wg.Wait()
	if d := s.days(); d != 1+199%10 {
		t.Fatalf("after the reloads days() = %d, want %d", d, 1+199%10)
	}
}

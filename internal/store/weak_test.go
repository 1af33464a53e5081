package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestWeakLogins: flags are upserted (the later time wins), removed by a
// zero time, listed since a time, pruned, and a bad row is skipped.
func TestWeakLogins(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.SaveWeak(ctx, []WeakLogin{
		{Login: "alice@example.com", Seen: t0},
		{Login: "bob@example.com", Seen: t0.Add(-48 * time.Hour)},
		{Login: "carol@example.com", Seen: t0.Add(time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	// An older time does not move alice back; carol is cleared; a bad
	// row is skipped and reported, the rest written.
	err = s.SaveWeak(ctx, []WeakLogin{
		{Login: "alice@example.com", Seen: t0.Add(-time.Hour)},
		{Login: "carol@example.com"},
		{Login: ""},
	})
	var br *BadRows
	if !errors.As(err, &br) {
		t.Fatalf("bad row: err = %v", err)
	}
	got, err := s.WeakLogins(ctx, t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Login != "alice@example.com" || !got[0].Seen.Equal(t0) {
		t.Fatalf("WeakLogins = %+v", got)
	}
	if all, _ := s.WeakLogins(ctx, time.Time{}); len(all) != 2 {
		t.Fatalf("all = %+v", all)
	}
	if n, err := s.DeleteWeakBefore(ctx, t0.Add(-24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("DeleteWeakBefore = %d, %v", n, err)
	}
	if all, _ := s.WeakLogins(ctx, time.Time{}); len(all) != 1 {
		t.Fatalf("after prune = %+v", all)
	}
}

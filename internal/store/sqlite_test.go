package store_test

import (
	"database/sql"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/rules"
	"mailgate/internal/store"
	"mailgate/internal/store/storetest"
)

func TestSQLite(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	files := map[string]string{}
	storetest.Run(t, func(t *testing.T) storetest.Store {
		mu.Lock()
		path, ok := files[t.Name()]
		if !ok {
			path = filepath.Join(dir, fmt.Sprintf("%d.db", len(files)))
			files[t.Name()] = path
		}
		mu.Unlock()
		s, err := store.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSQLitePermits(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	files := map[string]string{}
	storetest.RunPermits(t, func(t *testing.T) storetest.PermitStore {
		mu.Lock()
		path, ok := files[t.Name()]
		if !ok {
			path = filepath.Join(dir, fmt.Sprintf("%d.db", len(files)))
			files[t.Name()] = path
		}
		mu.Unlock()
		s, err := store.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOpenSQLiteErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{"", filepath.Join(dir, "a?b.db"), filepath.Join(dir, "missing", "x.db")} {
		if s, err := store.OpenSQLite(path); err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) succeeded", path)
		}
	}
}

func TestSQLiteSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != store.SchemaVersion() {
		t.Fatalf("schema version %d, want %d", v, store.SchemaVersion())
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM schema_version`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema_version has %d rows (%v), want 1", n, err)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}

	// Reopening applies nothing twice.
	s, err = store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A file from a newer mailgate is refused, not silently used.
	if _, err := db.Exec(`UPDATE schema_version SET version = ?`, store.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if s, err := store.OpenSQLite(path); err == nil {
		s.Close()
		t.Fatal("opened a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestSQLiteCorruptRow checks that a stored rule that no longer parses is
// an error naming it, not a rule silently dropped.
func TestSQLiteCorruptRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	added, err := s.AddRules(t.Context(), time.Now(), "test", []rules.Rule{
		{Account: "a@example.com", Action: rules.Allow, Match: netip.MustParsePrefix("192.0.2.1/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE rules SET "match" = '300.1.1.1'`); err != nil {
		t.Fatal(err)
	}
	_, err = s.Rules(t.Context())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("rule %d", added[0].ID)) {
		t.Fatalf("Rules with a corrupt row: %v", err)
	}
}

// BenchmarkAddRulesBulk measures one AddRules call of b.N rules (one
// transaction); run with -benchtime=1000000x for the million-rule import.
func BenchmarkAddRulesBulk(b *testing.B) {
	s, err := store.OpenSQLite(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rs := make([]rules.Rule, b.N)
	for i := range rs {
		rs[i] = rules.Rule{
			Account: fmt.Sprintf("user%d@example.com", i),
			Service: rules.SMTP,
			Action:  rules.Allow,
			Match:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
			Comment: "imported",
		}
	}
	now := time.Now()
	b.ResetTimer()
	start := time.Now()
	added, err := s.AddRules(b.Context(), now, "bench", rs)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(len(added))/time.Since(start).Seconds(), "rules/s")
	if b.N >= 100000 {
		start = time.Now()
		got, err := s.Rules(b.Context())
		if err != nil || len(got) != b.N {
			b.Fatalf("Rules: %d rules, %v", len(got), err)
		}
		b.ReportMetric(float64(len(got))/time.Since(start).Seconds(), "loaded-rules/s")
	}
}

func TestSQLiteState(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	files := map[string]string{}
	storetest.RunState(t, func(t *testing.T) storetest.StateStore {
		mu.Lock()
		path, ok := files[t.Name()]
		if !ok {
			path = filepath.Join(dir, fmt.Sprintf("%d.db", len(files)))
			files[t.Name()] = path
		}
		mu.Unlock()
		s, err := store.OpenSQLite(path)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

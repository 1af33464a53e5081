package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"mailgate/internal/store"
	"mailgate/internal/store/storetest"
	"mailgate/test/harness"
)

// pgOpener returns an open function for the storetest suites: one
// database per test name on a real PostgreSQL server (so reopening with
// the same t sees the same data, and every new t starts empty).
func pgOpener(t *testing.T, pg *harness.Postgres, prefix string) func(t *testing.T) *store.Postgres {
	var mu sync.Mutex
	dsns := map[string]string{}
	return func(t *testing.T) *store.Postgres {
		t.Helper()
		mu.Lock()
		dsn, ok := dsns[t.Name()]
		if !ok {
			name := fmt.Sprintf("%s_%d", prefix, len(dsns))
			dsn = pg.CreateDatabase(t, name, "pw-"+name)
			dsns[t.Name()] = dsn
		}
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := store.OpenPostgres(ctx, dsn, store.PostgresOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// TestPostgresStore runs the shared store suites (rules and audit, relay
// permits, live state) against a real PostgreSQL server from Debian's
// postgresql-15, as TestSQLite* run them against SQLite.
func TestPostgresStore(t *testing.T) {
	pg := harness.StartPostgres(t, "127.0.0.62")
	t.Run("Rules", func(t *testing.T) {
		open := pgOpener(t, pg, "mg_rules")
		storetest.Run(t, func(t *testing.T) storetest.Store { return open(t) })
	})
	t.Run("Permits", func(t *testing.T) {
		open := pgOpener(t, pg, "mg_permits")
		storetest.RunPermits(t, func(t *testing.T) storetest.PermitStore { return open(t) })
	})
	t.Run("State", func(t *testing.T) {
		open := pgOpener(t, pg, "mg_state")
		storetest.RunState(t, func(t *testing.T) storetest.StateStore { return open(t) })
	})
}

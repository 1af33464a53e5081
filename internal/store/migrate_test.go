package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/rules"
)

// A file made by schema version 2 keeps its rules, and its id sequence,
// through the rebuild of the rules table in version 3.
func TestMigrateRulesToV3(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		migrations[0], migrations[1],
		`INSERT INTO schema_version (version) VALUES (2)`,
		`INSERT INTO rules (scope, account, service, action, "match", comment, expires, created, created_by) VALUES
			('account', 'shop@example.com', 'smtp', 'allow', '10.0.0.101', 'web', NULL, 1700000000, 'cli:root'),
			('global', '', 'all', 'deny', '192.0.2.0/24', '', 1800000000, 1700000000, 'cli:root'),
			('account', 'x@example.com', 'pop3', 'allow', 'none', '', NULL, 1700000000, 'cli:root')`,
		`DELETE FROM rules WHERE id = 3`, // the sequence stays at 3
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()

	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != 1 || got[0].MatchString() != "10.0.0.101" || got[0].Comment != "web" ||
		got[1].ID != 2 || got[1].Scope != rules.ScopeGlobal || got[1].Expires.Unix() != 1800000000 {
		t.Fatalf("rules after migration: %+v", got)
	}
	added, err := s.AddRules(ctx, time.Unix(1700000100, 0), "cli:root", []rules.Rule{
		{Account: "alice@example.com", Action: rules.Extra, Countries: "FR"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if added[0].ID != 4 {
		t.Errorf("first rule after the migration got id %d, want 4 (ids are never reused)", added[0].ID)
	}
}

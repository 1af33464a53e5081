package store_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// snapshot is every file of dir with its content hash and mtime.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := e.Info()
		out[e.Name()] = fmt.Sprintf("%x", sha256.Sum256(b)) + fi.ModTime().String()
	}
	return out
}

func addRule(t *testing.T, s *store.SQLite, ip string) {
	t.Helper()
	r := rules.Rule{Scope: rules.ScopeAccount, Account: "alice@example.org", Action: rules.Allow, Match: netip.MustParsePrefix(ip)}
	if _, err := s.AddRules(context.Background(), time.Now(), "test", []rules.Rule{r}); err != nil {
		t.Fatal(err)
	}
}

// A read-only open reads the rules and changes no file of the store,
// whether the daemon is stopped or has the file open with changes still
// in its write-ahead log.
func TestOpenSQLiteReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "mailgate.db")
	w, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	addRule(t, w, "192.0.2.1/32")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	before := snapshot(t, dir)
	time.Sleep(10 * time.Millisecond) // a write would show in the mtime
	ro, err := store.OpenSQLiteReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ro.Rules(ctx)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Rules = %v, %v; want the one rule", rs, err)
	}
	if _, err := ro.AddRules(ctx, time.Now(), "test", rs); err == nil {
		t.Error("AddRules on a read-only store succeeded")
	}
	ro.Close()
	if after := snapshot(t, dir); !equalMaps(before, after) {
		t.Errorf("the read-only open changed the store's files:\nbefore %q\nafter  %q", keys(before), keys(after))
	}

	// The daemon running: its last change is in the WAL.
	w, err = store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	addRule(t, w, "192.0.2.2/32")
	ro, err = store.OpenSQLiteReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if rs, err := ro.Rules(ctx); err != nil || len(rs) != 2 {
		t.Fatalf("Rules with the writer open = %d rules, %v; want 2", len(rs), err)
	}
}

func TestOpenSQLiteReadOnlyErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.db")
	if _, err := store.OpenSQLiteReadOnly(missing); err == nil {
		t.Error("a missing file opened")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("the read-only open created the file")
	}
	notdb := filepath.Join(dir, "x.db")
	os.WriteFile(notdb, []byte("hello"), 0o600)
	if _, err := store.OpenSQLiteReadOnly(notdb); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Errorf("a non-database opened: %v", err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

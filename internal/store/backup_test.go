package store_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// TestBackupIsAConsistentOpenableCopy backs up a store that has rules
// written only to its WAL, and opens the copy.
func TestBackupIsAConsistentOpenableCopy(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	r := rules.Rule{Scope: rules.ScopeAccount, Account: "a@example.com", Action: rules.Deny, Match: netip.MustParsePrefix("192.0.2.0/24")}
	if _, err := st.AddRules(context.Background(), now, "test", []rules.Rule{r}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := st.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(copyPath, buf.Bytes(), 0o600)
	c, err := store.OpenSQLite(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs, err := c.Rules(context.Background())
	if err != nil || len(rs) != 1 || rs[0].Account != "a@example.com" {
		t.Fatalf("copy holds %v, %v", rs, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".mailgate-backup-*")); len(left) != 0 {
		t.Fatalf("temporary copy left: %v", left)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestBackupFailureLeavesNothing: a writer that fails gets an error, and
// the temporary copy is removed.
func TestBackupFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Backup(context.Background(), failWriter{}); err == nil {
		t.Fatal("no error")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".mailgate-backup-*")); len(left) != 0 {
		t.Fatalf("temporary copy left: %v", left)
	}
}

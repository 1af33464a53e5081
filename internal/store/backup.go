package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Backup writes a consistent copy of the database to w while the store
// is in use: SQLite's VACUUM INTO copies one read transaction's view
// into a new file next to the database (so it needs the store
// directory's free space once more), which is then streamed to w and
// removed. The copy is a plain database file (no WAL) that OpenSQLite
// opens.
func (s *SQLite) Backup(ctx context.Context, w io.Writer) error {
	// CreateTemp makes an empty file with O_EXCL and mode 0600: nobody
	// else can have put a link there, and VACUUM INTO accepts an empty
	// file.
	f, err := os.CreateTemp(filepath.Dir(s.path), ".mailgate-backup-*.db")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	f.Close()
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return fmt.Errorf("backup: vacuum into %s: %w", tmp, err)
	}
	f, err = os.Open(tmp)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

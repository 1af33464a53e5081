package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// OpenSQLiteReadOnly opens the database file at path for reading only
// (mailgate replay --store): it creates nothing, migrates nothing and
// writes nothing, also while the daemon has the file open. The file's
// schema must be the one this build writes. Only the reading methods
// (Rules, Bans, Permits, ...) may be used; writes fail.
func OpenSQLiteReadOnly(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open sqlite store %q: the path may not contain '?' or '#'", path)
	}
	if _, err := os.Stat(path); err != nil {
		// SQLite would create it.
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	// Without a write-ahead log beside it (no daemon has the file open)
	// the file is opened immutable: SQLite then creates no -wal and -shm
	// files and takes no locks. With one (the daemon runs, and its last
	// changes may be only in the log), read-only through the log.
	q := "mode=ro"
	if _, err := os.Stat(path + "-wal"); errors.Is(err, os.ErrNotExist) {
		q = "immutable=1"
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q}
	dsn := u.String() + fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		"&_pragma=query_only(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s := &SQLite{db: db, path: path}
	var v int
	if err := db.QueryRowContext(context.Background(), `SELECT version FROM schema_version`).Scan(&v); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %q read-only: reading its schema version: %w", path, err)
	}
	if v != len(migrations) {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %q read-only: schema version %d, this mailgate writes %d (start the daemon of this version once to migrate it, or use a matching mailgate)", path, v, len(migrations))
	}
	return s, nil
}

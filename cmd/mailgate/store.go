package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mailgate/internal/config"
	"mailgate/internal/store"
)

// pgOpenTimeout bounds connecting to PostgreSQL and migrating at start.
const pgOpenTimeout = 30 * time.Second

// openStore opens the store cfg names ([store] driver) and returns it
// with a description for logs: the SQLite file, or user@host:port/db of
// the PostgreSQL server (never the DSN, which may hold a password).
func openStore(ctx context.Context, c config.Store) (store.Backend, string, error) {
	switch c.Driver {
	case "sqlite", "":
		st, err := store.OpenSQLite(c.Path)
		if err != nil {
			return nil, "", err
		}
		return st, c.Path, nil
	case "postgres":
		var opt store.PostgresOptions
		if c.PasswordFile != "" {
			pw, err := config.ReadPasswordFile(c.PasswordFile)
			if err != nil {
				return nil, "", fmt.Errorf("store.password_file: %w", err)
			}
			opt.Password = pw
		}
		opt.MaxConns = int32(c.MaxConns)
		ctx, cancel := context.WithTimeout(ctx, pgOpenTimeout)
		defer cancel()
		st, err := store.OpenPostgres(ctx, c.DSN, opt)
		if err != nil {
			return nil, "", err
		}
		return st, "postgres " + st.Name(), nil
	}
	return nil, "", fmt.Errorf("store.driver %q: unknown", c.Driver)
}

// errReplayPostgres: replay --store reads SQLite files only for now.
var errReplayPostgres = errors.New("replay --store reads a SQLite store only, and store.driver is postgres; replay without --store (the config's rules only)")

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/metrics"
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

// ruleSyncer is the rule sync's state (*store.Postgres).
type ruleSyncer interface {
	Name() string
	RuleSyncStatus() store.RuleSyncStatus
}

// withRuleSync adds the rule sync's state to status and its metrics to
// tel.
func withRuleSync(status func(time.Time, *api.StatusJSON), tel *telemetry, rs ruleSyncer) func(time.Time, *api.StatusJSON) {
	tel.m.Writer(func(w io.Writer) { writeRuleSyncMetrics(w, rs.RuleSyncStatus()) })
	return func(now time.Time, out *api.StatusJSON) {
		status(now, out)
		out.RuleSync = api.FromRuleSync("PostgreSQL "+rs.Name(), rs.RuleSyncStatus(), now)
	}
}

// writeRuleSyncMetrics writes the mailgate_rulesync_ metrics
// (docs/metrics.md).
func writeRuleSyncMetrics(w io.Writer, s store.RuleSyncStatus) {
	up := 0.0
	if s.Connected {
		up = 1
	}
	metrics.WriteGauge(w, "mailgate_rulesync_connected", up)
	metrics.WriteCounter(w, "mailgate_rulesync_resyncs_total", uint64(s.Resyncs))
	metrics.WriteCounter(w, "mailgate_rulesync_notices_total", uint64(s.Notices))
	last := 0.0
	if !s.LastNotice.IsZero() {
		last = float64(s.LastNotice.Unix())
	}
	metrics.WriteGauge(w, "mailgate_rulesync_last_notice_timestamp_seconds", last)
	metrics.WriteGauge(w, "mailgate_rulesync_lag_seconds", s.Lag.Seconds())
}

// onceWhileDown keeps a loop that writes every second from logging the
// same unreachable store every second: the first *store.Unavailable is
// logged, the rest of the outage is not, and the first success after it
// is.
type onceWhileDown struct {
	log  *slog.Logger
	what string
	down bool
}

// failed reports whether err is taken care of (an unreachable store, now
// logged once); any other error is the caller's to log. A nil err ends an
// outage.
func (o *onceWhileDown) failed(err error) bool {
	var u *store.Unavailable
	switch {
	case err == nil:
		if o.down {
			o.log.Info(o.what + ": the store is reachable again")
		}
		o.down = false
		return false
	case !errors.As(err, &u):
		return false
	case !o.down:
		o.log.Error(o.what+": the store is unreachable; retrying every second", "kind", "store", "err", err)
	}
	o.down = true
	return true
}

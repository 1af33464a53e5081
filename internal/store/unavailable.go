package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Unavailable is the error of a change the store could not take because
// its server cannot be reached: the transaction never committed, so
// nothing was changed, in the store or (callers make sure) in memory.
// Decisions go on from the rules, bans and permits in memory. Test with
// errors.As.
type Unavailable struct {
	Store string // "PostgreSQL user@host:port/db" (never the DSN)
	Err   error  // what failed, for logs
}

func (e *Unavailable) Error() string {
	return "the store (" + e.Store + ") is unreachable: " + unreachableCause(e.Err) +
		"; nothing was changed; decisions go on from memory"
}

func (e *Unavailable) Unwrap() error { return e.Err }

// Cause says in a few words why the server could not be reached.
func (e *Unavailable) Cause() string { return unreachableCause(e.Err) }

// unreachableCause says in a few words why a server could not be
// reached: the socket error when there is one (connection refused, no
// route to host), not the driver's chain of wrappers.
func unreachableCause(err error) string {
	var op *net.OpError
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return "timed out"
	case errors.As(err, &dns):
		return "cannot resolve " + dns.Name
	case errors.As(err, &op) && op.Err != nil:
		var sc *net.OpError
		if errors.As(op.Err, &sc) && sc.Err != nil {
			return sc.Err.Error()
		}
		return op.Err.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the server closed the connection"
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// FATAL at connect: the server is up but refuses us (shutting
		// down, too many clients, authentication).
		return pe.Severity + ": " + pe.Message + " (SQLSTATE " + pe.Code + ")"
	}
	return err.Error()
}

// inTx runs fn in a transaction. When the transaction cannot begin (the
// server is down, refuses connections, or a pooled connection is dead),
// or the connection is lost before the commit, the error is an
// *Unavailable: PostgreSQL rolled back, nothing was changed. An error
// the server returned (a constraint) is returned as it is, and so is a
// commit that failed: a commit lost in flight may have happened.
func (s *Postgres) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return &Unavailable{Store: "PostgreSQL " + s.name, Err: err}
	}
	if err := fn(tx); err != nil {
		closed := tx.Conn().IsClosed()
		tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // the first error is the one to report
		var pe *pgconn.PgError
		if closed && !errors.As(err, &pe) {
			return &Unavailable{Store: "PostgreSQL " + s.name, Err: err}
		}
		return err
	}
	return tx.Commit(ctx)
}

// readErr wraps the error of a read: an *Unavailable when no connection
// to the server could be made, else what with err.
func (s *Postgres) readErr(what string, err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return &Unavailable{Store: "PostgreSQL " + s.name, Err: err}
	}
	return fmt.Errorf("%s: %w", what, err)
}

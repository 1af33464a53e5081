package store

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// WeakLogin is a login the nginx door saw log in with a password that
// fails the password policy, and when it last did. Nothing of the
// password is kept.
type WeakLogin struct {
	Login string
	// Seen is the last time; the zero time in SaveWeak removes the login
	// (it logged in with a good password since).
	Seen time.Time
}

// MaxWeakLoginLen bounds a stored login.
const MaxWeakLoginLen = 512

func checkWeak(w *WeakLogin) error {
	if w.Login == "" || len(w.Login) > MaxWeakLoginLen || !utf8.ValidString(w.Login) {
		return fmt.Errorf("weak password login %.64q: empty, longer than %d bytes or not UTF-8", w.Login, MaxWeakLoginLen)
	}
	return nil
}

// SaveWeak upserts (or, with a zero Seen, removes) weak-password logins
// in one transaction. A bad row is skipped and reported in a *BadRows
// error after the others are written.
func (s *SQLite) SaveWeak(ctx context.Context, ws []WeakLogin) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save weak-password logins: %w", err)
	}
	defer tx.Rollback()
	var bad []error
	for i := range ws {
		w := &ws[i]
		if err := checkWeak(w); err != nil {
			bad = addBad(bad, err)
			continue
		}
		if w.Seen.IsZero() {
			_, err = tx.ExecContext(ctx, `DELETE FROM weak_passwords WHERE login = ?`, w.Login)
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO weak_passwords (login, last_seen) VALUES (?, ?)
				ON CONFLICT (login) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`, w.Login, seconds(w.Seen))
		}
		if err != nil {
			return fmt.Errorf("save weak-password login %q: %w", w.Login, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save weak-password logins: commit: %w", err)
	}
	return badRows("weak_passwords", bad)
}

// WeakLogins returns the logins seen with a weak password at or after
// since, most recent first. Bad rows are skipped and reported in a
// *BadRows error.
func (s *SQLite) WeakLogins(ctx context.Context, since time.Time) ([]WeakLogin, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT login, last_seen FROM weak_passwords WHERE last_seen >= ? ORDER BY last_seen DESC, login`, seconds(since))
	if err != nil {
		return nil, fmt.Errorf("list weak-password logins: %w", err)
	}
	defer rows.Close()
	var out []WeakLogin
	var bad []error
	for rows.Next() {
		var w WeakLogin
		var t int64
		if err := rows.Scan(&w.Login, &t); err != nil {
			bad = addBad(bad, fmt.Errorf("weak-password login: %w", err))
			continue
		}
		w.Seen = fromSeconds(t)
		if err := checkWeak(&w); err != nil {
			bad = addBad(bad, err)
			continue
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list weak-password logins: %w", err)
	}
	return out, badRows("weak_passwords", bad)
}

// DeleteWeakBefore forgets logins not seen with a weak password since
// before; it returns how many.
func (s *SQLite) DeleteWeakBefore(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM weak_passwords WHERE last_seen < ?`, seconds(before))
	if err != nil {
		return 0, fmt.Errorf("prune weak-password logins: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune weak-password logins: %w", err)
	}
	return n, nil
}

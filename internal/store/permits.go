package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// MaxDoorLen bounds a permit's door ("dovecot", "nginx", "hook", "manual").
const MaxDoorLen = 32

const permitColumns = `prefix, login, service, door, granted, expires, logins, comment, created_by`

// upsertPermitsSQL stores a batch of permits carried as one JSON array
// (see insertBatch). "WHERE true" tells SQLite's parser that ON CONFLICT
// belongs to the INSERT, not to a join of the SELECT.
const upsertPermitsSQL = `INSERT INTO permits (` + permitColumns + `)
	SELECT value->>0, value->>1, value->>2, value->>3, value->>4,
		value->>5, value->>6, value->>7, value->>8
	FROM json_each(?) WHERE true
	ON CONFLICT (prefix) DO UPDATE SET
		login = excluded.login, service = excluded.service, door = excluded.door,
		granted = excluded.granted, expires = excluded.expires, logins = excluded.logins,
		comment = excluded.comment, created_by = excluded.created_by`

// PermitDetail summarizes a relay permit for the audit trail and for
// people, e.g.
//
//	address=192.0.2.7/32 login=alice@example.com service=imap door=dovecot expires=2026-03-01T12:30:00Z logins=2
//
// A permit holds no secret, and neither does its summary.
func PermitDetail(p *relay.Permit) string {
	var b strings.Builder
	b.WriteString("address=")
	b.WriteString(p.Prefix.String())
	if p.Login != "" {
		b.WriteString(" login=")
		b.WriteString(p.Login)
	}
	b.WriteString(" service=")
	b.WriteString(p.Service.String())
	b.WriteString(" door=")
	b.WriteString(p.Door)
	b.WriteString(" expires=")
	b.WriteString(p.Expires.UTC().Format(time.RFC3339))
	if p.Logins > 0 {
		b.WriteString(" logins=")
		b.WriteString(strconv.Itoa(p.Logins))
	}
	if p.Comment != "" {
		b.WriteString(" comment=")
		b.WriteString(strconv.Quote(p.Comment))
	}
	return b.String()
}

// checkPermit validates a permit before it is stored: a permit the store
// could not read back would stop mailgate from starting.
func checkPermit(p *relay.Permit) error {
	switch {
	case !p.Prefix.IsValid():
		return errors.New("prefix: not a valid address or network")
	case p.Prefix.Masked() != p.Prefix:
		return fmt.Errorf("prefix: %s has host bits set", p.Prefix)
	}
	if s, err := rules.ParseService(p.Service.String()); err != nil || s != p.Service {
		return fmt.Errorf("service: %v cannot be stored", p.Service)
	}
	if err := checkText("login", p.Login, rules.MaxAccountLen); err != nil {
		return err
	}
	if p.Door == "" {
		return errors.New("door: empty")
	}
	if err := checkText("door", p.Door, MaxDoorLen); err != nil {
		return err
	}
	if err := checkText("comment", p.Comment, rules.MaxCommentLen); err != nil {
		return err
	}
	if err := checkText("created_by", p.By, MaxActorLen); err != nil {
		return err
	}
	switch {
	case p.Granted.IsZero():
		return errors.New("granted: not set")
	case p.Expires.IsZero():
		return errors.New("expires: not set")
	case p.Logins < 0:
		return fmt.Errorf("logins: %d is negative", p.Logins)
	}
	return nil
}

// checkText checks a stored string: valid UTF-8, at most max bytes, no
// control characters (it is shown on one line).
func checkText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%s: longer than %d bytes", field, max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s: %q has a control character", field, s)
		}
	}
	return nil
}

// permitRow is a permit as upsertPermitsSQL reads it.
func permitRow(p *relay.Permit) [9]any {
	return [9]any{p.Prefix.String(), p.Login, p.Service.String(), p.Door,
		seconds(p.Granted), seconds(p.Expires), p.Logins, p.Comment, p.By}
}

// SavePermits stores permits the relay table granted or refreshed,
// replacing any stored permit for the same prefix, in one transaction:
// either all are stored or none. Automatic changes write no audit row (the
// decision log has them). Times are kept in whole seconds.
func (s *SQLite) SavePermits(ctx context.Context, ps []relay.Permit) error {
	for i := range ps {
		if err := checkPermit(&ps[i]); err != nil {
			return fmt.Errorf("save permits: permit %s: %w", ps[i].Prefix, err)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save permits: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, upsertPermitsSQL)
	if err != nil {
		return fmt.Errorf("save permits: %w", err)
	}
	defer stmt.Close()
	rows := make([]any, 0, min(len(ps), insertBatch))
	for len(ps) > 0 {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("save permits: %w", err)
		}
		n := min(len(ps), insertBatch)
		batch := ps[:n]
		ps = ps[n:]
		rows = rows[:0]
		for i := range batch {
			rows = append(rows, permitRow(&batch[i]))
		}
		j, err := json.Marshal(rows)
		if err != nil {
			return fmt.Errorf("save permits: %w", err)
		}
		// See insertRules: the transaction is bound to ctx.
		if _, err := stmt.ExecContext(context.Background(), string(j)); err != nil {
			return fmt.Errorf("save permits %s to %s: %w", batch[0].Prefix, batch[n-1].Prefix, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save permits: commit: %w", err)
	}
	return nil
}

// AddPermit stores a permit an admin added (replacing any stored permit
// for its prefix), with CreatedBy = actor and an audit row (OpAdd) by
// actor at now.
func (s *SQLite) AddPermit(ctx context.Context, now time.Time, actor string, p relay.Permit) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	p.By = actor
	if err := checkPermit(&p); err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	defer tx.Rollback()
	j, err := json.Marshal([]any{permitRow(&p)})
	if err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	if _, err := tx.ExecContext(ctx, upsertPermitsSQL, string(j)); err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	if err := insertPermitAudit(ctx, tx, now, actor, OpAdd, &p); err != nil {
		return fmt.Errorf("add permit %s: audit: %w", p.Prefix, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add permit %s: commit: %w", p.Prefix, err)
	}
	return nil
}

func insertPermitAudit(ctx context.Context, tx *sql.Tx, now time.Time, actor, op string, p *relay.Permit) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO permit_audit (at, actor, op, prefix, detail) VALUES (?, ?, ?, ?, ?)`,
		seconds(now), actor, op, p.Prefix.String(), PermitDetail(p))
	return err
}

// DeletePermits removes the stored permits for the prefixes of ps, in one
// transaction. With audit set (an admin removed them) each gets an audit
// row (OpRemove) by actor at now, summarizing the permit as given: the
// permit may not have been stored yet. A prefix with no stored permit is
// not an error.
func (s *SQLite) DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("delete permits: %w", err)
	}
	if len(ps) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete permits: %w", err)
	}
	defer tx.Rollback()
	del, err := tx.PrepareContext(ctx, `DELETE FROM permits WHERE prefix = ?`)
	if err != nil {
		return fmt.Errorf("delete permits: %w", err)
	}
	defer del.Close()
	for i := range ps {
		p := &ps[i]
		if !p.Prefix.IsValid() {
			return fmt.Errorf("delete permit %d of %d: prefix: not a valid address or network", i+1, len(ps))
		}
		if _, err := del.ExecContext(ctx, p.Prefix.String()); err != nil {
			return fmt.Errorf("delete permit %s: %w", p.Prefix, err)
		}
		if audit {
			if err := insertPermitAudit(ctx, tx, now, actor, OpRemove, p); err != nil {
				return fmt.Errorf("delete permit %s: audit: %w", p.Prefix, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete permits: commit: %w", err)
	}
	return nil
}

// Permits returns the stored permits not expired at now (Expires after
// now), ordered by prefix: by address, then by prefix length, IPv4 first.
// A row that does not read back is skipped and reported in a *BadRows
// error naming its prefix, returned with the good permits: the caller logs
// it (a permit silently dropped would refuse mail a user was promised),
// and one bad row never stops mailgate from starting.
func (s *SQLite) Permits(ctx context.Context, now time.Time) ([]relay.Permit, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+permitColumns+` FROM permits WHERE expires > ?`, seconds(now))
	if err != nil {
		return nil, fmt.Errorf("list permits: %w", err)
	}
	defer rows.Close()
	var out []relay.Permit
	var bad []error
	for rows.Next() {
		var (
			p                relay.Permit
			prefix, service  string
			granted, expires int64
		)
		if err := rows.Scan(&prefix, &p.Login, &service, &p.Door, &granted, &expires, &p.Logins, &p.Comment, &p.By); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %.64q: %w", prefix, err))
			continue
		}
		if p.Prefix, err = netip.ParsePrefix(prefix); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %.64q: bad prefix: %w", prefix, err))
			continue
		}
		if p.Service, err = rules.ParseService(service); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %s: %w", prefix, err))
			continue
		}
		p.Granted, p.Expires = fromSeconds(granted), fromSeconds(expires)
		if err := checkPermit(&p); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %s: %w", prefix, err))
			continue
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list permits: %w", err)
	}
	slices.SortFunc(out, func(a, b relay.Permit) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out, badRows("permits", bad)
}

// comparePrefix orders prefixes by address, then by length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// DeleteExpiredPermits removes the permits expired at now (Expires at or
// before now) and returns how many it removed. Expiry writes no audit row.
func (s *SQLite) DeleteExpiredPermits(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM permits WHERE expires <= ?`, seconds(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired permits: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete expired permits: %w", err)
	}
	return int(n), nil
}

// PermitAudit returns up to limit manual permit changes, newest first;
// limit <= 0 means all. RuleID is 0; Detail (PermitDetail) starts with
// the permit's address.
func (s *SQLite) PermitAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at, actor, op, 0, detail FROM permit_audit ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read permit audit: %w", err)
	}
	out, err := scanAudit(rows)
	if err != nil {
		return nil, fmt.Errorf("read permit audit: %w", err)
	}
	return out, nil
}

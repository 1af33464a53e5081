package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mailgate/internal/abuse"
)

// Ban audit operations.
const (
	OpBan   = "ban"
	OpUnban = "unban"
)

const banColumns = `id, kind, prefix, login, reason, created, expires, comment, created_by`

// BanDetail summarizes a ban for the audit trail.
func BanDetail(b *abuse.Ban) string {
	var sb strings.Builder
	if b.Kind == abuse.BanLogin {
		sb.WriteString("login=" + b.Login)
	} else {
		sb.WriteString("address=" + b.Prefix.String())
	}
	sb.WriteString(" reason=" + b.Reason)
	if !b.Expires.IsZero() {
		sb.WriteString(" expires=" + b.Expires.UTC().Format(time.RFC3339))
	}
	if b.Comment != "" {
		sb.WriteString(" comment=" + strconv.Quote(b.Comment))
	}
	return sb.String()
}

// AddBans stores bans that already carry their IDs (the tracker assigns
// them). Each gets an audit row by actor when audit is set (manual bans);
// automatic bans are in the decision log instead.
func (s *SQLite) AddBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban, audit bool) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("add bans: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add bans: %w", err)
	}
	defer tx.Rollback()
	for i := range bs {
		b := &bs[i]
		if err := CheckBan(b); err != nil {
			return fmt.Errorf("add bans: %w", err)
		}
		var prefix string
		if b.Kind == abuse.BanAddr {
			prefix = b.Prefix.String()
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO bans (`+banColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			b.ID, b.Kind.String(), prefix, b.Login, b.Reason, seconds(b.Created), nullSeconds(b.Expires), b.Comment, b.CreatedBy); err != nil {
			return fmt.Errorf("add ban %d: %w", b.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ban_ids SET max_id = max(max_id, ?)`, b.ID); err != nil {
			return fmt.Errorf("add ban %d: %w", b.ID, err)
		}
		if audit {
			if _, err := tx.ExecContext(ctx, `INSERT INTO ban_audit (at, actor, op, ban_id, detail) VALUES (?, ?, ?, ?, ?)`,
				seconds(now), actor, OpBan, b.ID, BanDetail(b)); err != nil {
				return fmt.Errorf("add ban %d: audit: %w", b.ID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add bans: commit: %w", err)
	}
	return nil
}

// DeleteBans removes bans by ID, with an audit row each.
func (s *SQLite) DeleteBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("delete bans: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete bans: %w", err)
	}
	defer tx.Rollback()
	for i := range bs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM bans WHERE id = ?`, bs[i].ID); err != nil {
			return fmt.Errorf("delete ban %d: %w", bs[i].ID, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO ban_audit (at, actor, op, ban_id, detail) VALUES (?, ?, ?, ?, ?)`,
			seconds(now), actor, OpUnban, bs[i].ID, BanDetail(&bs[i])); err != nil {
			return fmt.Errorf("delete ban %d: audit: %w", bs[i].ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete bans: commit: %w", err)
	}
	return nil
}

// ForgetBans removes bans by ID without an audit row: automatic bans the
// tracker no longer holds (lifted, widened or ended). An ID not stored is
// not an error.
func (s *SQLite) ForgetBans(ctx context.Context, ids []int64) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("forget bans: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM bans WHERE id = ?`, id); err != nil {
			return fmt.Errorf("forget ban %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("forget bans: commit: %w", err)
	}
	return nil
}

// Bans returns the stored bans not expired at now, ordered by ID, and the
// highest ban ID ever stored or held (to seed the tracker's IDs: a skipped
// row's ID is not given again). A row that does
// not read back as a ban the tracker would hold is skipped and reported
// in a *BadRows error returned with the good ones.
func (s *SQLite) Bans(ctx context.Context, now time.Time) ([]abuse.Ban, int64, error) {
	var maxID int64
	if err := s.db.QueryRowContext(ctx, `SELECT max(max_id, coalesce((SELECT max(id) FROM bans), 0)) FROM ban_ids`).Scan(&maxID); err != nil {
		return nil, 0, fmt.Errorf("list bans: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+banColumns+` FROM bans
		WHERE expires IS NULL OR expires > ? ORDER BY id`, seconds(now))
	if err != nil {
		return nil, 0, fmt.Errorf("list bans: %w", err)
	}
	defer rows.Close()
	var out []abuse.Ban
	var bad []error
	for rows.Next() {
		var b abuse.Ban
		var kind, prefix string
		var created int64
		var expires sql.NullInt64
		if err := rows.Scan(&b.ID, &kind, &prefix, &b.Login, &b.Reason, &created, &expires, &b.Comment, &b.CreatedBy); err != nil {
			bad = addBad(bad, fmt.Errorf("ban %d: %w", b.ID, err))
			continue
		}
		switch kind {
		case "address":
			b.Kind = abuse.BanAddr
			p, err := netip.ParsePrefix(prefix)
			if err != nil {
				bad = addBad(bad, fmt.Errorf("ban %d: bad prefix %.64q: %w", b.ID, prefix, err))
				continue
			}
			b.Prefix = p
		case "login":
			b.Kind = abuse.BanLogin
		default:
			bad = addBad(bad, fmt.Errorf("ban %d: unknown kind %.32q", b.ID, kind))
			continue
		}
		b.Created = fromSeconds(created)
		if expires.Valid {
			b.Expires = fromSeconds(expires.Int64)
		}
		if err := CheckBan(&b); err != nil {
			bad = addBad(bad, err)
			continue
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list bans: %w", err)
	}
	return out, maxID, badRows("bans", bad)
}

// DeleteExpiredBans removes the bans expired at now.
func (s *SQLite) DeleteExpiredBans(ctx context.Context, now time.Time) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?`, seconds(now)); err != nil {
		return fmt.Errorf("delete expired bans: %w", err)
	}
	return nil
}

// BanAudit returns the newest limit manual ban changes, newest first.
func (s *SQLite) BanAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at, actor, op, ban_id, detail FROM ban_audit ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read ban audit: %w", err)
	}
	out, err := scanAudit(rows)
	if err != nil {
		return nil, fmt.Errorf("read ban audit: %w", err)
	}
	return out, nil
}

// SaveKnownGood upserts known-good (login, address) pairs and drops the
// ones last seen before forgetBefore.
func (s *SQLite) SaveKnownGood(ctx context.Context, kg []abuse.KnownGood, forgetBefore time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save known-good addresses: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO known_good (login, prefix, last) VALUES (?, ?, ?)
		ON CONFLICT (login, prefix) DO UPDATE SET last = max(last, excluded.last)`)
	if err != nil {
		return fmt.Errorf("save known-good addresses: %w", err)
	}
	defer stmt.Close()
	for _, k := range kg {
		if err := CheckKnownGood(&k); err != nil {
			return fmt.Errorf("save known-good addresses: %w", err)
		}
		if _, err := stmt.ExecContext(ctx, k.Login, k.Prefix.String(), seconds(k.Last)); err != nil {
			return fmt.Errorf("save known-good address %s for %q: %w", k.Prefix, k.Login, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM known_good WHERE last < ?`, seconds(forgetBefore)); err != nil {
		return fmt.Errorf("save known-good addresses: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save known-good addresses: commit: %w", err)
	}
	return nil
}

// KnownGood returns the known-good pairs last seen at or after since. Bad
// rows are skipped and reported in a *BadRows error, as by Bans.
func (s *SQLite) KnownGood(ctx context.Context, since time.Time) ([]abuse.KnownGood, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT login, prefix, last FROM known_good WHERE last >= ?`, seconds(since))
	if err != nil {
		return nil, fmt.Errorf("read known-good addresses: %w", err)
	}
	defer rows.Close()
	var out []abuse.KnownGood
	var bad []error
	for rows.Next() {
		var k abuse.KnownGood
		var prefix string
		var last int64
		if err := rows.Scan(&k.Login, &prefix, &last); err != nil {
			bad = addBad(bad, fmt.Errorf("known-good address: %w", err))
			continue
		}
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			bad = addBad(bad, fmt.Errorf("known-good address: bad prefix %.64q: %w", prefix, err))
			continue
		}
		k.Prefix, k.Last = p, fromSeconds(last)
		if err := CheckKnownGood(&k); err != nil {
			bad = addBad(bad, err)
			continue
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read known-good addresses: %w", err)
	}
	return out, badRows("known_good", bad)
}

func nullSeconds(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return seconds(t)
}

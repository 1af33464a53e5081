package store

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// TrustedAddr is an address the firewall trusts until Expires because
// Login logged in from it (firewall.trusted_for).
type TrustedAddr struct {
	Addr    netip.Addr
	Login   string
	Expires time.Time
}

// SaveTrusted upserts trusted addresses in one transaction.
func (s *SQLite) SaveTrusted(ctx context.Context, ts []TrustedAddr) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save trusted addresses: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO fw_trusted (addr, login, expires) VALUES (?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("save trusted addresses: %w", err)
	}
	defer st.Close()
	for _, t := range ts {
		if err := CheckTrusted(&t); err != nil {
			return fmt.Errorf("save trusted addresses: %w", err)
		}
		a := t.Addr.Unmap()
		if _, err := st.ExecContext(ctx, a.String(), t.Login, seconds(t.Expires)); err != nil {
			return fmt.Errorf("save trusted address %s: %w", a, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save trusted addresses: commit: %w", err)
	}
	return nil
}

// MaxTrustedLoginLen bounds a trusted address's login.
const MaxTrustedLoginLen = 512

// Trusted returns the trusted addresses not expired at now, by address.
// Bad rows are skipped and reported in a *BadRows error, as by Bans.
func (s *SQLite) Trusted(ctx context.Context, now time.Time) ([]TrustedAddr, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT addr, login, expires FROM fw_trusted WHERE expires > ? ORDER BY addr`, seconds(now))
	if err != nil {
		return nil, fmt.Errorf("list trusted addresses: %w", err)
	}
	defer rows.Close()
	var out []TrustedAddr
	var bad []error
	for rows.Next() {
		var addr string
		var t TrustedAddr
		var exp int64
		if err := rows.Scan(&addr, &t.Login, &exp); err != nil {
			bad = addBad(bad, fmt.Errorf("trusted address: %w", err))
			continue
		}
		if t.Addr, err = netip.ParseAddr(addr); err != nil {
			bad = addBad(bad, fmt.Errorf("trusted address: bad address %.64q: %w", addr, err))
			continue
		}
		t.Expires = fromSeconds(exp)
		if err := CheckTrusted(&t); err != nil {
			bad = addBad(bad, err)
			continue
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list trusted addresses: %w", err)
	}
	return out, badRows("fw_trusted", bad)
}

// DeleteExpiredTrusted removes the trusted addresses expired at now.
func (s *SQLite) DeleteExpiredTrusted(ctx context.Context, now time.Time) (int, error) {
	r, err := s.db.ExecContext(ctx, `DELETE FROM fw_trusted WHERE expires <= ?`, seconds(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired trusted addresses: %w", err)
	}
	n, _ := r.RowsAffected()
	return int(n), nil
}

// DeleteTrusted removes trusted addresses (a ban took their trust back).
func (s *SQLite) DeleteTrusted(ctx context.Context, addrs []netip.Addr) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete trusted addresses: %w", err)
	}
	defer tx.Rollback()
	for _, a := range addrs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM fw_trusted WHERE addr = ?`, a.Unmap().String()); err != nil {
			return fmt.Errorf("delete trusted address %s: %w", a, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete trusted addresses: commit: %w", err)
	}
	return nil
}

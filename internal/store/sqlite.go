package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailgate/internal/rules"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// busyTimeout is how long a writer waits for another writer (another
// connection of this process, or `mailgate` run by hand on the same file)
// before giving up with "database is locked". A bulk import of a million
// rules holds the write lock for several seconds.
const busyTimeout = 30 * time.Second

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Never edit one that has shipped: append a new one.
var migrations = []string{
	// 1: rules and their audit trail.
	`CREATE TABLE rules (
		id         INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
		scope      TEXT NOT NULL CHECK (scope IN ('account', 'global')),
		account    TEXT NOT NULL,                     -- '' for global rules
		service    TEXT NOT NULL,                     -- rules.Service.String()
		action     TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
		"match"    TEXT NOT NULL,                     -- IP, CIDR or 'none'
		comment    TEXT NOT NULL DEFAULT '',
		expires    INTEGER,                           -- unix seconds; NULL: never
		created    INTEGER NOT NULL,                  -- unix seconds
		created_by TEXT NOT NULL
	);
	CREATE INDEX rules_expires ON rules (expires) WHERE expires IS NOT NULL;
	CREATE TABLE audit (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,                     -- unix seconds
		actor   TEXT NOT NULL,
		op      TEXT NOT NULL CHECK (op IN ('add', 'remove', 'expire')),
		rule_id INTEGER NOT NULL,                     -- the rule may be gone
		detail  TEXT NOT NULL
	);`,
	// 2: bans (manual and automatic), their audit trail, and the addresses
	// each login succeeded from (lockout-proof accounts).
	`CREATE TABLE bans (
		id         INTEGER PRIMARY KEY,               -- assigned by the tracker
		kind       TEXT NOT NULL CHECK (kind IN ('address', 'login')),
		prefix     TEXT NOT NULL,                     -- CIDR; '' for login bans
		login      TEXT NOT NULL,                     -- '' for address bans
		reason     TEXT NOT NULL,
		created    INTEGER NOT NULL,                  -- unix seconds
		expires    INTEGER,                           -- unix seconds; NULL: never
		comment    TEXT NOT NULL DEFAULT '',
		created_by TEXT NOT NULL
	);
	CREATE INDEX bans_expires ON bans (expires) WHERE expires IS NOT NULL;
	-- the highest ban id ever stored, so ids are not reused after expired
	-- bans are deleted
	CREATE TABLE ban_ids (max_id INTEGER NOT NULL);
	INSERT INTO ban_ids (max_id) VALUES (0);
	CREATE TABLE ban_audit (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,
		actor   TEXT NOT NULL,
		op      TEXT NOT NULL CHECK (op IN ('ban', 'unban')),
		ban_id  INTEGER NOT NULL,
		detail  TEXT NOT NULL
	);
	CREATE TABLE known_good (
		login  TEXT NOT NULL,
		prefix TEXT NOT NULL,
		last   INTEGER NOT NULL,                      -- unix seconds
		PRIMARY KEY (login, prefix)
	) WITHOUT ROWID;
	CREATE INDEX known_good_last ON known_good (last);`,
	// 3: extra rules (exceptions to the global country lists) and country
	// matches ('country:AT,DE'). SQLite cannot change a CHECK constraint,
	// so the table is rebuilt; the id sequence is carried over so ids stay
	// unused after the rebuild.
	`CREATE TABLE rules_v3 (
		id         INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused
		scope      TEXT NOT NULL CHECK (scope IN ('account', 'global')),
		account    TEXT NOT NULL,                     -- '' for global rules
		service    TEXT NOT NULL,                     -- rules.Service.String()
		action     TEXT NOT NULL CHECK (action IN ('allow', 'deny', 'extra')),
		"match"    TEXT NOT NULL,                     -- IP, CIDR, 'none' or 'country:AT,DE'
		comment    TEXT NOT NULL DEFAULT '',
		expires    INTEGER,                           -- unix seconds; NULL: never
		created    INTEGER NOT NULL,                  -- unix seconds
		created_by TEXT NOT NULL
	);
	INSERT INTO rules_v3 SELECT id, scope, account, service, action, "match", comment, expires, created, created_by FROM rules;
	DELETE FROM sqlite_sequence WHERE name = 'rules_v3';
	INSERT INTO sqlite_sequence (name, seq) SELECT 'rules_v3', seq FROM sqlite_sequence WHERE name = 'rules';
	DROP TABLE rules;
	ALTER TABLE rules_v3 RENAME TO rules;
	CREATE INDEX rules_expires ON rules (expires) WHERE expires IS NOT NULL;`,
	// 4: relay permits (POP/IMAP-before-SMTP) and the audit trail of the
	// ones an admin added or removed. Automatic grants, refreshes and
	// expiry are in the decision log instead.
	`CREATE TABLE permits (
		prefix     TEXT PRIMARY KEY,                  -- CIDR: a.b.c.d/32 or an IPv6 network
		login      TEXT NOT NULL,                     -- the login that granted it; '' for manual permits
		service    TEXT NOT NULL,                     -- rules.Service.String()
		door       TEXT NOT NULL,                     -- dovecot, nginx, hook, manual
		granted    INTEGER NOT NULL,                  -- unix seconds
		expires    INTEGER NOT NULL,                  -- unix seconds
		logins     INTEGER NOT NULL,
		comment    TEXT NOT NULL DEFAULT '',
		created_by TEXT NOT NULL
	) WITHOUT ROWID;
	CREATE INDEX permits_expires ON permits (expires);
	CREATE TABLE permit_audit (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		at      INTEGER NOT NULL,                     -- unix seconds
		actor   TEXT NOT NULL,
		op      TEXT NOT NULL CHECK (op IN ('add', 'remove')),
		prefix  TEXT NOT NULL,
		detail  TEXT NOT NULL
	);`,
	// 5: addresses the firewall trusts after a login (protected and
	// private modes), re-asserted into the kernel after a restart.
	`CREATE TABLE fw_trusted (
		addr    TEXT PRIMARY KEY,                     -- an IP address, unmapped
		login   TEXT NOT NULL,                        -- the login that earned it
		expires INTEGER NOT NULL                      -- unix seconds
	) WITHOUT ROWID;
	CREATE INDEX fw_trusted_expires ON fw_trusted (expires);`,
	// 6: logins seen with a weak password at the nginx door
	// ([password] check_at_login): the login and when, nothing of the
	// password.
	`CREATE TABLE weak_passwords (
		login     TEXT PRIMARY KEY,                   -- normalized login
		last_seen INTEGER NOT NULL                    -- unix seconds
	) WITHOUT ROWID;
	CREATE INDEX weak_passwords_seen ON weak_passwords (last_seen);`,
}

// SQLite is the embedded store: one SQLite file in WAL mode. It is safe
// for concurrent use.
type SQLite struct {
	db   *sql.DB
	path string
}

// OpenSQLite opens (creating if needed) the database file at path and
// brings its schema up to date.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	if strings.ContainsAny(path, "?") {
		// The driver reads everything after '?' as its own parameters.
		return nil, fmt.Errorf("open sqlite store %q: the path may not contain '?'", path)
	}
	dsn := path + "?_txlock=immediate" +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)" +
		"&_pragma=synchronous(FULL)" +
		"&_pragma=cache_size(-65536)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	s := &SQLite{db: db, path: path}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %q: %w", path, err)
	}
	return s, nil
}

// Close closes the database. It is safe to call more than once.
func (s *SQLite) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close sqlite store %q: %w", s.path, err)
	}
	return nil
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations) }

// migrate applies the migrations the file has not seen, each in its own
// transaction with its version bump, so a crash leaves a consistent
// version.
func (s *SQLite) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx,
		`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	for {
		done, err := s.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next migration, if any; it reads the version
// inside the write transaction so two processes opening a new file at
// once do not both apply it.
func (s *SQLite) migrateOne(ctx context.Context) (done bool, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var v int
	switch err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return false, fmt.Errorf("migrate: %w", err)
		}
	case err != nil:
		return false, fmt.Errorf("migrate: read schema version: %w", err)
	}
	if v > len(migrations) {
		return false, fmt.Errorf("schema version %d is newer than this mailgate knows (%d): upgrade mailgate", v, len(migrations))
	}
	if v == len(migrations) {
		return true, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
		return false, fmt.Errorf("migrate to schema version %d: %w", v+1, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v+1); err != nil {
		return false, fmt.Errorf("migrate to schema version %d: %w", v+1, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("migrate to schema version %d: %w", v+1, err)
	}
	return false, nil
}

// AddRules validates rs and stores them in one transaction, with one audit
// row each: either all are stored or none. Each stored rule gets a new ID
// (increasing, never reused), Created = now and CreatedBy = actor; any ID,
// Created, CreatedBy or Source in rs is ignored. It returns the stored
// rules, normalized as Validate does and with times in UTC, truncated to
// the second. rs itself is not modified.
func (s *SQLite) AddRules(ctx context.Context, now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("add rules: %w", err)
	}
	out, err := checkRules(now, actor, rs)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}

	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: we hold the write lock
	if err != nil {
		return nil, fmt.Errorf("add rules: %w", err)
	}
	defer tx.Rollback()
	// IDs are assigned here rather than by SQLite so that rows can be
	// inserted many per statement. The write lock is held since BEGIN, and
	// AUTOINCREMENT keeps sqlite_sequence at the highest id ever used, so
	// ids stay increasing and are never reused.
	var next int64
	if err := tx.QueryRowContext(ctx, `SELECT max(
		coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'rules'), 0),
		coalesce((SELECT max(id) FROM rules), 0))`).Scan(&next); err != nil {
		return nil, fmt.Errorf("add rules: next id: %w", err)
	}
	for i := range out {
		next++
		out[i].ID = next
	}
	if err := insertRules(ctx, tx, out, seconds(now), actor); err != nil {
		return nil, fmt.Errorf("add rules: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("add rules: commit: %w", err)
	}
	return out, nil
}

// insertBatch is how many rules one INSERT statement carries. The rows
// travel as one JSON array parameter unpacked by json_each: binding
// thousands of ? parameters costs the driver quadratic time.
const insertBatch = 1000

const (
	insertRulesSQL = `INSERT INTO rules (` + ruleColumns + `)
		SELECT value->>0, value->>1, value->>2, value->>3, value->>4,
			value->>5, value->>6, value->>7, value->>8, value->>9
		FROM json_each(?)`
	insertAuditSQL = `INSERT INTO audit (at, actor, op, rule_id, detail)
		SELECT value->>0, value->>1, value->>2, value->>3, value->>4
		FROM json_each(?)`
)

// insertRules inserts rs (with their IDs set) and their audit rows.
func insertRules(ctx context.Context, tx *sql.Tx, rs []rules.Rule, at int64, actor string) error {
	ruleStmt, err := tx.PrepareContext(ctx, insertRulesSQL)
	if err != nil {
		return err
	}
	defer ruleStmt.Close()
	auditStmt, err := tx.PrepareContext(ctx, insertAuditSQL)
	if err != nil {
		return err
	}
	defer auditStmt.Close()
	var ruleRows, auditRows []any
	for len(rs) > 0 {
		// The modernc driver watches a cancellable context with a goroutine
		// per statement; check it once per batch instead. The transaction
		// itself is bound to ctx and rolls back if it is cancelled.
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(rs), insertBatch)
		batch := rs[:n]
		rs = rs[n:]
		ruleRows, auditRows = ruleRows[:0], auditRows[:0]
		for i := range batch {
			r := &batch[i]
			var expires any // JSON null: never
			if !r.Expires.IsZero() {
				expires = seconds(r.Expires)
			}
			ruleRows = append(ruleRows, [10]any{r.ID, r.Scope.String(), r.Account, r.Service.String(),
				r.Action.String(), r.MatchString(), r.Comment, expires, at, actor})
			auditRows = append(auditRows, [5]any{at, actor, OpAdd, r.ID, Detail(r)})
		}
		rj, err := json.Marshal(ruleRows)
		if err != nil {
			return err
		}
		aj, err := json.Marshal(auditRows)
		if err != nil {
			return err
		}
		if _, err := ruleStmt.ExecContext(context.Background(), string(rj)); err != nil {
			return fmt.Errorf("rules %d to %d: %w", batch[0].ID, batch[n-1].ID, err)
		}
		if _, err := auditStmt.ExecContext(context.Background(), string(aj)); err != nil {
			return fmt.Errorf("audit of rules %d to %d: %w", batch[0].ID, batch[n-1].ID, err)
		}
	}
	return nil
}

func prepareAudit(ctx context.Context, tx *sql.Tx) (*sql.Stmt, error) {
	return tx.PrepareContext(ctx, `INSERT INTO audit (at, actor, op, rule_id, detail) VALUES (?, ?, ?, ?, ?)`)
}

const ruleColumns = `id, scope, account, service, action, "match", comment, expires, created, created_by`

// DeleteRule removes rule id and writes an audit row. It returns the
// removed rule, or an error wrapping ErrNotFound.
func (s *SQLite) DeleteRule(ctx context.Context, now time.Time, actor string, id int64) (rules.Rule, error) {
	if err := checkActor(actor); err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: %w", id, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: %w", id, err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `DELETE FROM rules WHERE id = ? RETURNING `+ruleColumns, id)
	if err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: %w", id, err)
	}
	rs, err := scanRules(rows)
	if err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: %w", id, err)
	}
	if len(rs) == 0 {
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, ErrNotFound)
	}
	r := rs[0]
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, op, rule_id, detail) VALUES (?, ?, ?, ?, ?)`,
		seconds(now), actor, OpRemove, r.ID, Detail(&r)); err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: audit: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: commit: %w", id, err)
	}
	return r, nil
}

// Rules returns every stored rule, ordered by ID, expired ones included
// (DeleteExpired removes those).
// GlobalAllowRules returns the stored global allow rules (the trusted
// networks added with 'rule add --global --allow'), ordered by id. It is
// cheap next to Rules: the firewall asks at every reconcile.
func (s *SQLite) GlobalAllowRules(ctx context.Context) ([]rules.Rule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+ruleColumns+` FROM rules WHERE scope = 'global' AND action = 'allow' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list global allow rules: %w", err)
	}
	rs, err := scanRules(rows)
	if err != nil {
		return nil, fmt.Errorf("list global allow rules: %w", err)
	}
	return rs, nil
}

func (s *SQLite) Rules(ctx context.Context) ([]rules.Rule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+ruleColumns+` FROM rules ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	rs, err := scanRules(rows)
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return rs, nil
}

// Rule returns stored rule id, or an error wrapping ErrNotFound.
func (s *SQLite) Rule(ctx context.Context, id int64) (rules.Rule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+ruleColumns+` FROM rules WHERE id = ?`, id)
	if err != nil {
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, err)
	}
	rs, err := scanRules(rows)
	if err != nil {
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, err)
	}
	if len(rs) == 0 {
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, ErrNotFound)
	}
	return rs[0], nil
}

// DeleteExpired removes the rules whose expiry is at or before now, with
// an audit row each by ActorExpiry, and returns them ordered by ID.
func (s *SQLite) DeleteExpired(ctx context.Context, now time.Time) ([]rules.Rule, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("delete expired rules: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx,
		`DELETE FROM rules WHERE expires IS NOT NULL AND expires <= ? RETURNING `+ruleColumns, seconds(now))
	if err != nil {
		return nil, fmt.Errorf("delete expired rules: %w", err)
	}
	rs, err := scanRules(rows)
	if err != nil {
		return nil, fmt.Errorf("delete expired rules: %w", err)
	}
	if len(rs) == 0 {
		return nil, nil // nothing written; the rollback is a no-op
	}
	slices.SortFunc(rs, func(a, b rules.Rule) int { return cmp.Compare(a.ID, b.ID) })
	ins, err := prepareAudit(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("delete expired rules: %w", err)
	}
	defer ins.Close()
	at := seconds(now)
	for i := range rs {
		if _, err := ins.ExecContext(ctx, at, ActorExpiry, OpExpire, rs[i].ID, Detail(&rs[i])); err != nil {
			return nil, fmt.Errorf("delete expired rules: audit of rule %d: %w", rs[i].ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("delete expired rules: commit: %w", err)
	}
	return rs, nil
}

// Audit returns up to limit audit entries, newest first; limit <= 0 means
// all.
func (s *SQLite) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, at, actor, op, rule_id, detail FROM audit ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	out, err := scanAudit(rows)
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	return out, nil
}

// scanAudit reads rows of (id, at, actor, op, object id, detail) and
// closes rows.
func scanAudit(rows *sql.Rows) ([]AuditEntry, error) {
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Op, &e.RuleID, &e.Detail); err != nil {
			return nil, err
		}
		e.At = fromSeconds(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// scanRules reads rows of ruleColumns and closes rows. A row that does not
// parse is an error naming its id: a rule silently dropped would change
// who may log in.
func scanRules(rows *sql.Rows) ([]rules.Rule, error) {
	defer rows.Close()
	var out []rules.Rule
	for rows.Next() {
		var (
			r                             rules.Rule
			scope, service, action, match string
			expires                       sql.NullInt64
			created                       int64
		)
		if err := rows.Scan(&r.ID, &scope, &r.Account, &service, &action, &match,
			&r.Comment, &expires, &created, &r.CreatedBy); err != nil {
			return nil, err
		}
		if err := decodeRule(&r, scope, service, action, match); err != nil {
			return nil, fmt.Errorf("rule %d: %w", r.ID, err)
		}
		if expires.Valid {
			r.Expires = fromSeconds(expires.Int64)
		}
		r.Created = fromSeconds(created)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func decodeRule(r *rules.Rule, scope, service, action, match string) error {
	var err error
	if r.Scope, err = parseScope(scope); err != nil {
		return err
	}
	if r.Service, err = rules.ParseService(service); err != nil {
		return err
	}
	if r.Action, err = rules.ParseAction(action); err != nil {
		return err
	}
	if err = r.SetMatch(match); err != nil {
		return err
	}
	return nil
}

// Ping checks that the store answers: it takes the write lock (what every
// persisted ban, permit and rule needs) and reads the schema version, then
// lets go. Another process holding the write lock past ctx, or a file that
// cannot be read, fails it.
func (s *SQLite) Ping(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite store %q: %w", s.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // nothing was written
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_version`).Scan(&n); err != nil {
		return fmt.Errorf("sqlite store %q: %w", s.path, err)
	}
	return nil
}

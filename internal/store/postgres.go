package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"mailgate/internal/abuse"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// pgMigrations are the PostgreSQL schema, as migrations like the SQLite
// ones: pgMigrations[i] brings the schema to version i+1. Its version
// numbers are its own (the PostgreSQL schema starts at the SQLite
// schema's version 6 in one step). Never edit one that has shipped.
//
// Times are timestamptz at whole seconds, addresses inet/cidr (PostgreSQL
// then refuses a row the SQLite store would have to skip as bad), ids
// bigint.
var pgMigrations = []string{
	`CREATE TABLE rules (
		id         bigint PRIMARY KEY,                -- from rule_ids, never reused
		scope      text NOT NULL CHECK (scope IN ('account', 'global')),
		account    text NOT NULL,                     -- '' for global rules
		service    text NOT NULL,                     -- rules.Service.String()
		action     text NOT NULL CHECK (action IN ('allow', 'deny', 'extra')),
		"match"    text NOT NULL,                     -- IP, CIDR, 'none' or 'country:AT,DE'
		comment    text NOT NULL DEFAULT '',
		expires    timestamptz,                       -- NULL: never
		created    timestamptz NOT NULL,
		created_by text NOT NULL
	);
	CREATE INDEX rules_expires ON rules (expires) WHERE expires IS NOT NULL;
	-- the highest rule id ever given; its row lock serializes rule
	-- writers, so ids increase in commit order on every node
	CREATE TABLE rule_ids (max_id bigint NOT NULL);
	INSERT INTO rule_ids (max_id) VALUES (0);
	CREATE TABLE audit (
		id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		at      timestamptz NOT NULL,
		actor   text NOT NULL,
		op      text NOT NULL CHECK (op IN ('add', 'remove', 'expire')),
		rule_id bigint NOT NULL,                      -- the rule may be gone
		detail  text NOT NULL
	);
	CREATE TABLE bans (
		id         bigint PRIMARY KEY,                -- assigned by the tracker
		kind       text NOT NULL CHECK (kind IN ('address', 'login')),
		prefix     cidr,                              -- NULL for login bans
		login      text NOT NULL,                     -- '' for address bans
		reason     text NOT NULL,
		created    timestamptz NOT NULL,
		expires    timestamptz,                       -- NULL: never
		comment    text NOT NULL DEFAULT '',
		created_by text NOT NULL,
		CHECK ((kind = 'address') = (prefix IS NOT NULL))
	);
	CREATE INDEX bans_expires ON bans (expires) WHERE expires IS NOT NULL;
	CREATE TABLE ban_ids (max_id bigint NOT NULL);
	INSERT INTO ban_ids (max_id) VALUES (0);
	CREATE TABLE ban_audit (
		id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		at      timestamptz NOT NULL,
		actor   text NOT NULL,
		op      text NOT NULL CHECK (op IN ('ban', 'unban')),
		ban_id  bigint NOT NULL,
		detail  text NOT NULL
	);
	CREATE TABLE known_good (
		login  text NOT NULL,
		prefix cidr NOT NULL,
		last   timestamptz NOT NULL,
		PRIMARY KEY (login, prefix)
	);
	CREATE INDEX known_good_last ON known_good (last);
	CREATE TABLE permits (
		prefix     cidr PRIMARY KEY,
		login      text NOT NULL,                     -- '' for manual permits
		service    text NOT NULL,
		door       text NOT NULL,
		granted    timestamptz NOT NULL,
		expires    timestamptz NOT NULL,
		logins     integer NOT NULL CHECK (logins >= 0),
		comment    text NOT NULL DEFAULT '',
		created_by text NOT NULL
	);
	CREATE INDEX permits_expires ON permits (expires);
	CREATE TABLE permit_audit (
		id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		at      timestamptz NOT NULL,
		actor   text NOT NULL,
		op      text NOT NULL CHECK (op IN ('add', 'remove')),
		prefix  cidr NOT NULL,
		detail  text NOT NULL
	);
	CREATE TABLE fw_trusted (
		addr    inet PRIMARY KEY CHECK (masklen(addr) = CASE family(addr) WHEN 4 THEN 32 ELSE 128 END),
		login   text NOT NULL,
		expires timestamptz NOT NULL
	);
	CREATE INDEX fw_trusted_expires ON fw_trusted (expires);
	CREATE TABLE weak_passwords (
		login     text PRIMARY KEY,
		last_seen timestamptz NOT NULL
	);
	CREATE INDEX weak_passwords_seen ON weak_passwords (last_seen);`,
}

// pgMigrateLock is the advisory lock key (any constant bigint) that
// serializes the migrations of nodes starting at once.
const pgMigrateLock = 0x6d61696c67617465 // "mailgate"

// PostgresSchemaVersion is the PostgreSQL schema version this build writes.
func PostgresSchemaVersion() int { return len(pgMigrations) }

// Postgres is the store on a PostgreSQL server, shared by several
// mailgate nodes. It is safe for concurrent use. Its methods have the
// same meaning as the SQLite store's.
type Postgres struct {
	pool *pgxpool.Pool
	name string // the server and database, for errors; never the password
	node string // this node's id in rule notices (RuleChannel)
	sync ruleSync
}

// PostgresOptions tunes OpenPostgres. The zero value is usable.
type PostgresOptions struct {
	// Password, if set, replaces the DSN's (read from a file by the
	// caller, so the config need not hold it).
	Password string
	// MaxConns bounds the pool (0: pgxpool's default, max(4, CPUs)).
	MaxConns int32
	// Node names this node in rule notices; "" = NewNodeID().
	Node string
}

// PostgresName describes a DSN for logs and errors: user@host:port/db,
// never the password. A DSN that does not parse gives a note saying so,
// not the DSN (it may hold a password).
func PostgresName(dsn string) string {
	c, err := pgx.ParseConfig(dsn)
	if err != nil || dsn == "" {
		return "(unparsable postgres dsn)"
	}
	return pgName(c)
}

func pgName(c *pgx.ConnConfig) string {
	return c.User + "@" + c.Host + ":" + strconv.Itoa(int(c.Port)) + "/" + c.Database
}

// errPgDSN replaces a DSN parse error: pgconn's ParseConfigError quotes
// the connection string, masking the password only on a best-effort
// basis, and url.Parse's error quotes the URL.
var errPgDSN = errors.New("not a valid PostgreSQL connection string (keyword=value pairs or a postgres:// URL; not shown, it may hold a password)")

// OpenPostgres connects to the PostgreSQL server of dsn (a libpq
// connection string or postgres:// URL: sslmode, sslrootcert,
// connect_timeout, ... as libpq reads them) and brings the schema up to
// date, under an advisory lock so nodes starting together migrate once.
func OpenPostgres(ctx context.Context, dsn string, opt PostgresOptions) (*Postgres, error) {
	cfg, err := pgPoolConfig(dsn, opt)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	s := &Postgres{name: pgName(cfg.ConnConfig), node: opt.Node}
	if s.node == "" {
		s.node = NewNodeID()
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres store %s: %w", s.name, err)
	}
	if err := s.migrate(ctx); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("open postgres store %s: %w", s.name, err)
	}
	return s, nil
}

// pgPoolConfig parses dsn and applies opt and mailgate's session
// settings. A parse error never quotes the DSN.
func pgPoolConfig(dsn string, opt PostgresOptions) (*pgxpool.Config, error) {
	if dsn == "" {
		return nil, errors.New("empty dsn")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", errPgDSN)
	}
	if opt.Password != "" {
		cfg.ConnConfig.Password = opt.Password
	}
	if opt.MaxConns > 0 {
		cfg.MaxConns = opt.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	// Every session works in UTC; times are written and compared as
	// timestamptz, so this only matters for people reading with psql.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mailgate"
	}
	return cfg, nil
}

// PostgresCheck is what CheckPostgres found.
type PostgresCheck struct {
	Name          string // user@host:port/db
	ServerVersion string // e.g. 15.18 (Debian 15.18-0+deb12u1)
	Schema        int    // mailgate's schema version in the database; 0: not created yet
	Want          int    // the schema version this build writes
}

// CheckPostgres connects to dsn as serve would, without migrating or
// writing anything, and reads the server's and mailgate's schema
// versions. A failure to connect is an *Unavailable.
func CheckPostgres(ctx context.Context, dsn string, opt PostgresOptions) (PostgresCheck, error) {
	cfg, err := pgPoolConfig(dsn, opt)
	if err != nil {
		return PostgresCheck{}, err
	}
	c := PostgresCheck{Name: pgName(cfg.ConnConfig), Want: len(pgMigrations)}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return c, &Unavailable{Store: "PostgreSQL " + c.Name, Err: err}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SHOW server_version`).Scan(&c.ServerVersion); err != nil {
		return c, fmt.Errorf("postgres %s: %w", c.Name, err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return c, fmt.Errorf("postgres %s: %w", c.Name, err)
	}
	if exists {
		if err := conn.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&c.Schema); err != nil {
			return c, fmt.Errorf("postgres %s: read schema version: %w", c.Name, err)
		}
	}
	return c, nil
}

// Close closes the pool. It is safe to call more than once.
func (s *Postgres) Close() error {
	s.pool.Close()
	return nil
}

// Node is this node's id in rule notices.
func (s *Postgres) Node() string { return s.node }

// Name is user@host:port/database, for logs (never the password).
func (s *Postgres) Name() string { return s.name }

// migrate applies the migrations the database has not seen, all in one
// transaction holding an advisory lock (PostgreSQL's DDL is
// transactional: a failure leaves the old schema).
func (s *Postgres) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock)); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)`); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
		var v int
		switch err := tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v); {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		case err != nil:
			return fmt.Errorf("migrate: read schema version: %w", err)
		}
		if v > len(pgMigrations) {
			return fmt.Errorf("schema version %d is newer than this mailgate knows (%d): upgrade mailgate", v, len(pgMigrations))
		}
		for ; v < len(pgMigrations); v++ {
			if _, err := tx.Exec(ctx, pgMigrations[v]); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE schema_version SET version = $1`, v+1); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
		}
		return nil
	})
}

// pgTime is t as stored: UTC, whole seconds.
func pgTime(t time.Time) time.Time { return fromSeconds(seconds(t)) }

// pgNullTime is nil for the zero time (never), else pgTime(t).
func pgNullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return pgTime(t)
}

func fromPgNullTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// pgLimit is a LIMIT parameter: NULL (no limit) for limit <= 0.
func pgLimit(limit int) any {
	if limit <= 0 {
		return nil
	}
	return int64(limit)
}

// AddRules: see SQLite.AddRules. Rule writers on every node queue on the
// rule_ids row, so ids increase in commit order.
func (s *Postgres) AddRules(ctx context.Context, now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error) {
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
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, `UPDATE rule_ids SET max_id = max_id + $1 RETURNING max_id`, int64(len(out))).Scan(&last); err != nil {
			return fmt.Errorf("next id: %w", err)
		}
		first := last - int64(len(out)) + 1
		for i := range out {
			out[i].ID = first + int64(i)
		}
		if err := pgInsertRules(ctx, tx, out, pgTime(now), actor); err != nil {
			return err
		}
		return notify(ctx, tx, noticesFor(s.node, now, first, last, nil))
	})
	if err != nil {
		return nil, fmt.Errorf("add rules: %w", err)
	}
	return out, nil
}

// pgInsertRules inserts rs (IDs set) and their audit rows, insertBatch
// rows per statement as arrays unnested by the server.
func pgInsertRules(ctx context.Context, tx pgx.Tx, rs []rules.Rule, at time.Time, actor string) error {
	for len(rs) > 0 {
		n := min(len(rs), insertBatch)
		batch := rs[:n]
		rs = rs[n:]
		var (
			ids                                            = make([]int64, n)
			scope, account, service, action, match, commnt = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			expires                                        = make([]*time.Time, n)
			detail                                         = make([]string, n)
		)
		for i := range batch {
			r := &batch[i]
			ids[i] = r.ID
			scope[i], account[i], service[i] = r.Scope.String(), r.Account, r.Service.String()
			action[i], match[i], commnt[i] = r.Action.String(), r.MatchString(), r.Comment
			if !r.Expires.IsZero() {
				e := r.Expires
				expires[i] = &e
			}
			detail[i] = Detail(r)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO rules (`+ruleColumns+`)
			SELECT id, scope, account, service, action, m, comment, expires, $9, $10
			FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[])
				AS u(id, scope, account, service, action, m, comment, expires)`,
			ids, scope, account, service, action, match, commnt, expires, at, actor); err != nil {
			return fmt.Errorf("rules %d to %d: %w", batch[0].ID, batch[n-1].ID, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit (at, actor, op, rule_id, detail)
			SELECT $1, $2, $3, id, detail FROM unnest($4::bigint[], $5::text[]) AS u(id, detail) ORDER BY id`,
			at, actor, OpAdd, ids, detail); err != nil {
			return fmt.Errorf("audit of rules %d to %d: %w", batch[0].ID, batch[n-1].ID, err)
		}
	}
	return nil
}

// DeleteRule: see SQLite.DeleteRule.
func (s *Postgres) DeleteRule(ctx context.Context, now time.Time, actor string, id int64) (rules.Rule, error) {
	if err := checkActor(actor); err != nil {
		return rules.Rule{}, fmt.Errorf("delete rule %d: %w", id, err)
	}
	var r rules.Rule
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `DELETE FROM rules WHERE id = $1 RETURNING `+ruleColumns, id)
		rs, err := pgScanRules(rows)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return ErrNotFound
		}
		r = rs[0]
		if _, err := tx.Exec(ctx, `INSERT INTO audit (at, actor, op, rule_id, detail) VALUES ($1, $2, $3, $4, $5)`,
			pgTime(now), actor, OpRemove, r.ID, Detail(&r)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		return notify(ctx, tx, noticesFor(s.node, now, 0, 0, rs[:1]))
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, ErrNotFound)
	case err != nil:
		return rules.Rule{}, fmt.Errorf("delete rule %d: %w", id, err)
	}
	return r, nil
}

// Rules: see SQLite.Rules.
func (s *Postgres) Rules(ctx context.Context) ([]rules.Rule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+ruleColumns+` FROM rules ORDER BY id`)
	rs, err := pgScanRules(rows)
	if err != nil {
		return nil, s.readErr("list rules", err)
	}
	return rs, nil
}

// RulesByID returns the stored rules among ids, ordered by id (the ones
// not stored, deleted meanwhile, are left out). A node applies the ids
// another node announced with it.
func (s *Postgres) RulesByID(ctx context.Context, ids []int64) ([]rules.Rule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+ruleColumns+` FROM rules WHERE id = ANY($1) ORDER BY id`, ids)
	rs, err := pgScanRules(rows)
	if err != nil {
		return nil, fmt.Errorf("list rules by id: %w", err)
	}
	return rs, nil
}

// GlobalAllowRules: see SQLite.GlobalAllowRules.
func (s *Postgres) GlobalAllowRules(ctx context.Context) ([]rules.Rule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+ruleColumns+` FROM rules WHERE scope = 'global' AND action = 'allow' ORDER BY id`)
	rs, err := pgScanRules(rows)
	if err != nil {
		return nil, fmt.Errorf("list global allow rules: %w", err)
	}
	return rs, nil
}

// Rule: see SQLite.Rule.
func (s *Postgres) Rule(ctx context.Context, id int64) (rules.Rule, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+ruleColumns+` FROM rules WHERE id = $1`, id)
	rs, err := pgScanRules(rows)
	if err != nil {
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, err)
	}
	if len(rs) == 0 {
		return rules.Rule{}, fmt.Errorf("rule %d: %w", id, ErrNotFound)
	}
	return rs[0], nil
}

// DeleteExpired: see SQLite.DeleteExpired.
func (s *Postgres) DeleteExpired(ctx context.Context, now time.Time) ([]rules.Rule, error) {
	var rs []rules.Rule
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `DELETE FROM rules WHERE expires IS NOT NULL AND expires <= $1 RETURNING `+ruleColumns, pgTime(now))
		var err error
		if rs, err = pgScanRules(rows); err != nil {
			return err
		}
		if len(rs) == 0 {
			return nil
		}
		slices.SortFunc(rs, func(a, b rules.Rule) int { return cmp.Compare(a.ID, b.ID) })
		ids := make([]int64, len(rs))
		detail := make([]string, len(rs))
		for i := range rs {
			ids[i], detail[i] = rs[i].ID, Detail(&rs[i])
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit (at, actor, op, rule_id, detail)
			SELECT $1, $2, $3, id, detail FROM unnest($4::bigint[], $5::text[]) AS u(id, detail) ORDER BY id`,
			pgTime(now), ActorExpiry, OpExpire, ids, detail); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		return notify(ctx, tx, noticesFor(s.node, now, 0, 0, rs))
	})
	if err != nil {
		return nil, fmt.Errorf("delete expired rules: %w", err)
	}
	if len(rs) == 0 {
		return nil, nil
	}
	return rs, nil
}

// Audit: see SQLite.Audit.
func (s *Postgres) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	out, err := s.audit(ctx, `SELECT id, at, actor, op, rule_id, detail FROM audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, s.readErr("read audit", err)
	}
	return out, nil
}

func (s *Postgres) audit(ctx context.Context, q string, limit int) ([]AuditEntry, error) {
	rows, _ := s.pool.Query(ctx, q, pgLimit(limit))
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Op, &e.RuleID, &e.Detail); err != nil {
			return nil, err
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// pgScanRules reads rows of ruleColumns and closes rows; see scanRules.
func pgScanRules(rows pgx.Rows) ([]rules.Rule, error) {
	defer rows.Close()
	var out []rules.Rule
	for rows.Next() {
		var (
			r                             rules.Rule
			scope, service, action, match string
			expires                       *time.Time
		)
		if err := rows.Scan(&r.ID, &scope, &r.Account, &service, &action, &match,
			&r.Comment, &expires, &r.Created, &r.CreatedBy); err != nil {
			return nil, err
		}
		if err := decodeRule(&r, scope, service, action, match); err != nil {
			return nil, fmt.Errorf("rule %d: %w", r.ID, err)
		}
		r.Expires = fromPgNullTime(expires)
		r.Created = r.Created.UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Ping checks that the server answers and the schema is readable.
func (s *Postgres) Ping(ctx context.Context) error {
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("postgres store %s: %w", s.name, err)
	}
	return nil
}

// Backup is not supported on PostgreSQL: use pg_dump, which knows the
// server's consistency and permissions.
func (s *Postgres) Backup(ctx context.Context, w io.Writer) error {
	return fmt.Errorf("backup: the postgres store %s is backed up with pg_dump (pg_dump -Fc), not by mailgate", s.name)
}

// --- bans and known-good addresses ---

// AddBans: see SQLite.AddBans.
func (s *Postgres) AddBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban, audit bool) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("add bans: %w", err)
	}
	for i := range bs {
		if err := CheckBan(&bs[i]); err != nil {
			return fmt.Errorf("add bans: %w", err)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for i := range bs {
			b := &bs[i]
			var prefix any
			if b.Kind == abuse.BanAddr {
				prefix = b.Prefix
			}
			if _, err := tx.Exec(ctx, `INSERT INTO bans (`+banColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
				ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, prefix = excluded.prefix, login = excluded.login,
					reason = excluded.reason, created = excluded.created, expires = excluded.expires,
					comment = excluded.comment, created_by = excluded.created_by`,
				b.ID, b.Kind.String(), prefix, b.Login, b.Reason, pgTime(b.Created), pgNullTime(b.Expires), b.Comment, b.CreatedBy); err != nil {
				return fmt.Errorf("add ban %d: %w", b.ID, err)
			}
			if _, err := tx.Exec(ctx, `UPDATE ban_ids SET max_id = greatest(max_id, $1)`, b.ID); err != nil {
				return fmt.Errorf("add ban %d: %w", b.ID, err)
			}
			if audit {
				if _, err := tx.Exec(ctx, `INSERT INTO ban_audit (at, actor, op, ban_id, detail) VALUES ($1, $2, $3, $4, $5)`,
					pgTime(now), actor, OpBan, b.ID, BanDetail(b)); err != nil {
					return fmt.Errorf("add ban %d: audit: %w", b.ID, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add bans: %w", err)
	}
	return nil
}

// DeleteBans: see SQLite.DeleteBans.
func (s *Postgres) DeleteBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("delete bans: %w", err)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for i := range bs {
			if _, err := tx.Exec(ctx, `DELETE FROM bans WHERE id = $1`, bs[i].ID); err != nil {
				return fmt.Errorf("delete ban %d: %w", bs[i].ID, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO ban_audit (at, actor, op, ban_id, detail) VALUES ($1, $2, $3, $4, $5)`,
				pgTime(now), actor, OpUnban, bs[i].ID, BanDetail(&bs[i])); err != nil {
				return fmt.Errorf("delete ban %d: audit: %w", bs[i].ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete bans: %w", err)
	}
	return nil
}

// ForgetBans: see SQLite.ForgetBans.
func (s *Postgres) ForgetBans(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM bans WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("forget bans: %w", err)
	}
	return nil
}

// Bans: see SQLite.Bans.
func (s *Postgres) Bans(ctx context.Context, now time.Time) ([]abuse.Ban, int64, error) {
	var maxID int64
	if err := s.pool.QueryRow(ctx, `SELECT greatest(max_id, coalesce((SELECT max(id) FROM bans), 0)) FROM ban_ids`).Scan(&maxID); err != nil {
		return nil, 0, fmt.Errorf("list bans: %w", err)
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+banColumns+` FROM bans WHERE expires IS NULL OR expires > $1 ORDER BY id`, pgTime(now))
	defer rows.Close()
	var out []abuse.Ban
	var bad []error
	for rows.Next() {
		var b abuse.Ban
		var kind string
		var prefix *netip.Prefix
		var expires *time.Time
		if err := rows.Scan(&b.ID, &kind, &prefix, &b.Login, &b.Reason, &b.Created, &expires, &b.Comment, &b.CreatedBy); err != nil {
			bad = addBad(bad, fmt.Errorf("ban %d: %w", b.ID, err))
			continue
		}
		switch kind {
		case "address":
			b.Kind = abuse.BanAddr
			if prefix == nil {
				bad = addBad(bad, fmt.Errorf("ban %d: address ban without prefix", b.ID))
				continue
			}
			b.Prefix = *prefix
		case "login":
			b.Kind = abuse.BanLogin
		default:
			bad = addBad(bad, fmt.Errorf("ban %d: unknown kind %.32q", b.ID, kind))
			continue
		}
		b.Created = b.Created.UTC()
		b.Expires = fromPgNullTime(expires)
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

// DeleteExpiredBans: see SQLite.DeleteExpiredBans.
func (s *Postgres) DeleteExpiredBans(ctx context.Context, now time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM bans WHERE expires IS NOT NULL AND expires <= $1`, pgTime(now)); err != nil {
		return fmt.Errorf("delete expired bans: %w", err)
	}
	return nil
}

// BanAudit: see SQLite.BanAudit.
func (s *Postgres) BanAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	out, err := s.audit(ctx, `SELECT id, at, actor, op, ban_id, detail FROM ban_audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, s.readErr("read ban audit", err)
	}
	return out, nil
}

// SaveKnownGood: see SQLite.SaveKnownGood.
func (s *Postgres) SaveKnownGood(ctx context.Context, kg []abuse.KnownGood, forgetBefore time.Time) error {
	for i := range kg {
		if err := CheckKnownGood(&kg[i]); err != nil {
			return fmt.Errorf("save known-good addresses: %w", err)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, k := range kg {
			if _, err := tx.Exec(ctx, `INSERT INTO known_good (login, prefix, last) VALUES ($1, $2, $3)
				ON CONFLICT (login, prefix) DO UPDATE SET last = greatest(known_good.last, excluded.last)`,
				k.Login, k.Prefix.Masked(), pgTime(k.Last)); err != nil {
				return fmt.Errorf("save known-good address %s for %q: %w", k.Prefix, k.Login, err)
			}
		}
		_, err := tx.Exec(ctx, `DELETE FROM known_good WHERE last < $1`, pgTime(forgetBefore))
		return err
	})
	if err != nil {
		return fmt.Errorf("save known-good addresses: %w", err)
	}
	return nil
}

// KnownGood: see SQLite.KnownGood.
func (s *Postgres) KnownGood(ctx context.Context, since time.Time) ([]abuse.KnownGood, error) {
	rows, _ := s.pool.Query(ctx, `SELECT login, prefix, last FROM known_good WHERE last >= $1`, pgTime(since))
	defer rows.Close()
	var out []abuse.KnownGood
	var bad []error
	for rows.Next() {
		var k abuse.KnownGood
		if err := rows.Scan(&k.Login, &k.Prefix, &k.Last); err != nil {
			bad = addBad(bad, fmt.Errorf("known-good address: %w", err))
			continue
		}
		k.Last = k.Last.UTC()
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

// --- relay permits ---

const pgUpsertPermitSQL = `INSERT INTO permits (` + permitColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
	ON CONFLICT (prefix) DO UPDATE SET
		login = excluded.login, service = excluded.service, door = excluded.door,
		granted = excluded.granted, expires = excluded.expires, logins = excluded.logins,
		comment = excluded.comment, created_by = excluded.created_by`

func pgPermitArgs(p *relay.Permit) []any {
	return []any{p.Prefix, p.Login, p.Service.String(), p.Door,
		pgTime(p.Granted), pgTime(p.Expires), p.Logins, p.Comment, p.By}
}

// SavePermits: see SQLite.SavePermits. The rows go in one pipelined batch.
func (s *Postgres) SavePermits(ctx context.Context, ps []relay.Permit) error {
	for i := range ps {
		if err := checkPermit(&ps[i]); err != nil {
			return fmt.Errorf("save permits: permit %s: %w", ps[i].Prefix, err)
		}
	}
	if len(ps) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for i := range ps {
			b.Queue(pgUpsertPermitSQL, pgPermitArgs(&ps[i])...)
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("save permits: %w", err)
	}
	return nil
}

// AddPermit: see SQLite.AddPermit.
func (s *Postgres) AddPermit(ctx context.Context, now time.Time, actor string, p relay.Permit) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	p.By = actor
	if err := checkPermit(&p); err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgUpsertPermitSQL, pgPermitArgs(&p)...); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO permit_audit (at, actor, op, prefix, detail) VALUES ($1, $2, $3, $4, $5)`,
			pgTime(now), actor, OpAdd, p.Prefix, PermitDetail(&p)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add permit %s: %w", p.Prefix, err)
	}
	return nil
}

// DeletePermits: see SQLite.DeletePermits.
func (s *Postgres) DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("delete permits: %w", err)
	}
	for i := range ps {
		if !ps[i].Prefix.IsValid() {
			return fmt.Errorf("delete permit %d of %d: prefix: not a valid address or network", i+1, len(ps))
		}
	}
	if len(ps) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for i := range ps {
			p := &ps[i]
			// cidr refuses host bits; the SQLite store matched the text, so
			// such a prefix matched nothing there either.
			if p.Prefix.Masked() == p.Prefix {
				if _, err := tx.Exec(ctx, `DELETE FROM permits WHERE prefix = $1`, p.Prefix); err != nil {
					return fmt.Errorf("delete permit %s: %w", p.Prefix, err)
				}
			}
			if audit {
				if _, err := tx.Exec(ctx, `INSERT INTO permit_audit (at, actor, op, prefix, detail) VALUES ($1, $2, $3, $4, $5)`,
					pgTime(now), actor, OpRemove, p.Prefix.Masked(), PermitDetail(p)); err != nil {
					return fmt.Errorf("delete permit %s: audit: %w", p.Prefix, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete permits: %w", err)
	}
	return nil
}

// Permits: see SQLite.Permits.
func (s *Postgres) Permits(ctx context.Context, now time.Time) ([]relay.Permit, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+permitColumns+` FROM permits WHERE expires > $1`, pgTime(now))
	defer rows.Close()
	var out []relay.Permit
	var bad []error
	for rows.Next() {
		var (
			p       relay.Permit
			service string
		)
		if err := rows.Scan(&p.Prefix, &p.Login, &service, &p.Door, &p.Granted, &p.Expires, &p.Logins, &p.Comment, &p.By); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %s: %w", p.Prefix, err))
			continue
		}
		var err error
		if p.Service, err = rules.ParseService(service); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %s: %w", p.Prefix, err))
			continue
		}
		p.Granted, p.Expires = p.Granted.UTC(), p.Expires.UTC()
		if err := checkPermit(&p); err != nil {
			bad = addBad(bad, fmt.Errorf("permit %s: %w", p.Prefix, err))
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

// DeleteExpiredPermits: see SQLite.DeleteExpiredPermits.
func (s *Postgres) DeleteExpiredPermits(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM permits WHERE expires <= $1`, pgTime(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired permits: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// PermitAudit: see SQLite.PermitAudit.
func (s *Postgres) PermitAudit(ctx context.Context, limit int) ([]AuditEntry, error) {
	out, err := s.audit(ctx, `SELECT id, at, actor, op, 0::bigint, detail FROM permit_audit ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, s.readErr("read permit audit", err)
	}
	return out, nil
}

// --- firewall trust ---

// SaveTrusted: see SQLite.SaveTrusted.
func (s *Postgres) SaveTrusted(ctx context.Context, ts []TrustedAddr) error {
	for i := range ts {
		if err := CheckTrusted(&ts[i]); err != nil {
			return fmt.Errorf("save trusted addresses: %w", err)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, t := range ts {
			a := t.Addr.Unmap()
			if _, err := tx.Exec(ctx, `INSERT INTO fw_trusted (addr, login, expires) VALUES ($1, $2, $3)
				ON CONFLICT (addr) DO UPDATE SET login = excluded.login, expires = excluded.expires`,
				netip.PrefixFrom(a, a.BitLen()), t.Login, pgTime(t.Expires)); err != nil {
				return fmt.Errorf("save trusted address %s: %w", a, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save trusted addresses: %w", err)
	}
	return nil
}

// Trusted: see SQLite.Trusted.
func (s *Postgres) Trusted(ctx context.Context, now time.Time) ([]TrustedAddr, error) {
	rows, _ := s.pool.Query(ctx, `SELECT addr, login, expires FROM fw_trusted WHERE expires > $1 ORDER BY addr`, pgTime(now))
	defer rows.Close()
	var out []TrustedAddr
	var bad []error
	for rows.Next() {
		var t TrustedAddr
		var p netip.Prefix
		if err := rows.Scan(&p, &t.Login, &t.Expires); err != nil {
			bad = addBad(bad, fmt.Errorf("trusted address: %w", err))
			continue
		}
		t.Addr, t.Expires = p.Addr(), t.Expires.UTC()
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

// DeleteExpiredTrusted: see SQLite.DeleteExpiredTrusted.
func (s *Postgres) DeleteExpiredTrusted(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM fw_trusted WHERE expires <= $1`, pgTime(now))
	if err != nil {
		return 0, fmt.Errorf("delete expired trusted addresses: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// DeleteTrusted: see SQLite.DeleteTrusted.
func (s *Postgres) DeleteTrusted(ctx context.Context, addrs []netip.Addr) error {
	ps := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if a = a.Unmap(); a.IsValid() {
			ps = append(ps, netip.PrefixFrom(a.WithZone(""), a.BitLen()))
		}
	}
	if len(ps) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM fw_trusted WHERE addr = ANY($1::inet[])`, ps); err != nil {
		return fmt.Errorf("delete trusted addresses: %w", err)
	}
	return nil
}

// --- weak passwords ---

// SaveWeak: see SQLite.SaveWeak.
func (s *Postgres) SaveWeak(ctx context.Context, ws []WeakLogin) error {
	var bad []error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		for i := range ws {
			w := &ws[i]
			if err := checkWeak(w); err != nil {
				bad = addBad(bad, err)
				continue
			}
			var err error
			if w.Seen.IsZero() {
				_, err = tx.Exec(ctx, `DELETE FROM weak_passwords WHERE login = $1`, w.Login)
			} else {
				_, err = tx.Exec(ctx, `INSERT INTO weak_passwords (login, last_seen) VALUES ($1, $2)
					ON CONFLICT (login) DO UPDATE SET last_seen = greatest(weak_passwords.last_seen, excluded.last_seen)`, w.Login, pgTime(w.Seen))
			}
			if err != nil {
				return fmt.Errorf("save weak-password login %q: %w", w.Login, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save weak-password logins: %w", err)
	}
	return badRows("weak_passwords", bad)
}

// WeakLogins: see SQLite.WeakLogins.
func (s *Postgres) WeakLogins(ctx context.Context, since time.Time) ([]WeakLogin, error) {
	rows, _ := s.pool.Query(ctx, `SELECT login, last_seen FROM weak_passwords WHERE last_seen >= $1 ORDER BY last_seen DESC, login`, pgTime(since))
	defer rows.Close()
	var out []WeakLogin
	var bad []error
	for rows.Next() {
		var w WeakLogin
		if err := rows.Scan(&w.Login, &w.Seen); err != nil {
			bad = addBad(bad, fmt.Errorf("weak-password login: %w", err))
			continue
		}
		w.Seen = w.Seen.UTC()
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

// DeleteWeakBefore: see SQLite.DeleteWeakBefore.
func (s *Postgres) DeleteWeakBefore(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM weak_passwords WHERE last_seen < $1`, pgTime(before))
	if err != nil {
		return 0, fmt.Errorf("prune weak-password logins: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Package store persists mailgate's state: the rules an admin added and
// the audit trail of every change to them (who, when, what), bans, the
// addresses each login succeeded from, and relay permits.
//
// SQLite, an embedded file, is the default backend; PostgreSQL
// (postgres.go) keeps the same data on a server several nodes share.
// Both implement Backend and pass the shared suites in
// internal/store/storetest.
//
// The store is not on the decision path: rules are loaded into memory at
// start (Rules) and every change is written here and applied to memory by
// the caller. Times are taken as arguments and kept in UTC at a
// resolution of one second.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailgate/internal/abuse"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// ErrNotFound is returned (wrapped) when a rule does not exist; test with
// errors.Is.
var ErrNotFound = errors.New("not found")

// Audit operations.
const (
	OpAdd    = "add"
	OpRemove = "remove"
	OpExpire = "expire"
)

// ActorExpiry is the audit actor of rules removed by DeleteExpired.
const ActorExpiry = "expiry"

// MaxActorLen bounds an audit actor ("cli:root", "api:token-name", ...).
const MaxActorLen = 256

// AuditEntry is one change to the rules (Audit), to the bans (BanAudit)
// or to the relay permits (PermitAudit).
type AuditEntry struct {
	ID     int64
	At     time.Time // UTC, whole seconds
	Actor  string
	Op     string // OpAdd, OpRemove or OpExpire; OpBan or OpUnban for bans
	RuleID int64  // the rule's or ban's ID; 0 for permits
	// Detail is a human summary of the rule (Detail), ban (BanDetail) or
	// permit (PermitDetail). It never holds a secret.
	Detail string
}

// Detail summarizes a rule for the audit trail, e.g.
//
//	account=alice@example.com service=smtp action=allow match=10.0.0.101 comment="shop"
func Detail(r *rules.Rule) string {
	var b strings.Builder
	if r.Scope == rules.ScopeGlobal {
		b.WriteString("scope=global")
	} else {
		b.WriteString("account=")
		b.WriteString(r.Account)
	}
	b.WriteString(" service=")
	b.WriteString(r.Service.String())
	b.WriteString(" action=")
	b.WriteString(r.Action.String())
	b.WriteString(" match=")
	b.WriteString(r.MatchString())
	if !r.Expires.IsZero() {
		b.WriteString(" expires=")
		b.WriteString(r.Expires.UTC().Format(time.RFC3339))
	}
	if r.Comment != "" {
		b.WriteString(" comment=")
		b.WriteString(strconv.Quote(r.Comment))
	}
	return b.String()
}

// checkActor validates an audit actor.
func checkActor(actor string) error {
	switch {
	case strings.TrimSpace(actor) == "":
		return errors.New("actor: empty (the audit trail needs to know who)")
	case len(actor) > MaxActorLen:
		return fmt.Errorf("actor: longer than %d bytes", MaxActorLen)
	}
	if !utf8.ValidString(actor) {
		return errors.New("actor: not valid UTF-8")
	}
	for _, c := range actor {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("actor %q: has a control character", actor)
		}
	}
	return nil
}

// seconds turns a time into the stored unix seconds (UTC, truncated).
func seconds(t time.Time) int64 { return t.Unix() }

// fromSeconds is the inverse of seconds.
func fromSeconds(s int64) time.Time { return time.Unix(s, 0).UTC() }

func parseScope(s string) (rules.Scope, error) {
	switch s {
	case "account":
		return rules.ScopeAccount, nil
	case "global":
		return rules.ScopeGlobal, nil
	}
	return 0, fmt.Errorf("unknown scope %q", s)
}

// Backend is everything the daemon keeps in a store. SQLite and Postgres
// implement it; both pass the suites in internal/store/storetest.
type Backend interface {
	AddRules(ctx context.Context, now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error)
	DeleteRule(ctx context.Context, now time.Time, actor string, id int64) (rules.Rule, error)
	Rules(ctx context.Context) ([]rules.Rule, error)
	Rule(ctx context.Context, id int64) (rules.Rule, error)
	GlobalAllowRules(ctx context.Context) ([]rules.Rule, error)
	DeleteExpired(ctx context.Context, now time.Time) ([]rules.Rule, error)
	Audit(ctx context.Context, limit int) ([]AuditEntry, error)

	AddBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban, audit bool) error
	DeleteBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban) error
	ForgetBans(ctx context.Context, ids []int64) error
	Bans(ctx context.Context, now time.Time) ([]abuse.Ban, int64, error)
	DeleteExpiredBans(ctx context.Context, now time.Time) error
	BanAudit(ctx context.Context, limit int) ([]AuditEntry, error)
	SaveKnownGood(ctx context.Context, kg []abuse.KnownGood, forgetBefore time.Time) error
	KnownGood(ctx context.Context, since time.Time) ([]abuse.KnownGood, error)

	SavePermits(ctx context.Context, ps []relay.Permit) error
	AddPermit(ctx context.Context, now time.Time, actor string, p relay.Permit) error
	DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error
	Permits(ctx context.Context, now time.Time) ([]relay.Permit, error)
	DeleteExpiredPermits(ctx context.Context, now time.Time) (int, error)
	PermitAudit(ctx context.Context, limit int) ([]AuditEntry, error)

	SaveTrusted(ctx context.Context, ts []TrustedAddr) error
	Trusted(ctx context.Context, now time.Time) ([]TrustedAddr, error)
	DeleteExpiredTrusted(ctx context.Context, now time.Time) (int, error)
	DeleteTrusted(ctx context.Context, addrs []netip.Addr) error

	SaveWeak(ctx context.Context, ws []WeakLogin) error
	WeakLogins(ctx context.Context, since time.Time) ([]WeakLogin, error)
	DeleteWeakBefore(ctx context.Context, before time.Time) (int64, error)

	// Backup writes a copy of the store to w (SQLite); Postgres refuses
	// with an error naming pg_dump.
	Backup(ctx context.Context, w io.Writer) error
	// Ping checks that the store can take a write now.
	Ping(ctx context.Context) error
	Close() error
}

var (
	_ Backend = (*SQLite)(nil)
	_ Backend = (*Postgres)(nil)
)

// checkRules validates and normalizes rules as both stores' AddRules
// store them: Created = now and CreatedBy = actor, Source cleared, times
// in UTC truncated to the second.
func checkRules(now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error) {
	created := fromSeconds(seconds(now))
	out := make([]rules.Rule, len(rs))
	for i := range rs {
		r := rs[i]
		var err error
		switch {
		// Checked first: lower-casing in Validate would turn bad bytes into
		// U+FFFD, silently changing the account.
		case !utf8.ValidString(r.Account):
			err = errors.New("account: not valid UTF-8")
		case !utf8.ValidString(r.Comment):
			err = errors.New("comment: not valid UTF-8")
		default:
			err = r.Validate()
		}
		if err != nil {
			if len(rs) == 1 {
				return nil, fmt.Errorf("add rule: %w", err)
			}
			return nil, fmt.Errorf("add rules: rule %d of %d: %w", i+1, len(rs), err)
		}
		r.Created = created
		r.CreatedBy = actor
		r.Source = ""
		if !r.Expires.IsZero() {
			r.Expires = fromSeconds(seconds(r.Expires))
		}
		out[i] = r
	}
	return out, nil
}

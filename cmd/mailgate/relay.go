package main

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"mailgate/internal/journal"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// permits ties the relay permit table to the store and the decision log:
// a login grants or refreshes a permit in memory at once; the store is
// written behind through a journal (internal/journal): what is written is
// the table's state at the time of writing, per network.
type permits struct {
	t    *relay.Table
	st   store.Backend
	dlog *policy.DecisionLog
	log  *slog.Logger
	j    *journal.Journal[netip.Prefix, relay.Permit]
}

func newPermits(t *relay.Table, st store.Backend, dlog *policy.DecisionLog, log *slog.Logger) *permits {
	p := &permits{t: t, st: st, dlog: dlog, log: log}
	p.j = journal.New(journal.Config[netip.Prefix, relay.Permit]{
		Name: "relay permits",
		// A permit removed by hand (or expired) since a login queued it
		// is deleted, not written back, and a manual permit is not
		// overwritten by an older automatic one.
		Current: func(pfx netip.Prefix, _ relay.Permit, _ bool, now time.Time) (relay.Permit, bool) {
			if cur, ok := t.Check(pfx.Addr(), now); ok && cur.Prefix == pfx {
				return cur, true
			}
			return relay.Permit{}, false
		},
		Check: store.CheckPermit,
		Put: func(ctx context.Context, _ time.Time, ps []relay.Permit) error {
			return st.SavePermits(ctx, ps)
		},
		Delete: func(ctx context.Context, now time.Time, pfxs []netip.Prefix) error {
			ps := make([]relay.Permit, len(pfxs))
			for i, pfx := range pfxs {
				ps[i].Prefix = pfx
			}
			return st.DeletePermits(ctx, now, "mailgate", ps, false)
		},
		Tidy: func(ctx context.Context, now time.Time) error {
			_, err := st.DeleteExpiredPermits(ctx, now)
			return err
		},
	}, log)
	return p
}

// load puts the stored permits back: they survive a restart with their
// remaining time. A stored row that cannot be read back is logged and
// skipped.
func (p *permits) load(ctx context.Context, now time.Time) (int, error) {
	ps, err := p.st.Permits(ctx, now)
	if err := skipBadRows(p.log, err); err != nil {
		return 0, err
	}
	return p.t.Restore(ps, now), nil
}

// login records a successful login reported by a door or the post-login
// hook, and returns what it did to the login's permit.
func (p *permits) login(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
	return p.record(login, svc, addr, door, now, true)
}

// record is login; store false leaves the permit out of the store (a
// login another cluster node saw, on a store it shares: that node
// stores it).
func (p *permits) record(login string, svc rules.Service, addr netip.Addr, door string, now time.Time, store bool) (relay.Permit, relay.Outcome) {
	if !rules.PrintableLogin(login) {
		// A mail program does not let such a login in; a forged report
		// could. It must not reach 'permit list' or the store.
		p.log.Warn("login with control characters or over 320 bytes: no relay permit", "ip", addr.String(), "door", door)
		return relay.Permit{}, relay.NotGranting
	}
	pm, o := p.t.Login(login, svc, door, addr, now)
	if !store {
		if o == relay.Granted || o == relay.SharedRefused && pm.Prefix.IsValid() {
			ev := policy.PermitGranted
			if o == relay.SharedRefused {
				ev = policy.PermitRemoved
			}
			p.dlog.Permit(now, &pm, ev)
		}
		return pm, o
	}
	switch o {
	case relay.Granted:
		p.dlog.Permit(now, &pm, policy.PermitGranted)
		p.queue(pm, false)
	case relay.Refreshed:
		p.queue(pm, false)
	case relay.SharedRefused:
		if pm.Prefix.IsValid() {
			p.dlog.Permit(now, &pm, policy.PermitRemoved)
			p.queue(pm, true)
		}
	}
	return pm, o
}

func (p *permits) queue(pm relay.Permit, remove bool) {
	if remove {
		p.j.Remove(pm.Prefix)
	} else {
		p.j.Set(pm.Prefix, pm)
	}
}

// expire drops expired permits from memory (lookups ignore them already)
// and logs each.
func (p *permits) expire(now time.Time) {
	for _, pm := range p.t.Expire(now) {
		p.dlog.Permit(now, &pm, policy.PermitExpired)
	}
}

func (p *permits) run(ctx context.Context) { p.j.Run(ctx, persistEvery) }

// The permits are the admin API's permit store. A manual change and a
// flush never interleave, and a flush writes the table's state, so a
// refresh queued before a 'permit rm' or 'permit add' cannot undo it
// (journal.Do).

func (p *permits) AddPermit(ctx context.Context, now time.Time, actor string, pm relay.Permit) error {
	return p.j.Do(func() error { return p.st.AddPermit(ctx, now, actor, pm) })
}

func (p *permits) DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error {
	return p.j.Do(func() error { return p.st.DeletePermits(ctx, now, actor, ps, audit) })
}

func (p *permits) PermitAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	return p.st.PermitAudit(ctx, limit)
}

package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
	"unicode/utf8"

	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// permits ties the relay permit table to the store and the decision log:
// a login grants or refreshes a permit in memory at once; the store is
// written in batches off the request path, latest state per network.
type permits struct {
	t     *relay.Table
	st    *store.SQLite
	dlog  *policy.DecisionLog
	log   *slog.Logger
	flush time.Duration

	wmu sync.Mutex // held while writing to the store; see write

	mu   sync.Mutex
	save map[netip.Prefix]relay.Permit // written at the next flush
	drop map[netip.Prefix]relay.Permit // deleted at the next flush
}

// maxPending bounds the permits waiting to be written; beyond it a
// refresh is dropped (the permit holds in memory; the next login writes it).
const maxPending = 100_000

func newPermits(t *relay.Table, st *store.SQLite, dlog *policy.DecisionLog, log *slog.Logger) *permits {
	return &permits{t: t, st: st, dlog: dlog, log: log, flush: 2 * time.Second,
		save: map[netip.Prefix]relay.Permit{}, drop: map[netip.Prefix]relay.Permit{}}
}

// load puts the stored permits back: they survive a restart with their
// remaining time.
func (p *permits) load(ctx context.Context, now time.Time) (int, error) {
	ps, err := p.st.Permits(ctx, now)
	if err != nil {
		return 0, err
	}
	return p.t.Restore(ps, now), nil
}

// login records a successful login reported by a door or the post-login
// hook, and returns what it did to the login's permit.
func (p *permits) login(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
	if !printableLogin(login) {
		// A mail program does not let such a login in; a forged report
		// could. It must not reach 'permit list' or the store.
		p.log.Warn("login with control characters or over 320 bytes: no relay permit", "ip", addr.String(), "door", door)
		return relay.Permit{}, relay.NotGranting
	}
	pm, o := p.t.Login(login, svc, door, addr, now)
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

// printableLogin reports whether a login can be stored and shown: valid
// UTF-8, no control characters, at most rules.MaxAccountLen bytes.
func printableLogin(s string) bool {
	if s == "" || len(s) > rules.MaxAccountLen || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false
		}
	}
	return true
}

func (p *permits) queue(pm relay.Permit, remove bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.save, pm.Prefix)
	delete(p.drop, pm.Prefix)
	if len(p.save)+len(p.drop) >= maxPending {
		p.log.Warn("relay permit not persisted: queue full (it holds in memory)", "ip", pm.Prefix.String())
		return
	}
	if remove {
		p.drop[pm.Prefix] = pm
	} else {
		p.save[pm.Prefix] = pm
	}
}

// expire drops expired permits from memory (lookups ignore them already)
// and logs each.
func (p *permits) expire(now time.Time) {
	for _, pm := range p.t.Expire(now) {
		p.dlog.Permit(now, &pm, policy.PermitExpired)
	}
}

func (p *permits) run(ctx context.Context) {
	tick := time.NewTicker(p.flush)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			p.write(ctx, now)
		case <-ctx.Done():
			p.write(context.Background(), time.Now())
			return
		}
	}
}

// write flushes the queue. What it writes is the table's state at the
// time of writing, not what was queued: a permit removed by hand (or
// expired) since a login queued it is not written back, and a manual
// permit is not overwritten by an older automatic one. wmu makes the
// check and the write one step against manual changes (AddPermit,
// DeletePermits).
func (p *permits) write(ctx context.Context, now time.Time) {
	p.mu.Lock()
	save, drop := p.save, p.drop
	p.save, p.drop = map[netip.Prefix]relay.Permit{}, map[netip.Prefix]relay.Permit{}
	p.mu.Unlock()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	var ps, gone []relay.Permit
	for pfx := range save {
		if cur, ok := p.t.Check(pfx.Addr(), now); ok && cur.Prefix == pfx {
			ps = append(ps, cur)
		}
	}
	for pfx, pm := range drop {
		if _, ok := p.t.Check(pfx.Addr(), now); !ok {
			gone = append(gone, pm)
		}
	}
	if len(ps) > 0 {
		if err := p.st.SavePermits(ctx, ps); err != nil {
			p.log.Error("persisting relay permits", "count", len(ps), "err", err)
		}
	}
	if len(gone) > 0 {
		if err := p.st.DeletePermits(ctx, now, "mailgate", gone, false); err != nil {
			p.log.Error("deleting relay permits", "count", len(gone), "err", err)
		}
	}
	if _, err := p.st.DeleteExpiredPermits(ctx, now); err != nil {
		p.log.Error("deleting expired relay permits", "err", err)
	}
}

// The permits are the admin API's permit store. A manual change and a
// flush never interleave (wmu), and a flush writes the table's state, so a
// refresh queued before a 'permit rm' or 'permit add' cannot undo it.

func (p *permits) AddPermit(ctx context.Context, now time.Time, actor string, pm relay.Permit) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.st.AddPermit(ctx, now, actor, pm)
}

func (p *permits) DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.st.DeletePermits(ctx, now, actor, ps, audit)
}

func (p *permits) PermitAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	return p.st.PermitAudit(ctx, limit)
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/store"
)

// loadAbuseState puts the stored bans and known-good addresses back into
// a fresh tracker: bans survive a restart with their remaining time.
func loadAbuseState(ctx context.Context, st *store.SQLite, t *abuse.Tracker, b config.BruteForce, now time.Time) error {
	bans, maxID, err := st.Bans(ctx, now)
	if err != nil {
		return err
	}
	t.SetNextID(maxID + 1)
	for _, ban := range bans {
		if _, err := t.AddBan(ban, now); err != nil {
			return fmt.Errorf("stored ban %d: %w", ban.ID, err)
		}
	}
	kg, err := st.KnownGood(ctx, now.Add(-b.KnownGoodFor))
	if err != nil {
		return err
	}
	t.LoadKnownGood(kg)
	return nil
}

// abusePersister writes automatic bans and known-good addresses to the
// store off the request path: a door only appends to a queue; a goroutine
// writes batches. A full queue drops the write (the ban still holds in
// memory) rather than slow a login down.
type abusePersister struct {
	st    *store.SQLite
	t     *abuse.Tracker
	cfg   config.BruteForce
	log   *slog.Logger
	bans  chan abuse.Ban
	flush time.Duration

	mu   sync.Mutex
	seen map[abuse.KnownGood]time.Time // keys have Last zeroed
}

func newAbusePersister(st *store.SQLite, t *abuse.Tracker, cfg config.BruteForce, log *slog.Logger) *abusePersister {
	return &abusePersister{st: st, t: t, cfg: cfg, log: log, bans: make(chan abuse.Ban, 4096), flush: 2 * time.Second,
		seen: map[abuse.KnownGood]time.Time{}}
}

func (p *abusePersister) ban(b abuse.Ban) {
	select {
	case p.bans <- b:
	default:
		p.log.Warn("ban not persisted: queue full (it holds in memory until it expires or mailgate restarts)", "ban", b.ID)
	}
}

// knownGood notes a successful login's address, keyed as the tracker
// keys it (IPv6 per network).
func (p *abusePersister) knownGood(login string, addr netip.Addr, now time.Time) {
	if login == "" || !addr.IsValid() {
		return
	}
	bits := addr.BitLen()
	if addr.Is6() {
		bits = p.cfg.IPv6Prefix
	}
	pfx, err := addr.Prefix(bits)
	if err != nil {
		return
	}
	k := abuse.KnownGood{Login: login, Prefix: pfx}
	p.mu.Lock()
	if len(p.seen) < p.cfg.MaxKnownGood {
		p.seen[k] = now
	}
	p.mu.Unlock()
}

func (p *abusePersister) run(ctx context.Context) {
	tick := time.NewTicker(p.flush)
	defer tick.Stop()
	var batch []abuse.Ban
	for {
		select {
		case b := <-p.bans:
			batch = append(batch, b)
		case now := <-tick.C:
			p.write(ctx, now, batch)
			batch = batch[:0]
		case <-ctx.Done():
			// Drain what is queued: shutdown must not lose a ban.
			for drained := false; !drained; {
				select {
				case b := <-p.bans:
					batch = append(batch, b)
				default:
					drained = true
				}
			}
			p.write(context.Background(), time.Now(), batch)
			return
		}
	}
}

func (p *abusePersister) write(ctx context.Context, now time.Time, bans []abuse.Ban) {
	if len(bans) > 0 {
		if err := p.st.AddBans(ctx, now, "mailgate", bans, false); err != nil {
			p.log.Error("persisting bans", "count", len(bans), "err", err)
		}
	}
	p.mu.Lock()
	seen := p.seen
	p.seen = map[abuse.KnownGood]time.Time{}
	p.mu.Unlock()
	if err := p.st.DeleteExpiredBans(ctx, now); err != nil {
		p.log.Error("deleting expired bans", "err", err)
	}
	if len(seen) == 0 {
		return
	}
	kg := make([]abuse.KnownGood, 0, len(seen))
	for k, t := range seen {
		k.Last = t
		kg = append(kg, k)
	}
	if err := p.st.SaveKnownGood(ctx, kg, now.Add(-p.cfg.KnownGoodFor)); err != nil {
		p.log.Error("persisting known-good addresses", "count", len(kg), "err", err)
	}
}

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/journal"
	"mailgate/internal/store"
)

// persistEvery is how often live state (automatic bans, known-good pairs,
// relay permits, trusted addresses) is written to the store: what the
// doors did up to this long before a crash may be lost.
const persistEvery = 2 * time.Second

// skipBadRows logs the stored rows a reader of live state skipped and
// returns nil for them: one bad row never stops mailgate from starting.
// Any other error is returned.
func skipBadRows(log *slog.Logger, err error) error {
	var bad *store.BadRows
	if !errors.As(err, &bad) {
		return err
	}
	for _, e := range bad.Errs {
		log.Error("stored row skipped: it cannot be read back", "table", bad.Table, "err", e)
	}
	return nil
}

// loadAbuseState puts the stored bans and known-good addresses back into
// a fresh tracker: bans survive a restart with their remaining time. A
// stored row that cannot be read back, or a ban the tracker refuses, is
// logged and skipped.
func loadAbuseState(ctx context.Context, st store.Backend, t *abuse.Tracker, b config.BruteForce, now time.Time, log *slog.Logger) error {
	bans, maxID, err := st.Bans(ctx, now)
	if err := skipBadRows(log, err); err != nil {
		return err
	}
	t.SetNextID(maxID + 1)
	for _, ban := range bans {
		if _, err := t.AddBan(ban, now); err != nil {
			log.Error("stored ban skipped", "ban", ban.ID, "err", err)
		}
	}
	kg, err := st.KnownGood(ctx, now.Add(-b.KnownGoodFor))
	if err := skipBadRows(log, err); err != nil {
		return err
	}
	t.LoadKnownGood(kg)
	return nil
}

// abusePersister writes automatic bans and known-good addresses to the
// store off the request path, through one journal each (see
// internal/journal): a door only notes the key; what is written is the
// tracker's state at the time of writing, so a ban lifted by hand before
// the write is not written back.
type abusePersister struct {
	cfg  config.BruteForce
	bans *journal.Journal[int64, abuse.Ban]
	kg   *journal.Journal[abuse.KnownGood, abuse.KnownGood]
	st   store.Backend
}

func newAbusePersister(st store.Backend, t *abuse.Tracker, cfg config.BruteForce, log *slog.Logger) *abusePersister {
	p := &abusePersister{cfg: cfg, st: st}
	p.bans = journal.New(journal.Config[int64, abuse.Ban]{
		Name: "bans",
		Current: func(id int64, _ abuse.Ban, _ bool, now time.Time) (abuse.Ban, bool) {
			return t.Held(id, now)
		},
		Check: store.CheckBan,
		Put: func(ctx context.Context, now time.Time, bs []abuse.Ban) error {
			return st.AddBans(ctx, now, abuse.CreatedByMailgate, bs, false)
		},
		Delete: func(ctx context.Context, _ time.Time, ids []int64) error { return st.ForgetBans(ctx, ids) },
		Tidy:   st.DeleteExpiredBans,
	}, log)
	p.kg = journal.New(journal.Config[abuse.KnownGood, abuse.KnownGood]{
		Name:  "known-good addresses",
		Max:   cfg.MaxKnownGood,
		Check: store.CheckKnownGood,
		Put: func(ctx context.Context, now time.Time, kg []abuse.KnownGood) error {
			return st.SaveKnownGood(ctx, kg, now.Add(-cfg.KnownGoodFor))
		},
	}, log)
	return p
}

// ban notes an automatic ban the tracker made.
func (p *abusePersister) ban(b abuse.Ban) { p.bans.Set(b.ID, b) }

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
	p.kg.Set(k, abuse.KnownGood{Login: login, Prefix: pfx, Last: now})
}

// run writes both journals every persistEvery until ctx ends, then once
// more (bounded).
func (p *abusePersister) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		p.kg.Run(ctx, persistEvery)
		close(done)
	}()
	p.bans.Run(ctx, persistEvery)
	<-done
}

// The persister is the admin API's ban store: a manual change and a flush
// never interleave, so a flush that read a ban as held before 'ban rm'
// cannot write it back after.

func (p *abusePersister) AddBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban, audit bool) error {
	return p.bans.Do(func() error { return p.st.AddBans(ctx, now, actor, bs, audit) })
}

func (p *abusePersister) DeleteBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban) error {
	return p.bans.Do(func() error { return p.st.DeleteBans(ctx, now, actor, bs) })
}

func (p *abusePersister) BanAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	return p.st.BanAudit(ctx, limit)
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/journal"
	"mailgate/internal/nft"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// firewall keeps table inet mailgate a cache of mailgate's state: the
// address bans of the brute-force tracker (automatic and manual) and the
// addresses that logged in over IMAP or POP3 (trusted for
// firewall.trusted_for). Changes are queued by the doors and written in
// batches by run, off the request path; every reconcile_every the sets
// are re-asserted from that state, which repairs what was changed by hand.
// A netlink error is logged and retried at the next tick: it never
// flushes a set.
type firewall struct {
	fw      *nft.Firewall
	nc      nft.Config
	tracker *abuse.Tracker
	st      store.Backend
	log     *slog.Logger
	// failed is told when the kernel refuses a change (nil: no one).
	failed     func(what string, err error, now time.Time)
	trustedFor time.Duration // nc, trustedFor and reconcile: guarded by mu (a reload changes them)
	reconcile  time.Duration

	// apply serializes whole applies (start, reconcile, 'firewall apply')
	// with batches of changes.
	apply sync.Mutex

	// persist writes the trusted addresses behind to the store (see
	// internal/journal): what is written is f.trusted at the time of
	// writing; an address no longer trusted is deleted.
	persist *journal.Journal[netip.Addr, store.TrustedAddr]

	mu       sync.Mutex
	trusted  map[netip.Addr]store.TrustedAddr
	touched  map[netip.Prefix]bool // banned or unbanned since the last flush
	addTrust []nft.Trusted
	untrust  []netip.Addr   // trusted addresses a ban took back
	nets     []netip.Prefix // global allow rules, as of the last refreshNets
}

// fwFlush is how often queued changes go to the kernel.
const fwFlush = 200 * time.Millisecond

// maxTrusted bounds the trusted addresses kept; past it a new address is
// not trusted (it can still log in; it just does not get the firewall's
// favours) until older ones expire.
const maxTrusted = 1_000_000

func newFirewall(cfg config.Firewall, trustedNets []netip.Prefix, tracker *abuse.Tracker, st store.Backend, log *slog.Logger) (*firewall, error) {
	nc := nftConfig(cfg, trustedNets)
	if err := nc.Validate(); err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("firewall: netlink: %w", err)
	}
	fw, err := nft.New(nc, conn, log)
	if err != nil {
		return nil, fmt.Errorf("firewall: %w", err)
	}
	return newFirewallState(fw, nc, cfg, tracker, st, log), nil
}

// newFirewallState is the firewall's state over fw, without the netlink
// connection (tests).
func newFirewallState(fw *nft.Firewall, nc nft.Config, cfg config.Firewall, tracker *abuse.Tracker, st store.Backend, log *slog.Logger) *firewall {
	f := &firewall{
		fw: fw, nc: nc, tracker: tracker, st: st, log: log,
		trustedFor: cfg.TrustedFor, reconcile: cfg.ReconcileEvery,
		trusted: map[netip.Addr]store.TrustedAddr{},
		touched: map[netip.Prefix]bool{},
	}
	f.persist = journal.New(journal.Config[netip.Addr, store.TrustedAddr]{
		Name: "firewall: trusted addresses",
		Current: func(a netip.Addr, _ store.TrustedAddr, _ bool, now time.Time) (store.TrustedAddr, bool) {
			f.mu.Lock()
			defer f.mu.Unlock()
			t, ok := f.trusted[a]
			return t, ok && t.Expires.After(now)
		},
		Check: store.CheckTrusted,
		Put: func(ctx context.Context, _ time.Time, ts []store.TrustedAddr) error {
			return st.SaveTrusted(ctx, ts)
		},
		Delete: func(ctx context.Context, _ time.Time, as []netip.Addr) error {
			return st.DeleteTrusted(ctx, as)
		},
	}, log)
	return f
}

// reconfigure applies a reloaded [firewall] section and trusted networks
// to the running firewall and writes the new ruleset into the same table.
// An invalid config changes nothing; a failed write is logged, and every
// reconcile tries again (as at start).
func (f *firewall) reconfigure(cfg config.Firewall, trustedNets []netip.Prefix, now time.Time) error {
	nc := nftConfig(cfg, trustedNets)
	if err := f.fw.SetConfig(nc); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	f.mu.Lock()
	f.nc, f.trustedFor, f.reconcile = nc, cfg.TrustedFor, cfg.ReconcileEvery
	f.mu.Unlock()
	if added, removed, err := f.Apply(now); err != nil {
		f.log.Error("firewall: applying the reloaded config failed; every reconcile tries again", "err", err)
		f.fail("applying the reloaded config", err, now)
	} else {
		f.log.Info("firewall applied", "mode", cfg.Mode, "added", added, "removed", removed)
	}
	return nil
}

func (f *firewall) reconcileEvery() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reconcile
}

// nftConfig turns the [firewall] section into the nft package's config.
func nftConfig(cfg config.Firewall, trustedNets []netip.Prefix) nft.Config {
	nc := nft.DefaultConfig()
	nc.Mode = nft.Mode(cfg.Mode)
	nc.RetrievalPorts = ports(cfg.RetrievalPorts)
	nc.SubmissionPorts = ports(cfg.SubmissionPorts)
	nc.SMTPPorts = ports(cfg.SMTPPorts)
	nc.Rate = uint32(cfg.Rate)
	nc.RatePer = cfg.RatePer
	nc.AutobanFor = cfg.AutobanFor
	nc.Bans = cfg.Bans
	nc.TrustedNets = trustedNets
	nc.Priority = int32(cfg.Priority)
	return nc
}

func ports(ps []int) []uint16 {
	out := make([]uint16, len(ps))
	for i, p := range ps {
		out[i] = uint16(p)
	}
	return out
}

// load reads the trusted addresses back from the store. A stored row
// that cannot be read back is logged and skipped.
func (f *firewall) load(ctx context.Context, now time.Time) error {
	ts, err := f.st.Trusted(ctx, now)
	if err := skipBadRows(f.log, err); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range ts {
		f.trusted[t.Addr] = t
	}
	return nil
}

// refreshNets reads the global allow rules ('rule add --global --allow'):
// trusted networks like [policy] trusted_networks. At start, at every
// reconcile and for 'firewall apply'.
func (f *firewall) refreshNets(ctx context.Context, now time.Time) {
	rs, err := f.st.GlobalAllowRules(ctx)
	if err != nil {
		f.log.Error("firewall: reading the global allow rules; the trusted networks stay as they were", "err", err)
		return
	}
	var nets []netip.Prefix
	for _, r := range rs {
		if r.Match.IsValid() && (r.Expires.IsZero() || r.Expires.After(now)) && len(nets) < nft.MaxTrustedNets {
			nets = append(nets, r.Match)
		}
	}
	f.mu.Lock()
	f.nets = nets
	f.mu.Unlock()
}

// state is what the kernel sets should hold at now.
func (f *firewall) state(now time.Time) nft.State {
	var st nft.State
	for _, b := range f.tracker.Bans(now) {
		if b.Kind == abuse.BanAddr {
			st.Bans = append(st.Bans, nft.Ban{Prefix: b.Prefix, Expires: b.Expires})
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st.TrustedNets = f.nets
	for a, t := range f.trusted {
		if t.Expires.After(now) {
			st.Trusted = append(st.Trusted, nft.Trusted{Addr: a, Expires: t.Expires})
		}
	}
	return st
}

// Apply writes the whole ruleset and re-asserts the sets (at start, and
// for 'mailgate firewall apply').
func (f *firewall) Apply(now time.Time) (added, removed int, err error) {
	f.refreshNets(context.Background(), now)
	f.apply.Lock()
	defer f.apply.Unlock()
	r, err := f.fw.Apply(now, f.state(now))
	return r.Added, r.Removed, err
}

// Show returns the ruleset wanted and the kernel's.
func (f *firewall) Show(now time.Time) (want, have string, err error) {
	f.mu.Lock()
	nc := f.nc
	f.mu.Unlock()
	want = nft.Render(nc, f.state(now), now)
	have, err = f.fw.Kernel()
	return want, have, err
}

// bans queues the prefixes of bans made or lifted. What goes to the kernel
// is decided at the flush from the tracker, whatever order the events came
// in: the latest expiry of the bans still on a prefix, or none. A ban also
// takes back the trust of the addresses it covers (a trusted address is
// let through before any ban is looked at).
func (f *firewall) bans(added, removed []abuse.Ban) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range added {
		if b.Kind != abuse.BanAddr {
			continue
		}
		f.touched[b.Prefix] = true
		if b.Prefix.IsSingleIP() {
			// The common case, on the request path: no walk over every
			// trusted address.
			if _, ok := f.trusted[b.Prefix.Addr()]; ok {
				f.untrustLocked(b.Prefix.Addr())
			}
			continue
		}
		for a := range f.trusted {
			if b.Prefix.Contains(a) {
				f.untrustLocked(a)
			}
		}
	}
	for _, b := range removed {
		if b.Kind == abuse.BanAddr {
			f.touched[b.Prefix] = true
		}
	}
}

// untrustLocked takes the trust of a back.
func (f *firewall) untrustLocked(a netip.Addr) {
	delete(f.trusted, a)
	f.persist.Remove(a)
	f.untrust = append(f.untrust, a)
}

// login trusts the address of a successful IMAP or POP3 login.
func (f *firewall) login(login string, svc rules.Service, addr netip.Addr, now time.Time) {
	if svc != rules.IMAP && svc != rules.POP3 || !addr.IsValid() {
		return
	}
	addr = addr.Unmap().WithZone("")
	f.mu.Lock()
	defer f.mu.Unlock()
	t := store.TrustedAddr{Addr: addr, Login: login, Expires: now.Add(f.trustedFor)}
	prev, had := f.trusted[addr]
	if !had && len(f.trusted) >= maxTrusted {
		return
	}
	f.trusted[addr] = t
	f.persist.Set(addr, t)
	// The kernel's element has a timeout: refresh it only when a good part
	// of it has run out, not at every login.
	if !had || prev.Expires.Sub(now) < f.trustedFor*3/4 {
		f.addTrust = append(f.addTrust, nft.Trusted{Addr: addr, Expires: t.Expires})
	}
}

// run writes queued changes to the kernel every fwFlush and re-asserts
// everything every reconcile period, and the trusted addresses to the
// store every persistEvery, until ctx ends.
func (f *firewall) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		f.persist.Run(ctx, persistEvery)
		close(done)
	}()
	defer func() { <-done }()
	flush := time.NewTicker(fwFlush)
	defer flush.Stop()
	every := f.reconcileEvery()
	rec := time.NewTicker(every)
	defer rec.Stop()
	for {
		select {
		case <-ctx.Done():
			f.flush(context.Background(), time.Now())
			return
		case now := <-flush.C:
			f.flush(ctx, now)
			if e := f.reconcileEvery(); e != every { // a reload changed it
				every = e
				rec.Reset(every)
			}
		case now := <-rec.C:
			f.refreshNets(ctx, now)
			f.apply.Lock()
			r, err := f.fw.Sync(now, f.state(now))
			f.apply.Unlock()
			if err != nil {
				f.log.Error("firewall: re-asserting the sets failed; they stay as they are", "err", err)
				f.fail("re-asserting the sets", err, now)
			} else if r.Added+r.Removed > 0 {
				f.log.Info("firewall: sets repaired", "added", r.Added, "removed", r.Removed)
			}
			f.forget(ctx, now)
		}
	}
}

func (f *firewall) flush(ctx context.Context, now time.Time) {
	f.mu.Lock()
	touched, trust, untrust := f.touched, f.addTrust, f.untrust
	if len(touched) > 0 {
		f.touched = map[netip.Prefix]bool{}
	}
	f.addTrust, f.untrust = nil, nil
	f.mu.Unlock()
	var add, del []nft.Ban
	if len(touched) > 0 {
		latest := map[netip.Prefix]time.Time{}
		for _, b := range f.tracker.Bans(now) {
			if b.Kind != abuse.BanAddr || !touched[b.Prefix] {
				continue
			}
			if e, ok := latest[b.Prefix]; !ok || laterExpiry(b.Expires, e) {
				latest[b.Prefix] = b.Expires
			}
		}
		for p := range touched {
			if e, ok := latest[p]; ok {
				add = append(add, nft.Ban{Prefix: p, Expires: e})
			} else {
				del = append(del, nft.Ban{Prefix: p})
			}
		}
	}
	f.apply.Lock()
	if len(del) > 0 {
		if err := f.fw.RemoveBans(now, del); err != nil {
			f.log.Error("firewall: lifting bans failed; the next reconcile retries", "bans", len(del), "err", err)
			f.fail("lifting bans", err, now)
		}
	}
	if len(add) > 0 {
		if err := f.fw.AddBans(now, add); err != nil {
			f.log.Error("firewall: adding bans failed; the next reconcile retries", "bans", len(add), "err", err)
			f.fail("adding bans", err, now)
		}
	}
	if len(trust) > 0 {
		if err := f.fw.AddTrusted(now, trust); err != nil {
			f.log.Error("firewall: adding trusted addresses failed; the next reconcile retries", "addresses", len(trust), "err", err)
			f.fail("adding trusted addresses", err, now)
		}
	}
	if len(untrust) > 0 {
		// Taking elements out of the trusted sets is a re-assertion.
		if _, err := f.fw.Sync(now, f.state(now)); err != nil {
			f.log.Error("firewall: untrusting banned addresses failed; the next reconcile retries", "err", err)
			f.fail("untrusting banned addresses", err, now)
		}
	}
	f.apply.Unlock()
}

// fail tells f.failed, if set, about a kernel error.
func (f *firewall) fail(what string, err error, now time.Time) {
	if f.failed != nil {
		f.failed(what, err, now)
	}
}

// laterExpiry reports whether a lasts longer than b (zero: until lifted).
func laterExpiry(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero() && !b.IsZero()
	}
	return a.After(b)
}

// forget drops expired trusted addresses from memory and the store.
func (f *firewall) forget(ctx context.Context, now time.Time) {
	f.mu.Lock()
	for a, t := range f.trusted {
		if !t.Expires.After(now) {
			delete(f.trusted, a)
		}
	}
	f.mu.Unlock()
	if _, err := f.st.DeleteExpiredTrusted(ctx, now); err != nil {
		f.log.Error("firewall: deleting expired trusted addresses", "err", err)
	}
}

// warnLeftoverTable warns when the firewall is off but table inet mailgate
// is in the kernel: its last mode keeps filtering with nobody keeping its
// sets (trusted addresses run out and are not renewed). It only reads, and
// says nothing when it cannot (not root, no nf_tables).
func warnLeftoverTable(log *slog.Logger) {
	conn, err := nftables.New()
	if err != nil {
		return
	}
	defer conn.CloseLasting() //nolint:errcheck // nothing to do about it
	if t, err := conn.ListTableOfFamily(nft.TableName, nftables.TableFamilyINet); err == nil && t != nil {
		log.Warn("firewall is off ([firewall] enabled = false), but table inet mailgate is in the kernel and keeps filtering with nobody maintaining it; remove it with: nft delete table inet mailgate")
	}
}

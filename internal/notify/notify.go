// Package notify tells a human when something needs one: an account under
// attack, an account over its sending limit, a login from a new country,
// a relay permit on a shared address, a firewall that cannot be applied, a
// blocklist or GeoIP database gone stale. Events go to webhooks (JSON,
// signed with HMAC-SHA256), Alertmanager (POST /api/v2/alerts) and mail
// through the local sendmail; "new country" and "login banned" may also
// be mailed to the account's owner.
//
// The callers are the decision paths: Notify never blocks and never
// allocates a goroutine. It hands the event to a bounded intake channel,
// and drops it (counted) when the channel is full. One dispatcher
// goroutine switches events on or off, rate-limits them per subject (an
// account, an address, a zone) in a bounded table and over all subjects
// with a token bucket, and fans them out to each target's bounded queue;
// each target's worker delivers with retries and exponential backoff.
//
// It is not a general alerting system: it has no routing, grouping or
// silencing (Alertmanager has them), and it keeps nothing across restarts.
package notify

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is an event's kind; its string is what the config, the JSON and
// the Alertmanager label say.
type Kind string

// The event kinds.
const (
	LoginBanned    Kind = "login_banned"    // an account's login was banned: someone is attacking it
	SendLimit      Kind = "send_limit"      // an account hit its sending limit: maybe a stolen password
	NewCountry     Kind = "new_country"     // a successful login from a country the account never used
	SharedPermit   Kind = "shared_permit"   // a relay permit on an address many accounts log in from
	FirewallFailed Kind = "firewall_failed" // table inet mailgate could not be applied
	DNSBLStale     Kind = "dnsbl_stale"     // a DNSBL zone fails its health check
	GeoIPStale     Kind = "geoip_stale"     // the GeoIP database is older than allowed
	Test           Kind = "test"            // 'mailgate notify test': checks the targets
)

// Kinds returns every event kind a config may name, in order.
func Kinds() []Kind {
	return []Kind{LoginBanned, SendLimit, NewCountry, SharedPermit, FirewallFailed, DNSBLStale, GeoIPStale}
}

// OwnerKinds are the kinds that may be mailed to the account's owner.
func OwnerKinds() []Kind { return []Kind{LoginBanned, NewCountry} }

// healthKind reports whether k's subjects come from the config, not from
// clients (the firewall, a DNSBL zone, the GeoIP file): they are limited
// per subject in a table of their own and never by max_per_hour, so that
// a spray of made-up logins can neither use up the budget nor push them
// out of the table and silence a broken firewall.
func healthKind(k Kind) bool { return k == FirewallFailed || k == DNSBLStale || k == GeoIPStale }

// maxHealthSubjects bounds the health kinds' table (zones are few).
const maxHealthSubjects = 1000

// Size bounds of an event's fields: what an attacker chooses (a login)
// is cut to these before it goes anywhere.
const (
	MaxField    = 256 // a login, a detail
	maxAccounts = 10  // accounts listed with a shared permit
)

// Event is something a human should know. The doors' values (a login)
// are untrusted: Notify's dispatcher cleans and cuts them.
type Event struct {
	Kind     Kind
	Time     time.Time
	Subject  string       // what the rate limit counts per; "" = Login, else Addr
	Login    string       // the account, if any
	Addr     netip.Addr   // the client address, if any
	Prefix   netip.Prefix // the permit's network (SharedPermit)
	Country  string       // ISO 3166-1 alpha-2, if known
	Service  string       // imap, pop3, smtp...
	Until    time.Time    // when the ban ends (LoginBanned)
	Detail   string       // the limit, the zone's problem, the error
	Accounts []string     // the accounts seen on a shared address
	// Suppressed is filled by the dispatcher: notifications dropped by
	// the global rate limit since the last one that went out.
	Suppressed uint64
}

// subject is the rate limit's key of e.
func (e *Event) subject() string {
	switch {
	case e.Subject != "":
		return e.Subject
	case e.Login != "":
		return e.Login
	case e.Prefix.IsValid():
		return e.Prefix.String()
	case e.Addr.IsValid():
		return e.Addr.String()
	}
	return ""
}

// EventConfig is one kind's switch and rate.
type EventConfig struct {
	Enabled bool
	Every   time.Duration // at most one notification per subject per Every
	Owner   bool          // also mail the account's owner (OwnerKinds only)
}

// Config is the notifier's configuration.
type Config struct {
	Events      map[Kind]EventConfig
	MaxPerHour  int // over all subjects and targets: a token bucket of this size, refilled over an hour
	MaxSubjects int // bound of the per-subject table
	Intake      int // the intake channel's size
	Host        string
	Targets     []Target
	Owner       *Owner // nil: owners are never told
}

// DefaultIntake is the intake channel's size when Config.Intake is 0.
const DefaultIntake = 1024

// DrainTimeout bounds the delivery of what is queued when Run's context
// ends.
const DrainTimeout = 5 * time.Second

// Target is one place notifications go: a webhook, Alertmanager, a mail.
type Target interface {
	Name() string
	// Wants reports whether the target takes events of kind k.
	Wants(k Kind) bool
	// Deliver makes one attempt; Permanent errors are not retried.
	Deliver(ctx context.Context, e *Event) error
	// Retry is the target's retry policy.
	Retry() RetryPolicy
	// QueueLen is the size of the target's queue.
	QueueLen() int
}

// RetryPolicy says how often and how patiently a delivery is retried.
type RetryPolicy struct {
	Retries int           // attempts after the first
	Backoff time.Duration // wait before the first retry; doubled each time
	Max     time.Duration // cap of the wait
}

// Wait is the wait before retry n (0-based).
func (p RetryPolicy) Wait(n int) time.Duration {
	d := p.Backoff
	for range n {
		d *= 2
		if d >= p.Max || d <= 0 {
			return p.Max
		}
	}
	return min(d, p.Max)
}

// Permanent marks an error that a retry cannot fix (an HTTP 4xx answer).
type Permanent struct{ Err error }

func (p *Permanent) Error() string { return p.Err.Error() }
func (p *Permanent) Unwrap() error { return p.Err }

// Stats are the notifier's counters, for metrics.
type Stats struct {
	Accepted       uint64 // events taken into the intake
	IntakeDropped  uint64 // events dropped because the intake was full
	Off            uint64 // events of a kind switched off
	RateSubject    uint64 // events dropped by the per-subject rate limit
	RateGlobal     uint64 // events dropped by the global rate limit
	SubjectEvicted uint64 // subjects forgotten to make room in the table
	Targets        []TargetStats
}

// TargetStats are one target's counters.
type TargetStats struct {
	Name       string
	Queued     int    // now in its queue
	Sent       uint64 // delivered
	Failed     uint64 // given up after the retries
	Retries    uint64 // attempts after a failed one
	QueueFull  uint64 // events dropped because its queue was full
	OwnerLimit uint64 // owner mails dropped by their own rate limits (the owner target only)
}

// Notifier takes events and hands them to the targets; see the package
// doc. The zero value is not usable: call New, then Run.
type Notifier struct {
	log *slog.Logger
	in  chan Event

	accepted, intakeDropped atomic.Uint64
	// hard is every attempt's context: cancelled DrainTimeout after
	// Run's context ends, cutting what is still in flight.
	hard     context.Context
	hardStop context.CancelFunc
	draining atomic.Bool // Run's context ended: no more retries

	mu      sync.Mutex // guards the fields below; the dispatcher holds it per event
	cfg     Config
	limit   *limiter
	health  *limiter // the health kinds': per subject only
	workers []*worker
	owner   *worker // nil: no owner mails
	ownerL  *limiter
	off     uint64
	rateSub uint64
	rateAll uint64
	ctx     context.Context // Run's; nil before and after Run
	wg      sync.WaitGroup
	// counts are the targets' counters by name: they outlive a reload
	// that replaces a target by one of the same name, so that metrics
	// stay monotonic.
	counts map[string]*counts
	names  []string // the keys of counts, in order of first use
}

// counts are one target's counters.
type counts struct {
	sent, failed, retries, full, limited atomic.Uint64
}

// New returns a notifier for cfg; Run starts it.
func New(cfg Config, log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Intake <= 0 {
		cfg.Intake = DefaultIntake
	}
	n := &Notifier{log: log, in: make(chan Event, cfg.Intake), cfg: cfg}
	n.hard, n.hardStop = context.WithCancel(context.Background())
	n.limit = newLimiter(cfg.MaxSubjects, cfg.MaxPerHour)
	n.health = newLimiter(maxHealthSubjects, 0)
	n.registerLocked()
	return n
}

// Notify hands e to the dispatcher. It never blocks: when the intake is
// full, e is dropped and counted. A nil Notifier drops everything.
func (n *Notifier) Notify(e Event) {
	if n == nil {
		return
	}
	select {
	case n.in <- e:
		n.accepted.Add(1)
	default:
		n.intakeDropped.Add(1)
	}
}

// Enabled reports whether events of kind k are switched on, so that a
// caller can skip the work of building one. A nil Notifier has none.
func (n *Notifier) Enabled(k Kind) bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.Events[k].Enabled
}

// Run dispatches events until ctx ends, then lets the targets' workers
// deliver what they hold (one attempt each, no retries, all within
// DrainTimeout; what is left then is dropped and counted as failed) and
// returns.
func (n *Notifier) Run(ctx context.Context) {
	n.mu.Lock()
	n.ctx = ctx
	n.startWorkersLocked()
	n.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			// What is queued gets one attempt each, all of them
			// within DrainTimeout: a dead receiver must not hold up
			// the daemon's exit.
			n.draining.Store(true)
			stop := time.AfterFunc(DrainTimeout, n.hardStop)
			defer stop.Stop()
			defer n.hardStop()
			n.mu.Lock()
			n.stopWorkersLocked()
			n.ctx = nil // a Reconfigure from now on starts no worker
			n.mu.Unlock()
			n.wg.Wait()
			return
		case e := <-n.in:
			n.dispatch(e)
		}
	}
}

// Reconfigure replaces the configuration: the rate limits' state is kept
// (a smaller table forgets the oldest subjects), the targets are
// replaced, and the old targets' workers deliver what they hold and stop.
func (n *Notifier) Reconfigure(cfg Config) {
	n.mu.Lock()
	defer n.mu.Unlock()
	cfg.Intake = n.cfg.Intake
	n.cfg = cfg
	n.limit.resize(cfg.MaxSubjects, cfg.MaxPerHour)
	n.registerLocked()
	if n.ctx != nil {
		n.stopWorkersLocked()
		n.startWorkersLocked()
	}
}

func (n *Notifier) startWorkersLocked() {
	n.workers = n.workers[:0]
	for _, t := range n.cfg.Targets {
		n.workers = append(n.workers, n.startWorkerLocked(t))
	}
	n.owner = nil
	if o := n.cfg.Owner; o != nil {
		if n.ownerL == nil {
			n.ownerL = newLimiter(n.cfg.MaxSubjects, o.MaxPerHour)
		} else {
			n.ownerL.resize(n.cfg.MaxSubjects, o.MaxPerHour)
		}
		n.owner = n.startWorkerLocked(o)
	}
}

func (n *Notifier) startWorkerLocked(t Target) *worker {
	w := &worker{t: t, q: make(chan Event, max(t.QueueLen(), 1)), log: n.log.With("target", t.Name()), c: n.countsLocked(t.Name()), n: n}
	ctx := n.ctx
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		w.run(ctx)
	}()
	return w
}

// countsLocked returns the counters of the target called name.
func (n *Notifier) countsLocked(name string) *counts {
	c := n.counts[name]
	if c == nil {
		if n.counts == nil {
			n.counts = map[string]*counts{}
		}
		c = &counts{}
		n.counts[name] = c
		n.names = append(n.names, name)
	}
	return c
}

// registerLocked creates the counters of cfg's targets, so that Stats
// lists them before Run.
func (n *Notifier) registerLocked() {
	for _, t := range n.cfg.Targets {
		n.countsLocked(t.Name())
	}
	if n.cfg.Owner != nil {
		n.countsLocked(n.cfg.Owner.Name())
	}
}

// stopWorkersLocked closes the queues: each worker delivers what its
// queue holds and stops.
func (n *Notifier) stopWorkersLocked() {
	for _, w := range n.workers {
		close(w.q)
	}
	if n.owner != nil {
		close(n.owner.q)
	}
	n.workers, n.owner = nil, nil
}

// dispatch decides what happens to one event: switched off, rate-limited,
// or queued to each target that wants it (and to the owner).
func (n *Notifier) dispatch(e Event) {
	clean(&e)
	n.mu.Lock()
	defer n.mu.Unlock()
	ec := n.cfg.Events[e.Kind]
	if e.Kind == Test {
		ec = EventConfig{Enabled: true}
	}
	if !ec.Enabled {
		n.off++
		return
	}
	now := e.Time
	subj := string(e.Kind) + "\x00" + e.subject()
	lim := n.limit
	if healthKind(e.Kind) {
		lim = n.health
	}
	switch lim.allow(subj, ec.Every, now) {
	case denySubject:
		n.rateSub++
	case denyGlobal:
		n.rateAll++
	default:
		e.Suppressed = n.limit.takeSuppressed()
		for _, w := range n.workers {
			if w.t.Wants(e.Kind) {
				w.enqueue(e)
			}
		}
	}
	// An account without an owner address (a login an attacker made
	// up, at a domain not in owner.domains) is skipped quietly.
	if ec.Owner && n.owner != nil && e.Login != "" && slices.Contains(OwnerKinds(), e.Kind) && n.cfg.Owner.Address(e.Login) != "" {
		// The owner's own limits: once per account per owner every,
		// and a global budget of owner mails.
		if n.ownerL.allow(string(e.Kind)+"\x00"+e.Login, n.cfg.Owner.Every, now) == allowed {
			n.owner.enqueue(e)
		} else {
			n.owner.c.limited.Add(1)
		}
	}
}

// Stats returns the counters.
func (n *Notifier) Stats() Stats {
	s := Stats{Accepted: n.accepted.Load(), IntakeDropped: n.intakeDropped.Load()}
	n.mu.Lock()
	defer n.mu.Unlock()
	s.Off, s.RateSubject, s.RateGlobal = n.off, n.rateSub, n.rateAll
	s.SubjectEvicted = n.limit.evicted
	queued := map[string]int{}
	for _, w := range n.workers {
		queued[w.t.Name()] += len(w.q)
	}
	if n.owner != nil {
		queued[n.owner.t.Name()] += len(n.owner.q)
	}
	for _, name := range n.names {
		c := n.counts[name]
		s.Targets = append(s.Targets, TargetStats{Name: name, Queued: queued[name], Sent: c.sent.Load(), Failed: c.failed.Load(),
			Retries: c.retries.Load(), QueueFull: c.full.Load(), OwnerLimit: c.limited.Load()})
	}
	return s
}

// worker delivers one target's queue.
type worker struct {
	t   Target
	q   chan Event
	log *slog.Logger
	c   *counts
	n   *Notifier // its hard context and draining flag
}

func (w *worker) enqueue(e Event) {
	select {
	case w.q <- e:
	default:
		w.c.full.Add(1)
		w.log.Warn("notify: queue full; event dropped", "event", string(e.Kind))
	}
}

// run delivers until the queue is closed. After ctx ends, what is left
// gets one attempt each, bounded by the target's own timeout.
func (w *worker) run(ctx context.Context) {
	for e := range w.q {
		w.deliver(ctx, &e)
	}
}

func (w *worker) deliver(ctx context.Context, e *Event) {
	p := w.t.Retry()
	for attempt := 0; ; attempt++ {
		// An attempt is not cut short by ctx: at shutdown the last
		// events still get their one try, until the drain's end.
		if w.n.hard.Err() != nil {
			w.c.failed.Add(1)
			return
		}
		err := w.t.Deliver(w.n.hard, e)
		if err == nil {
			w.c.sent.Add(1)
			return
		}
		var perm *Permanent
		if attempt >= p.Retries || ctx.Err() != nil || w.n.draining.Load() || asPermanent(err, &perm) {
			w.c.failed.Add(1)
			w.log.Error("notify: delivery failed; event dropped", "event", string(e.Kind), "attempts", attempt+1, "err", err)
			return
		}
		w.c.retries.Add(1)
		w.log.Warn("notify: delivery failed; retrying", "event", string(e.Kind), "attempt", attempt+1, "wait", p.Wait(attempt), "err", err)
		t := time.NewTimer(p.Wait(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

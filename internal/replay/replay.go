// Package replay runs login attempts, read from an events file or a mail
// log, through the real decision engine in virtual time, and reports what
// the engine would have done: verdicts, bans, refused users, the guesses
// that reached a password check, relay permits.
//
// It touches no live state: the caller builds a fresh engine (the way the
// daemon does) and nothing here writes a store, a firewall or a socket.
// Time is each event's own: nothing sleeps, a tarpit is counted, not
// waited.
package replay

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// Setup is what a replay runs: the engine as the daemon builds it, its
// brute-force tracker (the one given to Engine.WithAbuse; nil: none), and
// the relay permit table when relay permits are on (nil: off). All three
// must be fresh: a replay changes their state.
type Setup struct {
	Engine  *policy.Engine
	Tracker *abuse.Tracker
	Permits *relay.Table
}

// Options bound a replay.
type Options struct {
	// From and To keep events with From <= time < To; a zero bound is
	// open. Events outside are skipped (they do not warm the state).
	From, To time.Time
	// MaxList bounds each list of the report (refused users, accounts,
	// bans, permits, under-attack periods); 0 means DefaultMaxList.
	MaxList int
}

// DefaultMaxList is how many entries each list of a report holds at most.
const DefaultMaxList = 10000

// maxTracked bounds the distinct accounts and (login, address) pairs the
// report tracks; attempts beyond it are counted but not itemized.
const maxTracked = 1 << 20

// maxCount bounds the attempts one log event stands for.
const maxCount = 1000

// Runner feeds events to the engine and keeps the report's counts. It is
// not safe for concurrent use.
type Runner struct {
	s    Setup
	opt  Options
	rep  Report
	now  time.Time // the virtual clock: never goes back
	tick time.Time // the next periodic work (the daemon's 1 s ticker)

	verdicts [3]int64
	reasons  map[policy.Reason]int64
	refused  map[refKey]*Refusal
	accounts map[string]*Account
	banReas  map[string]int64
	attack   *Period
}

type refKey struct {
	login string
	addr  netip.Addr
}

// New returns a runner over s.
func New(s Setup, opt Options) *Runner {
	if opt.MaxList <= 0 {
		opt.MaxList = DefaultMaxList
	}
	return &Runner{
		s:        s,
		opt:      opt,
		reasons:  map[policy.Reason]int64{},
		refused:  map[refKey]*Refusal{},
		accounts: map[string]*Account{},
		banReas:  map[string]int64{},
	}
}

// Source yields events in time order. Next returns false at the end, or
// with an error that stops the replay.
type Source interface {
	Next(ev *Event) (bool, error)
}

// Run feeds every event of src to a new runner and returns its report.
// It stops at the first error of src, or when ctx is done.
func Run(ctx context.Context, s Setup, opt Options, src Source) (*Report, error) {
	r := New(s, opt)
	var ev Event
	for n := 0; ; n++ {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ok, err := src.Next(&ev)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		r.Feed(&ev)
	}
	return r.Report(), nil
}

// Feed replays one event. Events should come in time order; one that goes
// back is replayed at the latest time seen (and counted as out of order).
func (r *Runner) Feed(ev *Event) {
	in := &r.rep.Input
	if (!r.opt.From.IsZero() && ev.Time.Before(r.opt.From)) || (!r.opt.To.IsZero() && !ev.Time.Before(r.opt.To)) {
		in.OutOfRange++
		return
	}
	now := ev.Time.UTC()
	if now.Before(r.now) {
		in.OutOfOrder++
		now = r.now
	}
	r.now = now
	if in.Events == 0 {
		in.First = now
	}
	in.Last = now
	in.Events++
	r.periodic(now)

	a := policy.Attempt{Login: ev.Login, Service: ev.Service, Client: ev.Client, PwHash: ev.PwHash, Door: ev.Door}
	legit := ev.Actor == User || (ev.Actor == Unlabeled && ev.Result == Success)
	attacker := ev.Actor == Attacker || (ev.Actor == Unlabeled && ev.Result == Failure)
	n := min(max(ev.Count, 1), maxCount)
	for range n {
		in.Attempts++
		r.attempt(&a, ev, now, legit, attacker)
	}
}

// attempt decides one attempt as the door would before the password
// check, and reports the result of a check it let through.
func (r *Runner) attempt(a *policy.Attempt, ev *Event, now time.Time, legit, attacker bool) {
	// Postfix checks an SMTP AUTH password before it asks mailgate (its
	// policy request carries the authenticated sasl_username): a failure
	// there is never decided, only reported (by the log door); a success
	// is decided after its password check.
	afterAuth := a.Door == "postfix"
	pc := &r.rep.PasswordChecks
	refused := false
	var v policy.Verdict
	if afterAuth && ev.Result == Failure {
		pc.Undecided++
	} else {
		if policy.BadLogin(a.Login) {
			v = policy.BadLoginVerdict() // the doors refuse it before asking the engine
		} else {
			v = r.s.Engine.Decide(a, now, nil)
		}
		if int(v.Action) < len(r.verdicts) {
			r.verdicts[v.Action]++
		}
		r.reasons[v.Reason]++
		refused = v.Action == policy.Deny
	}
	checked := ev.Result != NoResult && (!refused || afterAuth) // the password was checked
	if legit {
		r.rep.Legitimate.Attempts++
		if refused {
			r.rep.Legitimate.Refused++
			r.refuse(a, ev, now, &v)
		}
	}
	if attacker {
		at := &r.rep.Attackers
		at.Attempts++
		acc := r.account(a.Login)
		switch {
		case checked:
			at.Reached++
			if acc != nil {
				acc.Reached++
			}
			if ev.Result == Success {
				at.Succeeded++
				if acc != nil {
					acc.Succeeded++
				}
			}
		case refused:
			at.Stopped++
			if acc != nil {
				acc.Stopped++
			}
		}
	}
	switch {
	case checked:
		pc.Reached++
	case refused:
		pc.Stopped++
	default:
		pc.DecideOnly++
	}
	if refused || ev.Result == NoResult || policy.BadLogin(a.Login) {
		return // not reported: refused, decide-only, or a login no account can have (never counted, as serve's onReport)
	}
	success := ev.Result == Success
	bans := r.s.Engine.Report(a, success, now)
	for i := range bans {
		r.ban(&bans[i], now)
	}
	if success && r.s.Permits != nil && rules.PrintableLogin(a.Login) {
		p, o := r.s.Permits.Login(a.Login, a.Service, a.Door, a.Client, now)
		r.permit(&p, o, now)
	}
}

// periodic does what the daemon's once-a-second ticker does: expire bans
// and permits, and turn "under attack" on and off.
func (r *Runner) periodic(now time.Time) {
	if now.Before(r.tick) {
		return
	}
	r.tick = now.Add(time.Second)
	if t := r.s.Tracker; t != nil {
		t.Expire(now)
		if s, changed := t.Surge(now); changed {
			if s.On {
				r.attack = &Period{Start: now, Failures: s.Recent, Usual: s.Usual}
				r.rep.UnderAttack.Total++
				if len(r.rep.UnderAttack.List) < r.opt.MaxList {
					r.rep.UnderAttack.List = append(r.rep.UnderAttack.List, r.attack)
				}
			} else if r.attack != nil {
				end := now
				r.attack.End = &end
				r.attack = nil
			}
		}
	}
	if r.s.Permits != nil {
		r.s.Permits.Expire(now)
	}
}

func (r *Runner) refuse(a *policy.Attempt, ev *Event, now time.Time, v *policy.Verdict) {
	k := refKey{a.Login, a.Client}
	f := r.refused[k]
	if f == nil {
		if len(r.refused) >= maxTracked {
			r.rep.Legitimate.Untracked++
			return
		}
		f = &Refusal{Login: a.Login, Address: a.Client, Actor: ev.Actor.String(), First: now, Reasons: map[string]int64{}}
		r.refused[k] = f
	}
	f.Last = now
	f.Attempts++
	f.Reasons[v.Reason.String()]++
}

// account returns the per-account counts of login (nil beyond
// maxTracked distinct accounts).
func (r *Runner) account(login string) *Account {
	if c := r.accounts[login]; c != nil {
		return c
	}
	if len(r.accounts) >= maxTracked {
		r.rep.Attackers.Untracked++
		return nil
	}
	c := &Account{Login: login}
	r.accounts[login] = c
	return c
}

func (r *Runner) ban(b *abuse.Ban, now time.Time) {
	bs := &r.rep.Bans
	bs.Total++
	r.banReas[b.Reason]++
	if b.Kind == abuse.BanLogin {
		bs.Logins++
	} else {
		bs.Addresses++
	}
	if len(bs.List) >= r.opt.MaxList {
		bs.Truncated++
		return
	}
	e := BanEntry{Time: now, ID: b.ID, Kind: b.Kind.String(), Target: b.Target(), Reason: b.Reason}
	if !b.Expires.IsZero() {
		d := b.Expires.Sub(now)
		e.Seconds = int64(d / time.Second)
		e.Length = d.String()
		exp := b.Expires
		e.Until = &exp
	}
	bs.List = append(bs.List, e)
}

func (r *Runner) permit(p *relay.Permit, o relay.Outcome, now time.Time) {
	ps := &r.rep.Permits
	switch o {
	case relay.Granted:
		ps.Granted++
		if len(ps.List) >= r.opt.MaxList {
			ps.Truncated++
			return
		}
		ps.List = append(ps.List, PermitEntry{Time: now, Network: p.Prefix.String(), Login: p.Login, Service: p.Service.String(), Until: p.Expires})
	case relay.Refreshed:
		ps.Refreshed++
	case relay.SharedRefused:
		ps.SharedRefused++
	case relay.NeverNetwork:
		ps.NeverNetwork++
	}
}

// Report returns the report of what was fed so far. The runner keeps
// its state: more events may follow.
func (r *Runner) Report() *Report {
	rep := r.rep // a copy; the lists are cloned below
	rep.Permits.Enabled = r.s.Permits != nil
	rep.Verdicts = map[string]int64{}
	for i, n := range r.verdicts {
		rep.Verdicts[policy.Action(i).String()] = n
	}
	rep.Reasons = map[string]int64{}
	for k, n := range r.reasons {
		rep.Reasons[k.String()] = n
	}
	rep.Bans.ByReason = map[string]int64{}
	for k, n := range r.banReas {
		rep.Bans.ByReason[k] = n
	}

	refs := make([]*Refusal, 0, len(r.refused))
	logins := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for _, f := range r.refused {
		refs = append(refs, f)
		logins[f.Login] = true
		addrs[f.Address] = true
	}
	slices.SortFunc(refs, func(a, b *Refusal) int {
		return cmp.Or(a.First.Compare(b.First), cmp.Compare(a.Login, b.Login), a.Address.Compare(b.Address))
	})
	rep.Legitimate.Logins, rep.Legitimate.Addresses = len(logins), len(addrs)
	rep.Legitimate.Truncated = max(0, len(refs)-r.opt.MaxList)
	rep.Legitimate.List = make([]Refusal, 0, min(len(refs), r.opt.MaxList))
	for _, f := range refs[:min(len(refs), r.opt.MaxList)] {
		rep.Legitimate.List = append(rep.Legitimate.List, *f)
	}

	accs := make([]*Account, 0, len(r.accounts))
	for _, c := range r.accounts {
		if c.Reached > 0 {
			accs = append(accs, c)
		}
		rep.Attackers.MaxPerAccount = max(rep.Attackers.MaxPerAccount, c.Reached)
	}
	slices.SortFunc(accs, func(a, b *Account) int {
		return cmp.Or(cmp.Compare(b.Reached, a.Reached), cmp.Compare(a.Login, b.Login))
	})
	rep.Attackers.Accounts = len(accs)
	rep.Attackers.Truncated = max(0, len(accs)-r.opt.MaxList)
	rep.Attackers.List = make([]Account, 0, min(len(accs), r.opt.MaxList))
	for _, c := range accs[:min(len(accs), r.opt.MaxList)] {
		rep.Attackers.List = append(rep.Attackers.List, *c)
	}

	rep.UnderAttack.List = make([]*Period, len(r.rep.UnderAttack.List))
	for i, p := range r.rep.UnderAttack.List {
		c := *p
		rep.UnderAttack.List[i] = &c
	}
	rep.Bans.List = slices.Clone(r.rep.Bans.List)
	rep.Permits.List = slices.Clone(r.rep.Permits.List)
	if rep.Bans.List == nil {
		rep.Bans.List = []BanEntry{}
	}
	if rep.Permits.List == nil {
		rep.Permits.List = []PermitEntry{}
	}
	return &rep
}

// GuessesOn returns how many attackers' attempts on login reached a
// password check.
func (r *Runner) GuessesOn(login string) int64 {
	if c := r.accounts[rules.NormalizeLogin(login)]; c != nil {
		return c.Reached
	}
	return 0
}

// Package policy is mailgate's decision engine: an Attempt goes in, a
// Verdict comes out. It orders the checks (trusted networks, global deny
// list, per-account rules), says which rule decided and why, and renders
// the decision log line.
//
// It is pure: time is an argument, and a decision touches only memory.
// It is not a door (internal/dovecot and friends parse the wire), nor a
// store (rule changes reach its index through the caller).
package policy

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/rules"
)

// Engine decides attempts against an index of rules and, when set up
// with WithAbuse, the brute-force tracker's bans and counters.
type Engine struct {
	idx   *rules.Index
	abuse *abuse.Tracker // nil: no bans

	// set is swapped whole by the setters (a reload); a decision loads
	// it once, so it sees one consistent version without a lock.
	set atomic.Pointer[Settings]

	// pwDigest, when set, turns a door's password hash into the form
	// other nodes publish (WithPwDigest); nil: PwHash is used as is.
	pwDigest func(string) string
}

// Settings are the engine's run-time settings: what a reload may change.
// A Settings value is never modified once the engine holds it.
type Settings struct {
	Messages Messages // complete: New and SetMessages fill in DefaultMessages

	Geo       CountryLookup // nil: no GeoIP
	Countries CountryPolicy

	Count       bool // feed reported results to the tracker
	LoginTarpit time.Duration
	StaleTarpit time.Duration

	DNSBL DNSBLPolicy // Threshold 0: off
}

// WithAbuse makes the engine consult t's bans on every decision and, when
// count is set, feed reported login results to t. A banned login's
// attempts wait loginTarpit and are then refused; a stale client's wait
// staleTarpit. Call it while wiring, before the engine is used.
func (e *Engine) WithAbuse(t *abuse.Tracker, count bool, loginTarpit, staleTarpit time.Duration) *Engine {
	e.abuse = t
	e.SetAbuse(count, loginTarpit, staleTarpit)
	return e
}

// WithPwDigest makes the engine hand the tracker digest(PwHash) instead
// of a door's PwHash, in decisions and reports alike, so that a password
// tried here and the same password another node saw (published as its
// digest, Attempt.PwDigested) are one password to the tracker: the same
// wrong password counts once across the nodes, and a stale client is
// told from a guesser. Call it while wiring, before the engine is used.
func (e *Engine) WithPwDigest(digest func(string) string) *Engine {
	e.pwDigest = digest
	return e
}

// pwHash is the password hash the tracker gets for a.
func (e *Engine) pwHash(a *Attempt) string {
	if e.pwDigest == nil || a.PwDigested || a.PwHash == "" {
		return a.PwHash
	}
	return e.pwDigest(a.PwHash)
}

// New returns an engine over idx. msgs are the user-visible refusal texts;
// reasons missing from it fall back to DefaultMessages.
func New(idx *rules.Index, msgs Messages) *Engine {
	e := &Engine{idx: idx}
	e.set.Store(&Settings{Messages: fullMessages(msgs)})
	return e
}

func fullMessages(msgs Messages) Messages {
	m := DefaultMessages()
	for k, v := range msgs {
		m[k] = v
	}
	return m
}

// Settings returns the engine's current settings (not to be modified).
func (e *Engine) Settings() *Settings { return e.set.Load() }

// update swaps in a copy of the settings changed by f. Setters may run
// concurrently with decisions and with each other.
func (e *Engine) update(f func(s *Settings)) {
	for {
		old := e.set.Load()
		s := *old
		f(&s)
		if e.set.CompareAndSwap(old, &s) {
			return
		}
	}
}

// SetMessages replaces the refusal texts; reasons missing from msgs fall
// back to DefaultMessages.
func (e *Engine) SetMessages(msgs Messages) {
	m := fullMessages(msgs)
	e.update(func(s *Settings) { s.Messages = m })
}

// SetAbuse changes whether reported results are counted and the tarpits
// of banned logins and stale clients. The tracker is WithAbuse's.
func (e *Engine) SetAbuse(count bool, loginTarpit, staleTarpit time.Duration) {
	e.update(func(s *Settings) { s.Count, s.LoginTarpit, s.StaleTarpit = count, loginTarpit, staleTarpit })
}

// Index returns the engine's rule index, for the caller to keep in step
// with the store.
func (e *Engine) Index() *rules.Index { return e.idx }

// Decide returns the verdict for a. When tr is not nil every check is
// recorded in it; with a nil tr Decide does not allocate.
//
// The order (DESIGN.md §2): trusted networks allow; the global deny list
// denies; then the account's rules, most specific level first (the exact
// login, then "@domain", then "*"): the first level with an applicable
// allow list or a matching deny rule decides. A level whose only rules
// for the service are deny rules that do not match passes the attempt on.
// Then the global country list, unless an account rule allowed the
// country or an extra rule makes an exception; then bans; then the DNS
// blocklists' score (a.DNSBL, which the door filled in).
//
// With a GeoIP lookup set (WithCountries), Decide records the client's
// country in a.Country.
func (e *Engine) Decide(a *Attempt, now time.Time, tr *Trace) Verdict {
	v, decided := e.decideRules(a, now, tr)
	if decided {
		return v
	}
	knownGood := false
	if e.abuse != nil {
		if v, decided, knownGood = e.decideAbuse(a, now, tr, v); decided {
			return v
		}
	}
	return e.decideDNSBL(a, tr, v, knownGood)
}

// decideRules runs the rule checks. decided is false when no rule settled
// the attempt, so automatic bans may still refuse it: explicit allows
// beat bans, bans beat implicit allows (DESIGN.md §2). An allow by country
// is not explicit (a country is not a trusted place): the verdict is then
// the account's allow, but decided is false.
func (e *Engine) decideRules(a *Attempt, now time.Time, tr *Trace) (v Verdict, decided bool) {
	set := e.set.Load()
	cc, kind := set.country(a)
	if set.Geo != nil {
		tr.add("country", a.Country, 0, "")
	}
	if !a.Client.IsValid() {
		tr.add("client address", "invalid", 0, "the door gave no usable client address")
		return Verdict{Action: Deny, Reason: ReasonBadAddress}, true
	}

	trusted, deny := e.idx.Global(a.Service, a.Client, now)
	if trusted.Found {
		tr.add("trusted networks", "match", trusted.ID, trusted.Match.String()+source(trusted))
		return Verdict{Action: Allow, Reason: ReasonTrusted, RuleID: trusted.ID, Match: trusted.Match, Source: sourceName(trusted)}, true
	}
	tr.add("trusted networks", "no match", 0, "")
	if deny.Found {
		tr.add("global deny list", "match", deny.ID, deny.Match.String()+source(deny))
		return Verdict{Action: Deny, Reason: ReasonGlobalDeny, RuleID: deny.ID, Match: deny.Match, Source: sourceName(deny)}, true
	}
	tr.add("global deny list", "no match", 0, "")

	if a.Login == "" {
		tr.add("account rules", "skipped", 0, "no login given")
		return Verdict{Action: Allow, Reason: ReasonDefault}, false
	}
	var extra rules.Hit
	domain := ""
	if i := strings.LastIndexByte(a.Login, '@'); i >= 0 {
		domain = a.Login[i+1:]
	}
	for kind := rules.LevelLogin; kind <= rules.LevelAny; kind++ {
		key := a.Login
		switch kind {
		case rules.LevelDomain:
			if domain == "" {
				continue
			}
			key = domain
		case rules.LevelAny:
			key = ""
		}
		r := e.idx.Level(kind, key, a.Service, a.Client, cc, now)
		if tr != nil {
			tr.add("account rules of "+levelName(kind, key), r.Outcome.String(), r.Hit.ID, levelDetail(r))
		}
		if r.Extra.Found && !extra.Found {
			extra = r.Extra
		}
		if !r.Outcome.Decides() {
			continue
		}
		v := Verdict{Action: Deny, RuleID: r.Hit.ID, Match: r.Hit.Match, Country: r.Hit.Country, Level: kind, LevelKey: key}
		switch r.Outcome {
		case rules.Allowed:
			v.Action, v.Reason = Allow, ReasonAccountAllow
			if r.Hit.Country != "" {
				// The account's own country list replaces the global one;
				// bans still apply.
				if tr != nil {
					tr.add("global country list", "skipped", 0, "the account's own country rule allows "+r.Hit.Country)
				}
				return v, false
			}
		case rules.Denied:
			v.Reason = ReasonAccountDeny
		case rules.NotListed:
			v.Reason = ReasonNotInAllowlist
		case rules.Closed:
			v.Reason = ReasonServiceClosed
		}
		return v, true
	}
	if countries := &set.Countries; set.Geo != nil && countries.active() {
		blocked := countries.blocks(cc, kind)
		switch {
		case blocked && extra.Found:
			if tr != nil {
				tr.add("global country list", "exception", extra.ID, countries.why(cc, kind)+"; the account's extra rule "+extraDetail(extra)+" lets it in")
			}
		case blocked:
			if tr != nil {
				tr.add("global country list", "blocked", 0, countries.why(cc, kind))
			}
			return Verdict{Action: Deny, Reason: ReasonCountryBlocked, Source: "config"}, true
		default:
			if tr != nil {
				tr.add("global country list", "passed", 0, countries.why(cc, kind))
			}
		}
	}
	return Verdict{Action: Allow, Reason: ReasonDefault}, false
}

func extraDetail(h rules.Hit) string {
	if h.Country != "" {
		return "(country " + h.Country + ")"
	}
	return "(" + h.Match.String() + ")"
}

// decideAbuse checks the bans and the stale-client state for an attempt
// no rule settled; pass is the verdict when none applies (decided false).
// knownGood says whether (login, address) is a known-good pair.
func (e *Engine) decideAbuse(a *Attempt, now time.Time, tr *Trace, pass Verdict) (_ Verdict, decided, knownGood bool) {
	st := e.abuse.Check(a.Login, a.Client, e.pwHash(a), now)
	if st.AddrBan.Found {
		if tr != nil {
			tr.add("address bans", "banned", 0, banDetail(st.AddrBan, now))
		}
		return Verdict{Action: Deny, Reason: ReasonBannedAddress, BanID: st.AddrBan.ID, Match: st.AddrBan.Prefix}, true, st.KnownGood
	}
	tr.add("address bans", "not banned", 0, "")
	if st.LoginBan.Found {
		// Known-good addresses get past a ban made because of attacks
		// from elsewhere; a ban the admin made by hand holds for every
		// address (the account may be in an attacker's hands).
		if st.KnownGood && st.LoginBan.Reason != abuse.ReasonManual {
			if tr != nil {
				tr.add("login bans", "banned, but known good", 0, banDetail(st.LoginBan, now)+"; this address logged in to the account before, so it keeps working")
			}
		} else {
			if tr != nil {
				tr.add("login bans", "banned", 0, banDetail(st.LoginBan, now))
			}
			return Verdict{Action: Deny, Reason: ReasonBannedLogin, BanID: st.LoginBan.ID, Delay: e.set.Load().LoginTarpit}, true, st.KnownGood
		}
	} else {
		tr.add("login bans", "not banned", 0, "")
	}
	if st.UnderAttack && a.Login != "" {
		switch {
		case st.KnownGood:
			tr.add("under attack", "known good", 0, "the server is under attack; this address logged in to the account before")
		case a.Country != "" && e.abuse.UsualCountry(a.Login, a.Country, now):
			if tr != nil {
				tr.add("under attack", "usual country", 0, "the server is under attack; the account logged in from "+a.Country+" before")
			}
		default:
			tr.add("under attack", "new place", 0, "the server is under attack, and neither this address nor its country is one the account logged in from: refused until the attack is over (mailgate attack end lifts it)")
			return Verdict{Action: Deny, Reason: ReasonUnderAttack}, true, st.KnownGood
		}
	}
	if st.Stale {
		tr.add("stale password", "stale", 0, "this address keeps failing with the same password: tarpitted, never banned")
		return Verdict{Action: Tarpit, Reason: ReasonStalePassword, Delay: e.set.Load().StaleTarpit}, true, st.KnownGood
	}
	tr.add("stale password", "no", 0, "")
	return pass, false, st.KnownGood
}

func banDetail(b abuse.BanRef, now time.Time) string {
	d := "ban " + strconv.FormatInt(b.ID, 10) + " (" + b.Reason + ")"
	if !b.Expires.IsZero() {
		d += ", " + b.Expires.Sub(now).Round(time.Second).String() + " left"
	}
	return d
}

// Report takes a login result a door reported and feeds it to the
// brute-force tracker, unless the attempt is exempt: a trusted address,
// or an address the account's own allow rule names. It returns the bans
// the result created, for the caller to persist and log.
func (e *Engine) Report(a *Attempt, success bool, now time.Time) []abuse.Ban {
	if e.abuse == nil || !e.set.Load().Count || !a.Client.IsValid() {
		return nil
	}
	if v, explicit := e.decideRules(a, now, nil); explicit && (v.Reason == ReasonTrusted || v.Reason == ReasonAccountAllow) {
		return nil
	}
	cc, _ := e.set.Load().country(a)
	return e.abuse.Record(abuse.Event{Login: a.Login, Addr: a.Client, PwHash: e.pwHash(a), Success: success, Country: cc}, now)
}

// Counters returns the brute-force counters behind an attempt, for
// explanations; ok is false without a tracker.
func (e *Engine) Counters(a *Attempt, now time.Time) (c abuse.Counters, ok bool) {
	if e.abuse == nil {
		return c, false
	}
	return e.abuse.Counters(a.Login, a.Client, now), true
}

// Message is the text the mail user sees for a refusal ("" for allow).
func (e *Engine) Message(a *Attempt, v *Verdict) string {
	if v.Action != Deny {
		return ""
	}
	return e.set.Load().Messages.Message(a, v)
}

// LevelName is the account level whose rules decided the verdict: the
// login, "@domain" or "*"; "" for a verdict not made by account rules.
func (v *Verdict) LevelName() string {
	switch v.Reason {
	case ReasonAccountAllow, ReasonAccountDeny, ReasonNotInAllowlist, ReasonServiceClosed:
		return levelName(v.Level, v.LevelKey)
	}
	return ""
}

func levelName(kind rules.LevelKind, key string) string {
	switch kind {
	case rules.LevelDomain:
		return "@" + key
	case rules.LevelAny:
		return "*"
	}
	return key
}

func levelDetail(r rules.LevelResult) string {
	switch r.Outcome {
	case rules.NoRules:
		return ""
	case rules.Allowed, rules.Denied:
		if r.Hit.Country != "" {
			return "matched country " + r.Hit.Country
		}
		return "matched " + r.Hit.Match.String()
	case rules.Closed:
		return "allow none: the service is closed"
	case rules.NotListed:
		return "the address is not in the allow list"
	}
	return "deny rules exist, none matches; next level decides"
}

func source(h rules.Hit) string {
	if h.Config {
		return " (config file)"
	}
	return ""
}

func sourceName(h rules.Hit) string {
	if h.Config {
		return "config"
	}
	return ""
}

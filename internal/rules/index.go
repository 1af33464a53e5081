package rules

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/gaissmai/bart"
)

// smallMax is how many rules a list keeps in a plain slice, scanned on
// lookup; past it the list moves its rules into prefix tables. Almost
// every account has a handful of rules; "*", big domains and the global
// lists can have millions.
const smallMax = 16

// Index holds every active rule in memory, keyed for lookups that neither
// scan nor allocate: per login, per domain, for "*", and the global lists.
// It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	global  ruleList
	logins  map[string]*ruleList
	domains map[string]*ruleList // keyed without the '@'
	any     ruleList
	n       int
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{logins: map[string]*ruleList{}, domains: map[string]*ruleList{}}
}

// Hit is the rule that matched a lookup.
type Hit struct {
	Found bool
	ID    int64
	Match netip.Prefix // invalid for a "none" rule or a country rule
	// Country is the client's country when a country rule matched.
	Country string
	Config  bool // the rule came from the config file
}

// Outcome is what one account level says about an attempt.
type Outcome uint8

const (
	NoRules   Outcome = iota // the level has no rule for the service
	NoMatch                  // the level has only deny rules for the service, none matching
	Allowed                  // an allow rule matched
	Denied                   // a deny rule matched
	NotListed                // allow rules exist for the service; none matched
	Closed                   // the only allow rules for the service are "none"
)

func (o Outcome) String() string {
	return [...]string{"no rules", "no match", "allowed", "denied", "not listed", "closed"}[o]
}

// Decides reports whether the level settles the attempt; NoRules and
// NoMatch pass it on to the next, less specific level.
func (o Outcome) Decides() bool { return o >= Allowed }

// LevelResult is an account level's answer.
type LevelResult struct {
	Outcome Outcome
	Hit     Hit
	Rules   int // allow and deny rules of this level that apply to the service
	// Extra is the level's extra rule (an exception to the global country
	// lists) that matches the attempt, whatever the outcome.
	Extra Hit
}

// LevelKind names the account levels, most specific first.
type LevelKind uint8

const (
	LevelLogin  LevelKind = iota // an exact login
	LevelDomain                  // "@domain"
	LevelAny                     // "*"
)

// Len returns the number of rules in the index.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.n
}

// Add puts a validated rule into the index.
func (x *Index) Add(r *Rule) {
	e := newEntry(r)
	x.mu.Lock()
	defer x.mu.Unlock()
	x.listLocked(r, true).add(e)
	x.n++
}

// Replace empties the index and adds rs, which must be validated.
func (x *Index) Replace(rs []Rule) {
	fresh := NewIndex()
	for i := range rs {
		fresh.listLocked(&rs[i], true).add(newEntry(&rs[i]))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.global, x.logins, x.domains, x.any, x.n = fresh.global, fresh.logins, fresh.domains, fresh.any, len(rs)
}

// Remove takes the rule with r's id (and r's scope, account, service,
// action and match) out of the index. It reports whether it was there.
func (x *Index) Remove(r *Rule) bool {
	e := newEntry(r)
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.listLocked(r, false)
	if l == nil || !l.remove(e) {
		return false
	}
	x.n--
	if l.len() == 0 && r.Scope == ScopeAccount {
		switch {
		case r.Account == "*":
		case r.Account[0] == '@':
			delete(x.domains, r.Account[1:])
		default:
			delete(x.logins, r.Account)
		}
	}
	return true
}

func (x *Index) listLocked(r *Rule, create bool) *ruleList {
	if r.Scope == ScopeGlobal {
		return &x.global
	}
	if r.Account == "*" {
		return &x.any
	}
	m, key := x.logins, r.Account
	if r.Account[0] == '@' {
		m, key = x.domains, r.Account[1:]
	}
	l := m[key]
	if l == nil && create {
		l = &ruleList{}
		m[key] = l
	}
	return l
}

// Global looks addr up in the trusted networks (allow) and the global deny
// list for service svc.
func (x *Index) Global(svc Service, addr netip.Addr, now time.Time) (trusted, deny Hit) {
	t := now.UnixNano()
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.global.lookup(svc, addr, t, Allow), x.global.lookup(svc, addr, t, Deny)
}

// Level evaluates one account level for an attempt: key is the normalized
// login for LevelLogin, the domain without '@' for LevelDomain, ignored for
// LevelAny; cc is the client's country code ("" when unknown), which
// country rules match. Within a level a matching deny rule beats a
// matching allow rule, and an address rule beats a country rule; allow
// rules for the service make the level an allow list. Extra rules never
// decide; a matching one is returned in LevelResult.Extra.
func (x *Index) Level(kind LevelKind, key string, svc Service, addr netip.Addr, cc string, now time.Time) LevelResult {
	t := now.UnixNano()
	x.mu.RLock()
	defer x.mu.RUnlock()
	var l *ruleList
	switch kind {
	case LevelLogin:
		l = x.logins[key]
	case LevelDomain:
		l = x.domains[key]
	default:
		l = &x.any
	}
	if l == nil {
		return LevelResult{}
	}
	var res LevelResult
	if l.extras > 0 {
		res.Extra = l.find(svc, addr, cc, t, Extra)
	}
	n := l.applicable(svc, t)
	res.Rules = n.all
	switch {
	case n.all == 0:
		res.Rules = 0
	case l.find2(svc, addr, cc, t, Deny, &res.Hit):
		res.Outcome = Denied
	case l.find2(svc, addr, cc, t, Allow, &res.Hit):
		res.Outcome = Allowed
	case n.allow == 0:
		res.Outcome = NoMatch
	case n.allow == n.none:
		res.Outcome, res.Hit = Closed, Hit{Found: true, ID: n.noneID}
	default:
		res.Outcome = NotListed
	}
	return res
}

// find returns the rule with action act that matches addr, or else one
// that matches the country cc.
func (l *ruleList) find(svc Service, addr netip.Addr, cc string, now int64, act Action) Hit {
	if h := l.lookup(svc, addr, now, act); h.Found {
		return h
	}
	return l.countryLookup(svc, cc, now, act)
}

func (l *ruleList) find2(svc Service, addr netip.Addr, cc string, now int64, act Action, h *Hit) bool {
	*h = l.find(svc, addr, cc, now, act)
	return h.Found
}

// countryLookup returns the first live country rule with action act that
// applies to svc and lists cc.
func (l *ruleList) countryLookup(svc Service, cc string, now int64, act Action) Hit {
	if cc == "" {
		return Hit{}
	}
	for i := range l.cc {
		e := &l.cc[i]
		if e.action == act && e.svc.covers(svc) && e.live(now) && countriesContain(e.cc, cc) {
			h := e.hit()
			h.Country = cc
			return h
		}
	}
	return Hit{}
}

// entry is the compact form of a rule kept in the index.
type entry struct {
	match   netip.Prefix // invalid for "none" and country rules
	cc      string       // a country rule's countries, "AT,DE"
	id      int64
	expires int64 // unix nanoseconds; 0 never
	svc     Service
	action  Action
	config  bool
}

func newEntry(r *Rule) entry {
	e := entry{match: r.Match, cc: r.Countries, id: r.ID, svc: r.Service, action: r.Action, config: r.Source == "config"}
	if !r.Expires.IsZero() {
		e.expires = r.Expires.UnixNano()
	}
	return e
}

func (e *entry) live(now int64) bool { return e.expires == 0 || now < e.expires }

func (e *entry) hit() Hit { return Hit{Found: true, ID: e.id, Match: e.match, Config: e.config} }

func (e *entry) same(o *entry) bool {
	return e.id == o.id && e.match == o.match && e.cc == o.cc && e.svc == o.svc && e.action == o.action && e.config == o.config
}

// ruleList is the rules of one account level (or the global lists): the
// address rules in a slice while small, in prefix tables per service and
// action once large; country rules, which are few, always in a slice.
type ruleList struct {
	small  []entry
	big    *tables
	cc     []entry // country rules
	extras int     // extra rules, address and country
}

// tables index a large list by the rule's service and action.
type tables struct {
	n     int
	slots [OtherService][numActions]slot // [rule service][action-1]
}

type slot struct {
	t     bart.Table[[]entry]
	n     int     // entries, "none" included
	nones []entry // allow "none" entries, which have no prefix
}

func (l *ruleList) len() int {
	if l.big != nil {
		return l.big.n + len(l.cc)
	}
	return len(l.small) + len(l.cc)
}

func (l *ruleList) add(e entry) {
	if e.action == Extra {
		l.extras++
	}
	if e.cc != "" {
		l.cc = append(l.cc, e)
		return
	}
	if l.big == nil {
		l.small = append(l.small, e)
		if len(l.small) <= smallMax {
			return
		}
		l.big = &tables{}
		for _, e := range l.small {
			l.big.add(e)
		}
		l.small = nil
		return
	}
	l.big.add(e)
}

func (l *ruleList) remove(e entry) bool {
	if !l.removeEntry(e) {
		return false
	}
	if e.action == Extra {
		l.extras--
	}
	return true
}

func (l *ruleList) removeEntry(e entry) bool {
	if e.cc != "" {
		return deleteSame(&l.cc, e)
	}
	if l.big != nil {
		return l.big.remove(e)
	}
	return deleteSame(&l.small, e)
}

func deleteSame(es *[]entry, e entry) bool {
	for i := range *es {
		if (*es)[i].same(&e) {
			*es = slices.Delete(*es, i, i+1)
			return true
		}
	}
	return false
}

type counts struct {
	all, allow, none int
	noneID           int64
}

// applicable counts the live rules that apply to svc. For large lists
// expiry is not looked at here (the daemon removes expired rules every
// second); lookups themselves always honour it.
func (l *ruleList) applicable(svc Service, now int64) counts {
	var c counts
	for i := range l.cc {
		e := &l.cc[i]
		if e.action == Extra || !e.svc.covers(svc) || !e.live(now) {
			continue
		}
		c.all++
		if e.action == Allow {
			c.allow++
		}
	}
	if l.big != nil {
		for rs := range l.big.slots {
			if !Service(rs).covers(svc) {
				continue
			}
			a, d := &l.big.slots[rs][Allow-1], &l.big.slots[rs][Deny-1]
			c.all += a.n + d.n
			c.allow += a.n
			c.none += len(a.nones)
			if len(a.nones) > 0 && c.noneID == 0 {
				c.noneID = a.nones[0].id
			}
		}
		return c
	}
	for i := range l.small {
		e := &l.small[i]
		if e.action == Extra || !e.svc.covers(svc) || !e.live(now) {
			continue
		}
		c.all++
		if e.action == Allow {
			c.allow++
			if !e.match.IsValid() {
				c.none++
				if c.noneID == 0 {
					c.noneID = e.id
				}
			}
		}
	}
	return c
}

// lookup returns the most specific live rule with action act that applies
// to svc and contains addr.
func (l *ruleList) lookup(svc Service, addr netip.Addr, now int64, act Action) Hit {
	if !addr.IsValid() {
		return Hit{}
	}
	var best *entry
	if l.big != nil {
		for rs := range l.big.slots {
			if !Service(rs).covers(svc) {
				continue
			}
			if e := l.big.slots[rs][act-1].lookup(addr, now); e != nil && (best == nil || e.match.Bits() > best.match.Bits()) {
				best = e
			}
		}
	} else {
		for i := range l.small {
			e := &l.small[i]
			if e.action != act || !e.svc.covers(svc) || !e.match.IsValid() || !e.live(now) || !e.match.Contains(addr) {
				continue
			}
			if best == nil || e.match.Bits() > best.match.Bits() {
				best = e
			}
		}
	}
	if best == nil {
		return Hit{}
	}
	return best.hit()
}

func (t *tables) add(e entry) {
	s := &t.slots[e.svc][e.action-1]
	t.n++
	s.n++
	if !e.match.IsValid() {
		s.nones = append(s.nones, e)
		return
	}
	s.t.Modify(e.match, func(es []entry, _ bool) ([]entry, bool) {
		return append(es, e), false
	})
}

func (t *tables) remove(e entry) bool {
	s := &t.slots[e.svc][e.action-1]
	same := func(o entry) bool { return e.same(&o) }
	found := false
	if !e.match.IsValid() {
		if i := slices.IndexFunc(s.nones, same); i >= 0 {
			s.nones = slices.Delete(s.nones, i, i+1)
			found = true
		}
	} else {
		s.t.Modify(e.match, func(es []entry, ok bool) ([]entry, bool) {
			i := slices.IndexFunc(es, same)
			if i < 0 {
				return es, !ok
			}
			found = true
			es = slices.Delete(es, i, i+1)
			return es, len(es) == 0
		})
	}
	if found {
		t.n--
		s.n--
	}
	return found
}

// lookup finds the longest live prefix containing addr. The fast path is
// one table lookup; only when every rule at that prefix has expired (and
// not yet been swept) does it walk the covering prefixes.
func (s *slot) lookup(addr netip.Addr, now int64) *entry {
	if s.n == len(s.nones) {
		return nil
	}
	es, ok := s.t.Lookup(addr)
	if !ok {
		return nil
	}
	for i := range es {
		if es[i].live(now) {
			return &es[i]
		}
	}
	var best *entry
	for _, es := range s.t.Supernets(netip.PrefixFrom(addr, addr.BitLen())) {
		for i := range es {
			if es[i].live(now) && (best == nil || es[i].match.Bits() > best.match.Bits()) {
				best = &es[i]
			}
		}
	}
	return best
}

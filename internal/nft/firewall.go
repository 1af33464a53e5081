package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"golang.org/x/sys/unix"
)

// Conn is the part of *nftables.Conn a Firewall uses. Pass a
// *nftables.Conn (nftables.New(), or nftables.WithNetNSFd for a network
// namespace, or nftables.WithTestDial in tests), or wrap one. Writes are
// buffered in the Conn until Flush sends them as one transaction, so a
// Conn must not be shared with anything else.
type Conn interface {
	AddTable(t *nftables.Table) *nftables.Table
	AddChain(c *nftables.Chain) *nftables.Chain
	DelChain(c *nftables.Chain)
	FlushChain(c *nftables.Chain)
	AddSet(s *nftables.Set, vals []nftables.SetElement) error
	AddRule(r *nftables.Rule) *nftables.Rule
	SetAddElements(s *nftables.Set, vals []nftables.SetElement) error
	SetDeleteElements(s *nftables.Set, vals []nftables.SetElement) error
	Flush() error

	ListTableOfFamily(name string, family nftables.TableFamily) (*nftables.Table, error)
	ListChainsOfTableFamily(family nftables.TableFamily) ([]*nftables.Chain, error)
	GetSets(t *nftables.Table) ([]*nftables.Set, error)
	GetSetElements(s *nftables.Set) ([]nftables.SetElement, error)
	GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error)
}

// Firewall keeps table inet mailgate in the kernel. Its methods are safe
// for concurrent use; they serialize on one lock, and each writes at most
// one netlink transaction (two when the first fails and is retried after
// reading the kernel again).
type Firewall struct {
	cfg   Config
	conn  Conn
	log   *slog.Logger
	table *nftables.Table

	mu sync.Mutex
	// want is mailgate's state as last given to Apply, Sync and the
	// incremental calls.
	want *desired
	// mirror is what the kernel holds in the owned sets as of the last
	// successful write; nil until then. The incremental calls diff
	// against it instead of reading the kernel; if it is wrong (someone
	// deleted an element by hand) the transaction fails and they fall
	// back to reading the kernel.
	mirror map[string]map[elemID]element
	// batchSets are the sets created in the transaction being built,
	// whose transaction IDs the rules and elements must name.
	batchSets map[string]*nftables.Set
}

// New returns a Firewall for cfg writing through conn. It touches nothing
// until Apply.
func New(cfg Config, conn Conn, log *slog.Logger) (*Firewall, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("firewall config: %w", err)
	}
	if conn == nil {
		return nil, errors.New("firewall: no netlink connection")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.TrustedNets = slices.Clone(cfg.TrustedNets)
	return &Firewall{cfg: cfg, conn: conn, log: log, table: table(), want: newDesired()}, nil
}

// SetConfig replaces the configuration (a reload); the next Apply writes
// the rules and the chain it renders, into the same table and sets. An
// invalid cfg is refused, nothing changed.
func (f *Firewall) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.TrustedNets = slices.Clone(cfg.TrustedNets)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg = cfg
	return nil
}

// Apply makes table inet mailgate hold the sets and the input chain of the
// configured mode and the elements of st, in one transaction: the table,
// the chain and missing sets are created, the chain's rules are replaced,
// and the owned sets' elements are synced as Sync does. Existing sets are
// never flushed or deleted; one whose definition differs from mailgate's
// (an older layout, or made by hand) is an error, and nothing is changed.
func (f *Firewall) Apply(now time.Time, st State) (SyncResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loadLocked(st, now)
	return f.reconcileLocked(now, true)
}

// Sync re-asserts the elements of the sets mailgate owns (trusted_nets,
// trusted, banned, banned_nets) from st: it adds what is missing with its
// remaining timeout, replaces elements whose timeout is off, and deletes
// what st does not have; elements already expired at now are skipped; the
// rate and autoban sets are left to the kernel. Large changes go in
// several messages of one transaction. If the table, a set, the chain or
// a rule is missing or not mailgate's, Sync does what Apply does. If
// anything cannot be read, nothing is written: a set is never emptied
// because mailgate could not read its state.
func (f *Firewall) Sync(now time.Time, st State) (SyncResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loadLocked(st, now)
	return f.reconcileLocked(now, false)
}

func (f *Firewall) loadLocked(st State, now time.Time) {
	if n := f.want.load(st, now); n > 0 {
		f.log.Warn("firewall: skipped invalid entries in the state", "count", n)
	}
}

// AddBans puts bans in the kernel (or changes their expiry), in one
// transaction, without reading the kernel. The daemon calls it off the
// request path with the bans made since the last call. Bans already
// expired at now are ignored. With Config.Bans off it only records them.
func (f *Firewall) AddBans(now time.Time, bs []Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var touched []netip.Prefix
	for _, b := range bs {
		p, ok := normPrefix(b.Prefix)
		if !ok || expired(b.Expires, now) {
			continue
		}
		f.want.bans[p] = b.Expires
		touched = append(touched, p)
	}
	return f.changeBansLocked(now, touched)
}

// RemoveBans takes bans out of the kernel (the Expires of each is
// ignored), in one transaction.
func (f *Firewall) RemoveBans(now time.Time, bs []Ban) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var touched []netip.Prefix
	for _, b := range bs {
		p, ok := normPrefix(b.Prefix)
		if !ok {
			continue
		}
		delete(f.want.bans, p)
		touched = append(touched, p)
	}
	return f.changeBansLocked(now, touched)
}

// AddTrusted puts addresses that logged in in the trusted sets, one
// element per mail port, or extends their expiry (an expiry earlier than
// the one known is ignored), in one transaction.
func (f *Firewall) AddTrusted(now time.Time, ts []Trusted) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ports := f.cfg.mailPorts()
	var ids []elemID
	for _, t := range ts {
		a, ok := normAddr(t.Addr)
		if !ok || expired(t.Expires, now) {
			continue
		}
		if old, ok := f.want.trusted[a]; !ok || later(t.Expires, old) {
			f.want.trusted[a] = t.Expires
		}
		for _, p := range ports {
			ids = append(ids, elemID{a, a, p})
		}
	}
	if len(ids) == 0 {
		return nil
	}
	byFam := map[bool][]elemID{}
	for _, id := range ids {
		byFam[id.from.Is6()] = append(byFam[id.from.Is6()], id)
	}
	p := plan{}
	for _, v6 := range []bool{false, true} {
		if len(byFam[v6]) > 0 {
			d := defByName("trusted" + famSuffix(v6))
			p.add(d, f.diffIDsLocked(d, byFam[v6], now))
		}
	}
	return f.incrementalLocked(now, p)
}

func (f *Firewall) changeBansLocked(now time.Time, touched []netip.Prefix) error {
	if len(touched) == 0 || !f.cfg.Bans {
		return nil
	}
	singles := map[bool][]elemID{}
	nets := map[bool]bool{}
	for _, p := range touched {
		v6 := p.Addr().Is6()
		if p.IsSingleIP() {
			singles[v6] = append(singles[v6], elemID{p.Addr(), p.Addr(), 0})
		} else {
			nets[v6] = true
		}
	}
	pl := plan{}
	for _, v6 := range []bool{false, true} {
		if len(singles[v6]) > 0 {
			d := defByName("banned" + famSuffix(v6))
			pl.add(d, f.diffIDsLocked(d, singles[v6], now))
		}
		if nets[v6] && f.mirror != nil {
			d := defByName("banned_nets" + famSuffix(v6))
			del, add := diffElements(d, f.want.elements(f.cfg, d, now), f.mirrorList(d, now), now)
			pl.add(d, change{del, add})
		}
	}
	return f.incrementalLocked(now, pl)
}

func famSuffix(v6 bool) string {
	if v6 {
		return "_v6"
	}
	return "_v4"
}

func defByName(name string) setDef {
	d, ok := findDef(name)
	if !ok {
		panic("nft: no set " + name) // a typo in this package
	}
	return d
}

// change is what to delete from and add to one set.
type change struct {
	del, add []element
}

// plan is the element changes of one transaction, per set.
type plan map[setDef]change

func (p plan) add(d setDef, c change) {
	if len(c.del) == 0 && len(c.add) == 0 {
		return
	}
	old := p[d]
	p[d] = change{append(old.del, c.del...), append(old.add, c.add...)}
}

// diffIDsLocked diffs the given elements of an address set against the
// mirror.
func (f *Firewall) diffIDsLocked(d setDef, ids []elemID, now time.Time) change {
	if f.mirror == nil {
		return change{}
	}
	var want, have []element
	seen := map[elemID]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if w, ok := f.wantElem(d, id, now); ok {
			want = append(want, w)
		}
		if h, ok := f.mirror[d.name][id]; ok && !expired(h.expires, now) {
			have = append(have, h)
		}
	}
	slices.SortFunc(want, compareElements)
	slices.SortFunc(have, compareElements)
	del, add := diffElements(d, want, have, now)
	return change{del, add}
}

// wantElem is the element set d should hold for id, if any.
func (f *Firewall) wantElem(d setDef, id elemID, now time.Time) (element, bool) {
	var exp time.Time
	var ok bool
	switch d.kind {
	case kindAddr:
		if f.cfg.Bans {
			exp, ok = f.want.bans[netip.PrefixFrom(id.from, id.from.BitLen())]
		}
	case kindAddrPort:
		exp, ok = f.want.trusted[id.from]
		ok = ok && slices.Contains(f.cfg.mailPorts(), id.port)
	}
	if !ok || expired(exp, now) {
		return element{}, false
	}
	return element{from: id.from, to: id.to, port: id.port, expires: exp}, true
}

func (f *Firewall) mirrorList(d setDef, now time.Time) []element {
	var out []element
	for _, e := range f.mirror[d.name] {
		if !expired(e.expires, now) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, compareElements)
	return out
}

// incrementalLocked writes p, diffed against the mirror; if there is no
// mirror yet, or the transaction fails (the mirror was wrong), it reads
// the kernel and syncs instead.
func (f *Firewall) incrementalLocked(now time.Time, p plan) error {
	if f.mirror == nil {
		_, err := f.reconcileLocked(now, false)
		return err
	}
	if len(p) == 0 {
		return nil
	}
	err := f.writeLocked(now, func() {}, p)
	if err == nil {
		f.updateMirror(now, p)
		return nil
	}
	f.log.Warn("firewall: incremental change failed, reading the kernel and syncing", "err", err)
	_, err = f.reconcileLocked(now, false)
	return err
}

// writeLocked queues structure (table, sets, chain, rules) then the
// element changes of p, deletions first, and flushes them as one
// transaction. A failure while queueing leaves an error in the Conn,
// which Flush returns without sending anything.
func (f *Firewall) writeLocked(now time.Time, structure func(), p plan) error {
	structure()
	defs := make([]setDef, 0, len(p))
	for d := range p {
		defs = append(defs, d)
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].name < defs[j].name })
	for _, d := range defs {
		if del := p[d].del; len(del) > 0 {
			var kes []nftables.SetElement
			for _, e := range del {
				for _, ke := range d.encode(e, now) {
					ke.Timeout = 0
					kes = append(kes, ke)
				}
			}
			// Errors are kept in the Conn and returned by Flush.
			_ = f.conn.SetDeleteElements(f.setFor(d), kes)
		}
	}
	for _, d := range defs {
		if add := p[d].add; len(add) > 0 {
			var kes []nftables.SetElement
			for _, e := range add {
				kes = append(kes, d.encode(e, now)...)
			}
			_ = f.conn.SetAddElements(f.setFor(d), kes)
		}
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("nftables transaction on table inet %s: %w", TableName, err)
	}
	return nil
}

// setFor returns the set to name in element messages; created sets are
// replaced by the one AddSet got (with its transaction ID) during Apply.
func (f *Firewall) setFor(d setDef) *nftables.Set {
	if s, ok := f.batchSets[d.name]; ok {
		return s
	}
	return d.nftSet(f.table)
}

func (f *Firewall) updateMirror(now time.Time, p plan) {
	for d, c := range p {
		m := f.mirror[d.name]
		if m == nil {
			m = map[elemID]element{}
			f.mirror[d.name] = m
		}
		for _, e := range c.del {
			delete(m, e.id())
		}
		for _, e := range c.add {
			if !e.expires.IsZero() {
				e.expires = now.Add(timeoutAt(e.expires, now))
			}
			m[e.id()] = e
		}
		// Expired elements stay until the next reconcile rebuilds the
		// mirror: every reader skips them.
	}
}

// kernel is what table inet mailgate holds.
type kernel struct {
	exists bool
	sets   map[string]*nftables.Set // named sets
	anon   map[string]string        // anonymous port sets: "{ 110, 143 }"
	elems  map[string][]element     // sets mailgate owns, decoded
	raw    map[string][]nftables.SetElement
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule
}

// readLocked reads the table; elements of the sets mailgate owns always,
// of sets it does not know only if all is set, of the rate and autoban
// sets never.
func (f *Firewall) readLocked(now time.Time, all bool) (*kernel, error) {
	k := &kernel{sets: map[string]*nftables.Set{}, anon: map[string]string{}, elems: map[string][]element{},
		raw: map[string][]nftables.SetElement{}, rules: map[string][]*nftables.Rule{}}
	if _, err := f.conn.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return k, nil
		}
		return nil, fmt.Errorf("reading table inet %s: %w", TableName, err)
	}
	k.exists = true
	sets, err := f.conn.GetSets(f.table)
	if err != nil {
		return nil, fmt.Errorf("reading the sets of table inet %s: %w", TableName, err)
	}
	for _, s := range sets {
		s.Table = f.table
		d, known := findDef(s.Name)
		switch {
		case s.Anonymous:
			kes, err := f.conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("reading anonymous set %s: %w", s.Name, err)
			}
			k.anon[s.Name] = anonText(s, kes)
			continue
		case known && d.owned() && d.sameDef(s) == nil, all && !(known && d.kind == kindMeter):
			kes, err := f.conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("reading set %s: %w", s.Name, err)
			}
			k.raw[s.Name] = kes
			if known && d.sameDef(s) == nil {
				es, err := d.decode(kes, now)
				if err != nil {
					return nil, err
				}
				k.elems[s.Name] = es
			}
		}
		k.sets[s.Name] = s
	}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("reading the chains of table inet %s: %w", TableName, err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != TableName {
			continue
		}
		c.Table = f.table
		rs, err := f.conn.GetRules(f.table, c)
		if err != nil {
			return nil, fmt.Errorf("reading chain %s: %w", c.Name, err)
		}
		k.chains = append(k.chains, c)
		k.rules[c.Name] = rs
	}
	slices.SortFunc(k.chains, func(a, b *nftables.Chain) int { return strings.Compare(a.Name, b.Name) })
	return k, nil
}

// anonText prints an anonymous set of ports as a rule shows it.
func anonText(s *nftables.Set, kes []nftables.SetElement) string {
	if s.KeyType.GetNFTMagic() != nftables.TypeInetService.GetNFTMagic() {
		return fmt.Sprintf("%s(%d elements)", s.Name, len(kes))
	}
	var ports []uint16
	for _, e := range kes {
		if len(e.Key) == 2 && !e.IntervalEnd {
			ports = append(ports, uint16(e.Key[0])<<8|uint16(e.Key[1]))
		}
	}
	slices.Sort(ports)
	return portSetText(ports)
}

// chain is mailgate's input chain for its configuration.
func (f *Firewall) chain() *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     ChainName,
		Table:    f.table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(f.cfg.Priority)),
		Policy:   &accept,
	}
}

func chainHeader(c *nftables.Chain) string {
	if c.Hooknum == nil || c.Priority == nil {
		return ""
	}
	pol := nftables.ChainPolicyAccept
	if c.Policy != nil {
		pol = *c.Policy
	}
	return baseChainHeader(c.Type, c.Hooknum, int32(*c.Priority), pol)
}

// wantSigs are the signatures of the rules cfg wants, in order.
func (f *Firewall) wantSigs() []string {
	var sigs []string
	for _, r := range f.cfg.rules() {
		sigs = append(sigs, builtSig(r))
	}
	return sigs
}

// builtSig is the signature of a rule as mailgate builds it.
func builtSig(r rule) string {
	named := func(name string) *nftables.Set { return &nftables.Set{Name: name} }
	anon := &nftables.Set{Name: "__set%d"}
	return ruleSig(r.build(named, anon), func(string) string { return portSetText(r.ports) })
}

// rulesMatch reports whether the kernel's input chain is the one cfg
// wants, rules included.
func (f *Firewall) rulesMatch(k *kernel) bool {
	var c *nftables.Chain
	for _, x := range k.chains {
		if x.Name == ChainName {
			c = x
		}
	}
	if c == nil || chainHeader(c) != chainHeader(f.chain()) {
		return false
	}
	want := f.wantSigs()
	have := k.rules[ChainName]
	if len(have) != len(want) {
		return false
	}
	for i, r := range have {
		if ruleSig(r.Exprs, k.anonName) != want[i] {
			return false
		}
	}
	return true
}

func (k *kernel) anonName(name string) string {
	if t, ok := k.anon[name]; ok {
		return t
	}
	return name
}

// reconcileLocked reads the kernel and writes one transaction that makes
// it hold f.want (and, if structure is set or anything is missing, the
// table, sets, chain and rules). A failed transaction is retried once
// after reading again (an element may have expired in between).
func (f *Firewall) reconcileLocked(now time.Time, structure bool) (SyncResult, error) {
	var res SyncResult
	var err error
	for attempt := range 2 {
		var sent bool
		res, sent, err = f.reconcileOnce(now, structure)
		if err == nil || !sent {
			break
		}
		if attempt == 0 {
			f.log.Warn("firewall: transaction failed, reading the kernel again", "err", err)
		}
	}
	if err != nil {
		return SyncResult{}, err
	}
	if res.Added > 0 || res.Removed > 0 {
		f.log.Info("firewall: synced", "added", res.Added, "removed", res.Removed)
	}
	return res, nil
}

// reconcileOnce reads and writes once; sent reports whether a
// transaction was sent (and failed, if err is set).
func (f *Firewall) reconcileOnce(now time.Time, structure bool) (_ SyncResult, sent bool, _ error) {
	k, err := f.readLocked(now, false)
	if err != nil {
		return SyncResult{}, false, fmt.Errorf("%w; nothing was changed", err)
	}
	var missing []setDef
	for _, d := range setDefs() {
		s, ok := k.sets[d.name]
		if !ok {
			missing = append(missing, d)
			continue
		}
		if err := d.sameDef(s); err != nil {
			return SyncResult{}, false, fmt.Errorf("set %s in table inet %s has %v: delete the table (nft delete table inet %s) and apply again; nothing was changed",
				d.name, TableName, err, TableName)
		}
	}
	if !structure && (!k.exists || len(missing) > 0 || !f.rulesMatch(k)) {
		f.log.Info("firewall: table, set or rules missing or changed; applying", "sets_missing", len(missing))
		structure = true
	}
	p := plan{}
	var res SyncResult
	for _, d := range setDefs() {
		if !d.owned() {
			continue
		}
		del, add := diffElements(d, f.want.elements(f.cfg, d, now), k.elems[d.name], now)
		p.add(d, change{del, add})
		res.Added += len(add)
		res.Removed += len(del)
	}
	f.batchSets = map[string]*nftables.Set{}
	defer func() { f.batchSets = nil }()
	queue := func() {}
	if structure {
		queue = func() { f.queueStructure(k, missing) }
	}
	if err := f.writeLocked(now, queue, p); err != nil {
		return SyncResult{}, true, err
	}
	f.mirror = map[string]map[elemID]element{}
	for _, d := range setDefs() {
		if d.owned() {
			m := map[elemID]element{}
			for _, e := range k.elems[d.name] {
				m[e.id()] = e
			}
			f.mirror[d.name] = m
		}
	}
	f.updateMirror(now, p)
	return res, true, nil
}

// queueStructure queues the table, the missing sets, the chain and its
// rules. The chain is flushed and refilled in the same transaction, so
// there is no moment without rules; if its hook or priority changed it is
// deleted and created again.
func (f *Firewall) queueStructure(k *kernel, missing []setDef) {
	f.conn.AddTable(f.table)
	for _, d := range missing {
		s := d.nftSet(f.table)
		_ = f.conn.AddSet(s, nil) // sets s.ID for the rules and elements below
		f.batchSets[d.name] = s
	}
	want := f.chain()
	var have *nftables.Chain
	for _, c := range k.chains {
		if c.Name == ChainName {
			have = c
		}
	}
	switch {
	case have == nil:
		f.conn.AddChain(want)
	case chainHeader(have) != chainHeader(want):
		f.conn.FlushChain(have)
		f.conn.DelChain(have)
		f.conn.AddChain(want)
	default:
		f.conn.FlushChain(have)
	}
	sets := func(name string) *nftables.Set { return f.setFor(defByName(name)) }
	for _, r := range f.cfg.rules() {
		var anon *nftables.Set
		if len(r.ports) > 0 {
			anon = &nftables.Set{Table: f.table, Anonymous: true, Constant: true,
				KeyType: nftables.TypeInetService, KeyByteOrder: binaryutil.BigEndian}
			var kes []nftables.SetElement
			for _, p := range r.ports {
				kes = append(kes, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
			}
			_ = f.conn.AddSet(anon, kes)
		}
		f.conn.AddRule(&nftables.Rule{Table: f.table, Chain: want, Exprs: r.build(sets, anon)})
	}
}

// Kernel returns what the kernel has in table inet mailgate, rendered as
// Render does (element timeouts are the time left), so that Diff(Render,
// Kernel) is a text diff; "" when the table does not exist. A rule mailgate
// did not write is printed as a comment with its expressions. The rate
// and autoban sets are shown without elements (see Autobans).
func (f *Firewall) Kernel() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// Expiries are kept relative to this instant; no clock is read.
	ref := time.Unix(0, 0)
	k, err := f.readLocked(ref, true)
	if err != nil {
		return "", err
	}
	if !k.exists {
		return "", nil
	}
	var names []string
	for _, d := range setDefs() {
		if _, ok := k.sets[d.name]; ok {
			names = append(names, d.name)
		}
	}
	var others []string
	for name := range k.sets {
		if _, known := findDef(name); !known {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	names = append(names, others...)
	var sets []setView
	for _, name := range names {
		s := k.sets[name]
		d, known := findDef(name)
		v := setView{def: d, set: s}
		es, decoded := k.elems[name]
		switch {
		case known && d.kind == kindMeter:
		case decoded:
			v.elems = es
		default:
			for _, e := range k.raw[name] {
				v.raw = append(v.raw, rawElementText(e))
			}
			slices.Sort(v.raw)
		}
		sets = append(sets, v)
	}
	known := map[string]string{}
	for _, r := range f.cfg.rules() {
		known[builtSig(r)] = r.text
	}
	var chains []chainView
	for _, c := range k.chains {
		cv := chainView{name: c.Name, header: chainHeader(c)}
		for _, r := range k.rules[c.Name] {
			sig := ruleSig(r.Exprs, k.anonName)
			if t, ok := known[sig]; ok {
				cv.rules = append(cv.rules, t)
			} else {
				cv.rules = append(cv.rules, "# not mailgate's: "+sig)
			}
		}
		chains = append(chains, cv)
	}
	return renderTable(sets, chains, ref), nil
}

// rawElementText shows an element of a set mailgate does not know, or
// whose definition is not mailgate's, by its key bytes.
func rawElementText(e nftables.SetElement) string {
	t := fmt.Sprintf("0x%x", e.Key)
	if e.IntervalEnd {
		t += " (end)"
	}
	if e.Timeout != 0 || e.Expires != 0 {
		t += " timeout " + nftDuration(shown(e.Expires))
	}
	return t
}

// Autobans lists the addresses the kernel has autobanned for going over
// the rate (IPv6 per /64), with when each ban ends.
func (f *Firewall) Autobans(now time.Time) ([]Ban, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Ban
	for _, name := range []string{"autoban_v4", "autoban_v6"} {
		d := defByName(name)
		kes, err := f.conn.GetSetElements(d.nftSet(f.table))
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("reading set %s: %w", name, err)
		}
		es, err := d.decode(kes, now)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			bits := 32
			if d.v6 {
				bits = 64
			}
			out = append(out, Ban{Prefix: netip.PrefixFrom(e.from, bits), Expires: e.expires})
		}
	}
	return out, nil
}

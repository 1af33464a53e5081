package relay

import (
	"net/netip"
	"time"
)

// maxAccounts bounds Info.Accounts and the accounts Shared returns.
const maxAccounts = 10

// netLogins is what a network's recent logins say about it: the distinct
// logins seen, most recent first. Networks form a list ordered by when
// they were last seen, for forgetting the least recently seen first.
type netLogins struct {
	key    netip.Prefix
	newer  *netLogins
	older  *netLogins
	last   int64  // unix nanoseconds of the latest login
	logins []seen // distinct, most recent first, at most Table.perNet
}

type seen struct {
	login string
	at    int64 // unix nanoseconds
}

// seeLocked remembers a login from network key at now and reports
// whether the network is shared now. A network not yet remembered takes
// the place of the least recently seen one when MaxPermits networks are.
func (t *Table) seeLocked(key netip.Prefix, login string, now time.Time) bool {
	if !t.s().track {
		return false
	}
	at := now.UnixNano()
	n := t.nets[keyOf(key)]
	switch {
	case n != nil:
		t.unlinkLocked(n)
	case len(t.nets) >= t.s().cfg.MaxPermits && t.oldest != nil:
		n = t.oldest // reused, with its logins slice
		t.unlinkLocked(n)
		delete(t.nets, keyOf(n.key))
		*n = netLogins{key: key, logins: clear0(n.logins)}
		t.nets[keyOf(key)] = n
	default:
		n = &netLogins{key: key, logins: make([]seen, 0, 4)}
		t.nets[keyOf(key)] = n
	}
	t.pushNewestLocked(n)
	n.last = max(n.last, at)

	i := 0
	for i < len(n.logins) && n.logins[i].login != login {
		i++
	}
	switch {
	case i < len(n.logins): // seen before: move to the front
	case len(n.logins) < t.s().perNet:
		n.logins = append(n.logins, seen{})
	default:
		i = len(n.logins) - 1 // full: the least recent one goes
	}
	copy(n.logins[1:i+1], n.logins[:i])
	n.logins[0] = seen{login: login, at: at}
	return t.s().cfg.SharedLogins > 0 && t.recent(n, at) >= t.s().cfg.SharedLogins
}

// clear0 empties s, dropping its references to login strings.
func clear0(s []seen) []seen {
	clear(s)
	return s[:0]
}

// within reports whether a login at was within SharedWindow before now
// (a login exactly SharedWindow ago is not).
func (t *Table) within(now, at int64) bool { return now-at < int64(t.s().cfg.SharedWindow) }

// recent counts n's logins within SharedWindow before now.
func (t *Table) recent(n *netLogins, now int64) int {
	c := 0
	for _, s := range n.logins {
		if t.within(now, s.at) {
			c++
		}
	}
	return c
}

// sharedLocked is Shared for network key.
func (t *Table) sharedLocked(key netip.Prefix, now time.Time) (bool, []string) {
	n := t.nets[keyOf(key)]
	if n == nil {
		return false, nil
	}
	at := now.UnixNano()
	var accounts []string
	c := 0
	for _, s := range n.logins {
		if !t.within(at, s.at) {
			continue
		}
		c++
		if len(accounts) < maxAccounts {
			accounts = append(accounts, s.login)
		}
	}
	return t.s().cfg.SharedLogins > 0 && c >= t.s().cfg.SharedLogins, accounts
}

// forgetStaleLocked forgets the networks with no login within
// SharedWindow before now. It walks from the least recently seen and
// stops at the first network seen within the window: logins arrive in
// time order, give or take concurrent callers, so what it misses is
// forgotten by a later call or pushed out by MaxPermits.
func (t *Table) forgetStaleLocked(now time.Time) {
	at := now.UnixNano()
	for n := t.oldest; n != nil && !t.within(at, n.last); n = t.oldest {
		t.unlinkLocked(n)
		delete(t.nets, keyOf(n.key))
	}
}

func (t *Table) unlinkLocked(n *netLogins) {
	if n.newer != nil {
		n.newer.older = n.older
	} else {
		t.newest = n.older
	}
	if n.older != nil {
		n.older.newer = n.newer
	} else {
		t.oldest = n.newer
	}
	n.newer, n.older = nil, nil
}

func (t *Table) pushNewestLocked(n *netLogins) {
	n.older = t.newest
	if t.newest != nil {
		t.newest.newer = n
	}
	t.newest = n
	if t.oldest == nil {
		t.oldest = n
	}
}

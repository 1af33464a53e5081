package dnsbld

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Table is a set of listings replaced as a whole (the kernel's autobans,
// read from the firewall every few seconds): a query looks up a prefix
// table without a lock, a Replace builds a new table and swaps it in.
type Table struct {
	cur atomic.Pointer[bart.Table[Listing]]
}

// Replace makes ls the table's listings. Listings of one prefix: the last
// wins.
func (t *Table) Replace(ls []Listing) {
	nt := new(bart.Table[Listing])
	for _, l := range ls {
		if l.Prefix.IsValid() {
			nt.Insert(l.Prefix.Masked(), l)
		}
	}
	t.cur.Store(nt)
}

// Len is how many prefixes the table holds.
func (t *Table) Len() int {
	if c := t.cur.Load(); c != nil {
		return c.Size()
	}
	return 0
}

// Listed implements Lookup: the most specific listing covering a that
// has not ended at now.
func (t *Table) Listed(a netip.Addr, now time.Time) (Listing, bool) {
	c := t.cur.Load()
	if c == nil {
		return Listing{}, false
	}
	l, ok := c.Lookup(a.Unmap())
	if !ok || (!l.Expires.IsZero() && !now.Before(l.Expires)) {
		return Listing{}, false
	}
	return l, true
}

// maxClients bounds the rate limiter's table; when it is full it starts
// over (every client gets a fresh burst), which only an attacker with
// that many source addresses notices.
const maxClients = 1 << 16

// limiter is a token bucket per UDP client (IPv6: per /64): rate queries
// a second, and a burst of as many.
type limiter struct {
	mu      sync.Mutex
	buckets map[netip.Addr]bucket
}

type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds
}

func newLimiter() *limiter { return &limiter{buckets: map[netip.Addr]bucket{}} }

func (l *limiter) allow(a netip.Addr, rate int, now time.Time) bool {
	if rate <= 0 {
		return true
	}
	a = a.Unmap()
	if a.Is6() {
		a = netip.PrefixFrom(a, 64).Masked().Addr()
	}
	n := now.UnixNano()
	r := float64(rate)
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[a]
	if !ok {
		if len(l.buckets) >= maxClients {
			clear(l.buckets)
		}
		b = bucket{tokens: r, last: n}
	} else if n > b.last {
		b.tokens = min(r, b.tokens+float64(n-b.last)/float64(time.Second)*r)
		b.last = n
	}
	ok = b.tokens >= 1
	if ok {
		b.tokens--
	}
	l.buckets[a] = b
	return ok
}

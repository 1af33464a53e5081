package dnsbl

import (
	"net/netip"
	"time"
)

// cache holds results by address, at most max of them; the least recently
// used entry goes first. The Checker's mu guards it.
type cache struct {
	max        int
	m          map[netip.Addr]*entry
	head, tail *entry // head: most recently used
}

type entry struct {
	addr       netip.Addr
	res        Result
	expires    time.Time
	prev, next *entry
}

func newCache(max int) *cache {
	return &cache{max: max, m: make(map[netip.Addr]*entry)}
}

// get returns addr's entry if it is fresh at now, and marks it used.
func (c *cache) get(addr netip.Addr, now time.Time) *entry {
	e := c.m[addr]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return nil
	}
	c.unlink(e)
	c.pushFront(e)
	return e
}

// put stores res for addr until expires, evicting the least recently
// used entry when full.
func (c *cache) put(addr netip.Addr, res Result, expires time.Time) {
	if e := c.m[addr]; e != nil {
		e.res, e.expires = res, expires
		c.unlink(e)
		c.pushFront(e)
		return
	}
	for len(c.m) >= c.max && c.tail != nil {
		c.remove(c.tail)
	}
	e := &entry{addr: addr, res: res, expires: expires}
	c.m[addr] = e
	c.pushFront(e)
}

func (c *cache) len() int { return len(c.m) }

func (c *cache) remove(e *entry) {
	c.unlink(e)
	delete(c.m, e.addr)
}

func (c *cache) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if c.head == e {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if c.tail == e {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *cache) pushFront(e *entry) {
	e.next = c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

// CacheLen is the number of cached addresses.
func (c *Checker) CacheLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache.len()
}

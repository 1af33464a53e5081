package abuse

import (
	"errors"
	"net/netip"
	"time"
)

// errNoID: a merged ban must carry the ID its node gave it.
var errNoID = errors.New("ban without an id")

// SetIDSource makes the tracker take new ban IDs from fn (a cluster's
// shared counter) instead of counting from the largest it holds. fn is
// called with the tracker's lock held and must not block; an ID of 0, or
// one the tracker already holds, falls back to the local count.
func (t *Tracker) SetIDSource(fn func() int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ids = fn
}

// sameTarget reports whether a and b ban the same address, network or
// login exactly.
func sameTarget(a, b *Ban) bool {
	if a.Kind != b.Kind {
		return false
	}
	if a.Kind == BanLogin {
		return a.Login == b.Login
	}
	return a.Prefix == b.Prefix
}

// MergeBan holds a ban another node made. Automatic bans of the same
// target and reason made by two nodes at once are one ban: the one with
// the smaller ID is kept on every node, so nodes agree whichever order
// they hear of them. MergeBan returns the ban held (ok false when b was
// already held, or a same-target ban with a smaller ID is) and the bans
// it replaced. A ban that has ended is ignored.
func (t *Tracker) MergeBan(b Ban, now time.Time) (held Ban, replaced []Ban, ok bool, err error) {
	if err := checkBan(&b, b.Created); err != nil {
		return Ban{}, nil, false, err
	}
	if b.ID <= 0 {
		return Ban{}, nil, false, errNoID
	}
	n := now.UnixNano()
	if !b.Expires.IsZero() && b.Expires.UnixNano() <= n {
		return Ban{}, nil, false, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.byID[b.ID]; dup {
		return Ban{}, nil, false, nil
	}
	if b.Reason != ReasonManual {
		var same []*ban
		for _, h := range t.sameTargetLocked(&b) {
			if h.Reason != b.Reason || !h.live(n) {
				continue
			}
			if h.ID < b.ID {
				return Ban{}, nil, false, nil
			}
			same = append(same, h)
		}
		for _, h := range same {
			t.removeLocked(h)
			replaced = append(replaced, h.Ban)
		}
	}
	return t.insertLocked(b), replaced, true, nil
}

func (t *Tracker) sameTargetLocked(b *Ban) []*ban {
	if b.Kind == BanLogin {
		return t.loginBans[b.Login]
	}
	bs, _ := t.addrBans.Get(b.Prefix)
	return bs
}

// LiftMerged lifts what another node lifted: the ban with id, and the
// bans of the same target (exactly; target as a Ban's Kind with Prefix
// or Login) made at or before at, which are that ban's copies under
// other IDs. It returns the bans it lifted.
func (t *Tracker) LiftMerged(id int64, target Ban, at time.Time) []Ban {
	if target.Kind == BanAddr && target.Prefix.IsValid() {
		target.Prefix = unmapPrefix(target.Prefix)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Ban
	if h, ok := t.byID[id]; ok {
		t.liftLocked(h)
		out = append(out, h.Ban)
	}
	if target.Kind == BanAddr && !target.Prefix.IsValid() || target.Kind == BanLogin && target.Login == "" {
		return out
	}
	var lift []*ban
	for _, h := range t.sameTargetLocked(&target) {
		if sameTarget(&h.Ban, &target) && !h.Created.After(at) {
			lift = append(lift, h)
		}
	}
	for _, h := range lift {
		t.liftLocked(h)
		out = append(out, h.Ban)
	}
	return out
}

func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

package dnsbld

import (
	"net/netip"
	"time"

	"mailgate/internal/abuse"
)

// Bans lists the address bans of a brute-force tracker, automatic and
// by hand. Login bans are never listed: they name no address.
type Bans struct{ T *abuse.Tracker }

// Listed implements Lookup with the tracker's own lookup (read-locked,
// no allocation, no copy of the bans).
func (b Bans) Listed(a netip.Addr, now time.Time) (Listing, bool) {
	st := b.T.Check("", a, "", now)
	if !st.AddrBan.Found {
		return Listing{}, false
	}
	r := st.AddrBan
	return Listing{Prefix: r.Prefix, Source: Mailgate, Reason: r.Reason, Expires: r.Expires}, true
}

package abuse

import "time"

// Held returns ban id as the tracker holds it at now, and whether it still
// holds it (not lifted, not ended). The persister writes only what is
// still held.
func (t *Tracker) Held(id int64, now time.Time) (Ban, bool) {
	n := now.UnixNano()
	t.mu.RLock()
	defer t.mu.RUnlock()
	h, ok := t.byID[id]
	if !ok || !h.live(n) {
		return Ban{}, false
	}
	return h.Ban, true
}

// CheckBan reports why the tracker would refuse b (AddBan), e.g. when a
// stored ban is loaded at start; nil when it would hold it. b is not
// changed.
func CheckBan(b Ban, now time.Time) error { return checkBan(&b, now) }

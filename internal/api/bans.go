package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// BanStore is what the banbook needs from persistence.
type BanStore interface {
	AddBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban, audit bool) error
	DeleteBans(ctx context.Context, now time.Time, actor string, bs []abuse.Ban) error
	BanAudit(ctx context.Context, limit int) ([]store.AuditEntry, error)
}

// Banbook keeps manual ban changes in the tracker and the store together.
type Banbook struct {
	mu      sync.Mutex
	store   BanStore
	t       *abuse.Tracker
	changed func(added, removed []abuse.Ban) // may be nil
}

// OnChange has fn told of every ban added or lifted by hand (the firewall
// mirrors them), after the store took the change.
func (b *Banbook) OnChange(fn func(added, removed []abuse.Ban)) *Banbook {
	b.changed = fn
	return b
}

func (b *Banbook) tell(added, removed []abuse.Ban) {
	if b.changed != nil && len(added)+len(removed) > 0 {
		b.changed(added, removed)
	}
}

// NewBanbook returns a banbook over st and t.
func NewBanbook(st BanStore, t *abuse.Tracker) *Banbook {
	return &Banbook{store: st, t: t}
}

// Add bans by hand. The tracker assigns the id; if the store refuses the
// ban, the tracker forgets it again.
func (b *Banbook) Add(ctx context.Context, now time.Time, actor string, ban abuse.Ban) (abuse.Ban, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ban.Reason, ban.CreatedBy, ban.Created = "manual", actor, now
	added, err := b.t.AddBan(ban, now)
	if err != nil {
		return added, err
	}
	if err := b.store.AddBans(ctx, now, actor, []abuse.Ban{added}, true); err != nil {
		b.t.RemoveBan(added.ID)
		return added, err
	}
	b.tell([]abuse.Ban{added}, nil)
	return added, nil
}

// Remove lifts ban id.
func (b *Banbook) Remove(ctx context.Context, now time.Time, actor string, id int64) (abuse.Ban, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ban, ok := b.t.RemoveBan(id)
	if !ok {
		return ban, fmt.Errorf("ban %d: %w", id, store.ErrNotFound)
	}
	if err := b.store.DeleteBans(ctx, now, actor, []abuse.Ban{ban}); err != nil {
		b.restore([]abuse.Ban{ban}, now)
		return ban, err
	}
	b.tell(nil, []abuse.Ban{ban})
	return ban, nil
}

// restore puts back bans lifted from the tracker whose removal the store
// refused: memory stays as the store has it.
func (b *Banbook) restore(bs []abuse.Ban, now time.Time) {
	for _, ban := range bs {
		b.t.AddBan(ban, now) //nolint:errcheck // one that ended meanwhile stays lifted
	}
}

// RemoveFor lifts every ban of an address (the bans containing it) or of
// a login.
func (b *Banbook) RemoveFor(ctx context.Context, now time.Time, actor string, p netip.Prefix, login string) ([]abuse.Ban, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gone := b.t.RemoveBansFor(p, login)
	if len(gone) == 0 {
		return nil, nil
	}
	if err := b.store.DeleteBans(ctx, now, actor, gone); err != nil {
		b.restore(gone, now)
		return nil, err
	}
	b.tell(nil, gone)
	return gone, nil
}

// BanJSON is a ban on the wire.
type BanJSON struct {
	ID        int64      `json:"id"`
	Kind      string     `json:"kind"`
	IP        string     `json:"ip,omitempty"`
	Account   string     `json:"account,omitempty"`
	Reason    string     `json:"reason"`
	Created   time.Time  `json:"created"`
	Expires   *time.Time `json:"expires"`
	Remaining string     `json:"remaining,omitempty"`
	// RemainingSeconds is Remaining in whole seconds; absent with it.
	RemainingSeconds int64  `json:"remaining_seconds,omitempty"`
	Comment          string `json:"comment"`
	CreatedBy        string `json:"created_by"`
}

// FromBan converts a ban for the wire; remaining is counted from now.
func FromBan(b *abuse.Ban, now time.Time) BanJSON {
	j := BanJSON{ID: b.ID, Kind: b.Kind.String(), Account: b.Login, Reason: b.Reason,
		Created: b.Created.UTC(), Comment: b.Comment, CreatedBy: b.CreatedBy}
	if b.Kind == abuse.BanAddr {
		j.IP = b.Prefix.String()
		if b.Prefix.IsSingleIP() {
			j.IP = b.Prefix.Addr().String()
		}
	}
	if !b.Expires.IsZero() {
		e := b.Expires.UTC()
		j.Expires = &e
		left := b.Expires.Sub(now).Round(time.Second)
		j.Remaining = left.String()
		j.RemainingSeconds = int64(left / time.Second)
	}
	return j
}

// BanRequest asks for a manual ban: an address or network, or a login.
type BanRequest struct {
	IP      string `json:"ip,omitempty"`
	Account string `json:"account,omitempty"`
	For     string `json:"for,omitempty"` // a Go duration; empty: until lifted
	Comment string `json:"comment,omitempty"`
}

func (s *Server) listBans(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	bans := s.bans.t.Bans(now)
	out := make([]BanJSON, len(bans))
	for i := range bans {
		out[i] = FromBan(&bans[i], now)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addBan(w http.ResponseWriter, r *http.Request) {
	var in BanRequest
	if !readSmallJSON(w, r, &in) {
		return
	}
	now := s.now()
	var ban abuse.Ban
	switch {
	case (in.IP == "") == (in.Account == ""):
		writeError(w, http.StatusBadRequest, errors.New("give an ip or an account, not both"))
		return
	case in.IP != "":
		p, err := rules.ParseMatch(in.IP)
		if err != nil || !p.IsValid() {
			writeError(w, http.StatusBadRequest, fmt.Errorf("ip: %q is not an address or network", in.IP))
			return
		}
		ban.Kind, ban.Prefix = abuse.BanAddr, p
	default:
		acct, err := rules.NormalizeAccount(in.Account)
		if err != nil || acct == "*" || acct[0] == '@' {
			writeError(w, http.StatusBadRequest, fmt.Errorf("account: %q is not a login", in.Account))
			return
		}
		ban.Kind, ban.Login = abuse.BanLogin, acct
	}
	if in.For != "" {
		d, err := time.ParseDuration(in.For)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("for: %q is not a positive duration", in.For))
			return
		}
		ban.Expires = now.Add(d)
	}
	if len(in.Comment) > rules.MaxCommentLen {
		writeError(w, http.StatusBadRequest, fmt.Errorf("comment: longer than %d bytes", rules.MaxCommentLen))
		return
	}
	ban.Comment = in.Comment
	who := actor(r)
	added, err := s.bans.Add(r.Context(), now, who, ban)
	if s.unavailable(w, "adding ban", err) {
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.log.Info("ban added", "id", added.ID, "actor", who)
	writeJSON(w, http.StatusCreated, FromBan(&added, now))
}

// removeBans lifts one ban (DELETE /v1/bans/{id}) or every ban of an
// address or login (DELETE /v1/bans?ip=X or ?account=A).
func (s *Server) removeBans(w http.ResponseWriter, r *http.Request) {
	now, who := s.now(), actor(r)
	var gone []abuse.Ban
	if idText := r.PathValue("id"); idText != "" {
		id, err := strconv.ParseInt(idText, 10, 64)
		if err != nil || id <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("ban id %q is not a positive number", idText))
			return
		}
		b, err := s.bans.Remove(r.Context(), now, who, id)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, fmt.Errorf("no active ban with id %d", id))
			return
		}
		if err != nil {
			s.internal(w, "removing ban", err)
			return
		}
		gone = []abuse.Ban{b}
	} else {
		q := r.URL.Query()
		ip, acct := q.Get("ip"), q.Get("account")
		var p netip.Prefix
		var login string
		switch {
		case (ip == "") == (acct == ""):
			writeError(w, http.StatusBadRequest, errors.New("give an ip or an account, not both"))
			return
		case ip != "":
			var err error
			if p, err = rules.ParseMatch(ip); err != nil || !p.IsValid() {
				writeError(w, http.StatusBadRequest, fmt.Errorf("ip: %q is not an address or network", ip))
				return
			}
		default:
			login = rules.NormalizeLogin(acct)
		}
		var err error
		if gone, err = s.bans.RemoveFor(r.Context(), now, who, p, login); err != nil {
			s.internal(w, "removing bans", err)
			return
		}
		if len(gone) == 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("no active ban for %s%s", ip, acct))
			return
		}
	}
	s.log.Info("bans removed", "count", len(gone), "actor", who)
	out := make([]BanJSON, len(gone))
	for i := range gone {
		out[i] = FromBan(&gone[i], now)
	}
	writeJSON(w, http.StatusOK, out)
}

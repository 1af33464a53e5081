package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// PermitTable is what the permitbook needs from the relay permit table.
type PermitTable interface {
	Add(p relay.Permit, now time.Time) (relay.Permit, error)
	Remove(addr netip.Addr) (relay.Permit, bool)
	Check(addr netip.Addr, now time.Time) (relay.Permit, bool)
	Restore(ps []relay.Permit, now time.Time) int
	List(now time.Time) []relay.Info
}

// PermitStore is what the permitbook needs from persistence.
type PermitStore interface {
	AddPermit(ctx context.Context, now time.Time, actor string, p relay.Permit) error
	DeletePermits(ctx context.Context, now time.Time, actor string, ps []relay.Permit, audit bool) error
	PermitAudit(ctx context.Context, limit int) ([]store.AuditEntry, error)
}

// PermitEventLog is the decision log, for manual permit changes
// (*policy.DecisionLog).
type PermitEventLog interface {
	Permit(now time.Time, p *relay.Permit, event string)
}

// Permitbook keeps manual relay permit changes in the permit table and the
// store together. Permits granted by logins do not pass through it: the
// daemon's OnLoginFunc grants and persists them.
type Permitbook struct {
	mu    sync.Mutex
	store PermitStore
	t     PermitTable
	dlog  PermitEventLog // may be nil
	// changed is told of every permit added or withdrawn by hand, after
	// the store took it (OnChange); may be nil.
	changed func(added, removed []relay.Permit)
}

// OnChange has fn told of every permit added or withdrawn by hand (a
// cluster shares them), after the store took the change.
func (b *Permitbook) OnChange(fn func(added, removed []relay.Permit)) *Permitbook {
	b.changed = fn
	return b
}

// NewPermitbook returns a permitbook over st and t.
func NewPermitbook(st PermitStore, t PermitTable) *Permitbook {
	return &Permitbook{store: st, t: t}
}

// WithLog writes manual grants (event=permit door=manual) and removals
// (event=permit_removed) to the decision log dl.
func (b *Permitbook) WithLog(dl PermitEventLog) *Permitbook {
	b.dlog = dl
	return b
}

// storeError marks a failure of the store, as opposed to a permit the
// table refused.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

// Add grants a permit by hand to p.Prefix (an address, widened to its
// IPv6 network by the table) until p.Expires, replacing any permit of the
// network. If the store refuses it, the table forgets it again and gets
// back the permit it replaced, if any.
func (b *Permitbook) Add(ctx context.Context, now time.Time, actor string, p relay.Permit) (relay.Permit, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p.Login, p.Service, p.Door, p.By, p.Granted, p.Logins = "", rules.AllServices, relay.DoorManual, actor, now, 0
	addr := p.Prefix.Addr()
	prev, had := b.t.Check(addr, now)
	added, err := b.t.Add(p, now)
	if err != nil {
		return added, err
	}
	if err := b.store.AddPermit(ctx, now, actor, added); err != nil {
		b.t.Remove(addr)
		if had {
			b.t.Restore([]relay.Permit{prev}, now)
		}
		return added, storeError{fmt.Errorf("storing the permit for %s: %w", prefixText(added.Prefix), err)}
	}
	if b.dlog != nil {
		b.dlog.Permit(now, &added, policy.PermitGranted)
	}
	if b.changed != nil {
		b.changed([]relay.Permit{added}, nil)
	}
	return added, nil
}

// Remove withdraws the permit covering addr, whoever granted it. The error
// wraps store.ErrNotFound when no permit covers addr.
func (b *Permitbook) Remove(ctx context.Context, now time.Time, actor string, addr netip.Addr) (relay.Permit, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.t.Remove(addr)
	if !ok {
		return p, fmt.Errorf("permit for %s: %w", addr, store.ErrNotFound)
	}
	if err := b.store.DeletePermits(ctx, now, actor, []relay.Permit{p}, true); err != nil {
		// Memory stays as the store has it: the permit is back.
		b.t.Restore([]relay.Permit{p}, now)
		return p, storeError{fmt.Errorf("deleting the stored permit for %s: %w", prefixText(p.Prefix), err)}
	}
	if b.dlog != nil {
		b.dlog.Permit(now, &p, policy.PermitRemoved)
	}
	if b.changed != nil {
		b.changed(nil, []relay.Permit{p})
	}
	return p, nil
}

// List returns the valid permits.
func (b *Permitbook) List(now time.Time) []relay.Info { return b.t.List(now) }

// OnLoginFunc records a successful login reported through the API (by
// `mailgate hook postlogin`): it grants or refreshes the address's permit,
// persists and logs it, and says what it did. The daemon supplies it.
type OnLoginFunc func(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome)

// PermitJSON is a relay permit on the wire.
type PermitJSON struct {
	IP        string    `json:"ip"`      // the address, or the IPv6 network the permit covers
	Account   string    `json:"account"` // the login that earned it; "" for a manual permit
	Service   string    `json:"service"` // that login's service
	Door      string    `json:"door"`    // dovecot, nginx, hook or manual
	Granted   time.Time `json:"granted"`
	Expires   time.Time `json:"expires"`
	Remaining string    `json:"remaining"`
	// RemainingSeconds is Remaining in whole seconds.
	RemainingSeconds int64    `json:"remaining_seconds"`
	Logins           int      `json:"logins"`
	Shared           bool     `json:"shared"`
	Accounts         []string `json:"accounts"` // logins seen from the network lately, most recent first
	Comment          string   `json:"comment"`
	CreatedBy        string   `json:"created_by"` // manual permits: who
}

// FromPermit converts a permit for the wire; remaining is counted from now.
func FromPermit(p *relay.Permit, now time.Time) PermitJSON {
	j := PermitJSON{IP: prefixText(p.Prefix), Account: p.Login, Door: p.Door,
		Granted: p.Granted.UTC(), Expires: p.Expires.UTC(), Logins: p.Logins,
		Accounts: []string{}, Comment: p.Comment, CreatedBy: p.By}
	if p.Login != "" {
		j.Service = p.Service.String()
	}
	if left := p.Expires.Sub(now); left > 0 {
		j.Remaining = left.Round(time.Second).String()
		j.RemainingSeconds = int64(left.Round(time.Second) / time.Second)
	} else {
		j.Remaining = "0s"
	}
	return j
}

// FromPermitInfo converts a listed permit for the wire.
func FromPermitInfo(in *relay.Info, now time.Time) PermitJSON {
	j := FromPermit(&in.Permit, now)
	j.Shared = in.Shared
	if len(in.Accounts) > 0 {
		j.Accounts = append(j.Accounts, in.Accounts...)
	}
	return j
}

// prefixText is an address for a one-address prefix, else the network.
func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// PermitRequest asks for a manual permit.
type PermitRequest struct {
	IP      string `json:"ip"`
	For     string `json:"for,omitempty"` // a Go duration, or 7d / 2w; default 30m, at most 365d
	Comment string `json:"comment,omitempty"`
}

const (
	// DefaultPermitFor is how long a manual permit lasts unless told.
	DefaultPermitFor = 30 * time.Minute
	// MaxPermitFor bounds a manual permit.
	MaxPermitFor = relay.MaxManualFor
)

// ParsePermitFor reads how long a manual permit lasts: a Go duration
// (90m, 12h) or days and weeks (7d, 1.5d, 2w); "" is DefaultPermitFor.
// It must be positive and at most MaxPermitFor.
func ParsePermitFor(s string) (time.Duration, error) {
	if s == "" {
		return DefaultPermitFor, nil
	}
	if len(s) > 32 {
		return 0, fmt.Errorf("%.32q… is not a duration", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		unit := time.Duration(0)
		num := s
		if n, ok := strings.CutSuffix(s, "d"); ok {
			unit, num = 24*time.Hour, n
		} else if n, ok := strings.CutSuffix(s, "w"); ok {
			unit, num = 7*24*time.Hour, n
		}
		f, ferr := strconv.ParseFloat(num, 64)
		if unit == 0 || ferr != nil || strings.Trim(num, "0123456789.") != "" {
			return 0, fmt.Errorf("%q is not a duration (90m, 12h, 7d, 2w)", s)
		}
		if !(f > 0) || f*float64(unit) > float64(MaxPermitFor) {
			return 0, fmt.Errorf("%q is not a positive duration of at most 365d", s)
		}
		d = time.Duration(f * float64(unit))
	}
	if d <= 0 || d > MaxPermitFor {
		return 0, fmt.Errorf("%q is not a positive duration of at most 365d", s)
	}
	return d, nil
}

// errPermitsOff answers the permit endpoints when relay permits are off.
var errPermitsOff = errors.New("relay permits are disabled: set [relay] enabled = true in the config and restart mailgate")

func (s *Server) listPermits(w http.ResponseWriter, _ *http.Request) {
	if s.permits == nil {
		writeError(w, http.StatusConflict, errPermitsOff)
		return
	}
	now := s.now()
	ps := s.permits.List(now)
	out := make([]PermitJSON, len(ps))
	for i := range ps {
		out[i] = FromPermitInfo(&ps[i], now)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addPermit(w http.ResponseWriter, r *http.Request) {
	if s.permits == nil {
		writeError(w, http.StatusConflict, errPermitsOff)
		return
	}
	var in PermitRequest
	if !readSmallJSON(w, r, &in) {
		return
	}
	p, err := rules.ParseMatch(in.IP)
	if err != nil || !p.IsValid() {
		writeError(w, http.StatusBadRequest, fmt.Errorf("ip: %q is not an address", in.IP))
		return
	}
	d, err := ParsePermitFor(in.For)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("for: %w", err))
		return
	}
	if err := checkComment(in.Comment); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	now := s.now()
	who := actor(r)
	added, err := s.permits.Add(r.Context(), now, who, relay.Permit{
		Prefix: p, Expires: now.Add(d), Comment: in.Comment})
	if errors.As(err, new(storeError)) {
		s.internal(w, "adding relay permit", err)
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.log.Info("relay permit added", "ip", prefixText(added.Prefix), "for", d.String(), "actor", who)
	writeJSON(w, http.StatusCreated, FromPermit(&added, now))
}

// removePermit withdraws the permit covering ?ip=ADDR (an address, or the
// network as listed).
func (s *Server) removePermit(w http.ResponseWriter, r *http.Request) {
	if s.permits == nil {
		writeError(w, http.StatusConflict, errPermitsOff)
		return
	}
	ip := r.URL.Query().Get("ip")
	p, err := rules.ParseMatch(ip)
	if err != nil || !p.IsValid() {
		writeError(w, http.StatusBadRequest, fmt.Errorf("ip: %q is not an address", ip))
		return
	}
	now, who := s.now(), actor(r)
	gone, err := s.permits.Remove(r.Context(), now, who, p.Addr())
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no relay permit covers %s", p.Addr()))
		return
	}
	if err != nil {
		s.internal(w, "removing relay permit", err)
		return
	}
	s.log.Info("relay permit removed", "ip", prefixText(gone.Prefix), "actor", who)
	writeJSON(w, http.StatusOK, FromPermit(&gone, now))
}

// checkComment bounds a manual comment and keeps it on one line.
func checkComment(c string) error {
	if len(c) > rules.MaxCommentLen {
		return fmt.Errorf("comment: longer than %d bytes", rules.MaxCommentLen)
	}
	for _, r := range c {
		if r < 0x20 || r == 0x7f {
			return errors.New("comment: has a control character")
		}
	}
	return nil
}

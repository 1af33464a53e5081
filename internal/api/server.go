package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"mailgate/internal/abuse"
	"mailgate/internal/password"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// maxRequestBytes bounds an API request body; an import of many rules is
// sent in batches below it.
const maxRequestBytes = 64 << 20

// Decider is what explain needs from the engine.
type Decider interface {
	Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict
	Message(a *policy.Attempt, v *policy.Verdict) string
	Counters(a *policy.Attempt, now time.Time) (abuse.Counters, bool)
}

// Server serves the admin API.
type Server struct {
	book      *Rulebook
	bans      *Banbook
	engine    Decider
	idx       *rules.Index
	log       *slog.Logger
	version   string
	token     string // required on TCP connections when set
	tokenHash [sha256.Size]byte
	now       func() time.Time
	started   time.Time
	geoip     atomic.Bool // country rules can match: a GeoIP database is configured
	permits   *Permitbook // nil: relay permits are off
	onLogin   OnLoginFunc // nil: relay permits are off
	limits    LimitLister // nil: sending limits are off
	fw        Firewall    // nil: the firewall is off
	fwMode    string
	fwDiff    func(want, have string) string

	bf         BruteForce                           // nil: no brute-force state is served
	statusMore func(now time.Time, out *StatusJSON) // nil: see WithStatus
	health     func(ctx context.Context) error      // nil: always healthy; see WithHealth
	onSurgeEnd func(now time.Time, actor string)    // see WithBruteForce

	backup BackupFunc // nil: GET /v1/backup answers 404

	dnsbl DNSBLFunc // nil: explain asks no blocklist

	reloadFn func(ctx context.Context, actor string) ReloadJSON // nil: POST /v1/reload answers 409

	pw      *password.Checker // nil: the password endpoints answer 409
	pwLimit *password.Limiter
	pwFlags *password.Flags
	pwDays  func() int
}

// NewServer returns the admin API over book and engine. token, if not
// empty, is the bearer token required on connections that are not over a
// unix socket.
func NewServer(book *Rulebook, bans *Banbook, engine Decider, log *slog.Logger, version, token string) *Server {
	return &Server{book: book, bans: bans, engine: engine, idx: book.idx, log: log, version: version,
		token: token, tokenHash: sha256.Sum256([]byte(token)), now: time.Now, started: time.Now()}
}

// DNSBLFunc looks an explained attempt up in the DNS blocklists as the
// doors would (filling in a.DNSBL) and returns each zone's answer; nil
// when DNSBL is off.
type DNSBLFunc func(ctx context.Context, a *policy.Attempt, now time.Time) *DNSBLJSON

// WithDNSBL makes explain look attempts up in the DNS blocklists with f.
func (s *Server) WithDNSBL(f DNSBLFunc) *Server {
	s.dnsbl = f
	return s
}

// WithGeoIP tells the server whether a GeoIP database is configured.
// Without one, rules matching countries are refused: they would never
// match, and an allow rule by country would shut the account out.
func (s *Server) WithGeoIP(on bool) *Server {
	s.SetGeoIP(on)
	return s
}

// SetGeoIP is WithGeoIP for a running server (a reload).
func (s *Server) SetGeoIP(on bool) { s.geoip.Store(on) }

// WithRelay serves the relay permit endpoints over pb, and login reports
// (POST /v1/logins) through onLogin. Without it they answer 409: relay
// permits are disabled.
func (s *Server) WithRelay(pb *Permitbook, onLogin OnLoginFunc) *Server {
	s.permits, s.onLogin = pb, onLogin
	return s
}

// WithLimits serves the senders' usage (GET /v1/limits) from l. Without
// it (or with a nil interface, not a nil pointer) the list is empty.
func (s *Server) WithLimits(l LimitLister) *Server {
	s.limits = l
	return s
}

type connKey struct{}

// ConnContext stores the connection in the request context, so handlers
// can read the peer's credentials. Set it as http.Server.ConnContext.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, VersionJSON{Version: s.version, Rules: s.idx.Len()})
	})
	mux.HandleFunc("GET /v1/rules", s.listRules)
	mux.HandleFunc("POST /v1/rules", s.addRules)
	mux.HandleFunc("DELETE /v1/rules/{id}", s.removeRule)
	mux.HandleFunc("POST /v1/explain", s.explain)
	mux.HandleFunc("GET /v1/audit", s.audit)
	mux.HandleFunc("GET /v1/firewall", s.showFirewall)
	mux.HandleFunc("POST /v1/firewall/apply", s.applyFirewall)
	mux.HandleFunc("GET /v1/bans", s.listBans)
	mux.HandleFunc("POST /v1/bans", s.addBan)
	mux.HandleFunc("DELETE /v1/bans/{id}", s.removeBans)
	mux.HandleFunc("DELETE /v1/bans", s.removeBans)
	mux.HandleFunc("GET /v1/permits", s.listPermits)
	mux.HandleFunc("POST /v1/permits", s.addPermit)
	mux.HandleFunc("DELETE /v1/permits", s.removePermit)
	mux.HandleFunc("POST /v1/logins", func(w http.ResponseWriter, r *http.Request) {
		serveLogin(w, r, s.onLogin, s.log, s.now(), "")
	})
	mux.HandleFunc("GET /v1/limits", s.listLimits)
	mux.HandleFunc("GET /v1/knowngood", s.listKnownGood)
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/attack", s.showAttack)
	mux.HandleFunc("POST /v1/attack/end", s.endAttack)
	mux.HandleFunc("GET /v1/backup", s.serveBackup)
	mux.HandleFunc("POST /v1/reload", s.reload)
	mux.HandleFunc("POST /v1/password/check", s.checkPassword)
	mux.HandleFunc("GET /v1/password/weak", s.listWeak)
	return s.authenticate(mux)
}

// authenticate lets unix-socket peers through (the socket's file mode is
// the access control) and asks TCP peers for the bearer token.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Value(connKey{}).(*net.UnixConn); ok {
			next.ServeHTTP(w, r)
			return
		}
		if _, ok := actorOf(r); ok {
			next.ServeHTTP(w, r) // the console, in this process (WithActor)
			return
		}
		if !s.tokenOK(r) {
			writeError(w, http.StatusUnauthorized, errors.New("a valid bearer token is required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// tokenOK reports whether r carries the bearer token. Both sides are
// hashed first: ConstantTimeCompare returns at once for inputs of
// different lengths, which would tell a guesser the token's length.
func (s *Server) tokenOK(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if s.token == "" || !ok {
		return false
	}
	h := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1
}

// actor names who made a change: the unix user at the other end of the
// socket (from SO_PEERCRED), plus the name the CLI says it runs for (sudo),
// or "api-token" over TCP.
func actor(r *http.Request) string {
	if who, ok := actorOf(r); ok {
		return who
	}
	who := "api-token"
	if c, ok := r.Context().Value(connKey{}).(*net.UnixConn); ok {
		who = "unknown"
		if raw, err := c.SyscallConn(); err == nil {
			var cred *syscall.Ucred
			raw.Control(func(fd uintptr) {
				cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
			})
			if cred != nil {
				who = "uid " + strconv.Itoa(int(cred.Uid))
				if u, err := user.LookupId(strconv.Itoa(int(cred.Uid))); err == nil {
					who = u.Username
				}
			}
		}
	}
	if as := strings.TrimSpace(r.Header.Get("X-Mailgate-User")); as != "" && as != who && len(as) <= 64 && !strings.ContainsAny(as, "\r\n") {
		who += " (for " + as + ")"
	}
	return who
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	rs, err := s.book.List(r.Context())
	if err != nil {
		s.internal(w, "listing rules", err)
		return
	}
	acct := r.URL.Query().Get("account")
	if acct != "" {
		if acct, err = rules.NormalizeAccount(acct); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("account: %w", err))
			return
		}
	}
	out := make([]RuleJSON, 0, len(rs))
	for i := range rs {
		if acct == "" || rs[i].Account == acct {
			out = append(out, FromRule(&rs[i]))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// addRules takes one rule object or an array of them (an import); all are
// added in one transaction or none is.
func (s *Server) addRules(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body: %w", err))
		return
	}
	var in []RuleJSON
	single := len(body) > 0 && body[0] == '{'
	if single {
		var one RuleJSON
		err = strictUnmarshal(body, &one)
		in = []RuleJSON{one}
	} else {
		err = strictUnmarshal(body, &in)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return
	}
	rs := make([]rules.Rule, len(in))
	for i := range in {
		if rs[i], err = in[i].Rule(); err != nil {
			if !single {
				err = fmt.Errorf("rule %d: %w", i+1, err)
			}
			writeError(w, http.StatusBadRequest, err)
			return
		}
		if rs[i].Countries != "" && !s.geoip.Load() {
			writeError(w, http.StatusBadRequest, errors.New("match: country rules need a GeoIP database; set [geoip] database in the config and restart mailgate"))
			return
		}
	}
	who := actor(r)
	added, err := s.book.Add(r.Context(), s.now(), who, rs)
	if err != nil {
		s.internal(w, "adding rules", err)
		return
	}
	s.log.Info("rules added", "count", len(added), "actor", who)
	out := make([]RuleJSON, len(added))
	for i := range added {
		out[i] = FromRule(&added[i])
	}
	if single {
		writeJSON(w, http.StatusCreated, out[0])
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) removeRule(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("rule id %q is not a positive number", r.PathValue("id")))
		return
	}
	who := actor(r)
	gone, err := s.book.Remove(r.Context(), s.now(), who, id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no rule with id %d", id))
		return
	}
	if err != nil {
		s.internal(w, "removing rule", err)
		return
	}
	s.log.Info("rule removed", "id", id, "actor", who)
	writeJSON(w, http.StatusOK, FromRule(&gone))
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	var in ExplainRequest
	if !readSmallJSON(w, r, &in) {
		return
	}
	var err error
	a := policy.Attempt{Login: rules.NormalizeLogin(in.Account), Door: "explain", PwHash: in.PwHash}
	if a.Client, err = rules.ParseAddr(in.IP); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("ip: %q is not an IP address", in.IP))
		return
	}
	svc, err := rules.ParseService(in.Service)
	if err != nil || svc == rules.AllServices {
		writeError(w, http.StatusBadRequest, fmt.Errorf("service: want one of imap, pop3, smtp, submission, sieve (got %q)", in.Service))
		return
	}
	a.Service = svc
	tr := &policy.Trace{}
	now := s.now()
	var dnsbl *DNSBLJSON
	if s.dnsbl != nil {
		dnsbl = s.dnsbl(r.Context(), &a, now)
	}
	v := s.engine.Decide(&a, now, tr)
	out := ExplainResponse{
		Verdict: v.Action.String(), Reason: v.Reason.String(), Rule: v.RuleID, Ban: v.BanID,
		Message: s.engine.Message(&a, &v), Explanation: v.Explain(&a),
		Account: a.Login, IP: a.Client.String(), Service: a.Service.String(), Country: a.Country, Checks: tr.Checks,
		DNSBL: dnsbl,
	}
	if v.Delay > 0 {
		out.Delay = v.Delay.String()
		out.DelaySeconds = v.Delay.Seconds()
	}
	if c, ok := s.engine.Counters(&a, now); ok {
		out.Counters = &c
	}
	if v.BanID != 0 && s.bans != nil {
		for _, b := range s.bans.t.Bans(now) {
			if b.ID == v.BanID {
				j := FromBan(&b, now)
				out.BanDetail = &j
			}
		}
	}
	if v.RuleID != 0 {
		if rule, ok := s.book.Get(r.Context(), v.RuleID); ok {
			j := FromRule(&rule)
			out.RuleDetail = &j
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100000 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %q is not a number from 1 to 100000", l))
			return
		}
		limit = n
	}
	es, err := s.book.store.Audit(r.Context(), limit)
	if err != nil {
		s.internal(w, "reading audit trail", err)
		return
	}
	out := make([]AuditJSON, 0, len(es))
	for _, e := range es {
		out = append(out, AuditJSON{ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Op: e.Op, Object: "rule", RuleID: e.RuleID, Detail: e.Detail})
	}
	if s.bans != nil {
		bes, err := s.bans.store.BanAudit(r.Context(), limit)
		if err != nil {
			s.internal(w, "reading ban audit trail", err)
			return
		}
		for _, e := range bes {
			out = append(out, AuditJSON{ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Op: e.Op, Object: "ban", BanID: e.RuleID, Detail: e.Detail})
		}
	}
	if s.permits != nil {
		pes, err := s.permits.store.PermitAudit(r.Context(), limit)
		if err != nil {
			s.internal(w, "reading permit audit trail", err)
			return
		}
		for _, e := range pes {
			out = append(out, AuditJSON{ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Op: e.Op, Object: "permit", Detail: e.Detail})
		}
	}
	slices.SortStableFunc(out, func(a, b AuditJSON) int { return b.At.Compare(a.At) })
	writeJSON(w, http.StatusOK, out[:min(len(out), limit)])
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	if s.unavailable(w, what, err) {
		return
	}
	s.log.Error(what, "err", err)
	writeError(w, http.StatusInternalServerError, fmt.Errorf("%s: %w", what, err))
}

// unavailable answers 503 with the store's one designed message when err
// is a change the store could not take because its server is down
// (nothing was changed), and reports whether it did.
func (s *Server) unavailable(w http.ResponseWriter, what string, err error) bool {
	var u *store.Unavailable
	if !errors.As(err, &u) {
		return false
	}
	s.log.Warn(what+": refused, the store is unreachable", "kind", "store", "err", u.Err)
	writeError(w, http.StatusServiceUnavailable, u)
	return true
}

// readSmallJSON reads a request body of at most 64 KiB into v, strictly;
// on failure it has answered 400 and returns false.
func readSmallJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = strictUnmarshal(body, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("request body: %w", err))
		return false
	}
	return true
}

func strictUnmarshal(b []byte, v any) error {
	// JSON text is UTF-8 (RFC 8259 §8.1). encoding/json would turn each
	// invalid byte into U+FFFD, so that "bob\xff" became another login
	// ("bob\uFFFD"): banned, ruled or granted a permit under a name no
	// client ever sent.
	if !utf8.Valid(b) {
		return errors.New("request body is not valid UTF-8")
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorJSON{Error: err.Error()})
}

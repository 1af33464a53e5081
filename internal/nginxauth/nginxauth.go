// Package nginxauth is mailgate's nginx door: an http.Handler speaking
// the protocol of nginx's mail auth_http module. For every login through
// its IMAP, POP3 or SMTP proxy nginx sends one `GET <uri> HTTP/1.0`
// request, on a new connection, whose headers carry the login, the
// cleartext password, the protocol, the attempt number and the client's
// address; it reads only the reply's headers: Auth-Status OK with
// Auth-Server and Auth-Port sends the client on to a backend, any other
// Auth-Status text is shown to the client as the refusal, Auth-Wait makes
// nginx hold the client that many seconds and keep the session, and
// Auth-Error-Code is the SMTP reply code.
//
// The wire rules implemented here, with captures from nginx 1.22.1, are in
// protocols.md §2 (request headers §2.1, reply §2.2, captures §2.3, client
// effects §2.4) and in nginx's documentation:
// https://nginx.org/en/docs/mail/ngx_mail_auth_http_module.html and
// https://nginx.org/en/docs/mail/ngx_mail_smtp_module.html .
//
// nginx never re-checks an SMTP password: it hands the backend
// `XCLIENT LOGIN=` and no password (protocols.md §2.2, §6 item 10), so this
// door verifies the password itself, through a Verifier (Dovecot's auth
// service or an IMAP login, internal/passcheck), before it answers OK.
// Each password result feeds the brute-force counters through
// Config.OnReport, with the password bucketed by passcheck.PwHash so that
// a stale client (one wrong password repeated) is told from a guesser;
// the password itself is then forgotten.
//
// It is a thin I/O layer: it does not decide (internal/policy does), does
// not store or check passwords (the Verifier does), does not listen (the
// caller mounts the Handler on its own http.Server) and does not count
// failures (Config.OnReport gets every password result).
package nginxauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/throttle"
)

// Decider decides attempts; *policy.Engine is one. Decide also fills in
// the attempt's Country.
type Decider interface {
	Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict
	Message(a *policy.Attempt, v *policy.Verdict) string
}

// Verifier checks a cleartext password; *passcheck.Dovecot and
// *passcheck.IMAP are ones. ok is false for a wrong password or an
// unknown user; err is for a verifier that could not answer.
type Verifier interface {
	Verify(ctx context.Context, r *passcheck.Request) (ok bool, err error)
}

// PasswordPolicy says whether a password fails the password policy;
// *password.Checker is one.
type PasswordPolicy interface {
	Weak(pw, login string) bool
}

// WeakFlags keeps the logins seen with a weak password; *password.Flags
// is one. Both run on the request path and must not block.
type WeakFlags interface {
	Mark(login string, now time.Time)
	Clear(login string)
}

// Config configures a Handler. The zero value of a field means its
// default, except FailWait, where 0 means "no Auth-Wait" (mailgate's
// config file defaults fail_wait to 3s).
type Config struct {
	// SecretHeader is the header nginx adds with auth_http_header;
	// "" means "X-Auth-Key".
	SecretHeader string
	// Secret, if not empty, must be the value of SecretHeader; it is
	// compared in constant time. A wrong or missing one is refused
	// (HTTP 403) and logged, at a bounded rate.
	Secret string
	// Backends maps "imap", "pop3" and "smtp" to the Auth-Server and
	// Auth-Port of an OK reply. A protocol without a backend is refused
	// with a temporary failure.
	Backends map[string]netip.AddrPort
	// Verify says, per protocol, whether the password is checked before
	// OK. "smtp" is always checked, whatever this says: nginx passes SMTP
	// sessions on without a password. An IMAP or POP3 backend checks the
	// password again itself; leaving them out saves a check per login,
	// but then their failures are not counted.
	Verify map[string]bool
	// FailWait is the Auth-Wait after a wrong password: nginx tells the
	// client after that long and keeps the session for another try.
	// 0 means no Auth-Wait: the client is told at once and disconnected.
	FailWait time.Duration
	// MaxWaitAttempts stops Auth-Wait once Auth-Login-Attempt is above it
	// (nginx keeps memory per attempt; its docs advise 10 to 20);
	// 0 means DefaultMaxWaitAttempts.
	MaxWaitAttempts int
	// SMTPErrorCode is the Auth-Error-Code of SMTP refusals and wrong
	// passwords; "" means DefaultSMTPErrorCode.
	SMTPErrorCode string
	// FailMessage is the text for a wrong password; "" means
	// DefaultFailMessage.
	FailMessage string
	// TempFailMessage is the text when the password cannot be checked
	// (the verifier is down) or the protocol has no backend; "" means
	// DefaultTempFailMessage.
	TempFailMessage string
	// MaxTarpit caps the server-side sleep of a tarpitted attempt (a stale
	// client); 0 means DefaultMaxTarpit. Keep it well below nginx's
	// auth_http_timeout (60s by default).
	MaxTarpit time.Duration
	// OnReport, if set, gets every password result (not refusals by the
	// engine, not verifier errors), after the result is logged, with
	// a.PwHash set. It runs on the request's goroutine and must not keep a.
	OnReport func(a *policy.Attempt, success bool, now time.Time)
	// Password, if set, checks every password the Verifier found correct
	// against the password policy ([password] check_at_login): a weak
	// one sets Attempt.WeakPassword (weak_password=1 on the auth=success
	// line) and is marked in Flags; a good one clears the login's flag.
	// A wrong password is never checked: its answer, and the time it
	// takes, do not change.
	Password PasswordPolicy
	// Flags receives the weak-password flags; nil keeps none.
	Flags WeakFlags
	// RefuseWeakSMTP refuses an SMTP login whose correct password is weak
	// (reason weak_password, the engine's message for it), instead of OK.
	// The refusal comes only after the correct password, so it tells the
	// client nothing the OK it replaces would not have; IMAP and POP3
	// still log in, and the user can read why.
	RefuseWeakSMTP bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Nonce salts PwHash; nil means 16 random bytes.
	Nonce []byte
	// DNSBL, if set, is called before the engine decides, to fill in the
	// attempt's DNS blocklist answer ((*dnsbl.Gate).Fill); the password
	// is checked only after.
	DNSBL func(ctx context.Context, a *policy.Attempt, now time.Time)
}

// Defaults of Config.
const (
	DefaultSecretHeader    = "X-Auth-Key"
	DefaultMaxWaitAttempts = 10
	DefaultSMTPErrorCode   = "535 5.7.8"
	DefaultFailMessage     = "Invalid login or password"
	DefaultTempFailMessage = "Temporary authentication failure, try again later"
	DefaultMaxTarpit       = 30 * time.Second
	// TempFailSMTPCode is the Auth-Error-Code of temporary failures
	// (RFC 4954: 454 4.7.0 Temporary authentication failure).
	TempFailSMTPCode = "454 4.7.0"
	// UnsupportedMessage refuses methods whose password mailgate cannot
	// see (APOP, CRAM-MD5) or check (EXTERNAL).
	UnsupportedMessage = "Authentication method not supported, use plain"
	// BadRequestMessage refuses a request the door cannot read.
	BadRequestMessage = "Login refused: malformed authentication request"
)

// maxMessage bounds a refusal text. nginx reads the whole auth_http reply
// into a 1024-byte buffer (ngx_mail_auth_http_read_handler) and fails the
// login with "internal server error" when it does not fit; the rest of
// the reply is under 200 bytes.
const maxMessage = 400

// maxLogErr bounds an error quoted in a diagnostic log line.
const maxLogErr = 200

// Handler serves nginx's auth_http requests on any path. Build it with
// NewHandler.
type Handler struct {
	d      Decider
	v      Verifier
	dlog   *policy.DecisionLog
	log    *slog.Logger
	now    func() time.Time
	report func(a *policy.Attempt, success bool, now time.Time)
	dnsbl  func(ctx context.Context, a *policy.Attempt, now time.Time)
	nonce  []byte

	pw         PasswordPolicy
	flags      WeakFlags
	refuseWeak bool

	secretHeader string // canonical form
	secretHash   [sha256.Size]byte
	hasSecret    bool

	backends  [numProtocols]backend
	verify    [numProtocols]bool
	failWait  []string // Auth-Wait value; nil for none
	maxWait   int
	smtpCode  []string
	failMsg   []string
	tempMsg   []string
	maxTarpit time.Duration

	limit throttle.Log
}

// backend is a protocol's Auth-Server and Auth-Port, rendered once.
type backend struct {
	ok           bool
	server, port []string
}

// NewHandler returns a handler asking d and checking passwords with v.
// dlog receives the decision lines (nil discards them); log receives
// diagnostics (nil discards them). v may be nil only when no protocol
// needs a password check; otherwise those logins get a temporary failure.
func NewHandler(cfg Config, d Decider, v Verifier, dlog *policy.DecisionLog, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		d:          d,
		v:          v,
		dlog:       dlog,
		log:        log,
		now:        cfg.Now,
		report:     cfg.OnReport,
		dnsbl:      cfg.DNSBL,
		nonce:      cfg.Nonce,
		maxWait:    cfg.MaxWaitAttempts,
		maxTarpit:  cfg.MaxTarpit,
		pw:         cfg.Password,
		flags:      cfg.Flags,
		refuseWeak: cfg.RefuseWeakSMTP,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.nonce == nil {
		h.nonce = make([]byte, 16)
		rand.Read(h.nonce)
	}
	if h.maxWait <= 0 {
		h.maxWait = DefaultMaxWaitAttempts
	}
	if h.maxTarpit <= 0 {
		h.maxTarpit = DefaultMaxTarpit
	}
	name := cfg.SecretHeader
	if name == "" {
		name = DefaultSecretHeader
	}
	h.secretHeader = http.CanonicalHeaderKey(name)
	if cfg.Secret != "" {
		h.secretHash = sha256.Sum256([]byte(cfg.Secret))
		h.hasSecret = true
	}
	for p := range numProtocols {
		if ap, ok := cfg.Backends[p.String()]; ok && ap.IsValid() && ap.Port() != 0 {
			h.backends[p] = backend{
				ok:     true,
				server: []string{ap.Addr().Unmap().WithZone("").String()},
				port:   []string{strconv.Itoa(int(ap.Port()))},
			}
		}
		h.verify[p] = cfg.Verify[p.String()]
	}
	h.verify[SMTP] = true // protocols.md §2.2: the SMTP backend gets no password
	if s := waitSeconds(cfg.FailWait); s > 0 {
		h.failWait = []string{strconv.FormatInt(s, 10)}
	}
	h.smtpCode = []string{orDefault(policy.ReplyText(cfg.SMTPErrorCode, maxMessage), DefaultSMTPErrorCode)}
	h.failMsg = []string{statusText(cfg.FailMessage, DefaultFailMessage)}
	h.tempMsg = []string{statusText(cfg.TempFailMessage, DefaultTempFailMessage)}
	return h
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var (
	statusOK       = []string{"OK"}
	tempSMTPCode   = []string{TempFailSMTPCode}
	unsupportedMsg = []string{UnsupportedMessage}
	badRequestMsg  = []string{BadRequestMessage}
)

// reply is what the door answers; see write.
type reply struct {
	code   int      // HTTP status, for people reading access logs; nginx ignores it
	status []string // Auth-Status
	wait   []string // Auth-Wait, or nil
	smtp   []string // Auth-Error-Code (SMTP only), or nil
	be     *backend // Auth-Server and Auth-Port, with status OK
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.now()
	if h.hasSecret && !h.authorized(r.Header) {
		h.diag(now, "nginx: missing or wrong shared secret", "status", http.StatusForbidden, "remote", r.RemoteAddr,
			"err", fmt.Sprintf("header %s sent: %t", h.secretHeader, len(r.Header[h.secretHeader]) > 0))
		h.write(w, reply{code: http.StatusForbidden, status: h.tempMsg, smtp: smtpOf(r.Header, tempSMTPCode)})
		return
	}
	req, err := ParseRequest(r.Header)
	if err != nil {
		h.diag(now, "nginx: bad request", "status", http.StatusBadRequest, "remote", r.RemoteAddr, "err", limitErr(err.Error()))
		h.write(w, reply{code: http.StatusBadRequest, status: badRequestMsg, smtp: smtpOf(r.Header, h.smtpCode)})
		return
	}
	h.serve(r.Context(), w, &req, now)
	req.Pass = "" // drop the last reference this door holds
}

// serve answers a parsed request: method, decision, tarpit, password.
func (h *Handler) serve(ctx context.Context, w http.ResponseWriter, req *Request, now time.Time) {
	proto := req.Protocol
	var smtp []string // the refusal code, for SMTP only
	if proto == SMTP {
		smtp = h.smtpCode
	}
	switch req.Method {
	case MethodPlain, MethodNone:
	default:
		// APOP and CRAM-MD5 send a digest, not the password, and EXTERNAL
		// a certificate: nothing this door can verify. The docs say
		// pop3_auth plain; smtp_auth login plain.
		h.diag(now, "nginx: authentication method not supported (configure nginx with pop3_auth plain, imap_auth plain, smtp_auth login plain)",
			"method", req.Method.String(), "protocol", proto.String(), "ip", req.Client.String())
		h.write(w, reply{code: http.StatusOK, status: unsupportedMsg, smtp: smtp})
		return
	}

	a := policy.Attempt{
		Service: rules.ProtocolService(proto.String()),
		Client:  req.Client,
		Local:   req.Local,
		TLS:     req.TLS,
		Door:    "nginx",
	}
	if req.Method == MethodPlain {
		a.Login = rules.NormalizeLogin(req.User)
		if req.Pass != "" {
			// Set before Decide, so that a stale client (this password
			// failed here before) is recognised and tarpitted.
			a.PwHash = passcheck.PwHash(h.nonce, a.Login, req.Pass)
		}
	}
	if policy.BadLogin(a.Login) {
		// No account has such a login (Auth-User is not UTF-8): refused
		// as a wrong password is, before the engine sees it (nothing is
		// counted or kept for it) and without a password check.
		v := policy.BadLoginVerdict()
		h.dlog.Verdict(now, &a, &v)
		rp := reply{code: http.StatusOK, status: h.failMsg, smtp: smtp}
		if req.Attempt <= h.maxWait {
			rp.wait = h.failWait
		}
		h.write(w, rp)
		return
	}
	if h.dnsbl != nil {
		h.dnsbl(ctx, &a, now)
	}
	v := h.d.Decide(&a, now, nil)
	h.dlog.Verdict(now, &a, &v)

	switch v.Action {
	case policy.Deny:
		rp := reply{code: http.StatusOK, status: []string{statusText(h.d.Message(&a, &v), DefaultFailMessage)}, smtp: smtp}
		if v.Delay > 0 && req.Attempt <= h.maxWait {
			// A banned login: nginx holds the client, then refuses;
			// the password is not checked.
			rp.wait = []string{strconv.FormatInt(waitSeconds(v.Delay), 10)}
		}
		h.write(w, rp)
		return
	case policy.Tarpit:
		if !sleep(ctx, min(v.Delay, h.maxTarpit)) {
			// nginx gave up (auth_http_timeout) or the client left:
			// nobody reads this, but a reply without Auth-Status must
			// never be left for an OK.
			h.write(w, h.tempFail(req))
			return
		}
	}

	be := &h.backends[proto]
	if !be.ok {
		h.diag(now, "nginx: no backend configured for the protocol; refusing", "protocol", proto.String(), "login", a.Login, "ip", a.Client.String())
		h.write(w, h.tempFail(req))
		return
	}
	if req.Method == MethodNone || !h.verify[proto] {
		// An MTA delivering mail has no login; an IMAP or POP3 backend
		// checks the password itself.
		h.write(w, reply{code: http.StatusOK, status: statusOK, be: be})
		return
	}
	if h.v == nil {
		h.diag(now, "nginx: no password verifier configured; refusing", "protocol", proto.String(), "login", a.Login, "ip", a.Client.String())
		h.write(w, h.tempFail(req))
		return
	}

	pr := passcheck.Request{
		Service:    proto.String(),
		Login:      req.User,
		Password:   req.Pass,
		Client:     req.Client,
		ClientPort: req.ClientPort,
		Local:      req.Local.Addr(),
		TLS:        req.TLS,
	}
	ok, err := h.v.Verify(ctx, &pr)
	pr.Password = ""
	if err != nil {
		msg := redact(err.Error(), req.Pass)
		h.diag(h.now(), "nginx: password check failed", "protocol", proto.String(), "login", a.Login, "ip", a.Client.String(), "err", limitErr(msg))
		h.write(w, h.tempFail(req))
		return
	}
	if ok && h.pw != nil {
		// Only a correct password is checked, and only a flag is kept.
		a.WeakPassword = h.pw.Weak(req.Pass, a.Login)
		if h.flags != nil {
			if a.WeakPassword {
				h.flags.Mark(a.Login, h.now())
			} else {
				h.flags.Clear(a.Login)
			}
		}
	}
	done := h.now()
	h.dlog.Result(done, &a, ok)
	if h.report != nil {
		h.report(&a, ok, done)
	}
	if ok && a.WeakPassword && h.refuseWeak && proto == SMTP {
		v := policy.Verdict{Action: policy.Deny, Reason: policy.ReasonWeakPassword}
		h.dlog.Verdict(done, &a, &v)
		h.write(w, reply{code: http.StatusOK, status: []string{statusText(h.d.Message(&a, &v), DefaultFailMessage)}, smtp: smtp})
		return
	}
	if ok {
		h.write(w, reply{code: http.StatusOK, status: statusOK, be: be})
		return
	}
	rp := reply{code: http.StatusOK, status: h.failMsg, smtp: smtp}
	if req.Attempt <= h.maxWait {
		rp.wait = h.failWait
	}
	h.write(w, rp)
}

// tempFail is the reply when the door cannot answer for the password: a
// temporary failure, with the same Auth-Wait as a wrong password.
func (h *Handler) tempFail(req *Request) reply {
	rp := reply{code: http.StatusServiceUnavailable, status: h.tempMsg}
	if req.Protocol == SMTP {
		rp.smtp = tempSMTPCode
	}
	if req.Attempt <= h.maxWait {
		rp.wait = h.failWait
	}
	return rp
}

// write sends rp. The headers are prepared slices (values are never
// shared with user input unless cleaned by statusText); Date is dropped
// to keep the reply small and the same for equal answers.
func (h *Handler) write(w http.ResponseWriter, rp reply) {
	hd := w.Header()
	hd["Date"] = nil
	hd["Auth-Status"] = rp.status
	if rp.be != nil {
		hd["Auth-Server"] = rp.be.server
		hd["Auth-Port"] = rp.be.port
	}
	if rp.wait != nil {
		hd["Auth-Wait"] = rp.wait
	}
	if rp.smtp != nil {
		hd["Auth-Error-Code"] = rp.smtp
	}
	w.WriteHeader(rp.code)
}

// smtpOf returns code when the request may be SMTP: before a request is
// parsed the protocol is not known for sure, and nginx ignores
// Auth-Error-Code for IMAP and POP3 anyway.
func smtpOf(hd http.Header, code []string) []string {
	if vs := hd[hProtocol]; len(vs) == 1 && (strings.EqualFold(vs[0], "imap") || strings.EqualFold(vs[0], "pop3")) {
		return nil
	}
	return code
}

// authorized checks the shared secret in constant time; its length is
// hidden too, as both sides are hashed first.
func (h *Handler) authorized(hd http.Header) bool {
	vs := hd[h.secretHeader]
	if len(vs) != 1 {
		return false
	}
	got := sha256.Sum256([]byte(vs[0]))
	return subtle.ConstantTimeCompare(got[:], h.secretHash[:]) == 1
}

// sleep waits d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitSeconds is d in whole seconds, rounded up; 0 for d ≤ 0.
func waitSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	s := int64((d + time.Second - 1) / time.Second)
	return min(s, math.MaxInt32)
}

// statusText makes s safe as an Auth-Status failure text (see clean). A
// text nginx would read as something else, "OK", "WAIT" or nothing at all
// (an empty SMTP failure looks like success to nginx and ends in an
// internal server error), is replaced with def.
func statusText(s, def string) string {
	s = strings.TrimSpace(policy.ReplyText(s, maxMessage))
	if s == "" || s == "OK" || s == "WAIT" {
		return def
	}
	return s
}

// redact removes a password from a message, in case a verifier's error
// quoted it (passcheck's never do).
func redact(msg, pass string) string {
	if pass == "" || !strings.Contains(msg, pass) {
		return msg
	}
	return strings.ReplaceAll(msg, pass, "[redacted]")
}

func limitErr(s string) string {
	if len(s) > maxLogErr {
		return s[:maxLogErr]
	}
	return s
}

// diag logs a diagnostic line, at most throttle.Burst per throttle.Interval, so that a
// flood of bad requests (a wrong secret, a scanner, Dovecot down under
// load) cannot flood the log; the next line says how many were left out.
func (h *Handler) diag(now time.Time, msg string, args ...any) {
	ok, skipped := h.limit.Allow(now)
	if !ok {
		return
	}
	if skipped > 0 {
		args = append(args, "similar_lines_suppressed", skipped)
	}
	h.log.Warn(msg, args...)
}

// Package dovecot is mailgate's Dovecot door: an http.Handler speaking
// Dovecot's authentication policy protocol (auth_policy_server_url).
// Dovecot POSTs a JSON body to "<url>?command=allow" before (and, for a
// correct password, again after) its passdb lookup, and to
// "?command=report" with the outcome; the handler turns each body into a
// policy.Attempt, asks the decision engine and answers
// {"status":N,"msg":"..."}.
//
// The wire rules implemented here, with captures from Dovecot 2.3.19.1,
// are in protocols.md §1 (settings §1.1, body §1.2, replies §1.4, call
// sequences §1.5, captures §1.6, 2.4 differences §1.8) and in Dovecot's
// documentation:
// https://doc.dovecot.org/2.3/configuration_manual/authentication/auth_policy/ and
// https://doc.dovecot.org/2.4.1/core/config/auth/policy.html .
//
// It is a thin I/O layer: it does not decide anything (internal/policy
// does), does not verify passwords (Dovecot's passdb does; the pwhash it
// receives is a 12-bit bucket), does not listen on a socket (the caller
// mounts the Handler on its own http.Server) and does not count failures
// (the caller's Config.OnReport gets every password result).
package dovecot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/throttle"
)

// Decider decides attempts; *policy.Engine is one.
type Decider interface {
	Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict
	Message(a *policy.Attempt, v *policy.Verdict) string
}

// Config configures a Handler.
type Config struct {
	// APIKey, if not empty, must be presented by Dovecot: as the X-API-Key
	// header (auth_policy_server_api_header = X-API-Key: <key>, or just
	// <key>), or as the password of HTTP Basic auth (user:<key>@ in
	// auth_policy_server_url, or auth_policy_server_api_header =
	// Authorization: Basic <base64 of user:key>).
	APIKey string
	// MaxBodyBytes bounds a request body; larger ones get HTTP 413.
	// 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// OnReport, if set, is called for every valid command=report that is
	// not a refusal by mailgate itself (policy_reject), after the result is
	// logged. It runs on the request's goroutine and must not keep a.
	OnReport func(a *policy.Attempt, success bool, now time.Time)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxTarpit is the longest tarpit the engine may answer. A session is
	// remembered that much longer, so that the after-auth call of a
	// tarpitted login is still known as one: were it forgotten, the call
	// would look like a new before-auth call and a banned login's refusal
	// would be lost.
	MaxTarpit time.Duration
	// DNSBL, if set, is called before the engine decides a before-auth
	// call, to fill in the attempt's DNS blocklist answer
	// ((*dnsbl.Gate).Fill). It must return within its budget, well under
	// Dovecot's policy timeout (2 s).
	DNSBL func(ctx context.Context, a *policy.Attempt, now time.Time)
}

// DefaultMaxBodyBytes is the body limit when Config.MaxBodyBytes is 0.
// Dovecot's default body is under 200 bytes.
const DefaultMaxBodyBytes = 16 << 10

// maxMessage bounds the refusal text sent to Dovecot, which shows it to
// the mail client.
const maxMessage = 400

// maxLogErr bounds an error quoted in a diagnostic log line.
const maxLogErr = 200

// Handler serves the Dovecot auth policy API on any path. Build it with
// NewHandler.
type Handler struct {
	d       Decider
	dlog    *policy.DecisionLog
	log     *slog.Logger
	now     func() time.Time
	max     int64
	report  func(a *policy.Attempt, success bool, now time.Time)
	dnsbl   func(ctx context.Context, a *policy.Attempt, now time.Time)
	keyHash [sha256.Size]byte
	hasKey  bool

	sessions *sessions
	bufs     sync.Pool // *bytes.Buffer
	limit    throttle.Log
}

// NewHandler returns a handler asking d. dlog receives the decision lines
// (nil discards them); log receives diagnostics (nil discards them).
func NewHandler(cfg Config, d Decider, dlog *policy.DecisionLog, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		d:        d,
		dlog:     dlog,
		log:      log,
		now:      cfg.Now,
		max:      cfg.MaxBodyBytes,
		report:   cfg.OnReport,
		dnsbl:    cfg.DNSBL,
		sessions: newSessions(DefaultSessionTTL+max(cfg.MaxTarpit, 0), DefaultMaxSession),
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.max <= 0 {
		h.max = DefaultMaxBodyBytes
	}
	if cfg.APIKey != "" {
		h.keyHash = sha256.Sum256([]byte(cfg.APIKey))
		h.hasKey = true
	}
	h.bufs.New = func() any { return new(bytes.Buffer) }
	return h
}

// Sessions is the number of sessions waiting for their after-auth call or
// report, for metrics and state listings.
func (h *Handler) Sessions() int { return h.sessions.len() }

var (
	replyOK       = []byte(`{"status":0,"msg":""}`)
	replyRefused  = []byte(`{"status":-1,"msg":""}`) // Dovecot's own failure text
	replyOKLen    = []string{strconv.Itoa(len(replyOK))}
	contentJSON   = []string{"application/json"}
	contentText   = []string{"text/plain; charset=utf-8"}
	allowPost     = []string{"POST"}
	wwwAuthBasic  = []string{`Basic realm="mailgate"`}
	errNoCommand  = errors.New("missing command parameter")
	errBadCommand = errors.New("unknown command (want allow or report)")
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = allowPost
		h.fail(w, r, http.StatusMethodNotAllowed, "method not allowed", nil)
		return
	}
	if h.hasKey && !h.authorized(r) {
		_, _, basic := r.BasicAuth()
		w.Header()["Www-Authenticate"] = wwwAuthBasic
		h.fail(w, r, http.StatusUnauthorized, "unauthorized", fmt.Errorf("missing or wrong API key (X-API-Key header sent: %t, basic auth sent: %t)", r.Header.Get("X-API-Key") != "", basic))
		return
	}
	cmd, err := command(r.URL.RawQuery)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad request", err)
		return
	}

	buf := h.bufs.Get().(*bytes.Buffer)
	defer h.putBuf(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.max)); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.fail(w, r, http.StatusRequestEntityTooLarge, "request body too large", err)
			return
		}
		h.fail(w, r, http.StatusBadRequest, "cannot read request body", err)
		return
	}
	body := buf.Bytes()
	req, err := ParseRequest(body)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, "bad request body", err)
		return
	}
	now := h.now()
	a := policy.Attempt{
		Login:   rules.NormalizeLogin(req.Login),
		Service: rules.ProtocolService(req.Protocol),
		Client:  req.Remote,
		Local:   req.Local,
		TLS:     req.TLS,
		PwHash:  req.PwHash,
		Session: req.SessionID,
		Door:    "dovecot",
	}
	if policy.BadLogin(a.Login) {
		h.serveBadLogin(w, cmd, &a, &req, now)
		return
	}
	if cmd == cmdReport {
		h.serveReport(w, r, &a, &req, now)
		return
	}
	a.AfterAuth = h.sessions.allow(req.SessionID, body, now)
	if h.dnsbl != nil && !a.AfterAuth {
		h.dnsbl(r.Context(), &a, now)
	}
	h.serveAllow(w, &a, now)
}

func (h *Handler) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		h.bufs.Put(b)
	}
}

// serveAllow answers command=allow (protocols.md §1.4): status 0 lets
// Dovecot go on, -1 refuses with msg shown to the client, N > 0 makes
// Dovecot wait N seconds first (before-auth only; Dovecot ignores it on
// the after-auth call, and so does the door, answering 0).
//
// Every refusal is -1, on whichever call it is decided: a refusal is
// never turned into a wait, so no amount of other traffic (a flood that
// evicts the session table) can make Dovecot let a refused login in. A
// banned login is refused on the before-auth call, so its password is
// never checked: every answer is the same whether the guess was right or
// wrong, and Dovecot adds its own failure delay. The tarpit of a banned
// login (Verdict.Delay) is for doors that can wait and refuse in one
// answer (nginx's Auth-Wait).
//
// The after-auth call comes only for a right password. A refusal there
// (a ban made by other connections since the before-auth call) carries
// no message: the client sees Dovecot's own "Authentication failed.",
// exactly what a wrong password gets, so it learns nothing about the
// guess.
func (h *Handler) serveAllow(w http.ResponseWriter, a *policy.Attempt, now time.Time) {
	v := h.d.Decide(a, now, nil)
	if v.Action == policy.Deny {
		v.Delay = 0 // this door refuses at once; the decision line must not say otherwise
	}
	if !a.AfterAuth || v.Action == policy.Deny {
		h.dlog.Verdict(now, a, &v)
	}
	switch {
	case v.Action == policy.Deny && a.AfterAuth:
		writeJSON(w, replyRefused)
	case v.Action == policy.Deny:
		var b [128]byte
		out := append(b[:0], `{"status":-1,"msg":`...)
		out = appendJSONString(out, policy.ReplyText(h.d.Message(a, &v), maxMessage))
		out = append(out, '}')
		writeJSON(w, out)
	case v.Action == policy.Tarpit && !a.AfterAuth:
		writeJSON(w, tarpitReply(v.Delay))
	default:
		writeJSON(w, replyOK)
	}
}

// serveBadLogin answers for a login that cannot be an account
// (policy.BadLogin): allow refuses it (status -1, with the text a wrong
// password gets) with a bad_login decision line; report is answered and
// ignored. Such a login is never counted, banned or stored.
func (h *Handler) serveBadLogin(w http.ResponseWriter, cmd cmdKind, a *policy.Attempt, req *Request, now time.Time) {
	if cmd == cmdReport {
		h.sessions.forget(req.SessionID, now)
		writeJSON(w, replyOK)
		return
	}
	v := policy.BadLoginVerdict()
	h.dlog.Verdict(now, a, &v)
	var b [128]byte
	out := append(b[:0], `{"status":-1,"msg":`...)
	out = appendJSONString(out, policy.ReplyText(h.d.Message(a, &v), maxMessage))
	out = append(out, '}')
	writeJSON(w, out)
}

// serveReport answers command=report: the login's outcome. Dovecot
// ignores the reply (protocols.md §1.4).
func (h *Handler) serveReport(w http.ResponseWriter, r *http.Request, a *policy.Attempt, req *Request, now time.Time) {
	if !req.HasSuccess {
		h.fail(w, r, http.StatusBadRequest, "bad request body", errors.New(`report without "success"`))
		return
	}
	h.sessions.forget(req.SessionID, now)
	// A login mailgate itself refused already has its decision line, and
	// is not a password failure: it is neither logged again nor reported
	// (it must not count toward a ban, nor extend one).
	if !req.PolicyReject {
		h.dlog.Result(now, a, req.Success)
		if h.report != nil {
			h.report(a, req.Success, now)
		}
	}
	writeJSON(w, replyOK)
}

// tarpitReply makes Dovecot wait d (whole seconds, at least 1) before it
// checks the password (protocols.md §1.4: status > 0).
func tarpitReply(d time.Duration) []byte {
	out := make([]byte, 0, 40)
	out = append(out, `{"status":`...)
	out = strconv.AppendInt(out, tarpitSeconds(d), 10)
	return append(out, `,"msg":""}`...)
}

// tarpitSeconds is a tarpit delay in whole seconds, rounded up, at least 1.
func tarpitSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return min(max(s, 1), math.MaxInt32)
}

func writeJSON(w http.ResponseWriter, body []byte) {
	hd := w.Header()
	hd["Content-Type"] = contentJSON
	if len(body) == len(replyOK) {
		hd["Content-Length"] = replyOKLen
	} else {
		hd["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(http.StatusOK)
	w.Write(body) //nolint:errcheck // the client went away; nothing to do
}

// fail answers an error status with a short text and logs a diagnostic
// line quoting at most maxLogErr bytes of err. err never holds a pwhash
// (ParseRequest's errors do not quote it).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, code int, text string, err error) {
	if err != nil {
		msg := err.Error()
		if len(msg) > maxLogErr {
			msg = msg[:maxLogErr]
		}
		if ok, skipped := h.limit.Allow(h.now()); ok {
			if skipped > 0 {
				h.log.Warn("dovecot: "+text, "status", code, "remote", r.RemoteAddr, "err", msg, "similar_lines_suppressed", skipped)
			} else {
				h.log.Warn("dovecot: "+text, "status", code, "remote", r.RemoteAddr, "err", msg)
			}
		}
	}
	hd := w.Header()
	hd["Content-Type"] = contentText
	hd["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(code)
	w.Write([]byte(text + "\n")) //nolint:errcheck // as above
}

// authorized checks the API key in constant time (the key's length is
// hidden too: both sides are hashed first).
func (h *Handler) authorized(r *http.Request) bool {
	ok := 0
	if vs := r.Header["X-Api-Key"]; len(vs) > 0 { // canonical form: no allocation
		// Dovecot keeps the space after the header's colon:
		// "X-API-Key:  myapikey" (protocols.md §1.1).
		got := sha256.Sum256([]byte(strings.TrimSpace(vs[0])))
		ok |= subtle.ConstantTimeCompare(got[:], h.keyHash[:])
	}
	if _, pass, found := r.BasicAuth(); found {
		got := sha256.Sum256([]byte(pass))
		ok |= subtle.ConstantTimeCompare(got[:], h.keyHash[:])
	}
	return ok == 1
}

type cmdKind uint8

const (
	cmdAllow cmdKind = iota + 1
	cmdReport
)

// command finds the command parameter Dovecot appends to the URL: the
// admin's URL may carry other parameters before it if it ended in '&'
// (protocols.md §1.1).
func command(rawQuery string) (cmdKind, error) {
	q := rawQuery
	found := false
	var val string
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != "command" {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			u, err := url.QueryUnescape(v)
			if err != nil {
				return 0, errBadCommand
			}
			v = u
		}
		val, found = v, true // the last one wins, as Dovecot's is last
	}
	switch {
	case !found:
		return 0, errNoCommand
	case val == "allow":
		return cmdAllow, nil
	case val == "report":
		return cmdReport, nil
	}
	return 0, errBadCommand
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 without
// control characters (see clean), but everything JSON requires is escaped
// anyway.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Package postfix is mailgate's Postfix door: three small servers Postfix
// asks while it receives mail.
//
//   - Policy delegation (check_policy_service, SMTPD_POLICY_README): Postfix
//     sends "name=value" lines ending with an empty line and reads one
//     "action=…" line and an empty line back, on a connection each smtpd
//     process keeps open. mailgate answers OK to a relay check
//     (policy_context=relaycheck, or a listener served as relay-only) from
//     an address with a relay permit (POP/IMAP-before-SMTP), applies the
//     account rules to authenticated senders (sasl_username) and their
//     sending limits at RCPT, and answers DUNNO to everything else.
//   - socketmap (socketmap_table(5)) and tcp_table (tcp_table(5)) for
//     check_client_access: the client address is looked up in the maps
//     "relay" (OK for a permit), "block" (REJECT for an address the
//     engine denies: global deny list, address bans) or "client" (both).
//     Postfix sends exact keys only; the CIDR matching is mailgate's.
//
// The wire rules, with captures from Postfix 3.7.11, are in protocols.md
// §3 (protocol §3.1, attributes §3.2, actions §3.3, placement §3.4,
// socketmap and tcp_table §3.5) and in Postfix's documentation:
// https://www.postfix.org/SMTPD_POLICY_README.html ,
// https://www.postfix.org/socketmap_table.5.html ,
// https://www.postfix.org/tcp_table.5.html , https://www.postfix.org/access.5.html .
//
// Postfix's policy delegation never sees SMTP AUTH itself (protocols.md
// §0): failed logins reach mailgate through the Dovecot door. This door
// does not grant permits (internal/relay does, from logins), does not
// count mail (internal/sendlimit does) and does not decide (internal/policy
// does); a Handler maps a request to an answer without touching a socket,
// and a Server runs the thin I/O loops around it: limits, deadlines,
// connection reuse and the connection cap.
package postfix

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
	"mailgate/internal/throttle"
)

// Engine decides attempts; *policy.Engine is one.
type Engine interface {
	Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict
	Message(a *policy.Attempt, v *policy.Verdict) string
}

// Permits finds the valid relay permit covering an address; a
// *relay.Table is one.
type Permits interface {
	Check(addr netip.Addr, now time.Time) (relay.Permit, bool)
}

// Limiter counts a recipient of an authenticated sender, or says which
// sending limit it would exceed; a *sendlimit.Limiter is one.
type Limiter interface {
	Rcpt(login, instance string, now time.Time) sendlimit.Exceeded
}

// Config configures a Handler and its Server. A zero field means its
// default (DefaultConfig).
type Config struct {
	// RelayContext is the policy_context that marks a relay check
	// (check_policy_service { inet:…, policy_context=relaycheck } in
	// smtpd_relay_restrictions). "" means none: only a relay-only listener
	// takes relay checks (Postfix sends an empty policy_context by default,
	// which must not count as one).
	RelayContext string
	// LimitAction answers a recipient over a sending limit: LimitDefer
	// (DEFER_IF_PERMIT, a 450 the client retries) or LimitReject (REJECT,
	// a 554). "" means LimitDefer.
	LimitAction string
	// IdleTimeout closes a connection with no request for that long.
	// Postfix closes its own after smtpd_policy_service_max_idle (300s).
	IdleTimeout time.Duration
	// MaxConns caps the open connections of a Server, all listeners
	// together; one more is accepted and closed at once, with a warning.
	// Postfix opens one per smtpd process (default_process_limit 100).
	MaxConns int
	// Now is the servers' clock; nil means time.Now. (Handler methods
	// take the time as an argument.)
	Now func() time.Time
	// Latency, if set, is told how long each request took to answer,
	// from the request read to the answer written (the metrics).
	Latency func(time.Duration)
	// Weak, if set, refuses authenticated senders (and relay permits)
	// whose login was seen with a weak password ([password]
	// refuse_weak_submission; reason weak_password). The sender has
	// authenticated already, so the refusal tells nothing about a
	// password.
	Weak WeakLogins
}

// WeakLogins says whether a login was seen with a weak password;
// *password.Flags is one. It must answer from memory.
type WeakLogins interface {
	Weak(login string, now time.Time) bool
}

// Defaults of Config, and the values of LimitAction.
const (
	DefaultRelayContext = "relaycheck"
	DefaultIdleTimeout  = time.Minute
	DefaultMaxConns     = 1000
	LimitDefer          = "defer"
	LimitReject         = "reject"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		RelayContext: DefaultRelayContext,
		LimitAction:  LimitDefer,
		IdleTimeout:  DefaultIdleTimeout,
		MaxConns:     DefaultMaxConns,
	}
}

// Validate reports a Config NewHandler cannot use as given.
func (c Config) Validate() error {
	switch c.LimitAction {
	case "", LimitDefer, LimitReject:
	default:
		return fmt.Errorf("limit action %q: want %q or %q", c.LimitAction, LimitDefer, LimitReject)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle timeout %s: must not be negative", c.IdleTimeout)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("max conns %d: must not be negative", c.MaxConns)
	}
	if strings.ContainsAny(c.RelayContext, "\x00\r\n=") {
		return fmt.Errorf("relay context %q: no control characters or '='", c.RelayContext)
	}
	return nil
}

// Map names for socketmap requests and ServeTCPTable.
const (
	MapRelay  = "relay"  // OK for an address with a valid permit
	MapBlock  = "block"  // REJECT <text> for an address the engine denies
	MapClient = "client" // block first, then relay
)

// Texts of answers the engine gave no text for.
const (
	DefaultRejectText = "Access denied by the mail server's policy"
	DefaultLimitText  = "Sending limit reached; please try again later"
)

// maxText bounds the text of a REJECT or DEFER_IF_PERMIT answer: Postfix
// puts it after "554 5.7.1 <recipient>: Recipient address rejected: ",
// and an SMTP reply line is at most 512 bytes (RFC 5321 §4.5.3.1.5).
const maxText = 300

// maxLimitName bounds the limit's name in a sending-limit answer.
const maxLimitName = 40

// Handler answers policy requests and lookups. It is safe for concurrent
// use. Build it with NewHandler.
type Handler struct {
	e        Engine
	permits  Permits // nil: relay checks always DUNNO
	limits   Limiter // nil: no sending limits
	dlog     *policy.DecisionLog
	log      *slog.Logger
	relayCtx string
	reject   bool // LimitAction is reject
	idle     time.Duration
	maxConns int
	now      func() time.Time
	latency  func(time.Duration) // nil: not measured
	weak     WeakLogins          // nil: weak passwords are not refused

	limit throttle.Log
}

// NewHandler returns a handler asking e. permits or limits may be nil
// (the feature is off). dlog receives decision lines (nil discards them),
// log diagnostics (nil discards them). Check cfg with Validate first: an
// invalid LimitAction is taken as LimitDefer, the answer a wrongly refused
// sender recovers from.
func NewHandler(cfg Config, e Engine, permits Permits, limits Limiter, dlog *policy.DecisionLog, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		e:        e,
		permits:  permits,
		limits:   limits,
		dlog:     dlog,
		log:      log,
		relayCtx: cfg.RelayContext,
		reject:   cfg.LimitAction == LimitReject,
		idle:     cfg.IdleTimeout,
		maxConns: cfg.MaxConns,
		now:      cfg.Now,
		latency:  cfg.Latency,
		weak:     cfg.Weak,
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.idle <= 0 {
		h.idle = DefaultIdleTimeout
	}
	if h.maxConns <= 0 {
		h.maxConns = DefaultMaxConns
	}
	return h
}

// Actions (access(5)) the policy server answers.
const (
	actionDunno = "DUNNO"
	actionOK    = "OK"
)

// Policy answers one policy request: the access(5) action, without
// "action=". relayOnly is set for a listener that serves relay checks
// only.
//
//   - A relay check (relayOnly, or policy_context is the configured relay
//     context): OK when the client address has a valid permit and the
//     engine does not deny the permit's login over SMTP from the address
//     (its account rules, login and address bans, the global deny list),
//     and the login is within its sending limit (DEFER_IF_PERMIT or
//     REJECT otherwise, as for an authenticated sender); DUNNO otherwise,
//     never a REJECT of its own: the relay restrictions also see mail to
//     local domains.
//   - An authenticated sender (sasl_username): REJECT for a login no
//     account can have (policy.BadLogin, reason bad_login); else the engine's verdict for
//     the login over SMTP from client_address; REJECT <text> for a
//     denial, and at protocol_state RCPT the sending limit, answered with
//     DEFER_IF_PERMIT or REJECT (Config.LimitAction); DUNNO otherwise. A
//     tarpit verdict is taken as allow: an smtpd process must not sleep.
//   - Anything else: DUNNO.
//
// Every OK, REJECT and DEFER_IF_PERMIT gets a decision line, and so does
// an authenticated sender's allow at RCPT; a relay check with no permit,
// and an allow at DATA or END-OF-MESSAGE, get none.
func (h *Handler) Policy(r *Request, relayOnly bool, now time.Time) string {
	if r.Request != "smtpd_access_policy" {
		h.diag(now, "postfix: policy request of unknown type; answering DUNNO", "request", clip(r.Request), "attributes", r.Attributes)
		return actionDunno
	}
	if relayOnly || (h.relayCtx != "" && r.PolicyContext == h.relayCtx) {
		if action, ok := h.permit(r.ClientAddress, r.Instance, now, true); ok {
			return action
		}
		return actionDunno
	}
	if r.SASLUsername == "" {
		return actionDunno
	}
	login := rules.NormalizeLogin(r.SASLUsername)
	if login == "" {
		return actionDunno
	}
	addr, _ := rules.ParseAddr(r.ClientAddress) // invalid: the engine refuses (bad_address)
	a := policy.Attempt{Login: login, Service: rules.SMTP, Client: addr, Door: "postfix", TLS: r.EncryptionProtocol != ""}
	if policy.BadLogin(login) {
		// No account has such a login: refused before the engine or the
		// sending limits see it (nothing is counted or kept for it).
		v := policy.BadLoginVerdict()
		h.dlog.Verdict(now, &a, &v)
		return "REJECT " + replyText(h.e.Message(&a, &v), DefaultRejectText, maxText)
	}
	v := h.e.Decide(&a, now, nil)
	switch v.Action {
	case policy.Deny:
		v.Delay = 0 // the door never holds an smtpd process
		h.dlog.Verdict(now, &a, &v)
		return "REJECT " + replyText(h.e.Message(&a, &v), DefaultRejectText, maxText)
	case policy.Tarpit:
		v.Action, v.Delay = policy.Allow, 0
	}
	if h.weak != nil && h.weak.Weak(login, now) {
		wv := policy.Verdict{Action: policy.Deny, Reason: policy.ReasonWeakPassword}
		a.WeakPassword = true
		h.dlog.Verdict(now, &a, &wv)
		return "REJECT " + replyText(h.e.Message(&a, &wv), DefaultRejectText, maxText)
	}
	if r.ProtocolState == "RCPT" && h.limits != nil {
		if ex := h.limits.Rcpt(login, r.Instance, now); !ex.OK() {
			return h.overLimit(now, &a, ex)
		}
	}
	if r.ProtocolState == "RCPT" {
		// One allow line per recipient, not three or more per message:
		// DATA and END-OF-MESSAGE repeat what RCPT said.
		h.dlog.Verdict(now, &a, &v)
	}
	return actionDunno
}

// permit answers a relay check for the address key. A valid permit is
// honoured only while what holds for its login holds: the engine is asked
// about the permit's login over SMTP from the address (the account's
// rules, login and address bans, the global deny list; a manual permit
// has no login, so only the address is checked), and the login's sending
// limit counts the recipient (instance "" counts it as a message too). It
// returns "OK", the limit's DEFER_IF_PERMIT or REJECT answer, or ok false
// (no permit, or refused). Allowed addresses get a relay_permit decision
// line naming the permit's login; with logDeny, so do the refused ones.
func (h *Handler) permit(key, instance string, now time.Time, logDeny bool) (action string, ok bool) {
	if h.permits == nil {
		return "", false
	}
	addr, err := rules.ParseAddr(key)
	if err != nil {
		return "", false
	}
	p, ok := h.permits.Check(addr, now)
	if !ok {
		return "", false
	}
	// The line says whose login earned the permit.
	a := policy.Attempt{Login: p.Login, Service: rules.SMTP, Client: addr, Door: "postfix"}
	v := h.e.Decide(&a, now, nil)
	if v.Action != policy.Deny && p.Login != "" && h.weak != nil && h.weak.Weak(p.Login, now) {
		// A permit earned with a weak password relays no more than the
		// login could send itself.
		v = policy.Verdict{Action: policy.Deny, Reason: policy.ReasonWeakPassword}
		a.WeakPassword = true
	}
	if v.Action == policy.Deny {
		if logDeny {
			v.Delay = 0
			h.dlog.Verdict(now, &a, &v)
		}
		return "", false
	}
	if p.Login != "" && h.limits != nil {
		if ex := h.limits.Rcpt(p.Login, instance, now); !ex.OK() {
			return h.overLimit(now, &a, ex), true
		}
	}
	pv := policy.Verdict{Action: policy.Allow, Reason: policy.ReasonRelayPermit, Match: p.Prefix}
	h.dlog.Verdict(now, &a, &pv)
	return actionOK, true
}

// overLimit logs a send_limit refusal and returns its answer.
func (h *Handler) overLimit(now time.Time, a *policy.Attempt, ex sendlimit.Exceeded) string {
	lv := policy.Verdict{Action: policy.Deny, Reason: policy.ReasonSendLimit, Limit: ex.Limit}
	h.dlog.Verdict(now, a, &lv)
	suffix := " (" + policy.ReplyText(ex.Limit, maxLimitName) + ")"
	text := replyText(h.e.Message(a, &lv), DefaultLimitText, maxText-len(suffix)) + suffix
	if h.reject {
		return "REJECT " + text
	}
	return "DEFER_IF_PERMIT " + text
}

// block returns the REJECT answer for an address the engine denies.
func (h *Handler) block(key string, now time.Time) (string, bool) {
	addr, err := rules.ParseAddr(key)
	if err != nil {
		return "", false
	}
	a := policy.Attempt{Service: rules.SMTP, Client: addr, Door: "postfix"}
	v := h.e.Decide(&a, now, nil)
	if v.Action != policy.Deny {
		return "", false
	}
	v.Delay = 0
	h.dlog.Verdict(now, &a, &v)
	return "REJECT " + replyText(h.e.Message(&a, &v), DefaultRejectText, maxText), true
}

// ErrUnknownMap is Lookup's error for a map name other than MapRelay,
// MapBlock and MapClient. The socketmap server answers it with PERM,
// which Postfix treats as a configuration error (451 4.3.5, and a
// warning in its log); ServeTCPTable refuses such a name at start.
var ErrUnknownMap = fmt.Errorf("unknown map name (want %s, %s or %s)", MapRelay, MapBlock, MapClient)

// Lookup answers a check_client_access lookup of key in the map mapName,
// as an access(5) result:
//
//   - MapRelay: "OK" for an address with a valid permit that the engine
//     does not deny;
//   - MapBlock: "REJECT <text>" for an address the engine denies with no
//     login over SMTP (the global deny list, an address ban);
//   - MapClient: MapBlock, then MapRelay.
//
// Otherwise found is false. Keys that are not IP addresses (Postfix looks
// up the client's name first, "unknown" without reverse DNS) are not
// found. Only found answers get a decision line.
func (h *Handler) Lookup(mapName, key string, now time.Time) (result string, found bool, err error) {
	switch mapName {
	case MapRelay:
		if action, ok := h.permit(key, "", now, false); ok {
			return action, true, nil
		}
	case MapBlock:
		result, found = h.block(key, now)
	case MapClient:
		if result, found = h.block(key, now); !found {
			result, found = h.permit(key, "", now, false)
		}
	default:
		return "", false, fmt.Errorf("map %q: %w", clip(mapName), ErrUnknownMap)
	}
	return result, found, nil
}

// replyText makes an answer text of at most max bytes from the engine's
// message, or def.
func replyText(s, def string, max int) string {
	s = strings.TrimSpace(policy.ReplyText(s, max))
	if s == "" {
		return def
	}
	return s
}

// maxLogValue bounds a peer's value quoted in a diagnostic.
const maxLogValue = 100

func clip(s string) string {
	if len(s) > maxLogValue {
		return s[:maxLogValue] + "..."
	}
	return s
}

// diag logs a warning, at most throttle.Burst per throttle.Interval, so that a flood
// of bad requests cannot flood the log; the next line says how many were
// left out.
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

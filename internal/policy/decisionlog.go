package policy

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"mailgate/internal/abuse"
	"mailgate/internal/relay"
)

// DecisionLog writes one stable line per verdict, apart from diagnostics:
//
//	time=2026-11-22T03:58:45.123Z decision=deny reason=account_deny rule=17 door=dovecot service=imap login=alice@example.com ip=203.0.113.9
//
// and one line per login result a door reports:
//
//	time=2026-11-22T03:58:45.123Z auth=failure door=dovecot service=imap login=alice@example.com ip=203.0.113.9 session=zHU7R9RgWLZ/AAAB
//
// Fields keep their order; values that are empty or hold spaces, quotes,
// '=' or control characters are written Go-quoted, so an attacker's login
// cannot forge a field. A password or password hash is never written.
type DecisionLog struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	obs Observer
}

// Observer sees every verdict and login result the log is given, whether
// or not lines are written (the metrics count them). It is called on the
// request path and must not block or allocate.
type Observer interface {
	Verdict(now time.Time, a *Attempt, v *Verdict)
	Result(now time.Time, a *Attempt, success bool)
}

// Observe makes o see every verdict and result; call it before the log is
// used.
func (l *DecisionLog) Observe(o Observer) { l.obs = o }

// NewDecisionLog returns a log writing to w; a nil w discards.
func NewDecisionLog(w io.Writer) *DecisionLog {
	return &DecisionLog{w: w}
}

// Verdict logs a verdict.
func (l *DecisionLog) Verdict(now time.Time, a *Attempt, v *Verdict) {
	if l != nil && l.obs != nil {
		l.obs.Verdict(now, a, v)
	}
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = AppendVerdict(l.buf[:0], now, a, v)
	l.w.Write(l.buf) //nolint:errcheck // a lost log line must not fail a login
}

// Result logs a login result reported by a door.
func (l *DecisionLog) Result(now time.Time, a *Attempt, success bool) {
	if l != nil && l.obs != nil {
		l.obs.Result(now, a, success)
	}
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = AppendResult(l.buf[:0], now, a, success)
	l.w.Write(l.buf) //nolint:errcheck // as above
}

// Ban logs a ban the brute-force tracker made (or lifted, when lifted
// is set):
//
//	time=2026-11-22T03:58:45.123Z event=ban ban=12 kind=address ip=203.0.113.9 reason=addr_failures until=2026-11-22T04:03:45Z
func (l *DecisionLog) Ban(now time.Time, b *abuse.Ban, lifted bool) {
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = AppendBan(l.buf[:0], now, b, lifted)
	l.w.Write(l.buf) //nolint:errcheck // as above
}

// Permit events.
const (
	PermitGranted = "permit"         // a login granted a new permit
	PermitRemoved = "permit_removed" // removed by hand, or withdrawn from a shared address
	PermitExpired = "permit_expired"
)

// Permit logs a relay permit granted, removed or expired (event is one of
// PermitGranted, PermitRemoved, PermitExpired):
//
//	time=2026-11-22T03:58:45.123Z event=permit ip=203.0.113.9 login=alice@example.com service=imap door=dovecot until=2026-11-22T04:28:45Z
//
// Refreshing a permit writes no line: the login's auth=success line says it.
func (l *DecisionLog) Permit(now time.Time, p *relay.Permit, event string) {
	if l == nil || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = AppendPermit(l.buf[:0], now, p, event)
	l.w.Write(l.buf) //nolint:errcheck // as above
}

// AppendPermit appends the line for a permit event, newline included.
func AppendPermit(b []byte, now time.Time, p *relay.Permit, event string) []byte {
	b = appendTime(b, now)
	b = append(b, " event="...)
	b = append(b, event...)
	b = append(b, " ip="...)
	if p.Prefix.IsSingleIP() {
		b = p.Prefix.Addr().AppendTo(b)
	} else {
		b = p.Prefix.AppendTo(b)
	}
	b = append(b, " login="...)
	b = appendValue(b, p.Login)
	b = append(b, " service="...)
	b = append(b, p.Service.String()...)
	b = append(b, " door="...)
	b = appendValue(b, p.Door)
	if event == PermitGranted {
		b = append(b, " until="...)
		b = p.Expires.UTC().AppendFormat(b, time.RFC3339)
	}
	return append(b, '\n')
}

// AppendBan appends the line for a ban, newline included.
func AppendBan(b []byte, now time.Time, ban *abuse.Ban, lifted bool) []byte {
	b = appendTime(b, now)
	if lifted {
		b = append(b, " event=unban ban="...)
	} else {
		b = append(b, " event=ban ban="...)
	}
	b = strconv.AppendInt(b, ban.ID, 10)
	b = append(b, " kind="...)
	b = append(b, ban.Kind.String()...)
	if ban.Kind == abuse.BanLogin {
		b = append(b, " login="...)
		b = appendValue(b, ban.Login)
	} else {
		b = append(b, " ip="...)
		if ban.Prefix.IsSingleIP() {
			b = ban.Prefix.Addr().AppendTo(b)
		} else {
			b = ban.Prefix.AppendTo(b)
		}
	}
	b = append(b, " reason="...)
	b = appendValue(b, ban.Reason)
	if !ban.Expires.IsZero() && !lifted {
		b = append(b, " until="...)
		b = ban.Expires.UTC().AppendFormat(b, time.RFC3339)
	}
	return append(b, '\n')
}

// AppendVerdict appends the decision line for v, newline included.
func AppendVerdict(b []byte, now time.Time, a *Attempt, v *Verdict) []byte {
	b = appendTime(b, now)
	b = append(b, " decision="...)
	b = append(b, v.Action.String()...)
	b = append(b, " reason="...)
	b = append(b, v.Reason.String()...)
	b = append(b, " rule="...)
	switch {
	case v.RuleID != 0:
		b = strconv.AppendInt(b, v.RuleID, 10)
	case v.Source != "":
		b = append(b, v.Source...)
	default:
		b = append(b, '-')
	}
	if v.BanID != 0 {
		b = append(b, " ban="...)
		b = strconv.AppendInt(b, v.BanID, 10)
	}
	if v.Delay > 0 {
		b = append(b, " delay="...)
		b = strconv.AppendInt(b, int64(v.Delay/time.Second), 10)
	}
	if v.Limit != "" {
		b = append(b, " limit="...)
		b = appendValue(b, v.Limit)
	}
	b = appendAttempt(b, a)
	if a.DNSBL.Checked && (a.DNSBL.Zones != "" || a.DNSBL.Score != 0) {
		b = append(b, " dnsbl="...)
		b = appendValue(b, a.DNSBL.Zones)
		b = append(b, " dnsbl_score="...)
		b = strconv.AppendInt(b, int64(a.DNSBL.Score), 10)
	}
	if a.AfterAuth {
		b = append(b, " stage=after_auth"...)
	}
	return append(b, '\n')
}

// AppendResult appends the line for a reported login result.
func AppendResult(b []byte, now time.Time, a *Attempt, success bool) []byte {
	b = appendTime(b, now)
	if success {
		b = append(b, " auth=success"...)
	} else {
		b = append(b, " auth=failure"...)
	}
	b = appendAttempt(b, a)
	return append(b, '\n')
}

func appendTime(b []byte, now time.Time) []byte {
	b = append(b, "time="...)
	return now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
}

func appendAttempt(b []byte, a *Attempt) []byte {
	b = append(b, " door="...)
	b = appendValue(b, a.Door)
	b = append(b, " service="...)
	b = append(b, a.Service.String()...)
	b = append(b, " login="...)
	b = appendValue(b, a.Login)
	b = append(b, " ip="...)
	if a.Client.IsValid() {
		b = a.Client.AppendTo(b)
	} else {
		b = append(b, '-')
	}
	if a.Country != "" {
		b = append(b, " country="...)
		b = appendValue(b, a.Country)
	}
	if a.Session != "" {
		b = append(b, " session="...)
		b = appendValue(b, a.Session)
	}
	if a.WeakPassword {
		b = append(b, " weak_password=1"...)
	}
	return b
}

// maxValue bounds one logged value; longer ones are cut (and quoted).
const maxValue = 256

func appendValue(b []byte, s string) []byte {
	if len(s) > maxValue {
		return strconv.AppendQuote(b, s[:maxValue]+"...")
	}
	if needsQuote(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

func needsQuote(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return true
	}
	for _, c := range s {
		switch {
		case c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f:
			return true
		case c < utf8.RuneSelf:
		case c == utf8.RuneError || unicode.IsSpace(c) || !unicode.IsPrint(c):
			// A Unicode space (U+00A0, U+2003…) ends a log reader's \S*
			// as an ASCII one does (fail2ban's regexes are Unicode-aware),
			// and a format character hides what follows: quoted, they are
			// written escaped (\u00a0).
			return true
		}
	}
	return false
}

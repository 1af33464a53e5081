package postfix

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// fixedEngine answers every attempt with one verdict and message, and
// records the attempts.
type fixedEngine struct {
	v        policy.Verdict
	msg      string
	attempts []policy.Attempt
}

func (e *fixedEngine) Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict {
	e.attempts = append(e.attempts, *a)
	return e.v
}

func (e *fixedEngine) Message(a *policy.Attempt, v *policy.Verdict) string {
	if v.Action != policy.Deny {
		return ""
	}
	if v.Reason == policy.ReasonSendLimit {
		return "limit for " + a.Login
	}
	return e.msg
}

func sasl(login, addr, state string) *Request {
	return &Request{Request: "smtpd_access_policy", ProtocolState: state, ClientAddress: addr, SASLUsername: login, Instance: "i1"}
}

func TestPolicyAttempt(t *testing.T) {
	e := &fixedEngine{}
	ev := newEnv(t, DefaultConfig(), e)
	r := sasl(" Alice@Example.TEST ", "::ffff:192.0.2.7", "MAIL")
	r.EncryptionProtocol = "TLSv1.3"
	if got := ev.h.Policy(r, false, testNow); got != "DUNNO" {
		t.Fatalf("got %q", got)
	}
	want := policy.Attempt{Login: "alice@example.test", Service: rules.SMTP, Client: netip.MustParseAddr("192.0.2.7"), Door: "postfix", TLS: true}
	if len(e.attempts) != 1 || e.attempts[0] != want {
		t.Fatalf("attempts %+v, want %+v", e.attempts, want)
	}
	if ev.limits.log() != "" {
		t.Errorf("limiter asked outside RCPT: %s", ev.limits.log())
	}
}

// TestPolicyTarpitAndDelay: the Postfix door never holds an smtpd
// process: a tarpit is an allow, a denial's delay is dropped.
func TestPolicyTarpitAndDelay(t *testing.T) {
	e := &fixedEngine{v: policy.Verdict{Action: policy.Tarpit, Reason: policy.ReasonStalePassword, Delay: 5 * time.Second}}
	ev := newEnv(t, DefaultConfig(), e)
	start := time.Now()
	if got := ev.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow); got != "DUNNO" {
		t.Fatalf("tarpit: got %q", got)
	}
	e.v = policy.Verdict{Action: policy.Deny, Reason: policy.ReasonBannedLogin, BanID: 4, Delay: time.Minute}
	e.msg = "banned"
	if got := ev.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow); got != "REJECT banned" {
		t.Fatalf("deny: got %q", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	want := "time=2026-11-22T03:58:45.000Z decision=allow reason=stale_password rule=- door=postfix service=smtp login=alice@example.test ip=192.0.2.7\n" +
		"time=2026-11-22T03:58:45.000Z decision=deny reason=banned_login rule=- ban=4 door=postfix service=smtp login=alice@example.test ip=192.0.2.7\n"
	if got := ev.decisions.String(); got != want {
		t.Errorf("decisions:\n%s\nwant:\n%s", got, want)
	}
}

// TestPolicyTexts: refusal texts are one safe line of bounded length,
// never empty.
func TestPolicyTexts(t *testing.T) {
	for _, tc := range []struct {
		msg, want string
	}{
		{"", "REJECT " + DefaultRejectText},
		{"  \t ", "REJECT " + DefaultRejectText},
		{"two\r\nlines", "REJECT two  lines"},
		{strings.Repeat("x", 1000), "REJECT " + strings.Repeat("x", maxText)},
		{"caf\xe9", "REJECT caf\uFFFD"},
	} {
		e := &fixedEngine{v: policy.Verdict{Action: policy.Deny, Reason: policy.ReasonAccountDeny}, msg: tc.msg}
		ev := newEnv(t, DefaultConfig(), e)
		if got := ev.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow); got != tc.want {
			t.Errorf("message %q: got %q, want %q", tc.msg, got, tc.want)
		}
	}

	// The limit text: the engine's send_limit message and the limit.
	e := &fixedEngine{}
	ev := newEnv(t, DefaultConfig(), e)
	ev.limits.set("alice@example.test", 0, "recipients_per_day")
	if got, want := ev.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow), "DEFER_IF_PERMIT limit for alice@example.test (recipients_per_day)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// A login as long as a login may be: the text is cut, the limit kept.
	long := strings.Repeat("a", 300) + "@example.test"
	ev.limits.set(long, 0, "messages_per_hour")
	got := ev.h.Policy(sasl(long, "192.0.2.7", "RCPT"), false, testNow)
	if !strings.HasPrefix(got, "DEFER_IF_PERMIT limit for aaa") || !strings.HasSuffix(got, " (messages_per_hour)") || len(got) > len("DEFER_IF_PERMIT ")+maxText {
		t.Errorf("got %q (%d bytes)", got, len(got))
	}
}

// TestFeaturesOff: without a permit table relay checks are DUNNO; without
// a limiter nothing is limited.
func TestFeaturesOff(t *testing.T) {
	e := newEngine(t, nil, nil)
	h := NewHandler(DefaultConfig(), e, nil, nil, nil, nil)
	r := &Request{Request: "smtpd_access_policy", ProtocolState: "RCPT", ClientAddress: "192.0.2.7", PolicyContext: "relaycheck"}
	if got := h.Policy(r, false, testNow); got != "DUNNO" {
		t.Errorf("relay check: %q", got)
	}
	if got := h.Policy(r, true, testNow); got != "DUNNO" {
		t.Errorf("relay-only: %q", got)
	}
	if got := h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow); got != "DUNNO" {
		t.Errorf("authenticated: %q", got)
	}
	for _, m := range []string{MapRelay, MapClient} {
		if res, found, err := h.Lookup(m, "192.0.2.7", testNow); found || err != nil {
			t.Errorf("lookup %s: %q %v %v", m, res, found, err)
		}
	}
}

func TestLookup(t *testing.T) {
	ev := newEnv(t, DefaultConfig(), newEngine(t, []string{"global smtp deny 198.51.100.0/24", "global all allow 198.51.100.7"}, []string{"2001:db8:bad::/48"}))
	ev.permits.add("192.0.2.0/28", "alice@example.test")
	ev.permits.add("2001:db8:bad:1::/64", "mallory@example.test")
	ev.permits.add("198.51.100.7/32", "bob@example.test")
	for _, tc := range []struct {
		m, key, want string
	}{
		{MapRelay, "192.0.2.9", "OK"},
		{MapRelay, "::ffff:192.0.2.9", "OK"},
		{MapRelay, "192.0.2.16", ""},
		{MapRelay, "2001:db8:bad:1::9", ""}, // banned: the permit does not count
		{MapBlock, "2001:db8:bad:1::9", "REJECT Too many failed logins from your address (2001:db8:bad:1::9); please try again later."},
		{MapBlock, "198.51.100.8", "REJECT Logins from your address (198.51.100.8) are blocked on this server."},
		{MapBlock, "198.51.100.7", ""}, // trusted beats the deny list
		{MapClient, "198.51.100.7", "OK"},
		{MapClient, "198.51.100.8", "REJECT Logins from your address (198.51.100.8) are blocked on this server."},
		{MapClient, "192.0.2.1", "OK"},
		{MapClient, "unknown", ""},
		{MapClient, "mail.example.test", ""},
		{MapClient, "fe80::1%eth0", ""},
		{MapClient, "", ""},
	} {
		res, found, err := ev.h.Lookup(tc.m, tc.key, testNow)
		if err != nil || found != (tc.want != "") || res != tc.want {
			t.Errorf("%s %q: %q %v %v, want %q", tc.m, tc.key, res, found, err, tc.want)
		}
	}
	if _, _, err := ev.h.Lookup("clientmap", "192.0.2.9", testNow); !errors.Is(err, ErrUnknownMap) {
		t.Errorf("unknown map: %v", err)
	}
	// Lines for answers only: 4 OK, 3 REJECT.
	if n := strings.Count(ev.decisions.String(), "\n"); n != 7 {
		t.Errorf("%d decision lines:\n%s", n, ev.decisions.String())
	}
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	for _, c := range []Config{
		{LimitAction: "bounce"},
		{IdleTimeout: -time.Second},
		{MaxConns: -1},
		{RelayContext: "a\nb"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	// Zero fields are the defaults, but for RelayContext: "" is no relay
	// context, and an empty policy_context is then no relay check.
	h := NewHandler(Config{}, newEngine(t, nil, nil), nil, nil, nil, nil)
	d := DefaultConfig()
	if h.relayCtx != "" || h.reject || h.idle != d.IdleTimeout || h.maxConns != d.MaxConns {
		t.Errorf("zero config gave %+v", h)
	}
}

func TestHexQuote(t *testing.T) {
	for raw, quoted := range map[string]string{
		"a key%with space":            "a%20key%25with%20space",
		"::1":                         "::1",
		"REJECT Blocked by tcp_table": "REJECT%20Blocked%20by%20tcp_table",
		"tab\tnl\ncafé\x7f":           "tab%09nl%0Acaf%C3%A9%7F",
	} {
		if got := hexQuote(raw); got != quoted {
			t.Errorf("hexQuote(%q) = %q, want %q", raw, got, quoted)
		}
		if got, ok := hexUnquote([]byte(quoted)); !ok || got != raw {
			t.Errorf("hexUnquote(%q) = %q %v", quoted, got, ok)
		}
	}
	if got, ok := hexUnquote([]byte("%3a%3A")); !ok || got != "::" {
		t.Errorf("lower case: %q %v", got, ok)
	}
	for _, bad := range []string{"%", "%4", "a%zz", "%g0"} {
		if _, ok := hexUnquote([]byte(bad)); ok {
			t.Errorf("hexUnquote(%q) accepted", bad)
		}
	}
}

// A sasl_username no account can have (over 320 bytes, or not UTF-8, also
// with upper-case letters) is refused with a bad_login decision line
// before the engine or the sending limits see it.
func TestPolicyBadLogin(t *testing.T) {
	for _, login := range []string{
		strings.Repeat("a", 390) + "@example.test",
		"bob\xff\xfe@example.test",
		"Bob\xff@Example.test",
	} {
		e := &fixedEngine{}
		ev := newEnv(t, DefaultConfig(), e)
		if got := ev.h.Policy(sasl(login, "192.0.2.7", "RCPT"), false, testNow); got != "REJECT "+DefaultRejectText {
			t.Errorf("%q: got %q", login, got)
		}
		if len(e.attempts) != 0 || ev.limits.log() != "" {
			t.Errorf("%q: the engine saw %d attempts; limiter: %q", login, len(e.attempts), ev.limits.log())
		}
		if d := ev.decisions.String(); strings.Count(d, "\n") != 1 || !strings.Contains(d, "decision=deny reason=bad_login") {
			t.Errorf("%q: decisions:\n%s", login, d)
		}
	}
}

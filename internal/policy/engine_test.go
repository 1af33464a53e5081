package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// rule is a compact way to write a rule in a table: "account service
// action match", e.g. "shop@example.com smtp allow 10.0.0.101".
func rule(t testing.TB, id int64, spec string) rules.Rule {
	t.Helper()
	f := strings.Fields(spec)
	if len(f) != 4 {
		t.Fatalf("bad spec %q", spec)
	}
	r := rules.Rule{ID: id, Account: f[0]}
	if f[0] == "global" {
		r.Scope, r.Account = rules.ScopeGlobal, ""
	}
	var err error
	if r.Service, err = rules.ParseService(f[1]); err != nil {
		t.Fatal(err)
	}
	if r.Action, err = rules.ParseAction(f[2]); err != nil {
		t.Fatal(err)
	}
	if err := r.SetMatch(f[3]); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return r
}

func engine(t testing.TB, specs ...string) *Engine {
	t.Helper()
	idx := rules.NewIndex()
	for i, s := range specs {
		r := rule(t, int64(i+1), s)
		idx.Add(&r)
	}
	return New(idx, nil)
}

func attempt(login, service, ip string) *Attempt {
	a := &Attempt{Login: rules.NormalizeLogin(login), Service: rules.ProtocolService(service), Door: "test"}
	if ip != "" {
		a.Client, _ = rules.ParseAddr(ip)
	}
	return a
}

type want struct {
	login, service, ip string
	action             Action
	reason             Reason
	rule               int64
}

func check(t *testing.T, e *Engine, cases []want) {
	t.Helper()
	for _, c := range cases {
		a := attempt(c.login, c.service, c.ip)
		tr := &Trace{}
		v := e.Decide(a, now, tr)
		if v.Action != c.action || v.Reason != c.reason || v.RuleID != c.rule {
			t.Errorf("%s %s from %s: got %v/%v rule %d, want %v/%v rule %d\ntrace: %+v",
				c.login, c.service, c.ip, v.Action, v.Reason, v.RuleID, c.action, c.reason, c.rule, tr.Checks)
		}
		// The traced and untraced paths must agree.
		if w := e.Decide(a, now, nil); w.Action != v.Action || w.Reason != v.Reason || w.RuleID != v.RuleID {
			t.Errorf("%s %s from %s: untraced verdict %+v differs from traced %+v", c.login, c.service, c.ip, w, v)
		}
	}
}

// The seed's shop example, verbatim: an account that may use SMTP only
// from its web server 10.0.0.101, POP3 from nowhere, IMAP from anywhere.
func TestSeedShopExample(t *testing.T) {
	e := engine(t,
		"shop@example.com smtp allow 10.0.0.101",
		"shop@example.com pop3 allow none",
	)
	check(t, e, []want{
		{"shop@example.com", "smtp", "10.0.0.101", Allow, ReasonAccountAllow, 1},
		{"shop@example.com", "smtp", "10.0.0.102", Deny, ReasonNotInAllowlist, 0},
		{"shop@example.com", "submission", "10.0.0.101", Allow, ReasonAccountAllow, 1},
		{"shop@example.com", "submission", "198.51.100.7", Deny, ReasonNotInAllowlist, 0},
		{"shop@example.com", "pop3", "10.0.0.101", Deny, ReasonServiceClosed, 2},
		{"shop@example.com", "pop3", "198.51.100.7", Deny, ReasonServiceClosed, 2},
		{"shop@example.com", "imap", "198.51.100.7", Allow, ReasonDefault, 0},
		{"shop@example.com", "imap", "2001:db8::1", Allow, ReasonDefault, 0},
		{"shop@example.com", "sieve", "198.51.100.7", Allow, ReasonDefault, 0},
		// Logins are case-insensitive and trimmed; ::ffff: is IPv4.
		{" Shop@Example.COM ", "smtp", "::ffff:10.0.0.101", Allow, ReasonAccountAllow, 1},
		{"SHOP@example.com", "pop3", "10.0.0.101", Deny, ReasonServiceClosed, 2},
		// Another account is not touched.
		{"other@example.com", "pop3", "198.51.100.7", Allow, ReasonDefault, 0},
	})
}

// The seed's "restrict to specific ips" example: POP3 only from .234,
// SMTP only from .235, IMAP from all.
func TestSeedRestrictExample(t *testing.T) {
	e := engine(t,
		"user@example.com pop3 allow 123.234.123.234",
		"user@example.com smtp allow 123.234.123.235",
	)
	check(t, e, []want{
		{"user@example.com", "pop3", "123.234.123.234", Allow, ReasonAccountAllow, 1},
		{"user@example.com", "pop3", "123.234.123.235", Deny, ReasonNotInAllowlist, 0},
		{"user@example.com", "smtp", "123.234.123.235", Allow, ReasonAccountAllow, 2},
		{"user@example.com", "smtp", "123.234.123.234", Deny, ReasonNotInAllowlist, 0},
		{"user@example.com", "imap", "1.2.3.4", Allow, ReasonDefault, 0},
	})
}

// The seed's blacklist examples: one address blocked for every service;
// one blocked only for smtp.
func TestSeedBlacklistExample(t *testing.T) {
	e := engine(t,
		"user@example.com all deny 123.234.123.234",
		"user@example.com smtp deny 123.234.123.235",
	)
	check(t, e, []want{
		{"user@example.com", "imap", "123.234.123.234", Deny, ReasonAccountDeny, 1},
		{"user@example.com", "pop3", "123.234.123.234", Deny, ReasonAccountDeny, 1},
		{"user@example.com", "smtp", "123.234.123.234", Deny, ReasonAccountDeny, 1},
		{"user@example.com", "smtp", "123.234.123.235", Deny, ReasonAccountDeny, 2},
		{"user@example.com", "submission", "123.234.123.235", Deny, ReasonAccountDeny, 2},
		{"user@example.com", "imap", "123.234.123.235", Allow, ReasonDefault, 0},
		{"user@example.com", "pop3", "123.234.123.235", Allow, ReasonDefault, 0},
		{"user@example.com", "imap", "123.234.123.236", Allow, ReasonDefault, 0},
	})
}

func TestSemantics(t *testing.T) {
	tests := []struct {
		name  string
		rules []string
		cases []want
	}{{
		name: "deny beats allow in one level",
		rules: []string{
			"a@x.test all allow 10.0.0.0/8",
			"a@x.test imap deny 10.1.0.0/16",
		},
		cases: []want{
			{"a@x.test", "imap", "10.1.2.3", Deny, ReasonAccountDeny, 2},
			{"a@x.test", "pop3", "10.1.2.3", Allow, ReasonAccountAllow, 1},
			{"a@x.test", "imap", "10.2.0.1", Allow, ReasonAccountAllow, 1},
			{"a@x.test", "imap", "11.0.0.1", Deny, ReasonNotInAllowlist, 0},
		},
	}, {
		name: "all-service and per-service allow rules form one list",
		rules: []string{
			"a@x.test all allow 192.0.2.1",
			"a@x.test pop3 allow 192.0.2.2",
		},
		cases: []want{
			{"a@x.test", "pop3", "192.0.2.1", Allow, ReasonAccountAllow, 1},
			{"a@x.test", "pop3", "192.0.2.2", Allow, ReasonAccountAllow, 2},
			{"a@x.test", "imap", "192.0.2.2", Deny, ReasonNotInAllowlist, 0},
		},
	}, {
		name: "none with another allow is just the other allow",
		rules: []string{
			"a@x.test pop3 allow none",
			"a@x.test pop3 allow 192.0.2.2",
		},
		cases: []want{
			{"a@x.test", "pop3", "192.0.2.2", Allow, ReasonAccountAllow, 2},
			{"a@x.test", "pop3", "192.0.2.3", Deny, ReasonNotInAllowlist, 0},
		},
	}, {
		name: "a submission rule does not cover smtp",
		rules: []string{
			"a@x.test submission allow none",
		},
		cases: []want{
			{"a@x.test", "submission", "192.0.2.1", Deny, ReasonServiceClosed, 1},
			{"a@x.test", "smtp", "192.0.2.1", Allow, ReasonDefault, 0},
		},
	}, {
		name: "login beats domain beats *",
		rules: []string{
			"* smtp allow 10.0.0.0/8",
			"@x.test smtp allow 172.16.0.0/12",
			"boss@x.test smtp allow 192.0.2.7",
		},
		cases: []want{
			{"boss@x.test", "smtp", "192.0.2.7", Allow, ReasonAccountAllow, 3},
			{"boss@x.test", "smtp", "172.16.0.1", Deny, ReasonNotInAllowlist, 0},
			{"staff@x.test", "smtp", "172.16.0.1", Allow, ReasonAccountAllow, 2},
			{"staff@x.test", "smtp", "10.0.0.1", Deny, ReasonNotInAllowlist, 0},
			{"someone@y.test", "smtp", "10.0.0.1", Allow, ReasonAccountAllow, 1},
			{"someone@y.test", "smtp", "172.16.0.1", Deny, ReasonNotInAllowlist, 0},
			{"nodomain", "smtp", "10.0.0.1", Allow, ReasonAccountAllow, 1},
			{"someone@y.test", "imap", "172.16.0.1", Allow, ReasonDefault, 0},
		},
	}, {
		name: "a login's allow rule beats a domain deny",
		rules: []string{
			"@x.test all deny 203.0.113.0/24",
			"boss@x.test all allow 203.0.113.9",
		},
		cases: []want{
			{"boss@x.test", "imap", "203.0.113.9", Allow, ReasonAccountAllow, 2},
			{"staff@x.test", "imap", "203.0.113.9", Deny, ReasonAccountDeny, 1},
		},
	}, {
		name: "a level with only non-matching denies passes on to the next",
		rules: []string{
			"@x.test imap allow 10.0.0.0/8",
			"a@x.test imap deny 10.9.9.9",
		},
		cases: []want{
			{"a@x.test", "imap", "10.9.9.9", Deny, ReasonAccountDeny, 2},
			{"a@x.test", "imap", "10.1.1.1", Allow, ReasonAccountAllow, 1},
			{"a@x.test", "imap", "192.0.2.1", Deny, ReasonNotInAllowlist, 0},
		},
	}, {
		name: "trusted beats everything, global deny beats account allow",
		rules: []string{
			"global all allow 192.0.2.0/24",
			"global all deny 198.51.100.0/24",
			"global smtp deny 203.0.113.5",
			"a@x.test all deny 192.0.2.1",
			"a@x.test all allow 198.51.100.1",
		},
		cases: []want{
			{"a@x.test", "imap", "192.0.2.1", Allow, ReasonTrusted, 1},
			{"a@x.test", "imap", "198.51.100.1", Deny, ReasonGlobalDeny, 2},
			{"b@x.test", "smtp", "203.0.113.5", Deny, ReasonGlobalDeny, 3},
			{"b@x.test", "submission", "203.0.113.5", Deny, ReasonGlobalDeny, 3},
			{"b@x.test", "imap", "203.0.113.5", Allow, ReasonDefault, 0},
			{"", "imap", "198.51.100.1", Deny, ReasonGlobalDeny, 2},
		},
	}, {
		name: "IPv6 rules and the most specific match",
		rules: []string{
			"a@x.test all allow 2001:db8::/32",
			"a@x.test all allow 2001:db8:1::/48",
			"a@x.test all deny 2001:db8:1:2::/64",
		},
		cases: []want{
			{"a@x.test", "imap", "2001:db8::1", Allow, ReasonAccountAllow, 1},
			{"a@x.test", "imap", "2001:db8:1::1", Allow, ReasonAccountAllow, 2},
			{"a@x.test", "imap", "2001:db8:1:2::1", Deny, ReasonAccountDeny, 3},
			{"a@x.test", "imap", "2001:db9::1", Deny, ReasonNotInAllowlist, 0},
			{"a@x.test", "imap", "192.0.2.1", Deny, ReasonNotInAllowlist, 0},
		},
	}, {
		name:  "unknown protocols get only all-service rules",
		rules: []string{"a@x.test imap allow none", "a@x.test all deny 192.0.2.1"},
		cases: []want{
			{"a@x.test", "lmtp", "192.0.2.2", Allow, ReasonDefault, 0},
			{"a@x.test", "lmtp", "192.0.2.1", Deny, ReasonAccountDeny, 2},
		},
	}, {
		name:  "an attempt without a client address is refused",
		rules: nil,
		cases: []want{{"a@x.test", "imap", "", Deny, ReasonBadAddress, 0}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check(t, engine(t, tc.rules...), tc.cases)
		})
	}
}

func TestExpiry(t *testing.T) {
	idx := rules.NewIndex()
	r := rule(t, 1, "a@x.test imap allow none")
	r.Expires = now.Add(time.Minute)
	idx.Add(&r)
	e := New(idx, nil)
	a := attempt("a@x.test", "imap", "192.0.2.1")
	if v := e.Decide(a, now, nil); v.Reason != ReasonServiceClosed {
		t.Fatalf("before expiry: %v", v.Reason)
	}
	if v := e.Decide(a, now.Add(time.Minute), nil); v.Reason != ReasonDefault {
		t.Fatalf("at expiry: %v", v.Reason)
	}
}

// Lists past smallMax move into prefix tables; the answers must not change,
// and expired rules inside the tables must be skipped.
func TestLargeLists(t *testing.T) {
	idx := rules.NewIndex()
	var id int64
	add := func(spec string, exp time.Time) {
		id++
		r := rule(t, id, spec)
		r.Expires = exp
		idx.Add(&r)
	}
	for i := range 100 {
		add(fmt.Sprintf("a@x.test imap allow 10.%d.0.0/16", i), time.Time{})
	}
	add("a@x.test imap deny 10.5.5.0/24", time.Time{})           // 101
	add("a@x.test imap deny 10.6.6.0/24", now.Add(-time.Second)) // 102, expired
	add("a@x.test imap allow 10.7.7.7", now.Add(-time.Second))   // 103, expired, inside 10.7/16
	add("a@x.test pop3 allow none", time.Time{})                 // 104
	add("global all deny 10.99.0.0/16", time.Time{})             // 105
	e := New(idx, nil)
	check(t, e, []want{
		{"a@x.test", "imap", "10.3.1.1", Allow, ReasonAccountAllow, 4},
		{"a@x.test", "imap", "10.5.5.5", Deny, ReasonAccountDeny, 101},
		{"a@x.test", "imap", "10.6.6.6", Allow, ReasonAccountAllow, 7},
		{"a@x.test", "imap", "10.7.7.7", Allow, ReasonAccountAllow, 8},
		{"a@x.test", "imap", "11.0.0.1", Deny, ReasonNotInAllowlist, 0},
		{"a@x.test", "pop3", "10.3.1.1", Deny, ReasonServiceClosed, 104},
		{"a@x.test", "imap", "10.99.0.1", Deny, ReasonGlobalDeny, 105},
	})
	// Removing rules, from tables and from the none list.
	for _, spec := range []struct {
		id   int64
		spec string
	}{{101, "a@x.test imap deny 10.5.5.0/24"}, {104, "a@x.test pop3 allow none"}} {
		r := rule(t, spec.id, spec.spec)
		if !idx.Remove(&r) {
			t.Fatalf("remove %d: not found", spec.id)
		}
		if idx.Remove(&r) {
			t.Fatalf("remove %d twice: found", spec.id)
		}
	}
	check(t, e, []want{
		{"a@x.test", "imap", "10.5.5.5", Allow, ReasonAccountAllow, 6},
		{"a@x.test", "pop3", "10.3.1.1", Allow, ReasonDefault, 0},
	})
	if n := idx.Len(); n != 103 {
		t.Fatalf("Len = %d, want 103", n)
	}
}

func TestRemoveSmallAndReplace(t *testing.T) {
	idx := rules.NewIndex()
	r1, r2 := rule(t, 1, "a@x.test pop3 allow none"), rule(t, 2, "@x.test all deny 192.0.2.1")
	idx.Add(&r1)
	idx.Add(&r2)
	e := New(idx, nil)
	check(t, e, []want{{"a@x.test", "imap", "192.0.2.1", Deny, ReasonAccountDeny, 2}})
	if !idx.Remove(&r2) {
		t.Fatal("remove r2")
	}
	check(t, e, []want{{"a@x.test", "imap", "192.0.2.1", Allow, ReasonDefault, 0}})
	idx.Replace([]rules.Rule{r2})
	check(t, e, []want{
		{"a@x.test", "imap", "192.0.2.1", Deny, ReasonAccountDeny, 2},
		{"a@x.test", "pop3", "192.0.2.9", Allow, ReasonDefault, 0},
	})
}

func TestMessages(t *testing.T) {
	e := New(rules.NewIndex(), Messages{"service_closed": "No {service} for {login} from {ip}."})
	a := attempt("a@x.test", "pop3", "192.0.2.1")
	if got := e.Message(a, &Verdict{Action: Deny, Reason: ReasonServiceClosed}); got != "No POP3 for a@x.test from 192.0.2.1." {
		t.Errorf("custom message: %q", got)
	}
	if got := e.Message(a, &Verdict{Action: Deny, Reason: ReasonAccountDeny}); got != "This account may not use POP3 from your address (192.0.2.1)." {
		t.Errorf("default message: %q", got)
	}
	if got := e.Message(a, &Verdict{Action: Allow}); got != "" {
		t.Errorf("allow has a message: %q", got)
	}
}

func TestDecisionLine(t *testing.T) {
	a := attempt("shop@example.com", "pop3", "::ffff:203.0.113.9")
	a.Door, a.Session, a.PwHash = "dovecot", "zHU7R9RgWLZ/AAAB", "06ca"
	v := Verdict{Action: Deny, Reason: ReasonServiceClosed, RuleID: 17}
	got := string(AppendVerdict(nil, now, a, &v))
	want := "time=2026-11-22T12:00:00.000Z decision=deny reason=service_closed rule=17 door=dovecot service=pop3 login=shop@example.com ip=203.0.113.9 session=zHU7R9RgWLZ/AAAB\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// A hostile login cannot add fields or lines.
	a.Login = "x ip=1.2.3.4\ndecision=allow"
	got = string(AppendResult(nil, now, a, false))
	if strings.Count(got, "\n") != 1 || strings.Contains(got, "06ca") || !strings.Contains(got, `" ip=203.0.113.9 `) {
		t.Errorf("unsafe line: %q", got)
	}
	if !strings.Contains(got, `login="x ip=1.2.3.4\ndecision=allow"`) {
		t.Errorf("login not quoted: %q", got)
	}
}

func TestSendLimitAndPermitLines(t *testing.T) {
	a := attempt("alice@example.com", "smtp", "203.0.113.9")
	a.Door = "postfix"
	v := Verdict{Action: Deny, Reason: ReasonSendLimit, Limit: "recipients_per_hour"}
	got := string(AppendVerdict(nil, now, a, &v))
	want := "time=2026-11-22T12:00:00.000Z decision=deny reason=send_limit rule=- limit=recipients_per_hour door=postfix service=smtp login=alice@example.com ip=203.0.113.9\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p := relay.Permit{Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Login: "bob@example.com", Service: rules.IMAP,
		Door: "dovecot", Expires: now.Add(30 * time.Minute)}
	got = string(AppendPermit(nil, now, &p, PermitGranted))
	want = "time=2026-11-22T12:00:00.000Z event=permit ip=2001:db8:1:2::/64 login=bob@example.com service=imap door=dovecot until=2026-11-22T12:30:00Z\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p.Prefix, p.Login, p.Door = netip.MustParsePrefix("192.0.2.1/32"), "", "manual"
	got = string(AppendPermit(nil, now, &p, PermitExpired))
	want = "time=2026-11-22T12:00:00.000Z event=permit_expired ip=192.0.2.1 login=\"\" service=imap door=manual\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestExplain(t *testing.T) {
	e := engine(t, "shop@example.com pop3 allow none")
	a := attempt("shop@example.com", "pop3", "198.51.100.7")
	tr := &Trace{}
	v := e.Decide(a, now, tr)
	if got := v.Explain(a); got != "rules of shop@example.com close pop3 (allow none) (rule 1)" {
		t.Errorf("Explain = %q", got)
	}
	var names []string
	for _, c := range tr.Checks {
		names = append(names, c.Name+": "+c.Result)
	}
	want := "trusted networks: no match|global deny list: no match|account rules of shop@example.com: closed"
	if got := strings.Join(names, "|"); got != want {
		t.Errorf("trace\n got %s\nwant %s", got, want)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	e := engine(t,
		"shop@example.com smtp allow 10.0.0.101",
		"@example.com all deny 192.0.2.0/24",
		"* pop3 allow none",
		"global all deny 198.51.100.0/24",
	)
	a := &Attempt{Login: "shop@example.com", Service: rules.Submission, Client: netip.MustParseAddr("10.0.0.9")}
	if n := testing.AllocsPerRun(100, func() { e.Decide(a, now, nil) }); n != 0 {
		t.Errorf("Decide allocates %v times", n)
	}
}

func TestReplyText(t *testing.T) {
	long := strings.Repeat("é", 400) // 2 bytes each
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\r\nb\tc\x7f", "a  b c "},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{long, strings.Repeat("é", 200)},
		{"ab\u00e9", "ab"}, // max 3: é does not fit whole
	}
	for _, tt := range tests {
		max := 400
		if tt.want == "ab" {
			max = 3
		}
		if got := ReplyText(tt.in, max); got != tt.want {
			t.Errorf("ReplyText(%q, %d) = %q, want %q", tt.in, max, got, tt.want)
		}
	}
}

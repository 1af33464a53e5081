package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/cluster"
	"mailgate/internal/rules"
)

// engineWithAbuse is an engine over specs with the default brute-force
// rules.
func engineWithAbuse(t *testing.T, specs ...string) (*Engine, *abuse.Tracker) {
	t.Helper()
	tr := abuse.New(abuse.DefaultConfig())
	return engine(t, specs...).WithAbuse(tr, true, time.Minute, 5*time.Second), tr
}

func fail(e *Engine, login, ip, hash string, at time.Time) []abuse.Ban {
	a := attempt(login, "imap", ip)
	a.PwHash = hash
	return e.Report(a, false, at)
}

// The order of DESIGN.md §2 with bans in it: trusted and an account's own
// allow rule beat bans (and are never counted); bans beat the default.
func TestBansInTheOrderOfChecks(t *testing.T) {
	e, tr := engineWithAbuse(t,
		"global all allow 192.0.2.0/24",
		"boss@x.test all allow 203.0.113.7",
	)
	// Rule (b): five different failures from one address.
	var bans []abuse.Ban
	for i, h := range []string{"0a01", "0a02", "0a03", "0a04", "0a05"} {
		bans = append(bans, fail(e, "someone@x.test", "203.0.113.7", h, now.Add(time.Duration(i)*time.Second))...)
	}
	if len(bans) != 1 || bans[0].Kind != abuse.BanAddr {
		t.Fatalf("bans after five failures: %+v", bans)
	}
	at := now.Add(10 * time.Second)
	check := func(login, ip string, action Action, reason Reason) {
		t.Helper()
		a := attempt(login, "imap", ip)
		if v := e.Decide(a, at, nil); v.Action != action || v.Reason != reason {
			t.Errorf("%s from %s: %v/%v, want %v/%v", login, ip, v.Action, v.Reason, action, reason)
		}
	}
	check("someone@x.test", "203.0.113.7", Deny, ReasonBannedAddress)
	check("boss@x.test", "203.0.113.7", Allow, ReasonAccountAllow) // its own allow rule beats the ban

	// Failures from trusted networks are not counted at all.
	for i, h := range []string{"0b01", "0b02", "0b03", "0b04", "0b05", "0b06"} {
		if got := fail(e, "someone@x.test", "192.0.2.9", h, now.Add(time.Duration(i)*time.Second)); len(got) != 0 {
			t.Fatalf("a trusted address was banned: %+v", got)
		}
	}
	if c := tr.Counters("someone@x.test", netip.MustParseAddr("192.0.2.9"), at); c.AddrFailures != 0 {
		t.Errorf("trusted failures counted: %+v", c)
	}
}

// A banned login: tarpit then refuse, except from a known-good address.
func TestBannedLoginAndKnownGood(t *testing.T) {
	e, _ := engineWithAbuse(t)
	home := attempt("anna@x.test", "imap", "198.51.100.10")
	e.Report(home, true, now.Add(-time.Hour))
	var bans []abuse.Ban
	for i, ip := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		bans = append(bans, fail(e, "anna@x.test", ip, "0c0"+string(rune('1'+i)), now.Add(time.Duration(i)*time.Second))...)
	}
	if len(bans) != 1 || bans[0].Kind != abuse.BanLogin {
		t.Fatalf("bans: %+v", bans)
	}
	at := now.Add(5 * time.Second)
	tr := &Trace{}
	v := e.Decide(attempt("anna@x.test", "imap", "203.0.113.50"), at, tr)
	if v.Action != Deny || v.Reason != ReasonBannedLogin || v.Delay != time.Minute || v.BanID != bans[0].ID {
		t.Errorf("stranger: %+v", v)
	}
	if v := e.Decide(home, at, nil); v.Action != Allow {
		t.Errorf("home: %+v", v)
	}
	tr = &Trace{}
	e.Decide(home, at, tr)
	found := false
	for _, c := range tr.Checks {
		found = found || c.Result == "banned, but known good"
	}
	if !found {
		t.Errorf("trace does not say known good: %+v", tr.Checks)
	}
}

// The same wrong password again and again: tarpitted as stale, never
// banned, and the account's other clients are untouched.
func TestStaleClient(t *testing.T) {
	e, _ := engineWithAbuse(t)
	for i := range 50 {
		if b := fail(e, "phone@x.test", "198.51.100.20", "0d0d", now.Add(time.Duration(i)*time.Minute)); len(b) != 0 {
			t.Fatalf("the stale phone caused a ban at attempt %d: %+v", i+1, b)
		}
	}
	at := now.Add(50 * time.Minute)
	a := attempt("phone@x.test", "imap", "198.51.100.20")
	a.PwHash = "0d0d"
	if v := e.Decide(a, at, nil); v.Action != Tarpit || v.Reason != ReasonStalePassword || v.Delay != 5*time.Second {
		t.Errorf("stale client: %+v", v)
	}
	a.PwHash = "0e0e" // the right password, at last
	if v := e.Decide(a, at, nil); v.Action != Allow || v.Reason != ReasonDefault {
		t.Errorf("new password: %+v", v)
	}
	if v := e.Decide(attempt("colleague@x.test", "imap", "198.51.100.20"), at, nil); v.Action != Allow {
		t.Errorf("colleague behind the same NAT: %+v", v)
	}
}

func TestDecideWithAbuseDoesNotAllocate(t *testing.T) {
	e, _ := engineWithAbuse(t, "shop@example.com smtp allow 10.0.0.101", "* pop3 allow none")
	for i := range 3 {
		fail(e, "x@example.com", "10.9.9."+string(rune('1'+i)), "0f0"+string(rune('1'+i)), now)
	}
	a := &Attempt{Login: "x@example.com", Service: rules.IMAP, Client: netip.MustParseAddr("10.0.0.9"), PwHash: "0abc"}
	if n := testing.AllocsPerRun(100, func() { e.Decide(a, now, nil) }); n != 0 {
		t.Errorf("Decide with bans allocates %v times", n)
	}
}

// A login banned by hand holds for every address, known good or not: the
// account may be in an attacker's hands.
func TestManualLoginBanHoldsForKnownGood(t *testing.T) {
	e, tr := engineWithAbuse(t)
	home := attempt("anna@x.test", "imap", "198.51.100.10")
	e.Report(home, true, now.Add(-time.Hour))
	if _, err := tr.AddBan(abuse.Ban{Kind: abuse.BanLogin, Login: "anna@x.test", Reason: abuse.ReasonManual, CreatedBy: "root"}, now); err != nil {
		t.Fatal(err)
	}
	if v := e.Decide(home, now, nil); v.Action != Deny || v.Reason != ReasonBannedLogin {
		t.Errorf("known-good address under a manual ban: %+v", v)
	}
}

// Under attack: logins from addresses that never logged in to the account
// and from countries it never logged in from are refused; its own
// addresses and countries keep working; trusted networks and the
// account's own allow rules are not touched.
func TestUnderAttack(t *testing.T) {
	cfg := abuse.DefaultConfig()
	cfg.SurgeEnabled = true
	tr := abuse.New(cfg)
	e := engine(t, "global all allow 192.0.2.0/24", "shop@x.test imap allow 198.51.100.99").
		WithAbuse(tr, true, time.Minute, 5*time.Second).
		WithCountries(func(a netip.Addr) (string, CountryKind) {
			if a.As4()[2] == 113 { // 203.0.113.x
				return "AT", CountryFound
			}
			return "US", CountryFound
		}, CountryPolicy{})
	// alice logs in from home in Austria before the attack.
	if bans := e.Report(attempt("alice@x.test", "imap", "203.0.113.5"), true, now); len(bans) != 0 {
		t.Fatal(bans)
	}
	// A spray: 40 logins failing once each from 40 addresses.
	for i := range 40 {
		a := attempt(fmt.Sprintf("u%d@x.test", i), "imap", fmt.Sprintf("198.51.100.%d", i))
		a.PwHash = "0abc"
		e.Report(a, false, now.Add(time.Duration(i)*time.Second))
	}
	at := now.Add(time.Minute)
	if s, changed := tr.Surge(at); !s.On || !changed {
		t.Fatalf("surge: %+v", s)
	}
	for _, c := range []struct {
		login, ip string
		action    Action
		reason    Reason
	}{
		{"alice@x.test", "203.0.113.5", Allow, ReasonDefault},       // known good
		{"alice@x.test", "203.0.113.77", Allow, ReasonDefault},      // a new address in her usual country
		{"alice@x.test", "198.51.100.200", Deny, ReasonUnderAttack}, // a new place
		{"bob@x.test", "203.0.113.5", Deny, ReasonUnderAttack},      // bob never logged in from there
		{"bob@x.test", "192.0.2.7", Allow, ReasonTrusted},           // trusted networks are trusted
		{"shop@x.test", "198.51.100.99", Allow, ReasonAccountAllow}, // an account's own allow rule
		{"", "198.51.100.200", Allow, ReasonDefault},                // no login: nothing to protect
	} {
		var tc Trace
		v := e.Decide(attempt(c.login, "imap", c.ip), at, &tc)
		if v.Action != c.action || v.Reason != c.reason {
			t.Errorf("%s from %s: %v/%v, want %v/%v; %+v", c.login, c.ip, v.Action, v.Reason, c.action, c.reason, tc.Checks)
		}
	}
	if got := e.Message(attempt("bob@x.test", "imap", "203.0.113.5"), &Verdict{Action: Deny, Reason: ReasonUnderAttack}); !strings.Contains(got, "under attack") {
		t.Errorf("message %q", got)
	}
	tr.EndSurge(at)
	if v := e.Decide(attempt("bob@x.test", "imap", "203.0.113.5"), at, nil); v.Action != Allow {
		t.Errorf("after EndSurge: %v/%v", v.Action, v.Reason)
	}
}

// A stale phone behind a load balancer: its old password reaches this
// node from the door (Dovecot's pwhash) and from other nodes (published as
// cluster.Digest of it). The tracker sees one password: it counts once,
// and the phone is told apart from a guesser instead of banned.
func TestPwDigestOnePasswordAcrossNodes(t *testing.T) {
	e, _ := engineWithAbuse(t)
	e.WithPwDigest(cluster.Digest)
	for i := range 2 { // once through this node's door, once through another's
		at := now.Add(time.Duration(i) * time.Second)
		if i%2 == 0 {
			if b := fail(e, "phone@x.test", "198.51.100.21", "0d0d", at); len(b) != 0 {
				t.Fatalf("local attempt %d banned: %+v", i, b)
			}
			continue
		}
		a := attempt("phone@x.test", "imap", "198.51.100.21")
		a.PwHash, a.PwDigested = cluster.Digest("0d0d"), true // as another node published it
		if b := e.Report(a, false, at); len(b) != 0 {
			t.Fatalf("remote attempt %d banned: %+v", i, b)
		}
	}
	a := attempt("phone@x.test", "imap", "198.51.100.21")
	a.PwHash = "0d0d"
	if v := e.Decide(a, now.Add(time.Minute), nil); v.Action != Tarpit || v.Reason != ReasonStalePassword {
		t.Errorf("stale phone seen by two nodes: %+v, want the stale tarpit", v)
	}
	// A second wrong password is the second distinct failure, not the third.
	if b := fail(e, "phone@x.test", "198.51.100.21", "0e0e", now.Add(time.Minute)); len(b) != 0 {
		t.Errorf("a second password banned the phone: %+v", b)
	}
}

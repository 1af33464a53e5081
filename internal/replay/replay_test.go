package replay

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/maillog"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

func ev(at time.Duration, login, addr string, res Result, actor Actor) Event {
	return Event{Time: t0.Add(at), Door: "dovecot", Service: rules.IMAP, Login: login, Client: netip.MustParseAddr(addr), Result: res, Actor: actor, Count: 1}
}

// sliceSource yields events from a slice.
type sliceSource []Event

func (s *sliceSource) Next(e *Event) (bool, error) {
	if len(*s) == 0 {
		return false, nil
	}
	*e = (*s)[0]
	*s = (*s)[1:]
	return true, nil
}

func run(t *testing.T, opt Options, evs ...Event) *Report {
	t.Helper()
	src := sliceSource(evs)
	rep, err := Run(context.Background(), newSetup(), opt, &src)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A refused attempt never reaches the password check and is not
// reported; an allowed one is; a decide-only one is decided only; without
// labels a success is a user's and a failure a guess.
func TestRunnerSemantics(t *testing.T) {
	fail := func(at time.Duration, addr string) Event {
		e := ev(at, "alice@example.org", addr, Failure, Unlabeled)
		return e
	}
	rep := run(t, Options{},
		ev(0, "alice@example.org", "198.51.100.1", Success, Unlabeled),                                     // known good
		fail(time.Second, "192.0.2.1"), fail(2*time.Second, "192.0.2.2"), fail(3*time.Second, "192.0.2.3"), // login ban
		fail(4*time.Second, "192.0.2.4"),                                           // stopped
		ev(5*time.Second, "alice@example.org", "198.51.100.1", Success, Unlabeled), // known good: allowed
		ev(6*time.Second, "alice@example.org", "198.51.100.2", Success, Unlabeled), // a login refused
		ev(7*time.Second, "alice@example.org", "198.51.100.3", NoResult, User),     // decide-only, refused
		ev(8*time.Second, "bob@example.org", "198.51.100.3", NoResult, Unlabeled),  // decide-only, neither
	)
	if rep.Input.Events != 9 || rep.Input.Attempts != 9 {
		t.Errorf("input %+v", rep.Input)
	}
	if pc := rep.PasswordChecks; pc.Reached != 5 || pc.Stopped != 3 || pc.DecideOnly != 1 {
		t.Errorf("password checks %+v", pc)
	}
	if lg := rep.Legitimate; lg.Attempts != 4 || lg.Refused != 2 || lg.Logins != 1 || lg.Addresses != 2 || len(lg.List) != 2 ||
		lg.List[0].Address != netip.MustParseAddr("198.51.100.2") || lg.List[0].Actor != "" || lg.List[1].Actor != "user" {
		t.Errorf("legitimate %+v", lg)
	}
	if at := rep.Attackers; at.Attempts != 4 || at.Reached != 3 || at.Stopped != 1 || at.MaxPerAccount != 3 || len(at.List) != 1 {
		t.Errorf("attackers %+v", at)
	}
	if rep.Bans.Total != 1 || rep.Bans.List[0].Reason != abuse.ReasonLoginAttack || rep.Bans.List[0].Seconds != 600 ||
		!rep.Bans.List[0].Time.Equal(t0.Add(3*time.Second)) || !rep.Bans.List[0].Until.Equal(t0.Add(3*time.Second+10*time.Minute)) {
		t.Errorf("bans %+v", rep.Bans)
	}
	if rep.Verdicts["deny"] != 3 || rep.Verdicts["allow"] != 6 || rep.Verdicts["tarpit"] != 0 || rep.Reasons["banned_login"] != 3 {
		t.Errorf("verdicts %v reasons %v", rep.Verdicts, rep.Reasons)
	}
	// The permits of the successful logins (the setup has [relay] on).
	if rep.Permits.Granted != 1 || rep.Permits.Refreshed != 1 || rep.Permits.List[0].Network != "198.51.100.1/32" {
		t.Errorf("permits %+v", rep.Permits)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"legitimate users refused: 2 of 4 attempts (1 login, 2 addresses)", "198.51.100.2", "login_attack", "relay permits: 1 granted"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
}

// A stale client is tarpitted, which reaches the password check; a log
// line's Count replays N attempts; time that goes back is clamped; events
// outside [From, To) are skipped.
func TestRunnerTimeAndCounts(t *testing.T) {
	stale := func(at time.Duration) Event {
		e := ev(at, "carol@example.org", "198.51.100.9", Failure, User)
		e.PwHash = "0ld"
		return e
	}
	burst := ev(10*time.Second, "", "192.0.2.66", Failure, Unlabeled)
	burst.Count = 5
	rep := run(t, Options{From: t0, To: t0.Add(time.Minute)},
		ev(-time.Second, "x@example.org", "192.0.2.1", Success, Unlabeled), // before From
		stale(0), stale(time.Second), stale(2*time.Second), stale(3*time.Second),
		burst, // 5 failures: rule (b)
		ev(9*time.Second, "y@example.org", "192.0.2.66", NoResult, Unlabeled), // goes back: at 10 s, banned
		ev(time.Minute, "x@example.org", "192.0.2.1", Success, Unlabeled),     // at To
	)
	if in := rep.Input; in.Events != 6 || in.Attempts != 10 || in.OutOfRange != 2 || in.OutOfOrder != 1 ||
		!in.First.Equal(t0) || !in.Last.Equal(t0.Add(10*time.Second)) {
		t.Errorf("input %+v", in)
	}
	if rep.Reasons["stale_password"] != 2 || rep.Verdicts["tarpit"] != 2 || rep.PasswordChecks.Reached != 9 || rep.Legitimate.Refused != 0 {
		t.Errorf("stale: reasons %v, %+v", rep.Reasons, rep.PasswordChecks)
	}
	if rep.Bans.Total != 1 || rep.Bans.List[0].Target != "192.0.2.66/32" || rep.Reasons["banned_address"] != 1 {
		t.Errorf("bans %+v reasons %v", rep.Bans, rep.Reasons)
	}
	if len(rep.Attackers.List) != 1 || rep.Attackers.List[0].Login != "" || rep.Attackers.List[0].Reached != 5 {
		t.Errorf("attackers %+v", rep.Attackers)
	}
}

// Lists are bounded; the counts are not.
func TestRunnerMaxList(t *testing.T) {
	var evs []Event
	for i := range 10 {
		evs = append(evs, ev(time.Duration(i)*time.Second, "u"+strings.Repeat("x", i)+"@example.org", "192.0.2.1", Failure, Attacker))
	}
	rep := run(t, Options{MaxList: 3}, evs...)
	if rep.Attackers.Accounts != 5 || len(rep.Attackers.List) != 3 || rep.Attackers.Truncated != 2 {
		t.Errorf("attackers %+v", rep.Attackers)
	}
}

func TestLogReader(t *testing.T) {
	log := strings.Join([]string{
		"Dec  1 08:00:00 mx dovecot: imap-login: Login: user=<Alice@Example.org>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.250, mpid=1, TLS, session=<a>",
		"Dec  1 08:00:01 mx postfix/smtpd[1]: connect from unknown[192.0.2.9]",
		strings.Repeat("x", readBuf+10),
		"Dec  1 08:00:02 mx dovecot: pop3-login: Disconnected: Connection closed (auth failed, 3 attempts in 6 secs): user=<bob>, method=PLAIN, rip=::ffff:192.0.2.7, lip=192.0.2.250, session=<b>",
		"Dec  1 08:00:03 mx postfix/submission/smtpd[2]: warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=carol",
		// A summary claiming more than maillog.MaxAttempts counts as
		// that many, as in the log door.
		"Dec  1 08:00:04 mx dovecot: imap-login: Disconnected: Connection closed (auth failed, 5000 attempts in 6 secs): user=<dave>, method=PLAIN, rip=192.0.2.8, lip=192.0.2.250, session=<c>",
	}, "\n")
	lr := NewLogReader(strings.NewReader(log), "mail.log", t0.Add(24*time.Hour), false)
	var got []Event
	var e Event
	for {
		ok, err := lr.Next(&e)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, e)
	}
	if len(got) != 4 || lr.Lines() != 6 || lr.Matched() != 4 {
		t.Fatalf("%d events of %d lines (%d matched): %+v", len(got), lr.Lines(), lr.Matched(), got)
	}
	want := []Event{
		{Time: t0, Door: "dovecot", Service: rules.IMAP, Login: "alice@example.org", Client: netip.MustParseAddr("192.0.2.1"), Result: Success, Count: 1},
		{Time: t0.Add(2 * time.Second), Door: "dovecot", Service: rules.POP3, Login: "bob", Client: netip.MustParseAddr("192.0.2.7"), Result: Failure, Count: 3},
		{Time: t0.Add(3 * time.Second), Door: "postfix", Service: rules.SMTP, Login: "carol", Client: netip.MustParseAddr("192.0.2.9"), Result: Failure, Count: 1},
		{Time: t0.Add(4 * time.Second), Door: "dovecot", Service: rules.IMAP, Login: "dave", Client: netip.MustParseAddr("192.0.2.8"), Result: Failure, Count: maillog.MaxAttempts},
	}
	for i := range want {
		g := got[i]
		if !g.Time.Equal(want[i].Time) {
			t.Errorf("event %d at %v, want %v", i, g.Time, want[i].Time)
		}
		g.Time = want[i].Time
		if g != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, g, want[i])
		}
	}

	// journalctl -o json
	j := `{"__CURSOR":"s=1;i=1","__REALTIME_TIMESTAMP":"1796112000000000","SYSLOG_IDENTIFIER":"dovecot","MESSAGE":"imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=3, TLS, session=<AbC>"}` + "\n"
	lr = NewLogReader(strings.NewReader(j), "j.json", time.Time{}, true)
	if ok, err := lr.Next(&e); !ok || err != nil || e.Login != "alice" || !e.Time.Equal(t0) || e.Result != Success {
		t.Errorf("journal: %v %v %+v", ok, err, e)
	}
}

// Postfix asks mailgate only after the password check: its failures are
// reported, never decided or stopped; a success is decided, and a refused
// one has had its password checked (and is not reported).
func TestRunnerPostfix(t *testing.T) {
	pf := func(at time.Duration, login, addr string, res Result) Event {
		e := ev(at, login, addr, res, Unlabeled)
		e.Door, e.Service = "postfix", rules.SMTP
		return e
	}
	var evs []Event
	for i := range 7 {
		evs = append(evs, pf(time.Duration(i)*time.Second, "u@example.org", "192.0.2.9", Failure)) // rule (b) at the 5th
	}
	evs = append(evs, pf(10*time.Second, "v@example.org", "192.0.2.9", Success)) // from the banned address
	rep := run(t, Options{}, evs...)
	if pc := rep.PasswordChecks; pc.Reached != 8 || pc.Undecided != 7 || pc.Stopped != 0 {
		t.Errorf("password checks %+v", pc)
	}
	if rep.Attackers.Reached != 7 || rep.Attackers.Stopped != 0 || rep.Bans.Total != 1 {
		t.Errorf("attackers %+v, %d bans", rep.Attackers, rep.Bans.Total)
	}
	if rep.Legitimate.Refused != 1 || rep.Reasons["banned_address"] != 1 || rep.Verdicts["deny"] != 1 || rep.Verdicts["allow"] != 0 {
		t.Errorf("legitimate %+v, verdicts %v", rep.Legitimate, rep.Verdicts)
	}
}

// Merge yields events in time order, the earlier source first on a tie.
func TestMerge(t *testing.T) {
	a := sliceSource{ev(0, "a", "192.0.2.1", Success, User), ev(2*time.Second, "a", "192.0.2.1", Success, User)}
	b := sliceSource{ev(0, "b", "192.0.2.2", Success, User), ev(time.Second, "b", "192.0.2.2", Success, User), ev(3*time.Second, "b", "192.0.2.2", Success, User)}
	m := Merge(&a, &b)
	var order []string
	var e Event
	for {
		ok, err := m.Next(&e)
		if err != nil || !ok {
			break
		}
		order = append(order, e.Login+e.Time.Format(":05"))
	}
	if got := strings.Join(order, " "); got != "a:00 b:00 b:01 a:02 b:03" {
		t.Errorf("merged %s", got)
	}
}

// Decide's verdict is what the engine says: the replay adds nothing of
// its own before it (the runner's bad-login refusal is the doors').
func TestRunnerBadLogin(t *testing.T) {
	e := ev(0, strings.Repeat("a", 400), "192.0.2.1", Failure, Unlabeled)
	rep := run(t, Options{}, e)
	if rep.Reasons[policy.ReasonBadLogin.String()] != 1 || rep.PasswordChecks.Stopped != 1 {
		t.Errorf("bad login: %v", rep.Reasons)
	}
	// Postfix's failures are not decided, but a bad login is never
	// counted either: five from one address ban nothing.
	var evs []Event
	for i := range 5 {
		e := ev(time.Duration(i)*time.Second, "caf\xe9", "192.0.2.9", Failure, Unlabeled)
		e.Door = "postfix"
		evs = append(evs, e)
	}
	if rep := run(t, Options{}, evs...); rep.Bans.Total != 0 || rep.PasswordChecks.Undecided != 5 {
		t.Errorf("postfix bad logins: %d bans, %+v", rep.Bans.Total, rep.PasswordChecks)
	}
}

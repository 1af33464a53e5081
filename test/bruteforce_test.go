package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// The brute-force test's users, passwords, and the Dovecot settings that
// make its pwhash values computable.
const (
	bfBob, bfBobPW     = "bob@example.test", "Bob-Secret-1701"
	bfCarol, bfCarolPW = "carol@example.test", "Carol-Secret-2202"
	bfDave, bfDavePW   = "dave@example.test", "Dave-Secret-3303"
	bfErin, bfErinPW   = "erin@example.test", "Erin-Secret-4404"
	// bfDaveOldPW is the password dave's phone still tries.
	bfDaveOldPW = "Dave-Old-Secret-2019"
	bfAPIKey    = "bf-e2e-policy-key-4242"
	bfNonce     = "bf-e2e-nonce-51d2"

	// bfTarpit is login_tarpit in the test's config, bfStaleTarpit the
	// default stale_tarpit.
	bfTarpit      = 3 * time.Second
	bfStaleTarpit = 5 * time.Second

	// Texts the refused mail client shows ([messages] defaults).
	bfLoginMsg = "Too many failed logins for this account"
	bfAddrMsg  = "Too many failed logins from your address"
	// bfWrongMsg is Dovecot's own text for a wrong password.
	bfWrongMsg = "AUTHENTICATIONFAILED"
)

var (
	// bfBobWrong are an attacker's guesses, one per address.
	bfBobWrong = []string{"Bob-Guess-Alpha-1", "Bob-Guess-Bravo-2", "Bob-Guess-Charlie-3"}
	// bfCarolWrong are carol's typos, all from one address.
	bfCarolWrong = []string{"Carol-Typo-Alpha-1", "Carol-Typo-Bravo-2", "Carol-Typo-Charlie-3"}
)

// bfBan is a ban as `mailgate ban list --json` prints it.
type bfBan struct {
	ID        int64      `json:"id"`
	Kind      string     `json:"kind"`
	IP        string     `json:"ip"`
	Account   string     `json:"account"`
	Reason    string     `json:"reason"`
	Created   time.Time  `json:"created"`
	Expires   *time.Time `json:"expires"`
	Remaining string     `json:"remaining"`
	Comment   string     `json:"comment"`
	CreatedBy string     `json:"created_by"`
}

// bfExplained is the part of `mailgate explain --json` the test checks.
type bfExplained struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Ban     int64  `json:"ban"`
	Delay   string `json:"delay"`
	Message string `json:"message"`
}

// TestBruteForce is issue 3's end-to-end test: a real Dovecot asks a real
// `mailgate serve`, and real IMAP and POP3 clients log in from distinct
// 127.0.0.x addresses. It covers rule (a) (a login attacked from several
// addresses is banned; attempts on it are tarpitted, then refused; the
// address the user logged in from before keeps working), rule (b) (an
// address failing is banned), a stale client (one wrong password repeated
// is tarpitted and reported, never banned), a manual ban, and bans and
// known-good addresses surviving a restart until `ban rm` lifts them.
//
// Each scenario has its own addresses and few failures per address:
// Dovecot delays each next login from an address that failed (2, 4, 8, then
// 15 s), on top of its ~2 s failure delay. The four scenarios before the
// restart run in parallel, as do the two after it; they are declared
// longest first, as `go test` runs only GOMAXPROCS of them at a time.
func TestBruteForce(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	dir := harness.TempDir(t, "bf-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, bfAPIKey, fmt.Sprintf(`
[bruteforce]
# Shorter and fewer than the defaults (login_tarpit = "1m", addr_failures = 5)
# so that the test observes the tarpit in seconds and fails few times per
# address (Dovecot's own per-address penalty grows with each failure). The
# default thresholds are tested at their exact values, and one below, in
# internal/abuse's pure scenario tests with injected time.
login_tarpit = %q
addr_failures = 3
`, bfTarpit.String())))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{bfBob: bfBobPW, bfCarol: bfCarolPW, bfDave: bfDavePW, bfErin: bfErinPW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    bfAPIKey,
		Nonce:     bfNonce,
	})
	bfCheckHashesDistinct(t, dc.Nonce)

	var bobBan, carolBan, manualBan bfBan
	t.Run("before restart", func(t *testing.T) {
		t.Run("rule b: address failures", func(t *testing.T) {
			t.Parallel()
			carolBan = bfAddressFailures(t, mg, dc)
		})
		t.Run("stale client", func(t *testing.T) {
			t.Parallel()
			bfStaleClient(t, mg, dc)
		})
		t.Run("rule a: login attack, known good address", func(t *testing.T) {
			t.Parallel()
			bobBan = bfLoginAttack(t, mg, dc)
		})
		t.Run("manual ban", func(t *testing.T) {
			t.Parallel()
			manualBan = bfManualBan(t, mg, dc)
		})
	})
	if t.Failed() {
		return
	}
	bfCheckNoSecrets(t, mg, dc)

	// Bans and known-good addresses are in the store; the counters and
	// the stale-client memory are not (and need not be).
	mg.Restart()
	t.Run("after restart", func(t *testing.T) {
		got := bfBansByID(t, mg)
		if len(got) != 3 {
			t.Errorf("after the restart ban list has %d bans, want 3 (bob's, 127.0.0.71's, the manual one): %+v", len(got), got)
		}
		for _, want := range []bfBan{bobBan, carolBan, manualBan} {
			b, ok := got[want.ID]
			switch {
			case !ok:
				t.Errorf("ban %d (%s %s%s) is gone after the restart", want.ID, want.Kind, want.Account, want.IP)
			case b.Kind != want.Kind || b.IP != want.IP || b.Account != want.Account || b.Reason != want.Reason ||
				b.Comment != want.Comment || !bfSameSecond(&b.Created, &want.Created) || !bfSameSecond(b.Expires, want.Expires):
				t.Errorf("ban %d changed across the restart:\nbefore %+v\nafter  %+v", want.ID, want, b)
			}
		}
		if t.Failed() {
			return
		}
		t.Run("address ban holds until ban rm --ip", func(t *testing.T) {
			t.Parallel()
			bfAddressBanAfterRestart(t, mg, dc, carolBan)
		})
		t.Run("login ban holds until ban rm id", func(t *testing.T) {
			t.Parallel()
			bfLoginBanAfterRestart(t, mg, dc, bobBan)
		})
	})
	if t.Failed() {
		return
	}

	// The two lifts are in the audit trail, as the manual ban is.
	var audit []struct {
		Op     string `json:"op"`
		ID     int64  `json:"ban"`
		Actor  string `json:"actor"`
		Detail string `json:"detail"`
	}
	out := mg.MustCLI(t, "audit", "--json")
	if err := json.Unmarshal([]byte(out), &audit); err != nil {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	unbans := map[int64]string{}
	var manualAdded bool
	for _, e := range audit {
		switch e.Op {
		case "unban":
			unbans[e.ID] = e.Detail
			if e.Actor == "" {
				t.Errorf("audit: unban of ban %d has no actor", e.ID)
			}
		case "ban":
			manualAdded = manualAdded || e.ID == manualBan.ID
		}
	}
	if len(unbans) != 2 || !strings.Contains(unbans[carolBan.ID], "127.0.0.71") || !strings.Contains(unbans[bobBan.ID], bfBob) {
		t.Errorf("audit --json: want exactly the unbans of ban %d (127.0.0.71) and ban %d (%s), got %v:\n%s",
			carolBan.ID, bobBan.ID, bfBob, unbans, out)
	}
	if !manualAdded {
		t.Errorf("audit --json lacks the manual ban %d:\n%s", manualBan.ID, out)
	}
	if got := bfBansByID(t, mg); len(got) != 1 || got[manualBan.ID].ID != manualBan.ID {
		t.Errorf("after both ban rm, ban list = %+v, want only the manual ban %d", got, manualBan.ID)
	}
	bfCheckNoSecrets(t, mg, dc)
}

// bfLoginAttack is rule (a) and the lockout-proof account: bob logs in
// from home (127.0.0.60), an attacker guesses from .61, .62, .63, bob's
// login is banned; the right password from a new address is tarpitted
// and refused, from home it works. It returns the ban.
func bfLoginAttack(t *testing.T, mg *harness.MG, dc *harness.Dovecot) bfBan {
	const home = "127.0.0.60"
	bfOK(t, "imap", dc, home, bfBob, bfBobPW)
	mg.WaitLogLine(t, map[string]string{"auth": "success", "login": bfBob, "ip": home})

	for i, src := range []string{"127.0.0.61", "127.0.0.62", "127.0.0.63"} {
		bfRefused(t, "imap", dc, src, bfBob, bfBobWrong[i], bfWrongMsg)
		mg.WaitLogLine(t, map[string]string{"auth": "failure", "login": bfBob, "ip": src})
	}
	ev := mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "login", "login": bfBob, "reason": "login_attack"})
	ban := bfFindBan(t, mg, func(b bfBan) bool { return b.Kind == "login" && b.Account == bfBob })
	if ban.Reason != "login_attack" || ban.IP != "" || ban.Expires == nil || ban.Remaining == "" || strconv.FormatInt(ban.ID, 10) != ev["ban"] {
		t.Errorf("ban list --json: bob's ban = %+v, want reason login_attack, an expiry, and id %s (the event=ban line)", ban, ev["ban"])
	}
	// Each address failed once: rule (b) must not have fired.
	for _, b := range bfBansByID(t, mg) {
		if b.Kind == "address" && strings.HasPrefix(b.IP, "127.0.0.6") {
			t.Errorf("an attacker address failing once was banned: %+v", b)
		}
	}

	// During the ban, the right password from an address bob never used
	// and a wrong one from another are refused alike, at once, on
	// Dovecot's first check: Dovecot never checks the password, so a
	// guess during the ban learns nothing. The same over POP3.
	const fresh = "127.0.0.64"
	id := strconv.FormatInt(ban.ID, 10)
	for _, c := range []struct{ proto, right, wrong string }{{"imap", fresh, "127.0.0.66"}, {"pop3", "127.0.0.67", "127.0.0.68"}} {
		right, rightTook := bfRefusal(t, c.proto, dc, c.right, bfBob, bfBobPW, bfLoginMsg)
		wrong, wrongTook := bfRefusal(t, c.proto, dc, c.wrong, bfBob, "a guess during the ban", bfLoginMsg)
		if right != wrong {
			t.Errorf("%s: during the ban the right password got %q and a wrong one %q: a password oracle", c.proto, right, wrong)
		}
		if rightTook >= bfTarpit || wrongTook >= bfTarpit {
			t.Errorf("%s: refusals during the ban took %v and %v: the login tarpit (%v) is nginx's, Dovecot refuses at once", c.proto, rightTook, wrongTook, bfTarpit)
		}
		for _, src := range []string{c.right, c.wrong} {
			l := mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "banned_login", "ban": id,
				"door": "dovecot", "service": c.proto, "login": bfBob, "ip": src})
			if l["delay"] != "" {
				t.Errorf("the decision line of a refusal through Dovecot names a delay it does not have: %v", l)
			}
		}
		// Dovecot never checked these passwords: no mismatch logged, and no
		// second allow call (it comes only after a right password).
		for _, l := range strings.Split(dc.Log(), "\n") {
			if strings.Contains(l, bfBob+","+c.wrong) && strings.Contains(l, "Password mismatch") {
				t.Errorf("Dovecot checked a guess during the ban: %s", l)
			}
		}
	}
	if n := bfCount(mg, map[string]string{"stage": "after_auth", "login": bfBob}); n != 0 {
		t.Errorf("%d after-auth calls for bob during the ban: Dovecot checked his right password", n)
	}

	// Home keeps working: bob is not locked out by the attack.
	bfOK(t, "imap", dc, home, bfBob, bfBobPW)
	if n := bfCount(mg, map[string]string{"decision": "deny", "login": bfBob, "ip": home}); n != 0 {
		t.Errorf("bob was refused from his known-good address %s %d times", home, n)
	}

	e := bfExplain(t, mg, bfBob, fresh, "imap", "")
	if e.Reason != "banned_login" || e.Ban != ban.ID || e.Verdict == "allow" || !strings.Contains(e.Message, bfLoginMsg) {
		t.Errorf("explain bob from %s = %+v, want reason banned_login, ban %d and %q", fresh, e, ban.ID, bfLoginMsg)
	}
	if e := bfExplain(t, mg, bfBob, home, "imap", ""); e.Verdict != "allow" {
		t.Errorf("explain bob from his known-good %s = %+v, want allow", home, e)
	}
	return ban
}

// bfAddressFailures is rule (b): carol fails three times from one
// address; the address is banned, not her login. It returns the ban.
func bfAddressFailures(t *testing.T, mg *harness.MG, dc *harness.Dovecot) bfBan {
	const src = "127.0.0.71"
	for i, pw := range bfCarolWrong {
		bfRefused(t, "imap", dc, src, bfCarol, pw, bfWrongMsg)
		bfWaitCount(t, mg, map[string]string{"auth": "failure", "login": bfCarol, "ip": src}, i+1)
	}
	ev := mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": src, "reason": "addr_failures"})
	ban := bfFindBan(t, mg, func(b bfBan) bool { return b.Kind == "address" && b.IP == src })
	if ban.Reason != "addr_failures" || ban.Account != "" || ban.Expires == nil || strconv.FormatInt(ban.ID, 10) != ev["ban"] {
		t.Errorf("ban list --json: the ban of %s = %+v, want reason addr_failures, an expiry, and id %s (the event=ban line)", src, ban, ev["ban"])
	}

	bfRefused(t, "imap", dc, src, bfCarol, bfCarolPW, bfAddrMsg+" ("+src+")")
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "banned_address", "ban": strconv.FormatInt(ban.ID, 10),
		"door": "dovecot", "service": "imap", "login": bfCarol, "ip": src})

	// All failures came from one address: carol's login is not banned.
	bfOK(t, "imap", dc, "127.0.0.72", bfCarol, bfCarolPW)
	for _, b := range bfBansByID(t, mg) {
		if b.Account == bfCarol {
			t.Errorf("carol's login was banned for failures from one address: %+v", b)
		}
	}
	return ban
}

// bfStaleClient is dave's phone repeating an old password from
// 127.0.0.81 over POP3: its repeats count once, so nothing is banned
// (without that, four failures would cross addr_failures = 3); from the
// third attempt on it is tarpitted and logged as stale_password; dave's
// right password still works from there.
func bfStaleClient(t *testing.T, mg *harness.MG, dc *harness.Dovecot) {
	const src = "127.0.0.81"
	for i := 1; i <= 4; i++ {
		elapsed := bfRefused(t, "pop3", dc, src, bfDave, bfDaveOldPW, "-ERR")
		bfWaitCount(t, mg, map[string]string{"auth": "failure", "login": bfDave, "ip": src}, i)
		if i >= 3 && elapsed < bfStaleTarpit {
			t.Errorf("stale attempt %d took %v, want at least stale_tarpit %v", i, elapsed, bfStaleTarpit)
		}
	}
	// stale_repeats = 2: the first two attempts are plain failures, the
	// third and fourth find the password already repeated.
	var seq []string
	for _, l := range harness.Find(harness.ParseLog(mg.DecisionLog()), map[string]string{"login": bfDave, "ip": src}) {
		if d := l["decision"]; d != "" {
			seq = append(seq, d+"/"+l["reason"]+"/"+l["delay"])
		}
	}
	want := []string{"allow/default/", "allow/default/", "tarpit/stale_password/5", "tarpit/stale_password/5"}
	if strings.Join(seq, " ") != strings.Join(want, " ") {
		t.Errorf("dave's verdicts from %s (decision/reason/delay) = %v, want %v", src, seq, want)
	}
	for _, b := range bfBansByID(t, mg) {
		if b.Account == bfDave || b.IP == src {
			t.Errorf("a stale client got banned: %+v", b)
		}
	}
	for _, l := range harness.Find(harness.ParseLog(mg.DecisionLog()), map[string]string{"event": "ban"}) {
		if l["login"] == bfDave || l["ip"] == src {
			t.Errorf("a stale client got banned: %v", l)
		}
	}

	stale := pwhash(dc.Nonce, bfDave, bfDaveOldPW)
	if e := bfExplain(t, mg, bfDave, src, "imap", stale); e.Reason != "stale_password" || e.Verdict != "tarpit" || e.Delay != bfStaleTarpit.String() {
		t.Errorf("explain dave from %s --pwhash %s (the stale password) = %+v, want tarpit stale_password for %v", src, stale, e, bfStaleTarpit)
	}
	right := pwhash(dc.Nonce, bfDave, bfDavePW)
	if e := bfExplain(t, mg, bfDave, src, "imap", right); e.Verdict != "allow" {
		t.Errorf("explain dave from %s --pwhash %s (the right password) = %+v, want allow", src, right, e)
	}

	// The right password has another hash: not tarpitted, not refused.
	bfOK(t, "pop3", dc, src, bfDave, bfDavePW)
	ls := harness.Find(harness.ParseLog(mg.DecisionLog()), map[string]string{"login": bfDave, "ip": src})
	if last := ls[len(ls)-1]; last["auth"] != "success" {
		t.Errorf("the last line for dave from %s is %v, want auth=success", src, last)
	}
	if n := bfCount(mg, map[string]string{"decision": "allow", "login": bfDave, "ip": src}); n < 3 {
		t.Errorf("dave's right password from %s was not allowed (%d allow lines in all)", src, n)
	}
}

// bfManualBan bans 127.0.0.90/31 by hand; erin from .91 is refused. It
// returns the ban.
func bfManualBan(t *testing.T, mg *harness.MG, dc *harness.Dovecot) bfBan {
	out := mg.MustCLI(t, "ban", "add", "--ip", "127.0.0.90/31", "--for", "1h", "--comment", "test", "--json")
	var added bfBan
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.ID <= 0 {
		t.Fatalf("ban add --json: %v\n%s", err, out)
	}
	ban := bfFindBan(t, mg, func(b bfBan) bool { return b.ID == added.ID })
	if ban.Kind != "address" || ban.IP != "127.0.0.90/31" || ban.Comment != "test" || ban.Reason != "manual" ||
		ban.Expires == nil || (ban.Expires.Sub(ban.Created)-time.Hour).Abs() > 2*time.Second || ban.CreatedBy == "" {
		t.Errorf("ban list --json: the manual ban = %+v, want address 127.0.0.90/31 for 1h, comment \"test\", reason manual, created_by set", ban)
	}
	if out := mg.MustCLI(t, "ban", "list"); !strings.Contains(out, "127.0.0.90/31") || !strings.Contains(out, "test") {
		t.Errorf("ban list lacks the manual ban:\n%s", out)
	}
	bfRefused(t, "imap", dc, "127.0.0.91", bfErin, bfErinPW, bfAddrMsg+" (127.0.0.91)")
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "banned_address", "ban": strconv.FormatInt(ban.ID, 10),
		"service": "imap", "login": bfErin, "ip": "127.0.0.91"})
	return ban
}

// bfAddressBanAfterRestart: the address ban made before the restart
// still refuses carol at 127.0.0.71 until `ban rm --ip` lifts it.
func bfAddressBanAfterRestart(t *testing.T, mg *harness.MG, dc *harness.Dovecot, ban bfBan) {
	const src = "127.0.0.71"
	deny := map[string]string{"decision": "deny", "reason": "banned_address", "ban": strconv.FormatInt(ban.ID, 10), "login": bfCarol, "ip": src}
	before := bfCount(mg, deny)
	bfRefused(t, "imap", dc, src, bfCarol, bfCarolPW, bfAddrMsg+" ("+src+")")
	bfWaitCount(t, mg, deny, before+1)

	out := mg.MustCLI(t, "ban", "rm", "--ip", src)
	if !strings.Contains(out, fmt.Sprintf("lifted ban %d", ban.ID)) {
		t.Errorf("ban rm --ip %s: %q, want it to name ban %d", src, out, ban.ID)
	}
	for _, b := range bfBansByID(t, mg) {
		if b.IP == src {
			t.Errorf("ban rm --ip %s left %+v", src, b)
		}
	}
	bfOK(t, "imap", dc, src, bfCarol, bfCarolPW)
}

// bfLoginBanAfterRestart: bob's login ban still holds after the restart,
// his home address is still known good, and `ban rm ID` lifts the ban.
func bfLoginBanAfterRestart(t *testing.T, mg *harness.MG, dc *harness.Dovecot, ban bfBan) {
	// Known-good addresses are in the store too.
	bfOK(t, "imap", dc, "127.0.0.60", bfBob, bfBobPW)
	if e := bfExplain(t, mg, bfBob, "127.0.0.64", "imap", ""); e.Reason != "banned_login" || e.Ban != ban.ID {
		t.Errorf("after the restart, explain bob from 127.0.0.64 = %+v, want banned_login by ban %d", e, ban.ID)
	}
	out := mg.MustCLI(t, "ban", "rm", strconv.FormatInt(ban.ID, 10))
	if !strings.Contains(out, fmt.Sprintf("lifted ban %d", ban.ID)) || !strings.Contains(out, bfBob) {
		t.Errorf("ban rm %d: %q, want it to name the ban and %s", ban.ID, out, bfBob)
	}
	bfOK(t, "imap", dc, "127.0.0.65", bfBob, bfBobPW)
	if e := bfExplain(t, mg, bfBob, "127.0.0.64", "imap", ""); e.Verdict != "allow" {
		t.Errorf("after ban rm, explain bob from 127.0.0.64 = %+v, want allow", e)
	}
}

// bfLogin logs in over proto ("imap" or "pop3") from src and returns the
// result and how long it took. Each login gets 45 s: Dovecot's penalty
// (at most 15 s) plus its failure delay plus a tarpit.
func bfLogin(proto string, dc *harness.Dovecot, src, user, pass string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	start := time.Now()
	var err error
	switch proto {
	case "imap":
		err = harness.IMAPLogin(ctx, netip.MustParseAddr(src), dc.IMAPAddr, user, pass)
	case "pop3":
		err = harness.POP3Login(ctx, netip.MustParseAddr(src), dc.POP3Addr, user, pass)
	default:
		panic("bfLogin: protocol " + proto)
	}
	return time.Since(start), err
}

// bfOK logs in and fails t unless the login succeeds.
func bfOK(t *testing.T, proto string, dc *harness.Dovecot, src, user, pass string) {
	t.Helper()
	elapsed, err := bfLogin(proto, dc, src, user, pass)
	if err != nil {
		t.Fatalf("%s login as %s from %s: want success, got (after %v) %v", proto, user, src, elapsed.Round(time.Millisecond), err)
	}
	t.Logf("%s %s from %s: OK in %v", proto, user, src, elapsed.Round(time.Millisecond))
}

// bfRefusal is bfRefused that also returns what the client saw.
func bfRefusal(t *testing.T, proto string, dc *harness.Dovecot, src, user, pass, want string) (string, time.Duration) {
	t.Helper()
	elapsed, err := bfLogin(proto, dc, src, user, pass)
	var le *harness.LoginError
	if !errors.As(err, &le) || !strings.Contains(le.Response, want) {
		t.Fatalf("%s login as %s from %s: want a refusal containing %q, got (after %v) %v", proto, user, src, want, elapsed.Round(time.Millisecond), err)
	}
	t.Logf("%s %s from %s: refused in %v: %s", proto, user, src, elapsed.Round(time.Millisecond), le.Response)
	return le.Response, elapsed
}

// bfRefused logs in and fails t unless the server refuses with a reply
// containing want. It returns how long the login took.
func bfRefused(t *testing.T, proto string, dc *harness.Dovecot, src, user, pass, want string) time.Duration {
	t.Helper()
	elapsed, err := bfLogin(proto, dc, src, user, pass)
	var le *harness.LoginError
	if !errors.As(err, &le) {
		t.Fatalf("%s login as %s from %s: want a refusal containing %q, got (after %v) %v", proto, user, src, want, elapsed.Round(time.Millisecond), err)
	}
	if !strings.Contains(le.Response, want) {
		t.Fatalf("%s login as %s from %s: the client saw %q, want it to contain %q", proto, user, src, le.Response, want)
	}
	t.Logf("%s %s from %s: refused in %v: %s", proto, user, src, elapsed.Round(time.Millisecond), le.Response)
	return elapsed
}

// bfBansByID returns `mailgate ban list --json` by ban id.
func bfBansByID(t *testing.T, mg *harness.MG) map[int64]bfBan {
	t.Helper()
	out := mg.MustCLI(t, "ban", "list", "--json")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("ban list --json is not a JSON array of objects: %v\n%s", err, out)
	}
	for _, r := range raw {
		for _, k := range []string{"id", "kind", "reason", "created", "expires", "comment", "created_by"} {
			if _, ok := r[k]; !ok {
				t.Errorf("ban list --json: a ban has no key %q:\n%s", k, out)
			}
		}
	}
	var bs []bfBan
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		t.Fatalf("ban list --json: %v\n%s", err, out)
	}
	m := make(map[int64]bfBan, len(bs))
	for _, b := range bs {
		if _, dup := m[b.ID]; dup || b.ID <= 0 {
			t.Errorf("ban list --json: duplicate or bad id %d:\n%s", b.ID, out)
		}
		m[b.ID] = b
	}
	return m
}

// bfFindBan returns the one listed ban that match accepts, failing t if
// there is none or more than one.
func bfFindBan(t *testing.T, mg *harness.MG, match func(bfBan) bool) bfBan {
	t.Helper()
	var found []bfBan
	all := bfBansByID(t, mg)
	for _, b := range all {
		if match(b) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("ban list --json: want one matching ban, found %d in %+v", len(found), all)
	}
	return found[0]
}

// bfExplain runs `mailgate explain --json` (with --pwhash when given).
func bfExplain(t *testing.T, mg *harness.MG, account, src, service, pwh string) bfExplained {
	t.Helper()
	args := []string{"explain", "--account", account, "--ip", src, "--service", service, "--json"}
	if pwh != "" {
		args = append(args, "--pwhash", pwh)
	}
	out := mg.MustCLI(t, args...)
	var e bfExplained
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	return e
}

// bfCount counts the decision log lines with all fields of want.
func bfCount(mg *harness.MG, want map[string]string) int {
	return len(harness.Find(harness.ParseLog(mg.DecisionLog()), want))
}

// bfWaitCount waits up to 5 s for at least n decision log lines with all
// fields of want (the decision log is appended across restarts, so
// WaitLogLine cannot tell a new line from an old one).
func bfWaitCount(t *testing.T, mg *harness.MG, want map[string]string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := bfCount(mg, want)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want %d lines with %v in mailgate's decision log, found %d:\n%s", n, want, got, mg.DecisionLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bfSameSecond compares optional times to the second (the store keeps
// whole seconds).
func bfSameSecond(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Unix() == b.Unix()
}

// bfCheckHashesDistinct makes sure the test's passwords fall into
// different pwhash buckets (12 bits: two passwords may share one, which
// would turn a "different" wrong password into a repeat). The nonce is
// fixed, so this fails only if someone changes a password or the nonce.
func bfCheckHashesDistinct(t *testing.T, nonce string) {
	t.Helper()
	for login, pws := range map[string][]string{
		bfBob:   append([]string{bfBobPW}, bfBobWrong...),
		bfCarol: append([]string{bfCarolPW}, bfCarolWrong...),
		bfDave:  {bfDavePW, bfDaveOldPW},
	} {
		seen := map[string]string{}
		for _, pw := range pws {
			h := pwhash(nonce, login, pw)
			if other, dup := seen[h]; dup {
				t.Fatalf("test setup: %s's passwords %q and %q share pwhash %s; change one", login, other, pw, h)
			}
			seen[h] = pw
		}
	}
}

// bfCheckNoSecrets checks that neither the decision log nor stderr holds
// a password, the API key or a password hash of the test.
func bfCheckNoSecrets(t *testing.T, mg *harness.MG, dc *harness.Dovecot) {
	t.Helper()
	creds := [][2]string{{bfBob, bfBobPW}, {bfCarol, bfCarolPW}, {bfDave, bfDavePW}, {bfDave, bfDaveOldPW}, {bfErin, bfErinPW}}
	for _, pw := range bfBobWrong {
		creds = append(creds, [2]string{bfBob, pw})
	}
	for _, pw := range bfCarolWrong {
		creds = append(creds, [2]string{bfCarol, pw})
	}
	hashes := map[string]bool{}
	for _, c := range creds {
		hashes[pwhash(dc.Nonce, c[0], c[1])] = true
	}
	logs := map[string]string{"decision log": mg.DecisionLog(), "stderr": mg.Stderr()}
	for name, log := range logs {
		for _, c := range creds {
			if strings.Contains(log, c[1]) {
				t.Errorf("mailgate's %s contains the password %q", name, c[1])
			}
		}
		if strings.Contains(log, bfAPIKey) {
			t.Errorf("mailgate's %s contains the API key", name)
		}
		if strings.Contains(strings.ToLower(log), "pwhash") {
			t.Errorf("mailgate's %s mentions pwhash", name)
		}
		for _, l := range harness.ParseLog(log) {
			for k, v := range l {
				if hashes[v] {
					t.Errorf("mailgate's %s has a password hash as %s=%s", name, k, v)
				}
			}
		}
	}
}

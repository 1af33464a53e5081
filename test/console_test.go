package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"mailgate/test/harness"
)

const (
	conAdmin, conAdminPW = "admin", "Console-Secret-2026"
	conAlice, conAlicePW = "alice@example.test", "Alice-Console-0815"
	conAPIKey            = "console-e2e-policy-key-77"
	conAttacker          = "127.0.0.151" // fails three times: banned
	conExplainIP         = "127.0.0.152" // the explain and rule scenario
)

// screenshots is where the console test saves its pictures:
// $MAILGATE_ARTIFACTS/console (make test sets it to ./artifacts), or the
// test's artifact directory (kept with go test -artifacts).
func screenshots(t *testing.T) string {
	dir := t.ArtifactDir()
	if a := os.Getenv("MAILGATE_ARTIFACTS"); a != "" {
		dir = filepath.Join(a, "console")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("console screenshots in %s", dir)
	return dir
}

// TestConsoleInBrowser drives the admin console in a real headless
// Chromium against a running mailgate behind a real Dovecot: sign in, see
// the ban that three failed IMAP logins made, lift it (and log in from
// that address), explain a POP3 login, add a rule and watch the verdict
// change (and Dovecot refuse), search the decision log, and see a change
// without the CSRF token refused.
func TestConsoleInBrowser(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	harness.Require(t, harness.ChromiumPackages)
	shots := screenshots(t)
	dir := harness.TempDir(t, "con-")
	consoleAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	decisions := filepath.Join(dir, "decisions.log")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, conAPIKey, fmt.Sprintf(`
[log]
decisions = %q

[bruteforce]
addr_failures = 3

[console]
listen = %q
users_file = %q
`, decisions, consoleAddr, filepath.Join(dir, "console-users"))))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{conAlice: conAlicePW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    conAPIKey,
		Nonce:     "console-e2e-nonce",
	})

	// The user is added while the daemon runs: it counts at the next sign-in.
	add := exec.Command(mg.Bin, "console-user", "add", "--config", mg.ConfigPath, conAdmin)
	add.Stdin = strings.NewReader(conAdminPW + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("console-user add: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "console-users")); strings.Contains(string(b), conAdminPW) {
		t.Fatal("the users file holds the password")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ip := netip.MustParseAddr

	// Three wrong passwords from one address: an address ban.
	for i := range 3 {
		mustBeRefused(t, harness.IMAPLogin(ctx, ip(conAttacker), dc.IMAPAddr, conAlice, fmt.Sprintf("Wrong-%d", i)), "AUTHENTICATIONFAILED")
	}
	var banID int64
	harness.Eventually(t, 20*time.Second, func() error {
		var bans []bfBan
		if err := json.Unmarshal([]byte(mg.MustCLI(t, "ban", "list", "--json")), &bans); err != nil {
			return err
		}
		for _, b := range bans {
			if b.IP == conAttacker {
				banID = b.ID
				return nil
			}
		}
		return fmt.Errorf("no ban of %s yet: %+v", conAttacker, bans)
	})

	b := harness.StartBrowser(t)
	base := "http://" + consoleAddr + "/console/"
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// text reads an element's text; a page that is still being replaced
	// (a form just submitted) is asked again.
	text := func(sel string) string {
		t.Helper()
		var s string
		harness.Eventually(t, 10*time.Second, func() error {
			var err error
			s, err = chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
			return err
		})
		return s
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(b, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Sign in: the console sends a browser without a session there.
	do("open the console", chromedp.Navigate(base))
	if loc, _ := chromedp.Run(b, chromedp.Location()); !strings.HasSuffix(loc, "/console/signin") {
		t.Fatalf("without a session the console is at %s, want the sign-in page", loc)
	}
	shot("01-signin")
	do("sign in",
		chromedp.SendKeys(chromedp.CSS(`input[name=name]`), conAdmin),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), conAdminPW),
		chromedp.Submit(chromedp.CSS(`input[name=password]`)),
		chromedp.WaitVisible(chromedp.CSS(`form.signout`)),
	)
	if got := text("main"); !strings.Contains(got, conAttacker) || !strings.Contains(got, "Active bans: 1") {
		t.Errorf("overview does not show the ban of %s:\n%s", conAttacker, got)
	}
	shot("02-overview")

	// The ban, and its lifting.
	do("bans page", chromedp.Navigate(base+"bans"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf("#lift-%d", banID))))
	shot("03-bans")
	do("lift the ban", chromedp.Click(chromedp.CSS(fmt.Sprintf("#lift-%d", banID))), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if got := text(".flash"); got != fmt.Sprintf("Ban %d lifted.", banID) {
		t.Errorf("after lifting: %q", got)
	}
	if out := mg.MustCLI(t, "ban", "list", "--json"); strings.Contains(out, conAttacker) {
		t.Fatalf("the ban is still there after lifting it in the console:\n%s", out)
	}
	mustLogIn(t, harness.IMAPLogin(ctx, ip(conAttacker), dc.IMAPAddr, conAlice, conAlicePW))
	audit := mg.MustCLI(t, "audit", "--json")
	if !strings.Contains(audit, `"actor": "console:admin"`) {
		t.Errorf("the audit trail does not name console:admin:\n%s", audit)
	}

	// Explain, add a rule, explain again.
	explain := func() string {
		t.Helper()
		do("explain",
			chromedp.Navigate(base+"rules?ex_account="+conAlice+"&ex_ip="+conExplainIP+"&ex_service=pop3"),
			chromedp.WaitVisible(chromedp.CSS("#explain-result")))
		return text("#explain-result .verdict")
	}
	if v := explain(); v != "allow" {
		t.Errorf("explain before the rule: %q, want allow", v)
	}
	shot("04-explain-allow")
	do("add a rule",
		chromedp.SetValue(chromedp.CSS(`#addrule input[name=account]`), conAlice),
		chromedp.SetValue(chromedp.CSS(`#addrule select[name=action]`), "deny"),
		chromedp.SetValue(chromedp.CSS(`#addrule select[name=service]`), "pop3"),
		chromedp.SendKeys(chromedp.CSS(`#addrule input[name=match]`), conExplainIP),
		chromedp.SendKeys(chromedp.CSS(`#addrule input[name=comment]`), "<b>lost laptop</b>"),
		chromedp.Submit(chromedp.CSS(`#addrule input[name=match]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")),
	)
	if got := text(".flash"); !strings.HasPrefix(got, "Rule ") || !strings.HasSuffix(got, " added.") {
		t.Fatalf("after adding the rule: %q", got)
	}
	if v := explain(); v != "deny" {
		t.Errorf("explain after the rule: %q, want deny", v)
	}
	if got := text("#explain-result"); !strings.Contains(got, "account_deny") {
		t.Errorf("explain does not name account_deny:\n%s", got)
	}
	shot("05-rules-explain-deny")
	mustBeRefused(t, harness.POP3Login(ctx, ip(conExplainIP), dc.POP3Addr, conAlice, conAlicePW), "may not use POP3")
	// The comment is shown as text, not markup.
	inert, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.querySelector("main").innerText.includes("<b>lost laptop</b>") &&
		![...document.querySelectorAll("main b")].some(e => e.textContent === "lost laptop")`))
	if err != nil || !inert {
		t.Errorf("the rule's comment <b>lost laptop</b> is not shown as text (%v)", err)
	}

	// The decision log, searched by address.
	do("open the decision log",
		chromedp.Navigate(base+"log"),
		chromedp.SendKeys(chromedp.CSS(`#search input[name=ip]`), conAttacker),
	)
	// The unfiltered page shows #results too: mark it, so that the wait
	// below sees only the page the search loads.
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](`document.body.dataset.before = "search", true`)); err != nil {
		t.Fatal(err)
	}
	do("search the decision log",
		chromedp.Click(chromedp.CSS(`#search button`)),
		chromedp.WaitVisible(chromedp.CSS("body:not([data-before]) #results")),
	)
	res := text("#results")
	if strings.Count(res, "auth failure") != 3 || !strings.Contains(res, "auth success") || strings.Contains(res, conExplainIP) {
		t.Errorf("decision log search for %s: want its 3 failures and the success, nothing else:\n%s", conAttacker, res)
	}
	shot("06-decision-log")
	do("account page", chromedp.Navigate(base+"account?login="+conAlice), chromedp.WaitVisible(chromedp.CSS("main table")))
	if got := text("main"); !strings.Contains(got, conAttacker) || !strings.Contains(got, "lost laptop") {
		t.Errorf("account page lacks the known-good address or the rule:\n%s", got)
	}
	shot("07-account")
	do("permits page", chromedp.Navigate(base+"permits"), chromedp.WaitVisible(chromedp.CSS("main")))
	shot("08-permits")

	// On a phone's screen: nothing wider than the screen but the tables,
	// which scroll in their own box.
	do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("main")))
	if w, err := chromedp.Run(b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); err != nil || w > 390 {
		t.Errorf("on a 390 px wide screen the overview is %d px wide (%v)", w, err)
	}
	shot("09-overview-phone")
	do("desktop", chromedp.EmulateReset())

	// A change without the CSRF token: 403, nothing changed.
	status, err := chromedp.Run(b, chromedp.Evaluate[int](`fetch("/console/bans/add", {method: "POST",
		headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "ip=127.0.0.153&for=1h"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != 403 {
		t.Errorf("POST without the CSRF token: status %d (%v), want 403", status, err)
	}
	if out := mg.MustCLI(t, "ban", "list", "--json"); strings.Contains(out, "127.0.0.153") {
		t.Errorf("a POST without the CSRF token added a ban:\n%s", out)
	}

	// Sign out: the session is gone.
	do("sign out", chromedp.Navigate(base), chromedp.Click(chromedp.CSS(`form.signout button`)), chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)))
	do("after sign-out", chromedp.Navigate(base+"bans"), chromedp.WaitVisible(chromedp.CSS(`input[name=password]`)))
}

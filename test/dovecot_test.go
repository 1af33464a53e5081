// Package test holds mailgate's end-to-end tests: the built mailgate
// binary against the real mail programs, driven by real clients. The
// machinery lives in test/harness.
package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// mustLogIn fails t unless a login succeeded.
func mustLogIn(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("login refused: %v", err)
	}
}

// mustBeRefused fails t unless the server refused the login with a reply
// containing want.
func mustBeRefused(t *testing.T, err error, want string) {
	t.Helper()
	var le *harness.LoginError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want the server to refuse the login", err)
	}
	if !strings.Contains(le.Response, want) {
		t.Fatalf("the client saw %q, want it to contain %q", le.Response, want)
	}
}

func TestMain(m *testing.M) { harness.Main(m) }

// mailgateConfig is a config for one test's mailgate: its database and
// admin socket in dir, the Dovecot door on a free loopback port with
// apiKey (none when empty), then extra TOML.
func mailgateConfig(t *testing.T, dir, apiKey, extra string) string {
	t.Helper()
	return fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
listen = "127.0.0.1:%d"
api_key = %q
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), harness.FreePort(t), apiKey) + extra
}

const (
	shop, shopPW   = "shop@example.test", "Shop-Secret-4711"
	alice, alicePW = "alice@example.test", "Alice-Secret-0815"
	wrongPW        = "Wrong-Secret-9999"
	apiKey         = "e2e-policy-key-31337"
	nonce          = "e2e-nonce-7c1f"

	shopWebServer = "127.0.0.101" // the seed's 10.0.0.101, on loopback
	aliceDenied   = "127.0.0.41"
)

// TestDovecotEndToEnd is the scenario: the seed's shop example
// (SMTP only from the shop's web server, POP3 from nowhere, IMAP from
// anywhere) plus one address denied for alice, enforced by a running
// `mailgate serve` behind a real Dovecot, checked with real IMAP and POP3
// logins from distinct 127.0.0.x addresses (Dovecot's per-IP failure
// penalty would otherwise delay each next login), before and after a
// restart of mailgate.
func TestDovecotEndToEnd(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	dir := harness.TempDir(t, "e2e-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, apiKey, ""))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{shop: shopPW, alice: alicePW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    apiKey,
		Nonce:     nonce,
	})

	// The seed's shop rules, and alice blocked from one address.
	mg.MustCLI(t, "rule", "add", "--account", shop, "--service", "smtp", "--allow", "--ip", shopWebServer, "--comment", "shop web server")
	mg.MustCLI(t, "rule", "add", "--account", shop, "--service", "pop3", "--allow", "--ip", "none")
	mg.MustCLI(t, "rule", "add", "--account", alice, "--service", "all", "--deny", "--ip", aliceDenied, "--comment", "stolen phone")
	ids := checkRuleList(t, mg)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ip := netip.MustParseAddr
	ok, refused := mustLogIn, mustBeRefused
	// deny waits for mailgate's decision line for a refused attempt.
	deny := func(t *testing.T, reason string, rule int64, service, login, src string) {
		t.Helper()
		mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": reason, "rule": strconv.FormatInt(rule, 10),
			"door": "dovecot", "service": service, "login": login, "ip": src})
	}

	t.Run("before restart", func(t *testing.T) {
		t.Run("shop imap from anywhere", func(t *testing.T) {
			t.Parallel()
			ok(t, harness.IMAPLogin(ctx, ip("127.0.0.21"), dc.IMAPAddr, shop, shopPW))
			mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "dovecot", "service": "imap", "login": shop, "ip": "127.0.0.21"})
			mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "dovecot", "service": "imap", "login": shop, "ip": "127.0.0.21"})
		})
		t.Run("shop pop3 closed", func(t *testing.T) {
			t.Parallel()
			refused(t, harness.POP3Login(ctx, ip("127.0.0.31"), dc.POP3Addr, shop, shopPW), "POP3 is disabled")
			deny(t, "service_closed", ids.shopPOP3, "pop3", shop, "127.0.0.31")
		})
		t.Run("shop pop3 closed from the web server too", func(t *testing.T) {
			t.Parallel()
			// Its smtp allow rule does not open POP3.
			refused(t, harness.POP3Login(ctx, ip(shopWebServer), dc.POP3Addr, shop, shopPW), "POP3 is disabled")
			deny(t, "service_closed", ids.shopPOP3, "pop3", shop, shopWebServer)
		})
		t.Run("alice denied address", func(t *testing.T) {
			t.Parallel()
			// The rule covers every service; the second refusal from the
			// same address also waits out Dovecot's penalty for the first.
			refused(t, harness.IMAPLogin(ctx, ip(aliceDenied), dc.IMAPAddr, alice, alicePW), "may not use IMAP")
			deny(t, "account_deny", ids.aliceDeny, "imap", alice, aliceDenied)
			refused(t, harness.POP3Login(ctx, ip(aliceDenied), dc.POP3Addr, alice, alicePW), "may not use POP3")
			deny(t, "account_deny", ids.aliceDeny, "pop3", alice, aliceDenied)
		})
		t.Run("alice other address", func(t *testing.T) {
			t.Parallel()
			ok(t, harness.IMAPLogin(ctx, ip("127.0.0.42"), dc.IMAPAddr, alice, alicePW))
			ok(t, harness.POP3Login(ctx, ip("127.0.0.44"), dc.POP3Addr, alice, alicePW))
		})
		t.Run("wrong password still fails", func(t *testing.T) {
			t.Parallel()
			// mailgate allows the address; Dovecot's own password check
			// must still refuse, with Dovecot's text, not mailgate's.
			err := harness.IMAPLogin(ctx, ip("127.0.0.43"), dc.IMAPAddr, alice, wrongPW)
			refused(t, err, "AUTHENTICATIONFAILED")
			if strings.Contains(err.Error(), "may not use") || strings.Contains(err.Error(), "disabled") {
				t.Errorf("a wrong password was refused with mailgate's text: %v", err)
			}
			mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "dovecot", "service": "imap", "login": alice, "ip": "127.0.0.43"})
			mg.WaitLogLine(t, map[string]string{"auth": "failure", "door": "dovecot", "service": "imap", "login": alice, "ip": "127.0.0.43"})
		})
		t.Run("policy endpoint wants the api key", func(t *testing.T) {
			t.Parallel()
			body := `{"device_id":"","login":"shop@example.test","protocol":"pop3","pwhash":"0abc","remote":"127.0.0.99","session_id":"x","tls":false}`
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Post(mg.DovecotURL()+"?command=allow", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				t.Errorf("a policy request without X-API-Key got %s, want a refusal", resp.Status)
			}
		})
	})
	if t.Failed() {
		return
	}

	checkExplain(t, mg, ids)
	checkNoSecrets(t, mg, dc)

	mg.Restart()
	t.Run("after restart", func(t *testing.T) {
		if got := checkRuleList(t, mg); got != ids {
			t.Errorf("rule ids after restart = %+v, want %+v", got, ids)
		}
		checkExplain(t, mg, ids)
		t.Run("shop pop3 still closed", func(t *testing.T) {
			t.Parallel()
			refused(t, harness.POP3Login(ctx, ip("127.0.0.32"), dc.POP3Addr, shop, shopPW), "POP3 is disabled")
			deny(t, "service_closed", ids.shopPOP3, "pop3", shop, "127.0.0.32")
		})
		t.Run("shop imap still open", func(t *testing.T) {
			t.Parallel()
			ok(t, harness.IMAPLogin(ctx, ip("127.0.0.22"), dc.IMAPAddr, shop, shopPW))
		})
	})
	checkNoSecrets(t, mg, dc)
}

// ruleIDs are the ids mailgate gave the test's rules.
type ruleIDs struct {
	shopSMTP, shopPOP3, aliceDeny int64
}

// checkRuleList checks `rule list --json` against the rules the test
// added and returns their ids.
func checkRuleList(t *testing.T, mg *harness.MG) ruleIDs {
	t.Helper()
	out := mg.MustCLI(t, "rule", "list", "--json")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("rule list --json is not a JSON array of objects: %v\n%s", err, out)
	}
	if len(raw) != 3 {
		t.Fatalf("rule list --json has %d rules, want 3:\n%s", len(raw), out)
	}
	for _, r := range raw {
		for _, k := range []string{"id", "scope", "account", "service", "action", "match", "comment", "expires", "created", "created_by"} {
			if _, ok := r[k]; !ok {
				t.Errorf("rule list --json: a rule has no key %q:\n%s", k, out)
			}
		}
	}
	var rs []struct {
		ID        int64      `json:"id"`
		Scope     string     `json:"scope"`
		Account   string     `json:"account"`
		Service   string     `json:"service"`
		Action    string     `json:"action"`
		Match     string     `json:"match"`
		Comment   string     `json:"comment"`
		Expires   *time.Time `json:"expires"`
		Created   time.Time  `json:"created"`
		CreatedBy string     `json:"created_by"`
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("rule list --json: %v\n%s", err, out)
	}
	var ids ruleIDs
	for _, r := range rs {
		key := strings.Join([]string{r.Scope, r.Account, r.Service, r.Action, r.Match, r.Comment}, " ")
		switch key {
		case "account shop@example.test smtp allow " + shopWebServer + " shop web server":
			ids.shopSMTP = r.ID
		case "account shop@example.test pop3 allow none ":
			ids.shopPOP3 = r.ID
		case "account alice@example.test all deny " + aliceDenied + " stolen phone":
			ids.aliceDeny = r.ID
		default:
			t.Errorf("rule list --json: unexpected rule %q", key)
		}
		if r.ID <= 0 || r.Expires != nil || r.Created.IsZero() || time.Since(r.Created) > time.Hour || r.CreatedBy == "" {
			t.Errorf("rule list --json: rule %d: id, expires, created or created_by wrong: %+v", r.ID, r)
		}
	}
	if ids.shopSMTP == 0 || ids.shopPOP3 == 0 || ids.aliceDeny == 0 {
		t.Fatalf("rule list --json lacks one of the rules added:\n%s", out)
	}
	// The listing filtered by account.
	out = mg.MustCLI(t, "rule", "list", "--account", shop, "--json")
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 2 {
		t.Errorf("rule list --account %s --json: want the 2 shop rules, got (%v):\n%s", shop, err, out)
	}
	return ids
}

// checkExplain checks `mailgate explain --json` for the shop's POP3 and
// for alice.
func checkExplain(t *testing.T, mg *harness.MG, ids ruleIDs) {
	t.Helper()
	type explained struct {
		Verdict string            `json:"verdict"`
		Reason  string            `json:"reason"`
		Rule    int64             `json:"rule"`
		Message string            `json:"message"`
		Checks  []json.RawMessage `json:"checks"`
	}
	explain := func(account, src, service string) explained {
		t.Helper()
		out := mg.MustCLI(t, "explain", "--account", account, "--ip", src, "--service", service, "--json")
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			t.Fatalf("explain --json is not a JSON object: %v\n%s", err, out)
		}
		for _, k := range []string{"verdict", "reason", "rule", "message", "checks"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("explain --json has no key %q:\n%s", k, out)
			}
		}
		var e explained
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Fatalf("explain --json: %v\n%s", err, out)
		}
		if len(e.Checks) == 0 {
			t.Errorf("explain --json lists no checks:\n%s", out)
		}
		return e
	}
	e := explain(shop, "127.0.0.55", "pop3")
	if e.Verdict != "deny" || e.Reason != "service_closed" || e.Rule != ids.shopPOP3 || !strings.Contains(e.Message, "POP3 is disabled") {
		t.Errorf("explain shop pop3 = %+v, want deny service_closed rule %d \"POP3 is disabled...\"", e, ids.shopPOP3)
	}
	e = explain(shop, shopWebServer, "smtp")
	if e.Verdict != "allow" || e.Rule != ids.shopSMTP {
		t.Errorf("explain shop smtp from the web server = %+v, want allow by rule %d", e, ids.shopSMTP)
	}
	e = explain(shop, "127.0.0.55", "smtp")
	if e.Verdict != "deny" || e.Reason != "not_in_allowlist" {
		t.Errorf("explain shop smtp from elsewhere = %+v, want deny not_in_allowlist", e)
	}
	e = explain(alice, aliceDenied, "imap")
	if e.Verdict != "deny" || e.Reason != "account_deny" || e.Rule != ids.aliceDeny || !strings.Contains(e.Message, "may not use") {
		t.Errorf("explain alice from %s = %+v, want deny account_deny rule %d", aliceDenied, e, ids.aliceDeny)
	}
	e = explain(alice, "127.0.0.42", "imap")
	if e.Verdict != "allow" {
		t.Errorf("explain alice from 127.0.0.42 = %+v, want allow", e)
	}
}

// checkNoSecrets checks that neither mailgate's decision log nor its
// diagnostics hold a password or one of Dovecot's password hashes.
func checkNoSecrets(t *testing.T, mg *harness.MG, dc *harness.Dovecot) {
	t.Helper()
	logs := map[string]string{"decision log": mg.DecisionLog(), "stderr": mg.Stderr()}
	if n := len(harness.ParseLog(logs["decision log"])); n == 0 {
		t.Errorf("the decision log has no key=value lines:\n%s", logs["decision log"])
	}
	hashes := map[string]bool{}
	for _, c := range [][2]string{{shop, shopPW}, {alice, alicePW}, {alice, wrongPW}} {
		hashes[pwhash(dc.Nonce, c[0], c[1])] = true
	}
	for name, log := range logs {
		for _, pw := range []string{shopPW, alicePW, wrongPW, apiKey} {
			if strings.Contains(log, pw) {
				t.Errorf("mailgate's %s contains the secret %q", name, pw)
			}
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

// pwhash is Dovecot's auth policy password hash with the default settings
// (protocols.md §1.3): sha256(nonce || login || NUL || password), top 12
// bits, hex.
func pwhash(nonce, login, password string) string {
	d := sha256.Sum256([]byte(nonce + login + "\x00" + password))
	v := (uint16(d[0])<<8 | uint16(d[1])) >> 4
	return hex.EncodeToString([]byte{byte(v >> 8), byte(v)})
}

package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/test/harness"
)

// TestImportAndRulesCLI drives the built binary's rule commands against a
// running daemon: an ISPConfig import (the seed's rows as `mysql -B`
// prints them), idempotent re-import, explain on the imported rules,
// global rules, expiry, removal, the audit trail, and a rule that survives
// a restart while an expired one does not come back.
func TestImportAndRulesCLI(t *testing.T) {
	dir := harness.TempDir(t, "cli-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", `
[policy]
trusted_networks = ["192.0.2.0/24"]
`))

	tsv := filepath.Join(dir, "restrictions.tsv")
	os.WriteFile(tsv, []byte("email\tip\tmode\tservice\n"+
		"shop@example.com\t10.0.0.101\tw\tsmtp\n"+
		"shop@example.com\tnone\tw\tpop3\n"+
		"user@example.com\t123.234.123.234\tb\t\n"+
		"user@example.com\t123.234.123.235\tb\tsmtp\n"), 0o644)

	out := mg.MustCLI(t, "import", "ispconfig", "--csv", tsv, "--dry-run")
	if !strings.Contains(out, "4 rules would be added") {
		t.Fatalf("dry run: %s", out)
	}
	if rules := listRules(t, mg); len(rules) != 1 { // the config's trusted network
		t.Fatalf("dry run changed the rules: %v", rules)
	}
	if out := mg.MustCLI(t, "import", "ispconfig", "--csv", tsv); !strings.Contains(out, "4 rules added, 0 already present") {
		t.Fatalf("import: %s", out)
	}
	if out := mg.MustCLI(t, "import", "ispconfig", "--csv", tsv); !strings.Contains(out, "0 rules added, 4 already present") {
		t.Fatalf("re-import: %s", out)
	}

	for _, c := range []struct{ account, ip, service, verdict, reason string }{
		{"shop@example.com", "10.0.0.101", "smtp", "allow", "account_allow"},
		{"shop@example.com", "10.0.0.102", "submission", "deny", "not_in_allowlist"},
		{"shop@example.com", "10.0.0.101", "pop3", "deny", "service_closed"},
		{"shop@example.com", "203.0.113.1", "imap", "allow", "default"},
		{"user@example.com", "123.234.123.234", "imap", "deny", "account_deny"},
		{"user@example.com", "123.234.123.235", "smtp", "deny", "account_deny"},
		{"user@example.com", "123.234.123.235", "pop3", "allow", "default"},
		{"user@example.com", "192.0.2.9", "pop3", "allow", "trusted"},
	} {
		var e struct{ Verdict, Reason string }
		out := mg.MustCLI(t, "explain", "--account", c.account, "--ip", c.ip, "--service", c.service, "--json")
		if err := json.Unmarshal([]byte(out), &e); err != nil || e.Verdict != c.verdict || e.Reason != c.reason {
			t.Errorf("explain %v: %s", c, out)
		}
	}

	// The text form names the rule and what the user sees.
	out = mg.MustCLI(t, "explain", "--account", "shop@example.com", "--ip", "10.0.0.101", "--service", "pop3")
	for _, want := range []string{"DENY (service_closed)", `the user sees: "POP3 is disabled for this account."`, "imported from ISPConfig"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain text lacks %q:\n%s", want, out)
		}
	}

	// A global deny beats an account's allow; removing it lifts it.
	out = mg.MustCLI(t, "rule", "add", "--global", "--deny", "--ip", "10.0.0.0/24", "--comment", "compromised host")
	var id string
	fmt.Sscanf(out, "added rule %s", &id)
	id = strings.TrimSuffix(id, ":")
	if e := explainReason(t, mg, "shop@example.com", "10.0.0.101", "smtp"); e != "global_deny" {
		t.Errorf("after global deny: %s", e)
	}
	mg.MustCLI(t, "rule", "rm", id)
	if e := explainReason(t, mg, "shop@example.com", "10.0.0.101", "smtp"); e != "account_allow" {
		t.Errorf("after rm: %s", e)
	}

	// A rule with an expiry is listed with it; the audit trail has every change.
	mg.MustCLI(t, "rule", "add", "--account", "@example.com", "--service", "sieve", "--allow", "--ip", "none", "--expires", "1h")
	if e := explainReason(t, mg, "anyone@example.com", "203.0.113.1", "sieve"); e != "service_closed" {
		t.Errorf("domain rule: %s", e)
	}
	audit := mg.MustCLI(t, "audit", "--json")
	if strings.Count(audit, `"op": "add"`) != 6 || strings.Count(audit, `"op": "remove"`) != 1 {
		t.Errorf("audit:\n%s", audit)
	}

	mg.Restart()
	if got := listRules(t, mg); len(got) != 6 {
		t.Errorf("after restart: %d rules, want 6 (5 stored, 1 from the config)", len(got))
	}
	if e := explainReason(t, mg, "shop@example.com", "10.0.0.101", "pop3"); e != "service_closed" {
		t.Errorf("after restart: %s", e)
	}
}

func listRules(t *testing.T, mg *harness.MG) []map[string]any {
	t.Helper()
	var rs []map[string]any
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "rule", "list", "--json")), &rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

func explainReason(t *testing.T, mg *harness.MG, account, ip, service string) string {
	t.Helper()
	var e struct{ Reason string }
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "explain", "--account", account, "--ip", ip, "--service", service, "--json")), &e); err != nil {
		t.Fatal(err)
	}
	return e.Reason
}

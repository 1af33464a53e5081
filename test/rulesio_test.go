package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"mailgate/internal/store"
	"mailgate/test/harness"
)

// comparableRules is `rule list --json` without what a new server gives
// anew: ids, creation times and authors.
func comparableRules(t *testing.T, mg *harness.MG) []map[string]any {
	t.Helper()
	rs := listRules(t, mg)
	for _, r := range rs {
		delete(r, "id")
		delete(r, "created")
		delete(r, "created_by")
	}
	return rs
}

// TestRuleExportImportRoundTrip moves every rule from one daemon to a
// fresh one with `rule export` and `rule import`: the new server lists
// the same rules, importing again adds nothing, and a file with one bad
// line changes nothing and names the line.
func TestRuleExportImportRoundTrip(t *testing.T) {
	dirA := harness.TempDir(t, "export-a-")
	dirB := harness.TempDir(t, "export-b-")
	cfgExtra := "\n[policy]\ntrusted_networks = [\"192.0.2.0/24\"]\n"
	a := harness.StartMailgate(t, mailgateConfig(t, dirA, "", cfgExtra))
	b := harness.StartMailgate(t, mailgateConfig(t, dirB, "", cfgExtra))

	for _, args := range [][]string{
		{"--account", "alice@example.com", "--allow", "--ip", "10.1.0.0/16", "--service", "imap", "--comment", "office \"main\"", "--expires", "30d"},
		{"--account", "alice@example.com", "--deny", "--ip", "2001:db8::/32"},
		{"--account", "@example.com", "--allow", "--ip", "none", "--service", "pop3"},
		{"--account", "*", "--extra", "--ip", "203.0.113.9"},
		{"--global", "--deny", "--ip", "198.51.100.0/24", "--comment", "scanner"},
	} {
		a.MustCLI(t, append([]string{"rule", "add"}, args...)...)
	}
	tsv := filepath.Join(dirA, "isp.tsv")
	os.WriteFile(tsv, []byte("email\tip\tmode\tservice\nshop@example.com\t10.0.0.101\tw\tsmtp\n"), 0o644)
	a.MustCLI(t, "import", "ispconfig", "--csv", tsv)

	export := filepath.Join(dirA, "rules.jsonl")
	if out := a.MustCLI(t, "rule", "export", "--file", export); !strings.Contains(out, "6 rules written") {
		t.Fatalf("export: %s", out)
	}
	if _, _, err := a.CLI("rule", "export", "--file", export); err == nil {
		t.Fatal("export overwrote an existing file")
	}
	body, _ := os.ReadFile(export)
	if lines := strings.Count(string(body), "\n"); lines != 6 {
		t.Fatalf("export has %d lines, want 6 (the config's trusted network is not exported):\n%s", lines, body)
	}

	out := b.MustCLI(t, "rule", "import", "--file", export, "--dry-run")
	if !strings.Contains(out, "6 would be added") || len(listRules(t, b)) != 1 {
		t.Fatalf("dry run: %s; rules %v", out, listRules(t, b))
	}
	var res struct {
		Read, Added int
	}
	out = b.MustCLI(t, "rule", "import", "--file", export, "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Read != 6 || res.Added != 6 {
		t.Fatalf("import: %s", out)
	}
	if want, got := comparableRules(t, a), comparableRules(t, b); !reflect.DeepEqual(want, got) {
		t.Fatalf("rules differ after the round trip:\nA %v\nB %v", want, got)
	}
	if out := b.MustCLI(t, "rule", "import", "--file", export); !strings.Contains(out, "0 added, 6 already present") {
		t.Fatalf("second import: %s", out)
	}
	if n := len(listRules(t, b)); n != 7 {
		t.Fatalf("second import changed the rules: %d", n)
	}
	if got := explainReason(t, b, "alice@example.com", "10.2.0.1", "imap"); got != "not_in_allowlist" {
		t.Errorf("imported allow list not in force: %s", got)
	}

	// One bad line among good ones: nothing is added, the line is named.
	bad := filepath.Join(dirB, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"scope":"account","account":"new@example.com","service":"all","action":"deny","match":"10.9.9.9"}`+"\n"+
		`{"scope":"account","account":"new@example.com","service":"all","action":"deny","match":"10.9.9.300"}`+"\n"), 0o644)
	_, stderr, err := b.CLI("rule", "import", "--file", bad)
	if err == nil || !strings.Contains(stderr, "line 2: match") {
		t.Fatalf("bad file: err %v, stderr %s", err, stderr)
	}
	if n := len(listRules(t, b)); n != 7 {
		t.Fatalf("a bad file changed the rules: %d", n)
	}
}

// TestImportISPConfigSync removes the rules an earlier ISPConfig import
// made that ISPConfig no longer has, and nothing else.
func TestImportISPConfigSync(t *testing.T) {
	dir := harness.TempDir(t, "sync-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", ""))
	tsv := filepath.Join(dir, "isp.tsv")
	os.WriteFile(tsv, []byte("email\tip\tmode\tservice\n"+
		"shop@example.com\t10.0.0.101\tw\tsmtp\n"+
		"user@example.com\t10.0.0.7\tb\t\n"), 0o644)
	mg.MustCLI(t, "import", "ispconfig", "--csv", tsv)
	// Made by hand: one the same as a row that will go, one different.
	mg.MustCLI(t, "rule", "add", "--account", "user@example.com", "--deny", "--ip", "10.0.0.8", "--comment", "by hand")
	mg.MustCLI(t, "rule", "add", "--account", "shop@example.com", "--allow", "--ip", "10.0.0.5", "--service", "smtp")

	// ISPConfig drops user@'s row and gains one.
	os.WriteFile(tsv, []byte("email\tip\tmode\tservice\n"+
		"shop@example.com\t10.0.0.101\tw\tsmtp\n"+
		"shop@example.com\t10.0.0.102\tw\tsmtp\n"), 0o644)
	out := mg.MustCLI(t, "import", "ispconfig", "--csv", tsv, "--sync", "--dry-run")
	if !strings.Contains(out, "would remove rule") || !strings.Contains(out, "user@example.com all deny 10.0.0.7") ||
		!strings.Contains(out, "1 rules would be added, 1 already present, 1 would be removed") {
		t.Fatalf("dry run: %s", out)
	}
	if n := len(listRules(t, mg)); n != 4 {
		t.Fatalf("dry run changed the rules: %d", n)
	}
	out = mg.MustCLI(t, "import", "ispconfig", "--csv", tsv, "--sync")
	if !strings.Contains(out, "1 rules added, 1 already present, 1 removed") {
		t.Fatalf("sync: %s", out)
	}
	var matches []string
	for _, r := range listRules(t, mg) {
		matches = append(matches, r["account"].(string)+" "+r["match"].(string))
	}
	want := []string{"shop@example.com 10.0.0.101", "user@example.com 10.0.0.8", "shop@example.com 10.0.0.5", "shop@example.com 10.0.0.102"}
	if !reflect.DeepEqual(matches, want) {
		t.Fatalf("after sync: %v, want %v", matches, want)
	}
	// Without --sync nothing is removed.
	os.WriteFile(tsv, []byte("email\tip\tmode\tservice\n"), 0o644)
	if out := mg.MustCLI(t, "import", "ispconfig", "--csv", tsv); !strings.Contains(out, "0 rules added") || len(listRules(t, mg)) != 4 {
		t.Fatalf("import without --sync: %s", out)
	}
}

// TestBackupWhileRunning copies the store of a running daemon: the copy
// opens and holds its rules and bans; an existing file is refused.
func TestBackupWhileRunning(t *testing.T) {
	dir := harness.TempDir(t, "backup-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", ""))
	mg.MustCLI(t, "rule", "add", "--account", "alice@example.com", "--allow", "--ip", "10.1.0.0/16")
	mg.MustCLI(t, "ban", "add", "--ip", "203.0.113.66", "--for", "1h", "--comment", "backup test")

	copyPath := filepath.Join(dir, "copy.db")
	if out := mg.MustCLI(t, "backup", copyPath); !strings.Contains(out, "store copied to "+copyPath) {
		t.Fatalf("backup: %s", out)
	}
	if fi, err := os.Stat(copyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("copy: %v %v", fi, err)
	}
	if _, stderr, err := mg.CLI("backup", copyPath); err == nil || !strings.Contains(stderr, "exists") {
		t.Fatalf("backup over an existing file: %v %s", err, stderr)
	}
	st, err := store.OpenSQLite(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs, err := st.Rules(t.Context())
	if err != nil || len(rs) != 1 || rs[0].Account != "alice@example.com" {
		t.Fatalf("rules in the copy: %v %v", rs, err)
	}
	bans, _, err := st.Bans(t.Context(), time.Now())
	if err != nil || len(bans) != 1 || bans[0].Comment != "backup test" {
		t.Fatalf("bans in the copy: %+v %v", bans, err)
	}
	// No temporary copy is left next to the store.
	left, _ := filepath.Glob(filepath.Join(dir, ".mailgate-backup-*"))
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

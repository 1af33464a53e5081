package main

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"mailgate/internal/config"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the generated table in docs/reload.md")

// Every config key is classified: a new key must say whether a reload
// applies it; and every entry names a key that exists.
func TestReloadTableCoversEveryKey(t *testing.T) {
	keys := configKeys()
	if len(keys) < 50 {
		t.Fatalf("only %d config keys found: %v", len(keys), keys)
	}
	for _, k := range keys {
		if _, ok := reloadRuleFor(k); !ok {
			t.Errorf("config key %s is not in reloadTable: say whether a reload applies it", k)
		}
	}
	for _, r := range reloadTable {
		if !slices.ContainsFunc(keys, func(k string) bool { return k == r.Key || strings.HasPrefix(k, r.Key+".") }) {
			t.Errorf("reloadTable entry %s names no config key", r.Key)
		}
	}
}

func TestReloadRuleFor(t *testing.T) {
	for key, want := range map[string]bool{
		"dovecot.listen":            false,
		"bruteforce.addr_failures":  true,
		"bruteforce.ipv6_prefix":    false,
		"relay.ttl":                 true,
		"relay.enabled":             false,
		"geoip.database":            true,
		"policy.trusted_networks":   true,
		"firewall.mode":             true,
		"firewall.enabled":          false,
		"limits.account":            true,
		"limits.max_accounts":       false,
		"messages":                  true,
		"store.path":                false,
		"log.decisions":             true,
		"postfix.socketmap_listen":  false,
		"bruteforce.login_tarpit":   false,
		"bruteforce.under_attack":   true,
		"nginx.listen":              false,
		"admin.socket":              false,
		"log.level":                 true,
		"relay.never_networks":      true,
		"geoip.allow_countries":     true,
		"bruteforce.known_good_for": true,
	} {
		if r, ok := reloadRuleFor(key); !ok || r.Reload != want {
			t.Errorf("%s: got %+v %v, want reload=%v", key, r, ok, want)
		}
	}
}

// changedKeys names what differs; keepRunning puts back what a reload
// cannot change and leaves the rest.
func TestChangedKeysKeepRunning(t *testing.T) {
	old := config.Default()
	cfg := config.Default()
	cfg.Dovecot.Listen = "127.0.0.1:4999"
	cfg.BruteForce.AddrFailures = 9
	cfg.BruteForce.IPv6Prefix = 56
	cfg.Messages = map[string]string{"global_deny": "no"}
	cfg.Limits.Accounts = []config.AccountLimits{{Account: "@example.com", MessagesPerHour: 1}}
	cfg.Policy.TrustedNetworks = nil // the same as the default empty list
	got := changedKeys(&old, &cfg)
	want := []string{"dovecot.listen", "limits.account", "bruteforce.ipv6_prefix", "bruteforce.addr_failures", "messages"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("changedKeys = %v, want %v", got, want)
	}
	keepRunning(&cfg, &old)
	if cfg.Dovecot.Listen != old.Dovecot.Listen || cfg.BruteForce.IPv6Prefix != 64 {
		t.Errorf("keepRunning left a restart-only change: %s /%d", cfg.Dovecot.Listen, cfg.BruteForce.IPv6Prefix)
	}
	if cfg.BruteForce.AddrFailures != 9 || cfg.Messages["global_deny"] != "no" || len(cfg.Limits.Accounts) != 1 {
		t.Errorf("keepRunning undid a reloadable change: %+v", cfg.BruteForce)
	}
}

// renderReloadDocs is the generated part of docs/reload.md.
func renderReloadDocs() string {
	var b strings.Builder
	b.WriteString("| Setting | On reload | What happens |\n|---|---|---|\n")
	for _, r := range reloadTable {
		what := "applied"
		if !r.Reload {
			what = "**needs a restart**"
		}
		key := "`" + r.Key + "`"
		if !strings.Contains(r.Key, ".") {
			key = "`[" + r.Key + "]` (all of it, unless named below)"
		}
		b.WriteString("| " + key + " | " + what + " | " + r.Why + " |\n")
	}
	return b.String()
}

const (
	docsBegin = "<!-- BEGIN generated from reloadTable in cmd/mailgate/reload.go: go test ./cmd/mailgate -run TestReloadDocs -update-docs -->\n"
	docsEnd   = "<!-- END generated -->\n"
)

func TestReloadDocs(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "reload.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, docsBegin), strings.Index(doc, docsEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no generated table between %q and %q", path, docsBegin, docsEnd)
	}
	want := doc[:i+len(docsBegin)] + renderReloadDocs() + doc[j:]
	if *updateDocs {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if doc != want {
		t.Errorf("%s: the table differs from reloadTable; run go test ./cmd/mailgate -run TestReloadDocs -update-docs", path)
	}
}

// Retarget moves the decision log to another file, stderr or nowhere,
// writing what was buffered to the old place; a file that cannot be
// opened changes nothing.
func TestDecisionWriterRetarget(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	d, err := openDecisionWriter(a)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Write([]byte("one\n"))
	if err := d.Retarget(filepath.Join(dir, "missing", "x.log")); err == nil {
		t.Fatal("a file in a missing directory was opened")
	}
	if err := d.Retarget(b); err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("two\n"))
	if err := d.Reopen(); err != nil { // logrotate: the new path
		t.Fatal(err)
	}
	if err := d.Retarget("off"); err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("three\n"))
	if err := d.Reopen(); err != nil { // not a file: nothing to reopen
		t.Fatal(err)
	}
	time.Sleep(0)
	for path, want := range map[string]string{a: "one\n", b: "two\n"} {
		got, _ := os.ReadFile(path)
		if string(got) != want {
			t.Errorf("%s: %q, want %q", filepath.Base(path), got, want)
		}
	}
}

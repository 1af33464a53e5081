package test

import (
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/test/harness"
)

var updateGolden = flag.Bool("update", false, "rewrite golden files")

// TestFail2banFilter runs the real fail2ban-regex (Debian's fail2ban) with
// etc/fail2ban/filter.d/mailgate.conf over decision lines made by the code
// that writes the decision log, kept in testdata/fail2ban/decisions.log so
// a change of the line format shows up as a diff. Each line says which
// address the filter must find in it, if any.
func TestFail2banFilter(t *testing.T) {
	harness.Require(t, map[string]string{"/usr/bin/fail2ban-regex": "fail2ban"})
	at := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	attempt := func(door, svc, login, ip, country string) *policy.Attempt {
		return &policy.Attempt{Door: door, Service: rules.ProtocolService(svc), Login: login,
			Client: netip.MustParseAddr(ip), Country: country, Session: map[bool]string{true: "s1"}[door == "dovecot"]}
	}
	type line struct {
		a       *policy.Attempt
		v       *policy.Verdict // nil: a result line
		success bool
		want    string // the address fail2ban must report; "" = no match
	}
	deny := func(r policy.Reason) *policy.Verdict {
		return &policy.Verdict{Action: policy.Deny, Reason: r, Source: "config"}
	}
	lines := []line{
		{attempt("nginx", "imap", "bob@example.com", "192.0.2.7", "CN"), nil, false, "192.0.2.7"},
		{attempt("dovecot", "pop3", "bob@example.com", "2001:db8::7", ""), nil, false, "2001:db8::7"},
		{attempt("nginx", "smtp", "bob@example.com", "192.0.2.8", "DE"), nil, true, ""},
		{attempt("nginx", "imap", "bob@example.com", "192.0.2.9", "CN"), deny(policy.ReasonCountryBlocked), false, "192.0.2.9"},
		{attempt("dovecot", "imap", "bob@example.com", "192.0.2.10", ""), &policy.Verdict{Action: policy.Deny, Reason: policy.ReasonBannedAddress, BanID: 12}, false, "192.0.2.10"},
		{attempt("dovecot", "imap", "", "192.0.2.11", ""), &policy.Verdict{Action: policy.Deny, Reason: policy.ReasonGlobalDeny, RuleID: 4}, false, "192.0.2.11"},
		// Not hostile by itself: a stale phone, an account rule, a banned
		// login (which may be its owner), an allow.
		{attempt("dovecot", "imap", "bob@example.com", "192.0.2.12", ""), &policy.Verdict{Action: policy.Tarpit, Reason: policy.ReasonStalePassword, Delay: 5 * time.Second}, false, ""},
		{attempt("dovecot", "smtp", "shop@example.com", "192.0.2.13", ""), &policy.Verdict{Action: policy.Deny, Reason: policy.ReasonNotInAllowlist, RuleID: 3}, false, ""},
		{attempt("nginx", "imap", "bob@example.com", "192.0.2.14", "DE"), &policy.Verdict{Action: policy.Deny, Reason: policy.ReasonBannedLogin, BanID: 9, Delay: time.Minute}, false, ""},
		{attempt("nginx", "imap", "bob@example.com", "192.0.2.15", "DE"), &policy.Verdict{Action: policy.Allow, Reason: policy.ReasonDefault}, false, ""},
		// A login crafted to look like another address is quoted.
		{attempt("nginx", "imap", `x ip=10.9.9.9 y`, "192.0.2.16", "CN"), nil, false, "192.0.2.16"},
		{attempt("nginx", "imap", `x" ip=10.9.9.8`, "192.0.2.17", "CN"), deny(policy.ReasonCountryBlocked), false, "192.0.2.17"},
		// Unicode spaces end fail2ban's \S* as ASCII ones do; format and
		// other unprintable characters hide what follows; invalid UTF-8.
		{attempt("dovecot", "imap", "bob\u00a0x@example.com", "192.0.2.18", ""), nil, false, "192.0.2.18"},
		{attempt("dovecot", "imap", "bob\u2003x@example.com", "192.0.2.19", ""), nil, false, "192.0.2.19"},
		{attempt("dovecot", "imap", "bob\u3000x@example.com", "192.0.2.20", ""), nil, false, "192.0.2.20"},
		{attempt("dovecot", "imap", "bob\u2028x@example.com", "192.0.2.21", ""), nil, false, "192.0.2.21"},
		{attempt("dovecot", "imap", "bob\u200bx@example.com", "192.0.2.22", ""), nil, false, "192.0.2.22"},
		{attempt("dovecot", "imap", "bob\xffx@example.com", "192.0.2.23", ""), nil, false, "192.0.2.23"},
		{attempt("nginx", "imap", "bob\u00a0ip=10.9.9.7", "192.0.2.24", "CN"), deny(policy.ReasonCountryBlocked), false, "192.0.2.24"},
	}
	var log []byte
	var want []string
	for _, l := range lines {
		if l.v == nil {
			log = policy.AppendResult(log, at, l.a, l.success)
		} else {
			log = policy.AppendVerdict(log, at, l.a, l.v)
		}
		if l.want != "" {
			want = append(want, l.want)
		}
		at = at.Add(time.Second)
	}
	golden := filepath.Join("testdata", "fail2ban", "decisions.log")
	if *updateGolden {
		os.MkdirAll(filepath.Dir(golden), 0o755)
		if err := os.WriteFile(golden, log, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if g, err := os.ReadFile(golden); err != nil || string(g) != string(log) {
		t.Fatalf("%s differs from the decision lines the code writes (err %v); if the change is meant, run go test ./test -run Fail2ban -update and update docs/decision-log.md\ngot:\n%s", golden, err, log)
	}

	out, err := exec.Command("fail2ban-regex", "-o", "ip", golden, filepath.Join("..", "etc", "fail2ban", "filter.d", "mailgate.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("fail2ban found\n  %v\nwant\n  %v", got, want)
	}
	// Every line's date is read (a line without a date is never banned on).
	out, err = exec.Command("fail2ban-regex", golden, filepath.Join("..", "etc", "fail2ban", "filter.d", "mailgate.conf")).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "["+strconv.Itoa(len(lines))+"] ^time=") {
		t.Errorf("the date pattern did not match every line:\n%s", out)
	}
}

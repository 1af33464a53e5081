package test

import (
	"encoding/json"
	"fmt"
	"testing"

	"mailgate/test/harness"
)

// TestSlowAddressBannedByTheHourWindow: an address failing more slowly
// than rule (b) counts (here rule (b) is out of reach: 50 a minute) is
// banned by the hour window, through the real Dovecot. The window is
// scaled down to two minutes so that the test runs in seconds; Dovecot's
// own penalty already spaces the failures of one address by seconds.
func TestSlowAddressBannedByTheHourWindow(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	const (
		user, pw = "gina@example.test", "Gina-Secret-7171"
		key      = "slow-e2e-policy-key-7171"
		slow     = "127.0.0.171"
	)
	dir := harness.TempDir(t, "slow-")
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, key, `
[bruteforce]
addr_failures = 50
hour_window = "2m"
addr_hour_failures = 3
addr_hour_ban = "1h"
`))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{user: pw},
		PolicyURL: mg.DovecotURL(),
		APIKey:    key,
	})

	// Three guesses on three logins (no login rule can see them).
	for i := range 3 {
		login := fmt.Sprintf("nobody%d@example.test", i)
		bfRefused(t, "imap", dc, slow, login, fmt.Sprintf("Guess-%d", i), bfWrongMsg)
		mg.WaitLogLine(t, map[string]string{"auth": "failure", "login": login, "ip": slow})
	}
	ev := mg.WaitLogLine(t, map[string]string{"event": "ban", "kind": "address", "ip": slow, "reason": "addr_hour"})
	ban := bfFindBan(t, mg, func(b bfBan) bool { return b.Kind == "address" && b.IP == slow })
	if ban.Reason != "addr_hour" || fmt.Sprint(ban.ID) != ev["ban"] {
		t.Errorf("ban list: %+v, want reason addr_hour and id %s", ban, ev["ban"])
	}
	// Even the right password of a real account is refused from there now,
	// before Dovecot checks it.
	bfRefused(t, "imap", dc, slow, user, pw, bfAddrMsg)
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "banned_address", "ban": ev["ban"], "login": user, "ip": slow})
	// Another address is not touched.
	bfOK(t, "imap", dc, "127.0.0.172", user, pw)

	// explain shows the hour window's count (the ban cleared it) and the day's.
	out := mg.MustCLI(t, "explain", "--account", user, "--ip", slow, "--service", "imap", "--json")
	var e struct {
		Reason   string `json:"reason"`
		Counters struct {
			AddrHour int `json:"addr_hour"`
			AddrDay  int `json:"addr_day"`
		} `json:"counters"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("explain --json: %v\n%s", err, out)
	}
	if e.Reason != "banned_address" || e.Counters.AddrDay != 3 || e.Counters.AddrHour != 0 {
		t.Errorf("explain: %+v, want banned_address with 3 failures in the day window (the hour window was cleared by the ban)\n%s", e, out)
	}
}

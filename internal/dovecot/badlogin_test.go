package dovecot

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
)

// A login no account can have (over 320 bytes) is refused on allow with a
// bad_login decision line, without asking the engine, and its report is
// never passed on: it is never counted, banned or stored.
func TestBadLoginRefused(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 22, 2, 31, 44, 0, time.UTC)}
	var dl bytes.Buffer
	f := &fakeDecider{verdict: policy.Verdict{Action: policy.Allow}}
	reports := 0
	h := NewHandler(Config{Now: clock.now, OnReport: func(*policy.Attempt, bool, time.Time) { reports++ }},
		f, policy.NewDecisionLog(&dl), nil)
	login := strings.Repeat("a", 390) + "@example.test"
	allow := `{"login":"` + login + `","protocol":"imap","pwhash":"06ca","remote":"127.0.0.1","session_id":"s1","tls":false}`
	report := `{"login":"` + login + `","protocol":"imap","pwhash":"06ca","remote":"127.0.0.1","session_id":"s1","success":false,"policy_reject":false,"tls":false}`
	w := post(h, "command=allow", allow)
	if w.Code != 200 || w.Body.String() != `{"status":-1,"msg":""}` {
		t.Errorf("allow: %d %s", w.Code, w.Body)
	}
	w = post(h, "command=report", report)
	if w.Code != 200 || w.Body.String() != `{"status":0,"msg":""}` {
		t.Errorf("report: %d %s", w.Code, w.Body)
	}
	if len(f.attempts) != 0 || reports != 0 {
		t.Errorf("the engine saw %d attempts, OnReport %d reports; want none", len(f.attempts), reports)
	}
	if lines := strings.Split(strings.TrimSpace(dl.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "reason=bad_login") || !strings.Contains(lines[0], "decision=deny") {
		t.Errorf("decision log:\n%s\nwant one deny line with reason=bad_login", dl.String())
	}
	// 320 bytes is still a login.
	ok := strings.Repeat("b", 320-len("@example.test")) + "@example.test"
	post(h, "command=allow", strings.Replace(allow, login, ok, 1))
	if len(f.attempts) != 1 {
		t.Errorf("a 320-byte login did not reach the engine")
	}
}

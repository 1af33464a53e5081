package postfix

import (
	"strings"
	"testing"
	"time"

	"mailgate/internal/password"
	"mailgate/internal/policy"
)

// TestWeakSender: with Config.Weak, an authenticated sender whose login
// was flagged within the keep time is refused with the weak_password
// text, another login is not, and a relay permit earned by the flagged
// login relays no more.
func TestWeakSender(t *testing.T) {
	flags := password.NewFlags(30*24*time.Hour, 0, nil)
	flags.Mark("alice@example.test", testNow.Add(-time.Hour))
	cfg := DefaultConfig()
	cfg.Weak = flags
	ev := newEnv(t, cfg, newEngine(t, nil, nil))
	msg := policy.DefaultMessages()[policy.ReasonWeakPassword.String()]
	if got := ev.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow); got != "REJECT "+msg {
		t.Fatalf("flagged sender: %q", got)
	}
	if !strings.Contains(ev.decisions.String(), "decision=deny reason=weak_password rule=- door=postfix service=smtp login=alice@example.test ip=192.0.2.7 weak_password=1") {
		t.Fatalf("decision log: %s", ev.decisions.String())
	}
	if got := ev.h.Policy(sasl("bob@example.test", "192.0.2.7", "RCPT"), false, testNow); got != "DUNNO" {
		t.Fatalf("other sender: %q", got)
	}
	// The flag expires after the keep time.
	if got := ev.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow.Add(31*24*time.Hour)); got != "DUNNO" {
		t.Fatalf("expired flag: %q", got)
	}
	// A relay permit of the flagged login: no OK.
	ev.permits.add("192.0.2.8/32", "alice@example.test")
	ev.permits.add("192.0.2.9/32", "bob@example.test")
	relayReq := &Request{Request: "smtpd_access_policy", ProtocolState: "RCPT", ClientAddress: "192.0.2.8", PolicyContext: DefaultRelayContext}
	if got := ev.h.Policy(relayReq, false, testNow); got != "DUNNO" {
		t.Fatalf("permit of a flagged login: %q", got)
	}
	relayReq.ClientAddress = "192.0.2.9"
	if got := ev.h.Policy(relayReq, false, testNow); got != "OK" {
		t.Fatalf("permit of a good login: %q", got)
	}
	// Without Config.Weak nothing is refused.
	ev2 := newEnv(t, DefaultConfig(), newEngine(t, nil, nil))
	if got := ev2.h.Policy(sasl("alice@example.test", "192.0.2.7", "RCPT"), false, testNow); got != "DUNNO" {
		t.Fatalf("feature off: %q", got)
	}
}

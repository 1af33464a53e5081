package test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// fwConfig is mailgate's config for the firewall test: the Dovecot door
// inside the server namespace (with the key mailgate generates in dir), a
// short trusted time and reconcile period, a small rate, and the third
// client's address as a trusted network.
func fwConfig(dir, mode, trustedFor string, trustedNet netip.Addr) string {
	return fmt.Sprintf(`
[store]
path = %q

[admin]
socket = %q

[dovecot]
listen = "127.0.0.1:4001"

[postfix]
enabled = false

[policy]
trusted_networks = [%q]

[firewall]
enabled = true
mode = %q
retrieval_ports = [143]
submission_ports = [587]
rate = 3
rate_per = "1m"
autoban_for = "1h"
trusted_for = %q
reconcile_every = "1s"
`, filepath.Join(dir, "mailgate.db"), filepath.Join(dir, "admin.sock"), trustedNet.String(), mode, trustedFor)
}

// TestFirewallModes runs `mailgate serve` with [firewall] enabled inside
// a server namespace, with a listener on the mail ports and on a port
// that is not a mail port, and connects from client namespaces: each
// mode's behaviour, bans, the trusted time of a login, a hand-deleted
// element repaired by the reconcile, and a restart (in another mode)
// re-asserting the sets from mailgate's state.
func TestFirewallModes(t *testing.T) {
	net := harness.NewNet(t, 4)
	srv := net.Server
	nobody, banned, rate, office := net.Clients[0], net.Clients[1], net.Clients[2], net.Clients[3]
	srv.ListenTCP(t, 143, 587, 2222)
	imap := netip.AddrPortFrom(srv.Addr4, 143)
	subm := netip.AddrPortFrom(srv.Addr4, 587)
	other := netip.AddrPortFrom(srv.Addr4, 2222)
	const wait = 700 * time.Millisecond
	expect := func(c *harness.NS, to netip.AddrPort, want harness.DialResult, why string) {
		t.Helper()
		if got := c.Dial(t, to, wait); got != want {
			t.Errorf("%s: %s to %s: %s, want %s", why, c.Addr4, to, got, want)
		}
	}
	eventually := func(c *harness.NS, to netip.AddrPort, want harness.DialResult, within time.Duration, why string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			got := c.Dial(t, to, wait)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: %s to %s: still %s after %v, want %s", why, c.Addr4, to, got, within, want)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	dir := harness.TempDir(t, "fw-")
	mg := harness.StartMailgateIn(t, srv.Name, fwConfig(dir, "protected", "3s", office.Addr4))

	// protected: retrieval open, submission closed to an unknown address.
	expect(nobody, imap, harness.Connected, "protected, imap")
	expect(nobody, subm, harness.TimedOut, "protected, submission before a login")
	expect(office, subm, harness.Connected, "protected, submission from a trusted network")

	// A made-up login reported without the door's key (a local process
	// forging Dovecot's report) is refused and trusts nobody.
	if code := postReport(t, srv, nobody.Addr4, ""); code != http.StatusUnauthorized {
		t.Errorf("a report without the key: HTTP %d, want 401", code)
	}
	expect(nobody, subm, harness.TimedOut, "protected, submission after a report without the key")
	if out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "trusted_v4"); strings.Contains(out, nobody.Addr4.String()) {
		t.Errorf("a report without the key made the address trusted:\n%s", out)
	}

	key, err := os.ReadFile(filepath.Join(dir, "dovecot-api-key"))
	if err != nil {
		t.Fatalf("the generated key: %v", err)
	}
	fwKey := string(key)

	// A successful IMAP login, reported by Dovecot's auth policy, opens
	// submission to the address for trusted_for (3 s).
	reportLogin(t, srv, nobody.Addr4, fwKey)
	eventually(nobody, subm, harness.Connected, 2*time.Second, "protected, submission after an IMAP login")
	eventually(nobody, subm, harness.TimedOut, 6*time.Second, "protected, submission after trusted_for ran out")

	// A ban: no mail port, but other ports still answer.
	mg.MustCLI(t, "ban", "add", "--ip", banned.Addr4.String(), "--for", "1h", "--comment", "fw e2e")
	eventually(banned, imap, harness.TimedOut, 2*time.Second, "banned, imap")
	expect(banned, other, harness.Connected, "banned, a port that is not a mail port")

	// An element deleted by hand is back at the next reconcile (1 s).
	srv.Run(t, "nft", "delete", "element", "inet", "mailgate", "banned_v4", "{ "+banned.Addr4.String()+" }")
	out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "banned_v4")
	if strings.Contains(out, banned.Addr4.String()) {
		t.Fatalf("the element was not deleted:\n%s", out)
	}
	eventually(banned, imap, harness.TimedOut, 3*time.Second, "banned, after the element was deleted by hand")
	if out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "banned_v4"); !strings.Contains(out, banned.Addr4.String()) {
		t.Errorf("the reconcile did not put the ban back:\n%s", out)
	}
	if show := mg.MustCLI(t, "firewall", "show"); !strings.Contains(show, "the kernel has exactly this") {
		t.Errorf("firewall show after the repair:\n%s", show)
	}

	// A restart in autoban mode: the ban is re-asserted from the store
	// and the rate limit bans a client opening too many connections.
	if err := os.WriteFile(mg.ConfigPath, []byte(fwConfig(dir, "autoban", "3s", office.Addr4)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Run(t, "nft", "delete", "element", "inet", "mailgate", "banned_v4", "{ "+banned.Addr4.String()+" }")
	mg.Restart()
	expect(banned, imap, harness.TimedOut, "autoban, a ban after the restart")
	expect(nobody, subm, harness.Connected, "autoban, submission open")
	results := []harness.DialResult{}
	for range 8 {
		results = append(results, rate.Dial(t, imap, wait))
	}
	if results[0] != harness.Connected || results[len(results)-1] != harness.TimedOut {
		t.Errorf("autoban, 8 connections in a row from %s: %v, want the first connected and the last dropped", rate.Addr4, results)
	}
	if out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "autoban_v4"); !strings.Contains(out, rate.Addr4.String()) {
		t.Errorf("the rate offender is not in autoban_v4:\n%s", out)
	}
	expect(office, imap, harness.Connected, "autoban, a trusted network is never rate-banned")

	// private: only trusted networks and trusted addresses.
	if err := os.WriteFile(mg.ConfigPath, []byte(fwConfig(dir, "private", "1h", office.Addr4)), 0o600); err != nil {
		t.Fatal(err)
	}
	mg.Restart()
	expect(nobody, imap, harness.TimedOut, "private, imap from an unknown address")
	expect(office, imap, harness.Connected, "private, imap from a trusted network")
	expect(nobody, other, harness.Connected, "private, a port that is not a mail port")
	// A network trusted with 'rule add --global --allow' joins the trusted
	// networks at the next reconcile (1 s), before any ban: the client the
	// kernel autobanned above gets in.
	expect(rate, imap, harness.TimedOut, "private, the autobanned client before its network is trusted")
	mg.MustCLI(t, "rule", "add", "--global", "--allow", "--ip", rate.Addr4.String(), "--comment", "fw e2e")
	eventually(rate, imap, harness.Connected, 3*time.Second, "private, a network trusted by a global allow rule")
	// A webmail on the server itself reaches IMAP over loopback in every mode.
	expect(srv, netip.MustParseAddrPort("127.0.0.1:143"), harness.Connected, "private, imap over loopback")
	reportLogin(t, srv, nobody.Addr4, fwKey)
	eventually(nobody, imap, harness.Connected, 2*time.Second, "private, after a login (a recorded IMAP login)")
	// A ban takes the trust of the address back at once: a trusted
	// address is let through before any ban is looked at.
	mg.MustCLI(t, "ban", "add", "--ip", nobody.Addr4.String(), "--for", "1h", "--comment", "stolen account")
	eventually(nobody, imap, harness.TimedOut, time.Second, "private, a trusted address banned by hand")
	if out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "trusted_v4"); strings.Contains(out, nobody.Addr4.String()) {
		t.Errorf("the banned address is still trusted:\n%s", out)
	}

	// A reload (no restart) that makes 2222 the retrieval port: the rules
	// are rewritten in the same table and its sets kept, so the ban
	// made by hand above now closes 2222 and no longer 143.
	reloaded := strings.Replace(fwConfig(dir, "private", "1h", office.Addr4), "retrieval_ports = [143]", "retrieval_ports = [2222]", 1)
	if err := os.WriteFile(mg.ConfigPath, []byte(reloaded), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := mg.PID()
	if out := mg.MustCLI(t, "reload"); !strings.Contains(out, "firewall.retrieval_ports") {
		t.Errorf("reload did not apply firewall.retrieval_ports:\n%s", out)
	}
	eventually(nobody, other, harness.TimedOut, 3*time.Second, "reloaded, the new retrieval port from a banned address")
	expect(nobody, imap, harness.Connected, "reloaded, 143 is no longer a mail port")
	expect(office, other, harness.Connected, "reloaded, the new retrieval port from a trusted network")
	if out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "banned_v4"); !strings.Contains(out, nobody.Addr4.String()) {
		t.Errorf("the reload lost the ban:\n%s", out)
	}
	if mg.PID() != pid {
		t.Errorf("the daemon was restarted (pid %d, now %d)", pid, mg.PID())
	}
}

// reportLogin posts a successful IMAP login from addr to the Dovecot door
// inside the server namespace with the door's key, as Dovecot's auth
// policy does.
func reportLogin(t *testing.T, srv *harness.NS, addr netip.Addr, fwKey string) {
	t.Helper()
	if code := postReport(t, srv, addr, fwKey); code != http.StatusOK {
		t.Fatalf("report: HTTP %d", code)
	}
}

// postReport posts the report with the API key key ("" = none) and
// returns the HTTP status.
func postReport(t *testing.T, srv *harness.NS, addr netip.Addr, key string) int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: srv.DialContext}, Timeout: 5 * time.Second}
	body := fmt.Sprintf(`{"device_id":"","login":"alice@example.test","protocol":"imap","pwhash":"06ca","remote":%q,"session_id":"fwE2E","success":true,"policy_reject":false,"tls":false}`, addr)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://127.0.0.1:4001/?command=report", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

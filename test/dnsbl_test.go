package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"mailgate/test/harness"
)

// dnsblZone is a zone file body with the records given, TTL 300.
func dnsblZone(records ...string) string {
	return "$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nns IN A 127.0.0.1\n" +
		"2.0.0.127 IN A 127.0.0.2\n" + // the test point every list answers
		strings.Join(records, "\n") + "\n"
}

// TestDNSBLEndToEnd runs mailgate's DNSBL client against a real DNS
// server (NSD, serving three test zones on a loopback port) behind a real
// Dovecot: a listed address is refused with mailgate's text, a listed but
// below-threshold one logs in, a PBL-style code outside the zone's filter
// and a 127.255.255.x refusal code log in, the cache answers the second
// lookup of an address without a query (NSD's own query counter), the
// health check, 'mailgate dnsbl check' and 'mailgate explain' show the
// zones' answers, and a dead resolver fails open within the budget.
func TestDNSBLEndToEnd(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	ns := harness.StartNSD(t, map[string]string{
		"bl.test": dnsblZone(
			"61.0.0.127 IN A 127.0.0.4",  // listed (XBL-like): refused
			"66.0.0.127 IN A 127.0.0.4",  // listed: refused over POP3
			"63.0.0.127 IN A 127.0.0.10", // a PBL-like code: outside the filter
			"68.0.0.127 IN A 127.0.0.4",  // listed, but a trusted network
		),
		"low.test": dnsblZone(
			"62.0.0.127 IN A 127.0.0.2", // listed, weight 1: below the threshold
			"64.0.0.127 IN A 127.0.0.2",
		),
		"refuse.test": dnsblZone(
			"65.0.0.127 IN A 127.255.255.254", // "query through a public resolver"
		),
	})
	dir := harness.TempDir(t, "e2e-dnsbl-")
	dnsbl := func(resolver string) string {
		return fmt.Sprintf(`
[dnsbl]
zones = ["bl.test=127.0.0.[2..7]*3", "low.test*1", "refuse.test*5"]
threshold = 3
resolver = %q
timeout = "400ms"
budget = "500ms"
`, resolver)
	}
	base := mailgateConfig(t, dir, apiKey, "\n[policy]\ntrusted_networks = [\"127.0.0.68\"]\n")
	mg := harness.StartMailgate(t, base+dnsbl(ns.Addr))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{shop: shopPW, alice: alicePW},
		PolicyURL: mg.DovecotURL(),
		APIKey:    apiKey,
		Nonce:     nonce,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ip := netip.MustParseAddr
	ok, refused := mustLogIn, mustBeRefused
	noDNSBLField := func(t *testing.T, src string) {
		t.Helper()
		l := mg.WaitLogLine(t, map[string]string{"decision": "allow", "door": "dovecot", "ip": src})
		if _, ok := l["dnsbl"]; ok {
			t.Errorf("decision line for %s has dnsbl=%s; want none (not listed)", src, l["dnsbl"])
		}
	}

	// The health check at start: every zone answers 127.0.0.2 and not
	// 127.0.0.1. Waiting for it also keeps its queries out of the counts
	// below.
	t.Run("health check in status", func(t *testing.T) {
		var st struct {
			DNSBL struct {
				Resolver string `json:"resolver"`
				Zones    []struct {
					Zone    string    `json:"zone"`
					OK      bool      `json:"ok"`
					Problem string    `json:"problem"`
					Checked time.Time `json:"checked"`
				} `json:"zones"`
			} `json:"dnsbl"`
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := json.Unmarshal([]byte(mg.MustCLI(t, "status", "--json")), &st); err != nil {
				t.Fatal(err)
			}
			done := len(st.DNSBL.Zones) == 3
			for _, z := range st.DNSBL.Zones {
				done = done && !z.Checked.IsZero()
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no health check result in status: %+v", st.DNSBL)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, z := range st.DNSBL.Zones {
			if !z.OK {
				t.Errorf("zone %s: %s", z.Zone, z.Problem)
			}
		}
		if st.DNSBL.Resolver != ns.Addr {
			t.Errorf("resolver %q, want %q", st.DNSBL.Resolver, ns.Addr)
		}
	})

	t.Run("listed address refused with mailgate's text", func(t *testing.T) {
		refused(t, harness.IMAPLogin(ctx, ip("127.0.0.61"), dc.IMAPAddr, alice, alicePW), "is on a blocklist of abused addresses (bl.test)")
		mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "dnsbl", "door": "dovecot", "service": "imap",
			"login": alice, "ip": "127.0.0.61", "dnsbl": "bl.test", "dnsbl_score": "3"})
		refused(t, harness.POP3Login(ctx, ip("127.0.0.66"), dc.POP3Addr, alice, alicePW), "is on a blocklist")
		mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "dnsbl", "service": "pop3", "ip": "127.0.0.66"})
	})
	t.Run("listed below the threshold logs in", func(t *testing.T) {
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.62"), dc.IMAPAddr, alice, alicePW))
		mg.WaitLogLine(t, map[string]string{"decision": "allow", "reason": "default", "door": "dovecot", "ip": "127.0.0.62",
			"dnsbl": "low.test", "dnsbl_score": "1"})
	})
	t.Run("PBL-style code outside the filter logs in", func(t *testing.T) {
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.63"), dc.IMAPAddr, alice, alicePW))
		noDNSBLField(t, "127.0.0.63")
	})
	t.Run("127.255.255.x is an error, not a listing", func(t *testing.T) {
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.65"), dc.IMAPAddr, alice, alicePW))
		noDNSBLField(t, "127.0.0.65")
		if s := mg.Stderr(); !strings.Contains(s, "dnsbl: zone failed") || !strings.Contains(s, "127.255.255.254") {
			t.Errorf("no warning about the refusal code in the log:\n%s", s)
		}
	})
	t.Run("the cache answers the second time without a query", func(t *testing.T) {
		q0 := ns.Queries(t)
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.64"), dc.IMAPAddr, alice, alicePW))
		mg.WaitLogLine(t, map[string]string{"decision": "allow", "login": alice, "ip": "127.0.0.64", "dnsbl": "low.test"})
		q1 := ns.Queries(t)
		if q1-q0 != 3 {
			t.Fatalf("the first lookup made %d queries, want 3 (one per zone)", q1-q0)
		}
		// Another account from the same address (alice's own address is
		// now known good for her, and would not be looked up at all).
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.64"), dc.IMAPAddr, shop, shopPW))
		mg.WaitLogLine(t, map[string]string{"decision": "allow", "login": shop, "ip": "127.0.0.64", "dnsbl": "low.test", "dnsbl_score": "1"})
		if q2 := ns.Queries(t); q2 != q1 {
			t.Errorf("the second lookup made %d queries, want 0 (cached)", q2-q1)
		}
	})
	t.Run("a trusted network is not even looked up", func(t *testing.T) {
		q0 := ns.Queries(t)
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.68"), dc.IMAPAddr, alice, alicePW))
		l := mg.WaitLogLine(t, map[string]string{"decision": "allow", "reason": "trusted", "ip": "127.0.0.68"})
		if _, ok := l["dnsbl"]; ok {
			t.Errorf("trusted line has dnsbl=%s", l["dnsbl"])
		}
		if q := ns.Queries(t); q != q0 {
			t.Errorf("%d queries for a trusted address, want 0", q-q0)
		}
	})
	t.Run("dnsbl check asks now", func(t *testing.T) {
		q0 := ns.Queries(t)
		var out struct {
			Score  int      `json:"score"`
			Listed []string `json:"listed"`
			Zones  []struct {
				Zone   string   `json:"zone"`
				Result string   `json:"result"`
				Codes  []string `json:"codes"`
				TTL    int64    `json:"ttl"`
			} `json:"zones"`
		}
		if err := json.Unmarshal([]byte(mg.MustCLI(t, "dnsbl", "check", "--json", "127.0.0.61")), &out); err != nil {
			t.Fatal(err)
		}
		if out.Score != 3 || len(out.Listed) != 1 || out.Listed[0] != "bl.test" || len(out.Zones) != 3 ||
			out.Zones[0].Result != "listed" || out.Zones[0].Codes[0] != "127.0.0.4" || out.Zones[0].TTL != 300 || out.Zones[1].Result != "not listed" {
			t.Errorf("dnsbl check: %+v", out)
		}
		if q := ns.Queries(t); q-q0 != 3 {
			t.Errorf("dnsbl check made %d queries, want 3 (uncached)", q-q0)
		}
		text := mg.MustCLI(t, "dnsbl", "check", "127.0.0.65")
		if !strings.Contains(text, "score 0, threshold 3") || !strings.Contains(text, "127.255.255.254") {
			t.Errorf("dnsbl check:\n%s", text)
		}
	})
	t.Run("explain shows each zone's answer", func(t *testing.T) {
		var e struct {
			Verdict string `json:"verdict"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
			DNSBL   struct {
				Asked bool `json:"asked"`
				Score int  `json:"score"`
				Zones []struct {
					Zone, Result string
				} `json:"zones"`
			} `json:"dnsbl"`
		}
		if err := json.Unmarshal([]byte(mg.MustCLI(t, "explain", "--account", alice, "--ip", "127.0.0.61", "--service", "imap", "--json")), &e); err != nil {
			t.Fatal(err)
		}
		if e.Verdict != "deny" || e.Reason != "dnsbl" || !e.DNSBL.Asked || e.DNSBL.Score != 3 || len(e.DNSBL.Zones) != 3 || e.DNSBL.Zones[0].Result != "listed" {
			t.Errorf("explain: %+v", e)
		}
		// shop never logged in from 127.0.0.62 (alice did: for her it is
		// a known-good address, not looked up).
		text := mg.MustCLI(t, "explain", "--account", shop, "--ip", "127.0.0.62", "--service", "imap")
		if !strings.Contains(text, "dnsbl: score 1, threshold 3") || !strings.Contains(text, "low.test") || !strings.Contains(text, "below the threshold") {
			t.Errorf("explain:\n%s", text)
		}
		text = mg.MustCLI(t, "explain", "--account", alice, "--ip", "127.0.0.62", "--service", "imap")
		if !strings.Contains(text, "dnsbl: not looked up") || !strings.Contains(text, "known good") {
			t.Errorf("explain of a known-good address:\n%s", text)
		}
	})
	t.Run("dead resolver fails open within the budget", func(t *testing.T) {
		// A UDP socket that never answers, and a reload that points
		// mailgate at it.
		dead, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer dead.Close()
		if err := os.WriteFile(mg.ConfigPath, []byte(base+dnsbl(dead.LocalAddr().String())), 0o600); err != nil {
			t.Fatal(err)
		}
		mg.MustCLI(t, "reload")
		start := time.Now()
		ok(t, harness.IMAPLogin(ctx, ip("127.0.0.67"), dc.IMAPAddr, alice, alicePW))
		// Dovecot gives its policy server 2 s; past it, the login would
		// have failed.
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the login took %v", took)
		}
		noDNSBLField(t, "127.0.0.67")
		if s := mg.Stderr(); strings.Count(s, "err=timeout") < 3 {
			t.Errorf("no timeout warning in the log:\n%s", s)
		}
	})
}

// TestDNSBLNginx: through the nginx mail proxy, a listed address is
// refused with mailgate's text before its password is checked (mailgate
// writes no login result for it), and an address that is not listed logs
// in.
func TestDNSBLNginx(t *testing.T) {
	harness.Require(t, harness.NginxPackages)
	harness.Require(t, harness.DovecotPackages)
	ns := harness.StartNSD(t, map[string]string{
		"bl.test": dnsblZone("81.0.0.127 IN A 127.0.0.4"),
	})
	dir := harness.TempDir(t, "e2e-dnsbl-ngx-")
	authSnippet, err := os.ReadFile("../etc/dovecot/96-mailgate-auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users: map[string]string{alice: alicePW},
		Extra: string(authSnippet),
	})
	doorAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(harness.FreePort(t)))
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, "", fmt.Sprintf(`
[nginx]
enabled = true
listen = %q
secret = %q
verify_with = "dovecot"
dovecot_auth = %q
verify = ["imap", "pop3"]
imap_backend = %q
pop3_backend = %q
smtp_backend = ""

[dnsbl]
zones = ["bl.test=127.0.0.[2..7]*3"]
threshold = 3
resolver = %q
`, doorAddr, ngSecret, dc.Socket("auth-mailgate"), dc.IMAPAddr, dc.POP3Addr, ns.Addr)))
	waitListening(t, doorAddr)
	ng := harness.StartNginx(t, harness.NginxOptions{AuthURL: doorAddr + "/auth", AuthHeader: ngSecretHdr, AuthSecret: ngSecret})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	err = harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.0.81"), ng.IMAPAddr, alice, alicePW)
	var le *harness.LoginError
	if !errors.As(err, &le) || !strings.Contains(le.Response, "is on a blocklist of abused addresses (bl.test)") {
		t.Fatalf("listed address over nginx: %v", err)
	}
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "dnsbl", "door": "nginx", "service": "imap", "ip": "127.0.0.81", "dnsbl": "bl.test"})
	if err := harness.IMAPLogin(ctx, netip.MustParseAddr("127.0.0.82"), ng.IMAPAddr, alice, alicePW); err != nil {
		t.Fatalf("address not listed over nginx: %v", err)
	}
	mg.WaitLogLine(t, map[string]string{"auth": "success", "door": "nginx", "ip": "127.0.0.82"})
	// The listed client's password was never checked: no login result.
	for _, l := range harness.Find(harness.ParseLog(mg.DecisionLog()), map[string]string{"ip": "127.0.0.81"}) {
		if _, ok := l["auth"]; ok {
			t.Errorf("the listed client's password was checked: %v", l)
		}
	}
}

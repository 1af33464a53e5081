package nft

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/ruleset-<mode>.nft from Render")

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// exampleConfig is the configuration the documentation shows: the
// defaults, SMTP port 25 listed (it gets the bans only) and two trusted
// networks.
func exampleConfig(m Mode) Config {
	c := DefaultConfig()
	c.Mode = m
	c.SMTPPorts = []uint16{25}
	c.TrustedNets = []netip.Prefix{
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("fd00::/8"),
	}
	return c
}

// exampleState has one of everything: single bans of both families (one
// written IPv4-mapped), a network ban with a longer one nested inside, a
// permanent ban, and a trusted address of each family (the seed's).
func exampleState() State {
	return State{
		Bans: []Ban{
			{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Expires: at(time.Hour)},
			{Prefix: netip.MustParsePrefix("::ffff:203.0.113.8/128"), Expires: at(10 * time.Minute)},
			{Prefix: netip.MustParsePrefix("2001:db8:bad::1/128"), Expires: at(5 * time.Minute)},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Expires: at(time.Hour)},
			{Prefix: netip.MustParsePrefix("198.51.100.64/26"), Expires: at(24 * time.Hour)},
			{Prefix: netip.MustParsePrefix("2001:db8:dead::/64"), Expires: at(2 * time.Hour)},
			{Prefix: netip.MustParsePrefix("192.0.2.66/32")},
			{Prefix: netip.MustParsePrefix("192.0.2.99/32"), Expires: at(-time.Minute)}, // expired
		},
		Trusted: []Trusted{
			{Addr: netip.MustParseAddr("33.128.11.12"), Expires: at(24 * time.Hour)},
			{Addr: netip.MustParseAddr("2001:db8:1::5"), Expires: at(23*time.Hour + 30*time.Minute)},
		},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, m := range []Mode{Public, Autoban, Protected, Private} {
		t.Run(string(m), func(t *testing.T) {
			got := Render(exampleConfig(m), exampleState(), t0)
			path := filepath.Join("testdata", "ruleset-"+string(m)+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (run with -update):\n%s", path, Diff(string(want), got))
			}
		})
	}
}

// TestRenderModes checks what distinguishes each mode, independently of
// the golden files.
func TestRenderModes(t *testing.T) {
	has := func(s, sub string) bool { return strings.Contains(s, sub) }
	const (
		rate       = "ct state new update @rate_v4 { ip saddr timeout 1m limit rate over 10/minute burst 10 packets } update @autoban_v4 { ip saddr timeout 1h } drop"
		rate6      = "update @rate_v6 { ip6 saddr & ffff:ffff:ffff:ffff:: timeout 1m limit rate over 10/minute burst 10 packets }"
		allPorts   = "tcp dport { 25, 110, 143, 465, 587, 993, 995, 4190 }"
		retrSub    = "tcp dport { 110, 143, 465, 587, 993, 995, 4190 }"
		retrieval  = "tcp dport { 110, 143, 993, 995, 4190 }"
		submission = "tcp dport { 465, 587 } drop"
	)
	for _, tc := range []struct {
		mode      Mode
		want, not []string
	}{
		{Public, []string{allPorts + " ip saddr @banned_v4 drop"}, []string{"@rate_v4", "@autoban_v4 drop", submission, retrSub + " drop"}},
		{Autoban, []string{retrSub + " " + rate, retrSub + " ip saddr @autoban_v4 drop", rate6}, []string{submission, retrSub + " drop"}},
		{Protected, []string{retrieval + " " + rate, retrieval + " ip saddr @autoban_v4 drop", submission}, []string{retrSub + " drop"}},
		{Private, []string{retrSub + " drop"}, []string{"@rate_v4", "@autoban_v4 drop"}},
	} {
		got := Render(exampleConfig(tc.mode), State{}, t0)
		for _, w := range tc.want {
			if !has(got, w) {
				t.Errorf("%s: missing %q in\n%s", tc.mode, w, got)
			}
		}
		for _, n := range tc.not {
			if has(got, n) {
				t.Errorf("%s: unexpected %q in\n%s", tc.mode, n, got)
			}
		}
		// Port 25 is never closed nor rate limited: every rule that
		// drops on it looks up a ban set.
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, "tcp dport") && strings.Contains(l, " 25,") && strings.HasSuffix(l, "drop") && !strings.Contains(l, "@banned_") {
				t.Errorf("%s: port 25 dropped outside the bans: %s", tc.mode, l)
			}
		}
		// Trusted networks and addresses come before any drop.
		iTrust := strings.Index(got, "@trusted_v6 accept")
		iDrop := strings.Index(got, "drop\n")
		if iTrust < 0 || iDrop < 0 || iTrust > iDrop {
			t.Errorf("%s: trusted accepts must precede the drops:\n%s", tc.mode, got)
		}
	}
	c := exampleConfig(Public)
	c.Bans = false
	if got := Render(c, exampleState(), t0); has(got, "drop") || has(got, "203.0.113.7") {
		t.Errorf("bans off: no drop and no banned element expected:\n%s", got)
	}
}

func TestRenderElements(t *testing.T) {
	got := Render(exampleConfig(Autoban), exampleState(), t0)
	for _, w := range []string{
		// IPv4-mapped written as IPv4, in the IPv4 set.
		"\t\t\t203.0.113.8 timeout 10m,\n",
		"\t\t\t203.0.113.7 timeout 1h,\n",
		"\t\t\t2001:db8:bad::1 timeout 5m,\n",
		// The /26 banned for a day splits the /24 banned for an hour.
		"\t\t\t198.51.100.0/26 timeout 1h,\n",
		"\t\t\t198.51.100.64/26 timeout 1d,\n",
		"\t\t\t198.51.100.128/25 timeout 1h,\n",
		"\t\t\t2001:db8:dead::/64 timeout 2h,\n",
		"\t\t\t192.0.2.66,\n",
		// One trusted element per mail port, 25 included.
		"\t\t\t33.128.11.12 . 25 timeout 1d,\n",
		"\t\t\t33.128.11.12 . 4190 timeout 1d,\n",
		"\t\t\t2001:db8:1::5 . 587 timeout 23h30m,\n",
		"\t\t\t192.168.0.0/16,\n",
		"\t\t\tfd00::/8,\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q", w)
		}
	}
	if strings.Contains(got, "192.0.2.99") {
		t.Error("an expired ban was rendered")
	}
	if n := strings.Count(got, "33.128.11.12 . "); n != 8 {
		t.Errorf("%d trusted elements for 33.128.11.12, want 8 (one per mail port)", n)
	}
}

func TestNftDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{time.Millisecond, "1ms"},
		{time.Minute, "1m"},
		{24 * time.Hour, "1d"},
		{23*time.Hour + 59*time.Minute + 59*time.Second + 944*time.Millisecond, "23h59m59s944ms"},
		{400 * 24 * time.Hour, "400d"},
	} {
		if got := nftDuration(tc.d); got != tc.want {
			t.Errorf("nftDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		if back, ok := parseNftDuration(tc.want); !ok || back != tc.d {
			t.Errorf("parseNftDuration(%q) = %v, %v; want %v", tc.want, back, ok, tc.d)
		}
	}
	for _, bad := range []string{"", "1", "h", "1x", "99999999999999d", "999999999999d", "1h-1m"} {
		if _, ok := parseNftDuration(bad); ok {
			t.Errorf("parseNftDuration(%q) accepted", bad)
		}
	}
}

package nft

import (
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func newTestFirewall(t *testing.T, cfg Config) (*Firewall, *fakeKernel) {
	t.Helper()
	k := newFakeKernel(t, t0)
	fw, err := New(cfg, k.conn(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return fw, k
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\ngot:\n\t%s\nwant:\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// anonRule is what a rule with an anonymous port set sends: the set, its
// elements, the rule.
var anonRule = []string{"newset __set%d", "anonymous set elements", "newrule input"}

func TestApplyFreshAutoban(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	res, err := fw.Apply(t0, exampleState())
	if err != nil {
		t.Fatal(err)
	}
	if len(k.batches) != 1 {
		t.Fatalf("%d batches, want one transaction", len(k.batches))
	}
	// The whole of `nft -f testdata/ruleset-autoban.nft`, in one batch.
	want := []string{
		// nft add table inet mailgate
		"newtable mailgate",
		// nft add set inet mailgate trusted_nets_v4 { type ipv4_addr; flags interval; } ...
		"newset trusted_nets_v4", "newset trusted_nets_v6",
		"newset trusted_v4", "newset trusted_v6",
		"newset banned_v4", "newset banned_v6",
		"newset banned_nets_v4", "newset banned_nets_v6",
		"newset rate_v4", "newset rate_v6",
		"newset autoban_v4", "newset autoban_v6",
		// nft add chain inet mailgate input { type filter hook input priority -10; policy accept; }
		"newchain input",
		// nft add rule inet mailgate input iif "lo" accept
		"newrule input",
	}
	// nft add rule inet mailgate input tcp dport { 25, ... } ip saddr @trusted_nets_v4 accept (and _v6)
	want = append(want, anonRule...)
	want = append(want, anonRule...)
	// nft add rule inet mailgate input ip saddr . tcp dport @trusted_v4 accept (and ip6)
	want = append(want, "newrule input", "newrule input")
	// nft add rule inet mailgate input tcp dport { 25, ... } ip saddr @banned_v4 drop (v6, nets v4, nets v6)
	for range 4 {
		want = append(want, anonRule...)
	}
	// nft add rule inet mailgate input tcp dport { 110, ... } ip saddr @autoban_v4 drop (and v6)
	// nft add rule inet mailgate input tcp dport { 110, ... } ct state new update @rate_v4 { ... } update @autoban_v4 { ... } drop (and v6)
	for range 4 {
		want = append(want, anonRule...)
	}
	want = append(want,
		// nft add element inet mailgate banned_nets_v4 { 198.51.100.0/26 timeout 1h, 198.51.100.64/26 timeout 1d, 198.51.100.128/25 timeout 1h }
		"add banned_nets_v4 198.51.100.0 timeout 1h0m0s",
		"add banned_nets_v4 198.51.100.64 end",
		"add banned_nets_v4 198.51.100.64 timeout 24h0m0s",
		"add banned_nets_v4 198.51.100.128 end",
		"add banned_nets_v4 198.51.100.128 timeout 1h0m0s",
		"add banned_nets_v4 198.51.101.0 end",
		// nft add element inet mailgate banned_nets_v6 { 2001:db8:dead::/64 timeout 2h }
		"add banned_nets_v6 2001:db8:dead:: timeout 2h0m0s",
		"add banned_nets_v6 2001:db8:dead:1:: end",
		// nft add element inet mailgate banned_v4 { 192.0.2.66, 203.0.113.7 timeout 1h, 203.0.113.8 timeout 10m }
		// (203.0.113.8 was given as ::ffff:203.0.113.8)
		"add banned_v4 192.0.2.66",
		"add banned_v4 203.0.113.7 timeout 1h0m0s",
		"add banned_v4 203.0.113.8 timeout 10m0s",
		// nft add element inet mailgate banned_v6 { 2001:db8:bad::1 timeout 5m }
		"add banned_v6 2001:db8:bad::1 timeout 5m0s",
		// nft add element inet mailgate trusted_nets_v4 { 192.168.0.0/16 }
		"add trusted_nets_v4 192.168.0.0",
		"add trusted_nets_v4 192.169.0.0 end",
		// nft add element inet mailgate trusted_nets_v6 { fd00::/8 }
		"add trusted_nets_v6 fd00::",
		"add trusted_nets_v6 fe00:: end",
	)
	// nft add element inet mailgate trusted_v4 { 33.128.11.12 . 25 timeout 1d, 33.128.11.12 . 110 timeout 1d, ... }
	for _, p := range []string{"25", "110", "143", "465", "587", "993", "995", "4190"} {
		want = append(want, "add trusted_v4 33.128.11.12 . "+p+" timeout 24h0m0s")
	}
	// nft add element inet mailgate trusted_v6 { 2001:db8:1::5 . 25 timeout 23h30m, ... }
	for _, p := range []string{"25", "110", "143", "465", "587", "993", "995", "4190"} {
		want = append(want, "add trusted_v6 2001:db8:1::5 . "+p+" timeout 23h30m0s")
	}
	sameLines(t, "Apply batch", k.batches[0], want)
	// Elements as mailgate counts them: a range is one.
	if res != (SyncResult{Added: 26}) {
		t.Errorf("result %+v, want 26 added", res)
	}
	// The kernel now holds exactly what Render prints.
	got, err := fw.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if wantText := Render(exampleConfig(Autoban), exampleState(), t0); got != wantText {
		t.Errorf("Kernel differs from Render:\n%s", Diff(wantText, got))
	}
}

// TestApplyModes: each mode's ruleset reaches the kernel as Render prints
// it, and switching modes replaces the rules in one transaction without
// touching the sets.
func TestApplyModes(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	if _, err := fw.Apply(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mode{Public, Protected, Private, Autoban} {
		cfg := exampleConfig(m)
		fw, err := New(cfg, k.conn(), nil)
		if err != nil {
			t.Fatal(err)
		}
		n := len(k.batches)
		res, err := fw.Apply(t0, exampleState())
		if err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if len(k.batches) != n+1 || res != (SyncResult{}) {
			t.Fatalf("%s: %d batches, %+v; want one, with no element change", m, len(k.batches)-n, res)
		}
		b := k.batches[n]
		// nft flush chain inet mailgate input; nft add rule ...: the
		// rules are replaced, no set is created, flushed or deleted.
		if b[0] != "newtable mailgate" || b[1] != "flushchain input" {
			t.Errorf("%s: batch starts %q", m, b[:2])
		}
		for _, l := range b {
			if strings.HasPrefix(l, "newset ") && l != "newset __set%d" || strings.HasPrefix(l, "del") {
				t.Errorf("%s: unexpected %q", m, l)
			}
		}
		got, err := fw.Kernel()
		if err != nil {
			t.Fatal(err)
		}
		if want := Render(cfg, exampleState(), t0); got != want {
			t.Errorf("%s: Kernel differs from Render:\n%s", m, Diff(want, got))
		}
	}
}

func TestApplyPriorityChange(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	if _, err := fw.Apply(t0, State{}); err != nil {
		t.Fatal(err)
	}
	cfg := exampleConfig(Autoban)
	cfg.Priority = 5
	fw, _ = New(cfg, k.conn(), nil)
	if _, err := fw.Apply(t0, State{}); err != nil {
		t.Fatal(err)
	}
	// nft flush chain inet mailgate input; nft delete chain inet mailgate input;
	// nft add chain inet mailgate input { type filter hook input priority 5; policy accept; }
	b := k.batches[len(k.batches)-1]
	sameLines(t, "batch start", b[:4], []string{"newtable mailgate", "flushchain input", "delchain input", "newchain input"})
	got, _ := fw.Kernel()
	if !strings.Contains(got, "type filter hook input priority filter + 5; policy accept;") {
		t.Errorf("priority not changed:\n%s", got)
	}
}

func TestSyncAddsRemovesAndRefreshes(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Protected))
	st := State{
		Bans: []Ban{
			{Prefix: prefix("192.0.2.1/32"), Expires: at(time.Hour)},
			{Prefix: prefix("192.0.2.2/32"), Expires: at(time.Hour)},
			{Prefix: prefix("2001:db8::/64"), Expires: at(time.Hour)},
		},
		Trusted: []Trusted{{Addr: addr("198.51.100.9"), Expires: at(24 * time.Hour)}},
	}
	if _, err := fw.Apply(t0, st); err != nil {
		t.Fatal(err)
	}
	// Ten minutes later: 192.0.2.2 was unbanned, 192.0.2.1's ban was
	// extended to a day, 192.0.2.3 banned, the IPv6 /64 unchanged, the
	// trusted address logged in again (1 day from now: within the
	// tolerance, left alone).
	k.now = at(10 * time.Minute)
	st2 := State{
		Bans: []Ban{
			{Prefix: prefix("192.0.2.1/32"), Expires: at(24 * time.Hour)},
			{Prefix: prefix("192.0.2.3/32"), Expires: at(70 * time.Minute)},
			{Prefix: prefix("2001:db8::/64"), Expires: at(time.Hour)},
		},
		Trusted: []Trusted{{Addr: addr("198.51.100.9"), Expires: at(24*time.Hour + 10*time.Minute)}},
	}
	k.gets = nil
	res, err := fw.Sync(at(10*time.Minute), st2)
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "Sync", k.elementOps(), []string{
		// nft delete element inet mailgate banned_v4 { 192.0.2.1, 192.0.2.2 }
		"del banned_v4 192.0.2.1",
		"del banned_v4 192.0.2.2",
		// nft add element inet mailgate banned_v4 { 192.0.2.1 timeout 23h50m, 192.0.2.3 timeout 1h }
		"add banned_v4 192.0.2.1 timeout 23h50m0s",
		"add banned_v4 192.0.2.3 timeout 1h0m0s",
	})
	if res != (SyncResult{Added: 2, Removed: 2}) {
		t.Errorf("result %+v", res)
	}
	// Reads only; the structure was intact so no rule was touched.
	if slices.Contains(k.batches[len(k.batches)-1], "flushchain input") {
		t.Error("Sync replaced the rules of an intact chain")
	}
	sameLines(t, "banned_v4 in the kernel", k.elements("banned_v4"), []string{
		"192.0.2.1 expires 23h50m0s",
		"192.0.2.3 expires 1h0m0s",
	})
	// Nothing left to do.
	n := len(k.batches)
	res, err = fw.Sync(at(10*time.Minute), st2)
	if err != nil || res != (SyncResult{}) || len(k.batches) != n {
		t.Errorf("second Sync: %+v, %v, %d batches; want nothing sent", res, err, len(k.batches)-n)
	}
}

func TestSyncSkipsExpiredAndReaddsLost(t *testing.T) {
	fw, k := newTestFirewall(t, DefaultConfig())
	st := State{Bans: []Ban{
		{Prefix: prefix("192.0.2.1/32"), Expires: at(time.Minute)},
		{Prefix: prefix("192.0.2.2/32"), Expires: at(time.Hour)},
		{Prefix: prefix("192.0.2.3/32"), Expires: at(-time.Second)},
	}}
	if _, err := fw.Apply(t0, st); err != nil {
		t.Fatal(err)
	}
	// nft add element inet mailgate banned_v4 { 192.0.2.1 timeout 1m, 192.0.2.2 timeout 1h } (192.0.2.3 had expired)
	sameLines(t, "Apply", k.elementOps(), []string{
		"add banned_v4 192.0.2.1 timeout 1m0s",
		"add banned_v4 192.0.2.2 timeout 1h0m0s",
	})
	// Someone deletes 192.0.2.2 by hand; 192.0.2.1 expires in the kernel.
	delete(k.st.sets["banned_v4"].elems, elemKey(addr("192.0.2.2").AsSlice(), false))
	k.now = at(2 * time.Minute)
	if _, err := fw.Sync(at(2*time.Minute), st); err != nil {
		t.Fatal(err)
	}
	// nft add element inet mailgate banned_v4 { 192.0.2.2 timeout 58m }
	sameLines(t, "repair", k.elementOps(), []string{"add banned_v4 192.0.2.2 timeout 58m0s"})
}

// TestSyncReadFailureWritesNothing: whatever read fails, no message is
// sent and the sets keep their elements (CrowdSec bouncer #369).
func TestSyncReadFailureWritesNothing(t *testing.T) {
	for _, typ := range []int{unix.NFT_MSG_GETTABLE, unix.NFT_MSG_GETSET, unix.NFT_MSG_GETSETELEM, unix.NFT_MSG_GETCHAIN, unix.NFT_MSG_GETRULE} {
		fw, k := newTestFirewall(t, exampleConfig(Autoban))
		if _, err := fw.Apply(t0, exampleState()); err != nil {
			t.Fatal(err)
		}
		before := k.elements("banned_v4")
		n := len(k.batches)
		k.failGet[typ] = syscall.EIO
		// An empty state: on success this would delete every element.
		_, err := fw.Sync(t0, State{})
		if err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("read type %d failing: err %v, want one saying nothing was changed", typ, err)
		}
		if len(k.batches) != n {
			t.Errorf("read type %d failing: %d batches sent", typ, len(k.batches)-n)
		}
		sameLines(t, "banned_v4 after a failed read", k.elements("banned_v4"), before)
		// Apply too.
		if _, err := fw.Apply(t0, State{}); err == nil || len(k.batches) != n {
			t.Errorf("read type %d failing: Apply err %v, %d batches", typ, err, len(k.batches)-n)
		}
	}
}

// TestSyncBatchFailure: a transaction the kernel refuses changes nothing;
// Sync reads again and retries once.
func TestSyncBatchFailure(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	if _, err := fw.Apply(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	st := State{Bans: []Ban{{Prefix: prefix("192.0.2.9/32"), Expires: at(time.Hour)}}}
	k.failBatch = unix.NFT_MSG_DELSETELEM
	n := len(k.batches)
	res, err := fw.Sync(t0, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.batches) != n+2 || !slices.Equal(k.batches[n], k.batches[n+1]) {
		t.Errorf("%d batches, want the failed one and the same one again", len(k.batches)-n)
	}
	if res.Added != 1 || res.Removed == 0 {
		t.Errorf("result %+v", res)
	}
	sameLines(t, "banned_v4", k.elements("banned_v4"), []string{"192.0.2.9 expires 1h0m0s"})
}

func TestApplyRefusesForeignSet(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	if _, err := fw.Apply(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	// banned_v4 replaced by hand with an interval set.
	s := k.st.sets["banned_v4"]
	var as []netlink.Attribute
	for _, a := range nested(t, s.attrs) {
		if a.Type == unix.NFTA_SET_FLAGS {
			a.Data = be32(unix.NFT_SET_INTERVAL | unix.NFT_SET_TIMEOUT)
		}
		as = append(as, a)
	}
	s.attrs = marshal(t, as)
	n := len(k.batches)
	_, err := fw.Apply(t0, exampleState())
	if err == nil || !strings.Contains(err.Error(), "set banned_v4") || !strings.Contains(err.Error(), "flags interval,timeout, want timeout") {
		t.Errorf("err %v", err)
	}
	if len(k.batches) != n {
		t.Error("a batch was sent")
	}
}

func TestSyncRepairsRules(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Private))
	if _, err := fw.Apply(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	// nft flush chain inet mailgate input, by hand.
	k.st.chains["input"].rules = nil
	if _, err := fw.Sync(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	got, _ := fw.Kernel()
	if want := Render(exampleConfig(Private), exampleState(), t0); got != want {
		t.Errorf("rules not repaired:\n%s", Diff(want, got))
	}
	// The whole table deleted by hand: Sync makes it again.
	k.st = fakeState{sets: map[string]*fakeSet{}, chains: map[string]*fakeChain{}}
	res, err := fw.Sync(t0, exampleState())
	if err != nil || res.Added != 26 {
		t.Fatalf("%+v %v", res, err)
	}
	got, _ = fw.Kernel()
	if want := Render(exampleConfig(Private), exampleState(), t0); got != want {
		t.Errorf("table not re-made:\n%s", Diff(want, got))
	}
}

func TestIncremental(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Protected))
	st := State{Bans: []Ban{
		{Prefix: prefix("192.0.2.1/32"), Expires: at(time.Hour)},
		{Prefix: prefix("198.51.100.0/24"), Expires: at(time.Hour)},
	}}
	if _, err := fw.Apply(t0, st); err != nil {
		t.Fatal(err)
	}
	k.gets = nil
	now := at(time.Minute)
	k.now = now
	// New bans, one given IPv4-mapped, one an IPv6 address, one a /26
	// inside the banned /24 for longer, and 192.0.2.1 re-banned for a
	// day.
	err := fw.AddBans(now, []Ban{
		{Prefix: prefix("::ffff:192.0.2.7/128"), Expires: at(31 * time.Minute)},
		{Prefix: prefix("2001:db8::9/128"), Expires: at(time.Hour)},
		{Prefix: prefix("198.51.100.64/26"), Expires: at(2 * time.Hour)},
		{Prefix: prefix("192.0.2.1/32"), Expires: at(24 * time.Hour)},
		{Prefix: prefix("192.0.2.8/32"), Expires: at(-time.Hour)}, // already over: ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	sameLines(t, "AddBans", k.elementOps(), []string{
		// nft delete element inet mailgate banned_nets_v4 { 198.51.100.0/24 }
		"del banned_nets_v4 198.51.100.0",
		"del banned_nets_v4 198.51.101.0 end",
		// nft delete element inet mailgate banned_v4 { 192.0.2.1 }
		"del banned_v4 192.0.2.1",
		// nft add element inet mailgate banned_nets_v4 { 198.51.100.0/26 timeout 59m, 198.51.100.64/26 timeout 1h59m, 198.51.100.128/25 timeout 59m }
		"add banned_nets_v4 198.51.100.0 timeout 59m0s",
		"add banned_nets_v4 198.51.100.64 end",
		"add banned_nets_v4 198.51.100.64 timeout 1h59m0s",
		"add banned_nets_v4 198.51.100.128 end",
		"add banned_nets_v4 198.51.100.128 timeout 59m0s",
		"add banned_nets_v4 198.51.101.0 end",
		// nft add element inet mailgate banned_v4 { 192.0.2.1 timeout 23h59m, 192.0.2.7 timeout 30m }
		"add banned_v4 192.0.2.1 timeout 23h59m0s",
		"add banned_v4 192.0.2.7 timeout 30m0s",
		// nft add element inet mailgate banned_v6 { 2001:db8::9 timeout 59m }
		"add banned_v6 2001:db8::9 timeout 59m0s",
	})
	if len(k.gets) != 0 {
		t.Errorf("AddBans read the kernel: %v", k.gets)
	}
	// nft add element inet mailgate trusted_v4 { 203.0.113.5 . 25 timeout 1d, 203.0.113.5 . 110 timeout 1d, ... }
	// (every mail port: submission is what protected mode opens to it)
	if err := fw.AddTrusted(now, []Trusted{{Addr: addr("203.0.113.5"), Expires: now.Add(24 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range []string{"25", "110", "143", "465", "587", "993", "995", "4190"} {
		want = append(want, "add trusted_v4 203.0.113.5 . "+p+" timeout 24h0m0s")
	}
	sameLines(t, "AddTrusted", k.elementOps(), want)
	// A login a minute later: within the tolerance, nothing is sent.
	n := len(k.batches)
	if err := fw.AddTrusted(now.Add(time.Minute), []Trusted{{Addr: addr("203.0.113.5"), Expires: now.Add(24*time.Hour + time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if len(k.batches) != n {
		t.Errorf("a login within the tolerance sent %q", k.batches[n:])
	}
	// The /24 unbanned: the pieces of it around the /26 go, the /26
	// stays as it is.
	if err := fw.RemoveBans(now, []Ban{{Prefix: prefix("192.0.2.7/32")}, {Prefix: prefix("198.51.100.0/24")}}); err != nil {
		t.Fatal(err)
	}
	sameLines(t, "RemoveBans", k.elementOps(), []string{
		// nft delete element inet mailgate banned_nets_v4 { 198.51.100.0/26, 198.51.100.128/25 }
		"del banned_nets_v4 198.51.100.0",
		"del banned_nets_v4 198.51.100.64 end",
		"del banned_nets_v4 198.51.100.128",
		"del banned_nets_v4 198.51.101.0 end",
		// nft delete element inet mailgate banned_v4 { 192.0.2.7 }
		"del banned_v4 192.0.2.7",
	})
	if len(k.gets) != 0 {
		t.Errorf("incremental calls read the kernel: %v", k.gets)
	}
	sameLines(t, "banned_nets_v4", k.elements("banned_nets_v4"), []string{
		"198.51.100.128 end",
		"198.51.100.64 expires 1h59m0s",
	})
}

// TestIncrementalFallback: an element deleted by hand makes the
// incremental transaction fail; the Firewall reads the kernel and syncs.
func TestIncrementalFallback(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	st := State{Bans: []Ban{{Prefix: prefix("192.0.2.1/32"), Expires: at(time.Hour)}, {Prefix: prefix("192.0.2.2/32"), Expires: at(time.Hour)}}}
	if _, err := fw.Apply(t0, st); err != nil {
		t.Fatal(err)
	}
	delete(k.st.sets["banned_v4"].elems, elemKey(addr("192.0.2.1").AsSlice(), false))
	n := len(k.batches)
	if err := fw.RemoveBans(t0, []Ban{{Prefix: prefix("192.0.2.1/32")}, {Prefix: prefix("192.0.2.2/32")}}); err != nil {
		t.Fatal(err)
	}
	// nft delete element inet mailgate banned_v4 { 192.0.2.1, 192.0.2.2 } fails (ENOENT);
	// then, after reading: nft delete element inet mailgate banned_v4 { 192.0.2.2 }
	if len(k.batches) != n+2 {
		t.Fatalf("%d batches, want 2", len(k.batches)-n)
	}
	sameLines(t, "retry", k.elementOps(), []string{"del banned_v4 192.0.2.2"})
	if len(k.elements("banned_v4")) != 0 {
		t.Errorf("left %v", k.elements("banned_v4"))
	}
}

// TestIncrementalBeforeApply: without a known kernel state the
// incremental calls read it first.
func TestIncrementalBeforeApply(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	if err := fw.AddBans(t0, []Ban{{Prefix: prefix("192.0.2.1/32"), Expires: at(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	sameLines(t, "banned_v4", k.elements("banned_v4"), []string{"192.0.2.1 expires 1h0m0s"})
	if len(k.gets) == 0 {
		t.Error("no read")
	}
}

func TestBansOff(t *testing.T) {
	cfg := exampleConfig(Public)
	cfg.Bans = false
	fw, k := newTestFirewall(t, cfg)
	if _, err := fw.Apply(t0, exampleState()); err != nil {
		t.Fatal(err)
	}
	n := len(k.batches)
	if err := fw.AddBans(t0, []Ban{{Prefix: prefix("192.0.2.1/32")}}); err != nil {
		t.Fatal(err)
	}
	if len(k.batches) != n || len(k.elements("banned_v4")) != 0 || len(k.elements("banned_nets_v4")) != 0 {
		t.Errorf("bans off, yet %d batches, %v", len(k.batches)-n, k.elements("banned_v4"))
	}
	got, _ := fw.Kernel()
	if strings.Contains(got, "drop") {
		t.Errorf("a drop rule with bans off in public mode:\n%s", got)
	}
}

func TestKernelNoTableAndForeignRule(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	got, err := fw.Kernel()
	if err != nil || got != "" {
		t.Fatalf("Kernel of no table: %q, %v", got, err)
	}
	if _, err := fw.Apply(t0, State{}); err != nil {
		t.Fatal(err)
	}
	// A rule of someone else's at the end of the chain: shown as a
	// comment, and Diff shows it.
	c := k.st.chains["input"]
	c.rules = append(c.rules, c.rules[3])  // the trusted_v4 rule once more
	c.rules = slices.Delete(c.rules, 1, 2) // the trusted_nets_v4 rule (after iif "lo")
	got, err = fw.Kernel()
	if err != nil {
		t.Fatal(err)
	}
	d := Diff(Render(exampleConfig(Autoban), State{}, t0), got)
	want := " \tchain input {\n" +
		"-\t\ttcp dport { 25, 110, 143, 465, 587, 993, 995, 4190 } ip saddr @trusted_nets_v4 accept\n" +
		"+\t\tip saddr . tcp dport @trusted_v4 accept\n"
	if !strings.HasPrefix(d, want) {
		t.Errorf("Diff:\n%s\nwant it to start with:\n%s", d, want)
	}
}

func TestAutobans(t *testing.T) {
	fw, k := newTestFirewall(t, exampleConfig(Autoban))
	if _, err := fw.Apply(t0, State{}); err != nil {
		t.Fatal(err)
	}
	// What the kernel's `update @autoban_v6 { ip6 saddr & ffff:ffff:ffff:ffff:: timeout 1h }` leaves.
	k.st.sets["autoban_v4"].elems["x"] = fakeElem{key: addr("192.0.2.5").AsSlice(), timeout: time.Hour, expires: at(30 * time.Minute)}
	k.st.sets["autoban_v6"].elems["y"] = fakeElem{key: addr("2001:db8:1:2::").AsSlice(), timeout: time.Hour, expires: at(time.Hour)}
	got, err := fw.Autobans(t0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Ban{{prefix("192.0.2.5/32"), at(30 * time.Minute)}, {prefix("2001:db8:1:2::/64"), at(time.Hour)}}
	if !slices.Equal(got, want) {
		t.Errorf("Autobans %v, want %v", got, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	k := newFakeKernel(t, t0)
	c := DefaultConfig()
	c.Mode = "closed"
	if _, err := New(c, k.conn(), nil); err == nil || !strings.Contains(err.Error(), `mode: "closed"`) {
		t.Errorf("err %v", err)
	}
	if _, err := New(DefaultConfig(), nil, nil); err == nil {
		t.Error("nil conn accepted")
	}
}

package nft

// Root tests against the real kernel. Each test makes its own network
// namespaces (`ip netns add`), talks netlink into them with
// nftables.WithNetNSFd, and reads them back with `ip netns exec NS nft`;
// the root namespace's firewall is never touched. The traffic tests join
// a "server" namespace to "client" namespaces with veth pairs and make
// real TCP connections: a socket is created inside a namespace by
// switching one locked OS thread into it with setns(2) (see ktNS.do).
//
// They need root, ip (iproute2) and nft (nftables) — `make deps` installs
// them — and fail without them: a firewall test that skips proves nothing.
// The helpers here are a small copy of test/harness's, which an internal
// package does not import. Names start with "kt" to stay out of the way
// of the package's other tests.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// ktProbe is how long a dial waits before calling the port dropped. A
// connection over a veth is made in well under a millisecond.
const ktProbe = 500 * time.Millisecond

// ktRequire fails the test unless it can make namespaces and run nft.
func ktRequire(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("kernel tests need root to make network namespaces (euid %d)", os.Geteuid())
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("kernel tests need %s: %v (make deps installs iproute2 and nftables)", bin, err)
		}
	}
}

// ktNS is a network namespace made for one test.
type ktNS struct {
	name string
	fd   *os.File // /run/netns/name
}

// ktNewNS makes a namespace with loopback up and deletes it when the test
// ends. The name follows test/harness ("mg-<pid>-<random>-<role>"), whose
// sweep removes namespaces left by a killed test process.
func ktNewNS(t testing.TB, role string) *ktNS {
	t.Helper()
	ktRequire(t)
	b := make([]byte, 3)
	rand.Read(b)
	ns := &ktNS{name: fmt.Sprintf("mg-%d-%s-%s", os.Getpid(), hex.EncodeToString(b), role)}
	ktCmd(t, "ip", "netns", "add", ns.name)
	t.Cleanup(func() {
		if ns.fd != nil {
			ns.fd.Close()
		}
		if out, err := exec.Command("ip", "netns", "delete", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns.name, err, out)
		}
	})
	f, err := os.Open(filepath.Join("/run/netns", ns.name))
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns.name, err)
	}
	ns.fd = f
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

func ktCmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (ns *ktNS) ip(t testing.TB, args ...string) {
	t.Helper()
	ktCmd(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// nft runs nft inside the namespace and fails the test on error.
func (ns *ktNS) nft(t testing.TB, args ...string) string {
	t.Helper()
	return ktCmd(t, "ip", append([]string{"netns", "exec", ns.name, "nft"}, args...)...)
}

// firewall returns a Firewall for cfg writing into the namespace.
func (ns *ktNS) firewall(t testing.TB, cfg Config) *Firewall {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns.fd.Fd())))
	if err != nil {
		t.Fatalf("netlink connection into %s: %v", ns.name, err)
	}
	var log *slog.Logger
	if tt, ok := t.(*testing.T); ok {
		log = slog.New(slog.NewTextHandler(tt.Output(), nil))
	}
	f, err := New(cfg, conn, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// do runs fn on an OS thread switched into the namespace; sockets fn
// creates stay in it. The thread goes back to the scheduler only once it
// is back in its own namespace; otherwise it dies with the goroutine.
func (ns *ktNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Setns(int(ns.fd.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", ns.name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave %s: %w", ns.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// The outcomes of a dial.
const (
	ktConnected = "connected"
	ktRefused   = "refused"
	ktDropped   = "timed out"
)

// dial connects from the namespace to dst (waiting at most ktProbe),
// closes the connection, and says how it went.
func (ns *ktNS) dial(t testing.TB, dst netip.AddrPort) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ktProbe)
	defer cancel()
	var c net.Conn
	err := ns.do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", dst.String())
		return err
	})
	switch {
	case err == nil:
		c.Close()
		return ktConnected
	case errors.Is(err, syscall.ECONNREFUSED):
		return ktRefused
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ktDropped
	}
	t.Fatalf("dial %s from %s: %v", dst, ns.name, err)
	return ""
}

// listen accepts (and closes) TCP connections on ports of every address
// of the namespace until the test ends.
func (ns *ktNS) listen(t testing.TB, ports ...uint16) {
	t.Helper()
	var wg sync.WaitGroup
	var ls []net.Listener
	t.Cleanup(func() {
		for _, l := range ls {
			l.Close()
		}
		wg.Wait()
	})
	for _, p := range ports {
		var l net.Listener
		err := ns.do(func() error {
			var err error
			l, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", p))
			return err
		})
		if err != nil {
			t.Fatalf("listen on %d in %s: %v", p, ns.name, err)
		}
		ls = append(ls, l)
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
	}
}

// ktClient is a client namespace with its veth link to the server:
// client i (from 1) is 10.0.i.2/24 and fd00:0:i::2/64, the server's end
// 10.0.i.1 and fd00:0:i::1. Each client has its own /64, as IPv6 is
// counted and banned per /64.
type ktClient struct {
	*ktNS
	addr4, addr6 netip.Addr // the client's
	srv4, srv6   netip.Addr // the server's, on this link
	net4, net6   netip.Prefix
}

func (c *ktClient) to(dst netip.Addr, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(dst, port)
}

// ktNewNet makes a server namespace and n client namespaces.
func ktNewNet(t testing.TB, n int) (*ktNS, []*ktClient) {
	t.Helper()
	srv := ktNewNS(t, "nftsrv")
	var clients []*ktClient
	for i := 1; i <= n; i++ {
		c := &ktClient{
			ktNS:  ktNewNS(t, fmt.Sprintf("nftc%d", i)),
			addr4: netip.AddrFrom4([4]byte{10, 0, byte(i), 2}),
			srv4:  netip.AddrFrom4([4]byte{10, 0, byte(i), 1}),
			addr6: netip.MustParseAddr(fmt.Sprintf("fd00:0:%x::2", i)),
			srv6:  netip.MustParseAddr(fmt.Sprintf("fd00:0:%x::1", i)),
		}
		c.net4 = netip.PrefixFrom(c.addr4, 24).Masked()
		c.net6 = netip.PrefixFrom(c.addr6, 64).Masked()
		port := fmt.Sprintf("c%d", i)
		ktCmd(t, "ip", "link", "add", port, "netns", srv.name, "type", "veth", "peer", "name", "eth0", "netns", c.name)
		srv.ip(t, "addr", "add", c.srv4.String()+"/24", "dev", port)
		srv.ip(t, "addr", "add", c.srv6.String()+"/64", "dev", port, "nodad")
		srv.ip(t, "link", "set", port, "up")
		c.ip(t, "addr", "add", c.addr4.String()+"/24", "dev", "eth0")
		c.ip(t, "addr", "add", c.addr6.String()+"/64", "dev", "eth0", "nodad")
		c.ip(t, "link", "set", "eth0", "up")
		clients = append(clients, c)
	}
	return srv, clients
}

// ktElem is an element as `nft -j` lists it.
type ktElem struct {
	timeout, expires time.Duration // whole seconds; 0 without a timeout
}

// sets lists the elements of every set of table inet mailgate by their
// nft text ("192.0.2.1", "198.51.100.0/24", "10.0.0.1-10.0.0.5",
// "192.0.2.1 . 587"), read with `nft -j list table`.
func (ns *ktNS) sets(t testing.TB) map[string]map[string]ktElem {
	t.Helper()
	out := ns.nft(t, "-j", "list", "table", "inet", TableName)
	var doc struct {
		Nftables []struct {
			Set *struct {
				Name string            `json:"name"`
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j list table: %v\n%s", err, out)
	}
	sets := map[string]map[string]ktElem{}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		m := map[string]ktElem{}
		for _, raw := range o.Set.Elem {
			var wrapped struct {
				Elem *struct {
					Val     json.RawMessage `json:"val"`
					Timeout int64           `json:"timeout"`
					Expires int64           `json:"expires"`
				} `json:"elem"`
			}
			var e ktElem
			val := raw
			if json.Unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
				val = wrapped.Elem.Val
				e = ktElem{time.Duration(wrapped.Elem.Timeout) * time.Second, time.Duration(wrapped.Elem.Expires) * time.Second}
			}
			m[ktValText(t, val)] = e
		}
		sets[o.Set.Name] = m
	}
	return sets
}

// ktValText prints an element value of nft's JSON as nft's text does.
func ktValText(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return fmt.Sprint(n)
	}
	var v struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Range  []json.RawMessage `json:"range"`
		Concat []json.RawMessage `json:"concat"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("element value %s: %v", raw, err)
	}
	switch {
	case v.Prefix != nil:
		return fmt.Sprintf("%s/%d", v.Prefix.Addr, v.Prefix.Len)
	case len(v.Range) == 2:
		return ktValText(t, v.Range[0]) + "-" + ktValText(t, v.Range[1])
	case len(v.Concat) > 0:
		var parts []string
		for _, p := range v.Concat {
			parts = append(parts, ktValText(t, p))
		}
		return strings.Join(parts, " . ")
	}
	t.Fatalf("element value %s: unknown form", raw)
	return ""
}

func ktKeys(m map[string]ktElem) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// ktWantSet fails unless set holds exactly want.
func ktWantSet(t testing.TB, sets map[string]map[string]ktElem, set string, want ...string) {
	t.Helper()
	m, ok := sets[set]
	if !ok {
		t.Errorf("no set %s", set)
		return
	}
	slices.Sort(want)
	if got := ktKeys(m); !slices.Equal(got, want) {
		t.Errorf("set %s = %q, want %q", set, got, want)
	}
}

// ktWantTimeout fails unless the element's timeout is want (to the
// second nft shows) and it has not counted down more than slack.
func ktWantTimeout(t testing.TB, sets map[string]map[string]ktElem, set, elem string, want time.Duration) {
	t.Helper()
	e, ok := sets[set][elem]
	if !ok {
		t.Errorf("set %s has no %s", set, elem)
		return
	}
	const slack = 5 * time.Second
	if (e.timeout-want).Abs() > time.Second || e.expires > e.timeout || e.expires < want-slack {
		t.Errorf("set %s element %s: timeout %v expires %v, want timeout %v", set, elem, e.timeout, e.expires, want)
	}
}

func ktPfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ktAddr(s string) netip.Addr  { return netip.MustParseAddr(s) }
func ktHost(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

// ktConfig is the default config in mode m with port 25 as an SMTP port.
func ktConfig(m Mode) Config {
	c := DefaultConfig()
	c.Mode = m
	c.SMTPPorts = []uint16{25}
	return c
}

// TestKernelApplyModes applies each mode into an empty namespace and
// reads it back with nft: the listing must parse, hold the elements of
// the state and the mode's rules, and match Render.
func TestKernelApplyModes(t *testing.T) {
	// The rules that drop ports for everyone.
	closeRules := regexp.MustCompile(`(?m)tcp dport (\{ [0-9, ]+ \}|[0-9]+) drop$`)
	for _, m := range []Mode{Public, Autoban, Protected, Private} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			ns := ktNewNS(t, "nft"+string(m))
			cfg := ktConfig(m)
			cfg.Rate = 3
			cfg.TrustedNets = []netip.Prefix{ktPfx("10.9.0.0/16"), ktPfx("fd00:9::/48")}
			now := time.Now()
			st := State{
				Bans: []Ban{
					{Prefix: ktPfx("192.0.2.1/32"), Expires: now.Add(time.Hour)},
					{Prefix: ktPfx("2001:db8::1/128"), Expires: now.Add(time.Hour)},
					{Prefix: ktPfx("198.51.100.0/24"), Expires: now.Add(2 * time.Hour)},
					{Prefix: ktPfx("2001:db8:1::/48")},
				},
				Trusted: []Trusted{{Addr: ktAddr("203.0.113.7"), Expires: now.Add(24 * time.Hour)}},
			}
			f := ns.firewall(t, cfg)
			res, err := f.Apply(now, st)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			// 4 bans, 2 networks, the trusted address on 8 ports.
			if want := (SyncResult{Added: 4 + 2 + 8}); res != want {
				t.Errorf("Apply = %+v, want %+v", res, want)
			}

			sets := ns.sets(t)
			for _, d := range setDefs() {
				if _, ok := sets[d.name]; !ok {
					t.Errorf("no set %s in the kernel", d.name)
				}
			}
			ktWantSet(t, sets, "trusted_nets_v4", "10.9.0.0/16")
			ktWantSet(t, sets, "trusted_nets_v6", "fd00:9::/48")
			ktWantSet(t, sets, "banned_v4", "192.0.2.1")
			ktWantSet(t, sets, "banned_v6", "2001:db8::1")
			ktWantSet(t, sets, "banned_nets_v4", "198.51.100.0/24")
			ktWantSet(t, sets, "banned_nets_v6", "2001:db8:1::/48")
			var trusted []string
			for _, p := range []int{25, 110, 143, 465, 587, 993, 995, 4190} {
				trusted = append(trusted, fmt.Sprintf("203.0.113.7 . %d", p))
			}
			ktWantSet(t, sets, "trusted_v4", trusted...)
			ktWantSet(t, sets, "trusted_v6")

			listing := ns.nft(t, "list", "table", "inet", TableName)
			// What every mode has, and what tells the modes apart, as nft
			// prints it.
			want := []string{
				"type filter hook input priority filter - 10; policy accept;",
				"ip saddr @trusted_nets_v4 accept",
				"ip6 saddr @trusted_nets_v6 accept",
				"ip saddr . tcp dport @trusted_v4 accept",
				"ip6 saddr . tcp dport @trusted_v6 accept",
				"ip saddr @banned_v4 drop",
				"ip6 saddr @banned_v6 drop",
				"ip saddr @banned_nets_v4 drop",
				"ip6 saddr @banned_nets_v6 drop",
			}
			// The rules that close ports outright, and the rate limit.
			var closing []string
			limit := false
			switch m {
			case Autoban:
				want = append(want, "tcp dport { 110, 143, 465, 587, 993, 995, 4190 } ip saddr @autoban_v4 drop",
					"tcp dport { 110, 143, 465, 587, 993, 995, 4190 } ct state new update @rate_v4")
				limit = true
			case Protected:
				want = append(want, "tcp dport { 110, 143, 993, 995, 4190 } ip saddr @autoban_v4 drop",
					"tcp dport { 110, 143, 993, 995, 4190 } ct state new update @rate_v4")
				closing = []string{"tcp dport { 465, 587 } drop"}
				limit = true
			case Private:
				closing = []string{"tcp dport { 110, 143, 465, 587, 993, 995, 4190 } drop"}
			}
			for _, w := range want {
				if !strings.Contains(listing, w) {
					t.Errorf("nft list lacks %q", w)
				}
			}
			if got := closeRules.FindAllString(listing, -1); !slices.Equal(got, closing) {
				t.Errorf("rules closing ports: %q, want %q", got, closing)
			}
			const rate = "limit rate over 3/minute burst 3 packets"
			if got := strings.Count(listing, rate); got != map[bool]int{true: 2}[limit] {
				t.Errorf("%d rules have %q, want it in both families: %v", got, rate, limit)
			}
			if got := strings.Contains(listing, "@autoban_v4 drop"); got != limit {
				t.Errorf("autoban drop rule present: %v, want %v", got, limit)
			}
			// Port 25 is only ever in the trusted and ban rules.
			for line := range strings.Lines(listing) {
				if strings.Contains(line, " 25,") && !strings.Contains(line, "@trusted") && !strings.Contains(line, "@banned") {
					t.Errorf("port 25 in a rule other than trusted and bans: %s", strings.TrimSpace(line))
				}
			}
			// Render's rule text is nft's own.
			for _, r := range cfg.rules() {
				if !strings.Contains(listing, "\t\t"+r.text+"\n") {
					t.Errorf("rule %q is not in nft's listing", r.text)
				}
			}
			if t.Failed() {
				t.Logf("nft list table inet mailgate:\n%s", listing)
			}
			k, err := f.Kernel()
			if err != nil {
				t.Fatalf("Kernel: %v", err)
			}
			if d := Diff(Render(cfg, st, time.Now()), k); d != "" {
				t.Errorf("Render and Kernel differ:\n%s", d)
			}
			// nft can load back what it listed (into another namespace).
			other := ktNewNS(t, "nftload")
			cmd := exec.Command("ip", "netns", "exec", other.name, "nft", "-f", "-")
			cmd.Stdin = strings.NewReader(listing)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("nft -f of the listing: %v\n%s", err, out)
			}
		})
	}
}

// TestKernelSync checks that Sync makes the sets mailgate owns hold the
// state — adding, removing, repairing what was deleted by hand — and
// leaves the kernel's rate and autoban sets alone.
func TestKernelSync(t *testing.T) {
	t.Parallel()
	ns := ktNewNS(t, "nftsync")
	f := ns.firewall(t, ktConfig(Autoban))
	now := time.Now()
	a := Ban{Prefix: ktPfx("192.0.2.1/32"), Expires: now.Add(30 * time.Minute)}
	b := Ban{Prefix: ktPfx("192.0.2.2/32"), Expires: now.Add(time.Hour)}
	n := Ban{Prefix: ktPfx("198.51.100.0/24"), Expires: now.Add(time.Hour)}
	tr := Trusted{Addr: ktAddr("203.0.113.7"), Expires: now.Add(24 * time.Hour)}
	if _, err := f.Apply(now, State{Bans: []Ban{a, b, n}, Trusted: []Trusted{tr}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// Elements mailgate does not know about: one in a set it owns, which
	// Sync must remove, and one in each kernel-managed set, which it must
	// keep.
	ns.nft(t, "add", "element", "inet", TableName, "banned_v4", "{ 192.0.2.99 timeout 1h }")
	ns.nft(t, "add", "element", "inet", TableName, "autoban_v4", "{ 192.0.2.77 timeout 1h }")
	ns.nft(t, "add", "element", "inet", TableName, "rate_v6", "{ 2001:db8:77:: timeout 1m }")

	c := Ban{Prefix: ktPfx("192.0.2.3/32"), Expires: now.Add(2 * time.Hour)}
	d := Ban{Prefix: ktPfx("2001:db8::3/128"), Expires: now.Add(2 * time.Hour)}
	n2 := Ban{Prefix: ktPfx("198.51.100.0/25"), Expires: now.Add(time.Hour)}
	st := State{Bans: []Ban{a, c, d, n2}, Trusted: []Trusted{tr}}
	res, err := f.Sync(now, st)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Added c, d, the /25; removed b, 192.0.2.99, the /24.
	if want := (SyncResult{Added: 3, Removed: 3}); res != want {
		t.Errorf("Sync = %+v, want %+v", res, want)
	}
	sets := ns.sets(t)
	ktWantSet(t, sets, "banned_v4", "192.0.2.1", "192.0.2.3")
	ktWantSet(t, sets, "banned_v6", "2001:db8::3")
	ktWantSet(t, sets, "banned_nets_v4", "198.51.100.0/25")
	ktWantSet(t, sets, "autoban_v4", "192.0.2.77")
	ktWantSet(t, sets, "rate_v6", "2001:db8:77::")
	if len(sets["trusted_v4"]) != 8 { // the seven default ports and 25
		t.Errorf("trusted_v4 has %d elements, want 8", len(sets["trusted_v4"]))
	}

	// Deleted by hand: the next Sync puts them back, and only them.
	ns.nft(t, "delete", "element", "inet", TableName, "banned_v4", "{ 192.0.2.1 }")
	ns.nft(t, "delete", "element", "inet", TableName, "trusted_v4", "{ 203.0.113.7 . 587 }")
	ns.nft(t, "delete", "element", "inet", TableName, "banned_nets_v4", "{ 198.51.100.0/25 }")
	res, err = f.Sync(now, st)
	if err != nil {
		t.Fatalf("Sync after deleting by hand: %v", err)
	}
	if want := (SyncResult{Added: 3}); res != want {
		t.Errorf("Sync after deleting by hand = %+v, want %+v", res, want)
	}
	sets = ns.sets(t)
	ktWantSet(t, sets, "banned_v4", "192.0.2.1", "192.0.2.3")
	ktWantSet(t, sets, "banned_nets_v4", "198.51.100.0/25")
	if _, ok := sets["trusted_v4"]["203.0.113.7 . 587"]; !ok {
		t.Errorf("trusted_v4 lacks 203.0.113.7 . 587 after Sync: %q", ktKeys(sets["trusted_v4"]))
	}
	ktWantTimeout(t, sets, "banned_v4", "192.0.2.1", 30*time.Minute)

	// The incremental calls also repair: after a hand deletion the
	// first one falls back to reading the kernel.
	ns.nft(t, "delete", "element", "inet", TableName, "banned_v4", "{ 192.0.2.3 }")
	if err := f.RemoveBans(now, []Ban{c}); err != nil {
		t.Fatalf("RemoveBans of an element deleted by hand: %v", err)
	}
	if err := f.AddBans(now, []Ban{{Prefix: ktPfx("192.0.2.4/32"), Expires: now.Add(time.Hour)}}); err != nil {
		t.Fatalf("AddBans: %v", err)
	}
	ktWantSet(t, ns.sets(t), "banned_v4", "192.0.2.1", "192.0.2.4")

	// A restarted mailgate (a new Firewall) re-asserts the same state
	// without changing anything.
	st.Bans = []Ban{a, d, n2, {Prefix: ktPfx("192.0.2.4/32"), Expires: now.Add(time.Hour)}}
	f2 := ns.firewall(t, ktConfig(Autoban))
	res, err = f2.Sync(now, st)
	if err != nil || res != (SyncResult{}) {
		t.Errorf("Sync of a new Firewall with the kernel's state = %+v, %v; want no change", res, err)
	}
	// Sync with everything gone empties only the owned sets.
	if _, err := f2.Sync(now, State{}); err != nil {
		t.Fatalf("Sync to empty: %v", err)
	}
	sets = ns.sets(t)
	for _, s := range []string{"banned_v4", "banned_v6", "banned_nets_v4", "trusted_v4"} {
		ktWantSet(t, sets, s)
	}
	ktWantSet(t, sets, "autoban_v4", "192.0.2.77")
}

// TestKernelTimeouts checks that elements get the time left until their
// expiry at the now given, not a fixed period.
func TestKernelTimeouts(t *testing.T) {
	t.Parallel()
	ns := ktNewNS(t, "nfttime")
	f := ns.firewall(t, ktConfig(Protected))
	now := time.Now()
	st := State{
		Bans: []Ban{
			{Prefix: ktPfx("192.0.2.1/32"), Expires: now.Add(30 * time.Minute)},
			{Prefix: ktPfx("192.0.2.2/32")},                                 // until removed
			{Prefix: ktPfx("192.0.2.3/32"), Expires: now.Add(-time.Second)}, // expired
			{Prefix: ktPfx("198.51.100.0/24"), Expires: now.Add(2 * time.Hour)},
			{Prefix: ktPfx("2001:db8::/64"), Expires: now.Add(90 * time.Minute)},
		},
		Trusted: []Trusted{{Addr: ktAddr("2001:db8:5::5"), Expires: now.Add(24 * time.Hour)}},
	}
	if _, err := f.Apply(now, st); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	sets := ns.sets(t)
	ktWantSet(t, sets, "banned_v4", "192.0.2.1", "192.0.2.2")
	ktWantTimeout(t, sets, "banned_v4", "192.0.2.1", 30*time.Minute)
	if e := sets["banned_v4"]["192.0.2.2"]; e.timeout != 0 {
		t.Errorf("a ban without expiry has timeout %v", e.timeout)
	}
	ktWantTimeout(t, sets, "banned_nets_v4", "198.51.100.0/24", 2*time.Hour)
	ktWantTimeout(t, sets, "banned_nets_v6", "2001:db8::/64", 90*time.Minute)
	ktWantTimeout(t, sets, "trusted_v6", "2001:db8:5::5 . 587", 24*time.Hour)

	// Ten minutes later (as mailgate's clock says) the same state means
	// twenty minutes left: Sync replaces the elements whose timeout is
	// off by more than Sync's tolerance (a twentieth).
	later := now.Add(10 * time.Minute)
	res, err := f.Sync(later, st)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if res.Added == 0 {
		t.Errorf("Sync ten minutes later changed nothing: %+v", res)
	}
	sets = ns.sets(t)
	ktWantTimeout(t, sets, "banned_v4", "192.0.2.1", 20*time.Minute)
	ktWantTimeout(t, sets, "banned_nets_v4", "198.51.100.0/24", 110*time.Minute)
	ktWantTimeout(t, sets, "banned_nets_v6", "2001:db8::/64", 80*time.Minute)

	// AddBans extends a ban to its new expiry.
	if err := f.AddBans(later, []Ban{{Prefix: ktPfx("192.0.2.1/32"), Expires: later.Add(3 * time.Hour)}}); err != nil {
		t.Fatalf("AddBans: %v", err)
	}
	ktWantTimeout(t, ns.sets(t), "banned_v4", "192.0.2.1", 3*time.Hour)
}

// TestKernelReapply changes the mode of a running firewall: the elements
// of every set, the kernel's autobans included, survive.
func TestKernelReapply(t *testing.T) {
	t.Parallel()
	ns := ktNewNS(t, "nftmode")
	now := time.Now()
	st := State{
		Bans:    []Ban{{Prefix: ktPfx("192.0.2.1/32"), Expires: now.Add(time.Hour)}, {Prefix: ktPfx("198.51.100.0/24"), Expires: now.Add(time.Hour)}},
		Trusted: []Trusted{{Addr: ktAddr("203.0.113.7"), Expires: now.Add(time.Hour)}},
	}
	if _, err := ns.firewall(t, ktConfig(Autoban)).Apply(now, st); err != nil {
		t.Fatalf("Apply autoban: %v", err)
	}
	ns.nft(t, "add", "element", "inet", TableName, "autoban_v4", "{ 192.0.2.77 timeout 1h }")
	before := ns.sets(t)
	for _, m := range []Mode{Protected, Private, Public, Autoban} {
		res, err := ns.firewall(t, ktConfig(m)).Apply(now, st)
		if err != nil {
			t.Fatalf("Apply %s: %v", m, err)
		}
		if res != (SyncResult{}) {
			t.Errorf("Apply %s changed elements: %+v", m, res)
		}
		after := ns.sets(t)
		for name, elems := range before {
			if got, want := ktKeys(after[name]), ktKeys(elems); !slices.Equal(got, want) {
				t.Errorf("after Apply %s: set %s = %q, want %q", m, name, got, want)
			}
			for k, e := range elems {
				// Kept, not added again: the kernel's countdown went on.
				if a := after[name][k]; a.timeout != e.timeout || a.expires > e.expires {
					t.Errorf("after Apply %s: %s %s timeout %v expires %v, was %v %v", m, name, k, a.timeout, a.expires, e.timeout, e.expires)
				}
			}
		}
		listing := ns.nft(t, "list", "chain", "inet", TableName, ChainName)
		if hasLimit := strings.Contains(listing, "limit rate"); hasLimit != (m == Autoban || m == Protected) {
			t.Errorf("after Apply %s the chain has a rate limit: %v\n%s", m, hasLimit, listing)
		}
	}
}

// ktCase is a dial and the outcome it must have.
type ktCase struct {
	from *ktClient
	dst  netip.AddrPort
	want string
}

// ktExpect dials each case and reports the outcomes that differ.
func ktExpect(t *testing.T, step string, cases ...ktCase) {
	t.Helper()
	for _, c := range cases {
		if got := c.from.dial(t, c.dst); got != c.want {
			t.Errorf("%s: %s → %s: %s, want %s", step, c.from.name, c.dst, got, c.want)
		}
	}
}

// listenMail listens on the ports the traffic tests dial: mail ports
// and 8080, which no mode touches. 4190 is left closed.
func (ns *ktNS) listenMail(t testing.TB) { ns.listen(t, 25, 143, 465, 587, 993, 8080) }

// TestKernelBans: a banned address or network cannot reach a mail port
// (port 25 included) but can reach any other port; a trusted network is
// never banned-dropped.
func TestKernelBans(t *testing.T) {
	t.Parallel()
	srv, cs := ktNewNet(t, 3)
	srv.listenMail(t)
	c1, c2, c3 := cs[0], cs[1], cs[2]
	cfg := ktConfig(Autoban)
	cfg.Rate = 1000
	cfg.TrustedNets = []netip.Prefix{c3.net4}
	f := srv.firewall(t, cfg)
	now := time.Now()
	hour := now.Add(time.Hour)
	_, err := f.Apply(now, State{Bans: []Ban{
		{Prefix: ktHost(c1.addr4), Expires: hour},
		{Prefix: ktHost(c1.addr6), Expires: hour},
		{Prefix: c2.net4, Expires: hour},
		{Prefix: ktHost(c3.addr4), Expires: hour}, // in a trusted network
	}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	ktExpect(t, "banned",
		ktCase{c1, c1.to(c1.srv4, 143), ktDropped},
		ktCase{c1, c1.to(c1.srv4, 587), ktDropped},
		ktCase{c1, c1.to(c1.srv4, 25), ktDropped},
		ktCase{c1, c1.to(c1.srv4, 8080), ktConnected},
		ktCase{c1, c1.to(c1.srv4, 4190), ktDropped}, // a mail port nobody listens on: dropped, not refused
		ktCase{c1, c1.to(c1.srv6, 993), ktDropped},
		ktCase{c1, c1.to(c1.srv6, 8080), ktConnected},
		ktCase{c2, c2.to(c2.srv4, 143), ktDropped},
		ktCase{c2, c2.to(c2.srv6, 143), ktConnected},
		ktCase{c3, c3.to(c3.srv4, 143), ktConnected},
		ktCase{c3, c3.to(c3.srv4, 25), ktConnected},
		ktCase{c3, c3.to(c3.srv4, 4190), ktRefused},
	)
	if err := f.RemoveBans(now, []Ban{{Prefix: ktHost(c1.addr4)}}); err != nil {
		t.Fatalf("RemoveBans: %v", err)
	}
	if err := f.AddBans(now, []Ban{{Prefix: c2.net6, Expires: hour}}); err != nil {
		t.Fatalf("AddBans: %v", err)
	}
	ktExpect(t, "after RemoveBans and AddBans",
		ktCase{c1, c1.to(c1.srv4, 143), ktConnected},
		ktCase{c1, c1.to(c1.srv6, 143), ktDropped},
		ktCase{c2, c2.to(c2.srv6, 143), ktDropped},
		ktCase{c2, c2.to(c2.srv6, 8080), ktConnected},
	)
}

// TestKernelAutoban: a client opening more than Rate connections a
// minute is banned by the kernel (IPv4 per address, IPv6 per /64) from
// the rate-limited ports, and no one else is; a trusted address is never
// counted.
func TestKernelAutoban(t *testing.T) {
	t.Parallel()
	srv, cs := ktNewNet(t, 3)
	srv.listenMail(t)
	c1, c2, c3 := cs[0], cs[1], cs[2]
	cfg := ktConfig(Autoban)
	cfg.Rate = 3
	cfg.RatePer = time.Minute
	cfg.AutobanFor = time.Hour
	f := srv.firewall(t, cfg)
	now := time.Now()
	if _, err := f.Apply(now, State{Trusted: []Trusted{{Addr: c3.addr4, Expires: now.Add(time.Hour)}}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for i := range 3 {
		ktExpect(t, fmt.Sprintf("connection %d", i+1),
			ktCase{c1, c1.to(c1.srv4, 143), ktConnected},
			ktCase{c2, c2.to(c2.srv6, 993), ktConnected},
			ktCase{c3, c3.to(c3.srv4, 587), ktConnected})
	}
	// Port 25 and 8080 are not rate limited and do not count.
	for range 4 {
		ktExpect(t, "unlimited ports", ktCase{c1, c1.to(c1.srv4, 25), ktConnected}, ktCase{c1, c1.to(c1.srv4, 8080), ktConnected})
	}
	ktExpect(t, "over the rate",
		ktCase{c1, c1.to(c1.srv4, 143), ktDropped},
		ktCase{c2, c2.to(c2.srv6, 993), ktDropped},
		ktCase{c3, c3.to(c3.srv4, 587), ktConnected}) // trusted
	// Banned now, from every rate-limited port, in its family only.
	ktExpect(t, "autobanned",
		ktCase{c1, c1.to(c1.srv4, 587), ktDropped},
		ktCase{c1, c1.to(c1.srv4, 25), ktConnected},
		ktCase{c1, c1.to(c1.srv4, 8080), ktConnected},
		ktCase{c1, c1.to(c1.srv6, 143), ktConnected},
		ktCase{c2, c2.to(c2.srv6, 143), ktDropped},
		ktCase{c2, c2.to(c2.srv4, 143), ktConnected})
	bans, err := f.Autobans(time.Now())
	if err != nil {
		t.Fatalf("Autobans: %v", err)
	}
	var got []string
	for _, b := range bans {
		got = append(got, b.Prefix.String())
		if left := time.Until(b.Expires); left < 50*time.Minute || left > time.Hour {
			t.Errorf("autoban %s ends in %v, want about an hour", b.Prefix, left)
		}
	}
	slices.Sort(got)
	if want := []string{c1.addr4.String() + "/32", c2.net6.String()}; !slices.Equal(got, want) {
		t.Errorf("Autobans = %q, want %q", got, want)
	}
	// A Sync does not lift the kernel's bans.
	if _, err := f.Sync(time.Now(), State{}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	ktExpect(t, "after Sync", ktCase{c1, c1.to(c1.srv4, 143), ktDropped})
}

// TestKernelProtected: the submission ports are closed to an untrusted
// client, open after AddTrusted, and closed again when the trusted
// element times out in the kernel; a trusted network always gets in.
func TestKernelProtected(t *testing.T) {
	t.Parallel()
	srv, cs := ktNewNet(t, 2)
	srv.listenMail(t)
	c1, c2 := cs[0], cs[1]
	cfg := ktConfig(Protected)
	cfg.Rate = 1000
	cfg.TrustedNets = []netip.Prefix{c2.net4}
	f := srv.firewall(t, cfg)
	if _, err := f.Apply(time.Now(), State{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	ktExpect(t, "untrusted",
		ktCase{c1, c1.to(c1.srv4, 587), ktDropped},
		ktCase{c1, c1.to(c1.srv4, 465), ktDropped},
		ktCase{c1, c1.to(c1.srv4, 143), ktConnected},
		ktCase{c1, c1.to(c1.srv4, 25), ktConnected},
		ktCase{c2, c2.to(c2.srv4, 587), ktConnected},
		ktCase{c2, c2.to(c2.srv6, 587), ktDropped}) // only the IPv4 network is trusted

	// A login over IMAP: trusted for two seconds.
	const ttl = 2 * time.Second
	start := time.Now()
	if err := f.AddTrusted(start, []Trusted{{Addr: c1.addr4, Expires: start.Add(ttl)}}); err != nil {
		t.Fatalf("AddTrusted: %v", err)
	}
	ktExpect(t, "trusted",
		ktCase{c1, c1.to(c1.srv4, 587), ktConnected},
		ktCase{c1, c1.to(c1.srv4, 465), ktConnected},
		ktCase{c1, c1.to(c1.srv6, 587), ktDropped})
	if time.Since(start) >= ttl {
		t.Fatalf("the trusted checks took %v, longer than the %v timeout: the test proves nothing", time.Since(start), ttl)
	}
	// The kernel drops the element at its timeout; poll until it has.
	for {
		r := c1.dial(t, c1.to(c1.srv4, 587))
		if r == ktDropped {
			break
		}
		if time.Since(start) > ttl+5*time.Second {
			t.Fatalf("submission still %s %v after the trusted timeout", r, time.Since(start)-ttl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The drop itself takes ktProbe; the element was gone when it began.
	if el := time.Since(start) - ktProbe; el < ttl-100*time.Millisecond {
		t.Errorf("submission closed again after %v, before the %v timeout", el, ttl)
	}
	ktExpect(t, "after the timeout", ktCase{c1, c1.to(c1.srv4, 143), ktConnected})
}

// TestKernelPrivate: only trusted networks and trusted addresses reach
// the retrieval and submission ports; port 25 stays open to all.
func TestKernelPrivate(t *testing.T) {
	t.Parallel()
	srv, cs := ktNewNet(t, 2)
	srv.listenMail(t)
	c1, c2 := cs[0], cs[1]
	cfg := ktConfig(Private)
	cfg.TrustedNets = []netip.Prefix{c1.net4, c1.net6}
	f := srv.firewall(t, cfg)
	now := time.Now()
	if _, err := f.Apply(now, State{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	ktExpect(t, "private",
		ktCase{c1, c1.to(c1.srv4, 143), ktConnected},
		ktCase{c1, c1.to(c1.srv6, 587), ktConnected},
		ktCase{c1, c1.to(c1.srv4, 993), ktConnected},
		ktCase{c2, c2.to(c2.srv4, 143), ktDropped},
		ktCase{c2, c2.to(c2.srv4, 587), ktDropped},
		ktCase{c2, c2.to(c2.srv6, 993), ktDropped},
		ktCase{c2, c2.to(c2.srv4, 25), ktConnected},
		ktCase{c2, c2.to(c2.srv4, 8080), ktConnected})
	if err := f.AddTrusted(now, []Trusted{{Addr: c2.addr4, Expires: now.Add(time.Hour)}}); err != nil {
		t.Fatalf("AddTrusted: %v", err)
	}
	ktExpect(t, "trusted address",
		ktCase{c2, c2.to(c2.srv4, 143), ktConnected},
		ktCase{c2, c2.to(c2.srv4, 587), ktConnected},
		ktCase{c2, c2.to(c2.srv6, 143), ktDropped})
}

package harness

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestNetNS checks the namespace helpers on their own: addresses, both
// address families, each dial outcome, extra source addresses, programs
// run and started inside a namespace.
func TestNetNS(t *testing.T) {
	nt := NewNet(t, 2)
	srv, c1, c2 := nt.Server, nt.Clients[0], nt.Clients[1]
	l := srv.ListenTCP(t, 143, 587)
	const timeout = 2 * time.Second

	t.Run("addresses", func(t *testing.T) {
		for _, ns := range []*NS{srv, c1, c2} {
			if !nt.Prefix4.Contains(ns.Addr4) || !nt.Prefix6.Contains(ns.Addr6) || !ns.Subnet6.Contains(ns.Addr6) {
				t.Errorf("%s: %s, %s (in %s) outside %s, %s", ns.Name, ns.Addr4, ns.Addr6, ns.Subnet6, nt.Prefix4, nt.Prefix6)
			}
		}
		// Each namespace has its own IPv6 /64.
		if srv.Subnet6 == c1.Subnet6 || c1.Subnet6 == c2.Subnet6 || srv.Subnet6 == c2.Subnet6 {
			t.Errorf("IPv6 /64s not distinct: %s %s %s", srv.Subnet6, c1.Subnet6, c2.Subnet6)
		}
		out := c1.Run(t, "ip", "-br", "addr", "show", "dev", "eth0")
		for _, a := range []netip.Addr{c1.Addr4, c1.Addr6} {
			if !strings.Contains(out, a.String()+"/") {
				t.Errorf("eth0 of %s lacks %s:\n%s", c1.Name, a, out)
			}
		}
		// The root namespace has none of the test's interfaces.
		root, err := os.ReadFile("/proc/net/dev")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(root), "br0") {
			t.Errorf("br0 shows up in the root namespace:\n%s", root)
		}
	})

	t.Run("connect", func(t *testing.T) {
		for _, c := range []*NS{c1, c2} {
			for _, dst := range []netip.Addr{srv.Addr4, srv.Addr6} {
				if r := c.Dial(t, netip.AddrPortFrom(dst, 143), timeout); r != Connected {
					t.Errorf("%s → %s port 143: %s, want %s", c.Name, dst, r, Connected)
				}
			}
		}
		waitAccepted(t, l, 143, 4)
		want := []netip.Addr{c1.Addr4, c1.Addr6, c2.Addr4, c2.Addr6}
		if got := l.Peers(143); !slices.Equal(got, want) {
			t.Errorf("server saw connections from %v, want %v", got, want)
		}
		if n := l.Accepted(587); n != 0 {
			t.Errorf("port 587 accepted %d connections, want 0", n)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, dst := range []netip.Addr{srv.Addr4, srv.Addr6} {
			if r := c1.Dial(t, netip.AddrPortFrom(dst, 4190), timeout); r != Refused {
				t.Errorf("closed port 4190 on %s: %s, want %s", dst, r, Refused)
			}
		}
	})

	t.Run("dropped and rejected", func(t *testing.T) {
		// A firewall in the server namespace only: the SYN to 587 is
		// dropped, the one to 993 answered with ICMP host unreachable.
		nft := `table inet harness_test {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 587 drop
		tcp dport 993 reject with icmpx type host-unreachable
	}
}`
		cmd := srv.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(nft)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f: %v\n%s", err, out)
		}
		l2 := srv.ListenTCP(t, 993)
		for _, dst := range []netip.Addr{srv.Addr4, srv.Addr6} {
			start := time.Now()
			if r := c1.Dial(t, netip.AddrPortFrom(dst, 587), 300*time.Millisecond); r != TimedOut {
				t.Errorf("dropped port 587 on %s: %s, want %s", dst, r, TimedOut)
			}
			if d := time.Since(start); d < 300*time.Millisecond {
				t.Errorf("timed out after %v, before the 300ms timeout", d)
			}
			if r := c1.Dial(t, netip.AddrPortFrom(dst, 993), timeout); r != Unreachable {
				t.Errorf("rejected port 993 on %s: %s, want %s", dst, r, Unreachable)
			}
		}
		if n := l.Accepted(587) + l2.Accepted(993); n != 0 {
			t.Errorf("the server accepted %d connections through the firewall", n)
		}
		// Port 143 is still open, and the root namespace got no table.
		if r := c1.Dial(t, netip.AddrPortFrom(srv.Addr4, 143), timeout); r != Connected {
			t.Errorf("port 143 after the firewall: %s, want %s", r, Connected)
		}
		if out, err := rootExec("nft", "list", "tables"); err == nil && strings.Contains(out, "harness_test") {
			t.Errorf("the test's table shows up in the root namespace:\n%s", out)
		}
	})

	t.Run("extra source address", func(t *testing.T) {
		inside := hostAddr(nt.Prefix4, 200)
		inside6 := hostAddr(c2.Subnet6, 0x77)
		outside := netip.MustParseAddr("192.0.2.10")
		outside6 := netip.MustParseAddr("2001:db8::10")
		want := []netip.Addr{inside, inside6, outside, outside6}
		before := l.Accepted(143)
		for _, a := range want {
			c2.AddAddr(t, a)
			dst := srv.Addr4
			if a.Is6() {
				dst = srv.Addr6
			}
			if r := c2.DialFrom(t, a, netip.AddrPortFrom(dst, 143), timeout); r != Connected {
				t.Errorf("from %s: %s, want %s", a, r, Connected)
			}
		}
		waitAccepted(t, l, 143, before+len(want))
		if got := l.Peers(143)[before:]; !slices.Equal(got, want) {
			t.Errorf("server saw %v, want %v", got, want)
		}
	})

	t.Run("start", func(t *testing.T) {
		p := c1.Start(t, "sleep", "60")
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.PID()))
		if err != nil {
			t.Fatalf("namespace of pid %d: %v", p.PID(), err)
		}
		if want := nsLink(t, c1); link != want {
			t.Errorf("started program is in %s, want %s (%s)", link, want, c1.Name)
		}
		if p.Exited() {
			t.Fatalf("sleep exited early: %s", p.Output())
		}
		err = p.Stop()
		if !p.Exited() {
			t.Fatal("still running after Stop")
		}
		if ee, ok := err.(interface{ Sys() any }); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("Stop: %v, want termination by SIGTERM", err)
		}
		if out := c2.Start(t, "sh", "-c", "echo hello from $(ip -br link show eth0 | cut -c1-4)"); waitExit(out) != nil || !strings.Contains(out.Output(), "hello from eth0") {
			t.Errorf("output of a started program: %q", out.Output())
		}
	})
}

// TestNetNSDialFromThreads checks that dialing in namespaces from many
// goroutines at once leaves every other goroutine in the root namespace:
// the locked threads go back to the scheduler only when restored.
func TestNetNSDialFromThreads(t *testing.T) {
	nt := NewNet(t, 1)
	nt.Server.ListenTCP(t, 110)
	rootLink, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.AddrPortFrom(nt.Server.Addr4, 110)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for range 20 {
		wg.Go(func() {
			for range 10 {
				r, err := nt.Clients[0].Probe(netip.Addr{}, dst, 2*time.Second)
				if err == nil && r != Connected {
					err = fmt.Errorf("dial: %s", r)
				}
				if err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range 10 {
				runtime.LockOSThread()
				link, err := os.Readlink("/proc/thread-self/ns/net")
				runtime.UnlockOSThread()
				if err == nil && link != rootLink {
					err = fmt.Errorf("a goroutine ran in %s, want the root namespace %s", link, rootLink)
				}
				if err != nil {
					errs <- err
				}
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestNetNSCleanup checks that a Net leaves no namespace behind, also
// when one of them was already deleted by hand, and that a failed setup
// removes what it made without touching a namespace it did not make.
func TestNetNSCleanup(t *testing.T) {
	RequireNetNS(t)
	var names []string
	t.Run("net", func(t *testing.T) {
		nt := NewNet(t, 3)
		names = append(names, nt.Server.Name)
		for _, c := range nt.Clients {
			names = append(names, c.Name)
		}
		for _, n := range names {
			if !slices.Contains(netnsList(t), n) {
				t.Fatalf("ip netns list lacks %s while the test runs", n)
			}
		}
		nt.Server.ListenTCP(t, 25)
		nt.Clients[1].Start(t, "sleep", "60")
		// Deleted by hand: the cleanup must not fail on it.
		ipCmd(t, "netns", "delete", nt.Clients[2].Name)
	})
	for _, n := range names {
		if slices.Contains(netnsList(t), n) {
			t.Errorf("namespace %s left behind", n)
		}
	}

	t.Run("name taken", func(t *testing.T) {
		name := fmt.Sprintf("%s%d-%s-taken", nsNamePrefix, os.Getpid(), randomHex(3))
		ipCmd(t, "netns", "add", name)
		t.Cleanup(func() { rootExec("ip", "netns", "delete", name) })
		ft := runFake(t, func(ft *fakeTB) { NewNS(ft, name) })
		if !ft.failed {
			t.Fatal("NewNS of a taken name did not fail")
		}
		ft.cleanup()
		if !slices.Contains(netnsList(t), name) {
			t.Fatal("a failed NewNS deleted a namespace it did not make")
		}
	})

	t.Run("stale", func(t *testing.T) {
		// A namespace named after a process that is gone is swept by the
		// next Net; one named after a live process is not.
		dead := deadPID(t)
		stale := fmt.Sprintf("%s%d-%s-srv", nsNamePrefix, dead, randomHex(3))
		live := fmt.Sprintf("%s%d-%s-srv", nsNamePrefix, os.Getppid(), randomHex(3))
		for _, n := range []string{stale, live} {
			ipCmd(t, "netns", "add", n)
			t.Cleanup(func() { rootExec("ip", "netns", "delete", n) })
		}
		NewNet(t, 0)
		list := netnsList(t)
		if slices.Contains(list, stale) {
			t.Errorf("stale namespace %s (pid %d) not swept", stale, dead)
		}
		if !slices.Contains(list, live) {
			t.Errorf("namespace %s of live pid %d was swept", live, os.Getppid())
		}
	})
}

func TestNetnsOwner(t *testing.T) {
	for name, want := range map[string]int{
		"mg-123-abcdef-srv": 123, "mg-7-00-c12": 7,
		"mg-x-abc-srv": 0, "mg-123": 0, "mg-0-ab-srv": 0, "other-1-ab-srv": 0, "mg--1-ab-srv": 0,
	} {
		pid, ok := netnsOwner(name)
		if ok != (want != 0) || pid != want {
			t.Errorf("netnsOwner(%q) = %d, %v; want %d", name, pid, ok, want)
		}
	}
}

func TestSubnet64(t *testing.T) {
	p := netip.MustParsePrefix("fd99:7::/32")
	for i, want := range map[int]string{0: "fd99:7::/64", 1: "fd99:7:1::/64", 0x1ff: "fd99:7:1ff::/64"} {
		if got := subnet64(p, i); got.String() != want {
			t.Errorf("subnet64(%s, %d) = %s, want %s", p, i, got, want)
		}
	}
}

func TestHostAddr(t *testing.T) {
	for _, tc := range []struct {
		p    string
		i    int
		want string
	}{
		{"10.99.7.0/24", 1, "10.99.7.1"},
		{"10.99.7.0/24", 255, "10.99.7.255"},
		{"10.99.7.0/24", 256, "10.99.8.0"},
		{"fd99:7::/64", 2, "fd99:7::2"},
		{"fd99:7::/64", 0x1ff, "fd99:7::1ff"},
	} {
		if got := hostAddr(netip.MustParsePrefix(tc.p), tc.i); got.String() != tc.want {
			t.Errorf("hostAddr(%s, %d) = %s, want %s", tc.p, tc.i, got, tc.want)
		}
	}
}

// netnsList returns the names `ip netns list` shows.
func netnsList(t testing.TB) []string {
	t.Helper()
	out, err := rootExec("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// nsLink returns what /proc/PID/ns/net reads for a process in ns.
func nsLink(t testing.TB, ns *NS) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(netnsDir+"/"+ns.Name, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

// deadPID returns the pid of a process that has exited.
func deadPID(t testing.TB) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	return p.Pid
}

func waitAccepted(t testing.TB, l *Listener, port uint16, n int) {
	t.Helper()
	err := waitFor(5*time.Second, nil, func() error {
		if got := l.Accepted(port); got < n {
			return fmt.Errorf("%d connections accepted on port %d, want %d", got, port, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitExit(p *Proc) error {
	return waitFor(5*time.Second, nil, func() error {
		if !p.Exited() {
			return fmt.Errorf("pid %d still running", p.PID())
		}
		return nil
	})
}

// rootExec runs a command in the root namespace and returns its output.
func rootExec(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// fakeTB is a testing.TB whose Fatal ends only the goroutine that called
// it and whose cleanups run when the test says, to check what a helper
// leaves behind when it fails half-way.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	failed   bool
	cleanups []func()
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	f.TB.Logf("(fake) "+format, args...)
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

// cleanup runs the cleanups, last first.
func (f *fakeTB) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// runFake runs fn with a fakeTB on its own goroutine and waits for it.
func runFake(t *testing.T, fn func(*fakeTB)) *fakeTB {
	ft := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	return ft
}

package harness

// Network namespaces for the firewall tests: a "server" namespace, where a
// firewall is applied and listeners run, and "client" namespaces that
// connect to it over veth pairs. Nothing here touches the root
// namespace's interfaces or firewall: the veth ends are created directly
// inside their namespaces, and every namespace is deleted when the test
// ends.
//
// Sockets, not processes, are moved into a namespace: Dial and Listen
// switch one locked OS thread into the namespace with setns(2), create
// the socket there and switch back. A socket stays in the namespace it
// was created in for its whole life, whatever thread later uses it, so
// the test keeps ordinary net.Conn and net.Listener values, sees real
// errors (ECONNREFUSED, timeouts) and needs no helper process, no
// re-executed test binary and no output parsing. The thread is handed
// back to the Go scheduler only once it is back in its own namespace;
// when that fails it stays locked and dies with its goroutine (the
// runtime's rule for locked threads), so no other goroutine can ever run
// in the wrong namespace. Since Go 1.10 the runtime never clones new
// threads from a locked one, so the namespace does not leak that way
// either. Programs (nft, Dovecot, mailgate) run with `ip netns exec`.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NetNSPackages maps the binaries the namespace helpers and the firewall
// tests need to the Debian packages that install them.
var NetNSPackages = map[string]string{
	"/usr/sbin/ip":  "iproute2",
	"/usr/sbin/nft": "nftables",
}

// netnsDir is where `ip netns add` keeps its namespaces.
const netnsDir = "/run/netns"

// nsNamePrefix starts the name of every namespace the harness creates:
// "mg-<pid>-<random>-<role>". The pid lets a later run delete the
// namespaces of a test process that died before its cleanups ran.
const nsNamePrefix = "mg-"

// RequireNetNS fails the test unless it runs as root with ip and nft
// installed (installing iproute2 and nftables with apt-get when missing).
func RequireNetNS(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("harness: network namespace tests need root (euid is %d)", os.Geteuid())
	}
	Require(t, NetNSPackages)
}

// Net is a small network made for one test: a server namespace with a
// bridge, and client namespaces each joined to that bridge by a veth
// pair. In IPv4 they share one /24: the server is 10.99.N.1, client i
// (from 0) 10.99.N.(i+2). In IPv6 each has its own /64, so that counting
// or banning IPv6 clients per /64 (as firewalls do) keeps them apart: the
// server is fd99:N::1, client i fd99:N:(i+1)::2, all on the same link.
// Addresses only need to be unique within one Net (each namespace has
// its own network stack), but each Net picks its own N so that logs from
// parallel tests are told apart.
type Net struct {
	Server  *NS
	Clients []*NS
	Prefix4 netip.Prefix // 10.99.N.0/24, every address of the Net
	Prefix6 netip.Prefix // fd99:N::/32, every address of the Net
}

// NS is one network namespace made by the harness.
type NS struct {
	Name string
	// Addr4 and Addr6 are the namespace's addresses on its link to the
	// test network (the bridge for the server, eth0 for a client).
	Addr4, Addr6 netip.Addr
	// Subnet6 is the /64 Addr6 is in.
	Subnet6 netip.Prefix

	net *Net     // nil for a namespace made by NewNS
	fd  *os.File // /run/netns/Name, for setns
}

// NewNet creates a server namespace and clients client namespaces joined
// by veth pairs, with IPv4 and IPv6 addresses and loopback up, and
// deletes them (and so every interface and socket in them) when the test
// ends. Any failure fails the test; whatever was already made is removed
// all the same.
func NewNet(t testing.TB, clients int) *Net {
	t.Helper()
	RequireNetNS(t)
	sweepStaleNetNS(t)
	n := 1 + rand.IntN(254)
	nt := &Net{
		Prefix4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(n), 0}), 24),
		Prefix6: netip.MustParsePrefix(fmt.Sprintf("fd99:%x::/32", n)),
	}
	id := fmt.Sprintf("%s%d-%s", nsNamePrefix, os.Getpid(), randomHex(3))

	srv := NewNS(t, id+"-srv")
	srv.net = nt
	srv.Subnet6 = subnet64(nt.Prefix6, 0)
	srv.Addr4, srv.Addr6 = hostAddr(nt.Prefix4, 1), hostAddr(srv.Subnet6, 1)
	nt.Server = srv
	srv.ip(t, "link", "add", "br0", "type", "bridge")
	srv.ip(t, "addr", "add", prefixOf(srv.Addr4, nt.Prefix4).String(), "dev", "br0")
	srv.ip(t, "addr", "add", prefixOf(srv.Addr6, srv.Subnet6).String(), "dev", "br0", "nodad")
	srv.ip(t, "link", "set", "br0", "up")

	for i := range clients {
		c := NewNS(t, fmt.Sprintf("%s-c%d", id, i+1))
		c.net = nt
		c.Subnet6 = subnet64(nt.Prefix6, i+1)
		c.Addr4, c.Addr6 = hostAddr(nt.Prefix4, i+2), hostAddr(c.Subnet6, 2)
		port := fmt.Sprintf("c%d", i+1)
		// Both ends are created inside their namespaces: no name is ever
		// taken in the root namespace, so parallel tests cannot collide.
		ipCmd(t, "link", "add", port, "netns", srv.Name, "type", "veth", "peer", "name", "eth0", "netns", c.Name)
		srv.ip(t, "link", "set", port, "master", "br0", "up")
		c.ip(t, "addr", "add", prefixOf(c.Addr4, nt.Prefix4).String(), "dev", "eth0")
		c.ip(t, "addr", "add", prefixOf(c.Addr6, c.Subnet6).String(), "dev", "eth0", "nodad")
		c.ip(t, "link", "set", "eth0", "up")
		// The two /64s are on the same link: on-link routes both ways.
		c.ip(t, "-6", "route", "add", srv.Subnet6.String(), "dev", "eth0")
		srv.ip(t, "-6", "route", "add", c.Subnet6.String(), "dev", "br0")
		nt.Clients = append(nt.Clients, c)
	}
	return nt
}

// NewNS creates one network namespace called name with only loopback
// (up), and deletes it when the test ends. Most tests want NewNet.
func NewNS(t testing.TB, name string) *NS {
	t.Helper()
	ns := &NS{Name: name}
	// ip removes what it made when it fails, and a name that already
	// exists is someone else's: the cleanup is only for a namespace we
	// made, and goes in before anything else can fail.
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() { ns.remove(t) })
	f, err := os.Open(filepath.Join(netnsDir, name))
	if err != nil {
		t.Fatalf("harness: open namespace %s: %v", name, err)
	}
	ns.fd = f
	ns.ip(t, "link", "set", "lo", "up")
	// ICMP errors (a firewall's reject) are rate-limited per destination
	// by default, which would turn a test's second reject into a timeout.
	ns.Sysctl(t, "net.ipv4.icmp_ratelimit", "0")
	ns.Sysctl(t, "net.ipv6.icmp.ratelimit", "0")
	return ns
}

// Sysctl sets a network sysctl of the namespace ("net.ipv4.ip_forward").
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	if !strings.HasPrefix(key, "net.") || strings.ContainsAny(key, "/ ") {
		t.Fatalf("harness: sysctl %q: not a network sysctl", key)
	}
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	ns.Run(t, "sh", "-c", `echo "$1" > "$2"`, "sh", value, path)
}

// remove closes the namespace handle and deletes the namespace, if it
// exists, reporting (not failing on) problems so other cleanups still run.
func (ns *NS) remove(t testing.TB) {
	if ns.fd != nil {
		ns.fd.Close()
		ns.fd = nil
	}
	path := filepath.Join(netnsDir, ns.Name)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return
	}
	if out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
		t.Errorf("harness: ip netns delete %s: %v\n%s", ns.Name, err, trimOutput(out))
		return
	}
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("harness: namespace %s still exists after ip netns delete", ns.Name)
	}
}

// sweepStaleNetNS deletes the namespaces left behind by test processes
// that no longer exist (killed by a go test timeout before their cleanups
// ran). Namespaces of running processes, and names the harness did not
// make, are left alone.
func sweepStaleNetNS(t testing.TB) {
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		return // no namespace yet
	}
	for _, e := range entries {
		pid, ok := netnsOwner(e.Name())
		if !ok || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		if out, err := exec.Command("ip", "netns", "delete", e.Name()).CombinedOutput(); err != nil {
			t.Logf("harness: delete stale namespace %s: %v: %s", e.Name(), err, trimOutput(out))
			continue
		}
		t.Logf("harness: deleted stale namespace %s (pid %d is gone)", e.Name(), pid)
	}
}

// netnsOwner returns the pid in a harness namespace name
// "mg-<pid>-<hex>-<role>".
func netnsOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, nsNamePrefix)
	if !ok {
		return 0, false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) != 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// hostAddr returns the i-th address of p.
func hostAddr(p netip.Prefix, i int) netip.Addr {
	a := p.Addr().AsSlice()
	for j := len(a) - 1; j >= 0 && i > 0; j-- {
		sum := int(a[j]) + i
		a[j], i = byte(sum), sum>>8
	}
	addr, _ := netip.AddrFromSlice(a)
	return addr
}

// subnet64 returns the /64 number i of the /32 p: p's third group is i.
func subnet64(p netip.Prefix, i int) netip.Prefix {
	a := p.Addr().As16()
	a[4], a[5] = byte(i>>8), byte(i)
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// prefixOf returns addr with p's length ("10.99.7.2/24").
func prefixOf(addr netip.Addr, p netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(addr, p.Bits())
}

// ipCmd runs ip(8) in the root namespace and fails the test on error.
func ipCmd(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("harness: ip %s: %v\n%s", strings.Join(args, " "), err, trimOutput(out))
	}
}

// ip runs `ip -n NAME args...` and fails the test on error.
func (ns *NS) ip(t testing.TB, args ...string) {
	t.Helper()
	ipCmd(t, append([]string{"-n", ns.Name}, args...)...)
}

// AddAddr gives a client namespace one more address on eth0 (a /32 or
// /128) to use as a source with DialFrom. An address outside Prefix4
// and the client's Subnet6 also gets a route back from the server.
func (ns *NS) AddAddr(t testing.TB, addr netip.Addr) {
	t.Helper()
	if ns.net == nil || ns == ns.net.Server {
		t.Fatalf("harness: AddAddr %s: %s is not a client namespace of a Net", addr, ns.Name)
	}
	host := netip.PrefixFrom(addr, addr.BitLen()).String()
	args := []string{"addr", "add", host, "dev", "eth0"}
	if addr.Is6() {
		args = append(args, "nodad")
	}
	ns.ip(t, args...)
	if !ns.net.Prefix4.Contains(addr) && !ns.Subnet6.Contains(addr) {
		ns.net.Server.ip(t, "route", "add", host, "dev", "br0")
	}
}

// Command returns a command that runs name with args inside the
// namespace (`ip netns exec NAME name args...`; ip execs the program, so
// the process's pid is the program's).
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Exec runs name with args inside the namespace and returns its combined
// output.
func (ns *NS) Exec(name string, args ...string) (string, error) {
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w: %s", ns.Name, name, strings.Join(args, " "), err, trimOutput(out))
	}
	return string(out), nil
}

// Run is Exec that fails the test on error.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Exec(name, args...)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return out
}

// Proc is a long-running program started inside a namespace.
type Proc struct {
	p   *process
	out *lockedBuffer
}

// Start runs name with args inside the namespace until Stop or the end of
// the test, capturing its stdout and stderr.
func (ns *NS) Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	cmd := ns.Command(name, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p, err := startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start %s in %s: %v", name, ns.Name, err)
	}
	pr := &Proc{p: p, out: out}
	t.Cleanup(func() { pr.Stop() })
	// Return once ip has entered the namespace and exec'd the program,
	// so a caller that looks at the process sees the program.
	want, err := ns.inode()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	err = waitFor(5*time.Second, p.done, func() error {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pr.PID()))
		if err != nil {
			return err
		}
		if link != fmt.Sprintf("net:[%d]", want) {
			return fmt.Errorf("pid %d is in %s, not yet in %s", pr.PID(), link, ns.Name)
		}
		return nil
	})
	if err != nil && !pr.Exited() {
		t.Fatalf("harness: start %s in %s: %v", name, ns.Name, err)
	}
	return pr
}

// inode returns the namespace's inode number, as /proc/PID/ns/net shows it.
func (ns *NS) inode() (uint64, error) {
	if ns.fd == nil {
		return 0, fmt.Errorf("namespace %s is closed", ns.Name)
	}
	fi, err := ns.fd.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat namespace %s: %w", ns.Name, err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, nil
}

// PID is the program's process id.
func (p *Proc) PID() int { return p.p.cmd.Process.Pid }

// Exited reports whether the program has ended.
func (p *Proc) Exited() bool { return p.p.exited() }

// Stop sends SIGTERM to the program, kills it if it is still running 5 s
// later, and returns how it ended. Stopping a stopped program returns the
// same result again.
func (p *Proc) Stop() error {
	err, _ := p.p.stop(5 * time.Second)
	return err
}

// Output returns what the program wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// lockedBuffer is a bytes.Buffer safe for a process's writes and the
// test's reads at the same time.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// do runs fn on an OS thread switched into the namespace. fn must create
// its sockets synchronously and must not start goroutines that create
// more (they would run in the root namespace).
func (ns *NS) do(fn func() error) error {
	if ns.fd == nil {
		return fmt.Errorf("namespace %s is closed", ns.Name)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked unless it is back in its own
		// namespace: a locked thread dies with its goroutine.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own namespace: %w", err)
			return
		}
		defer self.Close()
		if err := unix.Setns(int(ns.fd.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext connects from inside the namespace, like net.Dialer's
// method of the same name (network "tcp", "tcp4" or "tcp6"; address an
// IP literal and port). The connection stays in the namespace.
func (ns *NS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return ns.dial(ctx, netip.Addr{}, network, address)
}

func (ns *NS) dial(ctx context.Context, from netip.Addr, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	// A host name would be resolved on another goroutine, outside the
	// namespace's thread; only literals connect in one synchronous call.
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("dial %s in %s: need an IP literal: %w", address, ns.Name, err)
	}
	var d net.Dialer
	if from.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
	}
	var c net.Conn
	err = ns.do(func() error {
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen listens inside the namespace, like net.Listen.
func (ns *NS) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := ns.do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// DialResult is how a TCP connection attempt ended. An ICMP error that
// arrives while connect(2) still holds the socket (easily, over a veth)
// only counts at the next SYN, 1 s later: give a dial that may be
// rejected a timeout above 1 s to tell Unreachable from TimedOut.
type DialResult string

// The outcomes a firewall test tells apart.
const (
	Connected   DialResult = "connected"
	Refused     DialResult = "refused"     // RST or ICMP port unreachable: ECONNREFUSED
	Unreachable DialResult = "unreachable" // ICMP host/net unreachable or prohibited
	TimedOut    DialResult = "timed out"   // no answer: the SYN was dropped
)

// Dial tries a TCP connection from the namespace to to, closes it if it
// was made, and says how it ended. Any other failure fails the test.
func (ns *NS) Dial(t testing.TB, to netip.AddrPort, timeout time.Duration) DialResult {
	t.Helper()
	return ns.DialFrom(t, netip.Addr{}, to, timeout)
}

// DialFrom is Dial from a chosen source address of the namespace (one of
// its own, or one added with AddAddr); an invalid from lets the kernel
// choose.
func (ns *NS) DialFrom(t testing.TB, from netip.Addr, to netip.AddrPort, timeout time.Duration) DialResult {
	t.Helper()
	r, err := ns.Probe(from, to, timeout)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return r
}

// Probe is DialFrom that returns unexpected failures instead of failing
// the test (for use off the test goroutine).
func (ns *NS) Probe(from netip.Addr, to netip.AddrPort, timeout time.Duration) (DialResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := ns.dial(ctx, from, "tcp", to.String())
	if err == nil {
		c.Close()
		return Connected, nil
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused, nil
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return Unreachable, nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT):
		return TimedOut, nil
	}
	return "", fmt.Errorf("dial %s from %s in %s: %w", to, fromString(from), ns.Name, err)
}

func fromString(a netip.Addr) string {
	if !a.IsValid() {
		return "any address"
	}
	return a.String()
}

// Listener accepts TCP connections on several ports inside a namespace
// and holds them open until it is closed, counting them per port.
type Listener struct {
	lns []net.Listener
	wg  sync.WaitGroup

	mu    sync.Mutex
	peers map[uint16][]netip.Addr // remote address of each accepted connection
	conns []net.Conn
}

// ListenTCP listens on every given port of every address of the
// namespace, IPv4 and IPv6 (one dual-stack socket per port), until the
// test ends.
func (ns *NS) ListenTCP(t testing.TB, ports ...uint16) *Listener {
	t.Helper()
	l := &Listener{peers: map[uint16][]netip.Addr{}}
	t.Cleanup(l.Close)
	for _, p := range ports {
		ln, err := ns.Listen("tcp", netip.AddrPortFrom(netip.IPv6Unspecified(), p).String())
		if err != nil {
			t.Fatalf("harness: listen on port %d in %s: %v", p, ns.Name, err)
		}
		l.lns = append(l.lns, ln)
		l.wg.Add(1)
		go l.serve(ln, p)
	}
	return l
}

func (l *Listener) serve(ln net.Listener, port uint16) {
	defer l.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return // closed
		}
		peer := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		l.mu.Lock()
		l.peers[port] = append(l.peers[port], peer)
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
}

// Accepted returns how many connections were accepted on port so far.
func (l *Listener) Accepted(port uint16) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers[port])
}

// Peers returns the source address of each connection accepted on port
// so far, in order (IPv4 clients as IPv4 addresses).
func (l *Listener) Peers(port uint16) []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.peers[port])
}

// Close stops listening and closes every held connection.
func (l *Listener) Close() {
	for _, ln := range l.lns {
		ln.Close()
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NSDPackages maps the NSD binaries the DNSBL tests need to their Debian
// package.
var NSDPackages = map[string]string{
	"/usr/sbin/nsd":           "nsd",
	"/usr/sbin/nsd-control":   "nsd",
	"/usr/sbin/nsd-checkconf": "nsd",
	"/usr/bin/dig":            "bind9-dnsutils",
}

// NSD is a running NSD, the authoritative DNS server of NLnet Labs,
// serving test zones on a loopback port.
type NSD struct {
	Addr string // host:port it answers on (UDP and TCP)

	dir, conf string
	proc      *process
}

// StartNSD writes zones (zone name → zone file, without $ORIGIN: the
// harness adds it) to a temp dir and starts `nsd -d` on 127.0.0.1 and a
// free port, in the foreground, without dropping privileges or chroot. It
// waits until the first zone answers over UDP and stops NSD by PID when
// the test ends (its log is shown if the test failed).
func StartNSD(t testing.TB, zones map[string]string) *NSD {
	t.Helper()
	Require(t, NSDPackages)
	if len(zones) == 0 {
		t.Fatal("harness: StartNSD needs at least one zone")
	}
	dir := TempDir(t, "nsd-")
	n := &NSD{dir: dir, conf: filepath.Join(dir, "nsd.conf")}
	n.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	var zoneConf strings.Builder
	var first string
	for name, body := range zones {
		if first == "" {
			first = name
		}
		file := name + ".zone"
		content := "$ORIGIN " + name + ".\n" + body
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatalf("harness: %v", err)
		}
		fmt.Fprintf(&zoneConf, "zone:\n    name: %s\n    zonefile: %s\n", name, file)
	}
	host, port, _ := net.SplitHostPort(n.Addr)
	conf := fmt.Sprintf(`server:
    ip-address: %s@%s
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: %q
    pidfile: %q
    database: ""
    xfrdfile: %q
    xfrdir: %q
    zonelistfile: %q
    logfile: %q
    server-count: 1
    verbosity: 1
    hide-version: yes
remote-control:
    control-enable: yes
    control-interface: %q
%s`, host, port, dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "xfrd.state"), dir,
		filepath.Join(dir, "zone.list"), filepath.Join(dir, "nsd.log"), filepath.Join(dir, "nsd.ctl"), zoneConf.String())
	if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}
	if out, err := exec.Command("/usr/sbin/nsd-checkconf", n.conf).CombinedOutput(); err != nil {
		t.Fatalf("harness: nsd-checkconf: %v\n%s", err, out)
	}
	p, err := startProcess(exec.Command("/usr/sbin/nsd", "-d", "-c", n.conf))
	if err != nil {
		t.Fatalf("harness: start nsd: %v", err)
	}
	n.proc = p
	t.Cleanup(func() {
		if err, killed := p.stop(5 * time.Second); killed {
			t.Logf("harness: nsd had to be killed (%v)", err)
		}
		if t.Failed() {
			t.Logf("harness: nsd log:\n%s", readFile(filepath.Join(dir, "nsd.log")))
		}
	})
	// Ready when the SOA of a zone comes back (dig exits 0 with an answer).
	if err := waitFor(10*time.Second, p.done, func() error {
		out, err := exec.Command("dig", "+short", "+time=1", "+tries=1", "-p", port, "@"+host, first, "SOA").Output()
		if err != nil || len(strings.TrimSpace(string(out))) == 0 {
			return fmt.Errorf("no SOA for %s yet: %v %s", first, err, out)
		}
		return nil
	}); err != nil {
		t.Fatalf("harness: nsd did not come up: %v\n%s", err, readFile(filepath.Join(dir, "nsd.log")))
	}
	return n
}

// Queries is the number of queries NSD answered since it started
// (nsd-control stats_noreset: num.queries), the SOA probes of StartNSD
// included.
func (n *NSD) Queries(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/sbin/nsd-control", "-c", n.conf, "stats_noreset").CombinedOutput()
	if err != nil {
		t.Fatalf("harness: nsd-control stats_noreset: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "num.queries="); ok {
			q, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatalf("harness: nsd-control: %q: %v", line, err)
			}
			return q
		}
	}
	t.Fatalf("harness: nsd-control stats_noreset has no num.queries:\n%s", out)
	return 0
}

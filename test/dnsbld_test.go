package test

// Issue 12, DNSBL item 5: mailgate as a DNSBL server. A ban made with the
// CLI is listed for dig (UDP and TCP, A and TXT) and for the real Postfix
// postscreen, whose resolver (dnsblog, the libc resolver: only
// /etc/resolv.conf, only port 53) is pointed at mailgate in a mount
// namespace this test makes; a lifted ban is NXDOMAIN; a reload narrows
// who may ask.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"mailgate/test/harness"
)

const (
	dnsblAddr     = "127.0.0.181" // mailgate's DNSBL listener, port 53
	dnsblBanned   = "127.0.0.182"
	dnsblClean    = "127.0.0.183"
	dnsblStranger = "127.0.0.184"
	dnsblInNet    = "127.0.0.187" // inside the banned 127.0.0.186/31
)

// dig asks mailgate's DNSBL listener from src; it returns the status and
// the answer section's data.
func dig(t *testing.T, src, name, qtype string, tcp bool) (status string, answers []string, out string) {
	t.Helper()
	args := []string{"@" + dnsblAddr, "-p", "53", "-b", src, "+time=3", "+tries=1", "+norecurse", name, qtype}
	if tcp {
		args = append(args, "+tcp")
	}
	b, err := exec.Command("dig", args...).CombinedOutput()
	out = string(b)
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dig %v: no status\n%s", args, out)
	}
	inAnswer := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			inAnswer = true
		case line == "" || strings.HasPrefix(line, ";"):
			inAnswer = false
		case inAnswer:
			f := strings.Fields(line)
			answers = append(answers, strings.Join(f[4:], " "))
		}
	}
	return m[1], answers, out
}

func TestDNSBLServer(t *testing.T) {
	harness.Require(t, map[string]string{"/usr/bin/dig": "bind9-dnsutils"})
	if os.Geteuid() != 0 {
		t.Fatal("the DNSBL test listens on port 53 and makes a mount namespace: it needs root")
	}
	dir := t.TempDir()
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, apiKey, fmt.Sprintf(`
[dnsbl_server]
listen = "%s:53"
ttl = "30s"
`, dnsblAddr)))
	mg.MustCLI(t, "ban", "add", "--ip", dnsblBanned, "--for", "1h", "--comment", "customer alice@example.test")
	mg.MustCLI(t, "ban", "add", "--ip", "127.0.0.186/31", "--for", "1h")

	rev := func(a string) string {
		p := strings.Split(a, ".")
		return p[3] + "." + p[2] + "." + p[1] + "." + p[0] + ".bans.mailgate.local."
	}
	for _, tcp := range []bool{false, true} {
		status, ans, out := dig(t, "127.0.0.1", rev(dnsblBanned), "A", tcp)
		if status != "NOERROR" || len(ans) != 1 || ans[0] != "127.0.0.2" {
			t.Fatalf("banned %s (tcp %v): %s %v\n%s", dnsblBanned, tcp, status, ans, out)
		}
		if !strings.Contains(out, "flags: qr aa") || strings.Contains(out, " ra") {
			t.Errorf("not authoritative, or offers recursion:\n%s", out)
		}
	}
	status, ans, out := dig(t, "127.0.0.1", rev(dnsblBanned), "TXT", false)
	if status != "NOERROR" || len(ans) != 1 || !strings.HasPrefix(ans[0], `"mailgate: address ban (manual) of 127.0.0.182/32 until 20`) {
		t.Fatalf("TXT: %s %v\n%s", status, ans, out)
	}
	if strings.Contains(out, "alice") || strings.Contains(out, "customer") {
		t.Errorf("the TXT leaks the ban's comment:\n%s", out)
	}
	if status, ans, out := dig(t, "127.0.0.1", rev(dnsblInNet), "A", false); status != "NOERROR" || len(ans) != 1 {
		t.Fatalf("inside a banned network: %s %v\n%s", status, ans, out)
	}
	status, _, out = dig(t, "127.0.0.1", rev(dnsblClean), "A", false)
	if status != "NXDOMAIN" || !regexp.MustCompile(`(?m)^bans\.mailgate\.local\.\s+30\s+IN\s+SOA\s`).MatchString(out) {
		t.Fatalf("not banned: want NXDOMAIN with the SOA\n%s", out)
	}
	if status, _, out := dig(t, "127.0.0.1", "2.0.0.127.zen.spamhaus.org.", "A", false); status != "REFUSED" {
		t.Fatalf("outside the zone: %s\n%s", status, out)
	}

	t.Run("postscreen", func(t *testing.T) { dnsblPostscreen(t, mg) })

	// Lifted: no longer listed.
	mg.MustCLI(t, "ban", "rm", "--ip", dnsblBanned)
	if status, _, out := dig(t, "127.0.0.1", rev(dnsblBanned), "A", false); status != "NXDOMAIN" {
		t.Fatalf("after ban rm: %s\n%s", status, out)
	}

	// The status counts the answers.
	var st struct {
		DNSBL *struct {
			Zone    string            `json:"zone"`
			Answers map[string]uint64 `json:"answers"`
		} `json:"dnsbl_server"`
	}
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "status", "--json")), &st); err != nil || st.DNSBL == nil {
		t.Fatalf("status --json: %v %+v", err, st)
	}
	if st.DNSBL.Zone != "bans.mailgate.local." || st.DNSBL.Answers["listed"] < 4 || st.DNSBL.Answers["not_listed"] < 2 || st.DNSBL.Answers["refused"] < 1 {
		t.Errorf("status: %+v", *st.DNSBL)
	}
	if out := mg.MustCLI(t, "status"); !strings.Contains(out, "dnsbl server: zone bans.mailgate.local on "+dnsblAddr+":53") {
		t.Errorf("status does not show the DNSBL server:\n%s", out)
	}

	// A reload narrows the allow list: a stranger is REFUSED, loopback
	// 127.0.0.1 still answered.
	b, err := os.ReadFile(mg.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `ttl = "30s"`, "ttl = \"30s\"\nallow_networks = [\"127.0.0.1/32\"]", 1)
	if err := os.WriteFile(mg.ConfigPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	mg.MustCLI(t, "reload")
	for _, tcp := range []bool{false, true} {
		if status, ans, out := dig(t, dnsblStranger, rev(dnsblInNet), "A", tcp); status != "REFUSED" || len(ans) > 0 {
			t.Fatalf("a client outside allow_networks (tcp %v): %s %v\n%s", tcp, status, ans, out)
		}
	}
	if status, _, out := dig(t, "127.0.0.1", rev(dnsblInNet), "A", false); status != "NOERROR" {
		t.Fatalf("an allowed client after the reload: %s\n%s", status, out)
	}
}

// dnsblPostscreen runs Postfix with postscreen asking mailgate's zone,
// its resolver pointed at mailgate in a mount namespace of its own.
func dnsblPostscreen(t *testing.T, mg *harness.MG) {
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users: map[string]string{alice: alicePW}, PolicyURL: mg.DovecotURL(), APIKey: apiKey, Nonce: nonce, AuthListener: true,
	})
	screen := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	pf := startPostfixResolvingAt(t, dnsblAddr, harness.PostfixOptions{
		DovecotSASL: dc.AuthAddr,
		Extra: `postscreen_dnsbl_sites = bans.mailgate.local*3
postscreen_dnsbl_threshold = 3
postscreen_dnsbl_action = enforce
postscreen_greet_action = ignore
postscreen_greet_wait = 3s
postscreen_dnsbl_timeout = 5s
`,
		MasterExtra: screen + ` inet n - n - 1 postscreen
smtpd     pass  -  -  n  -  -  smtpd
dnsblog   unix  -  -  n  -  0  dnsblog
tlsproxy  unix  -  -  n  -  0  tlsproxy
`,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	send := func(src string) *harness.SwaksResult {
		t.Helper()
		r, err := harness.Swaks(ctx, harness.SwaksOptions{Server: screen, Source: netip.MustParseAddr(src),
			From: "someone@remote.test", To: []string{"bob@example.test"}})
		if err != nil {
			t.Fatalf("swaks from %s: %v", src, err)
		}
		return r
	}
	r := send(dnsblBanned)
	if rc := r.Replies("RCPT"); len(rc) != 1 || rc[0].Code != 550 || !strings.Contains(rc[0].Text, "blocked using bans.mailgate.local") {
		t.Errorf("banned %s: RCPT got %v, want postscreen's 550 blocked using bans.mailgate.local\n%s", dnsblBanned, rc, r)
	}
	pf.WaitMailLog(t, "DNSBL rank 3 for ["+dnsblBanned+"]")
	pf.WaitMailLog(t, "blocked using bans.mailgate.local", dnsblBanned)

	r = send(dnsblClean)
	if !r.Accepted() {
		t.Errorf("unbanned %s was not let through:\n%s", dnsblClean, r)
	}
	pf.WaitMailLog(t, "PASS NEW ["+dnsblClean+"]")
	if strings.Contains(pf.MailLog(), "DNSBL rank 3 for ["+dnsblClean+"]") {
		t.Errorf("unbanned %s is listed:\n%s", dnsblClean, pf.MailLog())
	}
}

// TestDNSBLServerKernelAutobans: with the firewall in autoban mode, an
// address the kernel bans for its connection rate is listed as
// 127.0.0.3 (read from the kernel's set), beside a ban of mailgate's own
// (127.0.0.2); a trusted network that the kernel never bans is not.
func TestDNSBLServerKernelAutobans(t *testing.T) {
	harness.Require(t, map[string]string{"/usr/bin/dig": "bind9-dnsutils"})
	net := harness.NewNet(t, 3)
	srv := net.Server
	rate, banned, office := net.Clients[0], net.Clients[1], net.Clients[2]
	srv.ListenTCP(t, 143, 587)
	imap := netip.AddrPortFrom(srv.Addr4, 143)
	dir := harness.TempDir(t, "dnsbl-fw-")
	mg := harness.StartMailgateIn(t, srv.Name, fwConfig(dir, "autoban", "3s", office.Addr4)+`
[dnsbl_server]
listen = "127.0.0.1:5353"
`)
	digIn := func(a netip.Addr, qtype string) string {
		t.Helper()
		b := a.As4()
		name := fmt.Sprintf("%d.%d.%d.%d.bans.mailgate.local.", b[3], b[2], b[1], b[0])
		return srv.Run(t, "dig", "@127.0.0.1", "-p", "5353", "+time=2", "+tries=1", "+norecurse", name, qtype)
	}
	listedAs := func(out string) string {
		if m := regexp.MustCompile(`(?m)\sIN\s+A\s+(127\.0\.0\.\d+)$`).FindStringSubmatch(out); m != nil {
			return m[1]
		}
		return ""
	}
	if out := digIn(rate.Addr4, "A"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Fatalf("listed before any connection:\n%s", out)
	}
	for range 8 {
		rate.Dial(t, imap, 500*time.Millisecond)
		office.Dial(t, imap, 500*time.Millisecond)
	}
	if out := srv.Run(t, "nft", "list", "set", "inet", "mailgate", "autoban_v4"); !strings.Contains(out, rate.Addr4.String()) {
		t.Fatalf("the kernel did not autoban %s:\n%s", rate.Addr4, out)
	}
	mg.MustCLI(t, "ban", "add", "--ip", banned.Addr4.String(), "--for", "1h")

	// The kernel's sets are read every 5 s.
	deadline := time.Now().Add(15 * time.Second)
	var out string
	for {
		out = digIn(rate.Addr4, "A")
		if listedAs(out) == "127.0.0.3" || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if listedAs(out) != "127.0.0.3" {
		t.Fatalf("the kernel's autoban of %s is not listed as 127.0.0.3:\n%s", rate.Addr4, out)
	}
	if out := digIn(rate.Addr4, "TXT"); !strings.Contains(out, `"mailgate: firewall autoban (connection rate) of `+rate.Addr4.String()+`/32 until `) {
		t.Errorf("autoban TXT:\n%s", out)
	}
	if out := digIn(banned.Addr4, "A"); listedAs(out) != "127.0.0.2" {
		t.Errorf("mailgate's own ban beside the firewall: not 127.0.0.2:\n%s", out)
	}
	if out := digIn(office.Addr4, "A"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("a trusted network the kernel never bans is listed:\n%s", out)
	}
	var st struct {
		DNSBL *struct {
			Autobans *int `json:"kernel_autobans"`
		} `json:"dnsbl_server"`
	}
	if err := json.Unmarshal([]byte(mg.MustCLI(t, "status", "--json")), &st); err != nil || st.DNSBL == nil || st.DNSBL.Autobans == nil || *st.DNSBL.Autobans != 1 {
		t.Errorf("status --json: %v %+v", err, st.DNSBL)
	}
}

// startPostfixResolvingAt starts Postfix in a mount namespace of its own
// whose /etc/resolv.conf names only nameserver (port 53: the only port
// the libc resolver asks); the host's file is never touched.
//
// The namespace is made on this goroutine's OS thread, locked for the
// while: Postfix, started from that thread, inherits it. Then the thread
// goes back to the host's mount namespace and working directory and is
// handed back to the scheduler. It must not end instead (which is what
// leaving it locked would do): the harness starts its programs with
// Pdeathsig, which fires when the thread that started them ends — and
// this thread may have started mailgate or Dovecot.
func startPostfixResolvingAt(t *testing.T, nameserver string, opts harness.PostfixOptions) *harness.Postfix {
	t.Helper()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+nameserver+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	host, err := unix.Open("/proc/thread-self/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("opening this thread's mount namespace: %v", err)
	}
	defer func() {
		if err := unix.Setns(host, unix.CLONE_NEWNS); err != nil {
			t.Errorf("back to the host's mount namespace: %v (the thread stays locked and ends with the test)", err)
			return
		}
		if err := unix.Chdir(wd); err != nil {
			t.Errorf("back to %s: %v (the thread stays locked and ends with the test)", wd, err)
			return
		}
		unix.Close(host)
		runtime.UnlockOSThread()
	}()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		t.Fatalf("unshare(CLONE_NEWNS): %v", err)
	}
	// Private first, so that the bind mount never reaches the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("making / private: %v", err)
	}
	if err := unix.Mount(resolv, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting resolv.conf: %v", err)
	}
	return harness.StartPostfix(t, opts)
}

package harness

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDovecotAuthListener checks AuthListener, AuthSocket, Stop and
// Restart with a raw exchange of Dovecot's auth client protocol
// (protocols.md §2.4): a correct password gets OK, a wrong one FAIL, the
// rip reaches Dovecot's log, and after a restart the same address answers
// again.
func TestDovecotAuthListener(t *testing.T) {
	dc := StartDovecot(t, DovecotOptions{
		Users:           map[string]string{"alice@example.test": "alicepw"},
		AuthListener:    true,
		TrustedNetworks: "127.0.0.1/32",
	})
	if dc.AuthAddr == "" {
		t.Fatal("AuthAddr is empty with AuthListener set")
	}
	if !strings.Contains(readFile(dc.Conf), "login_trusted_networks = 127.0.0.1/32") {
		t.Errorf("dovecot.conf lacks login_trusted_networks:\n%s", readFile(dc.Conf))
	}
	check := func(t *testing.T, network, addr string) {
		t.Helper()
		if got := rawAuth(t, network, addr, "alice@example.test", "alicepw", "127.0.0.231"); !strings.HasPrefix(got, "OK\t1\t") {
			t.Errorf("correct password over %s %s: %q, want OK", network, addr, got)
		}
	}
	t.Run("tcp", func(t *testing.T) {
		check(t, "tcp", dc.AuthAddr)
		got := rawAuth(t, "tcp", dc.AuthAddr, "alice@example.test", "wrong", "127.0.0.232")
		if !strings.HasPrefix(got, "FAIL\t1\t") {
			t.Errorf("wrong password: %q, want FAIL", got)
		}
		if err := waitFor(5*time.Second, nil, func() error {
			if !strings.Contains(dc.Log(), "127.0.0.232") {
				return fmt.Errorf("no line with rip 127.0.0.232")
			}
			return nil
		}); err != nil {
			t.Errorf("dovecot log: %v:\n%s", err, dc.Log())
		}
	})
	t.Run("unix", func(t *testing.T) { check(t, "unix", dc.AuthSocket) })
	t.Run("restart", func(t *testing.T) {
		// A connected auth client keeps Dovecot's auth process alive
		// after the master exits; Stop must end it all the same.
		c, r := rawHandshake(t, "tcp", dc.AuthAddr)
		defer c.Close()
		dc.Stop(t)
		if err := dialTCP(dc.AuthAddr); err == nil {
			t.Fatalf("%s still accepts after Stop", dc.AuthAddr)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if line, err := r.ReadString('\n'); err == nil {
			t.Errorf("the auth connection still answers after Stop: %q", line)
		}
		if pids := instancePIDs(dc.instance); len(pids) > 0 {
			t.Errorf("processes of the stopped instance still run: %v", pids)
		}
		dc.Restart(t)
		check(t, "tcp", dc.AuthAddr)
	})
}

// TestDovecotNoAuthListener checks that the default config is unchanged:
// no auth listener, no trusted networks.
func TestDovecotNoAuthListener(t *testing.T) {
	dc := StartDovecot(t, DovecotOptions{Users: map[string]string{"alice@example.test": "alicepw"}})
	conf := readFile(dc.Conf)
	if dc.AuthAddr != "" || strings.Contains(conf, "service auth") || strings.Contains(conf, "login_trusted_networks") {
		t.Errorf("AuthAddr %q; config:\n%s", dc.AuthAddr, conf)
	}
}

// rawAuth runs one PLAIN authentication and returns the server's reply
// line to it.
func rawAuth(t *testing.T, network, addr, user, pass, rip string) string {
	t.Helper()
	c, r := rawHandshake(t, network, addr)
	defer c.Close()
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	fmt.Fprintf(c, "AUTH\t1\tPLAIN\tservice=imap\tnologin\trip=%s\tresp=%s\n", rip, resp)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("reply from %s: %v", addr, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// rawHandshake connects and completes the auth client handshake.
func rawHandshake(t *testing.T, network, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "VERSION\t1\t2\nCPID\t%d\n", 4000000+time.Now().Nanosecond()%1000000)
	r := bufio.NewReader(c)
	var handshake []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake from %s: %v after %q", addr, err, handshake)
		}
		line = strings.TrimSuffix(line, "\n")
		handshake = append(handshake, line)
		if line == "DONE" {
			break
		}
	}
	if !strings.HasPrefix(handshake[0], "VERSION\t1\t") || !contains(handshake, "MECH\tPLAIN\tplaintext") {
		t.Errorf("handshake %q: want VERSION 1 and MECH PLAIN", handshake)
	}
	return c, r
}

// instancePIDs lists the processes whose command line names the Dovecot
// instance.
func instancePIDs(instance string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), instance+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

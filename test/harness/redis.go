package harness

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisPackages maps the Redis binaries the cluster tests need to their
// Debian package.
var RedisPackages = map[string]string{
	"/usr/bin/redis-server": "redis-server",
}

// Redis is a redis-server in a temp dir, listening on a 127.0.0.x
// loopback address and a free port, with a password (requirepass).
// Stop and Start again keep the address, port and data dir, so a test
// can take it away mid-run and bring it back.
type Redis struct {
	Addr     string // host:port
	Password string
	Dir      string // holds the log (and the dump when persistence is on)

	// CAFile is the PEM file of the CA that signed the server's
	// certificate (StartRedisTLS); ServerName is the name in it.
	CAFile     string
	ServerName string

	tls  *tls.Config // the harness's own client, with TLS
	t    testing.TB
	args []string
	log  string
	proc *process
}

// StartRedis starts redis-server on ip (a 127.0.0.x address; "" for
// 127.0.0.1) and a free port, with a password and no persistence. It is
// stopped by PID when the test ends; its log is shown if the test failed.
func StartRedis(t testing.TB, ip string) *Redis {
	t.Helper()
	return startRedis(t, ip, false)
}

// StartRedisTLS is StartRedis speaking only TLS, with a certificate for
// ServerName ("redis.test") signed by a CA made for the test (CAFile).
func StartRedisTLS(t testing.TB, ip string) *Redis {
	t.Helper()
	return startRedis(t, ip, true)
}

func startRedis(t testing.TB, ip string, useTLS bool) *Redis {
	t.Helper()
	Require(t, RedisPackages)
	if ip == "" {
		ip = "127.0.0.1"
	}
	if a := net.ParseIP(ip); a == nil || !a.IsLoopback() || a.To4() == nil {
		t.Fatalf("harness: StartRedis: %q is not a 127.0.0.x address", ip)
	}
	dir := TempDir(t, "redis-")
	port := FreePort(t)
	r := &Redis{
		t:        t,
		Addr:     net.JoinHostPort(ip, strconv.Itoa(port)),
		Password: "rpw-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Dir:      dir,
		log:      filepath.Join(dir, "redis.log"),
	}
	conf := filepath.Join(dir, "redis.conf")
	// The password goes in a file, not on the command line (ps shows it).
	c := fmt.Sprintf("bind %s\nport %d\nprotected-mode yes\nrequirepass %s\ndir %s\nlogfile %s\nsave \"\"\nappendonly no\ndaemonize no\nunixsocket \"\"\n",
		ip, port, r.Password, dir, r.log)
	if useTLS {
		r.ServerName = "redis.test"
		cert, key, pool := testCerts(t, dir, r.ServerName)
		r.CAFile = filepath.Join(dir, "ca.pem")
		r.tls = &tls.Config{RootCAs: pool, ServerName: r.ServerName}
		c = strings.Replace(c, fmt.Sprintf("port %d\n", port), fmt.Sprintf("port 0\ntls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients no\n", port, cert, key, r.CAFile), 1)
	}
	if err := os.WriteFile(conf, []byte(c), 0o600); err != nil {
		t.Fatalf("harness: %v", err)
	}
	r.args = []string{conf}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("harness: redis log:\n%s", trimOutput([]byte(readFile(r.log))))
		}
	})
	r.Start()
	return r
}

// Start (re)starts the server on its address and port and waits until it
// answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	if r.proc != nil {
		r.t.Fatalf("harness: redis already running")
	}
	cmd := exec.Command("/usr/bin/redis-server", r.args...)
	cmd.Dir = r.Dir
	proc, err := startProcess(cmd)
	if err != nil {
		r.t.Fatalf("harness: start redis: %v", err)
	}
	r.proc = proc
	if err := waitFor(10*time.Second, proc.done, func() error {
		out, err := r.command("PING")
		if err != nil {
			return err
		}
		if out != "+PONG" {
			return fmt.Errorf("PING: %q", out)
		}
		return nil
	}); err != nil {
		r.t.Fatalf("harness: redis did not come up: %v\n%s", err, trimOutput([]byte(readFile(r.log))))
	}
}

// Stop stops the server by PID (SIGTERM, then SIGKILL). It does nothing
// when it is not running.
func (r *Redis) Stop() {
	if r.proc == nil {
		return
	}
	if err, killed := r.proc.stop(5 * time.Second); killed {
		r.t.Logf("harness: redis had to be killed (%v)", err)
	}
	r.proc = nil
}

// Do runs one command (any bytes in the arguments) after AUTH
// and returns the reply's first line as RESP ("+OK", ":3", "$5"...) or,
// for a bulk string, its text.
func (r *Redis) Do(args ...string) string {
	r.t.Helper()
	out, err := r.command(args...)
	if err != nil {
		r.t.Fatalf("harness: redis %v: %v", args, err)
	}
	return out
}

// command sends AUTH and one command in RESP and reads the reply of the
// command (one line; a bulk string's text; an array's elements joined by
// newlines, one level deep).
func (r *Redis) command(args ...string) (string, error) {
	return r.CommandAs("", r.Password, args...)
}

// CommandAs runs one command after AUTH as user ("" = the default user)
// and returns its reply as Do does, or the error Redis answered.
func (r *Redis) CommandAs(user, password string, args ...string) (string, error) {
	var c net.Conn
	var err error
	if r.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", r.Addr, r.tls)
	} else {
		c, err = net.DialTimeout("tcp", r.Addr, 2*time.Second)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	w := bufio.NewWriter(c)
	send := func(args ...string) {
		fmt.Fprintf(w, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(w, "$%d\r\n%s\r\n", len(a), a)
		}
	}
	if user != "" {
		send("AUTH", user, password)
	} else {
		send("AUTH", password)
	}
	send(args...)
	if err := w.Flush(); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line := func() (string, error) {
		l, err := br.ReadString('\n')
		return strings.TrimRight(l, "\r\n"), err
	}
	if l, err := line(); err != nil || l != "+OK" {
		return "", fmt.Errorf("AUTH: %q %v", l, err)
	}
	var read func() (string, error)
	read = func() (string, error) {
		l, err := line()
		if err != nil {
			return "", err
		}
		switch {
		case strings.HasPrefix(l, "-"):
			return "", fmt.Errorf("%s", l)
		case strings.HasPrefix(l, "$"):
			n, _ := strconv.Atoi(l[1:])
			if n < 0 {
				return "", nil
			}
			buf := make([]byte, n+2)
			if _, err := io.ReadFull(br, buf); err != nil {
				return "", err
			}
			return string(buf[:n]), nil
		case strings.HasPrefix(l, "*"):
			n, _ := strconv.Atoi(l[1:])
			var out []string
			for range n {
				s, err := read()
				if err != nil {
					return "", err
				}
				out = append(out, s)
			}
			return strings.Join(out, "\n"), nil
		}
		return l, nil
	}
	return read()
}

// testCerts writes ca.pem, and redis.pem and redis-key.pem for name
// signed by it, into dir; it returns the server's files and the CA pool.
func testCerts(t testing.TB, dir, name string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "harness test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) string {
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	write("ca.pem", "CERTIFICATE", caDER)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("redis.pem", "CERTIFICATE", der), write("redis-key.pem", "EC PRIVATE KEY", keyDER), pool
}

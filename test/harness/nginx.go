package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NginxPackages maps each nginx file the tests need to the Debian package
// that installs it: the nginx binary and the dynamic mail module (Debian 12
// ships it apart, in libnginx-mod-mail; nginx-core and nginx-full depend on
// it, plain nginx does not).
var NginxPackages = map[string]string{
	"/usr/sbin/nginx": "nginx",
	NginxMailModule:   "libnginx-mod-mail",
}

// NginxMailModule is the dynamic module that gives nginx its mail proxy.
const NginxMailModule = "/usr/lib/nginx/modules/ngx_mail_module.so"

// NginxOptions configures StartNginx.
type NginxOptions struct {
	// AuthURL is the auth_http URL without its scheme, host:port/path
	// (e.g. "127.0.0.1:4002/auth"): mailgate's nginx door. Required.
	AuthURL string
	// AuthHeader and AuthSecret, when both are set, become
	// `auth_http_header AuthHeader "AuthSecret"` (the shared secret).
	AuthHeader, AuthSecret string
	// AuthTimeout is auth_http_timeout; 0 means 10 s.
	AuthTimeout time.Duration
	// Extra is appended verbatim inside the mail { } block (after the
	// harness's directives, before the servers).
	Extra string
}

// Nginx is a running nginx mail proxy in a temp dir, listening on
// 127.0.0.1 only (clients may connect from any 127.0.0.0/8 source
// address; nginx passes that address to auth_http as Client-IP).
type Nginx struct {
	Dir  string // prefix (-p): nginx.conf, logs/error.log, nginx.pid
	Conf string // nginx.conf
	// IMAPAddr, POP3Addr: IMAP and POP3 proxies (imap_auth/pop3_auth
	// plain: LOGIN, AUTHENTICATE PLAIN/LOGIN, USER/PASS).
	IMAPAddr, POP3Addr string
	// SMTPAddr: SMTP proxy with `smtp_auth login plain` and `xclient on`:
	// clients must AUTH; the backend gets XCLIENT ADDR= LOGIN= NAME=.
	SMTPAddr string
	// SMTPNoAuthAddr: SMTP proxy with `smtp_auth none` and `xclient on`:
	// nginx asks auth_http with Auth-Method: none after RCPT TO.
	SMTPNoAuthAddr string

	errorLog string
	proc     *process
}

// StartNginx installs nginx and its mail module if missing (Require),
// writes an nginx.conf like protocols.md §5.2 into a temp dir with free
// ports for IMAP, POP3, SMTP with AUTH and SMTP without AUTH, runs nginx
// in the foreground (`nginx -p DIR -c nginx.conf -e logs/error.log -g
// 'daemon off;'`) and waits until every port accepts. It stops nginx by
// the PID it started when the test ends, and logs nginx's error log (at
// level info: one line per login and per refusal) if the test failed.
func StartNginx(t testing.TB, opts NginxOptions) *Nginx {
	t.Helper()
	Require(t, NginxPackages)
	if opts.AuthURL == "" {
		t.Fatalf("harness: NginxOptions.AuthURL is required")
	}
	if strings.Contains(opts.AuthURL, "://") {
		t.Fatalf("harness: NginxOptions.AuthURL %q: give host:port/path, without a scheme", opts.AuthURL)
	}
	if opts.AuthTimeout == 0 {
		opts.AuthTimeout = 10 * time.Second
	}
	dir := TempDir(t, "ngx-")
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatalf("harness: %v", err)
	}
	n := &Nginx{
		Dir:      dir,
		Conf:     filepath.Join(dir, "nginx.conf"),
		errorLog: filepath.Join(dir, "logs", "error.log"),
	}
	ports := freePorts(t, 4)
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	n.IMAPAddr, n.POP3Addr, n.SMTPAddr, n.SMTPNoAuthAddr = addr(ports[0]), addr(ports[1]), addr(ports[2]), addr(ports[3])
	if err := os.WriteFile(n.Conf, []byte(n.config(opts)), 0o644); err != nil {
		t.Fatalf("harness: %v", err)
	}

	stderrPath := filepath.Join(dir, "stderr.log")
	out, err := os.Create(stderrPath)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	defer out.Close()
	// -e: nginx opens its compiled-in error log before it reads the
	// config; point that at the temp dir too.
	cmd := exec.Command("/usr/sbin/nginx", "-p", dir+"/", "-c", n.Conf, "-e", n.errorLog, "-g", "daemon off;")
	cmd.Stdout = out
	cmd.Stderr = out
	t.Cleanup(func() {
		n.stop(t)
		if t.Failed() {
			t.Logf("harness: nginx stdout/stderr:\n%s", readFile(stderrPath))
			t.Logf("harness: nginx error log (%s):\n%s", n.errorLog, readFile(n.errorLog))
		}
	})
	start := time.Now()
	n.proc, err = startProcess(cmd)
	if err != nil {
		t.Fatalf("harness: start nginx: %v", err)
	}
	err = waitFor(15*time.Second, n.proc.done, func() error {
		for _, a := range []string{n.IMAPAddr, n.POP3Addr, n.SMTPAddr, n.SMTPNoAuthAddr} {
			if err := dialTCP(a); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("harness: nginx did not start listening: %v\nstderr:\n%s\nerror log:\n%s",
			err, readFile(stderrPath), readFile(n.errorLog))
	}
	t.Logf("harness: nginx pid %d listening on imap %s pop3 %s smtp %s smtp-noauth %s in %v",
		cmd.Process.Pid, n.IMAPAddr, n.POP3Addr, n.SMTPAddr, n.SMTPNoAuthAddr, time.Since(start).Round(time.Millisecond))
	return n
}

// config renders nginx.conf.
func (n *Nginx) config(opts NginxOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by mailgate's test harness.
load_module %s;
worker_processes 1;
pid %s;
error_log %s info;
events {
    worker_connections 256;
}
mail {
    server_name mx.example.test;
    auth_http %s;
    auth_http_timeout %dms;
    proxy_pass_error_message on;
    imap_auth plain login;
    pop3_auth plain;
    smtp_auth login plain;
`, NginxMailModule, filepath.Join(n.Dir, "nginx.pid"), n.errorLog, opts.AuthURL, opts.AuthTimeout.Milliseconds())
	if opts.AuthHeader != "" && opts.AuthSecret != "" {
		fmt.Fprintf(&b, "    auth_http_header %s %s;\n", opts.AuthHeader, strconv.Quote(opts.AuthSecret))
	}
	if opts.Extra != "" {
		b.WriteString(opts.Extra)
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, `    server {
        listen %s;
        protocol imap;
    }
    server {
        listen %s;
        protocol pop3;
    }
    server {
        listen %s;
        protocol smtp;
        xclient on;
    }
    server {
        listen %s;
        protocol smtp;
        smtp_auth none;
        xclient on;
    }
}
`, n.IMAPAddr, n.POP3Addr, n.SMTPAddr, n.SMTPNoAuthAddr)
	return b.String()
}

// stop sends SIGTERM (nginx's fast shutdown) to the master the harness
// started, waits up to 5 s, then kills it.
func (n *Nginx) stop(t testing.TB) {
	if n.proc == nil {
		return
	}
	pidFile := filepath.Join(n.Dir, "nginx.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid != n.proc.cmd.Process.Pid {
			t.Logf("harness: %s says pid %d, but the harness started pid %d; stopping the latter",
				pidFile, pid, n.proc.cmd.Process.Pid)
		}
	}
	start := time.Now()
	_, killed := n.proc.stop(5 * time.Second)
	t.Logf("harness: nginx stopped in %v", time.Since(start).Round(time.Millisecond))
	if killed {
		t.Logf("harness: nginx ignored SIGTERM for 5 s and was killed")
	}
	n.proc = nil
}

// ErrorLog returns nginx's error log so far (level info: it has a
// "client logged in" or "client login failed" line per login).
func (n *Nginx) ErrorLog() string {
	return readFile(n.errorLog)
}

// freePorts returns n distinct free ports on 127.0.0.1, holding each
// listener until all are found so that none is handed out twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("harness: find a free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// IMAPReply is the tagged reply to an IMAP command.
type IMAPReply struct {
	Status string // "OK", "NO" or "BAD"
	Text   string // the rest of the line, with any [CODE]
	// Untagged are the untagged lines ("* ...") that came before it.
	Untagged []string
}

func (r IMAPReply) String() string { return r.Status + " " + r.Text }

// IMAPSession is a raw IMAP client connection that survives failed
// logins, for what IMAPLogin cannot show: behind nginx, an auth_http
// failure with Auth-Wait keeps the session open and the client may try
// again; without Auth-Wait nginx closes it after the NO.
type IMAPSession struct {
	// Greeting is the server's first line.
	Greeting string

	conn  net.Conn
	r     *bufio.Reader
	tag   int
	close func()
}

// DialIMAP connects from src to the IMAP server at addr and reads its
// greeting. The connection gets ctx's deadline (DefaultLoginTimeout when
// ctx has none). Close it with Close.
func DialIMAP(ctx context.Context, src netip.Addr, addr string) (*IMAPSession, error) {
	conn, closeConn, err := dial(ctx, src, addr)
	if err != nil {
		return nil, fmt.Errorf("imap: %w", err)
	}
	s := &IMAPSession{conn: conn, r: bufio.NewReaderSize(conn, 4096), close: closeConn}
	line, err := s.readLine()
	if err != nil {
		closeConn()
		return nil, fmt.Errorf("imap greeting from %s: %w", addr, ctxErr(ctx, err))
	}
	if !strings.HasPrefix(line, "* OK") {
		closeConn()
		return nil, fmt.Errorf("imap greeting from %s: %q", addr, line)
	}
	s.Greeting = line
	return s, nil
}

// Login sends LOGIN with user and pass as quoted strings and returns the
// tagged reply. A refusal is a reply with Status "NO", not an error; an
// error means the connection failed or closed (io.EOF when nginx hung up).
func (s *IMAPSession) Login(user, pass string) (IMAPReply, error) {
	return s.Command("LOGIN " + imapQuote(user) + " " + imapQuote(pass))
}

// Logout sends LOGOUT and returns the tagged reply.
func (s *IMAPSession) Logout() (IMAPReply, error) {
	return s.Command("LOGOUT")
}

// Command sends one command line (without tag and CRLF) and reads up to
// its tagged reply.
func (s *IMAPSession) Command(cmd string) (IMAPReply, error) {
	s.tag++
	tag := "a" + strconv.Itoa(s.tag)
	verb, _, _ := strings.Cut(cmd, " ")
	if _, err := fmt.Fprintf(s.conn, "%s %s\r\n", tag, cmd); err != nil {
		return IMAPReply{}, fmt.Errorf("imap %s: %w", verb, err)
	}
	var untagged []string
	for {
		line, err := s.readLine()
		if err != nil {
			return IMAPReply{Untagged: untagged}, fmt.Errorf("imap %s: %w", verb, err)
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			status, text, _ := strings.Cut(rest, " ")
			return IMAPReply{Status: strings.ToUpper(status), Text: text, Untagged: untagged}, nil
		}
		untagged = append(untagged, line)
	}
}

// readLine reads one CRLF-terminated line of at most 64 KiB.
func (s *IMAPSession) readLine() (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := s.r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > 64<<10 {
			return "", fmt.Errorf("line longer than 64 KiB")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// Close closes the connection.
func (s *IMAPSession) Close() error {
	s.close()
	return nil
}

// imapQuote makes s an IMAP quoted string.
func imapQuote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

package passcheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests run Dovecot's auth protocol against an in-process fake
// server on real loopback (or unix) sockets, for what the real Dovecot
// will not do on demand: protocol errors, dropped connections, temporary
// failures, replies out of order or too late.

const fakeHandshake = "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t4242\nCUID\t7\nCOOKIE\t0123456789abcdef\nDONE\n"

// fakeAuth is a fake Dovecot auth service.
type fakeAuth struct {
	t         *testing.T
	ln        net.Listener
	handshake string
	// handle is called for each line a client sends after its VERSION and
	// CPID lines, on the connection's reading goroutine.
	handle func(fc *fakeConn, line string)

	mu    sync.Mutex
	conns []*fakeConn
	lines []string // every line after the handshake, all connections
	hello []string // VERSION and CPID lines
}

// fakeConn is one client connection to the fake.
type fakeConn struct {
	nc net.Conn
	mu sync.Mutex
}

// send writes s as it is.
func (fc *fakeConn) send(s string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.nc.Write([]byte(s))
}

func startFake(t *testing.T, network string, handle func(fc *fakeConn, line string)) *fakeAuth {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "auth-client")
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAuth{t: t, ln: ln, handshake: fakeHandshake, handle: handle}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.nc.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			fc := &fakeConn{nc: nc}
			f.mu.Lock()
			f.conns = append(f.conns, fc)
			hs := f.handshake
			f.mu.Unlock()
			wg.Go(func() { f.serve(fc, hs) })
		}
	})
	return f
}

func (f *fakeAuth) addr() string { return f.ln.Addr().String() }

func (f *fakeAuth) serve(fc *fakeConn, handshake string) {
	defer fc.nc.Close()
	fc.send(handshake)
	br := bufio.NewReader(fc.nc)
	for n := 0; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		f.mu.Lock()
		if n < 2 {
			f.hello = append(f.hello, line)
			f.mu.Unlock()
			continue
		}
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		if f.handle != nil {
			f.handle(fc, line)
		}
	}
}

// connCount is the number of connections accepted so far.
func (f *fakeAuth) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// received returns the lines received so far.
func (f *fakeAuth) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

// waitLine waits until a received line satisfies match.
func (f *fakeAuth) waitLine(match func(string) bool) string {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range f.received() {
			if match(l) {
				return l
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("the fake never received the line; got %q", f.received())
	return ""
}

// authLine is a parsed AUTH request.
type authLine struct {
	id       string
	mech     string
	params   map[string]string
	login    string
	password string
}

func parseAuth(line string) (authLine, bool) {
	f := strings.Split(line, "\t")
	if len(f) < 3 || f[0] != "AUTH" {
		return authLine{}, false
	}
	a := authLine{id: f[1], mech: f[2], params: map[string]string{}}
	for _, p := range f[3:] {
		k, v, _ := strings.Cut(p, "=")
		a.params[k] = tabUnescape([]byte(v))
	}
	raw, err := base64.StdEncoding.DecodeString(a.params["resp"])
	if err != nil {
		return a, true
	}
	parts := bytes.Split(raw, []byte{0})
	if len(parts) == 3 {
		a.login, a.password = string(parts[1]), string(parts[2])
	}
	return a, true
}

// byPassword answers every AUTH: OK for password "right", FAIL for
// anything else, FAIL temp for "Temp-Secret-77".
func byPassword(fc *fakeConn, line string) {
	a, ok := parseAuth(line)
	if !ok {
		return
	}
	switch a.password {
	case "right":
		fc.send("OK\t" + a.id + "\tuser=" + a.login + "\n")
	case "Temp-Secret-77":
		fc.send("FAIL\t" + a.id + "\tuser=" + a.login + "\ttemp\treason=Temporary\x01tproblem\n")
	default:
		fc.send("FAIL\t" + a.id + "\tuser=" + a.login + "\n")
	}
}

// logBuffer is a debug-level slog logger writing into a buffer.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// noSecret fails the test if text holds the password or the base64 forms
// of it that could appear on the wire.
func noSecret(t *testing.T, what, text string, r *Request) {
	t.Helper()
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + r.Login + "\x00" + r.Password))
	for _, secret := range []string{r.Password, resp, base64.StdEncoding.EncodeToString([]byte(r.Password))} {
		if len(secret) >= 4 && strings.Contains(text, secret) {
			t.Errorf("%s contains a secret (%q): %s", what, secret, text)
		}
	}
}

var fakeClient = netip.MustParseAddr("198.51.100.20")

func req(password string) *Request {
	return &Request{Service: "smtp", Login: "alice@example.test", Password: password, Client: fakeClient}
}

func TestFakeAnswers(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			f := startFake(t, network, byPassword)
			var logs logBuffer
			d := NewDovecot(f.addr(), DovecotOptions{Timeout: 5 * time.Second}, logs.logger())
			defer d.Close()
			ctx := context.Background()
			for _, tc := range []struct {
				password string
				ok       bool
				temp     bool
			}{{"right", true, false}, {"wrong-secret-1", false, false}, {"Temp-Secret-77", false, true}, {"right", true, false}} {
				r := req(tc.password)
				ok, err := d.Verify(ctx, r)
				if ok != tc.ok || (err != nil) != tc.temp || (tc.temp && !errors.Is(err, ErrTemporary)) {
					t.Errorf("password %q: %v, %v; want %v, temp %v", tc.password, ok, err, tc.ok, tc.temp)
				}
				if err != nil {
					noSecret(t, "error", err.Error(), r)
					if !strings.Contains(err.Error(), "Temporary?problem") {
						t.Errorf("temporary failure %q lacks Dovecot's reason", err)
					}
				}
			}
			if n := f.connCount(); n != 1 {
				t.Errorf("%d connections for 4 requests, want 1", n)
			}
			st := d.Stats()
			if st.Connects != 1 || st.OK != 2 || st.Wrong != 1 || st.Errors != 1 || !st.Connected || st.InFlight != 0 {
				t.Errorf("stats %+v", st)
			}
			f.mu.Lock()
			hello := f.hello
			f.mu.Unlock()
			if len(hello) != 2 || hello[0] != "VERSION\t1\t2" || hello[1] != "CPID\t"+strconv.Itoa(os.Getpid()) {
				t.Errorf("handshake lines %q", hello)
			}
			noSecret(t, "log", logs.String(), req("wrong-secret-1"))
		})
	}
}

// TestFakeRequestFields checks every field of the AUTH line as the server
// receives it.
func TestFakeRequestFields(t *testing.T) {
	f := startFake(t, "tcp", byPassword)
	d := NewDovecot(f.addr(), DovecotOptions{}, nil)
	defer d.Close()
	r := &Request{
		Service:    "smtp",
		Login:      "o\"brien \\ x\tü@example.test",
		Password:   "right",
		Client:     netip.MustParseAddr("::ffff:203.0.113.9"),
		ClientPort: 50123,
		Local:      netip.MustParseAddr("2001:db8::25"),
		TLS:        true,
		Session:    "sess\tion\n1",
	}
	if ok, err := d.Verify(context.Background(), r); !ok || err != nil {
		t.Fatalf("Verify: %v, %v", ok, err)
	}
	got, _ := parseAuth(f.received()[0])
	want := map[string]string{
		"service": "smtp", "nologin": "", "secured": "", "lip": "2001:db8::25", "rip": "203.0.113.9",
		"rport": "50123", "session": "sess\tion\n1",
	}
	for k, v := range want {
		if gv, ok := got.params[k]; !ok || gv != v {
			t.Errorf("field %s = %q (present %v), want %q", k, gv, ok, v)
		}
	}
	if got.mech != "PLAIN" || got.login != r.Login || got.password != r.Password || got.id != "1" {
		t.Errorf("AUTH %+v", got)
	}
	// Without TLS, local address, port or session those fields are absent.
	if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
		t.Fatalf("Verify: %v, %v", ok, err)
	}
	got, _ = parseAuth(f.received()[1])
	for _, k := range []string{"secured", "lip", "rport", "session"} {
		if _, ok := got.params[k]; ok {
			t.Errorf("field %s sent for a request without it", k)
		}
	}
	if got.id != "2" {
		t.Errorf("second request has id %s, want 2", got.id)
	}
}

// TestFakeOutOfOrder: the server answers a later request first; each
// request gets its own answer.
func TestFakeOutOfOrder(t *testing.T) {
	var (
		mu   sync.Mutex
		held []string
	)
	f := startFake(t, "tcp", func(fc *fakeConn, line string) {
		a, _ := parseAuth(line)
		mu.Lock()
		defer mu.Unlock()
		held = append(held, a.id+":"+a.password)
		if len(held) < 3 {
			return
		}
		for i := len(held) - 1; i >= 0; i-- { // reverse order
			id, pw, _ := strings.Cut(held[i], ":")
			if pw == "right" {
				fc.send("OK\t" + id + "\n")
			} else {
				fc.send("FAIL\t" + id + "\n")
			}
		}
	})
	d := NewDovecot(f.addr(), DovecotOptions{Timeout: 5 * time.Second}, nil)
	defer d.Close()
	var wg sync.WaitGroup
	for i, pw := range []string{"right", "wrong", "right"} {
		wg.Go(func() {
			ok, err := d.Verify(context.Background(), req(pw))
			if ok != (pw == "right") || err != nil {
				t.Errorf("request %d (%s): %v, %v", i, pw, ok, err)
			}
		})
	}
	wg.Wait()
}

// TestFakeBrokenReplies: an overlong line, garbage, an echo of the request,
// a bad id and a CONT are errors (never "wrong password"), the first four
// close the connection, and the next Verify reconnects.
func TestFakeBrokenReplies(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reply     func(a authLine, line string) string
		errPart   string
		reconnect bool
	}{
		{"oversize line", func(a authLine, _ string) string {
			return "OK\t" + a.id + "\tuser=" + strings.Repeat("x", MaxLineLen) + "\n"
		}, "line longer than", true},
		{"garbage", func(authLine, string) string { return "\x00\xff garbage \x1b[31m\n" }, "unexpected command", true},
		{"echo", func(_ authLine, line string) string { return line + "\n" }, `unexpected command "AUTH"`, true},
		{"echo resp as id", func(a authLine, _ string) string { return "FAIL\t" + a.params["resp"] + "\n" }, "bad id", true},
		{"cont", func(a authLine, _ string) string { return "CONT\t" + a.id + "\t\n" }, "unexpected CONT", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, "tcp", func(fc *fakeConn, line string) {
				a, ok := parseAuth(line)
				if !ok {
					return // CANCEL
				}
				if a.password == "right" {
					fc.send("OK\t" + a.id + "\n")
					return
				}
				fc.send(tc.reply(a, line))
			})
			var logs logBuffer
			d := NewDovecot(f.addr(), DovecotOptions{Timeout: 5 * time.Second}, logs.logger())
			defer d.Close()
			r := req("Secret-Password-42")
			ok, err := d.Verify(context.Background(), r)
			if ok || err == nil || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.errPart) {
				t.Fatalf("Verify = %v, %v; want a protocol error with %q", ok, err, tc.errPart)
			}
			noSecret(t, "error", err.Error(), r)
			if tc.reconnect {
				waitFor(t, func() bool { return !d.Stats().Connected })
			} else {
				f.waitLine(func(l string) bool { return l == "CANCEL\t1" })
			}
			if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
				t.Fatalf("Verify after the error: %v, %v", ok, err)
			}
			want := 1
			if tc.reconnect {
				want = 2
			}
			if n := f.connCount(); n != want {
				t.Errorf("%d connections, want %d", n, want)
			}
			noSecret(t, "log", logs.String(), r)
		})
	}
}

// TestFakeDroppedMidRequest: the server reads the request and closes the
// connection; the request fails (it may have reached the server, so it is
// not retried), and the next one reconnects.
func TestFakeDroppedMidRequest(t *testing.T) {
	f := startFake(t, "tcp", func(fc *fakeConn, line string) {
		a, _ := parseAuth(line)
		if a.password == "right" {
			fc.send("OK\t" + a.id + "\n")
			return
		}
		fc.nc.Close()
	})
	d := NewDovecot(f.addr(), DovecotOptions{Timeout: 5 * time.Second}, nil)
	defer d.Close()
	r := req("Dropped-Secret-7")
	ok, err := d.Verify(context.Background(), r)
	if ok || err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("Verify = %v, %v; want a lost connection error", ok, err)
	}
	noSecret(t, "error", err.Error(), r)
	if n := len(f.received()); n != 1 {
		t.Errorf("the server got %d requests, want 1 (no retry of a sent request)", n)
	}
	if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
		t.Fatalf("Verify after the drop: %v, %v", ok, err)
	}
	if n := f.connCount(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

// TestFakeIdleClose: the server closes an idle connection; the next Verify
// reconnects and succeeds, with no error.
func TestFakeIdleClose(t *testing.T) {
	f := startFake(t, "tcp", byPassword)
	d := NewDovecot(f.addr(), DovecotOptions{Timeout: 5 * time.Second}, nil)
	defer d.Close()
	for i := range 3 {
		if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
			t.Fatalf("Verify %d: %v, %v", i, ok, err)
		}
		f.mu.Lock()
		f.conns[len(f.conns)-1].nc.Close()
		f.mu.Unlock()
		waitFor(t, func() bool { return !d.Stats().Connected })
	}
	if n := f.connCount(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

// TestFakeTimeout: a request the server does not answer times out with an
// error and is cancelled; the server's late answer to it is dropped and
// does not reach the next request on the same connection.
func TestFakeTimeout(t *testing.T) {
	var (
		mu   sync.Mutex
		late []string // ids not answered yet
	)
	f := startFake(t, "tcp", func(fc *fakeConn, line string) {
		a, ok := parseAuth(line)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if a.password == "slow" {
			late = append(late, a.id)
			return
		}
		// Answer the late ones first: OK, which the next request must
		// not take for its own.
		for _, id := range late {
			fc.send("OK\t" + id + "\n")
		}
		late = nil
		fc.send("FAIL\t" + a.id + "\n")
	})
	d := NewDovecot(f.addr(), DovecotOptions{Timeout: 300 * time.Millisecond}, nil)
	defer d.Close()
	start := time.Now()
	ok, err := d.Verify(context.Background(), req("slow"))
	if ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify = %v, %v; want a timeout", ok, err)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("timed out after %v, want about 300ms", el)
	}
	f.waitLine(func(l string) bool { return l == "CANCEL\t1" })
	if ok, err := d.Verify(context.Background(), req("wrong")); ok || err != nil {
		t.Fatalf("Verify after the timeout = %v, %v; want false (the late OK belongs to the abandoned request)", ok, err)
	}
	if n := f.connCount(); n != 1 {
		t.Errorf("%d connections, want 1: a timeout keeps the connection", n)
	}
	if st := d.Stats(); st.InFlight != 0 {
		t.Errorf("stats %+v: nothing should be in flight", st)
	}
}

// TestFakeCancel: cancelling the context abandons the wait at once.
func TestFakeCancel(t *testing.T) {
	f := startFake(t, "tcp", func(fc *fakeConn, line string) {
		if a, _ := parseAuth(line); a.password == "right" {
			fc.send("OK\t" + a.id + "\n")
		}
	})
	d := NewDovecot(f.addr(), DovecotOptions{Timeout: 10 * time.Second}, nil)
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		f.waitLine(func(l string) bool { return strings.HasPrefix(l, "AUTH\t") })
		cancel()
	}()
	start := time.Now()
	ok, err := d.Verify(ctx, req("never-answered"))
	if ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify = %v, %v; want canceled", ok, err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("cancel took %v", el)
	}
	// A request whose context is already done is not sent, and does not
	// disturb the connection.
	if ok, err := d.Verify(ctx, req("right")); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a done context = %v, %v; want canceled", ok, err)
	}
	f.waitLine(func(l string) bool { return l == "CANCEL\t1" })
	if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
		t.Fatalf("Verify after the cancelled ones: %v, %v", ok, err)
	}
	if got := f.received(); len(got) != 3 || !strings.HasPrefix(got[2], "AUTH\t") {
		t.Errorf("the server got %q; want the first request, its CANCEL and the last request", got)
	}
	if st := d.Stats(); !st.Connected || st.Connects != 1 {
		t.Errorf("stats %+v: the connection should be unharmed", st)
	}
}

// TestFakeHandshake: servers that are not a usable Dovecot auth service.
func TestFakeHandshake(t *testing.T) {
	for _, tc := range []struct {
		name, handshake, errPart string
	}{
		{"version 2", "VERSION\t2\t0\nMECH\tPLAIN\nDONE\n", "version"},
		{"no PLAIN", "VERSION\t1\t2\nMECH\tLOGIN\tplaintext\nMECH\tCRAM-MD5\nDONE\n", "does not offer mechanism PLAIN"},
		{"imap server", "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", "did not start with VERSION"},
		{"closes", "VERSION\t1\t2\nMECH\tPLAIN\n", "EOF"},
		{"oversize", "VERSION\t1\t2\nMECH\t" + strings.Repeat("P", MaxLineLen) + "\nDONE\n", "line longer than"},
		{"endless", "VERSION\t1\t2\n" + strings.Repeat("MECH\tX\n", handshakeLines) + "DONE\n", "before DONE"},
		{"hangs", "VERSION\t1\t2\nMECH\tPLAIN\n", "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFake(t, "tcp", byPassword)
			f.mu.Lock()
			f.handshake = tc.handshake
			f.mu.Unlock()
			if tc.name == "closes" {
				go func() {
					for f.connCount() == 0 {
						time.Sleep(time.Millisecond)
					}
					time.Sleep(50 * time.Millisecond)
					f.mu.Lock()
					f.conns[0].nc.Close()
					f.mu.Unlock()
				}()
			}
			d := NewDovecot(f.addr(), DovecotOptions{Timeout: 500 * time.Millisecond}, nil)
			defer d.Close()
			ok, err := d.Verify(context.Background(), req("right"))
			if ok || err == nil || !strings.Contains(err.Error(), tc.errPart) {
				t.Fatalf("Verify = %v, %v; want an error with %q", ok, err, tc.errPart)
			}
			if n := len(f.received()); n != 0 {
				t.Errorf("an AUTH was sent after a failed handshake: %q", f.received())
			}
		})
	}
}

// TestFakeClose: Close fails the requests in flight and every later one.
func TestFakeClose(t *testing.T) {
	f := startFake(t, "tcp", func(*fakeConn, string) {})
	d := NewDovecot(f.addr(), DovecotOptions{Timeout: 10 * time.Second}, nil)
	errc := make(chan error, 1)
	go func() {
		_, err := d.Verify(context.Background(), req("pending"))
		errc <- err
	}()
	f.waitLine(func(l string) bool { return strings.HasPrefix(l, "AUTH\t") })
	d.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Errorf("in-flight Verify after Close: %v, want ErrClosed", err)
	}
	if ok, err := d.Verify(context.Background(), req("right")); ok || !errors.Is(err, ErrClosed) {
		t.Errorf("Verify after Close: %v, %v; want ErrClosed", ok, err)
	}
}

// TestFakeUnsendable: credentials that cannot be sent are "wrong" without
// a word to the server; a request without a service, or with another
// mechanism, is an error.
func TestFakeUnsendable(t *testing.T) {
	f := startFake(t, "tcp", byPassword)
	d := NewDovecot(f.addr(), DovecotOptions{}, nil)
	defer d.Close()
	for name, r := range map[string]*Request{
		"NUL in password": {Service: "smtp", Login: "alice", Password: "ri\x00ght"},
		"NUL in login":    {Service: "smtp", Login: "al\x00ice", Password: "right"},
		"empty password":  {Service: "smtp", Login: "alice"},
		"long password":   {Service: "smtp", Login: "alice", Password: strings.Repeat("p", MaxPasswordLen+1)},
	} {
		if ok, err := d.Verify(context.Background(), r); ok || err != nil {
			t.Errorf("%s: %v, %v; want false, nil", name, ok, err)
		}
	}
	if ok, err := d.Verify(context.Background(), &Request{Login: "alice", Password: "right"}); ok || err == nil {
		t.Errorf("no service: %v, %v; want an error", ok, err)
	}
	dl := NewDovecot(f.addr(), DovecotOptions{Mechanism: "LOGIN"}, nil)
	defer dl.Close()
	if ok, err := dl.Verify(context.Background(), req("right")); ok || err == nil {
		t.Errorf("mechanism LOGIN: %v, %v; want an error", ok, err)
	}
	if n := f.connCount(); n != 0 {
		t.Errorf("%d connections for requests that cannot be sent", n)
	}
}

// TestFakeDown: nothing listens; Verify fails at once with an error.
func TestFakeDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := NewDovecot(addr, DovecotOptions{}, nil)
	defer d.Close()
	r := req("Down-Secret-9")
	ok, err := d.Verify(context.Background(), r)
	if ok || err == nil || !strings.Contains(err.Error(), "connect") {
		t.Fatalf("Verify = %v, %v; want a connect error", ok, err)
	}
	noSecret(t, "error", err.Error(), r)
	if st := d.Stats(); st.Errors != 1 || st.Connected {
		t.Errorf("stats %+v", st)
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestFakeIdleAndAge: an idle connection is closed after IdleTimeout, and
// one older than MaxConnAge takes no new requests but finishes the one it
// has before it is closed.
func TestFakeIdleAndAge(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		f := startFake(t, "tcp", byPassword)
		d := NewDovecot(f.addr(), DovecotOptions{IdleTimeout: 50 * time.Millisecond}, nil)
		defer d.Close()
		for i := range 2 {
			if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
				t.Fatalf("Verify %d: %v, %v", i, ok, err)
			}
			waitFor(t, func() bool { return !d.Stats().Connected })
		}
		if n := f.connCount(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
	t.Run("age", func(t *testing.T) {
		release := make(chan struct{})
		f := startFake(t, "tcp", func(fc *fakeConn, line string) {
			a, ok := parseAuth(line)
			if !ok {
				return
			}
			if a.password == "slow" {
				go func() {
					<-release
					fc.send("OK\t" + a.id + "\n")
				}()
				return
			}
			byPassword(fc, line)
		})
		d := NewDovecot(f.addr(), DovecotOptions{MaxConnAge: 100 * time.Millisecond}, nil)
		defer d.Close()
		slow := make(chan error, 1)
		go func() {
			ok, err := d.Verify(context.Background(), req("slow"))
			if err == nil && !ok {
				err = errors.New("slow request answered false")
			}
			slow <- err
		}()
		f.waitLine(func(l string) bool { return strings.HasPrefix(l, "AUTH\t") })
		time.Sleep(150 * time.Millisecond)
		if ok, err := d.Verify(context.Background(), req("right")); !ok || err != nil {
			t.Fatalf("Verify on a new connection: %v, %v", ok, err)
		}
		if n := f.connCount(); n != 2 {
			t.Errorf("%d connections, want 2: the old one must take no new request", n)
		}
		close(release)
		if err := <-slow; err != nil {
			t.Errorf("the request on the retired connection: %v", err)
		}
		// The retired connection is closed once its last reply is in.
		f.mu.Lock()
		old := f.conns[0].nc
		f.mu.Unlock()
		old.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := old.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the retired connection is still open: %v", err)
		}
	})
}

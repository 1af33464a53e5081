package postfix

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"mailgate/internal/policy"
)

// ask sends raw and reads one policy answer; closed is set when the
// server closed the connection instead.
func ask(t *testing.T, c net.Conn, br *bufio.Reader, raw string) (answer string, closed bool) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		if isClosed(err) {
			return "", true
		}
		t.Fatalf("write: %v", err)
	}
	var b strings.Builder
	for {
		l, err := br.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			if b.Len() == 0 && isClosed(err) {
				return "", true
			}
			t.Fatalf("read after %q: %v", b.String(), err)
		}
		if l == "\n" {
			return b.String(), false
		}
	}
}

// isClosed: the server closed the connection. When it closes with bytes
// of the client still unread, the kernel resets the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TestProtocolLimits checks the limits on a real connection: a request
// at each limit is answered, one over it closes the connection without
// an answer.
func TestProtocolLimits(t *testing.T) {
	ev := newEnv(t, DefaultConfig(), newEngine(t, nil, nil))
	ev.permits.add("127.0.0.91/32", "alice@example.test")
	_, addr := startServer(t, ev.h, testLogger(&ev.diags), "policy")
	relay := map[string]string{"policy_context": "relaycheck"}

	line := func(n int) string { // one attribute line of n bytes, newline excluded
		return "x_filler=" + strings.Repeat("y", n-len("x_filler=")) + "\n"
	}
	attrs := func(n int) string { // the capture plus filler up to n attributes
		return strings.TrimSuffix(pfRequest(relay), "\n") + strings.Repeat("z=1\n", n-29) + "\n"
	}
	big := func(n int) string { // the capture plus filler lines up to n bytes
		r := strings.TrimSuffix(pfRequest(relay), "\n")
		for len(r)+4001 < n {
			r += line(4000)
		}
		return r + line(n-len(r)-2) + "\n"
	}
	if got := strings.Count(capture, "\n") - 1; got != 29 {
		t.Fatalf("the capture has %d attributes, want 29", got)
	}
	for i, tc := range []struct {
		name, raw string
		ok        bool
	}{
		{"line at the limit", strings.Replace(pfRequest(relay), "stress=\n", line(MaxLineLen), 1), true},
		{"line over the limit", strings.Replace(pfRequest(relay), "stress=\n", line(MaxLineLen+1), 1), false},
		{"line at the limit, CRLF", strings.Replace(pfRequest(relay), "stress=\n", strings.TrimSuffix(line(MaxLineLen), "\n")+"\r\n", 1), true},
		{"attributes at the limit", attrs(MaxAttributes), true},
		{"too many attributes", attrs(MaxAttributes + 1), false},
		{"request at the limit", big(MaxRequestLen), true},
		{"request over the limit", big(MaxRequestLen + 1), false},
		{"CRLF everywhere", strings.ReplaceAll(pfRequest(relay), "\n", "\r\n"), true},
		{"a very long line", strings.Replace(pfRequest(relay), "stress=\n", line(1<<20), 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "request at the limit" && len(tc.raw) != MaxRequestLen || tc.name == "request over the limit" && len(tc.raw) != MaxRequestLen+1 {
				t.Fatalf("test request of %d bytes", len(tc.raw))
			}
			c := dialFrom(t, fmt.Sprintf("127.0.1.%d", i+1), addr)
			br := bufio.NewReader(c)
			got, closed := ask(t, c, br, tc.raw)
			if tc.ok {
				if closed || got != "action=OK\n\n" {
					t.Fatalf("got %q, closed %v; want action=OK", got, closed)
				}
				// The connection is still good.
				if got, closed := ask(t, c, br, pfRequest(relay)); closed || got != "action=OK\n\n" {
					t.Fatalf("next request: got %q, closed %v", got, closed)
				}
				return
			}
			if !closed {
				t.Fatalf("got %q; want the connection closed without an answer", got)
			}
		})
	}
	if d := ev.diags.String(); strings.Count(d, "protocol violation") != 4 {
		t.Errorf("want 4 protocol violation warnings:\n%s", d)
	}
}

// TestReadRequestBufferSizes: ReadRequest gives the same result with any
// buffer size, and io.EOF only between requests.
func TestReadRequestBufferSizes(t *testing.T) {
	long := strings.Replace(pfRequest(map[string]string{"sasl_username": "alice@example.test"}), "stress=\n", "stress="+strings.Repeat("s", MaxLineLen-7)+"\n", 1)
	input := capture + long + strings.Replace(capture, "stress=\n", "stress="+strings.Repeat("s", MaxLineLen-6)+"\n", 1)
	for _, size := range []int{16, 64, 1000, readBufSize, 1 << 16} {
		br := bufio.NewReaderSize(strings.NewReader(input), size)
		var r Request
		if err := ReadRequest(br, &r); err != nil || r.ClientAddress != "127.0.0.91" || r.Attributes != 29 || r.SASLUsername != "" {
			t.Fatalf("size %d: request 1: %+v, %v", size, r, err)
		}
		if err := ReadRequest(br, &r); err != nil || r.SASLUsername != "alice@example.test" || r.ProtocolState != "RCPT" || r.Instance != "178f.6b02554c.a8191.0" {
			t.Fatalf("size %d: request 2: %+v, %v", size, r, err)
		}
		if err := ReadRequest(br, &r); !errors.Is(err, ErrLineTooLong) {
			t.Fatalf("size %d: request 3: %v, want ErrLineTooLong", size, err)
		}
	}
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"request=smtpd_access_policy\n", io.ErrUnexpectedEOF},
		{"request=smtpd_access_policy", io.ErrUnexpectedEOF},
		{"request=smtpd_access_policy\nclient_address\n", ErrMalformed},
		{"request=smtpd_access_policy\nclient_address", io.ErrUnexpectedEOF},
		{"request=smtpd_access_policy\nrequest=smtpd_access_policy\n\n", ErrMalformed},
		{"x=1\nx=2\n\n", nil}, // an attribute mailgate ignores may repeat
	} {
		var r Request
		if err := ReadRequest(bufio.NewReader(strings.NewReader(tc.in)), &r); !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, err, tc.want)
		}
	}
}

// TestConcurrentClients: many smtpd processes, each with its own
// connection and a different mix of requests, get their own answers.
func TestConcurrentClients(t *testing.T) {
	ev := newEnv(t, DefaultConfig(), newEngine(t, []string{"bob@example.test smtp deny 10.0.0.0/8"}, nil))
	for i := range 50 {
		ev.permits.add(fmt.Sprintf("10.1.0.%d/32", i), fmt.Sprintf("user%d@example.test", i))
	}
	_, addr := startServer(t, ev.h, testLogger(&ev.diags), "policy")
	const clients, requests = 50, 100
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			br := bufio.NewReader(c)
			for j := range requests {
				var raw, want string
				switch (i + j) % 4 {
				case 0: // relay check with a permit
					raw = pfRequest(map[string]string{"client_address": fmt.Sprintf("10.1.0.%d", i), "policy_context": "relaycheck"})
					want = "action=OK\n\n"
				case 1: // relay check without one
					raw = pfRequest(map[string]string{"client_address": fmt.Sprintf("10.2.0.%d", i), "policy_context": "relaycheck"})
					want = "action=DUNNO\n\n"
				case 2: // refused sender
					raw = pfRequest(map[string]string{"client_address": fmt.Sprintf("10.3.0.%d", i), "sasl_username": "bob@example.test"})
					want = fmt.Sprintf("action=REJECT This account may not use SMTP (sending mail) from your address (10.3.0.%d).\n\n", i)
				default: // allowed sender
					raw = pfRequest(map[string]string{"client_address": fmt.Sprintf("10.3.0.%d", i), "sasl_username": "alice@example.test", "protocol_state": "RCPT"})
					want = "action=DUNNO\n\n"
				}
				if _, err := io.WriteString(c, raw); err != nil {
					errs <- err
					return
				}
				var got strings.Builder
				for {
					l, err := br.ReadString('\n')
					got.WriteString(l)
					if err != nil {
						errs <- fmt.Errorf("client %d request %d: %w", i, j, err)
						return
					}
					if l == "\n" {
						break
					}
				}
				if got.String() != want {
					errs <- fmt.Errorf("client %d request %d: got %q, want %q", i, j, got.String(), want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Every OK, every REJECT and every authenticated DUNNO at RCPT has its line.
	if n, want := strings.Count(ev.decisions.String(), "\n"), clients*requests*3/4; n != want {
		t.Errorf("%d decision lines, want %d", n, want)
	}
}

// TestPipelining: answers to requests sent back to back come in order.
func TestPipelining(t *testing.T) {
	ev := newEnv(t, DefaultConfig(), newEngine(t, nil, nil))
	ev.permits.add("127.0.0.91/32", "alice@example.test")
	_, addr := startServer(t, ev.h, nil, "policy")
	c := dialFrom(t, "127.0.2.1", addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var raw, want strings.Builder
	for i := range 200 {
		if i%2 == 0 {
			raw.WriteString(pfRequest(map[string]string{"policy_context": "relaycheck"}))
			want.WriteString("action=OK\n\n")
		} else {
			raw.WriteString(capture)
			want.WriteString("action=DUNNO\n\n")
		}
	}
	go io.WriteString(c, raw.String())
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatalf("answers out of order or wrong:\n%s", got)
	}
}

// TestMaxConns: beyond MaxConns a connection is accepted and closed at
// once, with a warning; when one ends there is room again.
// With MaxConns open, a new connection is served and the longest idle
// one is closed (finding 5 of the review: a local process holding idle
// connections made Postfix's own connections fail, and Postfix then
// skipped the account rules and sending limits).
func TestMaxConnsEvictsLongestIdle(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConns = 2
	ev := newEnv(t, cfg, newEngine(t, nil, nil))
	_, addr := startServer(t, ev.h, testLogger(&ev.diags), "policy")
	var conns []net.Conn
	var readers []*bufio.Reader
	for i := range 2 {
		c := dialFrom(t, fmt.Sprintf("127.0.3.%d", i+1), addr)
		br := bufio.NewReader(c)
		if got, closed := ask(t, c, br, capture); closed || got != "action=DUNNO\n\n" {
			t.Fatalf("connection %d: %q closed %v", i+1, got, closed)
		}
		conns, readers = append(conns, c), append(readers, br)
		time.Sleep(5 * time.Millisecond) // the first is the longest idle
	}
	c := dialFrom(t, "127.0.3.3", addr)
	if got, closed := ask(t, c, bufio.NewReader(c), capture); closed || got != "action=DUNNO\n\n" {
		t.Fatalf("third connection: %q closed %v; want it served", got, closed)
	}
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readers[0].ReadByte(); err == nil {
		t.Error("the longest idle connection is still open")
	}
	if got, closed := ask(t, conns[1], readers[1], capture); closed || got != "action=DUNNO\n\n" {
		t.Errorf("the second connection: %q closed %v; want it kept", got, closed)
	}
	if !strings.Contains(ev.diags.String(), "closing the longest idle one") || !strings.Contains(ev.diags.String(), "max=2") {
		t.Errorf("no warning:\n%s", ev.diags.String())
	}
}

// A connection answering a request is never closed to make room; when
// all are, the new one is refused.
func TestMaxConnsAllBusy(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxConns = 2
	ev := newEnv(t, cfg, newEngine(t, nil, nil))
	srv := NewServer(ev.h, nil)
	var open []net.Conn
	for range 2 {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		st := srv.track(a)
		if st == nil {
			t.Fatal("refused below the cap")
		}
		st.busy()
		open = append(open, a)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if srv.track(a) != nil {
		t.Fatal("a new connection was taken while every connection is busy")
	}
	if len(srv.conns) != 2 || srv.conns[open[0]] == nil || srv.conns[open[1]] == nil {
		t.Errorf("a busy connection was closed: %d left", len(srv.conns))
	}
	if !strings.Contains(ev.diags.String(), "all busy") {
		t.Errorf("no warning:\n%s", ev.diags.String())
	}
}

// pipeListener hands out in-memory connections, so that the idle timeout
// can be tested with synctest's clock.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestIdleTimeout: a connection without a request for IdleTimeout is
// closed; a request in time keeps it open.
func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.IdleTimeout = 5 * time.Minute
		var diags syncBuffer
		h := NewHandler(cfg, newEngine(t, nil, nil), nil, nil, nil, testLogger(&diags))
		s := NewServer(h, testLogger(&diags))
		ln := newPipeListener()
		done := make(chan error, 1)
		go func() { done <- s.ServePolicy(ln, false) }()

		c := ln.dial()
		br := bufio.NewReader(c)
		for range 3 {
			time.Sleep(4 * time.Minute)
			go io.WriteString(c, capture)
			if l, err := br.ReadString('\n'); l != "action=DUNNO\n" || err != nil {
				t.Fatalf("%q, %v", l, err)
			}
			br.ReadString('\n')
		}
		time.Sleep(5*time.Minute - time.Nanosecond)
		synctest.Wait()
		c.SetReadDeadline(time.Now()) // poll: still open?
		if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("before the idle timeout: %v, want the connection open", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		c.SetReadDeadline(time.Now()) // closed by now, not later
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the idle timeout: %v, want EOF", err)
		}
		if !strings.Contains(diags.String(), "closing an idle connection") {
			t.Errorf("no debug line:\n%s", diags.String())
		}

		// Close ends a waiting connection at once, and the serve loop.
		c2 := ln.dial()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("after Close: %v, want EOF", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("ServePolicy: %v", err)
		}
		if err := s.ServePolicy(newPipeListener(), false); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ServePolicy after Close: %v", err)
		}
	})
}

// TestCloseFinishesAnswers: Close lets a connection finish the request
// it is reading and answer it.
func TestCloseFinishesAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &slowEngine{Engine: newEngine(t, nil, nil), delay: time.Second}
		h := NewHandler(DefaultConfig(), e, nil, nil, nil, nil)
		s := NewServer(h, nil)
		ln := newPipeListener()
		go s.ServePolicy(ln, false)
		c := ln.dial()
		go io.WriteString(c, pfRequest(map[string]string{"sasl_username": "alice@example.test"}))
		synctest.Wait() // the engine is deciding
		closed := make(chan error)
		go func() { closed <- s.Close() }()
		got, err := io.ReadAll(c)
		if string(got) != "action=DUNNO\n\n" || err != nil {
			t.Fatalf("got %q, %v", got, err)
		}
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

// slowEngine takes its time to decide (a stand-in for a busy engine).
type slowEngine struct {
	Engine
	delay time.Duration
}

func (e *slowEngine) Decide(a *policy.Attempt, now time.Time, tr *policy.Trace) policy.Verdict {
	time.Sleep(e.delay)
	return e.Engine.Decide(a, now, tr)
}

// TestUnixSocket: Postfix may reach the policy server over a unix socket
// (check_policy_service unix:private/mailgate).
func TestUnixSocket(t *testing.T) {
	ev := newEnv(t, DefaultConfig(), newEngine(t, []string{"bob@example.test smtp deny 127.0.0.0/8"}, nil))
	path := filepath.Join(t.TempDir(), "policy.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(ev.h, testLogger(&ev.diags))
	done := make(chan error, 1)
	go func() { done <- s.ServePolicy(ln, false) }()
	defer func() {
		s.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	got, closed := ask(t, c, br, pfRequest(map[string]string{"sasl_username": "bob@example.test"}))
	if closed || got != "action=REJECT This account may not use SMTP (sending mail) from your address (127.0.0.91).\n\n" {
		t.Fatalf("got %q closed %v", got, closed)
	}
	if _, closed := ask(t, c, br, "no equals sign\n\n"); !closed {
		t.Fatal("violation answered")
	}
	if d := ev.diags.String(); !strings.Contains(d, "remote=unix") {
		t.Errorf("diagnostics:\n%s", d)
	}
}

// TestServeTCPTableUnknownMap: a tcp_table listener needs a known map.
func TestServeTCPTableUnknownMap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := NewServer(NewHandler(DefaultConfig(), newEngine(t, nil, nil), nil, nil, nil, nil), nil)
	if err := s.ServeTCPTable(ln, "clientmap"); !errors.Is(err, ErrUnknownMap) {
		t.Fatalf("got %v, want ErrUnknownMap", err)
	}
}

// TestPipeliningAfterIdle: answers to pipelined requests that fill the
// write buffer get a fresh write deadline, not the one of an answer sent
// long before.
func TestPipeliningAfterIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHandler(DefaultConfig(), newEngine(t, nil, nil), nil, nil, nil, nil)
		s := NewServer(h, nil)
		ln := newPipeListener()
		go s.ServePolicy(ln, false)
		defer s.Close()
		c := ln.dial()
		br := bufio.NewReader(c)
		go io.WriteString(c, capture)
		if got, err := br.ReadString('\n'); got != "action=DUNNO\n" || err != nil {
			t.Fatalf("%q %v", got, err)
		}
		br.ReadString('\n')
		time.Sleep(DefaultIdleTimeout - 10*time.Second)
		const n = 300 // 4200 bytes of answers: several buffers full
		go io.WriteString(c, strings.Repeat(capture, n))
		for i := range n {
			if got, err := br.ReadString('\n'); got != "action=DUNNO\n" || err != nil {
				t.Fatalf("answer %d: %q %v", i+1, got, err)
			}
			br.ReadString('\n')
		}
	})
}

// TestPipelinedThenBroken: answers to the requests before a broken one
// are delivered before the connection closes.
func TestPipelinedThenBroken(t *testing.T) {
	ev := newEnv(t, DefaultConfig(), newEngine(t, nil, nil))
	_, addr := startServer(t, ev.h, nil, "policy")
	c := dialFrom(t, "127.0.2.2", addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, capture+capture+"broken\n\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if string(got) != "action=DUNNO\n\naction=DUNNO\n\n" || err != nil {
		t.Fatalf("got %q, %v", got, err)
	}

	// tcp_table: the 400 of a pipelined bad request is delivered too.
	_, taddr := startServer(t, ev.h, nil, "tcp:client")
	c = dialFrom(t, "127.0.2.2", taddr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "get unknown\nput x\nget unknown\n"); err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(c)
	if string(got) != "500 not-found\n400 malformed%20request\n" || err != nil {
		t.Fatalf("tcp_table: got %q, %v", got, err)
	}
}

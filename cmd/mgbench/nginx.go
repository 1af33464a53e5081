package main

// "mgbench nginx" plays nginx's mail proxy asking mailgate's auth_http
// door (protocols.md §2): every request on a new TCP connection, GET
// HTTP/1.0, the headers of the captures in §2.3, and the reply read until
// the server closes. "mgbench dovecot-auth" is a benchmark fake of
// Dovecot's auth service that says yes to every password, so the door can
// be loaded without Dovecot's own cost.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// nginxTarget is a parsed --url for the nginx command.
type nginxTarget struct {
	dial netip.AddrPort // always loopback
	host string         // Host header: the URL's host without port, as nginx sends it
	uri  string         // request-target
}

// parseNginxTarget parses an auth_http URL (http only, loopback only).
// nginx's auth_http takes the URL with or without "http://"; so does this.
func parseNginxTarget(raw string) (nginxTarget, error) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nginxTarget{}, fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nginxTarget{}, fmt.Errorf("url %q: scheme %q not supported (nginx's auth_http speaks only http)", raw, u.Scheme)
	}
	if u.Host == "" {
		return nginxTarget{}, fmt.Errorf("url %q: no host", raw)
	}
	if u.Fragment != "" || u.User != nil {
		return nginxTarget{}, fmt.Errorf("url %q: no fragment or user info allowed", raw)
	}
	addr, err := loopbackAddr(u.Hostname())
	if err != nil {
		return nginxTarget{}, fmt.Errorf("url %q: host %q: %w", raw, u.Hostname(), err)
	}
	port := uint16(80)
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nginxTarget{}, fmt.Errorf("url %q: bad port %q", raw, p)
		}
		port = uint16(n)
	}
	t := nginxTarget{dial: netip.AddrPortFrom(addr, port), host: u.Hostname(), uri: u.EscapedPath()}
	if strings.Contains(t.host, ":") {
		t.host = "[" + t.host + "]"
	}
	if t.uri == "" {
		t.uri = "/"
	}
	if u.RawQuery != "" {
		t.uri += "?" + u.RawQuery
	}
	return t, nil
}

// nginxConfig is what the nginx command was asked to do.
type nginxConfig struct {
	target       nginxTarget
	secretHeader string
	secret       string
	protocol     string // imap, pop3, smtp
	password     string // as the client typed it; escaped as nginx does
	concurrency  int
	duration     time.Duration
	warmup       time.Duration
	timeout      time.Duration
	logins       uint32
	addresses    uint32
}

func (c *nginxConfig) validate() error {
	switch {
	case c.concurrency < 1 || c.concurrency > maxConcurrency:
		return fmt.Errorf("concurrency %d: must be 1..%d", c.concurrency, maxConcurrency)
	case c.duration <= 0 || c.duration > maxDuration:
		return fmt.Errorf("duration %s: must be > 0 and ≤ %s", c.duration, maxDuration)
	case c.warmup < 0 || c.warmup > maxWarmup:
		return fmt.Errorf("warmup %s: must be 0..%s", c.warmup, maxWarmup)
	case c.timeout <= 0 || c.timeout > time.Minute:
		return fmt.Errorf("timeout %s: must be > 0 and ≤ 1m", c.timeout)
	case c.logins < 1 || c.logins > maxLogins:
		return fmt.Errorf("logins %d: must be 1..%d", c.logins, maxLogins)
	case c.addresses < 1 || c.addresses > maxAddresses:
		return fmt.Errorf("addresses %d: must be 1..%d", c.addresses, maxAddresses)
	case c.protocol != "imap" && c.protocol != "pop3" && c.protocol != "smtp":
		return fmt.Errorf("protocol %q: must be imap, pop3 or smtp", c.protocol)
	case len(c.password) > 1024:
		return errors.New("password: longer than 1024 bytes")
	case c.secret != "" && c.secretHeader == "":
		return errors.New("secret: needs a secret header name")
	}
	if c.secretHeader != "" && !validToken(c.secretHeader) {
		return fmt.Errorf("secret header %q: not an HTTP header name", c.secretHeader)
	}
	for _, r := range c.secret {
		if r < 0x20 || r == 0x7f {
			return errors.New("secret: control characters not allowed")
		}
	}
	return nil
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// Kinds of nginx replies that are not errors.
type nginxResult struct {
	Requests   uint64
	OK         uint64 // Auth-Status: OK with Auth-Server and Auth-Port
	Refused    uint64 // any other Auth-Status (a refusal, a wrong password)
	Waits      uint64 // refusals with Auth-Wait
	Errors     uint64
	ErrorsBy   [numErrKinds]uint64
	FirstError string
	Duration   time.Duration
	Hist       histogram
}

func (r *nginxResult) rps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Duration.Seconds()
}

// maxNginxReply bounds a reply; nginx itself reads at most 1024 bytes.
const maxNginxReply = 4 << 10

// nginxWorker sends one request per new connection, in a loop.
type nginxWorker struct {
	cfg *nginxConfig
	id  int

	mu   sync.Mutex // guards conn against the cancel callback
	conn net.Conn

	req   []byte
	reply []byte
	res   nginxResult
}

// runNginxLoad runs cfg.concurrency workers for cfg.warmup (unmeasured)
// plus cfg.duration, or until ctx is done.
func runNginxLoad(ctx context.Context, cfg *nginxConfig) (*nginxResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	workers, measured := runWorkers(ctx, cfg.concurrency, cfg.warmup, cfg.duration, func(id int) *nginxWorker {
		return &nginxWorker{cfg: cfg, id: id}
	})
	total := &nginxResult{}
	for _, w := range workers {
		total.Requests += w.res.Requests
		total.OK += w.res.OK
		total.Refused += w.res.Refused
		total.Waits += w.res.Waits
		total.Errors += w.res.Errors
		for k := range total.ErrorsBy {
			total.ErrorsBy[k] += w.res.ErrorsBy[k]
		}
		if total.FirstError == "" {
			total.FirstError = w.res.FirstError
		}
		total.Hist.merge(&w.res.Hist)
	}
	total.Duration = measured
	return total, nil
}

func (w *nginxWorker) run(ctx context.Context, measureFrom, stopAt time.Time) {
	stopIO := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.conn != nil {
			w.conn.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stopIO()
	w.req = make([]byte, 0, 512)
	w.reply = make([]byte, maxNginxReply+1)
	step := uint64(w.cfg.concurrency)
	seq := uint64(w.id)
	for ctx.Err() == nil {
		begin := time.Now()
		if !begin.Before(stopAt) {
			return
		}
		w.buildRequest(seq)
		seq += step
		kind, ok, wait, err := w.roundTrip(ctx, begin)
		end := time.Now()
		if ctx.Err() != nil {
			return // interrupted: neither a result nor an error
		}
		if begin.Before(measureFrom) {
			continue
		}
		w.res.Requests++
		w.res.Hist.record(end.Sub(begin))
		switch {
		case err != nil:
			w.res.Errors++
			w.res.ErrorsBy[kind]++
			if w.res.FirstError == "" {
				w.res.FirstError = fmt.Sprintf("%s: %v", errKindNames[kind], err)
			}
			if kind == errConnect {
				pause(ctx, redialPause)
			}
		case ok:
			w.res.OK++
		default:
			w.res.Refused++
			if wait {
				w.res.Waits++
			}
		}
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// buildRequest writes the request nginx 1.22 sends for login attempt seq
// (protocols.md §2.1 and §2.3: header order as sent, Auth-User and
// Auth-Pass escaped like ngx_escape_uri's NGX_ESCAPE_MAIL_AUTH).
func (w *nginxWorker) buildRequest(seq uint64) {
	c := w.cfg
	h := splitmix64(seq)
	login := uint32(seq % uint64(c.logins))
	remote := uint32(h%uint64(c.addresses)) + 1 // never 10.0.0.0
	b := append(w.req[:0], "GET "...)
	b = append(b, c.target.uri...)
	b = append(b, " HTTP/1.0\r\nHost: "...)
	b = append(b, c.target.host...)
	b = append(b, "\r\nAuth-Method: plain\r\nAuth-User: user"...)
	b = strconv.AppendUint(b, uint64(login), 10)
	b = append(b, "@example.test\r\nAuth-Pass: "...)
	b = appendMailAuthEscaped(b, c.password)
	b = append(b, "\r\nAuth-Protocol: "...)
	b = append(b, c.protocol...)
	b = append(b, "\r\nAuth-Login-Attempt: 1\r\nClient-IP: 10."...)
	b = strconv.AppendUint(b, uint64(remote>>16&0xff), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(remote>>8&0xff), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(remote&0xff), 10)
	b = append(b, "\r\n"...)
	if c.protocol == "smtp" {
		b = append(b, "Client-Host: [UNAVAILABLE]\r\n"...)
	}
	if c.secretHeader != "" {
		b = append(b, c.secretHeader...)
		b = append(b, ": "...)
		b = append(b, c.secret...)
		b = append(b, "\r\n"...)
	}
	w.req = append(b, "\r\n"...)
}

// appendMailAuthEscaped escapes s as nginx does for Auth-User and
// Auth-Pass: space, '%', control characters and DEL become %XX.
func appendMailAuthEscaped(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '%' || c == 0x7f {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// roundTrip connects, sends w.req, reads the reply until the server closes
// and checks it as nginx would: ok is Auth-Status OK with Auth-Server and
// Auth-Port; any other Auth-Status is a refusal (wait: with Auth-Wait).
// The HTTP status is ignored, as nginx ignores it (protocols.md §2.2).
func (w *nginxWorker) roundTrip(ctx context.Context, begin time.Time) (kind int, ok, wait bool, err error) {
	d := net.Dialer{Timeout: w.cfg.timeout, Control: loopbackOnly}
	c, err := d.DialContext(ctx, "tcp", w.cfg.target.dial.String())
	if err != nil {
		return errConnect, false, false, err
	}
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.conn = nil
		w.mu.Unlock()
		c.Close()
	}()
	if ctx.Err() != nil {
		return errIO, false, false, ctx.Err()
	}
	if err := c.SetDeadline(begin.Add(w.cfg.timeout)); err != nil {
		return errIO, false, false, err
	}
	if _, err := c.Write(w.req); err != nil {
		return errIO, false, false, err
	}
	n := 0
	for {
		m, err := c.Read(w.reply[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return errIO, false, false, err
		}
		if n == len(w.reply) {
			return errBody, false, false, fmt.Errorf("reply larger than %d bytes", maxNginxReply)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(w.reply[:n])), nil)
	if err != nil {
		return errIO, false, false, fmt.Errorf("reply %q: %w", truncate(w.reply[:n], 80), err)
	}
	resp.Body.Close()
	st := resp.Header.Get("Auth-Status")
	switch {
	case st == "":
		return errBody, false, false, fmt.Errorf("no Auth-Status in reply (HTTP %d)", resp.StatusCode)
	case st == "OK" && (resp.Header.Get("Auth-Server") == "" || resp.Header.Get("Auth-Port") == ""):
		return errBody, false, false, errors.New("Auth-Status OK without Auth-Server and Auth-Port (nginx: internal server error)")
	case st == "OK":
		return 0, true, false, nil
	}
	return 0, false, resp.Header.Get("Auth-Wait") != "", nil
}

// loopbackOnly is a dialer Control refusing anything but loopback.
func loopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if _, err := loopbackAddr(host); err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	return nil
}

func runNginx(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mgbench nginx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rawURL := fs.String("url", "", "auth_http URL, e.g. http://127.0.0.1:4002/auth (loopback http only)")
	concurrency := fs.Int("concurrency", 16, fmt.Sprintf("workers; each opens a new connection per request, as nginx does (max %d)", maxConcurrency))
	duration := fs.Duration("duration", 10*time.Second, fmt.Sprintf("measured run time (max %s)", maxDuration))
	warmup := fs.Duration("warmup", 0, fmt.Sprintf("unmeasured run time before the measurement (max %s)", maxWarmup))
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout, connect included (nginx's auth_http_timeout is 60s)")
	secretHeader := fs.String("secret-header", "X-Auth-Key", "header carrying --secret, as nginx's auth_http_header")
	secret := fs.String("secret", "", "shared secret to send in --secret-header")
	protocol := fs.String("protocol", "imap", "Auth-Protocol: imap, pop3 or smtp (smtp passwords are always verified)")
	password := fs.String("password", "benchmark pw%", "password every client types (sent escaped, as nginx does)")
	logins := fs.Uint("logins", 1000, "distinct logins user0@example.test … (max 16777216)")
	addresses := fs.Uint("addresses", 1000, "distinct client addresses 10.0.0.1 … (max 16777214)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *rawURL == "" {
		return fmt.Errorf("--url is required: %w", errUsage)
	}
	t, err := parseNginxTarget(*rawURL)
	if err != nil {
		return err
	}
	if *logins > maxLogins || *addresses > maxAddresses {
		return fmt.Errorf("--logins ≤ %d and --addresses ≤ %d", maxLogins, maxAddresses)
	}
	cfg := &nginxConfig{
		target:       t,
		protocol:     *protocol,
		password:     *password,
		concurrency:  *concurrency,
		duration:     *duration,
		warmup:       *warmup,
		timeout:      *timeout,
		logins:       uint32(*logins),
		addresses:    uint32(*addresses),
		secretHeader: *secretHeader,
		secret:       *secret,
	}
	if cfg.secret == "" {
		cfg.secretHeader = ""
	}
	res, err := runNginxLoad(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeNginxJSON(stdout, *rawURL, cfg, res)
	}
	writeNginxText(stdout, *rawURL, cfg, res)
	return nil
}

func writeNginxText(w io.Writer, rawURL string, cfg *nginxConfig, r *nginxResult) {
	fmt.Fprintf(w, "target:      %s (auth_http, Auth-Protocol %s)\n", rawURL, cfg.protocol)
	fmt.Fprintf(w, "client:      %d workers, one new TCP connection per request (as nginx); GOMAXPROCS %d, %d CPUs shared with the server if local\n",
		cfg.concurrency, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(w, "requests:    %d (Auth-Status OK %d, refused %d, of which with Auth-Wait %d)\n", r.Requests, r.OK, r.Refused, r.Waits)
	fmt.Fprintf(w, "errors:      %d (connect %d, io %d, reply %d)\n",
		r.Errors, r.ErrorsBy[errConnect], r.ErrorsBy[errIO], r.ErrorsBy[errBody])
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "duration:    %s (warmup %s not counted)\n", r.Duration.Round(time.Millisecond), cfg.warmup)
	fmt.Fprintf(w, "requests/s:  %.0f\n", r.rps())
	h := &r.Hist
	fmt.Fprintf(w, "latency:     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, min %s; connect included)\n",
		fmtDur(h.percentile(0.50)), fmtDur(h.percentile(0.90)), fmtDur(h.percentile(0.99)),
		fmtDur(h.percentile(0.999)), fmtDur(time.Duration(h.max)), fmtDur(h.mean()), fmtDur(time.Duration(h.min)))
}

// nginxJSON is the --json output; latencies are in microseconds.
type nginxJSON struct {
	URL         string            `json:"url"`
	Protocol    string            `json:"protocol"`
	Concurrency int               `json:"concurrency"`
	CPUs        int               `json:"cpus"`
	Requests    uint64            `json:"requests"`
	OK          uint64            `json:"ok"`
	Refused     uint64            `json:"refused"`
	Waits       uint64            `json:"refused_with_wait"`
	Errors      uint64            `json:"errors"`
	ErrorsBy    map[string]uint64 `json:"errors_by_kind"`
	FirstError  string            `json:"first_error,omitempty"`
	timingJSON
}

func writeNginxJSON(w io.Writer, rawURL string, cfg *nginxConfig, r *nginxResult) error {
	out := nginxJSON{
		URL: rawURL, Protocol: cfg.protocol, Concurrency: cfg.concurrency, CPUs: runtime.NumCPU(),
		Requests: r.Requests, OK: r.OK, Refused: r.Refused, Waits: r.Waits,
		Errors: r.Errors, ErrorsBy: map[string]uint64{
			"connect": r.ErrorsBy[errConnect], "io": r.ErrorsBy[errIO], "reply": r.ErrorsBy[errBody],
		},
		FirstError: r.FirstError, timingJSON: timing(&r.Hist, r.Duration, cfg.warmup, r.rps()),
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// --- dovecot-auth: a benchmark fake of Dovecot's auth service ---

// Limits of the fake.
const (
	authMaxLine    = 64 << 10 // like passcheck.MaxLineLen
	authMaxPending = 1024     // multi-step logins waiting for a CONT, per connection
)

func runDovecotAuth(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mgbench dovecot-auth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:12345", "loopback address to listen on (mailgate's nginx.dovecot_auth)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: mgbench dovecot-auth --listen ADDR\n\n"+
			"A FAKE of Dovecot's auth service, for benchmarks only: it speaks the auth client\n"+
			"protocol (handshake, AUTH PLAIN/LOGIN) and answers OK to every AUTH, whatever the\n"+
			"password, so mailgate's nginx door can be load-tested without Dovecot's own cost.\n"+
			"Never point a real mail setup at it.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if err := checkLoopbackListen(*listen); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("FAKE Dovecot auth service for benchmarks: every password is accepted", "addr", ln.Addr().String())
	return serveDovecotAuth(ctx, ln, log)
}

// serveDovecotAuth serves the fake on ln until ctx is done, then closes
// the listener and every connection.
func serveDovecotAuth(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	closeAll := func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	var cuid uint64
	for {
		c, err := ln.Accept()
		if err != nil {
			closeAll()
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		cuid++
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		id := cuid
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			if err := fakeAuthConn(c, id); err != nil && ctx.Err() == nil {
				log.Warn("dovecot-auth: connection closed", "remote", c.RemoteAddr().String(), "err", err)
			}
		})
	}
}

// authState is a multi-step login waiting for the client's CONT.
type authState struct {
	mech string // "PLAIN", "LOGIN"
	step int    // LOGIN: 0 = username asked, 1 = password asked
	user string
}

// fakeAuthConn speaks Dovecot's auth client protocol (protocols.md §2.4;
// https://doc.dovecot.org/2.3/developer_manual/design/auth_protocol/) on
// one connection: the server handshake, then OK for every AUTH, with
// user= taken from the SASL response. It is a fake: passwords are not
// looked at.
func fakeAuthConn(c net.Conn, cuid uint64) error {
	bw := bufio.NewWriter(c)
	fmt.Fprintf(bw, "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t%d\nCUID\t%d\nCOOKIE\t%016x%016x\nDONE\n",
		os.Getpid(), cuid, splitmix64(cuid), splitmix64(^cuid))
	if err := bw.Flush(); err != nil {
		return err
	}
	br := bufio.NewReaderSize(c, 4096)
	pending := map[string]*authState{}
	for {
		line, err := readAuthLine(br)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		f := strings.Split(line, "\t")
		switch f[0] {
		case "VERSION":
			if len(f) < 2 || f[1] != "1" {
				return fmt.Errorf("client protocol version %q, want major 1", line)
			}
		case "CPID":
		case "AUTH":
			if len(f) < 3 || !isAuthID(f[1]) {
				return fmt.Errorf("bad AUTH line (%d fields)", len(f))
			}
			id, mech := f[1], strings.ToUpper(f[2])
			resp, hasResp := "", false
			for _, p := range f[3:] {
				if v, ok := strings.CutPrefix(p, "resp="); ok {
					resp, hasResp = v, true
				}
			}
			switch {
			case mech != "PLAIN" && mech != "LOGIN":
				fmt.Fprintf(bw, "FAIL\t%s\treason=Unsupported authentication mechanism\n", id)
			case mech == "PLAIN" && hasResp:
				fmt.Fprintf(bw, "OK\t%s\tuser=%s\n", id, tabEscape(plainUser(resp)))
			case len(pending) >= authMaxPending:
				fmt.Fprintf(bw, "FAIL\t%s\ttemp\treason=Too many pending requests\n", id)
			case mech == "PLAIN":
				pending[id] = &authState{mech: mech}
				fmt.Fprintf(bw, "CONT\t%s\t\n", id)
			default: // LOGIN: ask for the user name, unless it came as the initial response
				st := &authState{mech: mech}
				if hasResp {
					st.user, st.step = decodeB64(resp), 1
				}
				pending[id] = st
				prompt := "Username:"
				if st.step == 1 {
					prompt = "Password:"
				}
				fmt.Fprintf(bw, "CONT\t%s\t%s\n", id, base64.StdEncoding.EncodeToString([]byte(prompt)))
			}
		case "CONT":
			if len(f) < 2 {
				return errors.New("bad CONT line")
			}
			id := f[1]
			st := pending[id]
			data := ""
			if len(f) > 2 {
				data = f[2]
			}
			switch {
			case st == nil:
				fmt.Fprintf(bw, "FAIL\t%s\treason=Unknown request\n", id)
			case st.mech == "PLAIN":
				delete(pending, id)
				fmt.Fprintf(bw, "OK\t%s\tuser=%s\n", id, tabEscape(plainUser(data)))
			case st.step == 0:
				st.user, st.step = decodeB64(data), 1
				fmt.Fprintf(bw, "CONT\t%s\t%s\n", id, base64.StdEncoding.EncodeToString([]byte("Password:")))
			default:
				delete(pending, id)
				fmt.Fprintf(bw, "OK\t%s\tuser=%s\n", id, tabEscape(st.user))
			}
		default:
			// Other commands (Dovecot closes the connection on unknown
			// ones) are ignored: this is a benchmark fake, not a checker.
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// readAuthLine reads one LF-terminated line of at most authMaxLine bytes.
func readAuthLine(br *bufio.Reader) (string, error) {
	var long []byte
	for {
		frag, err := br.ReadSlice('\n')
		if err == nil {
			if long == nil {
				return string(frag[:len(frag)-1]), nil
			}
			long = append(long, frag[:len(frag)-1]...)
			return string(long), nil
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(frag)+len(long) > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		long = append(long, frag...)
		if len(long) > authMaxLine {
			return "", fmt.Errorf("line longer than %d bytes", authMaxLine)
		}
	}
}

func isAuthID(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// plainUser is the user of a base64 SASL PLAIN response
// (authzid NUL authcid NUL password): the authorization identity if
// given, else the authentication identity.
func plainUser(b64 string) string {
	parts := strings.SplitN(decodeB64(b64), "\x00", 3)
	if len(parts) != 3 {
		return ""
	}
	if parts[0] != "" {
		return parts[0]
	}
	return parts[1]
}

func decodeB64(s string) string {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}

// tabEscape escapes a value as Dovecot's str_tabescape does: \001 → \0011,
// TAB → \001t, CR → \001r, LF → \001n.
func tabEscape(s string) string {
	if !strings.ContainsAny(s, "\x01\t\r\n") {
		return s
	}
	r := strings.NewReplacer("\x01", "\x011", "\t", "\x01t", "\r", "\x01r", "\n", "\x01n")
	return r.Replace(s)
}

package main

// "mgbench postfix" plays many smtpd processes asking mailgate's Postfix
// policy server (protocols.md §3): each worker holds one connection, as
// each smtpd process does, and sends the attribute set Postfix 3.7.11
// sends at RCPT (§3.2), "name=value" lines and an empty line, then reads
// the "action=…" line and the empty line after it.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// postfixConfig is what the postfix command was asked to do.
type postfixConfig struct {
	network, addr string // "tcp" (loopback only) or "unix"
	concurrency   int
	duration      time.Duration
	warmup        time.Duration
	timeout       time.Duration
	logins        uint32
	addresses     uint32
	sasl          bool // authenticated senders (sasl_username)
	relaycheck    bool // relay checks (policy_context=relaycheck)
}

// parsePostfixAddr parses --addr: a loopback host:port, or unix:PATH
// (check_policy_service unix:…).
func parsePostfixAddr(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return "", "", fmt.Errorf("addr %q: no socket path", s)
		}
		return "unix", path, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("addr %q: %w", s, err)
	}
	a, err := loopbackAddr(host)
	if err != nil {
		return "", "", fmt.Errorf("addr %q: %w", s, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("addr %q: bad port %q", s, port)
	}
	return "tcp", net.JoinHostPort(a.String(), port), nil
}

func (c *postfixConfig) validate() error {
	switch {
	case c.network != "tcp" && c.network != "unix":
		return fmt.Errorf("network %q: must be tcp or unix", c.network)
	case c.concurrency < 1 || c.concurrency > maxConcurrency:
		return fmt.Errorf("concurrency %d: must be 1..%d", c.concurrency, maxConcurrency)
	case c.duration <= 0 || c.duration > maxDuration:
		return fmt.Errorf("duration %s: must be > 0 and ≤ %s", c.duration, maxDuration)
	case c.warmup < 0 || c.warmup > maxWarmup:
		return fmt.Errorf("warmup %s: must be 0..%s", c.warmup, maxWarmup)
	case c.timeout <= 0 || c.timeout > 100*time.Second:
		return fmt.Errorf("timeout %s: must be > 0 and ≤ 100s", c.timeout)
	case c.logins < 1 || c.logins > maxLogins:
		return fmt.Errorf("logins %d: must be 1..%d", c.logins, maxLogins)
	case c.addresses < 1 || c.addresses > maxAddresses:
		return fmt.Errorf("addresses %d: must be 1..%d", c.addresses, maxAddresses)
	}
	return nil
}

// Answers, by their action.
const (
	ansOK = iota
	ansDunno
	ansReject
	ansDefer // DEFER_IF_PERMIT, DEFER
	ansOther // any other access(5) action
	numAnswers
)

var answerNames = [numAnswers]string{"OK", "DUNNO", "REJECT", "DEFER", "other"}

type postfixResult struct {
	Requests   uint64
	Answers    [numAnswers]uint64
	Errors     uint64
	ErrorsBy   [numErrKinds]uint64
	FirstError string
	Duration   time.Duration
	Hist       histogram
}

func (r *postfixResult) rps() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Duration.Seconds()
}

// maxPolicyAnswer bounds an answer line; mailgate's are under 400 bytes.
const maxPolicyAnswer = 4096

// postfixWorker drives one persistent connection.
type postfixWorker struct {
	cfg *postfixConfig
	id  int

	mu   sync.Mutex // guards conn against the cancel callback
	conn net.Conn

	br  *bufio.Reader
	req []byte
	res postfixResult
}

// runPostfixLoad runs cfg.concurrency workers for cfg.warmup (unmeasured)
// plus cfg.duration, or until ctx is done.
func runPostfixLoad(ctx context.Context, cfg *postfixConfig) (*postfixResult, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	workers, measured := runWorkers(ctx, cfg.concurrency, cfg.warmup, cfg.duration, func(id int) *postfixWorker {
		return &postfixWorker{cfg: cfg, id: id}
	})
	total := &postfixResult{}
	for _, w := range workers {
		total.Requests += w.res.Requests
		for k := range total.Answers {
			total.Answers[k] += w.res.Answers[k]
		}
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

func (w *postfixWorker) run(ctx context.Context, measureFrom, stopAt time.Time) {
	defer w.setConn(nil)
	stopIO := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.conn != nil {
			w.conn.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stopIO()
	w.req = make([]byte, 0, 1024)
	// Worker w sends requests w, w+N, w+2N, ...: the run walks the
	// sequence 0, 1, 2, ... as a whole, the same for every run.
	step := uint64(w.cfg.concurrency)
	seq := uint64(w.id)
	for ctx.Err() == nil {
		begin := time.Now()
		if !begin.Before(stopAt) {
			return
		}
		measured := !begin.Before(measureFrom)
		if w.conn == nil {
			if err := w.dial(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				if measured {
					w.countError(errConnect, err)
				}
				pause(ctx, redialPause)
				continue
			}
			begin = time.Now()
		}
		w.req = appendPolicyRequest(w.req[:0], w.cfg, seq)
		seq += step
		ans, kind, err := w.roundTrip(begin)
		end := time.Now()
		if ctx.Err() != nil {
			return // interrupted: neither a result nor an error
		}
		if err != nil {
			w.setConn(nil) // the server closes a connection it will not answer on
		}
		if !measured {
			continue
		}
		w.res.Requests++
		w.res.Hist.record(end.Sub(begin))
		if err != nil {
			w.countError(kind, err)
			continue
		}
		w.res.Answers[ans]++
	}
}

func (w *postfixWorker) countError(kind int, err error) {
	w.res.Errors++
	w.res.ErrorsBy[kind]++
	if w.res.FirstError == "" {
		w.res.FirstError = fmt.Sprintf("%s: %v", errKindNames[kind], err)
	}
}

// setConn replaces the connection (closing the old one) under the lock
// the cancel callback takes.
func (w *postfixWorker) setConn(c net.Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
	}
	w.conn = c
}

func (w *postfixWorker) dial(ctx context.Context) error {
	d := net.Dialer{Timeout: w.cfg.timeout}
	if w.cfg.network == "tcp" {
		d.Control = loopbackOnly
	}
	c, err := d.DialContext(ctx, w.cfg.network, w.cfg.addr)
	if err != nil {
		return err
	}
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, maxPolicyAnswer)
	} else {
		w.br.Reset(c)
	}
	w.setConn(c)
	return nil
}

// roundTrip sends w.req and reads the answer: "action=<action>\n\n".
func (w *postfixWorker) roundTrip(begin time.Time) (ans, kind int, err error) {
	if err := w.conn.SetDeadline(begin.Add(w.cfg.timeout)); err != nil {
		return 0, errIO, err
	}
	if _, err := w.conn.Write(w.req); err != nil {
		return 0, errIO, err
	}
	line, err := w.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return 0, errBody, fmt.Errorf("answer longer than %d bytes", maxPolicyAnswer)
		}
		if err == io.EOF {
			err = errors.New("connection closed without an answer (the server refused the request)")
		}
		return 0, errIO, err
	}
	action, ok := strings.CutPrefix(string(line), "action=")
	if !ok {
		return 0, errBody, fmt.Errorf("answer %q: no action=", truncate(line, 80))
	}
	action = strings.TrimSuffix(action, "\n")
	if empty, err := w.br.ReadSlice('\n'); err != nil || len(empty) != 1 {
		return 0, errBody, fmt.Errorf("no empty line after the answer %q", action)
	}
	verb, _, _ := strings.Cut(action, " ")
	switch strings.ToUpper(verb) {
	case "OK":
		return ansOK, 0, nil
	case "DUNNO":
		return ansDunno, 0, nil
	case "REJECT":
		return ansReject, 0, nil
	case "DEFER_IF_PERMIT", "DEFER", "DEFER_IF_REJECT":
		return ansDefer, 0, nil
	case "":
		return 0, errBody, errors.New("empty action")
	}
	return ansOther, 0, nil
}

// appendPolicyRequest appends request seq: the attributes Postfix 3.7.11
// sends at RCPT, in its order (protocols.md §3.2), with the client
// address 10.x.y.z hashed from seq out of cfg.addresses, and, with
// cfg.sasl, the login user<seq mod logins>@example.test. With both sasl
// and relaycheck, even requests are relay checks and odd ones
// authenticated, by user<(seq/2) mod logins>.
func appendPolicyRequest(b []byte, cfg *postfixConfig, seq uint64) []byte {
	h := splitmix64(seq)
	remote := uint32(h%uint64(cfg.addresses)) + 1 // never 10.0.0.0
	relay, sasl := cfg.relaycheck, cfg.sasl
	n := seq // the login's number
	if relay && sasl {
		relay, sasl = seq%2 == 0, seq%2 == 1
		n = seq / 2
	}
	b = append(b, "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=10."...)
	b = strconv.AppendUint(b, uint64(remote>>16&0xff), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(remote>>8&0xff), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, uint64(remote&0xff), 10)
	b = append(b, "\nclient_name=unknown\nclient_port="...)
	b = strconv.AppendUint(b, 1024+(h>>48)%60000, 10)
	b = append(b, "\nreverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=25\nhelo_name=client.example.test\nsender="...)
	if sasl {
		b = appendLogin(b, n, cfg.logins)
	} else {
		b = append(b, "sender@remote.test"...)
	}
	b = append(b, "\nrecipient="...)
	if relay {
		b = append(b, "someone@remote.test"...)
	} else {
		b = append(b, "bob@example.test"...)
	}
	b = append(b, "\nrecipient_count=0\nqueue_id=\ninstance="...)
	b = strconv.AppendUint(b, h&0xffff, 16)
	b = append(b, '.')
	b = strconv.AppendUint(b, seq&0xffffffff, 16)
	b = append(b, ".a8191.0\nsize=0\netrn_domain=\nstress=\nsasl_method="...)
	if sasl {
		b = append(b, "PLAIN\nsasl_username="...)
		b = appendLogin(b, n, cfg.logins)
	} else {
		b = append(b, "\nsasl_username="...)
	}
	b = append(b, "\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context="...)
	if relay {
		b = append(b, "relaycheck"...)
	}
	return append(b, "\n\n"...)
}

func appendLogin(b []byte, seq uint64, logins uint32) []byte {
	b = append(b, "user"...)
	b = strconv.AppendUint(b, seq%uint64(logins), 10)
	return append(b, "@example.test"...)
}

func runPostfix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mgbench postfix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:10040", "policy server: loopback host:port, or unix:PATH")
	concurrency := fs.Int("concurrency", 64, fmt.Sprintf("workers, one persistent connection each, as smtpd processes (max %d)", maxConcurrency))
	duration := fs.Duration("duration", 10*time.Second, fmt.Sprintf("measured run time (max %s)", maxDuration))
	warmup := fs.Duration("warmup", 0, fmt.Sprintf("unmeasured run time before the measurement (max %s)", maxWarmup))
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout (Postfix's smtpd_policy_service_timeout is 100s)")
	sasl := fs.Bool("sasl", false, "authenticated senders: sasl_username=user<N>@example.test")
	relaycheck := fs.Bool("relaycheck", false, "relay checks: policy_context=relaycheck (with --sasl: every other request)")
	logins := fs.Uint("logins", 1000, "distinct logins user0@example.test … (max 16777216)")
	addresses := fs.Uint("addresses", 1000, "distinct client addresses 10.0.0.1 … (max 16777214)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	network, dial, err := parsePostfixAddr(*addr)
	if err != nil {
		return err
	}
	if *logins > maxLogins || *addresses > maxAddresses {
		return fmt.Errorf("--logins ≤ %d and --addresses ≤ %d", maxLogins, maxAddresses)
	}
	cfg := &postfixConfig{
		network: network, addr: dial,
		concurrency: *concurrency, duration: *duration, warmup: *warmup, timeout: *timeout,
		logins: uint32(*logins), addresses: uint32(*addresses),
		sasl: *sasl, relaycheck: *relaycheck,
	}
	res, err := runPostfixLoad(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return writePostfixJSON(stdout, *addr, cfg, res)
	}
	writePostfixText(stdout, *addr, cfg, res)
	return nil
}

func (c *postfixConfig) kind() string {
	switch {
	case c.sasl && c.relaycheck:
		return "relay checks and authenticated senders"
	case c.sasl:
		return "authenticated senders"
	case c.relaycheck:
		return "relay checks"
	}
	return "unauthenticated RCPT"
}

func writePostfixText(w io.Writer, addr string, cfg *postfixConfig, r *postfixResult) {
	fmt.Fprintf(w, "target:      %s (policy delegation, %s)\n", addr, cfg.kind())
	fmt.Fprintf(w, "client:      %d workers, one persistent connection each; GOMAXPROCS %d, %d CPUs shared with the server if local\n",
		cfg.concurrency, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(w, "requests:    %d (", r.Requests)
	for k, n := range r.Answers {
		if k > 0 {
			fmt.Fprint(w, ", ")
		}
		fmt.Fprintf(w, "%s %d", answerNames[k], n)
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "errors:      %d (connect %d, io %d, answer %d)\n",
		r.Errors, r.ErrorsBy[errConnect], r.ErrorsBy[errIO], r.ErrorsBy[errBody])
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	fmt.Fprintf(w, "duration:    %s (warmup %s not counted)\n", r.Duration.Round(time.Millisecond), cfg.warmup)
	fmt.Fprintf(w, "requests/s:  %.0f\n", r.rps())
	h := &r.Hist
	fmt.Fprintf(w, "latency:     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, min %s)\n",
		fmtDur(h.percentile(0.50)), fmtDur(h.percentile(0.90)), fmtDur(h.percentile(0.99)),
		fmtDur(h.percentile(0.999)), fmtDur(time.Duration(h.max)), fmtDur(h.mean()), fmtDur(time.Duration(h.min)))
}

// postfixJSON is the --json output; latencies are in microseconds.
type postfixJSON struct {
	Addr        string            `json:"addr"`
	Kind        string            `json:"kind"`
	Concurrency int               `json:"concurrency"`
	CPUs        int               `json:"cpus"`
	Requests    uint64            `json:"requests"`
	Answers     map[string]uint64 `json:"answers"`
	Errors      uint64            `json:"errors"`
	ErrorsBy    map[string]uint64 `json:"errors_by_kind"`
	FirstError  string            `json:"first_error,omitempty"`
	timingJSON
}

func writePostfixJSON(w io.Writer, addr string, cfg *postfixConfig, r *postfixResult) error {
	out := postfixJSON{
		Addr: addr, Kind: cfg.kind(), Concurrency: cfg.concurrency, CPUs: runtime.NumCPU(),
		Requests: r.Requests, Answers: map[string]uint64{}, Errors: r.Errors, ErrorsBy: map[string]uint64{
			"connect": r.ErrorsBy[errConnect], "io": r.ErrorsBy[errIO], "answer": r.ErrorsBy[errBody],
		},
		FirstError: r.FirstError, timingJSON: timing(&r.Hist, r.Duration, cfg.warmup, r.rps()),
	}
	for k, n := range r.Answers {
		out.Answers[answerNames[k]] = n
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

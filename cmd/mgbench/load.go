package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Limits of the dovecot command.
const (
	maxConcurrency = 1024
	maxDuration    = 10 * time.Minute
	maxWarmup      = time.Minute
	maxAddresses   = 1<<24 - 2 // 10.0.0.1 … 10.255.255.254
	maxLogins      = 1 << 24
	maxReplyBody   = 8 << 10 // a policy reply is tens of bytes
	redialPause    = 50 * time.Millisecond
)

// loadConfig is what the dovecot command was asked to do.
type loadConfig struct {
	target      target
	apiKey      string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration // per request, like auth_policy_server_timeout_msecs
	logins      uint32
	addresses   uint32
	report      bool // alternate allow and report calls
}

func (c *loadConfig) validate() error {
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
	}
	for _, r := range c.apiKey {
		if r < 0x20 || r == 0x7f {
			return errors.New("api key: control characters not allowed")
		}
	}
	return nil
}

// Error kinds, counted separately.
const (
	errConnect = iota // dial failed
	errIO             // write/read failed or timed out, connection closed early
	errStatus         // HTTP status other than 200
	errBody           // body not JSON, no numeric "status", or too large
	numErrKinds
)

var errKindNames = [numErrKinds]string{"connect", "io", "http_status", "body"}

// result is the outcome of a run.
type result struct {
	Requests    uint64
	Allow       uint64
	Report      uint64
	Errors      uint64
	ErrorsBy    [numErrKinds]uint64
	FirstError  string
	Duration    time.Duration // measured window, warmup excluded
	Concurrency int
	Hist        histogram // latencies of measured requests, errors included
}

// worker drives one keep-alive connection.
type worker struct {
	cfg *loadConfig
	id  int

	mu   sync.Mutex // guards writes of conn against the cancel callback
	conn net.Conn

	br   *bufio.Reader
	req  []byte
	body []byte
	resp []byte
	date []byte
	sec  int64 // unix second date was made for

	res result
}

// runLoad runs the dovecot load: cfg.concurrency workers, each with its own
// TCP connection, for cfg.warmup (unmeasured) plus cfg.duration. It returns
// early, with what was measured so far, when ctx is done.
func runLoad(ctx context.Context, cfg *loadConfig) (*result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	workers, measured := runWorkers(ctx, cfg.concurrency, cfg.warmup, cfg.duration, func(id int) *worker {
		return &worker{cfg: cfg, id: id}
	})

	total := &result{Concurrency: cfg.concurrency}
	for _, w := range workers {
		total.Requests += w.res.Requests
		total.Allow += w.res.Allow
		total.Report += w.res.Report
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

func (w *worker) run(ctx context.Context, measureFrom, stopAt time.Time) {
	defer w.closeConn()
	// Stop a read or write in flight when the run is cancelled (Ctrl-C).
	stopIO := context.AfterFunc(ctx, func() {
		if c := w.connForCancel(); c != nil {
			c.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stopIO()

	w.req = make([]byte, 0, 1024)
	w.body = make([]byte, 0, 512)
	w.resp = make([]byte, maxReplyBody+1)
	// Worker w sends attempts w, w+N, w+2N, ...: the run as a whole walks the
	// sequence 0, 1, 2, ... in order, the same for every run.
	step := uint64(w.cfg.concurrency)
	seq := uint64(w.id)
	var a attempt
	report := false // with cfg.report, every allow is followed by its report
	for {
		select {
		case <-ctx.Done():
			return
		default:
		}
		now := time.Now()
		if !now.Before(stopAt) {
			return
		}
		if w.conn == nil {
			err := w.dial(ctx)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !now.Before(measureFrom) {
					w.countError(errConnect, err)
				}
				t := time.NewTimer(redialPause)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
		}
		if !report {
			a = makeAttempt(seq, w.cfg.logins, w.cfg.addresses)
			seq += step
		}
		begin := time.Now()
		kind, err := w.roundTrip(&a, report, begin)
		end := time.Now()
		if ctx.Err() != nil {
			return // interrupted: neither a result nor an error
		}
		wasReport := report
		report = w.cfg.report && !report
		if begin.Before(measureFrom) {
			continue
		}
		w.res.Requests++
		if wasReport {
			w.res.Report++
		} else {
			w.res.Allow++
		}
		w.res.Hist.record(end.Sub(begin))
		if err != nil {
			w.countError(kind, err)
		}
	}
}

// connForCancel returns the connection for the cancel callback, which runs
// on another goroutine.
func (w *worker) connForCancel() net.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conn
}

// setConn is the only writer of w.conn; the worker goroutine reads it
// without the lock.
func (w *worker) setConn(c net.Conn) {
	w.mu.Lock()
	w.conn = c
	w.mu.Unlock()
}

func (w *worker) closeConn() {
	if w.conn != nil {
		w.conn.Close()
		w.setConn(nil)
	}
}

func (w *worker) dial(ctx context.Context) error {
	d := net.Dialer{
		Timeout: w.cfg.timeout,
		// Belt and braces: whatever the address became, refuse to connect
		// anywhere but loopback.
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if _, err := loopbackAddr(host); err != nil {
				return fmt.Errorf("dial %s: %w", address, err)
			}
			return nil
		},
	}
	c, err := d.DialContext(ctx, "tcp", w.cfg.target.dial.String())
	if err != nil {
		return err
	}
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 4096)
	} else {
		w.br.Reset(c)
	}
	w.setConn(c)
	return nil
}

func (w *worker) countError(kind int, err error) {
	w.res.Errors++
	w.res.ErrorsBy[kind]++
	if w.res.FirstError == "" {
		w.res.FirstError = fmt.Sprintf("%s: %v", errKindNames[kind], err)
	}
}

// buildRequest writes the HTTP request for a into w.req, with the headers and
// header order Dovecot's auth policy client uses (protocols.md §1.6).
func (w *worker) buildRequest(a *attempt, report bool, now time.Time) {
	w.body = appendBody(w.body[:0], a, report)
	if s := now.Unix(); s != w.sec || w.date == nil {
		w.sec = s
		w.date = now.UTC().AppendFormat(w.date[:0], http.TimeFormat)
	}
	t := &w.cfg.target
	b := append(w.req[:0], "POST "...)
	if report {
		b = append(b, t.reportURI...)
	} else {
		b = append(b, t.allowURI...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, t.host...)
	b = append(b, "\r\nDate: "...)
	b = append(b, w.date...)
	b = append(b, "\r\nUser-Agent: dovecot/auth-policy-client\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(w.body)), 10)
	b = append(b, "\r\nConnection: Keep-Alive\r\nContent-Type: application/json\r\n"...)
	if t.authHeader != "" {
		b = append(b, "Authorization: "...)
		b = append(b, t.authHeader...)
		b = append(b, "\r\n"...)
	}
	if w.cfg.apiKey != "" {
		b = append(b, "X-API-Key: "...)
		b = append(b, w.cfg.apiKey...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	b = append(b, w.body...)
	w.req = b
}

// roundTrip sends one request and checks the reply: HTTP 200 and a JSON
// object with a numeric "status" (what Dovecot needs, protocols.md §1.4). On
// an I/O problem, or when the server says it will close, the connection is
// closed and the next request dials again.
func (w *worker) roundTrip(a *attempt, report bool, now time.Time) (int, error) {
	w.buildRequest(a, report, now)
	if err := w.conn.SetDeadline(now.Add(w.cfg.timeout)); err != nil {
		w.closeConn()
		return errIO, err
	}
	if _, err := w.conn.Write(w.req); err != nil {
		w.closeConn()
		return errIO, err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.closeConn()
		return errIO, err
	}
	n := 0
	for {
		m, err := resp.Body.Read(w.resp[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			resp.Body.Close()
			w.closeConn()
			return errIO, fmt.Errorf("reading reply body: %w", err)
		}
		if n == len(w.resp) {
			resp.Body.Close()
			w.closeConn()
			return errBody, fmt.Errorf("reply body larger than %d bytes", maxReplyBody)
		}
	}
	resp.Body.Close()
	if resp.Close {
		w.closeConn()
	}
	if resp.StatusCode != http.StatusOK {
		return errStatus, fmt.Errorf("HTTP status %q", resp.Status)
	}
	body := w.resp[:n]
	var reply struct {
		Status *float64 `json:"status"`
	}
	if err := json.Unmarshal(body, &reply); err != nil {
		return errBody, fmt.Errorf("reply body %q: %w", truncate(body, 80), err)
	}
	if reply.Status == nil {
		return errBody, fmt.Errorf("reply body %q: no numeric \"status\"", truncate(body, 80))
	}
	return 0, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(bytes.Clone(b[:n]), "..."...)
	}
	return b
}

// runWorkers starts n workers made by newWorker, each running from now
// through warmup (unmeasured) plus duration, or until ctx is done, and
// waits for them. measured is the time the measured part really took.
func runWorkers[W interface {
	run(ctx context.Context, measureFrom, stopAt time.Time)
}](ctx context.Context, n int, warmup, duration time.Duration, newWorker func(id int) W) (workers []W, measured time.Duration) {
	measureFrom := time.Now().Add(warmup)
	stopAt := measureFrom.Add(duration)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers = make([]W, n)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(i)
		workers[i] = w
		wg.Go(func() { w.run(ctx, measureFrom, stopAt) })
	}
	wg.Wait()
	return workers, max(time.Since(measureFrom), 0)
}

package passcheck

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DovecotOptions configures a Dovecot verifier.
type DovecotOptions struct {
	// Timeout bounds one Verify, connecting included; 0 means
	// DefaultTimeout. Dovecot answers a wrong password only after its
	// auth_failure_delay (2 s by default) plus its per-address penalty,
	// so keep it well above that.
	Timeout time.Duration
	// Mechanism is the SASL mechanism; "" means "PLAIN", the only one
	// supported.
	Mechanism string
	// IdleTimeout closes the connection after this long without a
	// request; 0 means DefaultIdleTimeout. MaxConnAge retires it (no new
	// requests; closed once the last reply is in) after this long; 0 means
	// DefaultMaxConnAge. Both matter because Dovecot's auth process
	// outlives a stopped or restarted master for as long as a client stays
	// connected to it, answering from the old configuration.
	IdleTimeout time.Duration
	MaxConnAge  time.Duration
}

// Defaults for DovecotOptions (and IMAPOptions.Timeout).
const (
	DefaultTimeout     = 10 * time.Second
	DefaultIdleTimeout = time.Minute
	DefaultMaxConnAge  = 10 * time.Minute
)

// errRetired closes a connection that was idle or old enough.
var errRetired = errors.New("connection retired")

// handshakeLines bounds the lines of the server's handshake.
const handshakeLines = 256

// Dovecot verifies passwords with Dovecot's auth service over its auth
// client protocol (protocols.md §2.4). One persistent connection carries
// every request, each with its own id, so a wrong password held back by
// Dovecot's failure delay does not hold up the others. A broken connection
// fails the requests on it and is replaced (with a new handshake) by the
// next Verify. Safe for concurrent use.
type Dovecot struct {
	network, addr string
	timeout       time.Duration
	idle, maxAge  time.Duration
	mech          string
	log           *slog.Logger
	pid           int

	// dialing is a one-slot semaphore held while a connection is set up,
	// so that only one Verify dials and the others wait for it (or for
	// their context).
	dialing chan struct{}

	mu     sync.Mutex
	conn   *authConn // current connection; nil or broken means dial
	closed bool

	stats struct {
		connects, ok, wrong, errors atomic.Uint64
	}
}

// NewDovecot returns a verifier for the Dovecot auth service at addr:
// "host:port" for an inet_listener, or the path of a unix_listener socket
// (anything starting with "/"). It connects on the first Verify.
func NewDovecot(addr string, opts DovecotOptions, log *slog.Logger) *Dovecot {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Mechanism == "" {
		opts.Mechanism = "PLAIN"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxConnAge <= 0 {
		opts.MaxConnAge = DefaultMaxConnAge
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	return &Dovecot{
		network: network,
		addr:    addr,
		timeout: opts.Timeout,
		idle:    opts.IdleTimeout,
		maxAge:  opts.MaxConnAge,
		mech:    strings.ToUpper(opts.Mechanism),
		log:     log.With("backend", "dovecot-auth", "addr", addr),
		pid:     os.Getpid(),
		dialing: make(chan struct{}, 1),
	}
}

// DovecotStats counts a verifier's work, for metrics and state listings.
type DovecotStats struct {
	Connects  uint64 // connections set up (handshake done)
	OK        uint64 // correct passwords
	Wrong     uint64 // wrong passwords, unknown users, unsendable input
	Errors    uint64 // backend could not answer
	Connected bool   // a live connection exists now
	InFlight  int    // requests waiting for their reply
}

// Stats returns the verifier's counters.
func (d *Dovecot) Stats() DovecotStats {
	s := DovecotStats{
		Connects: d.stats.connects.Load(),
		OK:       d.stats.ok.Load(),
		Wrong:    d.stats.wrong.Load(),
		Errors:   d.stats.errors.Load(),
	}
	d.mu.Lock()
	c := d.conn
	d.mu.Unlock()
	if c != nil {
		c.mu.Lock()
		s.Connected = c.err == nil
		s.InFlight = len(c.pending)
		c.mu.Unlock()
	}
	return s
}

// Verify asks Dovecot whether r.Password is the password of r.Login. See
// the package comment for what ok and err mean. A login or password that
// cannot be sent (empty, too long, containing NUL) is answered false
// without asking.
func (d *Dovecot) Verify(ctx context.Context, r *Request) (ok bool, err error) {
	if !acceptable(r) {
		d.stats.wrong.Add(1)
		return false, nil
	}
	if r.Service == "" {
		d.stats.errors.Add(1)
		return false, fmt.Errorf("passcheck: dovecot auth %s: request without a service name", d.addr)
	}
	if d.mech != "PLAIN" {
		d.stats.errors.Add(1)
		return false, fmt.Errorf("passcheck: dovecot auth %s: mechanism %q is not supported (only PLAIN)", d.addr, d.mech)
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		c, err := d.connect(ctx)
		if err != nil {
			d.stats.errors.Add(1)
			return false, fmt.Errorf("passcheck: dovecot auth %s: %w", d.addr, err)
		}
		ok, sent, err := c.auth(ctx, r)
		if err != nil && !sent && attempt == 0 && ctx.Err() == nil {
			// The connection broke before the request went out (the
			// server closed an idle connection, or restarted): nothing
			// reached Dovecot, so asking once more on a new connection
			// cannot count twice.
			continue
		}
		switch {
		case err != nil:
			d.stats.errors.Add(1)
			return false, fmt.Errorf("passcheck: dovecot auth %s: login %q: %w", d.addr, printable(r.Login, 64), err)
		case ok:
			d.stats.ok.Add(1)
		default:
			d.stats.wrong.Add(1)
		}
		return ok, nil
	}
}

// Close closes the connection; requests waiting on it fail, and later
// Verify calls return ErrClosed.
func (d *Dovecot) Close() error {
	d.mu.Lock()
	c := d.conn
	d.closed = true
	d.conn = nil
	d.mu.Unlock()
	if c != nil {
		c.fail(ErrClosed)
	}
	return nil
}

// live returns the current connection if it is usable. One older than
// MaxConnAge is retired: it finishes the requests it has, and the caller
// dials a new one.
func (d *Dovecot) live() (*authConn, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, ErrClosed
	}
	c := d.conn
	if c == nil || c.broken() {
		d.mu.Unlock()
		return nil, nil
	}
	if time.Since(c.created) < d.maxAge {
		d.mu.Unlock()
		return c, nil
	}
	d.conn = nil
	d.mu.Unlock()
	c.retire(fmt.Errorf("%w: older than %v", errRetired, d.maxAge))
	return nil, nil
}

// connect returns a live connection, dialing one if needed.
func (d *Dovecot) connect(ctx context.Context) (*authConn, error) {
	if c, err := d.live(); c != nil || err != nil {
		return c, err
	}
	select {
	case d.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a connection: %w", ctx.Err())
	}
	defer func() { <-d.dialing }()
	// Someone else may have connected while we waited.
	if c, err := d.live(); c != nil || err != nil {
		return c, err
	}
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		c.fail(ErrClosed)
		return nil, ErrClosed
	}
	d.conn = c
	d.mu.Unlock()
	d.stats.connects.Add(1)
	return c, nil
}

// dial connects and runs the handshake:
//
//	C: VERSION TAB 1 TAB 2 / CPID TAB <pid>
//	S: VERSION TAB 1 TAB <minor> / MECH TAB <name> [TAB <flags>]... / SPID / CUID / COOKIE / DONE
//
// It refuses a server whose major version is not 1 or that does not offer
// the mechanism.
func (d *Dovecot) dial(ctx context.Context) (*authConn, error) {
	var dialer net.Dialer
	nc, err := dialer.DialContext(ctx, d.network, d.addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	// The handshake must not outlive ctx even without a deadline.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (*authConn, error) {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", ctxError(ctx, err))
	}
	if _, err := fmt.Fprintf(nc, "VERSION\t1\t2\nCPID\t%d\n", d.pid); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(nc, 4096)
	mechs := map[string]bool{}
	for n := 0; ; n++ {
		if n == handshakeLines {
			return fail(fmt.Errorf("%w: more than %d lines before DONE", ErrProtocol, handshakeLines))
		}
		line, err := readLine(br, MaxLineLen, false)
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				return fail(err)
			}
			return fail(fmt.Errorf("read: %w", err))
		}
		f := strings.Split(string(line), "\t")
		if n == 0 && f[0] != "VERSION" {
			return fail(fmt.Errorf("%w: server did not start with VERSION but %s", ErrProtocol, quoteShort([]byte(f[0]))))
		}
		switch f[0] {
		case "VERSION":
			if len(f) < 3 || f[1] != "1" {
				major := ""
				if len(f) > 1 {
					major = f[1]
				}
				return fail(fmt.Errorf("%w: server speaks major version %s, want 1", ErrProtocol, quoteShort([]byte(major))))
			}
		case "MECH":
			if len(f) >= 2 {
				mechs[strings.ToUpper(f[1])] = true
			}
		case "DONE":
			if !mechs[d.mech] {
				return fail(fmt.Errorf("%w: server does not offer mechanism %s", ErrProtocol, d.mech))
			}
			nc.SetDeadline(time.Time{})
			if !stop() {
				// ctx ended just now and the AfterFunc ran.
				return fail(ctx.Err())
			}
			c := &authConn{
				nc:           nc,
				log:          d.log,
				created:      time.Now(),
				idle:         d.idle,
				writeTimeout: d.timeout,
				pending:      map[uint32]chan *reply{},
				done:         make(chan struct{}),
				lastUsed:     time.Now(),
			}
			c.mu.Lock()
			c.idleTimer = time.AfterFunc(d.idle, c.idleCheck)
			c.mu.Unlock()
			go c.readLoop(br)
			d.log.Debug("connected to dovecot auth")
			return c, nil
		}
		// SPID, CUID, COOKIE and anything newer are not needed.
	}
}

// authConn is one connection to Dovecot's auth service.
type authConn struct {
	nc        net.Conn
	log       *slog.Logger
	created   time.Time
	idle      time.Duration
	idleTimer *time.Timer // runs idleCheck
	// writeTimeout bounds one write (DovecotOptions.Timeout).
	writeTimeout time.Duration

	wmu sync.Mutex // serializes writes of whole lines

	mu       sync.Mutex
	nextID   uint32
	pending  map[uint32]chan *reply // by request id; each channel has room for one reply
	lastUsed time.Time              // last time a request started or ended
	retired  error                  // set: close once pending is empty
	err      error                  // why the connection broke; nil while usable
	done     chan struct{}          // closed when err is set
}

// idleCheck closes the connection if no request used it for the idle
// timeout, and otherwise checks again when that may be the case.
func (c *authConn) idleCheck() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	wait := c.idle
	if len(c.pending) == 0 {
		wait = c.idle - time.Since(c.lastUsed)
	}
	if wait > 0 {
		c.idleTimer.Reset(wait)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.fail(fmt.Errorf("%w: idle for %v", errRetired, c.idle))
}

// retire takes the connection out of use: it is closed with why as soon
// as no request waits on it.
func (c *authConn) retire(why error) {
	c.mu.Lock()
	if c.retired == nil {
		c.retired = why
	}
	c.mu.Unlock()
	c.closeIfRetired()
}

// closeIfRetired closes a retired connection that has no requests left.
func (c *authConn) closeIfRetired() {
	c.mu.Lock()
	why := c.retired
	empty := len(c.pending) == 0
	c.mu.Unlock()
	if why != nil && empty {
		c.fail(why)
	}
}

// broken reports whether the connection failed.
func (c *authConn) broken() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// fail marks the connection broken with err (the first error wins),
// closes it, and so wakes every waiting request.
func (c *authConn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	n := len(c.pending)
	c.pending = nil
	close(c.done)
	timer := c.idleTimer
	c.mu.Unlock()
	timer.Stop()
	c.nc.Close()
	switch {
	case errors.Is(err, ErrClosed):
	case errors.Is(err, errRetired):
		c.log.Debug("closed the dovecot auth connection", "why", err)
	case n == 0:
		c.log.Info("dovecot auth connection closed", "err", err)
	default:
		c.log.Warn("dovecot auth connection lost", "err", err, "in_flight", n)
	}
}

// readLoop reads replies and hands each to the request waiting for its id.
// A reply for an id nobody waits for (abandoned after a timeout) is
// dropped. Any read or protocol error breaks the connection.
func (c *authConn) readLoop(br *bufio.Reader) {
	for {
		line, err := readLine(br, MaxLineLen, false)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("read: %w", err)
			}
			c.fail(err)
			return
		}
		rep, err := parseReply(line)
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		ch := c.pending[rep.ID]
		delete(c.pending, rep.ID)
		c.lastUsed = time.Now()
		c.mu.Unlock()
		if ch == nil {
			c.log.Debug("dropped a reply nobody waits for", "kind", rep.Kind, "id", rep.ID)
			continue
		}
		ch <- rep
		c.closeIfRetired()
	}
}

// register reserves a request id and the channel its reply will arrive on.
func (c *authConn) register() (uint32, chan *reply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, nil, c.err
	}
	if c.retired != nil {
		return 0, nil, c.retired
	}
	for {
		c.nextID++
		if c.nextID == 0 {
			continue
		}
		if _, busy := c.pending[c.nextID]; !busy {
			break
		}
	}
	ch := make(chan *reply, 1)
	c.pending[c.nextID] = ch
	c.lastUsed = time.Now()
	return c.nextID, ch, nil
}

// forget drops a request's id, so a late reply to it is dropped.
func (c *authConn) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.lastUsed = time.Now()
	c.mu.Unlock()
	c.closeIfRetired()
}

// cause returns the error the connection broke with.
func (c *authConn) cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// writeLine writes one whole line. A request whose context is done by the
// time the writer lock is its turn is not written. The write itself is
// bounded by the connection's write timeout, not by the request's
// deadline: a write that times out breaks the connection for every
// request on it (a partial line would corrupt the stream), which only a
// server that stopped reading deserves.
func (c *authConn) writeLine(ctx context.Context, line []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	_, err := c.nc.Write(line)
	if err != nil {
		err = fmt.Errorf("write: %w", err)
		c.fail(err)
	}
	return err
}

// cancel tells the server to give up on request id (CANCEL TAB <id>),
// best effort: nothing waits for the answer.
func (c *authConn) cancel(id uint32) {
	c.writeLine(context.Background(), []byte("CANCEL\t"+strconv.FormatUint(uint64(id), 10)+"\n"))
}

// auth sends one PLAIN request and waits for its reply:
//
//	AUTH TAB <id> TAB PLAIN TAB service=<s> TAB nologin [TAB secured]
//	     [TAB lip=<a>] TAB rip=<a> [TAB rport=<p>] [TAB session=<s>] TAB resp=<base64(NUL login NUL password)>
//
// sent reports whether the request may have reached the server.
func (c *authConn) auth(ctx context.Context, r *Request) (ok, sent bool, err error) {
	id, ch, err := c.register()
	if err != nil {
		return false, false, err
	}
	line := buildAuth(id, r)
	err = c.writeLine(ctx, line)
	clear(line) // the line holds the password in base64
	if err != nil {
		c.forget(id)
		return false, false, err
	}
	select {
	case rep := <-ch:
		return c.result(id, rep)
	case <-c.done:
		// The reply may have arrived just before the connection broke.
		select {
		case rep := <-ch:
			return c.result(id, rep)
		default:
		}
		return false, true, fmt.Errorf("connection lost while waiting for the reply: %w", c.cause())
	case <-ctx.Done():
		c.forget(id)
		c.cancel(id)
		return false, true, fmt.Errorf("no reply: %w", ctx.Err())
	}
}

// result maps a reply to Verify's answer.
func (c *authConn) result(id uint32, rep *reply) (ok, sent bool, err error) {
	switch rep.Kind {
	case replyOK:
		return true, true, nil
	case replyFail:
		if rep.Temporary() {
			err := ErrTemporary
			if reason := rep.Fields["reason"]; reason != "" {
				err = fmt.Errorf("%w: %s", ErrTemporary, printable(reason, 100))
			}
			return false, true, err
		}
		return false, true, nil
	default: // CONT: PLAIN with an initial response needs no second round.
		c.cancel(id)
		return false, true, fmt.Errorf("%w: unexpected CONT for PLAIN", ErrProtocol)
	}
}

// buildAuth renders the AUTH line for request id. Field values are
// tab-escaped; the credentials travel only inside resp= (base64), which
// Dovecot's PLAIN parses as authzid NUL authcid NUL password.
func buildAuth(id uint32, r *Request) []byte {
	resp := make([]byte, 0, 2+len(r.Login)+len(r.Password))
	resp = append(resp, 0)
	resp = append(resp, r.Login...)
	resp = append(resp, 0)
	resp = append(resp, r.Password...)
	b := make([]byte, 0, 160+base64.StdEncoding.EncodedLen(len(resp)))
	b = append(b, "AUTH\t"...)
	b = strconv.AppendUint(b, uint64(id), 10)
	b = append(b, "\tPLAIN\tservice="...)
	b = appendTabEscaped(b, r.Service)
	b = append(b, "\tnologin"...)
	if r.TLS {
		b = append(b, "\tsecured"...)
	}
	if a := addrString(r.Local); a != "" {
		b = append(b, "\tlip="...)
		b = append(b, a...)
	}
	if a := addrString(r.Client); a != "" {
		b = append(b, "\trip="...)
		b = append(b, a...)
	}
	if r.ClientPort != 0 {
		b = append(b, "\trport="...)
		b = strconv.AppendUint(b, uint64(r.ClientPort), 10)
	}
	if r.Session != "" {
		b = append(b, "\tsession="...)
		b = appendTabEscaped(b, r.Session)
	}
	b = append(b, "\tresp="...)
	b = base64.StdEncoding.AppendEncode(b, resp)
	clear(resp)
	return append(b, '\n')
}

// ctxError puts the context's error in front of an I/O error it caused: a
// deadline set from ctx may fire a moment before ctx itself is done.
func ctxError(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		cerr = context.DeadlineExceeded
	}
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w (%v)", cerr, err)
}

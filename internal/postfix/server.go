package postfix

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// writeTimeout bounds writing one answer. Postfix waits up to
// smtpd_policy_service_timeout (100s) for it, and reads as soon as it
// has sent its request: a write that blocks means a stuck peer.
const writeTimeout = 10 * time.Second

// readBufSize is the read buffer of a connection: a whole policy request
// of Postfix 3.7 (under 1 KiB) or a longest line fits.
const readBufSize = MaxLineLen + 2

// Server runs the policy, socketmap and tcp_table loops around a Handler
// on listeners the caller opens (TCP or unix). One Server may serve any
// number of listeners; Config.MaxConns caps their connections together.
// Build it with NewServer.
type Server struct {
	h   *Handler
	log *slog.Logger

	closing atomic.Bool
	wg      sync.WaitGroup // serve loops and connections

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]*connState
}

// connState is what the server knows of a connection: since when it has
// been waiting for its next request (unix nanoseconds; 0 while a request
// is being answered). When MaxConns are open, the longest-waiting one is
// closed to make room for a new one (see track).
type connState struct {
	idleSince atomic.Int64
}

// NewServer returns a server for h; log receives connection diagnostics
// (nil discards them).
func NewServer(h *Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{h: h, log: log, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]*connState{}}
}

// ErrServerClosed is returned by the Serve methods called after Close.
var ErrServerClosed = errors.New("postfix: server closed")

// ServePolicy serves policy delegation on ln until ln or the server is
// closed; it then returns nil. With relayOnly, every request on ln is a
// relay check, whatever its policy_context.
func (s *Server) ServePolicy(ln net.Listener, relayOnly bool) error {
	return s.serve(ln, func(c net.Conn, st *connState) { s.policyConn(c, st, relayOnly) })
}

// ServeSocketmap serves socketmap lookups on ln until ln or the server is
// closed; it then returns nil.
func (s *Server) ServeSocketmap(ln net.Listener) error {
	return s.serve(ln, s.socketmapConn)
}

// ServeTCPTable serves tcp_table lookups in map mapName (MapRelay,
// MapBlock or MapClient: a tcp_table request names no map) on ln until
// ln or the server is closed; it then returns nil. An unknown mapName is
// an error at once.
func (s *Server) ServeTCPTable(ln net.Listener, mapName string) error {
	switch mapName {
	case MapRelay, MapBlock, MapClient:
	default:
		return fmt.Errorf("tcp_table on %s: map %q: %w", ln.Addr(), clip(mapName), ErrUnknownMap)
	}
	return s.serve(ln, func(c net.Conn, st *connState) { s.tcpConn(c, st, mapName) })
}

// Close stops every listener, ends every connection once its current
// answer is written, and waits for the serve loops and connections to
// finish.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.mu.Lock()
	var err error
	for ln := range s.listeners {
		if e := ln.Close(); e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	for c := range s.conns {
		// Wakes a connection waiting for a request; one answering
		// finishes, then sees closing (policyConn's loop).
		c.SetReadDeadline(time.Unix(1, 0))
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *Server) serve(ln net.Listener, conn func(net.Conn, *connState)) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		s.wg.Done()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !temporary(err) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("postfix: accept failed; retrying", "listener", ln.Addr().String(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		st := s.track(c)
		if st == nil {
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			conn(c, st)
		}()
	}
}

// temporary reports whether an accept error passes (out of file
// descriptors or memory, a connection reset before it was accepted).
func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// track registers a new connection and returns its state; nil when the
// server is closing. When MaxConns connections are open, the one that has
// waited longest for its next request is closed to make room: a local
// process holding idle connections must not lock Postfix out (Postfix
// would then skip the account rules and sending limits, or defer mail),
// and an smtpd whose connection was closed simply reconnects. Only when
// every connection is in the middle of an answer is the new one refused.
func (s *Server) track(c net.Conn) *connState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	if len(s.conns) >= s.h.maxConns {
		var victim net.Conn
		var oldest int64
		for vc, st := range s.conns {
			if since := st.idleSince.Load(); since != 0 && (victim == nil || since < oldest) {
				victim, oldest = vc, since
			}
		}
		if victim == nil {
			s.h.diag(s.h.now(), "postfix: too many connections, all busy; closing the new one (raise max_connections)",
				"open", len(s.conns), "max", s.h.maxConns, "remote", remote(c))
			return nil
		}
		s.h.diag(s.h.now(), "postfix: too many connections; closing the longest idle one to make room (raise max_connections if this is Postfix itself)",
			"open", len(s.conns), "max", s.h.maxConns, "closed", remote(victim), "idle", time.Since(time.Unix(0, oldest)).Round(time.Second).String())
		delete(s.conns, victim) // its goroutine's untrack finds it gone
		victim.Close()
	}
	st := &connState{}
	st.idleSince.Store(time.Now().UnixNano())
	s.conns[c] = st
	s.wg.Add(1)
	return st
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// awaitRequest marks c idle and sets the idle deadline for the next
// request; it is false when the server is closing. The deadline is set
// before closing is checked, so that Close's past deadline, set after
// closing, wins. A request is answered between busy and the next
// awaitRequest.
func (s *Server) awaitRequest(c net.Conn, st *connState) bool {
	now := time.Now()
	st.idleSince.Store(now.UnixNano())
	c.SetReadDeadline(now.Add(s.h.idle))
	return !s.closing.Load()
}

// busy marks a connection as answering a request: it is not closed to
// make room for another.
func (st *connState) busy() { st.idleSince.Store(0) }

// answer writes p, and flushes unless the peer has sent more requests
// already (pipelining; Postfix waits for each answer). Every write to c
// gets a fresh deadline: the one of an earlier answer may be long past.
func answer(c net.Conn, br *bufio.Reader, bw *bufio.Writer, p []byte) error {
	flush := br.Buffered() == 0
	if flush || bw.Available() < len(p) {
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
	}
	if _, err := bw.Write(p); err != nil {
		return err
	}
	if flush {
		return bw.Flush()
	}
	return nil
}

// finish writes the answers still buffered when a connection ends (to
// pipelined requests before a broken one, or a tcp_table 400).
func finish(c net.Conn, bw *bufio.Writer) {
	if bw.Buffered() > 0 {
		c.SetWriteDeadline(time.Now().Add(writeTimeout))
		bw.Flush()
	}
}

// policyConn answers policy requests on c until it closes, idles out,
// or breaks the protocol; a broken request gets no answer (protocols.md
// §3.1).
func (s *Server) policyConn(c net.Conn, st *connState, relayOnly bool) {
	br := bufio.NewReaderSize(c, readBufSize)
	bw := bufio.NewWriterSize(c, 512)
	defer finish(c, bw)
	var r Request
	var out []byte
	for s.awaitRequest(c, st) {
		if err := ReadRequest(br, &r); err != nil {
			s.connEnd(c, "policy", err)
			return
		}
		st.busy()
		t0 := time.Now()
		action := s.h.Policy(&r, relayOnly, s.h.now())
		out = append(append(append(out[:0], "action="...), action...), "\n\n"...)
		if err := answer(c, br, bw, out); err != nil {
			s.connEnd(c, "policy", err)
			return
		}
		s.latency(t0)
	}
}

func (s *Server) socketmapConn(c net.Conn, st *connState) {
	br := bufio.NewReaderSize(c, 1024)
	bw := bufio.NewWriterSize(c, 512)
	defer finish(c, bw)
	var req, out []byte
	for s.awaitRequest(c, st) {
		payload, err := readNetstring(br, req, MaxSocketmapRequest)
		if err != nil {
			s.connEnd(c, "socketmap", err)
			return
		}
		req = payload
		st.busy()
		t0 := time.Now()
		out = appendNetstring(out[:0], s.h.socketmapReply(payload, s.h.now()))
		if err := answer(c, br, bw, out); err != nil {
			s.connEnd(c, "socketmap", err)
			return
		}
		s.latency(t0)
	}
}

func (s *Server) tcpConn(c net.Conn, st *connState, mapName string) {
	br := bufio.NewReaderSize(c, 1024)
	bw := bufio.NewWriterSize(c, 512)
	defer finish(c, bw)
	var line, out []byte
	for s.awaitRequest(c, st) {
		l, err := readTCPLine(br, line)
		if err != nil {
			s.connEnd(c, "tcp_table", err)
			return
		}
		line = l
		st.busy()
		t0 := time.Now()
		reply := s.h.tcpReply(l, mapName, s.h.now())
		out = append(append(out[:0], reply...), '\n')
		if err := answer(c, br, bw, out); err != nil {
			s.connEnd(c, "tcp_table", err)
			return
		}
		s.latency(t0)
		if reply[0] == '4' {
			return // Postfix disconnects after a 400 (dict_tcp.c); finish flushes it
		}
	}
}

// latency reports the time since t0 to Config.Latency, if set.
func (s *Server) latency(t0 time.Time) {
	if f := s.h.latency; f != nil {
		f(time.Since(t0))
	}
}

// connEnd logs why a connection ends: quietly for a peer that closed
// or went idle, or for a server closing; with a warning for a protocol
// violation.
func (s *Server) connEnd(c net.Conn, door string, err error) {
	switch {
	case err == io.EOF || errors.Is(err, net.ErrClosed):
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !s.closing.Load() {
			s.log.Debug("postfix: closing an idle connection", "door", door, "remote", remote(c), "idle", s.h.idle)
		}
	case errors.Is(err, ErrLineTooLong), errors.Is(err, ErrTooManyAttributes), errors.Is(err, ErrRequestTooLarge),
		errors.Is(err, ErrMalformed), errors.Is(err, ErrNetstring), errors.Is(err, ErrTCPLineTooLong), err == io.ErrUnexpectedEOF:
		s.h.diag(s.h.now(), "postfix: protocol violation; closing the connection without an answer",
			"door", door, "remote", remote(c), "err", err.Error())
	default:
		s.log.Debug("postfix: connection ended", "door", door, "remote", remote(c), "err", err)
	}
}

// remote names a connection's peer for the log; a unix socket's peer
// usually has no name.
func remote(c net.Conn) string {
	a := c.RemoteAddr()
	if a == nil {
		return "unknown"
	}
	if s := a.String(); s != "" && s != "@" {
		return s
	}
	return a.Network()
}

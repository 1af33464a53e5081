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
	conns     map[net.Conn]struct{}
}

// NewServer returns a server for h; log receives connection diagnostics
// (nil discards them).
func NewServer(h *Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{h: h, log: log, listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// ErrServerClosed is returned by the Serve methods called after Close.
var ErrServerClosed = errors.New("postfix: server closed")

// ServePolicy serves policy delegation on ln until ln or the server is
// closed; it then returns nil. With relayOnly, every request on ln is a
// relay check, whatever its policy_context.
func (s *Server) ServePolicy(ln net.Listener, relayOnly bool) error {
	return s.serve(ln, func(c net.Conn) { s.policyConn(c, relayOnly) })
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
	return s.serve(ln, func(c net.Conn) { s.tcpConn(c, mapName) })
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

func (s *Server) serve(ln net.Listener, conn func(net.Conn)) error {
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
		if !s.track(c) {
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			conn(c)
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

// track registers a new connection; it is false when the server is
// closing or MaxConns connections are open.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if len(s.conns) >= s.h.maxConns {
		s.h.diag(s.h.now(), "postfix: too many connections; closing the new one (raise max_conns, or lower Postfix's process limits)",
			"open", len(s.conns), "max", s.h.maxConns, "remote", remote(c))
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// awaitRequest sets the idle deadline for the next request; it is false
// when the server is closing. The deadline is set before closing is
// checked, so that Close's past deadline, set after closing, wins.
func (s *Server) awaitRequest(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(s.h.idle))
	return !s.closing.Load()
}

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
func (s *Server) policyConn(c net.Conn, relayOnly bool) {
	br := bufio.NewReaderSize(c, readBufSize)
	bw := bufio.NewWriterSize(c, 512)
	defer finish(c, bw)
	var r Request
	var out []byte
	for s.awaitRequest(c) {
		if err := ReadRequest(br, &r); err != nil {
			s.connEnd(c, "policy", err)
			return
		}
		action := s.h.Policy(&r, relayOnly, s.h.now())
		out = append(append(append(out[:0], "action="...), action...), "\n\n"...)
		if err := answer(c, br, bw, out); err != nil {
			s.connEnd(c, "policy", err)
			return
		}
	}
}

func (s *Server) socketmapConn(c net.Conn) {
	br := bufio.NewReaderSize(c, 1024)
	bw := bufio.NewWriterSize(c, 512)
	defer finish(c, bw)
	var req, out []byte
	for s.awaitRequest(c) {
		payload, err := readNetstring(br, req, MaxSocketmapRequest)
		if err != nil {
			s.connEnd(c, "socketmap", err)
			return
		}
		req = payload
		out = appendNetstring(out[:0], s.h.socketmapReply(payload, s.h.now()))
		if err := answer(c, br, bw, out); err != nil {
			s.connEnd(c, "socketmap", err)
			return
		}
	}
}

func (s *Server) tcpConn(c net.Conn, mapName string) {
	br := bufio.NewReaderSize(c, 1024)
	bw := bufio.NewWriterSize(c, 512)
	defer finish(c, bw)
	var line, out []byte
	for s.awaitRequest(c) {
		l, err := readTCPLine(br, line)
		if err != nil {
			s.connEnd(c, "tcp_table", err)
			return
		}
		line = l
		reply := s.h.tcpReply(l, mapName, s.h.now())
		out = append(append(out[:0], reply...), '\n')
		if err := answer(c, br, bw, out); err != nil {
			s.connEnd(c, "tcp_table", err)
			return
		}
		if reply[0] == '4' {
			return // Postfix disconnects after a 400 (dict_tcp.c); finish flushes it
		}
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

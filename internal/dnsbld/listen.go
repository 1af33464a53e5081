package dnsbld

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// Limits of the listener.
const (
	// MaxQuery is the largest query read: one question of at most 255
	// bytes and an EDNS OPT record fit with room to spare. A longer UDP
	// datagram is cut at this size and fails to parse; a longer TCP
	// message closes the connection.
	MaxQuery = 1232
	// MaxTCPConns bounds the TCP connections served at once; more wait
	// in the kernel's backlog.
	MaxTCPConns = 256
	// maxTCPQueries bounds the queries on one TCP connection.
	maxTCPQueries = 128
)

// Server is the DNSBL listener: UDP and TCP on one address.
type Server struct {
	h    *Handler
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	pc   net.PacketConn
	ln   net.Listener
}

// Listen binds addr (host:port) for UDP and TCP. Port 0 picks a port free
// for both.
func Listen(addr string, h *Handler) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dnsbl listen %q: %w", addr, err)
	}
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dnsbl listen (tcp): %w", err)
		}
		p := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, p))
		if err != nil {
			ln.Close()
			if port == "0" && try < 10 { // the UDP port is taken: try another
				continue
			}
			return nil, fmt.Errorf("dnsbl listen (udp): %w", err)
		}
		return newServer(h, ln, pc), nil
	}
}

func newServer(h *Handler, ln net.Listener, pc net.PacketConn) *Server {
	s := &Server{h: h, addr: ln.Addr().String(), pc: pc, ln: netutil.LimitListener(ln, MaxTCPConns)}
	common := func(d *dns.Server) *dns.Server {
		d.Handler = h
		d.MsgAcceptFunc = acceptQuery
		d.ReadTimeout = 2 * time.Second
		d.WriteTimeout = 2 * time.Second
		d.DecorateReader = func(r dns.Reader) dns.Reader { return sizedReader{r} }
		d.DecorateWriter = func(w dns.Writer) dns.Writer { return strangerFilter{w, h} }
		return d
	}
	// One byte over the limit: a datagram that fills the buffer was cut.
	s.udp = common(&dns.Server{PacketConn: pc, UDPSize: MaxQuery + 1})
	s.tcp = common(&dns.Server{Listener: s.ln, MaxTCPQueries: maxTCPQueries,
		IdleTimeout: func() time.Duration { return 8 * time.Second }})
	return s
}

// Addr is the address listened on (host:port, the port chosen).
func (s *Server) Addr() string { return s.addr }

// AddrPort is Addr parsed.
func (s *Server) AddrPort() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(s.addr)
	return ap
}

// Serve answers on both sockets until Shutdown. When either fails, it
// stops the other and returns the error (nil after Shutdown).
func (s *Server) Serve() error {
	errc := make(chan error, 2)
	for _, d := range []*dns.Server{s.udp, s.tcp} {
		go func() { errc <- d.ActivateAndServe() }()
	}
	err := <-errc
	if err != nil {
		err = fmt.Errorf("dnsbl server %s: %w", s.addr, err)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}
	return errors.Join(err, <-errc)
}

// Shutdown stops both listeners; queries in flight finish within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, d := range []*dns.Server{s.udp, s.tcp} {
		// "server not started": Shutdown before Serve (serve returned
		// early): the sockets Listen opened are closed here, or they would
		// stay bound until the process ends.
		err := d.ShutdownContext(ctx)
		if err != nil && err.Error() == "dns: server not started" {
			if d.Listener != nil {
				d.Listener.Close()
			}
			if d.PacketConn != nil {
				d.PacketConn.Close()
			}
			err = nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// addrOf is the client's address of a UDP or TCP peer.
func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// acceptQuery lets through a query of one question, with at most one
// additional record (EDNS OPT): no update, no notify, no answer or
// authority records.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	switch {
	case dh.Bits&qr != 0:
		return dns.MsgIgnore
	case int(dh.Bits>>11)&0xF != dns.OpcodeQuery:
		return dns.MsgRejectNotImplemented
	case dh.Qdcount != 1, dh.Ancount != 0, dh.Nscount != 0, dh.Arcount > 1:
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// sizedReader drops queries over MaxQuery: a TCP one closes the
// connection, a UDP one (cut at MaxQuery+1 bytes by the read) is skipped.
type sizedReader struct{ dns.Reader }

func (r sizedReader) ReadTCP(conn net.Conn, timeout time.Duration) ([]byte, error) {
	m, err := r.Reader.ReadTCP(conn, timeout)
	if err == nil && len(m) > MaxQuery {
		return nil, fmt.Errorf("dnsbl: a %d-byte query over TCP (the limit is %d)", len(m), MaxQuery)
	}
	return m, err
}

func (r sizedReader) ReadUDP(conn *net.UDPConn, timeout time.Duration) ([]byte, *dns.SessionUDP, error) {
	for {
		m, s, err := r.Reader.ReadUDP(conn, timeout)
		if err != nil || len(m) <= MaxQuery {
			return m, s, err
		}
	}
}

// strangerFilter drops every reply to a client outside the allow list
// but REFUSED. The handler answers strangers REFUSED; miekg/dns itself
// answers a query it cannot parse or accept (FORMERR, NOTIMP) before the
// handler runs, and a stranger must not get those either.
type strangerFilter struct {
	dns.Writer
	h *Handler
}

func (f strangerFilter) Write(b []byte) (int, error) {
	if ra, ok := f.Writer.(interface{ RemoteAddr() net.Addr }); ok && !f.h.set.Load().allowed(addrOf(ra.RemoteAddr())) {
		if len(b) < 4 || int(b[3]&0xf) != dns.RcodeRefused {
			return len(b), nil
		}
	}
	return f.Writer.Write(b)
}

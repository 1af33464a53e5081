package dnsbl

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestNetExchanger asks an in-process DNS server on real loopback sockets
// (UDP and TCP on one port): an IPv6 client's nibble name, and an answer
// too big for UDP that is asked again over TCP.
func TestNetExchanger(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	v6 := netip.MustParseAddr("2001:db8::7")
	var udp, tcp atomic.Int32
	mux := dns.NewServeMux()
	mux.HandleFunc("bl.example.", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		name := r.Question[0].Name
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			tcp.Add(1)
		} else {
			udp.Add(1)
		}
		switch name {
		case QueryName(v6, "bl.example"):
			rr, _ := dns.NewRR(name + " 120 IN A 127.0.0.2")
			m.Answer = append(m.Answer, rr)
		case QueryName(netip.MustParseAddr("192.0.2.1"), "bl.example"):
			// 60 records: too big for 512 bytes of UDP.
			for i := range 60 {
				rr, _ := dns.NewRR(name + " 120 IN A 127.0.1." + itoa(uint32(i)))
				m.Answer = append(m.Answer, rr)
			}
			if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
				m.Answer, m.Truncated = nil, true
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	us := &dns.Server{PacketConn: pc, Handler: mux}
	ts := &dns.Server{Listener: ln, Handler: mux}
	go us.ActivateAndServe()
	go ts.ActivateAndServe()
	defer us.Shutdown()
	defer ts.Shutdown()

	zs, _ := ParseZones([]string{"bl.example=127.0.[0..1].[0..255]*2"})
	c, err := New(Config{Zones: zs, Resolver: pc.LocalAddr().String(), Budget: 5 * time.Second, Timeout: 5 * time.Second}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if r := c.Check(ctx, v6, t0); r.Score != 2 || r.Answers[0].TTL != 120*time.Second {
		t.Errorf("IPv6 client: %+v", r)
	}
	r := c.Check(ctx, netip.MustParseAddr("192.0.2.1"), t0)
	if r.Score != 2 || len(r.Answers[0].Codes) != 8 {
		t.Errorf("truncated answer: score %d, %d codes kept (want 8 of 60)", r.Score, len(r.Answers[0].Codes))
	}
	if tcp.Load() != 1 {
		t.Errorf("%d TCP queries, want 1 (the truncated answer)", tcp.Load())
	}
	if r := c.Check(ctx, netip.MustParseAddr("192.0.2.2"), t0); r.Score != 0 || r.Answers[0].Status != NotListed {
		t.Errorf("NXDOMAIN: %+v", r)
	}
}

package dnsbld

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailgate/internal/dnsbl"
)

// RFC 5782 §5: a DNSBL lists the test point 127.0.0.2 and never
// 127.0.0.1. Another mailgate's [dnsbl] health check asks exactly that
// (127.0.0.2 must be listed), and so do admins checking postscreen: the
// zone must pass it with no ban in place.
func TestTestPoint(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  string
	}{
		{"2.0.0.127.bans.mailgate.local.", dns.TypeA, dns.RcodeSuccess, "127.0.0.2"},
		{"2.0.0.127.bans.mailgate.local.", dns.TypeTXT, dns.RcodeSuccess, "mailgate: test point (RFC 5782), not a ban"},
		{"1.0.0.127.bans.mailgate.local.", dns.TypeA, dns.RcodeNameError, ""},
	} {
		resp, _ := h.Answer(query(tc.name, tc.qtype), local, true, t0)
		if resp.Rcode != tc.rcode {
			t.Errorf("%s %s: rcode %s, want %s", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			continue
		}
		got := ""
		if len(resp.Answer) == 1 {
			switch rr := resp.Answer[0].(type) {
			case *dns.A:
				got = rr.A.String()
			case *dns.TXT:
				got = rr.Txt[0]
			}
		}
		if got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.name, dns.TypeToString[tc.qtype], got, tc.want)
		}
	}

	// The real listener, asked by mailgate's own DNSBL client.
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	zones, err := dnsbl.ParseZones([]string{"bans.mailgate.local=127.0.0.[2..3]*3"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := dnsbl.New(dnsbl.Config{Zones: zones, Resolver: srv.Addr(), Timeout: time.Second, Budget: 1900 * time.Millisecond}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hs []dnsbl.ZoneHealth
	for try := 0; try < 50; try++ { // Serve may not have started reading yet
		if hs = c.CheckHealth(context.Background(), time.Now()); len(hs) == 1 && hs[0].OK {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(hs) != 1 || !hs[0].OK {
		t.Fatalf("another mailgate's health check of this zone: %+v", hs)
	}
}

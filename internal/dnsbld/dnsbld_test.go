package dnsbld

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"mailgate/internal/abuse"
)

var (
	t0     = time.Date(2026, 12, 5, 19, 0, 0, 0, time.UTC)
	local  = netip.MustParseAddr("127.0.0.1")
	remote = netip.MustParseAddr("192.0.2.99")
)

func testConfig() Config {
	return Config{Zone: "bans.mailgate.local", TTL: time.Minute,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, Rate: 100}
}

// newTestHandler serves the bans of a real tracker: 192.0.2.7 (automatic,
// 10 minutes), 198.51.100.0/24 (by hand, no end), 2001:db8:1:2::/64, and a
// login ban of alice@example.com.
func newTestHandler(t testing.TB) (*Handler, *abuse.Tracker) {
	t.Helper()
	tr := abuse.New(abuse.DefaultConfig())
	for _, b := range []abuse.Ban{
		{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("192.0.2.7/32"), Reason: abuse.ReasonAddrFailures, Created: t0, Expires: t0.Add(10 * time.Minute)},
		{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("198.51.100.0/24"), Comment: "customer 4711 alice@example.com", CreatedBy: "root"},
		{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix("2001:db8:1:2::/64"), Reason: abuse.ReasonAddrFailures, Created: t0, Expires: t0.Add(time.Hour)},
		{Kind: abuse.BanLogin, Login: "alice@example.com", Reason: abuse.ReasonLoginAttack, Created: t0, Expires: t0.Add(time.Hour)},
	} {
		if _, err := tr.AddBan(b, t0); err != nil {
			t.Fatal(err)
		}
	}
	h, err := NewHandler(testConfig(), Bans{tr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h, tr
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func TestAnswer(t *testing.T) {
	h, _ := newTestHandler(t)
	v6 := "3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bans.mailgate.local."
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		client  netip.Addr
		rcode   int
		outcome Outcome
		answer  string // the first answer record's data; "" for none
		ttl     uint32 // of the first answer, when not 0
		soa     bool   // an SOA in the authority section
	}{
		{"listed v4 A", "7.2.0.192.bans.mailgate.local.", dns.TypeA, local, dns.RcodeSuccess, Listed, "127.0.0.2", 60, false},
		{"listed v4 TXT", "7.2.0.192.bans.mailgate.local.", dns.TypeTXT, local, dns.RcodeSuccess, Listed,
			`"mailgate: address ban (addr_failures) of 192.0.2.7/32 until 2026-12-05T19:10:00Z"`, 60, false},
		{"listed v4 upper case", "7.2.0.192.BANS.Mailgate.LOCAL.", dns.TypeA, local, dns.RcodeSuccess, Listed, "127.0.0.2", 0, false},
		{"inside a banned network", "200.100.51.198.bans.mailgate.local.", dns.TypeA, local, dns.RcodeSuccess, Listed, "127.0.0.2", 60, false},
		{"network TXT names no comment or actor", "1.100.51.198.bans.mailgate.local.", dns.TypeTXT, local, dns.RcodeSuccess, Listed,
			`"mailgate: address ban (manual) of 198.51.100.0/24 until lifted"`, 0, false},
		{"listed v6 nibbles", v6, dns.TypeA, local, dns.RcodeSuccess, Listed, "127.0.0.2", 0, false},
		{"listed v6 from ::1", v6, dns.TypeA, netip.IPv6Loopback(), dns.RcodeSuccess, Listed, "127.0.0.2", 0, false},
		{"listed, other type: NODATA", "7.2.0.192.bans.mailgate.local.", dns.TypeMX, local, dns.RcodeSuccess, Listed, "", 0, true},
		{"listed, ANY: the A alone", "7.2.0.192.bans.mailgate.local.", dns.TypeANY, local, dns.RcodeSuccess, Listed, "127.0.0.2", 0, false},
		{"not listed", "8.2.0.192.bans.mailgate.local.", dns.TypeA, local, dns.RcodeNameError, NotListed, "", 0, true},
		{"not listed v6", "4.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.3.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bans.mailgate.local.", dns.TypeA, local, dns.RcodeNameError, NotListed, "", 0, true},
		{"not an address", "www.bans.mailgate.local.", dns.TypeA, local, dns.RcodeNameError, NotListed, "", 0, true},
		{"three labels", "2.0.192.bans.mailgate.local.", dns.TypeA, local, dns.RcodeNameError, NotListed, "", 0, true},
		{"a login is never a name", "alice@example.com.bans.mailgate.local.", dns.TypeA, local, dns.RcodeNameError, NotListed, "", 0, true},
		{"apex SOA", "bans.mailgate.local.", dns.TypeSOA, local, dns.RcodeSuccess, Apex, "localhost. hostmaster.bans.mailgate.local. 1796497200 3600 600 86400 60", 60, false},
		{"apex NS", "bans.mailgate.local.", dns.TypeNS, local, dns.RcodeSuccess, Apex, "localhost.", 60, false},
		{"apex A: NODATA", "bans.mailgate.local.", dns.TypeA, local, dns.RcodeSuccess, Apex, "", 0, true},
		{"outside the zone", "7.2.0.192.zen.spamhaus.org.", dns.TypeA, local, dns.RcodeRefused, Refused, "", 0, false},
		{"a suffix is not the zone", "7.2.0.192.xbans.mailgate.local.", dns.TypeA, local, dns.RcodeRefused, Refused, "", 0, false},
		{"zone transfer", "bans.mailgate.local.", dns.TypeAXFR, local, dns.RcodeRefused, Refused, "", 0, false},
		{"client not allowed", "7.2.0.192.bans.mailgate.local.", dns.TypeA, remote, dns.RcodeRefused, Refused, "", 0, false},
		{"client not allowed, apex", "bans.mailgate.local.", dns.TypeSOA, remote, dns.RcodeRefused, Refused, "", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := query(tc.qname, tc.qtype)
			resp, o := h.Answer(req, tc.client, true, t0)
			if resp.Rcode != tc.rcode || o != tc.outcome {
				t.Fatalf("rcode %s, outcome %s; want %s, %s\n%v", dns.RcodeToString[resp.Rcode], o, dns.RcodeToString[tc.rcode], tc.outcome, resp)
			}
			if resp.Id != req.Id || !resp.Response || resp.RecursionAvailable {
				t.Errorf("id %d (want %d), response %v, RA %v", resp.Id, req.Id, resp.Response, resp.RecursionAvailable)
			}
			if tc.rcode == dns.RcodeRefused {
				if len(resp.Answer)+len(resp.Ns) > 0 || resp.Authoritative {
					t.Errorf("a refusal with records or AA:\n%v", resp)
				}
				if tc.client == remote && len(resp.Question) > 0 {
					t.Errorf("a stranger's refusal echoes the question")
				}
				return
			}
			if !resp.Authoritative {
				t.Error("not authoritative")
			}
			if tc.answer == "" {
				if len(resp.Answer) > 0 {
					t.Errorf("answers %v, want none", resp.Answer)
				}
			} else {
				if len(resp.Answer) != 1 {
					t.Fatalf("%d answers, want 1:\n%v", len(resp.Answer), resp)
				}
				rr := resp.Answer[0]
				data := strings.TrimPrefix(rr.String(), rr.Header().String())
				if data != tc.answer {
					t.Errorf("answer %q, want %q", data, tc.answer)
				}
				if tc.ttl != 0 && rr.Header().Ttl != tc.ttl {
					t.Errorf("ttl %d, want %d", rr.Header().Ttl, tc.ttl)
				}
				if rr.Header().Name != tc.qname {
					t.Errorf("owner %q, want the question's %q", rr.Header().Name, tc.qname)
				}
			}
			hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != tc.soa {
				t.Errorf("SOA in authority: %v, want %v\n%v", hasSOA, tc.soa, resp)
			}
			if hasSOA && resp.Ns[0].(*dns.SOA).Minttl != 60 {
				t.Errorf("negative-caching TTL %d, want 60", resp.Ns[0].(*dns.SOA).Minttl)
			}
			records := fmt.Sprint(resp.Answer, resp.Ns, resp.Extra)
			if strings.Contains(records, "alice") || strings.Contains(records, "4711") || strings.Contains(records, "root") {
				t.Errorf("the answer leaks a login, a comment or an actor:\n%v", resp)
			}
			if b, err := resp.Pack(); err != nil || len(b) > dns.MinMsgSize {
				t.Errorf("packs to %d bytes (%v), want at most 512", len(b), err)
			}
		})
	}
}

// A listing is not cached past the ban's end, and an ended ban is not
// listed even before the tracker's Expire runs.
func TestAnswerTTLFollowsBanEnd(t *testing.T) {
	h, tr := newTestHandler(t)
	req := query("7.2.0.192.bans.mailgate.local.", dns.TypeA)
	resp, _ := h.Answer(req, local, true, t0.Add(10*time.Minute-25*time.Second))
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 25 {
		t.Fatalf("5 minutes... 25 s before the end: %v", resp)
	}
	resp, _ = h.Answer(req, local, true, t0.Add(10*time.Minute))
	if resp.Rcode != dns.RcodeNameError {
		t.Fatalf("at the ban's end: %v", resp)
	}
	// Lifted by hand: no longer listed.
	if n := len(tr.RemoveBansFor(netip.MustParsePrefix("198.51.100.0/24"), "")); n != 1 {
		t.Fatalf("lifted %d bans", n)
	}
	resp, _ = h.Answer(query("1.100.51.198.bans.mailgate.local.", dns.TypeA), local, true, t0)
	if resp.Rcode != dns.RcodeNameError {
		t.Fatalf("after the ban was lifted: %v", resp)
	}
}

func TestAutobanTable(t *testing.T) {
	var tab Table
	h, err := NewHandler(testConfig(), Lookups{Bans{abuse.New(abuse.DefaultConfig())}, &tab}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := query("9.113.0.203.bans.mailgate.local.", dns.TypeA)
	if resp, _ := h.Answer(req, local, true, t0); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("empty table: %v", resp)
	}
	tab.Replace([]Listing{{Prefix: netip.MustParsePrefix("203.0.113.9/32"), Source: Autoban, Expires: t0.Add(time.Hour)}})
	resp, o := h.Answer(req, local, true, t0)
	if o != Listed || len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "127.0.0.3" {
		t.Fatalf("autoban: %v", resp)
	}
	resp, _ = h.Answer(query("9.113.0.203.bans.mailgate.local.", dns.TypeTXT), local, true, t0)
	if got := resp.Answer[0].(*dns.TXT).Txt[0]; got != "mailgate: firewall autoban (connection rate) of 203.0.113.9/32 until 2026-12-05T20:00:00Z" {
		t.Errorf("TXT %q", got)
	}
	tab.Replace(nil)
	if resp, _ := h.Answer(req, local, true, t0); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("after the autoban ended: %v", resp)
	}
}

func TestEDNSAndTruncation(t *testing.T) {
	h, _ := newTestHandler(t)
	req := query("1.100.51.198.bans.mailgate.local.", dns.TypeTXT)
	req.SetEdns0(4096, false)
	resp, _ := h.Answer(req, local, true, t0)
	if resp.IsEdns0() == nil || resp.IsEdns0().UDPSize() != maxUDP {
		t.Errorf("EDNS answer without OPT %d: %v", maxUDP, resp)
	}
	// A name with a long zone, a TXT over UDP without EDNS: at most 512.
	long := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60)
	c := testConfig()
	c.Zone = long
	if err := h.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	resp, _ = h.Answer(query("1.100.51.198."+long+".", dns.TypeTXT), local, true, t0)
	if b, _ := resp.Pack(); len(b) > dns.MinMsgSize {
		t.Errorf("UDP answer of %d bytes", len(b))
	}
}

func TestSetConfig(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, bad := range []Config{
		{Zone: "", TTL: time.Minute},
		{Zone: "local", TTL: time.Minute},
		{Zone: "bans..local", TTL: time.Minute},
		{Zone: "bans.mail gate.local", TTL: time.Minute},
		{Zone: "bans.mailgate.local", TTL: 0},
		{Zone: "bans.mailgate.local", TTL: 2 * time.Hour},
		{Zone: "bans.mailgate.local", TTL: 1500 * time.Millisecond},
		{Zone: "bans.mailgate.local", TTL: time.Minute, Rate: -1},
		{Zone: strings.Repeat("a.", 100) + "local", TTL: time.Minute},
	} {
		if err := h.SetConfig(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if h.Zone() != "bans.mailgate.local." {
		t.Fatalf("a refused config changed the zone to %q", h.Zone())
	}
	c := testConfig()
	c.Zone, c.Allow = "DNSBL.Example.NET.", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	if err := h.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	if resp, _ := h.Answer(query("7.2.0.192.dnsbl.example.net.", dns.TypeA), remote, true, t0); len(resp.Answer) != 1 {
		t.Fatalf("after the reload: %v", resp)
	}
	if resp, _ := h.Answer(query("7.2.0.192.dnsbl.example.net.", dns.TypeA), local, true, t0); resp.Rcode != dns.RcodeRefused {
		t.Fatalf("loopback left the allow list, still answered: %v", resp)
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter()
	a, b := netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("127.0.0.6")
	n := 0
	for l.allow(a, 10, t0) {
		n++
		if n > 100 {
			t.Fatal("no limit")
		}
	}
	if n != 10 {
		t.Errorf("burst %d, want 10", n)
	}
	if !l.allow(b, 10, t0) {
		t.Error("another client is limited too")
	}
	if !l.allow(a, 10, t0.Add(100*time.Millisecond)) || l.allow(a, 10, t0.Add(100*time.Millisecond)) {
		t.Error("one token per 1/rate")
	}
	// IPv6 clients share their /64.
	v1, v2 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	for range 10 {
		l.allow(v1, 10, t0)
	}
	if l.allow(v2, 10, t0) {
		t.Error("a second address of the /64 has its own bucket")
	}
	if !l.allow(a, 0, t0) {
		t.Error("rate 0 limits")
	}
}

func TestParseName(t *testing.T) {
	v6 := "3.2.1.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
	for in, want := range map[string]string{
		"4.3.2.1":           "1.2.3.4",
		"4.3.2.1.":          "1.2.3.4",
		"255.0.0.10":        "10.0.0.255",
		v6:                  "2001:db8:1:2::123",
		strings.ToUpper(v6): "2001:db8:1:2::123",
		"4.0.0.0.1.0.0.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0": "0.1.0.4", // mapped: the IPv4 address
		"4.3.2":                          "",
		"5.4.3.2.1":                      "",
		"04.3.2.1":                       "",
		"256.3.2.1":                      "",
		"4.3..1":                         "",
		"4.3.2.1..":                      "",
		"a.3.2.1":                        "",
		"-1.3.2.1":                       "",
		"":                               "",
		v6 + ".0":                        "",
		v6[2:]:                           "",
		"3." + v6[2:60] + "00":           "",
		strings.Replace(v6, "b", "g", 1): "",
		strings.Replace(v6, ".", "-", 1): "",
	} {
		a, ok := ParseName(in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != want {
			t.Errorf("ParseName(%q) = %q, want %q", in, got, want)
		}
	}
}

// The real listener: UDP and TCP on one port, counted.
func TestListenUDPAndTCP(t *testing.T) {
	h, _ := newTestHandler(t)
	h.now = func() time.Time { return t0 }
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
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 5 * time.Second}
		var resp *dns.Msg
		for try := 0; ; try++ { // Serve may not have started reading yet
			resp, _, err = c.Exchange(query("7.2.0.192.bans.mailgate.local.", dns.TypeA), srv.Addr())
			if err == nil || try == 50 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
			t.Fatalf("%s: %v", network, resp)
		}
		resp, _, err = c.Exchange(query("8.2.0.192.bans.mailgate.local.", dns.TypeA), srv.Addr())
		if err != nil || resp.Rcode != dns.RcodeNameError {
			t.Fatalf("%s unlisted: %v %v", network, resp, err)
		}
	}
	st := h.Stats()
	if st.Get(Listed) != 2 || st.Get(NotListed) != 2 {
		t.Errorf("stats %v", st)
	}
}

// A UDP client over the rate gets no answer at all.
func TestListenRateLimit(t *testing.T) {
	h, _ := newTestHandler(t)
	c := testConfig()
	c.Rate = 3
	if err := h.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	h.now = func() time.Time { return t0 } // no token comes back
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	cl := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond}
	answered := 0
	for range 6 {
		if _, _, err := cl.Exchange(query("7.2.0.192.bans.mailgate.local.", dns.TypeA), srv.Addr()); err == nil {
			answered++
		}
	}
	if answered != 3 {
		t.Errorf("%d of 6 answered at rate 3 with no time passing, want 3", answered)
	}
	if n := h.Stats().Get(RateLimited); n != 3 {
		t.Errorf("%d rate limited, want 3", n)
	}
	// TCP is not limited (a TCP client cannot forge its address).
	tc := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	if _, _, err := tc.Exchange(query("7.2.0.192.bans.mailgate.local.", dns.TypeA), srv.Addr()); err != nil {
		t.Errorf("tcp: %v", err)
	}
}

// BenchmarkAnswer is one listed and one unlisted A query answered from
// the tracker (no sockets).
func BenchmarkAnswer(b *testing.B) {
	h, _ := newTestHandler(b)
	listed := query("7.2.0.192.bans.mailgate.local.", dns.TypeA)
	unlisted := query("8.2.0.192.bans.mailgate.local.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		h.Answer(listed, local, true, t0)
		h.Answer(unlisted, local, true, t0)
	}
}

// A query over MaxQuery gets no answer, over TCP or UDP.
func TestListenQuerySizeLimit(t *testing.T) {
	h, _ := newTestHandler(t)
	h.now = func() time.Time { return t0 }
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	withPadding := func(n int) *dns.Msg {
		m := query("7.2.0.192.bans.mailgate.local.", dns.TypeA)
		m.SetEdns0(1232, false)
		opt := m.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, n)})
		return m
	}
	for _, network := range []string{"tcp", "udp"} {
		c := &dns.Client{Net: network, Timeout: time.Second, UDPSize: 4096}
		var err error
		for try := 0; try < 50; try++ { // Serve may not have started yet
			if _, _, err = c.Exchange(withPadding(100), srv.Addr()); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s, a small query: %v", network, err)
		}
		if resp, _, err := c.Exchange(withPadding(MaxQuery), srv.Addr()); err == nil {
			t.Errorf("%s: a query over %d bytes was answered: %v", network, MaxQuery, resp)
		}
	}
}

// A query the library itself refuses (two questions) gets FORMERR from
// an allowed client and nothing at all from a stranger, who gets only
// REFUSED, over UDP and TCP.
func TestListenStrangersGetOnlyRefused(t *testing.T) {
	h, _ := newTestHandler(t)
	c := testConfig()
	c.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	if err := h.SetConfig(c); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	two := query("7.2.0.192.bans.mailgate.local.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	one := query("7.2.0.192.bans.mailgate.local.", dns.TypeA)
	for _, network := range []string{"udp", "tcp"} {
		client := func(src string) *dns.Client {
			d := &net.Dialer{Timeout: time.Second}
			if network == "udp" {
				d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
			}
			return &dns.Client{Net: network, Timeout: time.Second, Dialer: d}
		}
		friend, stranger := client("127.0.0.1"), client("127.0.0.2")
		var resp *dns.Msg
		for try := 0; try < 50; try++ { // Serve may not have started yet
			if resp, _, err = friend.Exchange(two, srv.Addr()); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil || resp.Rcode != dns.RcodeFormatError {
			t.Fatalf("%s, two questions from an allowed client: %v %v", network, resp, err)
		}
		if resp, _, err := stranger.Exchange(two, srv.Addr()); err == nil {
			t.Errorf("%s, two questions from a stranger: answered %v", network, resp)
		}
		if resp, _, err := stranger.Exchange(one, srv.Addr()); err != nil || resp.Rcode != dns.RcodeRefused {
			t.Errorf("%s, a stranger's query: %v %v, want REFUSED", network, resp, err)
		}
	}
}

// A server shut down before it served (the daemon returned early after
// Listen) frees its address: both sockets are closed.
func TestShutdownBeforeServe(t *testing.T) {
	h, _ := newTestHandler(t)
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("tcp %s still bound after Shutdown: %v", addr, err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("udp %s still bound after Shutdown: %v", addr, err)
	}
	pc.Close()
}

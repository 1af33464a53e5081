package relay

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/rules"
)

var t0 = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ttl zero", func(c *Config) { c.TTL = 0 }, "ttl: 0s is not from 1s to 720h0m0s"},
		{"ttl too long", func(c *Config) { c.TTL = 31 * 24 * time.Hour }, "ttl: 744h0m0s is not from 1s"},
		{"services empty", func(c *Config) { c.Services = nil }, "services: empty"},
		{"services smtp", func(c *Config) { c.Services = []rules.Service{rules.IMAP, rules.SMTP} }, "services: smtp cannot grant relay permits"},
		{"services submission", func(c *Config) { c.Services = []rules.Service{rules.Submission} }, "services: submission cannot grant"},
		{"services all", func(c *Config) { c.Services = []rules.Service{rules.AllServices} }, "services: all is not a service that can grant"},
		{"services other", func(c *Config) { c.Services = []rules.Service{rules.OtherService} }, "services: other is not a service that can grant"},
		{"services unknown", func(c *Config) { c.Services = []rules.Service{rules.Service(99)} }, "services: service(99) is not a known service"},
		{"services twice", func(c *Config) { c.Services = []rules.Service{rules.IMAP, rules.IMAP} }, "services: imap is listed twice"},
		{"never invalid", func(c *Config) { c.Never = append(c.Never, netip.Prefix{}) }, "never: entry 3 is not a valid network"},
		{"never too many", func(c *Config) { c.Never = make([]netip.Prefix, MaxNever+1) }, "never: 257 networks, more than 256"},
		{"ipv6_prefix small", func(c *Config) { c.IPv6Prefix = 16 }, "ipv6_prefix: 16 is not a prefix length from 56 to 128"},
		{"ipv6_prefix large", func(c *Config) { c.IPv6Prefix = 129 }, "ipv6_prefix: 129 is not"},
		{"shared_logins one", func(c *Config) { c.SharedLogins = 1 }, "shared_logins: 1 is not 0 (off) or from 2 to 1000"},
		{"shared_logins negative", func(c *Config) { c.SharedLogins = -1 }, "shared_logins: -1 is not 0"},
		{"shared_logins large", func(c *Config) { c.SharedLogins = 1001 }, "shared_logins: 1001 is not 0"},
		{"shared_window zero", func(c *Config) { c.SharedWindow = 0 }, "shared_window: must be a positive duration when shared_logins is set"},
		{"shared_window negative", func(c *Config) { c.SharedLogins, c.SharedWindow = 0, -time.Second }, "shared_window: -1s is not from 0"},
		{"max_permits zero", func(c *Config) { c.MaxPermits = 0 }, "max_permits: 0 is not from 1 to 10000000"},
		{"max_permits large", func(c *Config) { c.MaxPermits = MaxPermits + 1 }, "max_permits: 10000001 is not from 1"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	good := DefaultConfig()
	good.SharedLogins, good.SharedWindow = 0, 0
	good.Services = []rules.Service{rules.Sieve}
	if err := good.Validate(); err != nil {
		t.Errorf("shared detection off, sieve: %v", err)
	}
	c := DefaultConfig()
	c.TTL, c.MaxPermits = 0, 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ttl") || !strings.Contains(err.Error(), "max_permits") {
		t.Errorf("two problems: got %v, want both named", err)
	}
}

func TestOutcomeString(t *testing.T) {
	want := map[Outcome]string{Granted: "granted", Refreshed: "refreshed", NotGranting: "not_granting",
		NeverNetwork: "never_network", SharedRefused: "shared_refused", BadAddress: "bad_address", 42: "Outcome(42)"}
	for o, s := range want {
		if o.String() != s {
			t.Errorf("Outcome(%d) = %q, want %q", uint8(o), o.String(), s)
		}
	}
}

func TestKey(t *testing.T) {
	cfg := DefaultConfig()
	t64 := New(cfg)
	cfg.IPv6Prefix = 128
	t128 := New(cfg)
	cfg.IPv6Prefix = 56
	t56 := New(cfg)
	tests := []struct {
		tab  *Table
		in   string
		want string
	}{
		{t64, "192.0.2.1", "192.0.2.1/32"},
		{t64, "::ffff:192.0.2.1", "192.0.2.1/32"},
		{t128, "::ffff:192.0.2.1", "192.0.2.1/32"},
		{t64, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{t64, "fe80::1%eth0", "fe80::/64"},
		{t128, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6/128"},
		{t56, "2001:db8:1:2:3:4:5:6", "2001:db8:1::/56"},
	}
	for _, tc := range tests {
		if got := tc.tab.Key(addr(tc.in)); got != prefix(tc.want) {
			t.Errorf("Key(%s) with ipv6_prefix %d = %s, want %s", tc.in, tc.tab.s().cfg.IPv6Prefix, got, tc.want)
		}
	}
	if got := t64.Key(netip.Addr{}); got.IsValid() {
		t.Errorf("Key(zero) = %s, want the zero Prefix", got)
	}
}

// step is one call in a scenario; exactly one of login, check, expire,
// remove is done.
type step struct {
	at     time.Duration
	op     string // login, check, expire, remove, shared
	login  string
	svc    rules.Service
	addr   string
	want   Outcome // login
	ok     bool    // check, remove, shared
	prefix string  // check/login: the permit's network, when it has one
	n      int     // expire: permits removed; check: Logins
}

func run(t *testing.T, tab *Table, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := at(s.at)
		a := netip.Addr{}
		if s.addr != "" {
			a = addr(s.addr)
		}
		switch s.op {
		case "login":
			p, o := tab.Login(s.login, s.svc, "dovecot", a, now)
			if o != s.want {
				t.Fatalf("step %d: Login(%s, %s, %s) = %s, want %s", i, s.login, s.svc, s.addr, o, s.want)
			}
			if s.prefix != "" && p.Prefix != prefix(s.prefix) {
				t.Fatalf("step %d: permit %s, want %s", i, p.Prefix, s.prefix)
			}
			if (o == Granted || o == Refreshed) && (!p.Expires.Equal(now.Add(tab.s().cfg.TTL)) || p.Login != s.login) {
				t.Fatalf("step %d: permit %+v, want expiry %s and login %s", i, p, now.Add(tab.s().cfg.TTL), s.login)
			}
		case "check":
			p, ok := tab.Check(a, now)
			if ok != s.ok {
				t.Fatalf("step %d: Check(%s) = %v, want %v (%+v)", i, s.addr, ok, s.ok, p)
			}
			if ok && s.prefix != "" && p.Prefix != prefix(s.prefix) {
				t.Fatalf("step %d: Check(%s) permit %s, want %s", i, s.addr, p.Prefix, s.prefix)
			}
			if ok && s.n != 0 && p.Logins != s.n {
				t.Fatalf("step %d: Check(%s) Logins %d, want %d", i, s.addr, p.Logins, s.n)
			}
			if !ok && p != (Permit{}) {
				t.Fatalf("step %d: Check(%s) returned %+v with false", i, s.addr, p)
			}
		case "expire":
			if got := tab.Expire(now); len(got) != s.n {
				t.Fatalf("step %d: Expire removed %d (%v), want %d", i, len(got), got, s.n)
			}
		case "remove":
			if _, ok := tab.Remove(a); ok != s.ok {
				t.Fatalf("step %d: Remove(%s) = %v, want %v", i, s.addr, ok, s.ok)
			}
		case "shared":
			if got, acc := tab.Shared(a, now); got != s.ok {
				t.Fatalf("step %d: Shared(%s) = %v %v, want %v", i, s.addr, got, acc, s.ok)
			}
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
	}
}

func TestLoginCheck(t *testing.T) {
	def := DefaultConfig()
	v6single := DefaultConfig()
	v6single.IPv6Prefix = 128
	imapOnly := DefaultConfig()
	imapOnly.Services = []rules.Service{rules.IMAP}
	never := DefaultConfig()
	never.Never = append(never.Never, prefix("192.0.2.0/24"), prefix("::ffff:198.51.100.0/120"), prefix("2001:db8:ff::/48"))

	const m = time.Minute
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"grant refresh expire without sweep", def, []step{
			{op: "check", addr: "203.0.113.5"},
			{op: "login", login: "alice", svc: rules.IMAP, addr: "203.0.113.5", want: Granted, prefix: "203.0.113.5/32"},
			{op: "check", addr: "203.0.113.5", ok: true, n: 1},
			{op: "check", addr: "203.0.113.6"},
			{at: 20 * m, op: "login", login: "alice", svc: rules.POP3, addr: "203.0.113.5", want: Refreshed},
			{at: 49 * m, op: "check", addr: "203.0.113.5", ok: true, n: 2},
			{at: 50*m - 1, op: "check", addr: "203.0.113.5", ok: true},
			{at: 50 * m, op: "check", addr: "203.0.113.5"},
			{at: 51 * m, op: "login", login: "alice", svc: rules.IMAP, addr: "203.0.113.5", want: Granted},
			{at: 52 * m, op: "check", addr: "203.0.113.5", ok: true, n: 1},
		}},
		{"mapped is ipv4", def, []step{
			{op: "login", login: "alice", svc: rules.IMAP, addr: "::ffff:192.0.2.1", want: Granted, prefix: "192.0.2.1/32"},
			{op: "check", addr: "192.0.2.1", ok: true},
			{op: "login", login: "bob", svc: rules.IMAP, addr: "192.0.2.1", want: Refreshed},
			{op: "check", addr: "::ffff:192.0.2.1", ok: true, prefix: "192.0.2.1/32", n: 2},
		}},
		{"ipv6 /64 covers a neighbour", def, []step{
			{op: "login", login: "alice", svc: rules.IMAP, addr: "2001:db8:1:2::10", want: Granted, prefix: "2001:db8:1:2::/64"},
			{op: "check", addr: "2001:db8:1:2:abcd::99", ok: true, prefix: "2001:db8:1:2::/64"},
			{op: "check", addr: "2001:db8:1:3::10"},
		}},
		{"ipv6 /128 covers only the address", v6single, []step{
			{op: "login", login: "alice", svc: rules.IMAP, addr: "2001:db8:1:2::10", want: Granted, prefix: "2001:db8:1:2::10/128"},
			{op: "check", addr: "2001:db8:1:2::10", ok: true},
			{op: "check", addr: "2001:db8:1:2:abcd::99"},
			{op: "check", addr: "2001:db8:1:2::11"},
		}},
		{"never networks", never, []step{
			{op: "login", login: "web", svc: rules.IMAP, addr: "127.0.0.1", want: NeverNetwork},
			{op: "check", addr: "127.0.0.1"},
			{op: "login", login: "web", svc: rules.IMAP, addr: "::ffff:127.0.0.9", want: NeverNetwork},
			{op: "login", login: "web", svc: rules.IMAP, addr: "::1", want: NeverNetwork},
			{op: "login", login: "a", svc: rules.IMAP, addr: "192.0.2.77", want: NeverNetwork},
			{op: "login", login: "a", svc: rules.IMAP, addr: "198.51.100.7", want: NeverNetwork},
			{op: "login", login: "a", svc: rules.IMAP, addr: "2001:db8:ff:1::1", want: NeverNetwork},
			{op: "login", login: "a", svc: rules.IMAP, addr: "198.51.101.7", want: Granted},
			// ::2's /64 holds ::1, which stays without a permit.
			{op: "login", login: "a", svc: rules.IMAP, addr: "::2", want: Granted, prefix: "::/64"},
			{op: "check", addr: "::3", ok: true},
			{op: "check", addr: "::1"},
		}},
		{"non-granting services", imapOnly, []step{
			{op: "login", login: "a", svc: rules.SMTP, addr: "203.0.113.7", want: NotGranting},
			{op: "login", login: "a", svc: rules.Submission, addr: "203.0.113.7", want: NotGranting},
			{op: "login", login: "a", svc: rules.POP3, addr: "203.0.113.7", want: NotGranting},
			{op: "login", login: "a", svc: rules.OtherService, addr: "203.0.113.7", want: NotGranting},
			{op: "check", addr: "203.0.113.7"},
			{op: "login", login: "a", svc: rules.IMAP, addr: "203.0.113.7", want: Granted},
			// A non-granting login does not refresh.
			{at: 29 * time.Minute, op: "login", login: "a", svc: rules.SMTP, addr: "203.0.113.7", want: NotGranting},
			{at: 30 * time.Minute, op: "check", addr: "203.0.113.7"},
		}},
		{"bad address", def, []step{
			{op: "login", login: "a", svc: rules.IMAP, want: BadAddress},
			{op: "check"},
			{op: "remove"},
			{op: "shared"},
		}},
		{"remove", def, []step{
			{op: "login", login: "a", svc: rules.IMAP, addr: "203.0.113.8", want: Granted},
			{op: "remove", addr: "::ffff:203.0.113.8", ok: true},
			{op: "check", addr: "203.0.113.8"},
			{op: "remove", addr: "203.0.113.8"},
			{op: "login", login: "a", svc: rules.IMAP, addr: "2001:db8::1", want: Granted},
			{at: time.Hour, op: "remove", addr: "2001:db8::2", ok: true}, // expired, still removed
			{at: time.Hour, op: "expire"},
		}},
		{"expire", def, []step{
			{op: "login", login: "a", svc: rules.IMAP, addr: "203.0.113.1", want: Granted},
			{at: 10 * m, op: "login", login: "b", svc: rules.IMAP, addr: "203.0.113.2", want: Granted},
			{at: 20 * m, op: "login", login: "c", svc: rules.IMAP, addr: "203.0.113.3", want: Granted},
			{at: 25 * m, op: "login", login: "a", svc: rules.IMAP, addr: "203.0.113.1", want: Refreshed},
			{at: 40 * m, op: "expire", n: 1}, // .2
			{at: 40 * m, op: "expire"},
			{at: 40 * m, op: "check", addr: "203.0.113.2"},
			{at: 40 * m, op: "check", addr: "203.0.113.1", ok: true},
			{at: 55 * m, op: "expire", n: 2},
			{at: 55 * m, op: "check", addr: "203.0.113.1"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			run(t, New(tc.cfg), tc.steps)
		})
	}
}

func TestRefresh(t *testing.T) {
	tab := New(DefaultConfig())
	a := addr("203.0.113.9")
	g, _ := tab.Login("alice", rules.IMAP, "dovecot", a, at(0))
	r, o := tab.Login("bob", rules.POP3, "hook", a, at(time.Minute))
	want := Permit{Prefix: prefix("203.0.113.9/32"), Login: "bob", Service: rules.POP3, Door: "hook",
		Granted: g.Granted, Expires: at(31 * time.Minute), Logins: 2}
	if o != Refreshed || r != want {
		t.Errorf("refresh: %s %+v, want %+v", o, r, want)
	}
	if p, _ := tab.Check(a, at(2*time.Minute)); p != want {
		t.Errorf("check after refresh: %+v", p)
	}
}

func TestShared(t *testing.T) {
	const m = time.Minute
	cfg := DefaultConfig() // 3 logins within 10 minutes
	run(t, New(cfg), []step{
		{op: "login", login: "a", svc: rules.IMAP, addr: "203.0.113.20", want: Granted},
		{at: m, op: "login", login: "a", svc: rules.IMAP, addr: "203.0.113.20", want: Refreshed},
		{at: 2 * m, op: "login", login: "b", svc: rules.IMAP, addr: "203.0.113.20", want: Refreshed},
		{at: 2 * m, op: "shared", addr: "203.0.113.20"}, // a twice is one login
		// smtp grants nothing but counts.
		{at: 3 * m, op: "login", login: "c", svc: rules.SMTP, addr: "203.0.113.20", want: NotGranting},
		{at: 3 * m, op: "shared", addr: "203.0.113.20", ok: true},
		{at: 3 * m, op: "shared", addr: "::ffff:203.0.113.20", ok: true},
		{at: 3 * m, op: "shared", addr: "203.0.113.21"},
		// a was last seen at 1m: at 11m only b and c are within the window.
		{at: 11 * m, op: "shared", addr: "203.0.113.20"},
		// Logins in another network do not count.
		{op: "login", login: "x", svc: rules.IMAP, addr: "2001:db8:5:1::1", want: Granted},
		{op: "login", login: "y", svc: rules.IMAP, addr: "2001:db8:5:2::1", want: Granted},
		{op: "login", login: "z", svc: rules.IMAP, addr: "2001:db8:5:3::1", want: Granted},
		{op: "shared", addr: "2001:db8:5:1::1"},
		// Within one /64 they do.
		{op: "login", login: "y", svc: rules.IMAP, addr: "2001:db8:5:1::2", want: Refreshed},
		{op: "login", login: "z", svc: rules.IMAP, addr: "2001:db8:5:1:ffff::3", want: Refreshed},
		{op: "shared", addr: "2001:db8:5:1::77", ok: true},
	})

	tab := New(cfg)
	a := addr("203.0.113.30")
	for i, l := range []string{"a", "b", "c", "Alice", "alice"} {
		tab.Login(l, rules.IMAP, "dovecot", a, at(time.Duration(i)*time.Second))
	}
	shared, acc := tab.Shared(a, at(10*time.Second))
	if want := []string{"alice", "Alice", "c", "b", "a"}; !shared || !slices.Equal(acc, want) {
		t.Errorf("Shared = %v %q, want true %q (exact logins, most recent first)", shared, acc, want)
	}
	ls := tab.List(at(10 * time.Second))
	if len(ls) != 1 || !ls[0].Shared || !slices.Equal(ls[0].Accounts, acc) {
		t.Errorf("List = %+v", ls)
	}

	// Accounts are at most 10; detection still works with many more.
	cfg.SharedLogins = 20
	tab = New(cfg)
	for i := range 35 {
		tab.Login(fmt.Sprint("u", i), rules.SMTP, "dovecot", a, at(time.Duration(i)*time.Second))
	}
	shared, acc = tab.Shared(a, at(40*time.Second))
	if !shared || len(acc) != 10 || acc[0] != "u34" || acc[9] != "u25" {
		t.Errorf("35 logins, shared_logins 20: %v %q", shared, acc)
	}
	if n := len(tab.nets[keyOf(tab.Key(a))].logins); n != cfg.SharedLogins+8 {
		t.Errorf("remembered %d logins for the network, want %d", n, cfg.SharedLogins+8)
	}

	// Detection off: accounts are listed, never shared.
	cfg = DefaultConfig()
	cfg.SharedLogins = 0
	tab = New(cfg)
	for _, l := range []string{"a", "b", "c", "d"} {
		tab.Login(l, rules.IMAP, "dovecot", a, at(0))
	}
	if shared, acc := tab.Shared(a, at(0)); shared || len(acc) != 4 {
		t.Errorf("shared_logins 0: %v %q", shared, acc)
	}
	cfg.SharedWindow = 0
	tab = New(cfg)
	tab.Login("a", rules.IMAP, "dovecot", a, at(0))
	if shared, acc := tab.Shared(a, at(0)); shared || acc != nil || len(tab.nets) != 0 {
		t.Errorf("shared tracking off: %v %q, %d networks", shared, acc, len(tab.nets))
	}
}

func TestRefuseShared(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RefuseShared = true
	tab := New(cfg)
	a := addr("203.0.113.40")
	if _, o := tab.Login("a", rules.IMAP, "dovecot", a, at(0)); o != Granted {
		t.Fatalf("first login: %s", o)
	}
	if _, o := tab.Login("b", rules.IMAP, "dovecot", a, at(time.Minute)); o != Refreshed {
		t.Fatalf("second login: %s", o)
	}
	p, o := tab.Login("c", rules.POP3, "dovecot", a, at(2*time.Minute))
	if o != SharedRefused || p.Prefix != prefix("203.0.113.40/32") || p.Login != "b" {
		t.Fatalf("third login: %s %+v, want shared_refused and the removed permit", o, p)
	}
	if _, ok := tab.Check(a, at(2*time.Minute)); ok || tab.Len() != 0 {
		t.Fatalf("permit still there after shared_refused")
	}
	// Nothing left to remove: the zero Permit.
	if p, o := tab.Login("a", rules.IMAP, "dovecot", a, at(3*time.Minute)); o != SharedRefused || p.Prefix.IsValid() {
		t.Errorf("login on shared network: %s %+v", o, p)
	}
	if p, o := tab.Login("d", rules.SMTP, "dovecot", a, at(3*time.Minute)); o != NotGranting || p.Prefix.IsValid() {
		t.Errorf("smtp login on shared network, no permit: %s %+v", o, p)
	}
	// The window boundary: a login exactly SharedWindow ago no longer
	// counts.
	e := addr("203.0.113.43")
	tab.Login("a", rules.IMAP, "dovecot", e, at(0))
	tab.Login("b", rules.IMAP, "dovecot", e, at(time.Minute))
	if _, o := tab.Login("c", rules.IMAP, "dovecot", e, at(10*time.Minute)); o != Refreshed {
		t.Errorf("third login as the first leaves the window: %s, want refreshed", o)
	}
	if _, o := tab.Login("a", rules.IMAP, "dovecot", e, at(10*time.Minute+time.Second)); o != SharedRefused {
		t.Errorf("a, b, c within the window: %s, want shared_refused", o)
	}
	// The window passes: permits again.
	if _, o := tab.Login("a", rules.IMAP, "dovecot", a, at(14*time.Minute)); o != Granted {
		t.Errorf("after the window: %s", o)
	}

	// A non-granting login making the network shared removes the permit.
	b := addr("203.0.113.41")
	tab.Login("a", rules.IMAP, "dovecot", b, at(0))
	tab.Login("b", rules.SMTP, "dovecot", b, at(0))
	if p, o := tab.Login("c", rules.Submission, "dovecot", b, at(0)); o != SharedRefused || p.Login != "a" {
		t.Errorf("submission login making it shared: %s %+v", o, p)
	}

	// A manual permit stays.
	c := addr("203.0.113.42")
	if _, err := tab.Add(Permit{Prefix: prefix("203.0.113.42/32"), Comment: "office", By: "root"}.withExpires(at(time.Hour)), at(0)); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"a", "b", "c"} {
		tab.Login(l, rules.IMAP, "dovecot", c, at(0))
	}
	if p, ok := tab.Check(c, at(time.Minute)); !ok || !p.Manual() {
		t.Errorf("manual permit after shared logins: %v %+v", ok, p)
	}
}

func (p Permit) withExpires(t time.Time) Permit { p.Expires = t; return p }

func TestAdd(t *testing.T) {
	now := at(0)
	cfg := DefaultConfig()
	cfg.Never = append(cfg.Never, prefix("10.0.0.0/8"))
	tab := New(cfg)
	tests := []struct {
		name   string
		p      Permit
		want   string // the stored network, or
		errHas string
	}{
		{"ipv4", Permit{Prefix: prefix("203.0.113.50/32"), Expires: at(time.Hour)}, "203.0.113.50/32", ""},
		{"mapped", Permit{Prefix: prefix("::ffff:203.0.113.51/128"), Expires: at(time.Hour)}, "203.0.113.51/32", ""},
		{"ipv6 address widened", Permit{Prefix: prefix("2001:db8:7:1::5/128"), Expires: at(time.Hour)}, "2001:db8:7:1::/64", ""},
		{"ipv6 key network", Permit{Prefix: prefix("2001:db8:7:2::/64"), Expires: at(time.Hour)}, "2001:db8:7:2::/64", ""},
		{"ipv6 key network unmasked", Permit{Prefix: prefix("2001:db8:7:3::9/64"), Expires: at(time.Hour)}, "2001:db8:7:3::/64", ""},
		{"a year", Permit{Prefix: prefix("203.0.113.52/32"), Expires: at(MaxManualFor)}, "203.0.113.52/32", ""},
		{"no address", Permit{Expires: at(time.Hour)}, "", "no valid address"},
		{"ipv4 network", Permit{Prefix: prefix("203.0.113.0/24"), Expires: at(time.Hour)}, "", "an IPv4 permit covers one address, not a network"},
		{"mapped network", Permit{Prefix: prefix("::ffff:203.0.113.0/120"), Expires: at(time.Hour)}, "", "an IPv4 permit covers one address"},
		{"ipv6 wider", Permit{Prefix: prefix("2001:db8:7::/48"), Expires: at(time.Hour)}, "", "covers one address's /64 network (ipv6_prefix), not a /48"},
		{"ipv6 narrower", Permit{Prefix: prefix("2001:db8:7:1::/96"), Expires: at(time.Hour)}, "", "not a /96"},
		{"never", Permit{Prefix: prefix("10.1.2.3/32"), Expires: at(time.Hour)}, "", "never gets relay permits"},
		{"never loopback", Permit{Prefix: prefix("::1/128"), Expires: at(time.Hour)}, "", "never gets relay permits"},
		{"expired", Permit{Prefix: prefix("203.0.113.53/32"), Expires: now}, "", "is not in the future"},
		{"no expiry", Permit{Prefix: prefix("203.0.113.53/32")}, "", "is not in the future"},
		{"too far", Permit{Prefix: prefix("203.0.113.53/32"), Expires: at(MaxManualFor + time.Second)}, "", "more than 365 days ahead"},
		{"long comment", Permit{Prefix: prefix("203.0.113.53/32"), Expires: at(time.Hour), Comment: strings.Repeat("x", MaxCommentLen+1)}, "", "comment is 1025 bytes"},
		{"control in by", Permit{Prefix: prefix("203.0.113.53/32"), Expires: at(time.Hour), By: "root\n"}, "", "by contains a control character"},
		{"bad utf-8 login", Permit{Prefix: prefix("203.0.113.53/32"), Expires: at(time.Hour), Login: "\xff"}, "", "login is not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tab.Add(tc.p, now)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Prefix != prefix(tc.want) || got.Door != DoorManual || !got.Manual() || !got.Granted.Equal(now) || !got.Expires.Equal(tc.p.Expires) {
				t.Fatalf("added %+v", got)
			}
			if p, ok := tab.Check(got.Prefix.Addr(), at(time.Minute)); !ok || p != got {
				t.Fatalf("Check after Add: %v %+v", ok, p)
			}
		})
	}

	// Add replaces an automatic permit; a later login refreshes the
	// manual one without shortening it or making it automatic.
	tab = New(DefaultConfig())
	a := addr("203.0.113.60")
	tab.Login("alice", rules.IMAP, "dovecot", a, now)
	m, err := tab.Add(Permit{Prefix: prefix("203.0.113.60/32"), Expires: at(24 * time.Hour), Comment: "travel", By: "admin"}, now)
	if err != nil || tab.Len() != 1 {
		t.Fatalf("Add over an automatic permit: %v, %d permits", err, tab.Len())
	}
	p, o := tab.Login("bob", rules.IMAP, "dovecot", a, at(time.Hour))
	want := m
	want.Login, want.Service, want.Logins = "bob", rules.IMAP, 1
	if o != Refreshed || p != want {
		t.Errorf("login over a manual permit: %s %+v, want %+v", o, p, want)
	}
	// Near its end, a login extends it as an automatic permit.
	p, o = tab.Login("bob", rules.IMAP, "hook", a, at(23*time.Hour+50*time.Minute))
	if o != Refreshed || p.Manual() || p.Door != "hook" || !p.Expires.Equal(at(24*time.Hour+20*time.Minute)) || p.Logins != 2 || p.Comment != "travel" {
		t.Errorf("login near the end of a manual permit: %s %+v", o, p)
	}
	// Add over a manual permit replaces it.
	if _, err := tab.Add(Permit{Prefix: prefix("203.0.113.60/32"), Expires: at(25 * time.Hour), Comment: "again"}, at(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p, _ := tab.Check(a, at(24*time.Hour)); p.Comment != "again" || p.Logins != 0 || tab.Len() != 1 {
		t.Errorf("second Add: %+v", p)
	}
}

func TestLongLogin(t *testing.T) {
	tab := New(DefaultConfig())
	long := strings.Repeat("é", MaxLoginLen) // 2 bytes each
	p, o := tab.Login(long, rules.IMAP, "dovecot", addr("203.0.113.110"), at(0))
	if o != Granted || len(p.Login) != MaxLoginLen || p.Login != long[:MaxLoginLen] {
		t.Errorf("long login: %s, %d bytes", o, len(p.Login))
	}
	odd := "x" + long
	p, _ = tab.Login(odd, rules.IMAP, "dovecot", addr("203.0.113.111"), at(0))
	if len(p.Login) != MaxLoginLen-1 || !strings.HasPrefix(odd, p.Login) {
		t.Errorf("long login cut inside a character: %d bytes", len(p.Login))
	}
	if n := New(DefaultConfig()).Restore([]Permit{p}, at(time.Minute)); n != 1 {
		t.Errorf("a permit with a cut login is not restored")
	}
}

func TestList(t *testing.T) {
	tab := New(DefaultConfig())
	tab.Login("a", rules.IMAP, "dovecot", addr("203.0.113.70"), at(0))
	tab.Login("b", rules.IMAP, "dovecot", addr("203.0.113.71"), at(10*time.Minute))
	tab.Login("c", rules.IMAP, "dovecot", addr("2001:db8::1"), at(5*time.Minute))
	tab.Add(Permit{Prefix: prefix("203.0.113.72/32"), Expires: at(20 * time.Minute)}, at(0))
	var got []string
	for _, in := range tab.List(at(25 * time.Minute)) {
		got = append(got, in.Prefix.String()+" "+strings.Join(in.Accounts, ","))
	}
	want := []string{"203.0.113.71/32 ", "2001:db8::/64 ", "203.0.113.70/32 "} // accounts older than 10m
	if !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
	ls := tab.List(at(12 * time.Minute))
	if len(ls) != 4 || ls[0].Prefix != prefix("203.0.113.71/32") || !slices.Equal(ls[0].Accounts, []string{"b"}) || ls[0].Shared {
		t.Errorf("List at 12m = %+v", ls)
	}
}

func TestExpireForgetsStaleNetworks(t *testing.T) {
	tab := New(DefaultConfig())
	tab.Login("a", rules.SMTP, "dovecot", addr("203.0.113.80"), at(0))
	tab.Login("a", rules.SMTP, "dovecot", addr("203.0.113.81"), at(5*time.Minute))
	tab.Login("a", rules.SMTP, "dovecot", addr("203.0.113.80"), at(6*time.Minute)) // seen again: kept
	tab.Expire(at(15 * time.Minute))
	if len(tab.nets) != 1 || tab.nets[keyOf(prefix("203.0.113.80/32"))] == nil {
		t.Errorf("after Expire at 15m: %d networks", len(tab.nets))
	}
	tab.Expire(at(16 * time.Minute))
	if len(tab.nets) != 0 || tab.newest != nil || tab.oldest != nil {
		t.Errorf("after Expire at 16m: %d networks", len(tab.nets))
	}
}

func TestRestore(t *testing.T) {
	now := at(time.Hour)
	p := func(pfx string, exp time.Duration, login string) Permit {
		return Permit{Prefix: prefix(pfx), Login: login, Service: rules.IMAP, Door: "dovecot", Granted: at(0), Expires: at(exp), Logins: 1}
	}
	stored := []Permit{
		p("203.0.113.90/32", 90*time.Minute, "kept"),
		p("203.0.113.91/32", 60*time.Minute, "expired"),
		p("203.0.113.92/32", 30*time.Minute, "expired"),
		p("127.0.0.5/32", 90*time.Minute, "never"),
		p("203.0.113.0/24", 90*time.Minute, "network"),
		{Expires: at(90 * time.Minute), Login: "invalid"},
		p("::ffff:203.0.113.93/128", 80*time.Minute, "mapped"),
		p("2001:db8:9:1::1/128", 70*time.Minute, "v6 early"),
		p("2001:db8:9:1::2/128", 85*time.Minute, "v6 late"),
		p("2001:db8:9:1::3/128", 75*time.Minute, "v6 middle"),
		p("2001:db8:9::/48", 90*time.Minute, "v6 too wide"),
		p("203.0.113.94/32", 2*MaxManualFor, "too far"),
		{Prefix: prefix("203.0.113.95/32"), Expires: at(90 * time.Minute), Comment: strings.Repeat("x", MaxCommentLen+1)},
	}
	cfg := DefaultConfig()
	tab := New(cfg)
	if n := tab.Restore(stored, now); n != 3 {
		t.Errorf("Restore kept %d, want 3", n)
	}
	var got []string
	for _, in := range tab.List(now) {
		got = append(got, in.Prefix.String()+" "+in.Login)
	}
	want := []string{"203.0.113.90/32 kept", "2001:db8:9:1::/64 v6 late", "203.0.113.93/32 mapped"}
	if !slices.Equal(got, want) {
		t.Errorf("restored %q, want %q", got, want)
	}
	if tab.Len() != 3 {
		t.Errorf("Len %d", tab.Len())
	}
	// Restoring again changes nothing: nothing expires later.
	if n := tab.Restore(stored, now); n != 0 || tab.Len() != 3 {
		t.Errorf("second Restore kept %d, Len %d", n, tab.Len())
	}

	// A /64 stored under ipv6_prefix 64 cannot be narrowed to /128.
	cfg.IPv6Prefix = 128
	tab = New(cfg)
	stored = []Permit{p("2001:db8:9:1::/64", 90*time.Minute, "wide"), p("2001:db8:9:2::5/128", 90*time.Minute, "single")}
	if n := tab.Restore(stored, now); n != 1 {
		t.Errorf("ipv6_prefix 128: kept %d, want 1", n)
	}
	if _, ok := tab.Check(addr("2001:db8:9:2::5"), now); !ok {
		t.Errorf("single IPv6 permit not restored")
	}

	// MaxPermits: the latest-expiring are kept.
	cfg = DefaultConfig()
	cfg.MaxPermits = 2
	tab = New(cfg)
	tab.Login("x", rules.IMAP, "dovecot", addr("198.51.100.1"), now) // expires at 90m
	stored = []Permit{p("203.0.113.96/32", 70*time.Minute, "a"), p("203.0.113.97/32", 100*time.Minute, "b"), p("203.0.113.98/32", 95*time.Minute, "c")}
	if n := tab.Restore(stored, now); n != 2 || tab.Len() != 2 {
		t.Errorf("MaxPermits 2: kept %d, Len %d", n, tab.Len())
	}
	got = got[:0]
	for _, in := range tab.List(now) {
		got = append(got, in.Login)
	}
	if want := []string{"b", "c"}; !slices.Equal(got, want) {
		t.Errorf("MaxPermits 2: %q, want %q", got, want)
	}
}

func TestMaxPermits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPermits = 3
	tab := New(cfg)
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	for i := range 3 {
		tab.Login("u", rules.IMAP, "dovecot", ip(i), at(time.Duration(i)*time.Minute))
	}
	tab.Login("u", rules.IMAP, "dovecot", ip(0), at(3*time.Minute)) // 0 now expires last
	tab.Login("u", rules.IMAP, "dovecot", ip(3), at(4*time.Minute)) // evicts 1
	now := at(5 * time.Minute)
	for i, want := range []bool{true, false, true, true} {
		if _, ok := tab.Check(ip(i), now); ok != want {
			t.Errorf("Check(%s) = %v, want %v", ip(i), ok, want)
		}
	}
	if tab.Len() != 3 || tab.Evicted() != 1 {
		t.Errorf("Len %d, Evicted %d", tab.Len(), tab.Evicted())
	}
	// Many more: the table stays at 3, holding the latest.
	for i := 10; i < 200; i++ {
		tab.Login("u", rules.IMAP, "dovecot", ip(i), at(time.Duration(i)*time.Minute))
	}
	if tab.Len() != 3 {
		t.Errorf("Len %d after many logins", tab.Len())
	}
	for i := 197; i < 200; i++ {
		if _, ok := tab.Check(ip(i), at(200*time.Minute)); !ok {
			t.Errorf("latest permit %s evicted", ip(i))
		}
	}
	// Shared tracking is bounded too, least recently seen forgotten.
	if len(tab.nets) != 3 || tab.nets[keyOf(tab.Key(ip(199)))] == nil || tab.nets[keyOf(tab.Key(ip(196)))] != nil {
		t.Errorf("%d networks tracked", len(tab.nets))
	}
	checkHeap(t, tab)
}

// checkHeap verifies the heap invariant and the index bookkeeping.
func checkHeap(t *testing.T, tab *Table) {
	t.Helper()
	tab.mu.RLock()
	defer tab.mu.RUnlock()
	if len(tab.heap) != len(tab.permits) {
		t.Fatalf("heap %d, map %d", len(tab.heap), len(tab.permits))
	}
	for i, sl := range tab.heap {
		e := sl.e
		if e.i != i || tab.permits[keyOf(e.p.Prefix)] != e || sl.exp != e.p.Expires.UnixNano() {
			t.Fatalf("heap entry %d out of place", i)
		}
		if i > 0 && e.p.Expires.Before(tab.heap[(i-1)/2].e.p.Expires) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

func TestHeapRandomized(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPermits = 50
	tab := New(cfg)
	// A deterministic pseudo-random mix of operations.
	x := uint32(1)
	next := func() uint32 { x ^= x << 13; x ^= x >> 17; x ^= x << 5; return x }
	now := at(0)
	for i := range 5000 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(next() % 120)})
		now = now.Add(time.Duration(next()%20) * time.Second)
		switch next() % 6 {
		case 0:
			tab.Remove(a)
		case 1:
			tab.Expire(now)
		case 2:
			tab.Add(Permit{Prefix: netip.PrefixFrom(a, 32), Expires: now.Add(time.Duration(next()%7200+1) * time.Second)}, now)
		default:
			tab.Login("u", rules.IMAP, "dovecot", a, now)
		}
		if i%100 == 0 {
			checkHeap(t, tab)
		}
	}
	checkHeap(t, tab)
	exp := tab.Expire(now.Add(24 * time.Hour))
	if !slices.IsSortedFunc(exp, func(a, b Permit) int { return a.Expires.Compare(b.Expires) }) || tab.Len() != 0 {
		t.Errorf("final Expire: %d permits, sorted %v, %d left", len(exp), slices.IsSortedFunc(exp, func(a, b Permit) int { return a.Expires.Compare(b.Expires) }), tab.Len())
	}
}

func TestCheckAllocs(t *testing.T) {
	tab := New(DefaultConfig())
	tab.Login("alice", rules.IMAP, "dovecot", addr("203.0.113.100"), at(0))
	tab.Login("alice", rules.IMAP, "dovecot", addr("2001:db8::1"), at(0))
	for _, s := range []string{"203.0.113.100", "203.0.113.101", "::ffff:203.0.113.100", "2001:db8::2", "fe80::1%eth0", "127.0.0.1"} {
		a := addr(s)
		n := testing.AllocsPerRun(100, func() { tab.Check(a, at(time.Minute)) })
		if n != 0 {
			t.Errorf("Check(%s) allocates %v times", s, n)
		}
	}
	a := addr("203.0.113.100")
	if n := testing.AllocsPerRun(100, func() { tab.Login("alice", rules.IMAP, "dovecot", a, at(time.Minute)) }); n != 0 {
		t.Errorf("a refreshing Login allocates %v times", n)
	}
}

func TestConcurrent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxPermits = 64
	cfg.RefuseShared = true
	tab := New(cfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				a := netip.AddrFrom4([4]byte{203, 0, 113, byte((g*31 + i) % 100)})
				now := at(time.Duration(i) * time.Second)
				switch (g + i) % 5 {
				case 0:
					tab.Login(fmt.Sprint("u", g), rules.IMAP, "dovecot", a, now)
				case 1:
					tab.Expire(now)
				case 2:
					tab.List(now)
				case 3:
					tab.Shared(a, now)
				}
				tab.Check(a, now)
			}
		})
	}
	wg.Wait()
	checkHeap(t, tab)
	if tab.Len() > cfg.MaxPermits || len(tab.nets) > cfg.MaxPermits {
		t.Errorf("bounds broken: %d permits, %d networks", tab.Len(), len(tab.nets))
	}
}

func TestNewInvalidConfigPanics(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "max_permits") {
			t.Errorf("recovered %v, want a panic naming max_permits", r)
		}
	}()
	cfg := DefaultConfig()
	cfg.MaxPermits = 0
	New(cfg)
}

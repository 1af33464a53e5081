package abuse

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func ids(bs []Ban) []int64 {
	out := make([]int64, len(bs))
	for i := range bs {
		out[i] = bs[i].ID
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.IPv6Prefix = 16 }, "ipv6_prefix: 16 is not a prefix length"},
		{func(c *Config) { c.LoginFailures = 0 }, "login_failures: 0 is not from 1 to 100"},
		{func(c *Config) { c.LoginMinAddrs = 101 }, "login_min_addrs: 101 is not from 1 to 100"},
		{func(c *Config) { c.AddrFailures = -1 }, "addr_failures: -1 is not from 1"},
		{func(c *Config) { c.SprayLogins = -1 }, "spray_logins: -1 is not from 0"},
		{func(c *Config) { c.StaleRepeats = 0 }, "stale_repeats: 0 is not from 1"},
		{func(c *Config) { c.WidenAfter = 1 }, "widen_after: 1 is not 0 (off) or from 2 to 256"},
		{func(c *Config) { c.RepeatFactor = 0.5 }, "repeat_factor: 0.5 is not 0 (off)"},
		{func(c *Config) { c.LoginWindow = 0 }, "login_window: 0s is not a positive duration"},
		{func(c *Config) { c.AddrBan = -time.Second }, "addr_ban: -1s is not a positive duration"},
		{func(c *Config) { c.StaleWindow = 0 }, "stale_window: 0s is not a positive duration"},
		{func(c *Config) { c.LoginTarpit = -1 }, "login_tarpit: -1ns is negative"},
		{func(c *Config) { c.KnownGoodFor = -1 }, "known_good_for: -1ns is negative"},
		{func(c *Config) { c.MaxKeys = 0 }, "max_keys: 0 is not from 1"},
		{func(c *Config) { c.MaxKnownGood = 1 << 31 }, "max_known_good: 2147483648 is not from 1"},
	}
	for _, tc := range bad {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", err, tc.want)
		}
	}
	c := DefaultConfig()
	c.LoginFailures, c.AddrWindow = 0, 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "login_failures") || !strings.Contains(err.Error(), "addr_window") {
		t.Errorf("two problems: got %v, want both named", err)
	}
}

func TestKindString(t *testing.T) {
	if BanAddr.String() != "address" || BanLogin.String() != "login" || Kind(9).String() != "Kind(9)" {
		t.Errorf("got %q %q %q", BanAddr, BanLogin, Kind(9))
	}
}

func TestManualBans(t *testing.T) {
	tr := New(DefaultConfig())
	now := at(0)
	tr.SetNextID(100)

	net, err := tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.0/24"), Comment: "scanner", CreatedBy: "root"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if net.ID != 100 || net.Reason != ReasonManual || !net.Created.Equal(now) || !net.Expires.IsZero() {
		t.Errorf("added %+v", net)
	}
	host, err := tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("::ffff:192.0.2.77/128"), Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if host.ID != 101 || host.Prefix != mustPrefix("192.0.2.77/32") {
		t.Errorf("added %+v", host)
	}
	login, err := tr.AddBan(Ban{Kind: BanLogin, Login: " Bob@Example.COM ", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if login.ID != 102 || login.Login != "bob@example.com" {
		t.Errorf("added %+v", login)
	}
	// A stored ban keeps its id; later ones follow it.
	stored, err := tr.AddBan(Ban{ID: 500, Kind: BanAddr, Prefix: mustPrefix("2001:db8::/32"), Reason: ReasonAddrFailures,
		Created: now.Add(-time.Minute), Expires: now.Add(4 * time.Minute), CreatedBy: CreatedByMailgate}, now)
	if err != nil || stored.ID != 500 {
		t.Fatalf("stored ban: %+v, %v", stored, err)
	}
	if _, err := tr.AddBan(Ban{ID: 500, Kind: BanLogin, Login: "x"}, now); err == nil || !strings.Contains(err.Error(), "id is taken") {
		t.Errorf("duplicate id: %v", err)
	}
	tr.SetNextID(50) // never backwards
	next, _ := tr.AddBan(Ban{Kind: BanLogin, Login: "carol@example.com"}, now)
	if next.ID != 501 {
		t.Errorf("next id %d, want 501", next.ID)
	}

	st := tr.Check("bob@example.com", mustAddr("192.0.2.77"), "", now)
	if !st.AddrBan.Found || st.AddrBan.ID != 101 || !st.LoginBan.Found || st.LoginBan.ID != 102 {
		t.Errorf("Check: %+v", st)
	}
	st = tr.Check("", mustAddr("192.0.2.78"), "", now)
	if st.AddrBan.ID != 100 || st.AddrBan.Reason != ReasonManual || st.AddrBan.Prefix != mustPrefix("192.0.2.0/24") {
		t.Errorf("Check in the /24: %+v", st)
	}
	if got := ids(tr.Bans(now)); !slices.Equal(got, []int64{100, 101, 102, 500, 501}) {
		t.Errorf("Bans: %v", got)
	}

	// A failure inside a banned network is not counted.
	for i := range 10 {
		tr.Record(Event{Addr: mustAddr("192.0.2.5"), PwHash: fmt.Sprint(i)}, now)
	}
	if c := tr.Counters("", mustAddr("192.0.2.5"), now); c.AddrFailures != 0 {
		t.Errorf("counted inside a ban: %+v", c)
	}

	if b, ok := tr.RemoveBan(102); !ok || b.Login != "bob@example.com" {
		t.Errorf("RemoveBan(102) = %+v, %t", b, ok)
	}
	if _, ok := tr.RemoveBan(102); ok {
		t.Error("RemoveBan(102) twice")
	}
	// --ip removes every address ban containing it, not the others.
	other, _ := tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.3.0/24")}, now)
	got := tr.RemoveBansFor(mustPrefix("192.0.2.77/32"), "")
	if !slices.Equal(ids(got), []int64{100, 101}) {
		t.Errorf("RemoveBansFor(192.0.2.77) = %v", ids(got))
	}
	if st := tr.Check("", mustAddr("192.0.2.77"), "", now); st.AddrBan.Found {
		t.Errorf("still banned: %+v", st)
	}
	if st := tr.Check("", mustAddr("192.0.3.1"), "", now); st.AddrBan.ID != other.ID {
		t.Errorf("the other network: %+v", st)
	}
	if got := tr.RemoveBansFor(netip.Prefix{}, "Carol@example.com"); !slices.Equal(ids(got), []int64{501}) {
		t.Errorf("RemoveBansFor(carol) = %v", ids(got))
	}
	if got := tr.RemoveBansFor(mustPrefix("2001:db8:1::/48"), ""); !slices.Equal(ids(got), []int64{500}) {
		t.Errorf("RemoveBansFor(2001:db8:1::/48) = %v", ids(got))
	}
	if s := tr.Stats(); s.AddrBans != 1 || s.LoginBans != 0 {
		t.Errorf("Stats: %+v", s)
	}
}

func TestAddBanRejects(t *testing.T) {
	now := at(0)
	bad := []struct {
		b    Ban
		want string
	}{
		{Ban{}, "unknown kind"},
		{Ban{Kind: BanAddr}, "without an address"},
		{Ban{Kind: BanAddr, Prefix: mustPrefix("10.0.0.0/7")}, "wider than /8"},
		{Ban{Kind: BanAddr, Prefix: mustPrefix("2001::/15")}, "wider than /8 (IPv4) or /16 (IPv6)"},
		{Ban{Kind: BanAddr, Prefix: mustPrefix("::ffff:0:0/95")}, "not an IPv4 network"},
		{Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.1/32"), Login: "a"}, "names a login"},
		{Ban{Kind: BanLogin}, "without a login"},
		{Ban{Kind: BanLogin, Login: strings.Repeat("a", MaxLoginLen+1)}, "longer than"},
		{Ban{Kind: BanLogin, Login: "a\xff"}, "not valid UTF-8"},
		{Ban{Kind: BanLogin, Login: "a", Prefix: mustPrefix("192.0.2.1/32")}, "names an address"},
		{Ban{Kind: BanLogin, Login: "a", Reason: "whim"}, `unknown reason "whim"`},
		{Ban{Kind: BanLogin, Login: "a", Reason: ReasonLoginAttack}, "needs an end"},
		{Ban{Kind: BanLogin, Login: "a", Expires: now.Add(-time.Second)}, "before it starts"},
		{Ban{Kind: BanLogin, Login: "a", Comment: strings.Repeat("c", MaxCommentLen+1)}, "comment longer"},
		{Ban{Kind: BanLogin, Login: "a", ID: -3}, "negative id"},
	}
	tr := New(DefaultConfig())
	for _, tc := range bad {
		_, err := tr.AddBan(tc.b, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AddBan(%+v): got %v, want %q", tc.b, err, tc.want)
		}
	}
	if s := tr.Stats(); s.AddrBans+s.LoginBans != 0 {
		t.Errorf("rejected bans held: %+v", s)
	}
}

func TestExpire(t *testing.T) {
	cfg := DefaultConfig()
	cfg.AddrHourFailures, cfg.AddrDayFailures, cfg.LoginHourFailures, cfg.LoginDayFailures = 0, 0, 0, 0
	tr := New(cfg)
	now := at(0)
	// An address ban (5m), a login ban (10m), a manual ban without end.
	for i := range 5 {
		tr.Record(Event{Login: "alice@example.com", Addr: mustAddr("192.0.2.1"), PwHash: fmt.Sprint(i)}, now)
	}
	tr.Record(Event{Login: "bob@example.com", Addr: mustAddr("192.0.2.3"), PwHash: "y"}, now)
	tr.Record(Event{Login: "bob@example.com", Addr: mustAddr("192.0.2.4"), PwHash: "y"}, now)
	tr.Record(Event{Login: "bob@example.com", Addr: mustAddr("192.0.2.5"), PwHash: "y"}, now)
	forever, _ := tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("203.0.113.0/24")}, now)
	tr.Record(Event{Login: "carol@example.com", Addr: mustAddr("198.51.100.1"), Success: true}, now)
	if got := len(tr.Bans(now)); got != 3 {
		t.Fatalf("%d bans, want 3: %+v", got, tr.Bans(now))
	}
	s := tr.Stats()
	if s.Addrs != 4 || s.Logins != 2 || s.Pairs != 4 || s.KnownGood != 1 {
		t.Errorf("Stats: %+v", s)
	}

	if got := tr.Expire(now.Add(4 * time.Minute)); len(got) != 0 {
		t.Errorf("expired early: %+v", got)
	}
	// The windows (1m; the slow ones are off here) are gone; the
	// remembered passwords (1h) are not.
	if s := tr.Stats(); s.Addrs != 0 || s.Logins != 0 || s.Pairs != 4 {
		t.Errorf("Stats after 4m: %+v", s)
	}
	// A ban that has ended is not active, even before Expire runs.
	if got := tr.Bans(now.Add(5 * time.Minute)); len(got) != 2 {
		t.Errorf("active at 5m: %+v", got)
	}
	if st := tr.Check("", mustAddr("192.0.2.1"), "", now.Add(5*time.Minute)); st.AddrBan.Found {
		t.Errorf("ended ban still found: %+v", st)
	}
	got := tr.Expire(now.Add(5 * time.Minute))
	if len(got) != 1 || got[0].Reason != ReasonAddrFailures {
		t.Errorf("expired at 5m: %+v", got)
	}
	got = tr.Expire(now.Add(10 * time.Minute))
	if len(got) != 1 || got[0].Login != "bob@example.com" {
		t.Errorf("expired at 10m: %+v", got)
	}
	if got := tr.Expire(now.Add(time.Hour)); len(got) != 0 {
		t.Errorf("expired at 1h: %+v", got)
	}
	if got := tr.Bans(now.Add(time.Hour)); len(got) != 1 || got[0].ID != forever.ID {
		t.Errorf("left: %+v", got)
	}
	if s := tr.Stats(); s.Pairs != 0 || s.KnownGood != 1 {
		t.Errorf("Stats after 1h: %+v", s)
	}
	tr.Expire(now.Add(cfg.KnownGoodFor))
	if s := tr.Stats(); s.KnownGood != 0 || s.AddrBans != 1 {
		t.Errorf("Stats after 30 days: %+v", s)
	}
}

// An expired ban at the longest match must not hide a live, wider one.
func TestExpiredMoreSpecificBan(t *testing.T) {
	tr := New(DefaultConfig())
	now := at(0)
	tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.0/24")}, now)
	tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.9/32"), Expires: now.Add(time.Minute)}, now)
	tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.9/32"), Expires: now.Add(2 * time.Minute)}, now)
	if st := tr.Check("", mustAddr("192.0.2.9"), "", now); st.AddrBan.Prefix.Bits() != 32 || !st.AddrBan.Expires.Equal(now.Add(2*time.Minute)) {
		t.Errorf("at 0: %+v", st.AddrBan)
	}
	if st := tr.Check("", mustAddr("192.0.2.9"), "", now.Add(3*time.Minute)); st.AddrBan.Prefix.Bits() != 24 {
		t.Errorf("at 3m: %+v", st.AddrBan)
	}
}

func TestMemoryBound(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxKeys, cfg.MaxKnownGood = 100, 50
	tr := New(cfg)
	now := at(0)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
	for i := range 2 * cfg.MaxKeys {
		login := fmt.Sprintf("user%d@example.com", i)
		tr.Record(Event{Login: login, Addr: addr(i), PwHash: "pw"}, now.Add(time.Duration(i)*time.Millisecond))
		tr.Record(Event{Login: login, Addr: addr(i), Success: true}, now.Add(time.Duration(i)*time.Millisecond))
		s := tr.Stats()
		if s.Addrs > cfg.MaxKeys || s.Logins > cfg.MaxKeys || s.Pairs > cfg.MaxKeys || s.KnownGood > cfg.MaxKnownGood {
			t.Fatalf("after %d keys: %+v", i+1, s)
		}
	}
	s := tr.Stats()
	if s.Addrs != cfg.MaxKeys || s.Logins != cfg.MaxKeys || s.Pairs != cfg.MaxKeys || s.KnownGood != cfg.MaxKnownGood {
		t.Errorf("Stats: %+v", s)
	}
	// The least recently updated went first.
	later := now.Add(time.Second)
	if c := tr.Counters("user0@example.com", addr(0), later); c != (Counters{}) {
		t.Errorf("oldest kept: %+v", c)
	}
	last := 2*cfg.MaxKeys - 1
	if c := tr.Counters(fmt.Sprintf("user%d@example.com", last), addr(last), later); c.AddrFailures != 1 || c.LoginFailures != 1 || c.PairFailures != 1 {
		t.Errorf("newest: %+v", c)
	}
	kg := tr.KnownGood()
	if len(kg) != cfg.MaxKnownGood || kg[len(kg)-1].Login != fmt.Sprintf("user%d@example.com", last) {
		t.Errorf("known good: %d entries, last %+v", len(kg), kg[len(kg)-1])
	}
	// Updating a key makes it the newest: user150's address survives 99 new keys.
	tr.Record(Event{Addr: addr(150), PwHash: "again"}, later)
	for i := range cfg.MaxKeys - 1 {
		tr.Record(Event{Addr: addr(1000 + i), PwHash: "pw"}, later)
	}
	if c := tr.Counters("", addr(150), later); c.AddrFailures != 2 {
		t.Errorf("refreshed key evicted: %+v", c)
	}
}

func TestLRUReusesSlots(t *testing.T) {
	l := newLRU[int](3, 2)
	for i := range 3 {
		w := l.w(l.upsert(i, int64(i+1)))
		w[0], w[1] = int64(i), int64(i)
	}
	l.upsert(0, 10) // 0 is now the newest; 1 the oldest
	i := l.upsert(3, 11)
	if _, ok := l.get(1); ok || l.len() != 3 || l.w(i)[0] != 0 {
		t.Fatalf("evict: len %d, words %v", l.len(), l.w(i))
	}
	var order []int
	l.oldestFirst(func(k int, _ int64) { order = append(order, k) })
	if !slices.Equal(order, []int{2, 0, 3}) {
		t.Errorf("order %v", order)
	}
	if n := l.expire(10); n != 2 || l.len() != 1 {
		t.Errorf("expire: %d dropped, %d left", n, l.len())
	}
	l.upsert(7, 12)
	l.upsert(8, 13)
	if l.used != 3 || l.len() != 3 {
		t.Errorf("free slots not reused: %d slots, %d keys", l.used, l.len())
	}
	order = order[:0]
	l.oldestFirst(func(k int, _ int64) { order = append(order, k) })
	if !slices.Equal(order, []int{3, 7, 8}) {
		t.Errorf("order %v", order)
	}
}

func TestCounters(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SprayLogins = 10
	tr := New(cfg)
	now := at(0)
	a := mustAddr("2001:db8:1:2::1")
	tr.Record(Event{Login: "alice@example.com", Addr: a, PwHash: "h1"}, now)
	tr.Record(Event{Login: "alice@example.com", Addr: mustAddr("2001:db8:1:2::2"), PwHash: "h1"}, now) // same /64, same password
	tr.Record(Event{Login: "alice@example.com", Addr: a, PwHash: "h2"}, now)
	tr.Record(Event{Login: "alice@example.com", Addr: a}, now)
	tr.Record(Event{Login: "bob@example.com", Addr: a, PwHash: "h1"}, now)
	got := tr.Counters("alice@example.com", mustAddr("2001:db8:1:2::3"), now.Add(time.Second))
	want := Counters{AddrFailures: 4, LoginFailures: 3, LoginAddrs: 1, PairFailures: 4, PairHashes: 2, AddrLogins: 2,
		AddrHour: 4, AddrDay: 4, LoginHour: 3, LoginDay: 3}
	if got != want {
		t.Errorf("Counters:\n got %+v\nwant %+v", got, want)
	}
	if got, want := tr.Counters("alice@example.com", a, now.Add(time.Hour)), (Counters{AddrDay: 4, LoginDay: 3}); got != want {
		t.Errorf("an hour later: %+v, want %+v", got, want)
	}
	if got := tr.Counters("alice@example.com", a, now.Add(24*time.Hour)); got != (Counters{}) {
		t.Errorf("a day later: %+v", got)
	}
	if got := tr.Counters("x", netip.Addr{}, now); got != (Counters{}) {
		t.Errorf("no address: %+v", got)
	}
}

func TestKnownGoodPersistence(t *testing.T) {
	cfg := DefaultConfig()
	tr := New(cfg)
	now := at(0)
	tr.Record(Event{Login: "alice@example.com", Addr: mustAddr("2001:db8:7:1::5"), Success: true}, now)
	tr.Record(Event{Login: "bob@example.com", Addr: mustAddr("192.0.2.1"), Success: true}, now.Add(time.Minute))
	kg := tr.KnownGood()
	want := []KnownGood{
		{Login: "alice@example.com", Prefix: mustPrefix("2001:db8:7:1::/64"), Last: now},
		{Login: "bob@example.com", Prefix: mustPrefix("192.0.2.1/32"), Last: now.Add(time.Minute)},
	}
	if !slices.EqualFunc(kg, want, func(a, b KnownGood) bool { return a.Login == b.Login && a.Prefix == b.Prefix && a.Last.Equal(b.Last) }) {
		t.Errorf("KnownGood:\n got %+v\nwant %+v", kg, want)
	}

	fresh := New(cfg)
	slices.Reverse(kg)
	fresh.LoadKnownGood(append(kg,
		KnownGood{Login: "alice@example.com", Prefix: mustPrefix("2001:db8:7:1::/64"), Last: now.Add(-time.Hour)}, // older: ignored
		KnownGood{Login: "", Prefix: mustPrefix("192.0.2.9/32"), Last: now},                                       // skipped
		KnownGood{Login: "x", Last: now}, // skipped
	))
	if got := fresh.KnownGood(); !slices.EqualFunc(got, want, func(a, b KnownGood) bool { return a.Login == b.Login && a.Prefix == b.Prefix && a.Last.Equal(b.Last) }) {
		t.Errorf("after LoadKnownGood:\n got %+v\nwant %+v", got, want)
	}
	if st := fresh.Check("alice@example.com", mustAddr("2001:db8:7:1::99"), "", now.Add(time.Hour)); !st.KnownGood {
		t.Errorf("loaded entry not known good: %+v", st)
	}
}

// Check is on the decision path: no allocation in any of its branches.
func TestCheckDoesNotAllocate(t *testing.T) {
	cfg := DefaultConfig()
	tr := New(cfg)
	now := at(0)
	home, nat := mustAddr("203.0.113.50"), mustAddr("2001:db8:1:2::7")
	tr.Record(Event{Login: "alice@example.com", Addr: home, Success: true}, now)
	tr.Record(Event{Login: "bob@example.com", Addr: nat, PwHash: "0ld"}, now)
	tr.Record(Event{Login: "bob@example.com", Addr: nat, PwHash: "0ld"}, now)
	tr.AddBan(Ban{Kind: BanLogin, Login: "alice@example.com", Expires: now.Add(time.Hour)}, now)
	tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.0/24")}, now)
	tr.AddBan(Ban{Kind: BanAddr, Prefix: mustPrefix("192.0.2.9/32"), Expires: now.Add(time.Second)}, now)
	later := now.Add(time.Minute) // the /32 has ended, Expire has not run: the fallback walk
	cases := []struct {
		login string
		addr  netip.Addr
		pw    string
		want  Status
	}{
		{"alice@example.com", home, "pw", Status{LoginBan: BanRef{Found: true}, KnownGood: true}},
		{"bob@example.com", nat, "0ld", Status{Stale: true}},
		{"carol@example.com", mustAddr("192.0.2.9"), "x", Status{AddrBan: BanRef{Found: true}}},
		{"", mustAddr("198.51.100.1"), "", Status{}},
	}
	for _, c := range cases {
		st := tr.Check(c.login, c.addr, c.pw, later)
		if st.AddrBan.Found != c.want.AddrBan.Found || st.LoginBan.Found != c.want.LoginBan.Found || st.KnownGood != c.want.KnownGood || st.Stale != c.want.Stale {
			t.Errorf("Check(%q, %s): %+v", c.login, c.addr, st)
		}
		if n := testing.AllocsPerRun(100, func() { tr.Check(c.login, c.addr, c.pw, later) }); n != 0 {
			t.Errorf("Check(%q, %s) allocates %v times", c.login, c.addr, n)
		}
	}
}

// Run with -race: the tracker is used from many goroutines at once.
func TestConcurrentUse(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxKeys = 500
	tr := New(cfg)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				now := at(time.Duration(i) * 100 * time.Millisecond)
				a := netip.AddrFrom4([4]byte{10, byte(g), byte((i >> 8) % 4), byte(i)})
				login := fmt.Sprintf("user%d@example.com", i%50)
				tr.Record(Event{Login: login, Addr: a, PwHash: fmt.Sprint(i % 7), Success: i%11 == 0}, now)
				tr.Check(login, a, "3", now)
				switch i % 100 {
				case 0:
					tr.Expire(now)
				case 1:
					tr.Bans(now)
					tr.Stats()
					tr.Counters(login, a, now)
				case 2:
					if b, err := tr.AddBan(Ban{Kind: BanLogin, Login: login, Expires: now.Add(time.Second)}, now); err == nil {
						tr.RemoveBan(b.ID)
					}
				case 3:
					tr.KnownGood()
				}
			}
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for _, b := range tr.Bans(at(time.Hour)) {
		if seen[b.ID] {
			t.Errorf("duplicate id %d", b.ID)
		}
		seen[b.ID] = true
	}
}

// Check finds stale clients in a set that must follow the pairs: emptied
// by a success, by eviction and by expiry.
func TestStaleSetFollowsPairs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxKeys = 2
	tr := New(cfg)
	now := at(0)
	nat := mustAddr("198.51.100.7")
	twice := func(login string, now time.Time) {
		tr.Record(Event{Login: login, Addr: nat, PwHash: "0ld"}, now)
		tr.Record(Event{Login: login, Addr: nat, PwHash: "0ld"}, now)
	}
	stale := func(now time.Time) bool { return tr.Check("bob@example.com", nat, "0ld", now).Stale }

	twice("bob@example.com", now)
	if !stale(now) || tr.Stats().Stale != 1 {
		t.Fatalf("not stale: %+v", tr.Stats())
	}
	tr.Record(Event{Login: "bob@example.com", Addr: nat, PwHash: "0ld", Success: true}, now)
	if stale(now) || tr.Stats().Stale != 0 {
		t.Errorf("stale after a success with the password: %+v", tr.Stats())
	}

	twice("bob@example.com", now)
	twice("carol@example.com", now.Add(time.Second))
	twice("dave@example.com", now.Add(2*time.Second)) // evicts bob's pair
	if stale(now.Add(3*time.Second)) || tr.Stats().Stale != 2 {
		t.Errorf("evicted pair still stale: %+v", tr.Stats())
	}

	tr.Expire(now.Add(2*time.Second + cfg.StaleWindow))
	if s := tr.Stats(); s.Stale != 0 || s.Pairs != 0 {
		t.Errorf("after the stale window: %+v", s)
	}

	// A fifth stale password takes the slot of the oldest of four.
	cfg.AddrFailures = MaxThreshold
	tr = New(cfg)
	for i := range pairSlots + 1 {
		for range 2 {
			tr.Record(Event{Login: "erin@example.com", Addr: nat, PwHash: fmt.Sprint("p", i)}, now.Add(time.Duration(i)*time.Second))
		}
	}
	later := now.Add(time.Minute)
	if s := tr.Stats(); s.Stale != pairSlots {
		t.Errorf("stale passwords: %+v", s)
	}
	if tr.Check("erin@example.com", nat, "p0", later).Stale || !tr.Check("erin@example.com", nat, "p1", later).Stale || !tr.Check("erin@example.com", nat, "p4", later).Stale {
		t.Error("the oldest password is still stale, or a newer one is not")
	}
}

// Progressive lengths survive a restart through the stored bans.
func TestProgressiveAfterRestart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RepeatFactor = 2
	now := at(0)
	a := mustAddr("192.0.2.50")
	burst := func(tr *Tracker, now time.Time) []Ban {
		var out []Ban
		for i := range 5 {
			out = append(out, tr.Record(Event{Addr: a, PwHash: fmt.Sprint(now, i)}, now)...)
		}
		return out
	}
	first := burst(New(cfg), now)
	if len(first) != 1 || first[0].Expires.Sub(first[0].Created) != 5*time.Minute {
		t.Fatalf("first ban: %+v", first)
	}
	restarted := New(cfg)
	if _, err := restarted.AddBan(first[0], now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	restarted.Expire(now.Add(6 * time.Minute))
	second := burst(restarted, now.Add(7*time.Minute))
	if len(second) != 1 || second[0].Expires.Sub(second[0].Created) != 10*time.Minute || second[0].ID != first[0].ID+1 {
		t.Errorf("second ban: %+v", second)
	}
	// Lifting a ban by hand forgets it.
	restarted.RemoveBan(second[0].ID)
	third := burst(restarted, now.Add(8*time.Minute))
	if len(third) != 1 || third[0].Expires.Sub(third[0].Created) != 5*time.Minute {
		t.Errorf("after ban rm: %+v", third)
	}
}

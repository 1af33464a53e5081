package abuse

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// at is the test clock: a Monday morning plus d.
func at(d time.Duration) time.Time {
	return time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC).Add(d)
}

// step is one moment of a timeline: a reported login result, or a Check
// with the status it must give.
type step struct {
	at          time.Duration
	check       bool
	login, addr string
	pw          string
	ok          bool
	want        want
}

// want is the part of a Status a timeline checks.
type want struct {
	addrBan  string // the banned prefix, "" for none
	loginBan bool
	known    bool
	stale    bool
}

func (w want) String() string {
	return fmt.Sprintf("addrBan=%q loginBan=%t known=%t stale=%t", w.addrBan, w.loginBan, w.known, w.stale)
}

func fail(d time.Duration, login, addr, pw string) step {
	return step{at: d, login: login, addr: addr, pw: pw}
}

func success(d time.Duration, login, addr string) step {
	return step{at: d, login: login, addr: addr, pw: "good", ok: true}
}

func check(d time.Duration, login, addr, pw string, w want) step {
	return step{at: d, check: true, login: login, addr: addr, pw: pw, want: w}
}

// every makes n steps from start, one per interval.
func every(start, interval time.Duration, n int, f func(i int, d time.Duration) step) []step {
	out := make([]step, 0, n)
	for i := range n {
		out = append(out, f(i, start+time.Duration(i)*interval))
	}
	return out
}

// burst is n failures from addr, one a second from start, each for its own
// login and password (new ones for every start).
func burst(start time.Duration, addr string, n int) []step {
	return every(start, time.Second, n, func(i int, d time.Duration) step {
		return fail(d, fmt.Sprintf("user%d-%d@example.com", i, start/time.Second), addr, fmt.Sprintf("pw%d-%d", i, start/time.Second))
	})
}

func cat(parts ...any) []step {
	var out []step
	for _, p := range parts {
		switch p := p.(type) {
		case step:
			out = append(out, p)
		case []step:
			out = append(out, p...)
		default:
			panic(fmt.Sprintf("cat: %T", p))
		}
	}
	return out
}

// banLine summarises a ban created during a timeline.
func banLine(b Ban) string {
	return fmt.Sprintf("%s %s %s for %v at %v", b.Reason, b.Kind, b.Target(), b.Expires.Sub(b.Created), b.Created.Sub(at(0)))
}

// play runs a timeline (stably sorted by time) on a fresh tracker,
// calling Expire before each step as the daemon does every second, and
// returns the bans created.
func play(t *testing.T, cfg Config, steps []step) (*Tracker, []string) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tr := New(cfg)
	steps = slices.Clone(steps)
	slices.SortStableFunc(steps, func(a, b step) int { return int(a.at - b.at) })
	var got []string
	for _, s := range steps {
		now := at(s.at)
		tr.Expire(now)
		addr := netip.MustParseAddr(s.addr)
		if s.check {
			st := tr.Check(s.login, addr, s.pw, now)
			g := want{loginBan: st.LoginBan.Found, known: st.KnownGood, stale: st.Stale}
			if st.AddrBan.Found {
				g.addrBan = st.AddrBan.Prefix.String()
			}
			if g != s.want {
				t.Errorf("at %v Check(%q, %s, %q):\n got %v\nwant %v", s.at, s.login, s.addr, s.pw, g, s.want)
			}
			continue
		}
		for _, b := range tr.Record(Event{Login: s.login, Addr: addr, PwHash: s.pw, Success: s.ok}, now) {
			got = append(got, banLine(b))
		}
	}
	return tr, got
}

func TestScenarios(t *testing.T) {
	const (
		alice = "alice@example.com"
		bob   = "bob@example.com"
		carol = "carol@example.com"
		dave  = "dave@example.com"
		erin  = "erin@example.com"
		nat   = "198.51.100.7"
		home  = "203.0.113.50"
	)
	banned := want{loginBan: true}
	addrBanned := func(p string) want { return want{addrBan: p} }
	botnet := func(i int) string { return fmt.Sprintf("10.1.0.%d", i%20+1) }
	attack := func(start time.Duration, n int) []step { // 20 addresses on alice, one failure every 2 s
		return every(start, 2*time.Second, n, func(i int, d time.Duration) step {
			return fail(d, alice, botnet(i), fmt.Sprintf("guess%d-%d", i, start/time.Second))
		})
	}
	nat3 := func(from, to time.Duration) []step { // three colleagues log in fine, every 10 minutes
		var out []step
		for i, who := range []string{carol, dave, erin} {
			out = append(out, every(from+time.Duration(i)*time.Minute, 10*time.Minute, int((to-from)/(10*time.Minute)), func(_ int, d time.Duration) step {
				return success(d, who, nat)
			})...)
		}
		return out
	}

	cases := []struct {
		name  string
		cfg   func(*Config)
		steps []step
		bans  []string
	}{
		{
			name: "rule a at its threshold: 3 failures, 2 addresses, within a minute",
			steps: cat(
				fail(0, alice, "192.0.2.1", "p1"),
				fail(20*time.Second, alice, "192.0.2.2", "p2"),
				check(58*time.Second, alice, "192.0.2.3", "x", want{}),
				fail(59*time.Second, alice, "192.0.2.1", "p3"),
				check(59*time.Second, alice, "198.51.100.1", "x", banned),
				check(60*time.Second, bob, "192.0.2.1", "x", want{}), // the addresses are not banned
				check(10*time.Minute+59*time.Second-1, alice, "192.0.2.1", "x", banned),
				check(10*time.Minute+59*time.Second, alice, "192.0.2.1", "x", want{}),
			),
			bans: []string{"login_attack login alice@example.com for 10m0s at 59s"},
		},
		{
			name:  "rule a below: 2 failures from 2 addresses",
			steps: cat(fail(0, alice, "192.0.2.1", "p1"), fail(20*time.Second, alice, "192.0.2.2", "p2"), check(30*time.Second, alice, "192.0.2.3", "x", want{})),
		},
		{
			name: "rule a below: 3 failures from one address",
			steps: cat(fail(0, alice, "192.0.2.1", "p1"), fail(10*time.Second, alice, "192.0.2.1", "p2"), fail(20*time.Second, alice, "192.0.2.1", "p3"),
				check(21*time.Second, alice, "192.0.2.2", "x", want{})),
		},
		{
			name: "rule a: the first failure leaves the window after exactly one minute",
			steps: cat(
				fail(0, alice, "192.0.2.1", "p1"),
				fail(30*time.Second, alice, "192.0.2.2", "p2"),
				fail(60*time.Second, alice, "192.0.2.1", "p3"), // 0s has left: 2 in the window
				check(60*time.Second, alice, "192.0.2.9", "x", want{}),
				fail(61*time.Second, alice, "192.0.2.2", "p4"), // 30s, 60s, 61s
				check(61*time.Second, alice, "192.0.2.9", "x", banned),
			),
			bans: []string{"login_attack login alice@example.com for 10m0s at 1m1s"},
		},
		{
			name: "rule a: attempts during the block do not extend it",
			steps: cat(
				fail(0, alice, "192.0.2.1", "p1"),
				fail(time.Second, alice, "192.0.2.2", "p2"),
				fail(2*time.Second, alice, "192.0.2.3", "p3"),
				// During the block: one failure every 10 s from 3 addresses;
				// neither the login nor those addresses are counted.
				every(10*time.Second, 10*time.Second, 59, func(i int, d time.Duration) step {
					return fail(d, alice, fmt.Sprintf("192.0.2.%d", i%3+1), fmt.Sprintf("q%d", i))
				}),
				check(10*time.Minute+2*time.Second-1, alice, "192.0.2.9", "x", banned),
				check(10*time.Minute+2*time.Second, alice, "192.0.2.9", "x", want{}),
				fail(10*time.Minute+3*time.Second, alice, "192.0.2.1", "r1"), // starts from zero
				check(10*time.Minute+4*time.Second, alice, "192.0.2.9", "x", want{}),
			),
			bans: []string{"login_attack login alice@example.com for 10m0s at 2s"},
		},
		{
			name: "rule b at its threshold: 5 failures within a minute",
			steps: cat(
				every(0, 10*time.Second, 5, func(i int, d time.Duration) step {
					return fail(d, fmt.Sprintf("u%d@example.com", i), "203.0.113.9", "pw")
				}),
				check(40*time.Second, "x@example.com", "203.0.113.9", "", addrBanned("203.0.113.9/32")),
				check(40*time.Second, "x@example.com", "203.0.113.10", "", want{}),
				check(5*time.Minute+40*time.Second-1, "", "203.0.113.9", "", addrBanned("203.0.113.9/32")),
				check(5*time.Minute+40*time.Second, "", "203.0.113.9", "", want{}),
			),
			bans: []string{"addr_failures address 203.0.113.9/32 for 5m0s at 40s"},
		},
		{
			name: "rule b below: 4 failures, and a fifth after the first left",
			steps: cat(
				every(0, 10*time.Second, 4, func(i int, d time.Duration) step {
					return fail(d, fmt.Sprintf("u%d@example.com", i), "203.0.113.9", "pw")
				}),
				check(50*time.Second, "", "203.0.113.9", "", want{}),
				fail(60*time.Second, "u9@example.com", "203.0.113.9", "pw"),
				check(61*time.Second, "", "203.0.113.9", "", want{}),
			),
		},
		{
			name: "rule b: failures without a login count",
			steps: cat(every(0, time.Second, 5, func(i int, d time.Duration) step { return fail(d, "", "203.0.113.9", "") }),
				check(5*time.Second, "", "203.0.113.9", "", addrBanned("203.0.113.9/32"))),
			bans: []string{"addr_failures address 203.0.113.9/32 for 5m0s at 4s"},
		},
		{
			name: "a distributed attack on one login from 20 addresses: the login is banned, no address",
			steps: cat(
				attack(0, 60),
				check(2*time.Minute, alice, "10.1.0.5", "x", banned),
				check(2*time.Minute, bob, "10.1.0.5", "x", want{}),
			),
			bans: []string{"login_attack login alice@example.com for 10m0s at 4s"},
		},
		{
			// Under rule (b) (5 a minute): the hour window bans it after
			// 30, the next bans double (repeat_factor), and after 100 in a
			// day the day window bans it for a day: 100 guesses in all.
			name: "a slow scan: one address, one failure every 15 s for a day",
			steps: every(0, 15*time.Second, 24*60*4, func(i int, d time.Duration) step {
				return fail(d, fmt.Sprintf("user%d@example.com", i%1000), "192.0.2.66", fmt.Sprintf("pw%d", i))
			}),
			bans: []string{
				"addr_hour address 192.0.2.66/32 for 1h0m0s at 7m15s",
				"addr_hour address 192.0.2.66/32 for 2h0m0s at 1h14m30s",
				"addr_hour address 192.0.2.66/32 for 4h0m0s at 3h21m45s",
				"addr_day address 192.0.2.66/32 for 24h0m0s at 7h24m0s",
			},
		},
		{
			name:  "slow windows off: the slow scan of one address is never banned",
			cfg:   func(c *Config) { c.AddrHourFailures, c.AddrDayFailures = 0, 0 },
			steps: every(0, 15*time.Second, 24*60*4, func(i int, d time.Duration) step { return fail(d, "", "192.0.2.66", fmt.Sprintf("pw%d", i)) }),
		},
		{
			// Under rule (a) (3 a minute from 2 addresses): 20 in an hour ban
			// the login for an hour, 50 in a day for a day.
			name: "a slow scan: one login, a new address every 31 s for a day",
			steps: every(0, 31*time.Second, 24*60*60/31, func(i int, d time.Duration) step {
				return fail(d, alice, botnet(i), fmt.Sprintf("pw%d", i))
			}),
			bans: []string{
				"login_hour login alice@example.com for 1h0m0s at 9m49s",
				"login_hour login alice@example.com for 1h0m0s at 1h20m5s",
				"login_day login alice@example.com for 24h0m0s at 2h25m11s",
			},
		},
		{
			name: "the owner's failures from a known-good address count toward no slow window",
			steps: cat(
				[]step{success(0, alice, home)},
				every(time.Minute, 4*time.Minute, 60, func(i int, d time.Duration) step { return fail(d, alice, home, fmt.Sprintf("typo%d", i)) }),
				check(4*time.Hour, alice, home, "", want{known: true}),
			),
		},
		{
			// One failure every 13 s puts 5 failures in 52 s: that is over rule (b).
			name: "a scan at one failure every 13 s is over rule b",
			steps: every(0, 13*time.Second, 10, func(i int, d time.Duration) step {
				return fail(d, fmt.Sprintf("user%d@example.com", i), "192.0.2.66", fmt.Sprintf("pw%d", i))
			}),
			bans: []string{"addr_failures address 192.0.2.66/32 for 5m0s at 52s"},
		},
		{
			name: "spraying on: 10 logins failing from one address within 10 minutes",
			cfg:  func(c *Config) { c.SprayLogins = 10 },
			steps: cat(
				every(0, 50*time.Second, 10, func(i int, d time.Duration) step {
					return fail(d, fmt.Sprintf("user%d@example.com", i), "192.0.2.99", "Summer2025!")
				}),
				check(7*time.Minute+30*time.Second, "", "192.0.2.99", "", addrBanned("192.0.2.99/32")),
				check(time.Hour+7*time.Minute+30*time.Second, "", "192.0.2.99", "", want{}),
			),
			bans: []string{"spray address 192.0.2.99/32 for 1h0m0s at 7m30s"},
		},
		{
			name: "spraying on: 9 logins, or 10 over more than the window, are not spraying",
			cfg:  func(c *Config) { c.SprayLogins = 10 },
			steps: cat(
				every(0, 50*time.Second, 9, func(i int, d time.Duration) step {
					return fail(d, fmt.Sprintf("user%d@example.com", i), "192.0.2.99", "Summer2025!")
				}),
				every(0, 70*time.Second, 10, func(i int, d time.Duration) step {
					return fail(d, fmt.Sprintf("user%d@example.com", i), "192.0.2.98", "Summer2025!")
				}),
			),
		},
		{
			name: "spraying off (the default): the same attack bans nothing",
			steps: every(0, 50*time.Second, 10, func(i int, d time.Duration) step {
				return fail(d, fmt.Sprintf("user%d@example.com", i), "192.0.2.99", "Summer2025!")
			}),
		},
		{
			name: "an IPv6 attacker rotating addresses inside one /64 is one address",
			steps: cat(
				every(0, time.Second, 5, func(i int, d time.Duration) step {
					return fail(d, fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("2001:db8:1:2::%x", i+1), "pw")
				}),
				check(5*time.Second, "", "2001:db8:1:2:ffff:1:2:3", "", addrBanned("2001:db8:1:2::/64")),
				check(5*time.Second, "", "2001:db8:1:3::1", "", want{}),
			),
			bans: []string{"addr_failures address 2001:db8:1:2::/64 for 5m0s at 4s"},
		},
		{
			name: "rule a: three addresses in one /64 are one address",
			steps: cat(
				fail(0, alice, "2001:db8:1:2::a", "p1"),
				fail(time.Second, alice, "2001:db8:1:2::b", "p2"),
				fail(2*time.Second, alice, "2001:db8:1:2::c", "p3"),
				check(3*time.Second, alice, "2001:db8:9::1", "x", want{}),
				fail(4*time.Second, alice, "2001:db8:1:3::1", "p4"), // a second /64
				check(4*time.Second, alice, "2001:db8:9::1", "x", banned),
			),
			bans: []string{"login_attack login alice@example.com for 10m0s at 4s"},
		},
		{
			name: "IPv4-mapped IPv6 is the IPv4 address",
			steps: cat(
				every(0, time.Second, 5, func(i int, d time.Duration) step {
					return fail(d, "", []string{"192.0.2.7", "::ffff:192.0.2.7"}[i%2], "")
				}),
				check(5*time.Second, "", "::ffff:192.0.2.7", "", addrBanned("192.0.2.7/32")),
			),
			bans: []string{"addr_failures address 192.0.2.7/32 for 5m0s at 4s"},
		},
		{
			name: "widening on: three /64s banned inside one /56 ban the /56",
			cfg:  func(c *Config) { c.WidenAfter = 3 },
			steps: cat(
				burst(0, "2001:db8:0:101::1", 5),
				burst(10*time.Second, "2001:db8:0:102::1", 5),
				check(15*time.Second, "", "2001:db8:0:1ff::1", "", want{}),
				burst(20*time.Second, "2001:db8:0:103::1", 5),
				check(25*time.Second, "", "2001:db8:0:1ff::1", "", addrBanned("2001:db8:0:100::/56")),
				check(25*time.Second, "", "2001:db8:0:101::9", "", addrBanned("2001:db8:0:101::/64")),
				check(25*time.Second, "", "2001:db8:0:200::1", "", want{}),
				// The /56 ends with the last /64 ban.
				check(5*time.Minute+24*time.Second-1, "", "2001:db8:0:1ff::1", "", addrBanned("2001:db8:0:100::/56")),
				check(5*time.Minute+24*time.Second, "", "2001:db8:0:1ff::1", "", want{}),
			),
			bans: []string{
				"addr_failures address 2001:db8:0:101::/64 for 5m0s at 4s",
				"addr_failures address 2001:db8:0:102::/64 for 5m0s at 14s",
				"addr_failures address 2001:db8:0:103::/64 for 5m0s at 24s",
				"widened address 2001:db8:0:100::/56 for 5m0s at 24s",
			},
		},
		{
			name: "widening on: /56s inside a /48 widen to the /48",
			cfg:  func(c *Config) { c.WidenAfter = 2 },
			steps: cat(
				burst(0, "2001:db8:5:101::1", 5),
				burst(10*time.Second, "2001:db8:5:102::1", 5),
				burst(20*time.Second, "2001:db8:5:201::1", 5),
				burst(30*time.Second, "2001:db8:5:202::1", 5),
				check(35*time.Second, "", "2001:db8:5:ff00::1", "", addrBanned("2001:db8:5::/48")),
				check(35*time.Second, "", "2001:db8:6::1", "", want{}),
			),
			bans: []string{
				"addr_failures address 2001:db8:5:101::/64 for 5m0s at 4s",
				"addr_failures address 2001:db8:5:102::/64 for 5m0s at 14s",
				"widened address 2001:db8:5:100::/56 for 5m0s at 14s",
				"addr_failures address 2001:db8:5:201::/64 for 5m0s at 24s",
				"addr_failures address 2001:db8:5:202::/64 for 5m0s at 34s",
				"widened address 2001:db8:5:200::/56 for 5m0s at 34s",
				"widened address 2001:db8:5::/48 for 5m0s at 34s",
			},
		},
		{
			name: "widening on: /64s banned at different times do not widen",
			cfg:  func(c *Config) { c.WidenAfter = 3 },
			steps: cat(
				burst(0, "2001:db8:0:101::1", 5),
				burst(4*time.Minute, "2001:db8:0:102::1", 5),
				burst(8*time.Minute, "2001:db8:0:103::1", 5), // the first ended at 5m4s
			),
			bans: []string{
				"addr_failures address 2001:db8:0:101::/64 for 5m0s at 4s",
				"addr_failures address 2001:db8:0:102::/64 for 5m0s at 4m4s",
				"addr_failures address 2001:db8:0:103::/64 for 5m0s at 8m4s",
			},
		},
		{
			name: "widening off (the default)",
			steps: cat(
				burst(0, "2001:db8:0:101::1", 5),
				burst(10*time.Second, "2001:db8:0:102::1", 5),
				burst(20*time.Second, "2001:db8:0:103::1", 5),
				burst(30*time.Second, "2001:db8:0:104::1", 5),
				check(35*time.Second, "", "2001:db8:0:1ff::1", "", want{}),
			),
			bans: []string{
				"addr_failures address 2001:db8:0:101::/64 for 5m0s at 4s",
				"addr_failures address 2001:db8:0:102::/64 for 5m0s at 14s",
				"addr_failures address 2001:db8:0:103::/64 for 5m0s at 24s",
				"addr_failures address 2001:db8:0:104::/64 for 5m0s at 34s",
			},
		},
		{
			name: "progressive addresses (the default): each repeat doubles, up to repeat_max; forgotten after repeat_memory",
			cfg:  func(c *Config) { c.RepeatMax = 30 * time.Minute },
			steps: cat(
				burst(0, "192.0.2.50", 5),                           // 5m, ends 5m4s
				burst(6*time.Minute, "192.0.2.50", 5),               // 10m, ends 16m4s
				burst(17*time.Minute, "192.0.2.50", 5),              // 20m, ends 37m4s
				burst(38*time.Minute, "192.0.2.50", 5),              // 30m (40m capped), ends 1h8m4s
				burst(69*time.Minute, "192.0.2.50", 5),              // 30m, ends 1h39m4s
				burst(25*time.Hour+40*time.Minute, "192.0.2.50", 5), // more than 24h later: 5m
				burst(0, "192.0.2.51", 5),                           // another address starts at 5m
			),
			bans: []string{
				"addr_failures address 192.0.2.50/32 for 5m0s at 4s",
				"addr_failures address 192.0.2.51/32 for 5m0s at 4s",
				"addr_failures address 192.0.2.50/32 for 10m0s at 6m4s",
				"addr_failures address 192.0.2.50/32 for 20m0s at 17m4s",
				"addr_failures address 192.0.2.50/32 for 30m0s at 38m4s",
				"addr_failures address 192.0.2.50/32 for 30m0s at 1h9m4s",
				"addr_failures address 192.0.2.50/32 for 5m0s at 25h40m4s",
			},
		},
		{
			name: "progressive logins: each repeat triples, and one stranger's failure on probation bans again",
			cfg:  func(c *Config) { c.LoginRepeatFactor = 3 },
			steps: cat(
				attack(0, 3),              // 10m, ends 10m4s
				attack(11*time.Minute, 3), // on probation: the first failure bans for 30m
				attack(42*time.Minute, 1), // ends 41m; again: 90m
			),
			bans: []string{
				"login_attack login alice@example.com for 10m0s at 4s",
				"login_attack login alice@example.com for 30m0s at 11m0s",
				"login_attack login alice@example.com for 1h30m0s at 42m0s",
			},
		},
		{
			name: "progressive logins: the owner's typo from a known-good address is no probation failure",
			cfg:  func(c *Config) { c.LoginRepeatFactor = 2 },
			steps: cat(
				[]step{success(0, alice, home)},
				attack(time.Minute, 3), // 10m, ends 11m4s
				[]step{
					fail(12*time.Minute, alice, home, "typo"),
					check(12*time.Minute+time.Second, alice, home, "", want{known: true}),
				},
				attack(13*time.Minute, 1), // a stranger: banned again for 20m
			),
			bans: []string{
				"login_attack login alice@example.com for 10m0s at 1m4s",
				"login_attack login alice@example.com for 20m0s at 13m0s",
			},
		},
		{
			name: "progressive off: every ban has the rule's length",
			cfg:  func(c *Config) { c.RepeatFactor = 0 },
			steps: cat(
				burst(0, "192.0.2.50", 5),
				burst(6*time.Minute, "192.0.2.50", 5),
				burst(17*time.Minute, "192.0.2.50", 5),
			),
			bans: []string{
				"addr_failures address 192.0.2.50/32 for 5m0s at 4s",
				"addr_failures address 192.0.2.50/32 for 5m0s at 6m4s",
				"addr_failures address 192.0.2.50/32 for 5m0s at 17m4s",
			},
		},
		{
			name: "office NAT: one phone repeats an old password all day, three colleagues log in fine",
			steps: cat(
				every(0, 5*time.Minute, 12*12+1, func(_ int, d time.Duration) step { return fail(d, bob, nat, "0ld") }),
				nat3(0, 12*time.Hour),
				check(time.Minute, bob, nat, "0ld", want{}), // one failure is not yet stale
				check(5*time.Minute, bob, nat, "0ld", want{stale: true}),
				check(12*time.Hour, bob, nat, "0ld", want{stale: true}),
				check(12*time.Hour, bob, nat, "n3w", want{}),
				check(12*time.Hour, bob, "192.0.2.1", "0ld", want{}),
				check(12*time.Hour, carol, nat, "", want{known: true}),
				check(12*time.Hour, "", nat, "", want{}),
				// The phone stops; an hour later the password is forgotten.
				check(13*time.Hour-1, bob, nat, "0ld", want{stale: true}),
				check(13*time.Hour, bob, nat, "0ld", want{}),
			),
		},
		{
			name: "office NAT: a phone hammering the old password every 5 s, and a colleague's typos",
			steps: cat(
				every(0, 5*time.Second, 12*60, func(_ int, d time.Duration) step { return fail(d, bob, nat, "0ld") }),
				fail(10*time.Minute, carol, nat, "typo1"),
				fail(10*time.Minute+5*time.Second, carol, nat, "typo2"),
				success(10*time.Minute+20*time.Second, carol, nat),
				nat3(0, time.Hour),
				check(59*time.Minute, bob, nat, "0ld", want{stale: true}),
				check(59*time.Minute, carol, nat, "good", want{known: true}),
			),
		},
		{
			name: "stale detection counts passwords, not attempts: 5 different passwords from one client are rule b",
			steps: cat(
				every(0, time.Second, 5, func(i int, d time.Duration) step { return fail(d, bob, nat, fmt.Sprintf("try%d", i)) }),
				check(5*time.Second, dave, nat, "", addrBanned(nat+"/32")),
			),
			bans: []string{"addr_failures address 198.51.100.7/32 for 5m0s at 4s"},
		},
		{
			name: "a success forgets the password as a failed one",
			steps: cat(
				fail(0, bob, nat, "h1"), fail(time.Second, bob, nat, "h1"),
				check(2*time.Second, bob, nat, "h1", want{stale: true}),
				step{at: 3 * time.Second, login: bob, addr: nat, pw: "h1", ok: true},
				check(4*time.Second, bob, nat, "h1", want{known: true}),
			),
		},
		{
			name: "lockout-proof: the user logs in from home while a botnet attacks the login",
			steps: cat(
				success(0, alice, home),
				success(time.Hour, alice, "2001:db8:77:1::10"),
				attack(24*time.Hour, 60),
				check(24*time.Hour+time.Minute, alice, home, "good", want{loginBan: true, known: true}),
				check(24*time.Hour+time.Minute, alice, "2001:db8:77:1::99", "good", want{loginBan: true, known: true}),
				check(24*time.Hour+time.Minute, alice, "10.1.0.5", "good", banned),
				check(24*time.Hour+time.Minute, bob, home, "good", want{}), // known good for alice only
				// Home's own mistakes during the ban are not counted either.
				fail(24*time.Hour+2*time.Minute, alice, home, "typo"),
				success(24*time.Hour+2*time.Minute+10*time.Second, alice, home),
				check(30*24*time.Hour+time.Hour, alice, home, "good", want{known: true}),
				check(30*24*time.Hour+time.Hour+1, alice, "2001:db8:77:1::99", "good", want{}), // 30 days since its success
			),
			bans: []string{"login_attack login alice@example.com for 10m0s at 24h0m4s"},
		},
		{
			name: "known good is off when known_good_for is 0",
			cfg:  func(c *Config) { c.KnownGoodFor = 0 },
			steps: cat(
				success(0, alice, home),
				check(time.Minute, alice, home, "good", want{}),
			),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			_, got := play(t, cfg, tc.steps)
			if !slices.Equal(got, tc.bans) {
				t.Errorf("bans:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tc.bans, "\n     "))
			}
		})
	}
}

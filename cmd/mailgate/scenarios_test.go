package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/geoip/geoiptest"
)

// The scenario suite (docs/replay.md): events files whose header says
// the config to replay them with ("# config: TOML") and what must come
// out ("# expect: PATH OP VALUE" over the JSON report). The short ones
// are committed in test/scenarios; the hour-long ones are generated here
// with a fixed seed (-write-scenarios DIR writes them out, to replay by
// hand). Every one runs through the replay command itself.

const scenarioDir = "../../test/scenarios"

var writeScenarios = flag.String("write-scenarios", "", "write the generated scenarios to this `DIR`")

// scenarioFiles returns every scenario: the committed files and the
// generated ones (written to dir).
func scenarioFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(scenarioDir, "*.jsonl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios in %s: %v", scenarioDir, err)
	}
	for _, g := range generatedScenarios() {
		p := filepath.Join(dir, g.name+".jsonl")
		if err := os.WriteFile(p, g.text(), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

func TestScenarios(t *testing.T) {
	dir := t.TempDir()
	if *writeScenarios != "" {
		dir = *writeScenarios
	}
	for _, path := range scenarioFiles(t, dir) {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		t.Run(name, func(t *testing.T) {
			sc := readScenario(t, path)
			rep := replayScenario(t, path, &sc, sc.config)
			for _, f := range sc.check(rep) {
				t.Error(f)
			}
		})
	}
}

// TestScenariosCatchWeakening replays every scenario with the engine
// weakened (bans and counting off: [bruteforce] enabled = false) and
// checks that its expectations notice: a suite that passes either way
// proves nothing. A scenario may name more weakenings its expectations
// must catch ("# weaken: TOML", e.g. known-good addresses off); one that
// only shows that nothing happens says so with "# weakened: passes".
func TestScenariosCatchWeakening(t *testing.T) {
	for _, path := range scenarioFiles(t, t.TempDir()) {
		name := strings.TrimSuffix(filepath.Base(path), ".jsonl")
		t.Run(name, func(t *testing.T) {
			sc := readScenario(t, path)
			weakenings := sc.weaken
			if !sc.weakenedPasses {
				weakenings = append(weakenings, "bruteforce.enabled = false")
			}
			if len(weakenings) == 0 {
				t.Skip("# weakened: passes")
			}
			for _, w := range weakenings {
				rep := replayScenario(t, path, &sc, sc.config+w+"\n")
				if len(sc.check(rep)) == 0 {
					t.Errorf("every expectation holds with %s: the scenario cannot catch it", w)
				}
			}
		})
	}
}

type scenario struct {
	config         string
	expects        []expectation
	weakenedPasses bool
	weaken         []string          // TOML lines that weaken the engine
	geoip          map[string]string // network -> country: a GeoIP database for the replay
}

type expectation struct {
	line     int
	path, op string
	value    string
	num      float64
	numeric  bool
	source   string
}

// readScenario reads a scenario's header lines.
func readScenario(t *testing.T, path string) scenario {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sc scenario
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for n := 1; s.Scan(); n++ {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "# config:"):
			sc.config += strings.TrimSpace(strings.TrimPrefix(line, "# config:")) + "\n"
		case strings.HasPrefix(line, "# expect:"):
			f := strings.Fields(strings.TrimPrefix(line, "# expect:"))
			if len(f) != 3 || !slices.Contains([]string{"=", "<=", ">="}, f[1]) {
				t.Fatalf("%s:%d: want # expect: PATH (=|<=|>=) VALUE", path, n)
			}
			e := expectation{line: n, path: f[0], op: f[1], value: f[2], source: strings.TrimSpace(strings.TrimPrefix(line, "# expect:"))}
			if v, err := strconv.ParseFloat(f[2], 64); err == nil {
				e.num, e.numeric = v, true
			} else if e.op != "=" {
				t.Fatalf("%s:%d: %s needs a number", path, n, e.op)
			}
			sc.expects = append(sc.expects, e)
		case strings.HasPrefix(line, "# geoip:"):
			f := strings.Fields(strings.TrimPrefix(line, "# geoip:"))
			if len(f) != 2 {
				t.Fatalf("%s:%d: want # geoip: NETWORK COUNTRY", path, n)
			}
			if sc.geoip == nil {
				sc.geoip = map[string]string{}
			}
			sc.geoip[f[0]] = f[1]
		case strings.HasPrefix(line, "# weaken:"):
			sc.weaken = append(sc.weaken, strings.TrimSpace(strings.TrimPrefix(line, "# weaken:")))
		case strings.HasPrefix(line, "# weakened: passes"):
			sc.weakenedPasses = true
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(sc.expects) == 0 {
		t.Fatalf("%s: no # expect: lines", path)
	}
	return sc
}

// replayScenario runs 'mailgate replay --events path --json' with cfg as
// the config file (and sc's GeoIP database) and returns the report as
// JSON values.
func replayScenario(t *testing.T, path string, sc *scenario, cfg string) any {
	t.Helper()
	dir := t.TempDir()
	if sc.geoip != nil {
		db := filepath.Join(dir, "country.mmdb")
		if err := geoiptest.WriteMMDB(db, sc.geoip, geoiptest.ShapeMaxMind); err != nil {
			t.Fatal(err)
		}
		cfg = fmt.Sprintf("geoip.database = %q\n", db) + cfg
	}
	cfgPath := filepath.Join(dir, "mailgate.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	if err := cmdReplay(context.Background(), fs, []string{"--config", cfgPath, "--events", path, "--json"}, &out); err != nil {
		t.Fatalf("replay %s: %v", path, err)
	}
	var rep any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// check returns the expectations rep does not meet.
func (sc *scenario) check(rep any) []string {
	var fails []string
	for _, e := range sc.expects {
		got, ok := lookup(rep, e.path)
		if !ok {
			fails = append(fails, fmt.Sprintf("line %d: %s: the report has no %s", e.line, e.source, e.path))
			continue
		}
		if !e.holds(got) {
			fails = append(fails, fmt.Sprintf("line %d: %s: got %v", e.line, e.source, got))
		}
	}
	return fails
}

func (e *expectation) holds(got any) bool {
	if n, ok := got.(float64); ok && e.numeric {
		switch e.op {
		case "=":
			return n == e.num
		case "<=":
			return n <= e.num
		case ">=":
			return n >= e.num
		}
	}
	return e.op == "=" && fmt.Sprint(got) == e.value
}

// lookup follows a dotted path (map keys, list indexes) in a JSON value.
// A missing map key of a count map ("reasons.banned_login") is 0.
func lookup(v any, path string) (any, bool) {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		switch x := v.(type) {
		case map[string]any:
			next, ok := x[p]
			if !ok {
				if i == len(parts)-1 && i > 0 && slices.Contains([]string{"reasons", "verdicts", "by_reason"}, parts[i-1]) {
					return 0.0, true
				}
				return nil, false
			}
			v = next
		case []any:
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n >= len(x) {
				return nil, false
			}
			v = x[n]
		default:
			return nil, false
		}
	}
	return v, true
}

// Generated scenarios.

// t0 is the generated scenarios' start: a Tuesday morning.
var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

type genEvent struct {
	Time    string `json:"time"`
	Service string `json:"service"`
	Login   string `json:"login,omitempty"`
	Address string `json:"address"`
	PwHash  string `json:"pwhash,omitempty"`
	Result  string `json:"result"`
	Actor   string `json:"actor"`
	at      time.Duration
}

type genScenario struct {
	name    string
	about   []string // description lines
	config  []string
	geoip   []string // "NETWORK CC"
	weaken  []string
	expects []string
	evs     []genEvent
	rng     *rand.Rand
}

func newGen(name string, seed uint64) *genScenario {
	return &genScenario{name: name, rng: rand.New(rand.NewPCG(seed, 0x5eed))}
}

// add records one attempt at t0+at.
func (g *genScenario) add(at time.Duration, actor, login, addr, pwhash string, ok bool) {
	res := "failure"
	if ok {
		res = "success"
	}
	g.evs = append(g.evs, genEvent{Service: "imap", Login: login, Address: addr, PwHash: pwhash, Result: res, Actor: actor, at: at})
}

// guess is a new password hash (8 hex digits, as Dovecot's).
func (g *genScenario) guess() string { return fmt.Sprintf("%08x", g.rng.Uint32()) }

// every calls f at start, start+period, ... before end.
func every(start, period, end time.Duration, f func(i int, at time.Duration)) {
	for i, at := 0, start; at < end; i, at = i+1, at+period {
		f(i, at)
	}
}

func (g *genScenario) text() []byte {
	slices.SortStableFunc(g.evs, func(a, b genEvent) int { return int(a.at - b.at) })
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s (generated by cmd/mailgate/scenarios_test.go)\n", g.name)
	for _, l := range g.about {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	for _, l := range g.config {
		fmt.Fprintf(&b, "# config: %s\n", l)
	}
	for _, l := range g.geoip {
		fmt.Fprintf(&b, "# geoip: %s\n", l)
	}
	for _, l := range g.weaken {
		fmt.Fprintf(&b, "# weaken: %s\n", l)
	}
	for _, l := range g.expects {
		fmt.Fprintf(&b, "# expect: %s\n", l)
	}
	for i := range g.evs {
		e := &g.evs[i]
		e.Time = t0.Add(e.at).Format(time.RFC3339Nano)
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// homeUser is a user who logs in from home every period during
// [start, end), at a random offset.
func (g *genScenario) homeUser(login, addr string, start, period, end time.Duration) {
	off := time.Duration(g.rng.Int64N(int64(period)))
	every(start+off, period, end, func(_ int, at time.Duration) { g.add(at, "user", login, addr, "", true) })
}

func generatedScenarios() []*genScenario {
	return []*genScenario{
		botnetOneLogin(), botnetSlow(), parallelOneAddress(), passwordSpray(),
		officeNAT(), traveller(), travellerUnderAttack(), travellerNewCountry(), lockout(), slowScanDay(),
	}
}

// A botnet on one login: 50 addresses, each guessing once a minute for an
// hour, while the owner checks mail from home every 5 minutes.
func botnetOneLogin() *genScenario {
	g := newGen("botnet-one-login", 1)
	g.about = []string{"50 addresses guess alice's password, each once a minute, 09:00-10:00;", "alice checks mail from home every 5 minutes from 08:00."}
	g.expects = []string{"legitimate.refused = 0", "attackers.attempts = 3000", "attackers.max_per_account <= 20", "bans.logins >= 5"}
	g.weaken = []string{`bruteforce.known_good_for = "0s"`}
	g.homeUser("alice@example.org", "198.51.100.10", 0, 5*time.Minute, 2*time.Hour)
	for a := range 50 {
		addr := fmt.Sprintf("203.0.113.%d", a+1)
		off := time.Duration(g.rng.Int64N(int64(time.Minute)))
		every(time.Hour+off, time.Minute, 2*time.Hour, func(_ int, at time.Duration) {
			g.add(at, "attacker", "alice@example.org", addr, g.guess(), false)
		})
	}
	return g
}

// A slow botnet: 300 addresses, each guessing once every 20 minutes.
func botnetSlow() *genScenario {
	g := newGen("botnet-300-addresses", 2)
	g.about = []string{"300 addresses guess alice's password, each once every 20 minutes, 09:00-10:00;", "alice checks mail from home every 5 minutes from 08:00."}
	g.expects = []string{"legitimate.refused = 0", "attackers.attempts = 900", "attackers.max_per_account <= 20"}
	g.homeUser("alice@example.org", "198.51.100.10", 0, 5*time.Minute, 2*time.Hour)
	for a := range 300 {
		addr := fmt.Sprintf("203.0.%d.%d", 112+a/250, 1+a%250)
		off := time.Duration(g.rng.Int64N(int64(20 * time.Minute)))
		every(time.Hour+off, 20*time.Minute, 2*time.Hour, func(_ int, at time.Duration) {
			g.add(at, "attacker", "alice@example.org", addr, g.guess(), false)
		})
	}
	return g
}

// One address guessing as fast as it can: 5 guesses a second for an hour.
func parallelOneAddress() *genScenario {
	g := newGen("parallel-one-address", 3)
	g.about = []string{"one address guesses alice's password 5 times a second, 09:00-10:00;", "alice checks mail from home every 5 minutes from 08:00."}
	g.expects = []string{"legitimate.refused = 0", "attackers.attempts = 18000", "attackers.max_per_account <= 20"}
	g.homeUser("alice@example.org", "198.51.100.10", 0, 5*time.Minute, 2*time.Hour)
	every(time.Hour, 200*time.Millisecond, 2*time.Hour, func(_ int, at time.Duration) {
		g.add(at, "attacker", "alice@example.org", "192.0.2.66", g.guess(), false)
	})
	return g
}

// A password spray over 500 logins from 25 addresses, each trying one
// login every 30 seconds with one of three common passwords; the 500
// users check mail every 30 minutes from their own addresses.
func passwordSpray() *genScenario {
	g := newGen("password-spray-500", 4)
	g.about = []string{"25 addresses spray 500 logins, each address one login every 30 s with a common password, 09:00-10:00;", "the 500 users check mail every 30 minutes from their own addresses from 08:00."}
	g.expects = []string{"legitimate.refused = 0", "attackers.attempts = 3000", "attackers.reached <= 750", "attackers.max_per_account <= 8"}
	logins := make([]string, 500)
	for i := range logins {
		logins[i] = fmt.Sprintf("user%03d@example.net", i)
		g.homeUser(logins[i], fmt.Sprintf("100.64.%d.%d", i/200, 1+i%200), 0, 30*time.Minute, 2*time.Hour)
	}
	common := []string{"5ummer26", "w1nter26", "passw0rd"}
	for a := range 25 {
		addr := fmt.Sprintf("198.18.%d.%d", a/100, 1+a%100)
		order := g.rng.Perm(len(logins))
		off := time.Duration(g.rng.Int64N(int64(30 * time.Second)))
		every(time.Hour+off, 30*time.Second, 2*time.Hour, func(i int, at time.Duration) {
			g.add(at, "attacker", logins[order[i%len(order)]], addr, common[i/len(order)%len(common)], false)
		})
	}
	return g
}

// An office behind one NAT address: 40 colleagues checking mail every 10
// minutes (1 in 50 logins with a typo first), and one stale phone trying
// an old password every minute.
func officeNAT() *genScenario {
	g := newGen("office-nat-stale-phone", 5)
	g.about = []string{"40 users behind 198.51.100.200 check mail every 10 minutes, 1 in 50 after a typo;", "user00's old phone tries its old password every minute, 08:00-09:00."}
	g.expects = []string{"legitimate.refused = 0", "bans.total = 0", "reasons.stale_password >= 50"}
	nat := "198.51.100.200"
	for u := range 40 {
		login := fmt.Sprintf("user%02d@example.com", u)
		off := time.Duration(g.rng.Int64N(int64(10 * time.Minute)))
		every(off, 10*time.Minute, time.Hour, func(_ int, at time.Duration) {
			if g.rng.IntN(50) == 0 {
				g.add(at, "user", login, nat, g.guess(), false)
				at += 10 * time.Second
			}
			g.add(at, "user", login, nat, "", true)
		})
	}
	every(7*time.Second, time.Minute, time.Hour, func(_ int, at time.Duration) {
		g.add(at, "user", "user00@example.com", nat, "0ld0ld00", false)
	})
	return g
}

// A traveller: bob logs in from home in the morning and from a hotel
// network mailgate never saw in the afternoon (a typo first), while
// a botnet attacks another login and a scanner sweeps logins.
func traveller() *genScenario {
	g := newGen("traveller", 6)
	g.about = []string{"bob checks mail from home every 10 minutes 08:00-12:00, then from a new address", "(a hotel, after one typo) 14:00-16:00; meanwhile 20 addresses attack carol and one address scans logins."}
	g.expects = []string{"legitimate.refused = 0", "legitimate.attempts = 37", "attackers.max_per_account <= 40", "bans.total >= 1"}
	g.homeUser("bob@example.org", "198.51.100.20", 0, 10*time.Minute, 4*time.Hour)
	g.add(6*time.Hour, "user", "bob@example.org", "192.0.2.201", g.guess(), false)
	every(6*time.Hour+20*time.Second, 10*time.Minute, 8*time.Hour, func(_ int, at time.Duration) {
		g.add(at, "user", "bob@example.org", "192.0.2.201", "", true)
	})
	for a := range 20 {
		addr := fmt.Sprintf("203.0.113.%d", 100+a)
		off := time.Duration(g.rng.Int64N(int64(2 * time.Minute)))
		every(5*time.Hour+off, 2*time.Minute, 7*time.Hour, func(_ int, at time.Duration) {
			g.add(at, "attacker", "carol@example.org", addr, g.guess(), false)
		})
	}
	every(0, 20*time.Second, 8*time.Hour, func(i int, at time.Duration) {
		g.add(at, "attacker", fmt.Sprintf("user%d@example.org", i%300), "192.0.2.77", g.guess(), false)
	})
	return g
}

// The price of "under attack" (bruteforce.under_attack = true): a spray
// over many logins makes the server fail far more logins than usual, and
// until it is over logins from new places are refused. The users at home
// keep working; the traveller at the hotel is refused (no GeoIP database
// here, so no usual country lets him in) until under_attack_hold after
// the spray.
func travellerUnderAttack() *genScenario {
	g := newGen("traveller-under-attack", 9)
	g.about = []string{"with under_attack on, 40 addresses spray 400 logins 10:00-10:30; 50 users check mail from home", "every 10 minutes all day; bob, from a new hotel address at 10:15, is refused until the wave is over."}
	g.config = []string{"bruteforce.under_attack = true"}
	g.expects = []string{
		"under_attack.total = 1", "under_attack.list.0.start = 2026-12-01T10:00:47Z", "legitimate.refused = 3", "legitimate.list.0.last = 2026-12-01T10:35:00Z", "legitimate.logins = 1", "legitimate.list.0.login = bob@example.org",
		"legitimate.list.0.address = 192.0.2.201", "legitimate.list.0.reasons.under_attack >= 1", "reasons.under_attack >= 1",
	}
	for u := range 50 {
		g.homeUser(fmt.Sprintf("user%02d@example.org", u), fmt.Sprintf("198.51.100.%d", 100+u), 0, 10*time.Minute, 4*time.Hour)
	}
	g.homeUser("bob@example.org", "198.51.100.20", 0, 10*time.Minute, 2*time.Hour)
	every(2*time.Hour+15*time.Minute, 10*time.Minute, 4*time.Hour, func(_ int, at time.Duration) {
		g.add(at, "user", "bob@example.org", "192.0.2.201", "", true)
	})
	for a := range 40 {
		addr := fmt.Sprintf("198.18.1.%d", a+1)
		off := time.Duration(g.rng.Int64N(int64(time.Minute)))
		every(2*time.Hour+off, time.Minute, 2*time.Hour+30*time.Minute, func(i int, at time.Duration) {
			g.add(at, "attacker", fmt.Sprintf("staff%03d@example.org", (a*10+i)%400), addr, "5ummer26", false)
		})
	}
	return g
}

// Countries (a GeoIP database and a global allow list) with "under
// attack": logins from outside the allowed countries are refused before
// the password check; while a spray from an allowed country makes the
// server "under attack", a user on a new address in a country he has
// logged in from gets in, a user in a country new to him does not.
func travellerNewCountry() *genScenario {
	g := newGen("traveller-new-country", 10)
	g.about = []string{"allow_countries DE, AT, FR; under_attack on. carol and bob log in from home (DE) every 10 minutes;",
		"a spray from FR 10:00-10:30; carol from a new DE address and bob from an AT hotel at 10:15; attackers in CN all along."}
	g.config = []string{"bruteforce.under_attack = true", `geoip.allow_countries = ["DE", "AT", "FR"]`}
	g.geoip = []string{"198.51.100.0/24 DE", "192.0.2.0/24 AT", "198.18.0.0/15 FR", "203.0.113.0/24 CN"}
	g.expects = []string{
		"under_attack.total = 1", "reasons.country_blocked = 240", "attackers.reached <= 100",
		"legitimate.logins = 1", "legitimate.list.0.login = bob@example.org", "legitimate.list.0.address = 192.0.2.201",
		"legitimate.list.0.reasons.under_attack >= 1",
	}
	for u := range 30 {
		g.homeUser(fmt.Sprintf("user%02d@example.org", u), fmt.Sprintf("198.51.100.%d", 100+u), 0, 10*time.Minute, 4*time.Hour)
	}
	g.homeUser("bob@example.org", "198.51.100.20", 0, 10*time.Minute, 2*time.Hour)
	g.homeUser("carol@example.org", "198.51.100.21", 0, 10*time.Minute, 2*time.Hour)
	every(2*time.Hour+15*time.Minute, 10*time.Minute, 4*time.Hour, func(_ int, at time.Duration) {
		g.add(at, "user", "bob@example.org", "192.0.2.201", "", true)
		g.add(at+time.Second, "user", "carol@example.org", "198.51.100.99", "", true)
	})
	for a := range 40 {
		addr := fmt.Sprintf("198.18.1.%d", a+1)
		off := time.Duration(g.rng.Int64N(int64(time.Minute)))
		every(2*time.Hour+off, time.Minute, 2*time.Hour+30*time.Minute, func(i int, at time.Duration) {
			g.add(at, "attacker", fmt.Sprintf("staff%03d@example.org", (a*10+i)%400), addr, "5ummer26", false)
		})
	}
	every(0, time.Minute, 4*time.Hour, func(i int, at time.Duration) {
		g.add(at, "attacker", "bob@example.org", fmt.Sprintf("203.0.113.%d", 1+i%200), g.guess(), false)
	})
	return g
}

// A lockout attempt: failures on dave's login from 200 addresses, two a
// second for an hour, while dave logs in from home every 5 minutes.
func lockout() *genScenario {
	g := newGen("lockout", 7)
	g.about = []string{"200 addresses fail dave's login, together twice a second, 09:00-10:00, to lock him out;", "dave checks mail from home every 5 minutes from 08:00 and must keep working."}
	g.expects = []string{"legitimate.refused = 0", "legitimate.attempts = 24", "attackers.attempts = 7200", "attackers.max_per_account <= 20", "reasons.banned_login >= 7000"}
	g.weaken = []string{`bruteforce.known_good_for = "0s"`}
	g.homeUser("dave@example.org", "198.51.100.30", 0, 5*time.Minute, 2*time.Hour)
	every(time.Hour, 500*time.Millisecond, 2*time.Hour, func(i int, at time.Duration) {
		addr := fmt.Sprintf("203.0.%d.%d", 112+i%200/100, 1+i%100)
		g.add(at, "attacker", "dave@example.org", addr, g.guess(), false)
	})
	return g
}

// A slow scan: one address, one failure every 15 s for a day, over 1000
// logins (internal/abuse's scenario of the same name): the hour window
// bans it, progressively longer, then the day window for a day.
func slowScanDay() *genScenario {
	g := newGen("slow-scan-day", 8)
	g.about = []string{"one address tries a login every 15 s for a day (1000 logins in turn): under rule b's 5 a minute."}
	g.expects = []string{
		"attackers.attempts = 5760", "attackers.reached = 100", "bans.total = 4",
		"bans.list.0.reason = addr_hour", "bans.list.0.seconds = 3600", "bans.list.0.time = 2026-12-01T08:07:15Z",
		"bans.list.1.seconds = 7200", "bans.list.2.seconds = 14400",
		"bans.list.3.reason = addr_day", "bans.list.3.seconds = 86400", "bans.list.3.time = 2026-12-01T15:24:00Z",
	}
	every(0, 15*time.Second, 24*time.Hour, func(i int, at time.Duration) {
		g.add(at, "attacker", fmt.Sprintf("user%d@example.com", i%1000), "192.0.2.66", g.guess(), false)
	})
	return g
}

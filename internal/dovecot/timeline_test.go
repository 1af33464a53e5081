package dovecot

import (
	"container/heap"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/config"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// The timelines below replay hours of attacks against the Dovecot door
// and the engine with the default configuration, in simulated time. They
// model Dovecot's call sequence (protocols.md §1.5): command=allow; the
// password check only when allow did not answer -1 (after the wait of a
// positive status); for a right password a second allow; then
// command=report. A refused or failed attempt costs the client Dovecot's
// failure delay before its connection can try again.
//
// What they count is what an attacker cares about: how many guesses
// reached the password check. docs/bruteforce.md has the table.

const (
	simStart     = 1_800_000_000 // unix seconds
	failureDelay = 2 * time.Second
	checkTime    = 20 * time.Millisecond // passdb lookup
	simNonce     = "nonce"
)

// dovecotPwHash is Dovecot's auth_policy_hash with the defaults: sha256
// over nonce, login, NUL and password, the top 12 bits (protocols.md §1.3).
func dovecotPwHash(login, pw string) string {
	d := sha256.Sum256([]byte(simNonce + login + "\x00" + pw))
	v := (uint16(d[0])<<8 | uint16(d[1])) >> 4
	return hex.EncodeToString([]byte{byte(v >> 8), byte(v)})
}

// actor is one client connection: it makes attempts one after another.
type actor struct {
	name   string
	login  string
	addr   netip.Addr
	rotate func(i int) netip.Addr // if set, the i-th attempt's address
	logins func(i int) string     // if set, the i-th attempt's login
	pw     func(i int) string     // the i-th attempt's password
	right  string                 // the login's real password
	next   func(done time.Duration, i int) (time.Duration, bool)
	attack bool // an attacker's guesses are counted

	i int
}

type simEvent struct {
	at  time.Duration
	a   *actor
	seq int
}

type eventQueue []simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simResult counts what happened.
type simResult struct {
	attempts int // attacker attempts
	checked  int // attacker guesses that reached the password check
	cracked  int // attacker logins that succeeded
	refused  map[string]int
	bans     []string
	surges   []string // "under attack" from–to
}

// sim runs actors against a Handler over a fresh engine with cfg until
// end. Each actor starts at the time its next(−1, −1) gives.
type sim struct {
	t     *testing.T
	h     *Handler
	eng   *policy.Engine
	trk   *abuse.Tracker
	now   time.Duration
	res   simResult
	seq   int
	queue eventQueue
}

func newSim(t *testing.T, bf config.BruteForce) *sim {
	t.Helper()
	s := &sim{t: t, now: -24 * time.Hour, res: simResult{refused: map[string]int{}}}
	s.trk = abuse.New(bf.Abuse())
	s.eng = policy.New(rules.NewIndex(), nil).WithAbuse(s.trk, bf.Enabled, bf.LoginTarpit, bf.StaleTarpit)
	s.h = NewHandler(Config{
		Now:       s.clock,
		MaxTarpit: max(bf.LoginTarpit, bf.StaleTarpit),
		OnReport: func(a *policy.Attempt, success bool, now time.Time) {
			for _, b := range s.eng.Report(a, success, now) {
				s.res.bans = append(s.res.bans, fmt.Sprintf("%s %s for %v at %v", b.Reason, b.Target(), b.Expires.Sub(b.Created), now.Sub(time.Unix(simStart, 0)).Round(time.Second)))
			}
		},
	}, s.eng, nil, nil)
	return s
}

func (s *sim) clock() time.Time { return time.Unix(simStart, 0).Add(s.now) }

func (s *sim) schedule(at time.Duration, a *actor) {
	s.seq++
	heap.Push(&s.queue, simEvent{at: at, a: a, seq: s.seq})
}

func (s *sim) call(cmd string, a *actor, session, pw string, extra string) int {
	addr, login := a.addr, a.login
	if a.rotate != nil {
		addr = a.rotate(a.i)
	}
	if a.logins != nil {
		login = a.logins(a.i)
	}
	body := fmt.Sprintf(`{"device_id":"","login":%q,"protocol":"imap","pwhash":%q,"remote":%q,"session_id":%q,%s"tls":false}`,
		login, dovecotPwHash(login, pw), addr.String(), session, extra)
	w := post(s.h, "command="+cmd, body)
	if w.Code != 200 {
		s.t.Fatalf("%s %s: HTTP %d %s", a.name, cmd, w.Code, w.Body)
	}
	var r struct {
		Status int    `json:"status"`
		Msg    string `json:"msg"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		s.t.Fatalf("%s %s: %v: %s", a.name, cmd, err, w.Body)
	}
	return r.Status
}

// attempt plays one login the way Dovecot does and returns when the
// client is told the result.
func (s *sim) attempt(a *actor) (done time.Duration) {
	pw := a.pw(a.i)
	session := fmt.Sprintf("%s-%d", a.name, a.i)
	if a.attack {
		s.res.attempts++
	}
	report := func(success, reject bool) {
		s.call("report", a, session, pw, fmt.Sprintf(`"success":%t,"policy_reject":%t,`, success, reject))
	}
	st := s.call("allow", a, session, pw, "")
	if st < 0 {
		report(false, true)
		if !a.attack {
			s.res.refused[a.name]++
		}
		return s.now + failureDelay
	}
	s.now += time.Duration(st)*time.Second + checkTime // Dovecot waits, then checks the password
	if a.attack {
		s.res.checked++
	}
	if pw != a.right {
		report(false, false)
		return s.now + failureDelay
	}
	if s.call("allow", a, session, pw, "") < 0 {
		report(false, true)
		if !a.attack {
			s.res.refused[a.name]++
		}
		return s.now + failureDelay
	}
	report(true, false)
	if a.attack {
		s.res.cracked++
	}
	return s.now
}

// run plays every actor until end.
func (s *sim) run(end time.Duration, actors ...*actor) simResult {
	for _, a := range actors {
		if at, ok := a.next(-1, -1); ok {
			s.schedule(at, a)
		}
	}
	lastExpire := time.Duration(-1 << 62)
	for s.queue.Len() > 0 {
		e := heap.Pop(&s.queue).(simEvent)
		if e.at >= end {
			break
		}
		// Events may start while an earlier one is still "running" (its
		// tarpit); the clock never goes back.
		s.now = max(s.now, e.at)
		if s.now-lastExpire >= time.Second {
			s.trk.Expire(s.clock())
			if st, changed := s.trk.Surge(s.clock()); changed {
				s.res.surges = append(s.res.surges, fmt.Sprintf("%s at %v", map[bool]string{true: "on", false: "off"}[st.On], s.now.Round(time.Second)))
			}
			lastExpire = s.now
		}
		saved := s.now
		done := s.attempt(e.a)
		s.now = saved // other connections go on meanwhile
		e.a.i++
		if at, ok := e.a.next(done, e.a.i); ok {
			s.schedule(at, e.a)
		}
	}
	return s.res
}

// Schedules.

// every starts at first and attempts every period (from its start).
func every(first, period time.Duration) func(time.Duration, int) (time.Duration, bool) {
	return func(_ time.Duration, i int) (time.Duration, bool) {
		if i < 0 {
			return first, true
		}
		return first + time.Duration(i)*period, true
	}
}

// asap starts at first and tries again as soon as the last answer came.
func asap(first time.Duration) func(time.Duration, int) (time.Duration, bool) {
	return func(done time.Duration, i int) (time.Duration, bool) {
		if i < 0 {
			return first, true
		}
		return done, true
	}
}

func guesses(tag string) func(int) string {
	return func(i int) string { return fmt.Sprintf("guess-%s-%d", tag, i) }
}

func always(pw string) func(int) string { return func(int) string { return pw } }

func ip(format string, args ...any) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf(format, args...))
}

const (
	victim   = "ceo@example.com"
	victimPw = "correct horse battery staple"
)

// owner is the victim's own phone: it logged in from its home address an
// hour before the attack, and checks mail every 5 minutes all along.
func owner() *actor {
	return &actor{name: "owner", login: victim, addr: ip("198.51.100.7"), pw: always(victimPw), right: victimPw,
		next: every(-time.Hour, 5*time.Minute)}
}

// botnet is n addresses guessing victim's password, each once per period,
// spread evenly.
func botnet(n int, period time.Duration) []*actor {
	out := make([]*actor, n)
	for i := range out {
		out[i] = &actor{name: fmt.Sprintf("bot%d", i), login: victim, addr: ip("203.0.%d.%d", 113+i/250, 1+i%250),
			pw: guesses(fmt.Sprint(i)), right: victimPw, attack: true,
			next: every(time.Duration(i)*period/time.Duration(n), period)}
	}
	return out
}

// parallel is one address with conns connections guessing as fast as
// Dovecot answers.
func parallel(conns int) []*actor {
	out := make([]*actor, conns)
	for i := range out {
		out[i] = &actor{name: fmt.Sprintf("conn%d", i), login: victim, addr: ip("192.0.2.66"),
			pw: guesses(fmt.Sprint(i)), right: victimPw, attack: true,
			next: asap(time.Duration(i) * 100 * time.Millisecond)}
	}
	return out
}

// office is 40 colleagues behind one NAT address checking mail every 10
// minutes, and one phone of the first that keeps an old password and
// tries every minute.
func office() []*actor {
	nat := ip("198.51.100.200")
	var out []*actor
	for i := range 40 {
		login := fmt.Sprintf("user%d@example.com", i)
		out = append(out, &actor{name: login, login: login, addr: nat, pw: always("pw" + login), right: "pw" + login,
			next: every(time.Duration(i)*15*time.Second, 10*time.Minute)})
	}
	out = append(out, &actor{name: "stale phone", login: "user0@example.com", addr: nat, pw: always("old password"), right: "pwuser0@example.com",
		next: every(7*time.Second, time.Minute)})
	return out
}

func TestTimelines(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates hours of attacks")
	}
	progressive := config.Default().BruteForce
	progressive.LoginRepeatFactor = 2
	noRepeat := config.Default().BruteForce
	noRepeat.RepeatFactor = 0
	tests := []struct {
		name   string
		bf     config.BruteForce
		actors []*actor
		max    int // guesses that may reach the password check
	}{
		{"50 addresses, once a minute each", config.Default().BruteForce, botnet(50, time.Minute), 25},
		{"50 addresses, once a minute each, login_repeat_factor = 2", progressive, botnet(50, time.Minute), 5},
		{"300 addresses, once every 20 minutes each", config.Default().BruteForce, botnet(300, 20*time.Minute), 25},
		{"one address, 10 parallel connections", config.Default().BruteForce, parallel(10), 40},
		{"one address, 10 parallel connections, repeat_factor = 0", noRepeat, parallel(10), 70},
		{"office NAT: 40 users, one stale phone", config.Default().BruteForce, office(), 0},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| attack (one hour) | attempts | reach the password check | fail2ban default |\n|---|---|---|---|\n")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim(t, tt.bf)
			res := s.run(time.Hour, append(tt.actors, owner())...)
			if res.checked > tt.max {
				t.Errorf("%d of %d guesses reached the password check, want at most %d; bans:\n%s", res.checked, res.attempts, tt.max, strings.Join(res.bans, "\n"))
			}
			if res.cracked > 0 {
				t.Errorf("the attacker logged in %d times", res.cracked)
			}
			if len(res.refused) > 0 {
				t.Errorf("ordinary users refused: %v; bans:\n%s", res.refused, strings.Join(res.bans, "\n"))
			}
			f2b := fail2ban(tt.actors, time.Hour)
			fmt.Fprintf(&table, "| %s | %d | %d | %d |\n", tt.name, res.attempts, res.checked, f2b)
			t.Logf("%d attempts, %d reached the password check (fail2ban's default jail: %d); %d bans", res.attempts, res.checked, f2b, len(res.bans))
		})
	}
	t.Logf("\n%s", table.String())
}

// fail2ban models fail2ban's default jail on the same schedule, for
// comparison: 5 failures from one address within 10 minutes ban it for 10
// minutes; a banned client's attempts never reach Dovecot. Clients that
// try again as soon as they can are given Dovecot's failure delay.
func fail2ban(actors []*actor, end time.Duration) int {
	type state struct {
		fails  []time.Duration
		banned time.Duration
	}
	addrs := map[netip.Addr]*state{}
	var q eventQueue
	seq := 0
	copies := make([]actor, len(actors))
	for i, a := range actors {
		copies[i] = *a
		copies[i].i = 0
		if at, ok := a.next(-1, -1); ok {
			seq++
			heap.Push(&q, simEvent{at: at, a: &copies[i], seq: seq})
		}
	}
	checked := 0
	for q.Len() > 0 {
		e := heap.Pop(&q).(simEvent)
		if e.at >= end {
			break
		}
		a := e.a
		st := addrs[a.addr]
		if st == nil {
			st = &state{}
			addrs[a.addr] = st
		}
		done := e.at + failureDelay
		if e.at >= st.banned && a.attack {
			checked++
			recent := st.fails[:0]
			for _, f := range st.fails {
				if e.at-f < 10*time.Minute {
					recent = append(recent, f)
				}
			}
			st.fails = append(recent, e.at)
			if len(st.fails) >= 5 {
				st.banned, st.fails = e.at+10*time.Minute, nil
			}
		}
		a.i++
		if at, ok := a.next(done, a.i); ok {
			seq++
			heap.Push(&q, simEvent{at: at, a: a, seq: seq})
		}
	}
	return checked
}

// A day of ordinary users: 200 accounts checking mail every 10 minutes
// from their own addresses, with a typo in 2 % of the logins; the office
// behind one NAT address with its stale phone; and a traveller who logs
// in from a hotel for two hours in the afternoon.
func ordinaryDay() []*actor {
	var out []*actor
	for i := range 200 {
		login := fmt.Sprintf("user%d@example.org", i)
		right := "pw-" + login
		out = append(out, &actor{name: login, login: login, addr: ip("198.18.%d.%d", i/200, 1+i%200), right: right,
			pw: func(n int) string {
				if (n*7919+i*104729)%50 == 0 {
					return fmt.Sprintf("typo-%d", n)
				}
				return right
			},
			next: every(time.Duration(i)*3*time.Second, 10*time.Minute)})
	}
	out = append(out, office()...)
	// user1's usual address is 198.18.0.2; the hotel is new to mailgate.
	out = append(out, &actor{name: "traveller", login: "user1@example.org", addr: ip("192.0.2.201"), right: "pw-user1@example.org",
		pw: func(n int) string {
			if n == 0 {
				return "typo-at-the-hotel"
			}
			return "pw-user1@example.org"
		},
		next: func(_ time.Duration, i int) (time.Duration, bool) {
			if i < 0 {
				return 14 * time.Hour, true
			}
			return 14*time.Hour + time.Duration(i)*10*time.Minute, i < 12
		}})
	return out
}

// slowAddress is one address trying 4 passwords a minute on many logins:
// under rule (b)'s 5 a minute.
func slowAddress() []*actor {
	return []*actor{{name: "slow address", login: "", addr: ip("192.0.2.77"), right: "-", attack: true,
		pw:   guesses("slow"),
		next: every(0, 15*time.Second)}}
}

// rotating is one login guessed once a minute, each time from a new
// address: under rule (a)'s 3 a minute.
func rotating() []*actor {
	return []*actor{{name: "rotating", login: victim, right: victimPw, attack: true,
		rotate: func(i int) netip.Addr { return ip("203.0.%d.%d", 113+i/250%100, 1+i%250) },
		pw:     guesses("rot"),
		next:   every(30*time.Second, time.Minute)}}
}

// spray is one common password tried on 500 logins from 20 addresses,
// each address one login a minute, from 13:30: no login fails twice, no
// address more than 25 times.
func spray() []*actor {
	out := make([]*actor, 20)
	for j := range out {
		out[j] = &actor{name: fmt.Sprintf("sprayer%d", j), addr: ip("203.0.113.%d", 100+j), right: "-", attack: true,
			logins: func(i int) string { return fmt.Sprintf("user%d@example.org", j+20*i) },
			pw:     always("Summer2026!"),
			next: func(_ time.Duration, i int) (time.Duration, bool) {
				at := 13*time.Hour + 30*time.Minute + time.Duration(j)*3*time.Second + time.Duration(max(i, 0))*time.Minute
				return at, i < 25
			}}
	}
	return out
}

func TestDayTimelines(t *testing.T) {
	if testing.Short() {
		t.Skip("simulates days of attacks")
	}
	noSlow := config.Default().BruteForce
	noSlow.AddrHourFailures, noSlow.AddrDayFailures, noSlow.LoginHourFailures, noSlow.LoginDayFailures = 0, 0, 0, 0
	underAttack := config.Default().BruteForce
	underAttack.UnderAttack = true
	tests := []struct {
		name   string
		bf     config.BruteForce
		actors []*actor
		min    int // guesses that must reach the password check (the attack runs at all)
		max    int
		// mayRefuse is the ordinary user who may be refused (under attack).
		mayRefuse string
	}{
		{"nobody attacks", config.Default().BruteForce, nil, 0, 0, ""},
		{"one address, 4 guesses a minute", config.Default().BruteForce, slowAddress(), 1, 200, ""},
		{"the same without the hour and day windows", noSlow, slowAddress(), 24 * 60 * 4, 24 * 60 * 4, ""},
		{"one login, once a minute, a new address each time", config.Default().BruteForce, rotating(), 1, 150, ""},
		{"the same without the hour and day windows", noSlow, rotating(), 24 * 60, 24 * 60, ""},
		{"one password on 500 logins from 20 addresses", config.Default().BruteForce, spray(), 500, 500, ""},
		{"the same with under_attack = true", underAttack, spray(), 1, 50, "traveller"},
		{"nobody attacks, under_attack = true", underAttack, nil, 0, 0, ""},
	}
	rows := make([]string, len(tests))
	t.Cleanup(func() {
		t.Logf("\n| attack (one day) | attempts | reach the password check | ordinary users refused | under attack |\n|---|---|---|---|---|\n%s", strings.Join(rows, ""))
	})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSim(t, tt.bf)
			res := s.run(24*time.Hour, append(append(tt.actors, owner()), ordinaryDay()...)...)
			if res.checked > tt.max || res.checked < tt.min {
				t.Errorf("%d of %d guesses reached the password check, want %d to %d; bans:\n%s", res.checked, res.attempts, tt.min, tt.max, strings.Join(res.bans, "\n"))
			}
			if res.cracked > 0 {
				t.Errorf("the attacker logged in %d times", res.cracked)
			}
			for who, n := range res.refused {
				if who != tt.mayRefuse {
					t.Errorf("%s refused %d times; bans:\n%s", who, n, strings.Join(res.bans, "\n"))
				}
			}
			refused := "nobody"
			if n := res.refused[tt.mayRefuse]; n > 0 {
				// The traveller logs in 12 times from 14:00; "under attack"
				// must end while they are still there.
				if n >= 12 || len(res.surges) == 0 || !strings.HasPrefix(res.surges[len(res.surges)-1], "off") {
					t.Errorf("the %s was refused %d of 12 times; under attack: %v", tt.mayRefuse, n, res.surges)
				}
				refused = fmt.Sprintf("the %s, %d of 12 logins", tt.mayRefuse, n)
			}
			rows[i] = fmt.Sprintf("| %s | %d | %d | %s | %s |\n", tt.name, res.attempts, res.checked, refused, strings.Join(res.surges, ", "))
			t.Logf("%d attempts, %d reached the password check; under attack: %v; bans:\n%s", res.attempts, res.checked, res.surges, strings.Join(res.bans, "\n"))
		})
	}
}

package sendlimit

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the start of every scenario: on the hour, so that minute and hour
// buckets begin with it.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func newLimiter(t testing.TB, def Limits, accounts map[string]Limits) *Limiter {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Default = def
	cfg.Accounts = accounts
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(cfg)
}

// TestEachLimit: a limit of N lets N through and refuses the N+1th, with
// what was used; the refused recipient is not counted.
func TestEachLimit(t *testing.T) {
	const n = 3
	tests := []struct {
		name    string
		limits  Limits
		newMsg  bool // a new instance for every recipient
		usedMsg int  // messages counted once n recipients passed
	}{
		{MessagesPerHour, Limits{MessagesPerHour: n}, true, n},
		{MessagesPerDay, Limits{MessagesPerDay: n}, true, n},
		{RecipientsPerHour, Limits{RecipientsPerHour: n}, false, 1},
		{RecipientsPerDay, Limits{RecipientsPerDay: n}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(t, tt.limits, nil)
			inst := func(i int) string {
				if tt.newMsg {
					return fmt.Sprintf("inst%d", i)
				}
				return "inst0"
			}
			for i := range n {
				if e := l.Rcpt("alice@example.com", inst(i), at(time.Duration(i)*time.Second)); !e.OK() {
					t.Fatalf("recipient %d refused: %+v", i+1, e)
				}
			}
			refusedAt := at(10 * time.Second)
			for range 2 { // refused again: still nothing counted
				e := l.Rcpt("alice@example.com", inst(n), refusedAt)
				if want := (Exceeded{Limit: tt.name, Max: n, Used: n}); e != want {
					t.Fatalf("recipient %d: got %+v, want %+v", n+1, e, want)
				}
			}
			u := l.Usage("alice@example.com", refusedAt)
			want := Usage{
				Login: "alice@example.com", Limits: tt.limits,
				MessagesHour: tt.usedMsg, MessagesDay: tt.usedMsg,
				RecipientsHour: n, RecipientsDay: n,
				Over: []string{tt.name}, Refused: 2, LastRefused: refusedAt,
			}
			if !reflect.DeepEqual(u, want) {
				t.Errorf("usage:\n got %+v\nwant %+v", u, want)
			}
			// Another sender is not affected.
			if e := l.Rcpt("bob@example.com", inst(0), refusedAt); !e.OK() {
				t.Errorf("bob refused: %+v", e)
			}
		})
	}
}

// TestOrder: when several limits would be exceeded, the first in the
// documented order is named.
func TestOrder(t *testing.T) {
	all1 := Limits{MessagesPerHour: 1, MessagesPerDay: 1, RecipientsPerHour: 1, RecipientsPerDay: 1}
	tests := []struct {
		limits   Limits
		instance string // of the second recipient; the first is "a"
		want     string
	}{
		{all1, "b", MessagesPerHour},
		{all1, "a", RecipientsPerHour}, // same message: no message limit applies
		{all1, "", MessagesPerHour},    // empty instance: a new message
		{Limits{MessagesPerDay: 1, RecipientsPerHour: 1, RecipientsPerDay: 1}, "b", MessagesPerDay},
		{Limits{MessagesPerHour: 5, RecipientsPerHour: 1, RecipientsPerDay: 1}, "b", RecipientsPerHour},
		{Limits{MessagesPerDay: 5, RecipientsPerDay: 1}, "b", RecipientsPerDay},
	}
	for _, tt := range tests {
		l := newLimiter(t, tt.limits, nil)
		if e := l.Rcpt("u", "a", t0); !e.OK() {
			t.Fatalf("%+v: first refused: %+v", tt.limits, e)
		}
		if e := l.Rcpt("u", tt.instance, t0); e.Limit != tt.want || e.Used != 1 || e.Max != 1 {
			t.Errorf("%+v, instance %q: got %+v, want %s", tt.limits, tt.instance, e, tt.want)
		}
	}
}

// TestRefusedMessageNotCounted: a message refused at its first recipient
// (for a recipient limit) is not counted, and counts once it gets through.
func TestRefusedMessageNotCounted(t *testing.T) {
	l := newLimiter(t, Limits{RecipientsPerHour: 2}, nil)
	l.Rcpt("u", "a", t0)
	l.Rcpt("u", "a", t0)
	if e := l.Rcpt("u", "b", t0); e.Limit != RecipientsPerHour {
		t.Fatalf("got %+v", e)
	}
	if u := l.Usage("u", t0); u.MessagesHour != 1 || u.RecipientsHour != 2 || u.Refused != 1 {
		t.Fatalf("after refusal: %+v", u)
	}
	later := at(time.Hour)
	if e := l.Rcpt("u", "b", later); !e.OK() {
		t.Fatalf("an hour later: %+v", e)
	}
	if u := l.Usage("u", later); u.MessagesHour != 1 || u.MessagesDay != 2 || u.RecipientsHour != 1 || u.RecipientsDay != 3 {
		t.Errorf("an hour later: %+v", u)
	}
}

// TestWindows: the hourly count drops a whole minute bucket at a time,
// the daily count a whole hour bucket at a time.
func TestWindows(t *testing.T) {
	l := newLimiter(t, Limits{RecipientsPerHour: 5, RecipientsPerDay: 7}, nil)
	for i := range 5 {
		if e := l.Rcpt("u", "a", at(30*time.Second+time.Duration(i)*time.Second)); !e.OK() {
			t.Fatal(e)
		}
	}
	steps := []struct {
		at            time.Duration
		hour, day     int
		want          string // Rcpt's answer at that time ("" = counted)
		afterH, after int    // counts after the Rcpt
	}{
		{59*time.Minute + 59*time.Second, 5, 5, RecipientsPerHour, 5, 5},
		{60 * time.Minute, 0, 5, "", 1, 6},
		{61 * time.Minute, 1, 6, "", 2, 7},
		{62 * time.Minute, 2, 7, RecipientsPerDay, 2, 7},
		{23*time.Hour + 59*time.Minute, 0, 7, RecipientsPerDay, 0, 7},
		{24 * time.Hour, 0, 2, "", 1, 3}, // hour 12's five left the day
		{25*time.Hour + 30*time.Minute, 0, 1, "", 1, 2},
		{60 * time.Hour, 0, 0, "", 1, 1}, // everything left both windows
	}
	for _, s := range steps {
		now := at(s.at)
		if u := l.Usage("u", now); u.RecipientsHour != s.hour || u.RecipientsDay != s.day {
			t.Fatalf("at %v before: hour %d day %d, want %d %d", s.at, u.RecipientsHour, u.RecipientsDay, s.hour, s.day)
		}
		if e := l.Rcpt("u", "a", now); e.Limit != s.want {
			t.Fatalf("at %v: got %+v, want %q", s.at, e, s.want)
		}
		if u := l.Usage("u", now); u.RecipientsHour != s.afterH || u.RecipientsDay != s.after {
			t.Fatalf("at %v after: hour %d day %d, want %d %d", s.at, u.RecipientsHour, u.RecipientsDay, s.afterH, s.after)
		}
	}
}

// TestSlidingMinutes: recipients at minutes 0, 10 and 20 leave the hour
// one by one; the day keeps all three.
func TestSlidingMinutes(t *testing.T) {
	l := newLimiter(t, Limits{}, nil)
	for _, m := range []int{0, 10, 20} {
		l.Rcpt("u", fmt.Sprint(m), at(time.Duration(m)*time.Minute))
	}
	for _, c := range []struct {
		m, hour, msgs int
	}{{59, 3, 3}, {60, 2, 2}, {69, 2, 2}, {70, 1, 1}, {80, 0, 0}, {200, 0, 0}} {
		u := l.Usage("u", at(time.Duration(c.m)*time.Minute))
		if u.RecipientsHour != c.hour || u.MessagesHour != c.msgs || u.RecipientsDay != 3 || u.MessagesDay != 3 {
			t.Errorf("minute %d: %+v", c.m, u)
		}
	}
}

// TestTimeBackwards: a time earlier than the last counts as the last.
func TestTimeBackwards(t *testing.T) {
	l := newLimiter(t, Limits{RecipientsPerHour: 2}, nil)
	l.Rcpt("u", "a", at(2*time.Hour))
	l.Rcpt("u", "a", at(0))
	if e := l.Rcpt("u", "a", at(-48*time.Hour)); e.Limit != RecipientsPerHour {
		t.Errorf("got %+v", e)
	}
	if u := l.Usage("u", at(2*time.Hour)); u.RecipientsHour != 2 {
		t.Errorf("%+v", u)
	}
	if e := l.Rcpt("u", "a", at(3*time.Hour)); !e.OK() {
		t.Errorf("an hour after the last: %+v", e)
	}
}

// TestInstances: a message counts once however many recipients it has,
// including when several of one login's messages interleave.
func TestInstances(t *testing.T) {
	l := newLimiter(t, Limits{}, nil)
	for range 50 {
		l.Rcpt("one@x", "8a3c.5f3c4d1e.91234.0", t0)
	}
	// recentInstances sessions at once, their RCPTs interleaved.
	for range 10 {
		for i := range recentInstances {
			l.Rcpt("many@x", fmt.Sprintf("8a3c.5f3c4d1e.%d.0", i), t0)
		}
	}
	// Two logins, the same instance: one message each.
	l.Rcpt("a@y", "same", t0)
	l.Rcpt("b@y", "same", t0)
	// No instance: every recipient is a message.
	for range 4 {
		l.Rcpt("noinst@x", "", t0)
	}
	for _, c := range []struct {
		login      string
		msgs, rcpt int
	}{
		{"one@x", 1, 50},
		{"many@x", recentInstances, 10 * recentInstances},
		{"a@y", 1, 1},
		{"b@y", 1, 1},
		{"noinst@x", 4, 4},
	} {
		if u := l.Usage(c.login, t0); u.MessagesHour != c.msgs || u.MessagesDay != c.msgs || u.RecipientsHour != c.rcpt || u.RecipientsDay != c.rcpt {
			t.Errorf("%s: %+v, want %d messages %d recipients", c.login, u, c.msgs, c.rcpt)
		}
	}
	// The (recentInstances+1)th instance pushes out the oldest, which then
	// counts again: the documented bound.
	l.Rcpt("many@x", "new", t0)
	l.Rcpt("many@x", "8a3c.5f3c4d1e.0.0", t0)
	l.Rcpt("many@x", "8a3c.5f3c4d1e.2.0", t0) // still remembered
	if u := l.Usage("many@x", t0); u.MessagesHour != recentInstances+2 {
		t.Errorf("after a new instance: %d messages, want %d", u.MessagesHour, recentInstances+2)
	}
}

// TestLimitsFor: an exact login beats @domain beats Default, and an entry
// replaces all four fields.
func TestLimitsFor(t *testing.T) {
	def := Limits{MessagesPerHour: 10, MessagesPerDay: 100, RecipientsPerHour: 50, RecipientsPerDay: 500}
	dom := Limits{MessagesPerHour: 20}
	alice := Limits{RecipientsPerDay: 1000}
	l := newLimiter(t, def, map[string]Limits{
		"alice@example.com": alice,
		"@example.com":      dom,
		"root@example.com":  {},
		"localuser":         {MessagesPerDay: 7},
	})
	tests := []struct {
		login string
		want  Limits
	}{
		{"alice@example.com", alice},
		{"bob@example.com", dom},
		{"x@y@example.com", dom}, // the last "@" starts the domain
		{"root@example.com", Limits{}},
		{"carol@other.org", def},
		{"bob@sub.example.com", def}, // a domain entry is exact
		{"alice@example.com.evil", def},
		{"alice", def},
		{"localuser", Limits{MessagesPerDay: 7}},
		{"", def},
	}
	for _, tt := range tests {
		if got := l.LimitsFor(tt.login); got != tt.want {
			t.Errorf("LimitsFor(%q) = %+v, want %+v", tt.login, got, tt.want)
		}
		if tt.login == "" {
			continue
		}
		l.Rcpt(tt.login, "i", t0)
		if u := l.Usage(tt.login, t0); u.Limits != tt.want {
			t.Errorf("Usage(%q).Limits = %+v, want %+v", tt.login, u.Limits, tt.want)
		}
	}
	// root@example.com has no limits although its domain and the default
	// do.
	for i := range 100 {
		if e := l.Rcpt("root@example.com", fmt.Sprint(i), t0); !e.OK() {
			t.Fatalf("root refused: %+v", e)
		}
	}
	if e := l.Rcpt("dave@example.com", "1", t0); !e.OK() {
		t.Fatal(e)
	}
	for i := range 25 {
		e := l.Rcpt("dave@example.com", fmt.Sprint(i+2), t0)
		if i < 19 && !e.OK() || i >= 19 && e.Limit != MessagesPerHour {
			t.Fatalf("dave, message %d: %+v", i+2, e)
		}
	}
}

// TestZeroLimits: no limits, still counted.
func TestZeroLimits(t *testing.T) {
	l := newLimiter(t, Limits{}, nil)
	for i := range 1000 {
		if e := l.Rcpt("bulk@example.com", fmt.Sprint(i/10), t0); !e.OK() {
			t.Fatal(e)
		}
	}
	want := []Usage{{Login: "bulk@example.com", MessagesHour: 100, MessagesDay: 100, RecipientsHour: 1000, RecipientsDay: 1000}}
	if got := l.List(t0); !reflect.DeepEqual(got, want) {
		t.Errorf("List:\n got %+v\nwant %+v", got, want)
	}
}

func TestEmptyAndLongLogin(t *testing.T) {
	l := newLimiter(t, Limits{RecipientsPerHour: 1}, nil)
	for range 3 {
		if e := l.Rcpt("", "a", t0); !e.OK() {
			t.Fatalf("empty login: %+v", e)
		}
	}
	if l.Len() != 0 {
		t.Errorf("empty login tracked: Len %d", l.Len())
	}
	long := strings.Repeat("a", MaxKeyLen) + "@example.com"
	if e := l.Rcpt(long, "a", t0); !e.OK() {
		t.Fatal(e)
	}
	if e := l.Rcpt(strings.Repeat("a", MaxKeyLen)+"@other.org", "b", t0); e.Limit != RecipientsPerHour {
		t.Errorf("a login sharing the first %d bytes: %+v", MaxKeyLen, e)
	}
	if u := l.Usage(long, t0); u.RecipientsHour != 1 || len(u.Login) != MaxKeyLen {
		t.Errorf("%+v", u)
	}
	if l.Len() != 1 {
		t.Errorf("Len %d, want 1", l.Len())
	}
}

// TestMaxAccounts: the least recently active sender is forgotten first,
// and its slot starts clean for the next.
func TestMaxAccounts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxAccounts = 3
	cfg.Default = Limits{RecipientsPerHour: 2}
	l := New(cfg)
	l.Rcpt("a", "i1", at(0))
	l.Rcpt("b", "i1", at(time.Second))
	l.Rcpt("b", "i1", at(time.Second))
	l.Rcpt("b", "i1", at(time.Second)) // refused
	l.Rcpt("c", "i1", at(2*time.Second))
	l.Usage("a", at(3*time.Second)) // looking is not activity
	l.Rcpt("a", "i2", at(4*time.Second))
	if l.Len() != 3 {
		t.Fatalf("Len %d", l.Len())
	}
	l.Rcpt("d", "i1", at(5*time.Second)) // evicts b
	if l.Len() != 3 {
		t.Fatalf("Len %d after eviction", l.Len())
	}
	now := at(6 * time.Second)
	if u := l.Usage("b", now); u.RecipientsHour != 0 || u.Refused != 0 || !u.LastRefused.IsZero() {
		t.Errorf("b not forgotten: %+v", u)
	}
	if u := l.Usage("a", now); u.RecipientsHour != 2 || u.MessagesHour != 2 {
		t.Errorf("a: %+v", u)
	}
	want := Usage{Login: "d", Limits: cfg.Default, MessagesHour: 1, MessagesDay: 1, RecipientsHour: 1, RecipientsDay: 1}
	if u := l.Usage("d", now); !reflect.DeepEqual(u, want) {
		t.Errorf("d:\n got %+v\nwant %+v", u, want)
	}
	// b comes back with nothing counted.
	l.Rcpt("b", "i1", now) // evicts c
	if u := l.Usage("b", now); u.RecipientsHour != 1 || u.Refused != 0 {
		t.Errorf("b again: %+v", u)
	}
	if u := l.Usage("c", now); u.RecipientsHour != 0 {
		t.Errorf("c not forgotten: %+v", u)
	}
}

// TestList: over-limit first, then by RecipientsDay descending, then by
// login; senders with nothing in the last day are left out.
func TestList(t *testing.T) {
	l := newLimiter(t, Limits{}, map[string]Limits{
		"over1@x": {MessagesPerHour: 2, RecipientsPerDay: 3},
		"over2@x": {RecipientsPerHour: 1},
		"over3@x": {RecipientsPerHour: 1},
	})
	send := func(login string, msgs, rcpts int, now time.Time) {
		for i := range rcpts {
			l.Rcpt(login, fmt.Sprint(i%msgs), now)
		}
	}
	send("old@x", 1, 50, at(0))
	now := at(25 * time.Hour)
	send("over1@x", 2, 3, now)
	send("over2@x", 1, 2, now) // one refused
	send("over3@x", 1, 1, now)
	send("big@x", 4, 20, now)
	send("mid-b@x", 1, 5, now)
	send("mid-a@x", 1, 5, now)
	l.Rcpt("over2@x", "z", now.Add(time.Minute)) // refused again
	got := l.List(now.Add(time.Minute))
	var logins []string
	for _, u := range got {
		logins = append(logins, u.Login)
	}
	wantOrder := []string{"over1@x", "over2@x", "over3@x", "big@x", "mid-a@x", "mid-b@x"}
	if !reflect.DeepEqual(logins, wantOrder) {
		t.Fatalf("order %q, want %q", logins, wantOrder)
	}
	want0 := Usage{
		Login: "over1@x", Limits: Limits{MessagesPerHour: 2, RecipientsPerDay: 3},
		MessagesHour: 2, MessagesDay: 2, RecipientsHour: 3, RecipientsDay: 3,
		Over: []string{MessagesPerHour, RecipientsPerDay},
	}
	if !reflect.DeepEqual(got[0], want0) {
		t.Errorf("over1:\n got %+v\nwant %+v", got[0], want0)
	}
	want1 := Usage{
		Login: "over2@x", Limits: Limits{RecipientsPerHour: 1},
		MessagesHour: 1, MessagesDay: 1, RecipientsHour: 1, RecipientsDay: 1,
		Over: []string{RecipientsPerHour}, Refused: 2, LastRefused: now.Add(time.Minute),
	}
	if !reflect.DeepEqual(got[1], want1) {
		t.Errorf("over2:\n got %+v\nwant %+v", got[1], want1)
	}
	if got[3].Over != nil || got[3].RecipientsDay != 20 || got[3].MessagesDay != 4 {
		t.Errorf("big: %+v", got[3])
	}
	// Over ends with the hour; old@x's day ended long ago. over1@x stays
	// over its daily limit.
	got = l.List(now.Add(2 * time.Hour))
	logins = logins[:0]
	for _, u := range got {
		logins = append(logins, u.Login)
	}
	if want := []string{"over1@x", "big@x", "mid-a@x", "mid-b@x", "over2@x", "over3@x"}; !reflect.DeepEqual(logins, want) {
		t.Errorf("two hours later: order %q, want %q", logins, want)
	}
	if got := l.List(now.Add(48 * time.Hour)); len(got) != 0 {
		t.Errorf("two days later: %+v", got)
	}
	if l.Len() != 7 {
		t.Errorf("Len %d, want 7 (List forgets nothing)", l.Len())
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{
		DefaultConfig(),
		{
			Default: Limits{MaxLimit, MaxLimit, MaxLimit, MaxLimit},
			Accounts: map[string]Limits{
				"alice@example.com":            {},
				"@example.com":                 {MessagesPerHour: 1},
				"localuser":                    {},
				"jörg@bücher.example":          {},
				strings.Repeat("a", MaxKeyLen): {},
			},
			MaxAccounts: MaxMaxAccounts,
		},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}

	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"negative messages_per_hour", func(c *Config) { c.Default.MessagesPerHour = -1 }, "default.messages_per_hour: -1 is not from 0"},
		{"huge messages_per_day", func(c *Config) { c.Default.MessagesPerDay = MaxLimit + 1 }, "default.messages_per_day: 10000001 is not from 0"},
		{"negative recipients_per_hour", func(c *Config) { c.Default.RecipientsPerHour = -5 }, "default.recipients_per_hour: -5"},
		{"huge recipients_per_day", func(c *Config) { c.Default.RecipientsPerDay = 1 << 40 }, "default.recipients_per_day:"},
		{"account limit", func(c *Config) { c.Accounts = map[string]Limits{"a@b": {RecipientsPerDay: -1}} }, `accounts."a@b".recipients_per_day: -1`},
		{"empty key", func(c *Config) { c.Accounts = map[string]Limits{"": {}} }, `accounts."": empty key`},
		{"space", func(c *Config) { c.Accounts = map[string]Limits{"a b@c": {}} }, `accounts."a b@c": key contains a space`},
		{"tab", func(c *Config) { c.Accounts = map[string]Limits{"a@c\t": {}} }, `key contains a space or control`},
		{"control", func(c *Config) { c.Accounts = map[string]Limits{"a\x00@c": {}} }, `key contains a space or control`},
		{"upper case", func(c *Config) { c.Accounts = map[string]Limits{"Alice@example.com": {}} }, `accounts."Alice@example.com": key is not lower-case`},
		{"bare @", func(c *Config) { c.Accounts = map[string]Limits{"@": {}} }, `accounts."@": not a login or @domain`},
		{"@ in domain", func(c *Config) { c.Accounts = map[string]Limits{"@a@b": {}} }, `not a login or @domain`},
		{"long key", func(c *Config) { c.Accounts = map[string]Limits{strings.Repeat("a", MaxKeyLen+1): {}} }, "key longer than 320 bytes"},
		{"bad UTF-8", func(c *Config) { c.Accounts = map[string]Limits{"a\xff@b": {}} }, "not valid UTF-8"},
		{"max_accounts 0", func(c *Config) { c.MaxAccounts = 0 }, "max_accounts: 0 is not from 1 to 10000000"},
		{"max_accounts huge", func(c *Config) { c.MaxAccounts = MaxMaxAccounts + 1 }, "max_accounts: 10000001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("got %q, want one error containing %q", err, tt.want)
			}
		})
	}

	// Every problem is reported.
	c := Config{Default: Limits{-1, -1, 0, 0}, Accounts: map[string]Limits{"A": {}}}
	if err := c.Validate(); err == nil || strings.Count(err.Error(), "\n") != 3 {
		t.Errorf("got %v, want four errors", err)
	}
}

// TestRcptDoesNotAllocate: counting for a tracked login allocates nothing.
func TestRcptDoesNotAllocate(t *testing.T) {
	l := newLimiter(t, Limits{MessagesPerHour: 1 << 20, RecipientsPerDay: 1 << 20}, nil)
	insts := make([]string, 64)
	for i := range insts {
		insts[i] = fmt.Sprintf("8a3c.5f3c4d1e.%d.0", i)
	}
	login := "alice@example.com"
	l.Rcpt(login, "", t0)
	i := 0
	now := t0
	allocs := testing.AllocsPerRun(1000, func() {
		l.Rcpt(login, insts[i%len(insts)], now)
		i++
		now = now.Add(7 * time.Second) // crosses minute and hour buckets
	})
	if allocs != 0 {
		t.Errorf("Rcpt: %v allocations, want 0", allocs)
	}
	refuse := newLimiter(t, Limits{RecipientsPerHour: 1}, nil)
	refuse.Rcpt(login, "", t0)
	if allocs := testing.AllocsPerRun(1000, func() { refuse.Rcpt(login, "x", t0) }); allocs != 0 {
		t.Errorf("refused Rcpt: %v allocations, want 0", allocs)
	}
}

// TestConcurrent: many goroutines on a few logins; exactly the limit gets
// through. Run with -race.
func TestConcurrent(t *testing.T) {
	const (
		workers = 8
		each    = 600
		limit   = 1000
	)
	l := newLimiter(t, Limits{RecipientsPerDay: limit}, nil)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok = map[string]int{}
	)
	logins := []string{"a@x", "b@x", "c@x"}
	for w := range workers {
		wg.Go(func() {
			n := map[string]int{}
			for i := range each {
				login := logins[i%len(logins)]
				if l.Rcpt(login, fmt.Sprintf("w%d-m%d", w, i/10), at(time.Duration(i)*time.Millisecond)).OK() {
					n[login]++
				}
				if i%50 == 0 {
					l.List(at(time.Second))
					l.Usage(login, at(time.Second))
					l.Len()
				}
			}
			mu.Lock()
			for k, v := range n {
				ok[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	total := workers * each / len(logins)
	for _, login := range logins {
		u := l.Usage(login, at(time.Second))
		if ok[login] != limit || u.RecipientsDay != limit || u.Refused != total-limit {
			t.Errorf("%s: %d accepted, usage %+v; want %d accepted, %d refused", login, ok[login], u, limit, total-limit)
		}
	}
}

// TestIncSaturates: a full bucket stays full and says so, so the sums
// (which follow inc's answer) never drift from the buckets.
func TestIncSaturates(t *testing.T) {
	b := uint32(math.MaxUint32 - 1)
	if !inc(&b) || b != math.MaxUint32 {
		t.Fatalf("inc below the top: %d", b)
	}
	if inc(&b) || b != math.MaxUint32 {
		t.Fatalf("inc at the top: %d", b)
	}
}

// Count adds what another node accepted, over the limit too, without a
// refusal; the next local Rcpt sees it.
func TestCountFromAnotherNode(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	l := New(Config{Default: Limits{RecipientsPerHour: 2}})
	l.Count("a@example.test", "m1", now)
	l.Count("a@example.test", "m1", now)
	l.Count("a@example.test", "m2", now)
	u := l.Usage("a@example.test", now)
	if u.RecipientsHour != 3 || u.MessagesHour != 2 || u.Refused != 0 {
		t.Fatalf("usage %+v, want 3 recipients, 2 messages, no refusal", u)
	}
	if ex := l.Rcpt("a@example.test", "m3", now); ex.OK() {
		t.Fatal("a local recipient over the limit counted with another node's was accepted")
	}
}

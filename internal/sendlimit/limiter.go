package sendlimit

import (
	"cmp"
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Windows: the hour is hourBuckets one-minute buckets, the day dayBuckets
// one-hour buckets, each a ring indexed by the minute (hour) since the
// Unix epoch. A bucket leaves its window as a whole, so a recipient counts
// toward the hour for between 59 and 60 minutes and toward the day for
// between 23 and 24 hours, depending on where in its minute (hour) it came.
const (
	hourBuckets = 60
	dayBuckets  = 24
)

// recentInstances is how many Postfix instances (messages) are remembered
// per login: enough for a few sessions of one login sending at once, each
// interleaving its RCPTs with the others'.
const recentInstances = 8

// A Limiter counts recipients and messages per login and refuses what
// would exceed a limit. It is safe for concurrent use.
//
// One mutex guards everything. Rcpt holds it for a map lookup and a few
// array updates (BenchmarkRcpt: about 50 ns for a sender in the CPU cache,
// about 1 µs for one of 100,000 that is not), while Postfix asks at most a
// few thousand times a second, so contention is negligible; shards would
// make the MaxAccounts bound and the eviction order approximate and List
// more complex, for no measurable gain. List holds the mutex while it
// reads every tracked sender (tens of milliseconds for 100,000).
type Limiter struct {
	maxAccounts int
	seed        maphash.Seed // for instance hashes

	mu       sync.Mutex
	def      Limits
	accounts map[string]Limits // owned copy of Config.Accounts
	slots    map[string]int32  // login → slot
	chunks   [][]account       // slot i is chunks[i/chunkLen][i%chunkLen]
	links    []link            // slot i's place in the recency list
	head     int32             // most recently active slot; none when empty
	tail     int32             // least recently active slot: evicted first
}

// Accounts live in chunks of chunkLen (fewer when MaxAccounts is small),
// allocated as slots are first used and never copied; an evicted account's
// slot is reused for the next new login. The recency list is kept apart,
// in links, a dense slice: reordering it touches no other account's
// memory.
const (
	chunkBits = 10
	chunkLen  = 1 << chunkBits
	none      = int32(-1)
)

type link struct{ prev, next int32 }

// account is one tracked login. Everything is inline, so that counting
// for a tracked login allocates nothing.
type account struct {
	login  string
	limits Limits

	minute int64 // minute (since the epoch) of the newest bucket in mins
	hour   int64 // hour (since the epoch) of the newest bucket in hours

	// Sums over mins and hours, kept as buckets are added to and cleared.
	msgHour, rcptHour           int
	msgDay, rcptDay, refusedDay int
	lastRefused                 int64                   // unix nanoseconds; 0 when never refused
	instances                   [recentInstances]uint64 // hashes of recent instances; 0 = empty
	nextInstance                uint8
	mins                        [hourBuckets]minuteBucket
	hours                       [dayBuckets]hourBucket
}

type minuteBucket struct{ msgs, rcpts uint32 }

type hourBucket struct{ msgs, rcpts, refused uint32 }

// New returns a Limiter for cfg, which should have passed Validate (a
// MaxAccounts out of range is brought to 1 or MaxMaxAccounts; a negative
// limit means no limit). Counts start at zero.
func New(cfg Config) *Limiter {
	return &Limiter{
		def:         cfg.Default,
		accounts:    maps.Clone(cfg.Accounts),
		maxAccounts: min(max(cfg.MaxAccounts, 1), MaxMaxAccounts),
		seed:        maphash.MakeSeed(),
		slots:       map[string]int32{},
		head:        none,
		tail:        none,
	}
}

// SetLimits replaces the limits (a reload) and applies them to every
// tracked sender at once; the counts stay. cfg.MaxAccounts is ignored:
// the bound is New's.
func (l *Limiter) SetLimits(cfg Config) {
	accounts := maps.Clone(cfg.Accounts)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.def, l.accounts = cfg.Default, accounts
	for i := l.head; i != none; i = l.links[i].next {
		a := l.acct(i)
		a.limits = l.limitsForLocked(a.login)
	}
}

// LimitsFor returns login's limits: its own entry in Config.Accounts, else
// its domain's ("@" and what follows the last "@"), else Config.Default.
// The caller normalises login (lower-case, trimmed).
func (l *Limiter) LimitsFor(login string) Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limitsForLocked(login)
}

func (l *Limiter) limitsForLocked(login string) Limits {
	if lim, ok := l.accounts[login]; ok {
		return lim
	}
	if i := strings.LastIndexByte(login, '@'); i >= 0 {
		if lim, ok := l.accounts[login[i:]]; ok {
			return lim
		}
	}
	return l.def
}

// Rcpt is called for each RCPT of an authenticated session; instance is
// Postfix's per-message "instance" attribute (protocols.md §3). If counting
// this recipient — and, when instance is new for this login, one message —
// keeps every window within its limit, Rcpt counts them and returns the
// zero Exceeded (OK). Otherwise it counts nothing, records a refusal and
// returns the first limit that would be exceeded, in the order
// messages_per_hour, messages_per_day, recipients_per_hour,
// recipients_per_day. A limit of N allows N; the N+1th is refused.
//
// The last few (8) instances of each login are remembered, as 64-bit
// hashes, so sessions of one login sending at once, their RCPTs
// interleaved, count each message once. An empty instance counts every
// recipient as a new message.
//
// An account whose limits are all 0 is counted (so that List shows it)
// but never refused. An empty login is not counted and always OK; a login
// longer than MaxKeyLen bytes is counted under its first MaxKeyLen bytes.
// A now earlier than the login's last Rcpt counts as that last time.
func (l *Limiter) Rcpt(login, instance string, now time.Time) Exceeded {
	return l.rcpt(login, instance, now, true)
}

// Count counts a recipient another mailgate node accepted (a cluster
// shares its senders' counts): as Rcpt, but never refused.
func (l *Limiter) Count(login, instance string, now time.Time) {
	l.rcpt(login, instance, now, false)
}

func (l *Limiter) rcpt(login, instance string, now time.Time, check bool) Exceeded {
	if login == "" {
		return Exceeded{}
	}
	login = clip(login)
	var inst uint64
	if instance != "" {
		inst = maphash.String(l.seed, instance) | 1 // never 0, the empty slot
	}
	sec := now.Unix()

	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.touchLocked(login, sec)
	a.advance(sec)

	newMsg := inst == 0 || !a.recent(inst)
	lim := &a.limits
	var e Exceeded
	switch {
	case !check:
	case newMsg && lim.MessagesPerHour > 0 && a.msgHour >= lim.MessagesPerHour:
		e = Exceeded{Limit: MessagesPerHour, Max: lim.MessagesPerHour, Used: a.msgHour}
	case newMsg && lim.MessagesPerDay > 0 && a.msgDay >= lim.MessagesPerDay:
		e = Exceeded{Limit: MessagesPerDay, Max: lim.MessagesPerDay, Used: a.msgDay}
	case lim.RecipientsPerHour > 0 && a.rcptHour >= lim.RecipientsPerHour:
		e = Exceeded{Limit: RecipientsPerHour, Max: lim.RecipientsPerHour, Used: a.rcptHour}
	case lim.RecipientsPerDay > 0 && a.rcptDay >= lim.RecipientsPerDay:
		e = Exceeded{Limit: RecipientsPerDay, Max: lim.RecipientsPerDay, Used: a.rcptDay}
	}
	hb := &a.hours[mod(a.hour, dayBuckets)]
	if !e.OK() {
		if inc(&hb.refused) {
			a.refusedDay++
		}
		a.lastRefused = now.UnixNano()
		return e
	}
	mb := &a.mins[mod(a.minute, hourBuckets)]
	if inc(&mb.rcpts) {
		a.rcptHour++
	}
	if inc(&hb.rcpts) {
		a.rcptDay++
	}
	if newMsg {
		if inc(&mb.msgs) {
			a.msgHour++
		}
		if inc(&hb.msgs) {
			a.msgDay++
		}
		if inst != 0 {
			a.instances[a.nextInstance] = inst
			a.nextInstance = (a.nextInstance + 1) % recentInstances
		}
	}
	return Exceeded{}
}

// Usage is one sender's counts and limits at a moment.
type Usage struct {
	Login                         string
	Limits                        Limits
	MessagesHour, MessagesDay     int
	RecipientsHour, RecipientsDay int
	Over                          []string  // limits reached now (used ≥ max, max > 0), named as in Exceeded.Limit
	Refused                       int       // refusals within the last day
	LastRefused                   time.Time // zero if none since the login was tracked
}

// Usage returns login's counts at now; all zero when login is not tracked.
func (l *Limiter) Usage(login string, now time.Time) Usage {
	login = clip(login)
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.slots[login]
	if !ok {
		return Usage{Login: login, Limits: l.limitsForLocked(login)}
	}
	return l.acct(i).usage(now.Unix())
}

// List returns the tracked senders with anything counted in the last day:
// those over a limit first, then by RecipientsDay, largest first, then by
// login.
func (l *Limiter) List(now time.Time) []Usage {
	sec := now.Unix()
	l.mu.Lock()
	var list []Usage
	for i := l.head; i != none; i = l.links[i].next {
		u := l.acct(i).usage(sec)
		if u.MessagesDay > 0 || u.RecipientsDay > 0 || u.Refused > 0 {
			list = append(list, u)
		}
	}
	l.mu.Unlock()
	slices.SortFunc(list, func(a, b Usage) int {
		if ao, bo := len(a.Over) > 0, len(b.Over) > 0; ao != bo {
			if ao {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.RecipientsDay, a.RecipientsDay); c != 0 {
			return c
		}
		return strings.Compare(a.Login, b.Login)
	})
	return list
}

// Len returns how many senders are tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.slots)
}

// touchLocked returns login's account, created (in the least recently
// active account's slot when MaxAccounts are tracked) if absent, and
// makes it the most recently active.
func (l *Limiter) touchLocked(login string, sec int64) *account {
	if i, ok := l.slots[login]; ok {
		if l.head != i {
			l.unlinkLocked(i)
			l.pushFrontLocked(i)
		}
		return l.acct(i)
	}
	var i int32
	if len(l.links) < l.maxAccounts {
		i = int32(len(l.links))
		l.links = append(l.links, link{none, none})
		if int(i)&(chunkLen-1) == 0 {
			l.chunks = append(l.chunks, make([]account, min(chunkLen, l.maxAccounts)))
		}
	} else {
		i = l.tail
		l.unlinkLocked(i)
		delete(l.slots, l.acct(i).login)
	}
	a := l.acct(i)
	*a = account{
		login:  strings.Clone(login), // not pinning the caller's buffer
		limits: l.limitsForLocked(login),
		minute: floorDiv(sec, 60),
		hour:   floorDiv(sec, 3600),
	}
	l.slots[a.login] = i
	l.pushFrontLocked(i)
	return a
}

func (l *Limiter) acct(i int32) *account { return &l.chunks[i>>chunkBits][i&(chunkLen-1)] }

func (l *Limiter) unlinkLocked(i int32) {
	n := l.links[i]
	if n.prev != none {
		l.links[n.prev].next = n.next
	} else {
		l.head = n.next
	}
	if n.next != none {
		l.links[n.next].prev = n.prev
	} else {
		l.tail = n.prev
	}
	l.links[i] = link{none, none}
}

func (l *Limiter) pushFrontLocked(i int32) {
	l.links[i] = link{none, l.head}
	if l.head != none {
		l.links[l.head].prev = i
	}
	l.head = i
	if l.tail == none {
		l.tail = i
	}
}

// advance moves a's windows to sec, clearing the buckets that left them.
// A sec earlier than a's newest bucket changes nothing.
func (a *account) advance(sec int64) {
	if m := floorDiv(sec, 60); m > a.minute {
		if m-a.minute >= hourBuckets {
			a.mins = [hourBuckets]minuteBucket{}
			a.msgHour, a.rcptHour = 0, 0
		} else {
			for x := a.minute + 1; x <= m; x++ {
				b := &a.mins[mod(x, hourBuckets)]
				a.msgHour -= int(b.msgs)
				a.rcptHour -= int(b.rcpts)
				*b = minuteBucket{}
			}
		}
		a.minute = m
	}
	if h := floorDiv(sec, 3600); h > a.hour {
		if h-a.hour >= dayBuckets {
			a.hours = [dayBuckets]hourBucket{}
			a.msgDay, a.rcptDay, a.refusedDay = 0, 0, 0
		} else {
			for x := a.hour + 1; x <= h; x++ {
				b := &a.hours[mod(x, dayBuckets)]
				a.msgDay -= int(b.msgs)
				a.rcptDay -= int(b.rcpts)
				a.refusedDay -= int(b.refused)
				*b = hourBucket{}
			}
		}
		a.hour = h
	}
}

// recent reports whether inst is one of a's recent instances.
func (a *account) recent(inst uint64) bool {
	for _, x := range a.instances {
		if x == inst {
			return true
		}
	}
	return false
}

// usage returns a's counts at sec (advancing its windows there).
func (a *account) usage(sec int64) Usage {
	a.advance(sec)
	u := Usage{
		Login:          a.login,
		Limits:         a.limits,
		MessagesHour:   a.msgHour,
		MessagesDay:    a.msgDay,
		RecipientsHour: a.rcptHour,
		RecipientsDay:  a.rcptDay,
		Refused:        a.refusedDay,
	}
	if a.lastRefused != 0 {
		u.LastRefused = time.Unix(0, a.lastRefused).UTC()
	}
	for _, c := range []struct {
		name      string
		used, max int
	}{
		{MessagesPerHour, u.MessagesHour, u.Limits.MessagesPerHour},
		{MessagesPerDay, u.MessagesDay, u.Limits.MessagesPerDay},
		{RecipientsPerHour, u.RecipientsHour, u.Limits.RecipientsPerHour},
		{RecipientsPerDay, u.RecipientsDay, u.Limits.RecipientsPerDay},
	} {
		if c.max > 0 && c.used >= c.max {
			u.Over = append(u.Over, c.name)
		}
	}
	return u
}

// inc adds one to a bucket unless it is full, and reports whether it did
// (the sums follow the buckets, so they never drift). A bucket is full
// only for an account without limits counting billions in one minute or
// hour.
func inc(b *uint32) bool {
	if *b == ^uint32(0) {
		return false
	}
	*b++
	return true
}

// clip bounds a login used as a key to MaxKeyLen bytes.
func clip(login string) string {
	if len(login) > MaxKeyLen {
		return login[:MaxKeyLen]
	}
	return login
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func mod(a, n int64) int64 {
	r := a % n
	if r < 0 {
		r += n
	}
	return r
}

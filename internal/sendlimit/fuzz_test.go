package sendlimit

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// model is a naive reference Limiter: it keeps every counted recipient
// and refusal and counts them on demand. FuzzRcpt checks the Limiter
// against it.
type model struct {
	lim    *Limiter // for LimitsFor only
	max    int
	accts  map[string]*modelAcct
	recent []string // logins, least recently active first
}

type modelAcct struct {
	minute, hour int64 // the latest seen
	events       []modelEvent
	refusals     []int64 // hours
	lastRefused  time.Time
	instances    []string // oldest first, at most recentInstances
}

type modelEvent struct {
	minute, hour int64
	msg          bool
}

func (m *model) rcpt(login, instance string, now time.Time) Exceeded {
	if login == "" {
		return Exceeded{}
	}
	a, ok := m.accts[login]
	if !ok {
		if len(m.accts) == m.max {
			delete(m.accts, m.recent[0])
			m.recent = m.recent[1:]
		}
		a = &modelAcct{minute: floorDiv(now.Unix(), 60), hour: floorDiv(now.Unix(), 3600)}
		m.accts[login] = a
	} else {
		m.recent = slices.DeleteFunc(m.recent, func(s string) bool { return s == login })
	}
	m.recent = append(m.recent, login)
	u := m.usage(login, now)
	newMsg := instance == "" || !slices.Contains(a.instances, instance)
	lim := u.Limits
	var e Exceeded
	switch {
	case newMsg && lim.MessagesPerHour > 0 && u.MessagesHour+1 > lim.MessagesPerHour:
		e = Exceeded{MessagesPerHour, lim.MessagesPerHour, u.MessagesHour}
	case newMsg && lim.MessagesPerDay > 0 && u.MessagesDay+1 > lim.MessagesPerDay:
		e = Exceeded{MessagesPerDay, lim.MessagesPerDay, u.MessagesDay}
	case lim.RecipientsPerHour > 0 && u.RecipientsHour+1 > lim.RecipientsPerHour:
		e = Exceeded{RecipientsPerHour, lim.RecipientsPerHour, u.RecipientsHour}
	case lim.RecipientsPerDay > 0 && u.RecipientsDay+1 > lim.RecipientsPerDay:
		e = Exceeded{RecipientsPerDay, lim.RecipientsPerDay, u.RecipientsDay}
	}
	if !e.OK() {
		a.refusals = append(a.refusals, a.hour)
		a.lastRefused = now.UTC()
		return e
	}
	a.events = append(a.events, modelEvent{a.minute, a.hour, newMsg})
	if newMsg && instance != "" {
		a.instances = append(a.instances, instance)
		if len(a.instances) > recentInstances {
			a.instances = a.instances[1:]
		}
	}
	return e
}

func (m *model) usage(login string, now time.Time) Usage {
	u := Usage{Login: login, Limits: m.lim.LimitsFor(login)}
	a, ok := m.accts[login]
	if !ok {
		return u
	}
	a.minute = max(a.minute, floorDiv(now.Unix(), 60))
	a.hour = max(a.hour, floorDiv(now.Unix(), 3600))
	for _, e := range a.events {
		n := 0
		if e.msg {
			n = 1
		}
		if a.minute-e.minute < hourBuckets {
			u.MessagesHour += n
			u.RecipientsHour++
		}
		if a.hour-e.hour < dayBuckets {
			u.MessagesDay += n
			u.RecipientsDay++
		}
	}
	for _, h := range a.refusals {
		if a.hour-h < dayBuckets {
			u.Refused++
		}
	}
	u.LastRefused = a.lastRefused
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

var fuzzLogins = []string{"l0@x", "l1", "l2@d", "l3@d", ""}

// FuzzRcpt drives a Limiter and the model with the same sequence of
// recipients (login, instance, time step: 3 bytes each) and compares every
// answer and every sender's Usage after each step.
func FuzzRcpt(f *testing.F) {
	f.Add([]byte("\x00\x01\x01\x00\x01\x01\x00\x02\x01\x00\x03\x01\x00\x04\x01\x00\x05\x01"))
	f.Add([]byte("\x01\x00\x00\x01\x00\x00\x01\x00\x00\x01\x00\x7f\x01\x00\x00"))
	f.Add([]byte("\x02\x01\x00\x03\x02\x00\x02\x03\xbf\x03\x04\xff\x00\x05\x00\x04\x06\x00"))
	f.Add([]byte("\x00\x01\xa4\x01\x02\xa4\x02\x03\xa4\x03\x04\xa4\x00\x05\xa4"))
	f.Fuzz(checkOps)
}

// checkOps runs one FuzzRcpt input.
func checkOps(t *testing.T, ops []byte) {
	if len(ops) > 3*500 {
		ops = ops[:3*500]
	}
	cfg := Config{
		Default: Limits{MessagesPerHour: 3, MessagesPerDay: 5, RecipientsPerHour: 6, RecipientsPerDay: 10},
		Accounts: map[string]Limits{
			"l1": {RecipientsPerHour: 2},
			"@d": {MessagesPerHour: 1, RecipientsPerDay: 4},
		},
		MaxAccounts: 3,
	}
	l := New(cfg)
	m := &model{lim: l, max: cfg.MaxAccounts, accts: map[string]*modelAcct{}}
	now := t0
	for i := 0; i+3 <= len(ops); i += 3 {
		login := fuzzLogins[int(ops[i])%len(fuzzLogins)]
		instance := ""
		if n := ops[i+1] % 12; n > 0 {
			instance = fmt.Sprintf("i%d", n)
		}
		step := time.Duration(ops[i+2] & 63)
		switch ops[i+2] >> 6 {
		case 0:
			now = now.Add(step * time.Second)
		case 1:
			now = now.Add(step * time.Minute)
		case 2:
			now = now.Add(step * 10 * time.Minute)
		case 3:
			now = now.Add(-step * time.Minute)
		}
		got, want := l.Rcpt(login, instance, now), m.rcpt(login, instance, now)
		if got != want {
			t.Fatalf("step %d: Rcpt(%q, %q, %v) = %+v, model %+v", i/3, login, instance, now, got, want)
		}
		for _, login := range fuzzLogins[:4] {
			if got, want := l.Usage(login, now), m.usage(login, now); !reflect.DeepEqual(got, want) {
				t.Fatalf("step %d: Usage(%q):\n got %+v\nwant %+v", i/3, login, got, want)
			}
		}
		if l.Len() != len(m.accts) {
			t.Fatalf("step %d: Len %d, model %d", i/3, l.Len(), len(m.accts))
		}
	}
	var want []string
	for _, login := range fuzzLogins[:4] {
		if u := m.usage(login, now); u.MessagesDay > 0 || u.RecipientsDay > 0 || u.Refused > 0 {
			want = append(want, login)
		}
	}
	var got []string
	for _, u := range l.List(now) {
		got = append(got, u.Login)
	}
	slices.Sort(want)
	if slices.Sort(got); !slices.Equal(got, want) {
		t.Fatalf("List: %q, model %q", got, want)
	}
}

// Package metrics counts what the doors decide, for the Prometheus
// endpoint ([metrics] listen) and for 'mailgate status'.
//
// The hot path is DecisionLog's: every verdict and every reported login
// result passes through Verdict and Result, which add to counters that
// were created on first use (the label set is bounded: door, service,
// action and reason are enums, never a login or an address) and to the
// per-door windows of the last minute and hour. Neither allocates after
// the first decision of a label combination (BenchmarkVerdict).
package metrics

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// Doors are the door label values; anything else counts as "other".
var doorNames = [...]string{"dovecot", "nginx", "postfix", "cli", "other"}

const (
	numDoors    = len(doorNames)
	numServices = int(rules.OtherService) + 1
	numActions  = 3
	numReasons  = 32 // more than policy.Reasons(); checked in New
)

// Doors returns the door label values, in order.
func Doors() []string { return doorNames[:] }

func doorIndex(door string) int {
	for i, d := range doorNames[:numDoors-1] {
		if d == door {
			return i
		}
	}
	return numDoors - 1
}

// LatencyBuckets are the upper bounds (seconds) of the per-door latency
// histograms: 100 µs to 60 s (a tarpit or a password check is seconds).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics holds every counter; the zero value is not usable, call New.
type Metrics struct {
	set *vm.Set
	mu  sync.Mutex // serializes creating counters

	decisions [numDoors][numServices][numActions][numReasons]atomic.Pointer[vm.Counter]
	results   [numDoors][numServices][2]atomic.Pointer[vm.Counter]
	latency   [numDoors]atomic.Pointer[vm.PrometheusHistogram]
	windows   [numDoors]window
	errors    sync.Map // component → *vm.Counter
}

// New returns empty metrics.
func New() *Metrics {
	if len(policy.Reasons()) > numReasons {
		panic("metrics: numReasons is smaller than policy's reasons")
	}
	// # TYPE lines, so that Prometheus knows counters from gauges. The
	// switch is the library's, process-wide; mailgate wants it always.
	vm.ExposeMetadata(true)
	m := &Metrics{set: vm.NewSet()}
	for _, c := range []string{"store", "firewall", "geoip"} {
		m.errors.Store(c, m.set.GetOrCreateCounter(`mailgate_errors_total{component="`+c+`"}`))
	}
	return m
}

// Verdict counts a verdict: mailgate_decisions_total, and the door's
// window for 'mailgate status'. It implements policy.Observer.
func (m *Metrics) Verdict(now time.Time, a *policy.Attempt, v *policy.Verdict) {
	d := doorIndex(a.Door)
	s := int(a.Service)
	if s >= numServices {
		s = numServices - 1
	}
	act := int(v.Action)
	r := int(v.Reason)
	if act >= numActions || r >= numReasons {
		return
	}
	p := &m.decisions[d][s][act][r]
	c := p.Load()
	if c == nil {
		c = m.create(p, `mailgate_decisions_total{door="`+doorNames[d]+`",service="`+rules.Service(s).String()+
			`",action="`+v.Action.String()+`",reason="`+v.Reason.String()+`"}`)
	}
	c.Inc()
	m.windows[d].add(now, v.Action == policy.Deny)
}

// Result counts a login result a door reported
// (mailgate_login_results_total).
func (m *Metrics) Result(_ time.Time, a *policy.Attempt, success bool) {
	d := doorIndex(a.Door)
	s := int(a.Service)
	if s >= numServices {
		s = numServices - 1
	}
	i, res := 0, "failure"
	if success {
		i, res = 1, "success"
	}
	p := &m.results[d][s][i]
	c := p.Load()
	if c == nil {
		c = m.create(p, `mailgate_login_results_total{door="`+doorNames[d]+`",service="`+rules.Service(s).String()+`",result="`+res+`"}`)
	}
	c.Inc()
}

func (m *Metrics) create(p *atomic.Pointer[vm.Counter], name string) *vm.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := p.Load(); c != nil {
		return c
	}
	c := m.set.GetOrCreateCounter(name)
	p.Store(c)
	return c
}

// Latency records how long a door took to answer one request
// (mailgate_request_duration_seconds).
func (m *Metrics) Latency(door string, d time.Duration) {
	i := doorIndex(door)
	h := m.latency[i].Load()
	if h == nil {
		m.mu.Lock()
		if h = m.latency[i].Load(); h == nil {
			h = m.set.GetOrCreatePrometheusHistogramExt(`mailgate_request_duration_seconds{door="`+doorNames[i]+`"}`, latencyBuckets)
			m.latency[i].Store(h)
		}
		m.mu.Unlock()
	}
	h.Update(d.Seconds())
}

// Error counts an error log record of a component
// (mailgate_errors_total{component}); components are the fixed names the
// daemon's loggers carry (store, firewall, geoip, …).
func (m *Metrics) Error(component string) {
	if c, ok := m.errors.Load(component); ok {
		c.(*vm.Counter).Inc()
		return
	}
	m.mu.Lock()
	c := m.set.GetOrCreateCounter(`mailgate_errors_total{component="` + component + `"}`)
	m.mu.Unlock()
	m.errors.Store(component, c)
	c.Inc()
}

// Counter returns the increment of a counter, created now: for a
// component that counts its own events; name is the full metric name
// with its labels.
func (m *Metrics) Counter(name string) func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.set.GetOrCreateCounter(name).Inc
}

// Gauge registers a value read at every scrape; name is the full metric
// name with its labels.
func (m *Metrics) Gauge(name string, f func() float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.set.GetOrCreateGauge(name, f)
}

// WritePrometheus writes every metric in the Prometheus text format, with
// the process's and the Go runtime's (process_*, go_*).
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.set.WritePrometheus(w)
	vm.WriteProcessMetrics(w)
}

// Counts are a door's requests and refusals (Deny verdicts) in the last
// minute and the last hour.
type Counts struct {
	MinuteRequests, MinuteRefusals uint64
	HourRequests, HourRefusals     uint64
}

// Window returns the counts of door up to now.
func (m *Metrics) Window(door string, now time.Time) Counts {
	return m.windows[doorIndex(door)].counts(now)
}

// window counts requests and refusals per second (the last minute) and
// per minute (the last hour).
type window struct {
	mu   sync.Mutex
	secs [60]slot
	mins [60]slot
}

type slot struct {
	at       int64 // unix second or minute the slot counts
	req, ref uint64
}

func (s *slot) add(at int64, refused bool) {
	if s.at != at {
		*s = slot{at: at}
	}
	s.req++
	if refused {
		s.ref++
	}
}

func (w *window) add(now time.Time, refused bool) {
	sec := now.Unix()
	min := sec / 60
	w.mu.Lock()
	w.secs[sec%60].add(sec, refused)
	w.mins[min%60].add(min, refused)
	w.mu.Unlock()
}

func (w *window) counts(now time.Time) Counts {
	sec := now.Unix()
	min := sec / 60
	var c Counts
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.secs {
		if s := &w.secs[i]; s.at > sec-60 && s.at <= sec {
			c.MinuteRequests += s.req
			c.MinuteRefusals += s.ref
		}
	}
	for i := range w.mins {
		if s := &w.mins[i]; s.at > min-60 && s.at <= min {
			c.HourRequests += s.req
			c.HourRefusals += s.ref
		}
	}
	return c
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/dnsbld"
	"mailgate/internal/geoip"
	"mailgate/internal/metrics"
)

// telemetry is what the daemon tells about itself: the metrics, the last
// error log records, and which listeners are up. serve builds one first
// and wires it into the logger, the decision log, the doors and the admin
// API.
type telemetry struct {
	m       *metrics.Metrics
	errs    *errorRing
	started time.Time
	now     func() time.Time // the clock of the scrape cache

	mu        sync.Mutex
	listeners []*listenerState
}

// listenerState is one listener serve started.
type listenerState struct {
	name, door, addr string
	up               atomic.Bool
}

func newTelemetry(now time.Time) *telemetry {
	m := metrics.New()
	t := &telemetry{m: m, errs: &errorRing{m: m}, started: now, now: time.Now}
	m.Gauge(`mailgate_start_time_seconds`, func() float64 { return float64(now.Unix()) })
	m.Gauge(`mailgate_build_info{version="`+strings.ReplaceAll(version, `"`, ``)+`"}`, func() float64 { return 1 })
	return t
}

// wrapLog returns log whose error records are also kept for 'mailgate
// status' and counted in mailgate_errors_total.
func (t *telemetry) wrapLog(log *slog.Logger) *slog.Logger {
	return slog.New(&ringHandler{next: log.Handler(), ring: t.errs})
}

// listening notes a listener serve started; stopped marks it down.
func (t *telemetry) listening(name, addr string) (stopped func()) {
	door := ""
	switch {
	case name == "dovecot", name == "nginx":
		door = name
	case strings.HasPrefix(name, "postfix"):
		door = "postfix"
	}
	l := &listenerState{name: name, door: door, addr: addr}
	l.up.Store(true)
	t.mu.Lock()
	t.listeners = append(t.listeners, l)
	t.mu.Unlock()
	return func() { l.up.Store(false) }
}

// timed measures how long h takes per request, for the door's latency
// histogram.
func (t *telemetry) timed(door string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		h.ServeHTTP(w, r)
		t.m.Latency(door, time.Since(t0))
	})
}

// latency is the postfix door's latency callback.
func (t *telemetry) latency(door string) func(time.Duration) {
	return func(d time.Duration) { t.m.Latency(door, d) }
}

// pinger is the store's health check.
type pinger interface {
	Ping(ctx context.Context) error
}

// health is GET /healthz: every listener is up, and the store answers.
func (t *telemetry) health(st *storeProbe) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		t.mu.Lock()
		ls := t.listeners
		t.mu.Unlock()
		for _, l := range ls {
			if !l.up.Load() {
				return fmt.Errorf("listener %s (%s) is down", l.name, l.addr)
			}
		}
		return st.check(ctx)
	}
}

// storeProbe pings the store, one ping at a time: a store that hangs
// (another process holds its write lock; SQLite waits busy_timeout) must
// not pile up a connection per health check.
type storeProbe struct {
	st pinger
	mu sync.Mutex
	p  *ping // the ping in flight, nil when none

	last   *ping // the last finished ping
	lastAt time.Time
}

// probeEvery is how often the store is pinged at most: a local user
// fetching /healthz or /metrics in a loop must not keep taking the
// store's write lock.
const probeEvery = time.Second

type ping struct {
	done chan struct{}
	err  error
}

func (s *storeProbe) check(ctx context.Context) error {
	s.mu.Lock()
	p := s.p
	switch {
	case p != nil:
	case s.last != nil && time.Since(s.lastAt) < probeEvery:
		p = s.last
	default:
		p = &ping{done: make(chan struct{})}
		s.p = p
		go func() {
			p.err = s.st.Ping(context.Background())
			s.mu.Lock()
			s.p, s.last, s.lastAt = nil, p, time.Now()
			s.mu.Unlock()
			close(p.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("store does not answer: %w", p.err)
		}
		return nil
	case <-ctx.Done():
		return errors.New("store does not answer within " + api.HealthTimeout.String() + " (another process holding its write lock?)")
	}
}

// gauges registers the values read at each scrape.
// geo returns the GeoIP database in use (nil: none); a reload may change it.
func (t *telemetry) gauges(tracker *abuse.Tracker, permits func() int, geo func() *geoip.Locator, st *storeProbe) {
	// Stats walks every ban once per kind: scrapes are seconds apart.
	t.m.Gauge(`mailgate_bans{kind="address"}`, func() float64 { return float64(tracker.Stats().AddrBans) })
	t.m.Gauge(`mailgate_bans{kind="login"}`, func() float64 { return float64(tracker.Stats().LoginBans) })
	t.m.Gauge(`mailgate_under_attack`, func() float64 {
		if tracker.SurgeState(time.Now()).On {
			return 1
		}
		return 0
	})
	if permits != nil {
		t.m.Gauge(`mailgate_relay_permits`, func() float64 { return float64(permits()) })
	}
	geoTime := func(pick func(geoip.Info) time.Time) func() float64 {
		return func() float64 {
			if g := geo(); g != nil {
				return float64(pick(g.Info()).Unix())
			}
			return 0 // no database (a reload may add one)
		}
	}
	t.m.Gauge(`mailgate_geoip_build_timestamp_seconds`, geoTime(func(i geoip.Info) time.Time { return i.Built }))
	t.m.Gauge(`mailgate_geoip_loaded_timestamp_seconds`, geoTime(func(i geoip.Info) time.Time { return i.Loaded }))
	t.m.Gauge(`mailgate_store_up`, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), api.HealthTimeout)
		defer cancel()
		if st.check(ctx) != nil {
			return 0
		}
		return 1
	})
}

// dnsblCounter counts the DNSBL server's queries by answer
// (mailgate_dnsbl_server_queries_total).
func (t *telemetry) dnsblCounter() func(dnsbld.Outcome) {
	var inc [8]func()
	for _, o := range dnsbld.Outcomes() {
		inc[o] = t.m.Counter(`mailgate_dnsbl_server_queries_total{answer="` + o.String() + `"}`)
	}
	return func(o dnsbld.Outcome) {
		if int(o) < len(inc) && inc[o] != nil {
			inc[o]()
		}
	}
}

// status fills in GET /v1/status's doors, permits, GeoIP database and
// errors.
func (t *telemetry) status(permits func() int, geo func() *geoip.Locator) func(now time.Time, out *api.StatusJSON) {
	return func(now time.Time, out *api.StatusJSON) {
		t.mu.Lock()
		ls := t.listeners
		t.mu.Unlock()
		for _, l := range ls {
			if l.door == "" {
				continue
			}
			c := t.m.Window(l.door, now)
			out.Doors = append(out.Doors, api.DoorJSON{Door: l.door, Listener: l.name, Listen: l.addr, Up: l.up.Load(),
				MinuteRequests: c.MinuteRequests, MinuteRefusals: c.MinuteRefusals,
				HourRequests: c.HourRequests, HourRefusals: c.HourRefusals})
		}
		if permits != nil {
			n := permits()
			out.Permits = &n
		}
		if g := geo(); g != nil {
			i := g.Info()
			out.GeoIP = &api.GeoIPJSON{Path: i.Path, Type: i.DatabaseType, Built: i.Built.UTC(), Loaded: i.Loaded.UTC(),
				AgeSeconds: int64(now.Sub(i.Built) / time.Second), LoadedSeconds: int64(now.Sub(i.Loaded) / time.Second)}
		}
		out.Errors = t.errs.list()
	}
}

// scrapeEvery is how long one rendering of /metrics is served.
const scrapeEvery = time.Second

// metricsServer serves GET /metrics and GET /healthz on [metrics] listen.
func (t *telemetry) metricsServer(health func(ctx context.Context) error, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	// One scrape at a time, and its text reused for a second: a scrape
	// walks every ban, and a local user fetching /metrics in a loop must
	// not hold up the doors.
	var mu sync.Mutex
	var page []byte
	var at time.Time
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		if now := t.now(); page == nil || now.Sub(at) >= scrapeEvery {
			var b bytes.Buffer
			t.m.WritePrometheus(&b)
			page, at = b.Bytes(), now
		}
		out := page
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Write(out) //nolint:errcheck // the scraper went away
	})
	mux.Handle("GET /healthz", api.HealthHandler(health))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// listenMetrics listens on [metrics] listen.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	return ln, nil
}

// errorRingSize is how many error records 'mailgate status' shows.
const errorRingSize = 10

// errorRing keeps the last error log records.
type errorRing struct {
	m    *metrics.Metrics
	mu   sync.Mutex
	recs [errorRingSize]api.LogErrorJSON
	n    int // records ever added
}

func (r *errorRing) add(e api.LogErrorJSON, component string) {
	r.m.Error(component)
	r.mu.Lock()
	r.recs[r.n%errorRingSize] = e
	r.n++
	r.mu.Unlock()
}

// list returns the kept records, oldest first.
func (r *errorRing) list() []api.LogErrorJSON {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []api.LogErrorJSON{}
	for i := max(0, r.n-errorRingSize); i < r.n; i++ {
		out = append(out, r.recs[i%errorRingSize])
	}
	return out
}

// ringHandler passes every record on and keeps the error ones in a ring.
// The component is the logger's "component" (or "door") attribute; a
// record with kind=store counts as the store's.
type ringHandler struct {
	next      slog.Handler
	ring      *errorRing
	component string
	attrs     string // the logger's attributes, formatted
	group     string
}

func (h *ringHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *ringHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(r.Message)
		b.WriteString(h.attrs)
		comp := h.component
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "kind" && a.Value.String() == "store" {
				comp = "store"
			}
			appendAttr(&b, h.group, a)
			return true
		})
		if comp == "" {
			comp = "main"
		}
		h.ring.add(api.LogErrorJSON{Time: r.Time.UTC(), Message: b.String()}, comp)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *ringHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(as)
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		if h.group == "" && (a.Key == "component" || a.Key == "door") {
			n.component = a.Value.String()
		}
		appendAttr(&b, h.group, a)
	}
	n.attrs = b.String()
	return &n
}

func (h *ringHandler) WithGroup(name string) slog.Handler {
	n := *h
	n.next = h.next.WithGroup(name)
	n.group = h.group + name + "."
	return &n
}

func appendAttr(b *strings.Builder, group string, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	fmt.Fprintf(b, " %s%s=%q", group, a.Key, a.Value.String())
}

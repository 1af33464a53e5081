package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/logfollow"
	"mailgate/internal/maillog"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
)

// logDoor is the log door: the [logs] sources, each followed in its own
// goroutine, each parsed event reported as a door reports a login result.
type logDoor struct {
	sources  []*logSource
	lagBytes int64
	log      *slog.Logger
}

// logSource is one followed file or the journal.
type logSource struct {
	name     string // the file's path, or "journald"
	kind     string // file or journald
	file     *logfollow.File
	journal  *logfollow.Journal
	programs []string
	services []rules.Service // empty: all
	maxAge   time.Duration
	report   func(a *policy.Attempt, success bool, now time.Time)
	now      func() time.Time
	log      *slog.Logger // nil: discard

	// crashed counts the lines a parser panicked on; lastCrash (unix
	// seconds) rate-limits their log line to one a minute.
	crashed   atomic.Uint64
	lastCrash atomic.Int64

	events, others, skipped, stale atomic.Uint64
	alarm                          atomic.Value // string: the last problem logged ("" none)
}

// stuckAfter is how long a file may go unchecked before its source is
// reported stuck (it is checked every [logs] poll, at most 10 s).
const stuckAfter = 30 * time.Second

// newLogDoor builds the followers of cfg's [logs]; report gets every
// event (the same path as the doors' reports).
func newLogDoor(cfg *config.Config, report func(a *policy.Attempt, success bool, now time.Time), log *slog.Logger) *logDoor {
	l := cfg.Logs
	d := &logDoor{lagBytes: l.LagBytes, log: log}
	dir := cfg.LogStateDir()
	services := func(list []string) []rules.Service {
		var out []rules.Service
		for _, s := range list {
			out = append(out, rules.ProtocolService(s))
		}
		return out
	}
	for _, f := range l.Files {
		s := &logSource{name: f.Path, kind: "file", programs: cfg.LogPrograms(f.Programs, true), services: services(f.Services),
			maxAge: l.MaxAge, report: report, now: time.Now, log: log}
		s.file = logfollow.NewFile(f.Path, logfollow.FileOptions{
			PositionFile: positionFile(dir, "file", f.Path),
			MaxLine:      l.MaxLine,
		}, s.line, log.With("source", f.Path))
		d.sources = append(d.sources, s)
	}
	if j := l.Journald; j.Enabled {
		s := &logSource{name: "journald", kind: "journald", programs: cfg.LogPrograms(j.Programs, false), services: services(j.Services),
			maxAge: l.MaxAge, report: report, now: time.Now, log: log}
		s.journal = logfollow.NewJournal(logfollow.JournalOptions{
			Command:      j.Command,
			Units:        j.Units,
			Identifiers:  j.Identifiers,
			PositionFile: positionFile(dir, "journald", ""),
			// An entry is its MESSAGE (at most max_line) and metadata.
			MaxLine: max(l.MaxLine, maillog.MaxJournalLineLen),
		}, s.journalLine, log.With("source", "journald"))
		d.sources = append(d.sources, s)
	}
	for _, s := range d.sources {
		if len(s.programs) == 0 {
			// programs = [] and every program's logins reach a door
			// (the default [dovecot] enabled = true): nothing counts.
			log.Warn("log door: this source counts nothing: the programs whose lines it would count report through a door ([dovecot] or [nginx] enabled); name them in programs (counting them twice) or turn the door off", "source", s.name)
			continue
		}
		if slices.Contains(s.programs, maillog.Dovecot) && cfg.Dovecot.Enabled || slices.Contains(s.programs, maillog.Nginx) && cfg.Nginx.Enabled {
			log.Warn("log door: this source counts a program whose logins a door reports too: each failure it logs counts twice if the program asks that door; turn the door off if it does not", "source", s.name, "counts", s.programs)
		}
		log.Info("log door: following", "source", s.name, "counts", s.programs)
	}
	return d
}

// positionFile names the position file of a source in dir: the path's
// hash keeps names short and free of slashes.
func positionFile(dir, kind, path string) string {
	if kind == "journald" {
		return filepath.Join(dir, "logpos-journald.json")
	}
	h := sha256.Sum256([]byte(path))
	return filepath.Join(dir, "logpos-"+filepath.Base(path)+"-"+hex.EncodeToString(h[:6])+".json")
}

// run follows every source until ctx is done, polling files every poll,
// and checks every source's health every check.
func (d *logDoor) run(ctx context.Context, poll time.Duration) {
	var wg sync.WaitGroup
	for _, s := range d.sources {
		wg.Go(func() {
			if s.journal != nil {
				s.journal.Run(ctx)
				return
			}
			t := time.NewTicker(poll)
			defer t.Stop()
			s.file.Run(ctx, t.C)
		})
	}
	wg.Go(func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				d.check(now)
			}
		}
	})
	wg.Wait()
}

// line handles one line of a file.
func (s *logSource) line(b []byte) {
	now := s.now()
	defer s.survive(now)
	var ev maillog.Event
	if !maillog.ParseLine(b, now, &ev) {
		s.others.Add(1)
		return
	}
	s.event(&ev, now)
}

// journalLine handles one line of journalctl's output.
func (s *logSource) journalLine(b []byte) (cursor string) {
	defer s.survive(s.now())
	var ev maillog.Event
	cursor, ok := maillog.ParseJournal(b, &ev)
	if !ok {
		s.others.Add(1)
		return cursor
	}
	s.event(&ev, s.now())
	return cursor
}

// survive, deferred by the line handlers, turns a panic of a parser into
// a skipped line: a line any local user may have written (logger(1))
// must cost that line, never the daemon. The panic is logged at most once
// a minute, and counted as a line that was no event.
func (s *logSource) survive(now time.Time) {
	r := recover()
	if r == nil {
		return
	}
	s.crashed.Add(1)
	s.others.Add(1)
	if last := s.lastCrash.Load(); now.Unix()-last >= 60 && s.lastCrash.CompareAndSwap(last, now.Unix()) && s.log != nil {
		s.log.Error("log door: the parser failed on a line; the line is skipped (please report this as a bug)",
			"source", s.name, "panic", fmt.Sprint(r), "lines_failed", s.crashed.Load())
	}
}

// event reports a parsed login outcome as the doors report theirs.
func (s *logSource) event(ev *maillog.Event, now time.Time) {
	if !slices.Contains(s.programs, ev.Program) || (len(s.services) > 0 && !slices.Contains(s.services, ev.Service)) {
		s.skipped.Add(1)
		return
	}
	if s.maxAge > 0 && !ev.Time.IsZero() && now.Sub(ev.Time) > s.maxAge {
		s.stale.Add(1)
		return
	}
	s.events.Add(1)
	a := policy.Attempt{Door: "log", Service: ev.Service, Login: ev.Login, Client: ev.Client, Session: ev.Session}
	n := 1
	if !ev.Success {
		n = min(max(ev.Attempts, 1), maillog.MaxAttempts)
	}
	for range n {
		s.report(&a, ev.Success, now)
	}
}

// status is a source's line in 'mailgate status'.
func (s *logSource) status(now time.Time, lagBytes int64) api.LogSourceJSON {
	out := api.LogSourceJSON{Source: s.name, Kind: s.kind, Events: s.events.Load(), Other: s.others.Load(),
		Skipped: s.skipped.Load(), Stale: s.stale.Load()}
	var last time.Time
	switch {
	case s.file != nil:
		fs := s.file.Status()
		out.State, out.Lines, out.LongLines, out.Rotations, out.Truncations = fs.State, fs.Lines, fs.LongLines, fs.Rotations, fs.Truncations
		out.Offset, out.LagBytes = fs.Offset, fs.Lag()
		last = fs.LastLine
		switch {
		case !fs.LastStep.IsZero() && now.Sub(fs.LastStep) > stuckAfter:
			// The reader is blocked (a report that does not return).
			out.State = "stuck"
			out.Problem = "the file was last checked " + now.Sub(fs.LastStep).Round(time.Second).String() + " ago"
		case fs.State == "missing":
			out.Problem = "the file is missing since " + fs.MissingFrom.UTC().Format(time.RFC3339)
		case fs.Lag() > lagBytes:
			out.State = "lagging"
			out.Problem = strconv.FormatInt(fs.Lag(), 10) + " bytes behind the end of the file"
		}
	default:
		js := s.journal.Status()
		out.State, out.Lines, out.LongLines, out.PID, out.Starts = js.State, js.Lines, js.LongLines, js.PID, js.Starts
		last = js.LastLine
		if js.State != "ok" && !js.DownSince.IsZero() {
			out.Problem = fmt.Sprintf("journalctl is not running since %s (started %d times): %s",
				js.DownSince.UTC().Format(time.RFC3339), js.Starts, js.LastError)
		}
	}
	if !last.IsZero() {
		out.LastLine = last.UTC()
		out.LastLineSeconds = int64(now.Sub(last) / time.Second)
	}
	return out
}

// check logs a source that went wrong or came right since the last check.
func (d *logDoor) check(now time.Time) {
	for _, s := range d.sources {
		st := s.status(now, d.lagBytes)
		prev, _ := s.alarm.Load().(string)
		switch {
		case st.Problem != "" && prev == "":
			d.log.Warn("log door: source is stopped or lagging", "source", s.name, "state", st.State, "problem", st.Problem)
		case st.Problem == "" && prev != "":
			d.log.Info("log door: source is read again", "source", s.name)
		}
		s.alarm.Store(st.Problem)
	}
}

// status fills in GET /v1/status's log sources.
func (d *logDoor) status(now time.Time, out *api.StatusJSON) {
	for _, s := range d.sources {
		out.Logs = append(out.Logs, s.status(now, d.lagBytes))
	}
}

// gauges registers the sources' counts for /metrics.
func (d *logDoor) gauges(t *telemetry) {
	for _, s := range d.sources {
		label := `{source="` + promLabel(s.name) + `"}`
		now := time.Now
		t.m.Gauge(`mailgate_log_lines`+label, func() float64 { return float64(s.status(now(), d.lagBytes).Lines) })
		t.m.Gauge(`mailgate_log_events`+label, func() float64 { return float64(s.events.Load()) })
		t.m.Gauge(`mailgate_log_other_lines`+label, func() float64 { return float64(s.others.Load()) })
		t.m.Gauge(`mailgate_log_skipped_events`+label, func() float64 { return float64(s.skipped.Load() + s.stale.Load()) })
		t.m.Gauge(`mailgate_log_long_lines`+label, func() float64 { return float64(s.status(now(), d.lagBytes).LongLines) })
		t.m.Gauge(`mailgate_log_lag_bytes`+label, func() float64 { return float64(s.status(now(), d.lagBytes).LagBytes) })
		t.m.Gauge(`mailgate_log_up`+label, func() float64 {
			if s.status(now(), d.lagBytes).Problem != "" {
				return 0
			}
			return 1
		})
	}
}

// promLabel escapes a Prometheus label value.
func promLabel(s string) string {
	b := make([]byte, 0, len(s))
	for i := range len(s) {
		switch c := s[i]; c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

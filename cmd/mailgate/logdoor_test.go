package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/api"
	"mailgate/internal/config"
	"mailgate/internal/policy"
)

type reported struct {
	a       policy.Attempt
	success bool
}

// TestLogDoorEvents: a log line becomes the report a door would make:
// door "log", the line's service, login and address; a Dovecot summary of
// N failed attempts counts N times; the lines of a program another door
// reports, of a service left out, or older than max_age do not count.
func TestLogDoorEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(dir, "mailgate.db")
	cfg.Dovecot.Enabled = false
	cfg.Logs.Enabled = true
	cfg.Logs.Files = []config.LogFile{{Path: path, Services: []string{"imap", "smtp"}}}
	var got []reported
	now := time.Date(2026, 12, 5, 19, 0, 0, 0, time.Local)
	d := newLogDoor(&cfg, func(a *policy.Attempt, success bool, _ time.Time) {
		got = append(got, reported{*a, success})
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s := d.sources[0]
	s.now = func() time.Time { return now }

	lines := []string{
		"Dec 05 18:59:58 imap-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=192.0.2.1, lip=127.0.0.1, mpid=1, session=<a>",
		"Dec 05 18:59:59 imap-login: Info: Disconnected: Connection closed (auth failed, 3 attempts in 6 secs): user=<bob@example.test>, method=PLAIN, rip=192.0.2.2, lip=127.0.0.1, session=<b>",
		// pop3 is not in services.
		"Dec 05 18:59:59 pop3-login: Info: Login: user=<carol@example.test>, method=PLAIN, rip=192.0.2.3, lip=127.0.0.1, mpid=2, session=<c>",
		// An hour old: max_age is 10m.
		"Dec 05 17:59:59 imap-login: Info: Login: user=<dave@example.test>, method=PLAIN, rip=192.0.2.4, lip=127.0.0.1, mpid=3, session=<d>",
		"Dec 05 18:59:59 auth: Info: passwd-file(bob@example.test,192.0.2.2,<b>): Password mismatch",
	}
	// The file exists at the first look: reading starts at its end.
	if err := os.WriteFile(path, []byte("Dec 05 18:00:00 imap-login: Info: Login: user=<old@example.test>, method=PLAIN, rip=192.0.2.9, lip=127.0.0.1, mpid=9, session=<o>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.file.Step(now)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(strings.Join(lines, "\n") + "\n")
	f.Close()
	s.file.Step(now)
	want := []reported{
		{policy.Attempt{Door: "log", Login: "alice@example.test", Client: netip.MustParseAddr("192.0.2.1"), Session: "a"}, true},
		{policy.Attempt{Door: "log", Login: "bob@example.test", Client: netip.MustParseAddr("192.0.2.2"), Session: "b"}, false},
		{policy.Attempt{Door: "log", Login: "bob@example.test", Client: netip.MustParseAddr("192.0.2.2"), Session: "b"}, false},
		{policy.Attempt{Door: "log", Login: "bob@example.test", Client: netip.MustParseAddr("192.0.2.2"), Session: "b"}, false},
	}
	if len(got) != len(want) {
		t.Fatalf("reported %d attempts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		want[i].a.Service = got[i].a.Service // checked below
		if got[i] != want[i] {
			t.Errorf("report %d: %+v, want %+v", i, got[i], want[i])
		}
		if got[i].a.Service.String() != "imap" {
			t.Errorf("report %d: service %s, want imap", i, got[i].a.Service)
		}
	}
	st := s.status(now, cfg.Logs.LagBytes)
	if st.Events != 2 || st.Skipped != 1 || st.Stale != 1 || st.Other != 1 || st.State != "ok" {
		t.Errorf("status %+v, want 2 events, 1 skipped, 1 stale, 1 other line", st)
	}
}

// TestLogDoorProgramsAuto: with the Dovecot door on, Dovecot's lines are
// its business and the log door skips them.
func TestLogDoorProgramsAuto(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(dir, "mailgate.db")
	cfg.Logs.Files = []config.LogFile{{Path: filepath.Join(dir, "none.log")}}
	n := 0
	var logged strings.Builder
	d := newLogDoor(&cfg, func(*policy.Attempt, bool, time.Time) { n++ }, slog.New(slog.NewTextHandler(&logged, nil)))
	s := d.sources[0]
	s.line([]byte("Dec 05 18:59:58 imap-login: Info: Login: user=<alice@example.test>, method=PLAIN, rip=192.0.2.1, lip=127.0.0.1, mpid=1, session=<a>"))
	if n != 0 || s.skipped.Load() != 1 {
		t.Errorf("a Dovecot line with the Dovecot door on: %d reports, %d skipped; want 0 and 1", n, s.skipped.Load())
	}
	// The default config with a file and programs = [] counts nothing
	// from it: the admin is told at start.
	if out := logged.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "counts nothing") {
		t.Errorf("a source that counts nothing, not warned about:\n%s", out)
	}
	logged.Reset()
	cfg.Logs.Files[0].Programs = []string{"postfix"}
	newLogDoor(&cfg, func(*policy.Attempt, bool, time.Time) {}, slog.New(slog.NewTextHandler(&logged, nil)))
	if out := logged.String(); strings.Contains(out, "level=WARN") {
		t.Errorf("a source that counts postfix, warned about:\n%s", out)
	}
	// Dovecot named with the Dovecot door on: counted twice.
	logged.Reset()
	cfg.Logs.Files[0].Programs = []string{"dovecot"}
	newLogDoor(&cfg, func(*policy.Attempt, bool, time.Time) {}, slog.New(slog.NewTextHandler(&logged, nil)))
	if out := logged.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "counts twice") {
		t.Errorf("dovecot named with the Dovecot door on, not warned about:\n%s", out)
	}
}

// TestStatusPrintsLogSources: `mailgate status` names each log source,
// and the problem of one that is stopped or lagging.
func TestStatusPrintsLogSources(t *testing.T) {
	var b strings.Builder
	s := api.StatusJSON{Logs: []api.LogSourceJSON{
		{Source: "/var/log/dovecot.log", Kind: "file", State: "ok", Lines: 10, Events: 3},
		{Source: "journald", Kind: "journald", State: "restarting", Problem: "journalctl is not running since 2026-12-05T19:12:00Z (started 6 times): exit status 1"},
	}}
	if err := printStatusMore(&b, &s); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"log door:", "/var/log/dovecot.log", "restarting", "journald: journalctl is not running since"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
}

// TestLogDoorCheckLogs: a source that goes missing is logged once, and
// again when it is read again.
func TestLogDoorCheckLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(dir, "mailgate.db")
	cfg.Logs.Files = []config.LogFile{{Path: path}}
	var logged strings.Builder
	d := newLogDoor(&cfg, func(*policy.Attempt, bool, time.Time) {}, slog.New(slog.NewTextHandler(&logged, nil)))
	s := d.sources[0]
	now := time.Date(2026, 12, 5, 19, 0, 0, 0, time.UTC)
	s.file.Step(now)
	d.check(now)
	d.check(now.Add(5 * time.Second))
	if n := strings.Count(logged.String(), "source is stopped or lagging"); n != 1 {
		t.Fatalf("%d warnings for a missing file, want 1:\n%s", n, logged.String())
	}
	if st := s.status(now, cfg.Logs.LagBytes); st.State != "missing" || !strings.Contains(st.Problem, "missing since") {
		t.Errorf("status %+v", st)
	}
	os.WriteFile(path, []byte("x\n"), 0o644)
	s.file.Step(now.Add(6 * time.Second))
	d.check(now.Add(10 * time.Second))
	if !strings.Contains(logged.String(), "source is read again") {
		t.Errorf("no info line when the file came back:\n%s", logged.String())
	}

	// Written faster than read: lagging.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(strings.Repeat("y", 5000) + "\n")
	f.Close()
	if st := s.status(now, 4096); st.State != "lagging" || st.LagBytes != 5001 {
		t.Errorf("status with 5001 bytes unread: %+v, want lagging", st)
	}
	// Not checked for a minute (the reader is blocked): stuck.
	if st := s.status(now.Add(time.Minute), cfg.Logs.LagBytes); st.State != "stuck" || !strings.Contains(st.Problem, "last checked 54s ago") {
		t.Errorf("status a minute after the last check: %+v, want stuck", st)
	}
}

// A parser that panics on a line (a bug; any local user can write a log
// line) costs that line, not the daemon: the line handlers recover, count
// it, and log it at most once a minute.
func TestLogSourceSurvivesParserPanic(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	s := &logSource{name: "/var/log/mail.log", now: func() time.Time { return now }, log: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 3 {
		func() {
			defer s.survive(s.now())
			panic("slice bounds out of range")
		}()
	}
	if s.crashed.Load() != 3 || s.others.Load() != 3 {
		t.Errorf("crashed %d, others %d; want 3 and 3", s.crashed.Load(), s.others.Load())
	}
	if n := strings.Count(buf.String(), "parser failed"); n != 1 {
		t.Errorf("%d log lines in the same minute, want 1:\n%s", n, buf.String())
	}
	now = now.Add(time.Minute)
	func() {
		defer s.survive(s.now())
		panic("again")
	}()
	if n := strings.Count(buf.String(), "parser failed"); n != 2 {
		t.Errorf("%d log lines a minute later, want 2", n)
	}
	// The line handlers defer it: a panic below them (here in the
	// report) costs the line, and the next line is handled.
	s.programs = []string{"dovecot"}
	reports := 0
	s.report = func(*policy.Attempt, bool, time.Time) {
		reports++
		if reports == 1 {
			panic("report failed")
		}
	}
	login := []byte("Dec  5 12:00:00 mx dovecot: imap-login: Login: user=<alice@example.org>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=1, TLS, session=<a>")
	s.line(login)
	s.line(login)
	if s.crashed.Load() != 5 || reports != 2 {
		t.Errorf("crashed %d, reports %d; want 5 and 2", s.crashed.Load(), reports)
	}
}

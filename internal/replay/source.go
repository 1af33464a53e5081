package replay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"mailgate/internal/maillog"
	"mailgate/internal/rules"
)

// readBuf is the line reader's buffer: longer than any line either format
// accepts, so a line that does not fit is too long.
const readBuf = 64 << 10

// lineReader reads lines of at most readBuf bytes.
type lineReader struct {
	br   *bufio.Reader
	line int64 // the number of the last line read
	eof  bool
}

// next returns the next line without its end, or long=true for a line
// that did not fit (skipped up to its end), or ok=false at the end.
func (l *lineReader) next() (line []byte, long, ok bool, err error) {
	if l.eof {
		return nil, false, false, nil
	}
	b, err := l.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		l.line++
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = l.br.ReadSlice('\n')
		}
		if err == io.EOF {
			l.eof = true
		} else if err != nil {
			return nil, false, false, err
		}
		return nil, true, true, nil
	case err == io.EOF:
		l.eof = true
		if len(b) == 0 {
			return nil, false, false, nil
		}
	case err != nil:
		return nil, false, false, err
	}
	l.line++
	return bytes.TrimRight(b, "\r\n"), false, true, nil
}

// EventsReader reads an events file: one JSON object per line (see
// ParseEvent), in time order. Blank lines and lines starting with '#'
// are skipped.
type EventsReader struct {
	name string
	lr   lineReader
	last time.Time
}

// NewEventsReader reads events from r; name is used in errors.
func NewEventsReader(r io.Reader, name string) *EventsReader {
	return &EventsReader{name: name, lr: lineReader{br: bufio.NewReaderSize(r, readBuf)}}
}

// Lines returns how many lines were read.
func (e *EventsReader) Lines() int64 { return e.lr.line }

// Next reads the next event. An error names the file and the line.
func (e *EventsReader) Next(ev *Event) (bool, error) {
	for {
		line, long, ok, err := e.lr.next()
		if err != nil {
			return false, fmt.Errorf("%s: %w", e.name, err)
		}
		if !ok {
			return false, nil
		}
		if long {
			return false, fmt.Errorf("%s:%d: longer than %d bytes", e.name, e.lr.line, MaxLineLen)
		}
		t := bytes.TrimSpace(line)
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		if err := ParseEvent(line, ev); err != nil {
			return false, fmt.Errorf("%s:%d: %w", e.name, e.lr.line, err)
		}
		if ev.Time.Before(e.last) {
			return false, fmt.Errorf("%s:%d: time %s is before the previous event's %s: an events file must be in time order",
				e.name, e.lr.line, ev.Time.Format(time.RFC3339Nano), e.last.Format(time.RFC3339Nano))
		}
		e.last = ev.Time
		return true, nil
	}
}

// LogReader reads a mail log (see package maillog for the formats): the
// lines that are login outcomes become events; the others are skipped.
type LogReader struct {
	name    string
	lr      lineReader
	ref     time.Time
	journal bool
	progs   []string // nil: every program
	last    time.Time
	matched int64
	untimed int64
	ev      maillog.Event
}

// NewLogReader reads log lines from r. ref supplies what an RFC 3164
// time lacks (the year, the zone): the time the log was last written
// (its file's modification time) is right for a log of the last year.
// journal reads `journalctl -o json` output instead of text lines.
func NewLogReader(r io.Reader, name string, ref time.Time, journal bool) *LogReader {
	return &LogReader{name: name, lr: lineReader{br: bufio.NewReaderSize(r, readBuf)}, ref: ref, journal: journal}
}

// Programs limits the events to those of the named programs
// (maillog.Event.Program); nil or empty: every program.
func (l *LogReader) Programs(p []string) { l.progs = p }

// Lines returns how many lines were read; Matched how many were login
// outcomes; Untimed how many of those were skipped for having no time
// and no timed line before them.
func (l *LogReader) Lines() int64   { return l.lr.line }
func (l *LogReader) Matched() int64 { return l.matched }
func (l *LogReader) Untimed() int64 { return l.untimed }

// Next reads up to the next login outcome. A line without a time takes
// the time of the line before it.
func (l *LogReader) Next(ev *Event) (bool, error) {
	for {
		line, long, ok, err := l.lr.next()
		if err != nil {
			return false, fmt.Errorf("%s: %w", l.name, err)
		}
		if !ok {
			return false, nil
		}
		if long {
			continue // longer than any log writer writes: not a login outcome
		}
		m := &l.ev
		if l.journal {
			_, ok = maillog.ParseJournal(line, m)
		} else {
			ok = maillog.ParseLine(line, l.ref, m)
		}
		if !ok || len(l.progs) > 0 && !slices.Contains(l.progs, l.ev.Program) {
			continue
		}
		l.matched++
		t := m.Time
		if t.IsZero() {
			if l.last.IsZero() {
				l.untimed++
				continue
			}
			t = l.last
		}
		l.last = t
		svc := m.Service
		if svc == rules.AllServices {
			svc = rules.OtherService
		}
		*ev = Event{Time: t, Door: m.Program, Service: svc, Login: m.Login, Client: m.Client, Count: 1}
		if m.Success {
			ev.Result = Success
		} else {
			ev.Result = Failure
			ev.Count = min(max(m.Attempts, 1), maillog.MaxAttempts)
		}
		return true, nil
	}
}

// Merge yields the events of several sources in time order (each source
// in order itself); of events at the same time, the earlier source's
// first.
func Merge(srcs ...Source) Source {
	if len(srcs) == 1 {
		return srcs[0]
	}
	return &merge{srcs: srcs, heads: make([]Event, len(srcs)), have: make([]bool, len(srcs)), done: make([]bool, len(srcs))}
}

type merge struct {
	srcs  []Source
	heads []Event
	have  []bool
	done  []bool
}

func (m *merge) Next(ev *Event) (bool, error) {
	best := -1
	for i, s := range m.srcs {
		if !m.have[i] && !m.done[i] {
			ok, err := s.Next(&m.heads[i])
			if err != nil {
				return false, err
			}
			m.have[i], m.done[i] = ok, !ok
		}
		if m.have[i] && (best < 0 || m.heads[i].Time.Before(m.heads[best].Time)) {
			best = i
		}
	}
	if best < 0 {
		return false, nil
	}
	*ev = m.heads[best]
	m.have[best] = false
	return true, nil
}

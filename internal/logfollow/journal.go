package logfollow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// JournalOptions configure a Journal.
type JournalOptions struct {
	// Command is journalctl's path (default "journalctl"); a test points
	// it at a script that plays recorded `journalctl -o json` output.
	Command string
	// Units and Identifiers select the entries: _SYSTEMD_UNIT=unit or
	// SYSLOG_IDENTIFIER=identifier, any of them. Both empty: every entry.
	Units       []string
	Identifiers []string
	// PositionFile is the cursor file ("" = none: every start begins at
	// the journal's end).
	PositionFile string
	MaxLine      int           // 0 = DefaultMaxLine
	SaveEvery    time.Duration // 0 = 5 s
	// MinBackoff and MaxBackoff bound the wait before journalctl is
	// started again after it ended (0 = 1 s and 1 min). The wait doubles
	// with every start that ran less than a minute.
	MinBackoff, MaxBackoff time.Duration
	// StopGrace is how long journalctl gets after SIGTERM before SIGKILL
	// (0 = 2 s).
	StopGrace time.Duration
}

// Journal follows the systemd journal through `journalctl -f -o json`,
// one subprocess at a time, started again with a backoff when it ends.
// Handle gets each output line and returns the entry's cursor ("" when
// the line has none), which is saved as the position.
type Journal struct {
	opt    JournalOptions
	handle func(line []byte) (cursor string)
	log    *slog.Logger
	now    func() time.Time

	cursor  string // only Run's goroutine touches it
	saved   string
	savedAt time.Time

	mu        sync.Mutex
	state     string
	pid       int
	lastErr   string
	lastLine  time.Time
	downSince time.Time

	lines, long, starts atomic.Uint64
}

// NewJournal returns a journal follower.
func NewJournal(opt JournalOptions, handle func(line []byte) string, log *slog.Logger) *Journal {
	if opt.Command == "" {
		opt.Command = "journalctl"
	}
	if opt.MaxLine <= 0 {
		opt.MaxLine = DefaultMaxLine
	}
	if opt.SaveEvery <= 0 {
		opt.SaveEvery = 5 * time.Second
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = time.Second
	}
	if opt.MaxBackoff <= 0 {
		opt.MaxBackoff = time.Minute
	}
	if opt.StopGrace <= 0 {
		opt.StopGrace = 2 * time.Second
	}
	return &Journal{opt: opt, handle: handle, log: log, now: time.Now, state: "starting"}
}

// Args returns journalctl's arguments for a start after cursor ("" =
// from now on).
func (j *Journal) Args(cursor string) []string {
	args := []string{"--follow", "--output=json", "--all", "--no-pager", "--lines=all"}
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	} else {
		args = append(args, "--since=now")
	}
	// Matches of one field are ORed; "+" ORs the two groups.
	for _, u := range j.opt.Units {
		args = append(args, "_SYSTEMD_UNIT="+u)
	}
	if len(j.opt.Units) > 0 && len(j.opt.Identifiers) > 0 {
		args = append(args, "+")
	}
	for _, id := range j.opt.Identifiers {
		args = append(args, "SYSLOG_IDENTIFIER="+id)
	}
	return args
}

// Run runs journalctl until ctx is done, then stops it by its PID and
// saves the cursor.
func (j *Journal) Run(ctx context.Context) {
	if j.opt.PositionFile != "" {
		p, ok, err := LoadPosition(j.opt.PositionFile)
		switch {
		case err != nil:
			j.log.Warn("journal cursor file unreadable; reading from now on", "file", j.opt.PositionFile, "err", err)
		case ok && p.Source == "journald":
			j.cursor, j.saved = p.Cursor, p.Cursor
		}
	}
	defer j.save()
	backoff := j.opt.MinBackoff
	for {
		t0 := j.now()
		lines := j.lines.Load()
		cursor := j.cursor
		err := j.runOnce(ctx)
		if ctx.Err() != nil {
			j.setState("stopped", "")
			return
		}
		msg := "journalctl ended"
		if err != nil {
			msg = err.Error()
		}
		if cursor != "" && j.cursor == cursor && j.lines.Load() == lines && strings.Contains(msg, "cursor") {
			// journalctl refuses the saved cursor (another machine's
			// journal, a cursor file edited by hand): starting again
			// with it would fail forever.
			j.log.Warn("journalctl refuses the saved cursor; reading from now on", "cursor", cursor, "err", msg)
			j.cursor = ""
		}
		if j.now().Sub(t0) >= time.Minute {
			backoff = j.opt.MinBackoff
		}
		j.setState("restarting", msg)
		j.log.Warn("journalctl ended; starting it again", "err", msg, "in", backoff)
		select {
		case <-ctx.Done():
			j.setState("stopped", "")
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, j.opt.MaxBackoff)
	}
}

func (j *Journal) setState(state, errMsg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.state = state
	if errMsg != "" {
		j.lastErr = errMsg
	}
	switch {
	case state == "ok":
		j.downSince = time.Time{}
	case j.downSince.IsZero():
		j.downSince = j.now()
	}
}

// runOnce runs one journalctl until it ends or ctx is done.
func (j *Journal) runOnce(ctx context.Context) error {
	cmd := exec.Command(j.opt.Command, j.Args(j.cursor)...)
	// journalctl dies with mailgate, even when mailgate is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stderr := &tailBuffer{max: 2 << 10}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", j.opt.Command, err)
	}
	j.starts.Add(1)
	pid := cmd.Process.Pid
	j.mu.Lock()
	j.pid = pid
	j.mu.Unlock()
	j.setState("ok", "")
	j.log.Info("journalctl started", "pid", pid, "args", strings.Join(cmd.Args[1:], " "))

	// Stop it by its PID when ctx ends: SIGTERM, then SIGKILL after
	// StopGrace.
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have ended
		select {
		case <-done:
		case <-time.After(j.opt.StopGrace):
			cmd.Process.Kill() //nolint:errcheck // it may have ended
		}
	}()

	split := splitter{max: j.opt.MaxLine}
	buf := make([]byte, 64<<10)
	emit := func(line []byte) {
		j.lines.Add(1)
		if c := j.handle(line); c != "" {
			j.cursor = c
		}
	}
	for {
		n, rerr := out.Read(buf)
		if n > 0 {
			_, long := split.feed(buf[:n], emit)
			j.long.Add(uint64(long))
			j.mu.Lock()
			j.lastLine = j.now()
			j.mu.Unlock()
			if now := j.now(); now.Sub(j.savedAt) >= j.opt.SaveEvery {
				j.savedAt = now
				j.save()
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && ctx.Err() == nil {
				j.log.Warn("reading journalctl's output", "err", rerr)
			}
			break
		}
	}
	werr := cmd.Wait()
	close(done)
	<-stopped
	j.mu.Lock()
	j.pid = 0
	j.mu.Unlock()
	if ctx.Err() != nil {
		return nil
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		return fmt.Errorf("%s: %v: %s", j.opt.Command, werr, s)
	}
	if werr != nil {
		return fmt.Errorf("%s: %w", j.opt.Command, werr)
	}
	return nil
}

func (j *Journal) save() {
	if j.opt.PositionFile == "" || j.cursor == "" || j.cursor == j.saved {
		return
	}
	if err := SavePosition(j.opt.PositionFile, Position{Source: "journald", Cursor: j.cursor}); err != nil {
		j.log.Error("saving the journal cursor", "file", j.opt.PositionFile, "err", err)
		return
	}
	j.saved = j.cursor
}

// JournalStatus is what Status tells about a journal follower.
type JournalStatus struct {
	State     string // ok, restarting, starting, stopped
	PID       int
	Starts    uint64 // journalctl processes started
	LastError string
	DownSince time.Time
	LastLine  time.Time
	Lines     uint64
	LongLines uint64
}

// Status returns the follower's state; safe from any goroutine.
func (j *Journal) Status() JournalStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return JournalStatus{State: j.state, PID: j.pid, Starts: j.starts.Load(), LastError: j.lastErr,
		DownSince: j.downSince, LastLine: j.lastLine, Lines: j.lines.Load(), LongLines: j.long.Load()}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = bytes.Clone(t.b[len(t.b)-t.max:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

package logfollow

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// replayer writes a script that runs testdata/journalctl-replay on rec.
func replayer(t *testing.T, rec string) string {
	t.Helper()
	abs, err := filepath.Abs("testdata/journalctl-replay")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "journalctl")
	script := fmt.Sprintf("#!/bin/sh\nJOURNAL_REPLAY_FILE=%s exec %s \"$@\"\n", rec, abs)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func entry(i int) string {
	return fmt.Sprintf(`{"__CURSOR":"s=abc;i=%x","MESSAGE":"line %d","SYSLOG_IDENTIFIER":"dovecot"}`+"\n", i, i)
}

// journalLines collects the MESSAGEs a Journal hands on.
type journalLines struct {
	mu  sync.Mutex
	got []string
}

func (j *journalLines) handle(line []byte) string {
	var e struct {
		Cursor  string `json:"__CURSOR"`
		Message string `json:"MESSAGE"`
	}
	if json.Unmarshal(line, &e) != nil {
		return ""
	}
	j.mu.Lock()
	j.got = append(j.got, e.Message)
	j.mu.Unlock()
	return e.Cursor
}

func (j *journalLines) wait(t *testing.T, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j.mu.Lock()
		got := slices.Clone(j.got)
		j.mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) || len(got) > len(want) {
			t.Fatalf("journal lines:\n got %q\nwant %q", got, want)
		}
		time.Sleep(10 * time.Millisecond) // a subprocess: nothing to inject
	}
}

func TestJournalArgs(t *testing.T) {
	j := NewJournal(JournalOptions{Units: []string{"dovecot.service", "postfix@-.service"}, Identifiers: []string{"postfix/smtpd"}}, nil, discard())
	got := strings.Join(j.Args("s=1;i=2"), " ")
	want := "--follow --output=json --all --no-pager --lines=all --after-cursor=s=1;i=2 _SYSTEMD_UNIT=dovecot.service _SYSTEMD_UNIT=postfix@-.service + SYSLOG_IDENTIFIER=postfix/smtpd"
	if got != want {
		t.Errorf("args\n got %s\nwant %s", got, want)
	}
	if got := strings.Join(NewJournal(JournalOptions{}, nil, discard()).Args(""), " "); !strings.HasSuffix(got, "--since=now") {
		t.Errorf("args without a cursor: %s", got)
	}
}

// TestJournalFollowRestartResume: entries written after the start are
// handed on; a journalctl that dies is started again after the last
// cursor (nothing missed, nothing twice); a restart of the follower goes
// on from the cursor file; at the end journalctl is stopped by its PID.
func TestJournalFollowRestartResume(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "journal.json")
	os.WriteFile(rec, []byte(entry(1)+entry(2)), 0o644)
	cmd := replayer(t, rec)
	pos := filepath.Join(dir, "journal.cursor")
	opt := JournalOptions{Command: cmd, PositionFile: pos, MinBackoff: 10 * time.Millisecond, StopGrace: time.Second}
	jl := &journalLines{}
	j := NewJournal(opt, jl.handle, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()

	// waitPID waits for the n-th start of the replayer, past the point
	// where it knows where to start.
	waitPID := func(not, n int) int {
		t.Helper()
		for range 1000 {
			args, _ := os.ReadFile(rec + ".args")
			if s := j.Status(); s.PID != 0 && s.PID != not && s.State == "ok" && strings.Count(string(args), "\n") >= n {
				return s.PID
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("journalctl not running: %+v", j.Status())
		return 0
	}
	pid := waitPID(0, 1)
	// --since=now: entries 1 and 2 are old.
	appendTo(t, rec, entry(3)+entry(4))
	jl.wait(t, []string{"line 3", "line 4"})

	// journalctl dies: started again after line 4's cursor.
	syscall.Kill(pid, syscall.SIGKILL)
	pid2 := waitPID(pid, 2)
	appendTo(t, rec, entry(5))
	jl.wait(t, []string{"line 3", "line 4", "line 5"})
	if s := j.Status(); s.Starts != 2 || s.LastError == "" {
		t.Errorf("status %+v, want 2 starts and the last error", s)
	}
	cancel()
	<-done
	if syscall.Kill(pid2, 0) == nil {
		t.Errorf("journalctl pid %d still runs after the follower ended", pid2)
	}
	args, _ := os.ReadFile(rec + ".args")
	if !strings.Contains(string(args), "--after-cursor=s=abc;i=4") {
		t.Errorf("second start not after line 4's cursor: %s", args)
	}

	// Down: entries 6 and 7. The next start goes on from the cursor file.
	appendTo(t, rec, entry(6)+entry(7))
	j = NewJournal(opt, jl.handle, discard())
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	jl.wait(t, []string{"line 3", "line 4", "line 5", "line 6", "line 7"})
	cancel()
	<-done
	p, _, _ := LoadPosition(pos)
	if p.Cursor != "s=abc;i=7" {
		t.Errorf("saved cursor %q", p.Cursor)
	}
}

func TestJournalCommandMissing(t *testing.T) {
	j := NewJournal(JournalOptions{Command: filepath.Join(t.TempDir(), "none"), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, func([]byte) string { return "" }, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	for range 1000 {
		if s := j.Status(); s.State == "restarting" && strings.Contains(s.LastError, "none") && !s.DownSince.IsZero() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if s := j.Status(); !strings.Contains(s.LastError, "none") {
		t.Fatalf("status %+v, want the start error", s)
	}
}

// TestJournalBadCursor: a saved cursor journalctl refuses is dropped
// after one failed start, instead of failing forever.
func TestJournalBadCursor(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "journal.json")
	os.WriteFile(rec, []byte(entry(1)), 0o644)
	pos := filepath.Join(dir, "journal.cursor")
	if err := SavePosition(pos, Position{Source: "journald", Cursor: "s=gone;i=1"}); err != nil {
		t.Fatal(err)
	}
	jl := &journalLines{}
	j := NewJournal(JournalOptions{Command: replayer(t, rec), PositionFile: pos, MinBackoff: time.Millisecond}, jl.handle, discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { j.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for range 1000 {
		if args, _ := os.ReadFile(rec + ".args"); strings.Contains(string(args), "--since=now") {
			appendTo(t, rec, entry(2))
			jl.wait(t, []string{"line 2"})
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("never started without the refused cursor: %+v", j.Status())
}

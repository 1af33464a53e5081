package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"mailgate/internal/console"
	"mailgate/test/harness"
)

// TestConsoleJournal: the console reads decision lines from the journal
// (log.decisions on stdout or stderr under systemd) through the real
// journalctl, newest first, page by page with journal cursors, skipping
// other units' entries and mailgate's own diagnostics. The test machine
// has no journald: the entries go into a real journal file with
// systemd-journal-remote, and journalctl reads it with --file.
func TestConsoleJournal(t *testing.T) {
	remote := "/lib/systemd/systemd-journal-remote"
	harness.Require(t, map[string]string{remote: "systemd-journal-remote", "/usr/bin/journalctl": "systemd"})
	dir := t.TempDir()
	base := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	const n = 450
	var exp bytes.Buffer
	entry := func(i int, unit, msg string) {
		ts := base.Add(time.Duration(i) * time.Second)
		fmt.Fprintf(&exp, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_SYSTEMD_UNIT=%s\nMESSAGE=%s\n\n",
			ts.UnixMicro(), 1000+i, unit, msg)
	}
	for i := range n {
		ts := base.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05.000Z")
		login := "alice@example.test"
		if i%3 == 0 {
			login = "bob@example.test"
		}
		entry(i, "mailgate.service", fmt.Sprintf("time=%s decision=deny reason=banned_address rule=- door=dovecot service=imap login=%s ip=192.0.2.%d", ts, login, i%200))
		if i%50 == 0 {
			entry(i, "mailgate.service", "time="+ts+` level=INFO msg="decision log reopened"`)
			entry(i, "other.service", "time="+ts+" decision=allow reason=default login=bob@example.test ip=192.0.2.1")
		}
	}
	expPath, journal := filepath.Join(dir, "export"), filepath.Join(dir, "mailgate.journal")
	if err := os.WriteFile(expPath, exp.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(remote, "--output="+journal, expPath).CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
	}
	src := console.Source{Journal: []string{"journalctl", "--file=" + journal, "_SYSTEMD_UNIT=mailgate.service"}}
	ctx := context.Background()

	// bob's lines, 150 of them, in two pages of 100 and 50, newest first.
	var got []console.Entry
	before, pages := "", 0
	for {
		p, err := console.Search(ctx, src, console.Query{Login: "bob@example.test", Limit: 100, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		got = append(got, p.Entries...)
		if p.Next == "" || pages > 5 {
			break
		}
		before = p.Next
	}
	if len(got) != 150 || pages != 2 {
		t.Fatalf("bob: %d lines in %d pages, want 150 in 2 (the other unit's line is not his)", len(got), pages)
	}
	for k, e := range got {
		if want := base.Add(time.Duration(n-3-3*k) * time.Second); !e.Time.Equal(want) || e.Login != "bob@example.test" || e.Pos == "" {
			t.Fatalf("line %d: %+v, want bob at %v with a cursor", k, e, want)
		}
	}
	// From and an address: the search stops at from.
	from := base.Add(400 * time.Second)
	p, err := console.Search(ctx, src, console.Query{Reason: "refused", From: from, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != n-400 || p.Next != "" {
		t.Errorf("from %v: %d lines (next %q), want %d", from, len(p.Entries), p.Next, n-400)
	}
	// A cursor that is not one is refused before journalctl runs.
	if _, err := console.Search(ctx, src, console.Query{Before: "--since=yesterday"}); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

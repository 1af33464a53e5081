package test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/maillog"
	"mailgate/test/harness"
)

// TestMaillogJournal: the test machine has no journald, so the lines
// TestMaillogCapture captured from the real Dovecot, Postfix and nginx go
// into a real journal file (systemd-journal-remote, from journald's export
// format, with the SYSLOG_IDENTIFIER and MESSAGE journald would give them)
// and come out of the real `journalctl -o json --all`; ParseJournal must
// find in that output the events ParseLine finds in the lines, and a
// cursor on every entry. A message that is not UTF-8 (journalctl writes it
// as an array of bytes), one with quotes, a backslash and a tab, and other
// programs' entries are added. With -update-maillog the output is saved
// as internal/maillog/testdata/capture/journal.json (TestCapturedGolden).
func TestMaillogJournal(t *testing.T) {
	remote := "/lib/systemd/systemd-journal-remote"
	harness.Require(t, map[string]string{remote: "systemd-journal-remote", "/usr/bin/journalctl": "systemd"})
	capture := filepath.Join("..", "internal", "maillog", "testdata", "capture")
	type entry struct{ ident, msg string }
	var entries []entry
	var want []maillog.Event
	ref := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"dovecot.log", "maillog", "nginx-error.log"} {
		data, err := os.ReadFile(filepath.Join(capture, name))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			line := sc.Text()
			var e entry
			switch name {
			case "dovecot.log": // "Dec 05 19:09:20 imap-login: Info: msg": syslog drops the level
				rest := line[len("Dec 05 19:09:20 "):]
				proc, msg, _ := strings.Cut(rest, ": ")
				_, after, found := strings.Cut(msg, ": ")
				if found && strings.HasPrefix(msg, "Info: ") {
					msg = after
				}
				e = entry{"dovecot", proc + ": " + msg}
			case "maillog": // "Dec 05 19:09:20 mx postfix/smtpd[20344]: msg"
				rest := line[len("Dec 05 19:09:20 mx "):]
				tag, msg, _ := strings.Cut(rest, ": ")
				tag, _, _ = strings.Cut(tag, "[")
				e = entry{tag, msg}
			default: // nginx on stderr: the error.log line is the message
				e = entry{"nginx", line}
			}
			entries = append(entries, e)
			var ev maillog.Event
			if maillog.ParseLine([]byte(line), ref, &ev) {
				want = append(want, ev)
			}
		}
	}
	entries = append(entries,
		entry{"postfix/submission/smtpd", "warning: unknown[192.0.2.9]: SASL PLAIN authentication failed: (reason unavailable), sasl_username=caf\xe9\"q\\\t"},
		entry{"dovecot", `imap-login: Login: user=<"quoted\" \\ back>, method=PLAIN, rip=2001:db8::9, lip=::1, mpid=7, TLS, session=<j0urnal>`},
		entry{"sshd", "imap-login: Login: user=<x>, method=PLAIN, rip=192.0.2.66, lip=::1, session=<x>"},
	)
	want = append(want,
		maillog.Event{Program: maillog.Postfix, Login: "caf\xe9\"q\\", Client: netip.MustParseAddr("192.0.2.9"), Attempts: 1},
		maillog.Event{Program: maillog.Dovecot, Login: `"quoted\" \\ back`, Client: netip.MustParseAddr("2001:db8::9"), Success: true, Session: "j0urnal"},
	)

	dir := t.TempDir()
	var exp bytes.Buffer
	for i, e := range entries {
		field := func(k, v string) {
			if strings.ContainsAny(v, "\n") || !isPrintableASCII(v) {
				exp.WriteString(k + "\n")
				binary.Write(&exp, binary.LittleEndian, uint64(len(v)))
				exp.WriteString(v + "\n")
				return
			}
			exp.WriteString(k + "=" + v + "\n")
		}
		field("__REALTIME_TIMESTAMP", fmt.Sprint(1764961391000000+int64(i)*1000))
		field("__MONOTONIC_TIMESTAMP", fmt.Sprint(1000+i))
		field("_BOOT_ID", "0123456789abcdef0123456789abcdef")
		field("PRIORITY", "6")
		field("SYSLOG_IDENTIFIER", e.ident)
		field("_PID", fmt.Sprint(100+i))
		field("MESSAGE", e.msg)
		exp.WriteString("\n")
	}
	expPath, journal := filepath.Join(dir, "export"), filepath.Join(dir, "mail.journal")
	if err := os.WriteFile(expPath, exp.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(remote, "--output="+journal, expPath).CombinedOutput(); err != nil {
		t.Fatalf("systemd-journal-remote: %v\n%s", err, out)
	}
	out, err := exec.Command("journalctl", "--file="+journal, "-o", "json", "--all", "--no-pager").Output()
	if err != nil {
		t.Fatalf("journalctl: %v", err)
	}

	var got []maillog.Event
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, maillog.MaxJournalLineLen)
	n := 0
	for sc.Scan() {
		n++
		var ev maillog.Event
		cur, ok := maillog.ParseJournal(sc.Bytes(), &ev)
		if !strings.HasPrefix(cur, "s=") {
			t.Errorf("entry %d: cursor %q", n, cur)
		}
		if ok {
			got = append(got, ev)
		}
	}
	if n != len(entries) {
		t.Fatalf("journalctl wrote %d entries, want %d:\n%s", n, len(entries), out)
	}
	if len(got) != len(want) {
		t.Fatalf("ParseJournal found %d events, ParseLine %d (+2 added):\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Program != w.Program || g.Login != w.Login || g.Client != w.Client || g.Success != w.Success ||
			g.Attempts != w.Attempts || g.Session != w.Session || g.Time.IsZero() {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	t.Logf("%d journal entries, %d events", n, len(got))
	if *updateMaillog && !t.Failed() {
		if err := os.WriteFile(filepath.Join(capture, "journal.json"), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

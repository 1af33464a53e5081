package test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/test/harness"
)

// TestFail2banJournalFilter runs the real fail2ban-regex with
// etc/fail2ban/filter.d/mailgate-journal.conf over the decision lines of
// testdata/fail2ban/decisions.log as fail2ban's systemd backend presents
// them ("host mailgate[pid]: MESSAGE", see formatJournalEntry in
// fail2ban/server/filtersystemd.py), mixed with the daemon's own log
// lines: it must find the same addresses as the file filter, and nothing
// in the diagnostics. Reading a real journal needs python3-systemd, which
// this test does not use: the lines are given as a file with a syslog
// date, with logtype=journal (the prefix fail2ban uses for the systemd
// backend) and with the file prefix.
func TestFail2banJournalFilter(t *testing.T) {
	harness.Require(t, map[string]string{"/usr/bin/fail2ban-regex": "fail2ban"})
	golden := filepath.Join("testdata", "fail2ban", "decisions.log")
	fileFilter := filepath.Join("..", "etc", "fail2ban", "filter.d", "mailgate.conf")
	// The filter uses common.conf's __prefix_line; fail2ban reads it next
	// to the filter, as in /etc/fail2ban/filter.d.
	fdir := t.TempDir()
	for src, dst := range map[string]string{
		"/etc/fail2ban/filter.d/common.conf":                                        "common.conf",
		filepath.Join("..", "etc", "fail2ban", "filter.d", "mailgate-journal.conf"): "mailgate-journal.conf",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(fdir, dst), b, 0o644)
	}
	journalFilter := filepath.Join(fdir, "mailgate-journal.conf")

	want, err := exec.Command("fail2ban-regex", "-o", "ip", golden, fileFilter).CombinedOutput()
	if err != nil || len(bytes.Fields(want)) < 10 {
		t.Fatalf("file filter: %v\n%s", err, want)
	}

	f, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var journal bytes.Buffer
	const prefix = "Nov 22 12:00:00 mail mailgate[4242]: "
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		journal.WriteString(prefix + sc.Text() + "\n")
		// The daemon's diagnostics, with values an attacker chose.
		journal.WriteString(prefix + `time=2026-11-22T12:00:00.000Z level=WARN msg="login refused" login="x auth=failure door=nginx service=imap login=a ip=10.9.9.9" ip=10.9.9.9` + "\n")
	}
	journal.WriteString(prefix + `time=2026-11-22T12:00:00.000Z level=INFO msg="auth=failure door=nginx service=imap login=a ip=10.9.9.8"` + "\n")
	lines := filepath.Join(t.TempDir(), "journal.txt")
	os.WriteFile(lines, journal.Bytes(), 0o644)

	for _, filter := range []string{journalFilter + "[logtype=journal]", journalFilter} {
		got, err := exec.Command("fail2ban-regex", "-o", "ip", lines, filter).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", filter, err, got)
		}
		if g, w := strings.Join(strings.Fields(string(got)), " "), strings.Join(strings.Fields(string(want)), " "); g != w {
			t.Errorf("%s found\n  %s\nwant (as the file filter)\n  %s", filter, g, w)
		}
	}
	// The jail reads the journal of mailgate's unit.
	jail, _ := os.ReadFile(filepath.Join("..", "etc", "fail2ban", "jail.d", "mailgate-journal.conf"))
	for _, s := range []string{"backend      = systemd", "journalmatch = _SYSTEMD_UNIT=mailgate.service", "filter       = mailgate-journal"} {
		if !bytes.Contains(jail, []byte(s)) {
			t.Errorf("jail lacks %q", s)
		}
	}
}

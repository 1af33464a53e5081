package maillog

import (
	"bufio"
	"bytes"
	"fmt"
	"testing"
	"time"

	"mailgate/internal/maillog/loggen"
)

// genLines returns n lines of loggen's mixed mail log (seed 1).
func genLines(tb testing.TB, n int) [][]byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := loggen.Generate(&buf, n, 1); err != nil {
		tb.Fatal(err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	return lines
}

// TestNoAllocationsForOtherLines: a line that is not a login outcome costs
// no allocation, whatever program wrote it.
func TestNoAllocationsForOtherLines(t *testing.T) {
	ref := loggen.Start.Add(24 * time.Hour)
	var noise [][]byte
	for _, l := range genLines(t, 20000) {
		var e Event
		if !ParseLine(l, ref, &e) {
			noise = append(noise, l)
		}
	}
	if len(noise) < 10000 {
		t.Fatalf("only %d noise lines", len(noise))
	}
	// Auth-process lines, no-auth disconnects, Postfix's other lines and
	// other programs are all among them.
	var e Event
	allocs := testing.AllocsPerRun(5, func() {
		for _, l := range noise {
			ParseLine(l, ref, &e)
		}
	})
	if allocs != 0 {
		for _, l := range noise {
			if a := testing.AllocsPerRun(1, func() { ParseLine(l, ref, &e) }); a != 0 {
				t.Fatalf("%q: %v allocations", l, a)
			}
		}
	}
	journal := []byte(`{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764960953123456","SYSLOG_IDENTIFIER":"postfix/qmgr","MESSAGE":"1A2B: removed"}`)
	if a := testing.AllocsPerRun(100, func() { ParseJournalBytes(journal, &e) }); a != 0 {
		t.Errorf("ParseJournalBytes of a non-login entry: %v allocations", a)
	}
}

// BenchmarkParseLine parses loggen's mixed log (about one line in four is
// a login outcome); lines/s is reported.
func BenchmarkParseLine(b *testing.B) {
	lines := genLines(b, 100000)
	ref := loggen.Start.Add(24 * time.Hour)
	var size int
	for _, l := range lines {
		size += len(l) + 1
	}
	b.SetBytes(int64(size / len(lines)))
	b.ReportAllocs()
	b.ResetTimer()
	var e Event
	n := 0
	for b.Loop() {
		ParseLine(lines[n%len(lines)], ref, &e)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkParseLineByKind parses one kind of line at a time.
func BenchmarkParseLineByKind(b *testing.B) {
	ref := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct{ name, line string }{
		{"dovecot-login", "Dec  5 18:55:53 mx dovecot: imap-login: Login: user=<alice@example.test>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=23639, TLS, session=<zHU7R9RgWLZ/AAAB>"},
		{"dovecot-failure", "Dec  5 18:55:53 mx dovecot: imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<alice@example.test>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, TLS, session=<mf09R9RgaLZ/AAAB>"},
		{"dovecot-auth-noise", "Dec  5 18:55:53 mx dovecot: auth: passwd-file(alice@example.test,192.0.2.1,<mf09R9RgaLZ/AAAB>): Password mismatch"},
		{"postfix-failure", "Dec  5 18:55:53 mx postfix/smtpd[6031]: warning: unknown[192.0.2.93]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=alice@example.test"},
		{"postfix-noise", "Dec  5 18:55:53 mx postfix/qmgr[6031]: F387A98815E: from=<alice@example.test>, size=300, nrcpt=1 (queue active)"},
		{"journal-noise", `{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764960953123456","SYSLOG_IDENTIFIER":"postfix/qmgr","MESSAGE":"F387A98815E: removed"}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			line := []byte(c.line)
			b.ReportAllocs()
			var e Event
			for b.Loop() {
				if line[0] == '{' {
					ParseJournalBytes(line, &e)
				} else {
					ParseLine(line, ref, &e)
				}
			}
		})
	}
}

func ExampleParseLine() {
	var ev Event
	line := []byte("Dec  5 18:55:53 mx dovecot: imap-login: Disconnected: Connection closed (auth failed, 2 attempts in 4 secs): user=<Alice@Example.test>, method=PLAIN, rip=::ffff:192.0.2.7, lip=192.0.2.1, session=<mf09R9RgaLZ/AAAB>")
	if ParseLine(line, time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC), &ev) {
		fmt.Println(ev.Program, ev.Service, ev.Login, ev.Client, ev.Success, ev.Attempts, ev.Session)
	}
	// Output: dovecot imap alice@example.test 192.0.2.7 false 2 mf09R9RgaLZ/AAAB
}

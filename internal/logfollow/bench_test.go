package logfollow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkFileFollow: one Step over a file of 100k mail-log-sized lines
// (what the follower costs on its own, without parsing).
func BenchmarkFileFollow(b *testing.B) {
	path := filepath.Join(b.TempDir(), "mail.log")
	line := "Dec 05 19:07:38 imap-login: Info: Disconnected: Connection closed (auth failed, 1 attempts in 6 secs): user=<alice@example.test>, method=PLAIN, rip=127.0.34.1, lip=127.0.0.1, session=<iIdntOdhHdt/ACIB>\n"
	const n = 100_000
	if err := os.WriteFile(path, []byte(strings.Repeat(line, n)), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line) * n))
	b.ResetTimer()
	for range b.N {
		lines := 0
		f := NewFile(path, FileOptions{FromStart: true}, func([]byte) { lines++ }, discard())
		f.Step(time.Now())
		f.Close()
		if lines != n {
			b.Fatalf("%d lines", lines)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "lines/s")
}

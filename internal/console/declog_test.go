package console

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	var e Entry
	line := `time=2026-11-22T10:15:02.114Z decision=deny reason=service_closed rule=2 door=dovecot service=pop3 login="x y\"z" ip=203.0.113.9 country=DE session=zHU7R9RgWLZ/AAAB`
	if err := ParseLine([]byte(line), &e); err != nil {
		t.Fatal(err)
	}
	want := Entry{Time: time.Date(2026, 11, 22, 10, 15, 2, 114e6, time.UTC), Decision: "deny", Reason: "service_closed", Rule: "2",
		Door: "dovecot", Service: "pop3", Login: `x y"z`, IP: "203.0.113.9", Country: "DE"}
	if e != want {
		t.Errorf("got  %+v\nwant %+v", e, want)
	}
	for _, bad := range []string{"", "decision=deny", "time=yesterday", `time=2026-11-22T10:15:02Z login="open`, "time=2026-11-22T10:15:02Z =x", "time=2026-11-22T10:15:02Z login=\"a\"b"} {
		if err := ParseLine([]byte(bad), &e); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`time=2026-11-22T10:15:02.114Z decision=deny reason=service_closed rule=2 door=dovecot service=pop3 login=shop@example.com ip=203.0.113.9`))
	f.Add([]byte(`time=2026-11-22T10:15:02.114Z auth=failure login="x ip=1.2.3.4\ndecision=allow" ip=203.0.113.9`))
	f.Add([]byte(`time=2026-11-22T10:15:02.114Z event=permit ip=2001:db8:1:2::/64 login=bob@example.com`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Entry
		if ParseLine(b, &e) == nil && e.Time.IsZero() {
			t.Fatal("parsed without a time")
		}
	})
}

// writeLog writes n decision lines, one a second from base, and returns
// the path.
func writeLog(t *testing.T, n int, extra func(i int) string) string {
	t.Helper()
	var b bytes.Buffer
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		fmt.Fprintf(&b, "time=%s decision=deny reason=banned_address rule=- door=dovecot service=imap login=u%d@example.com ip=192.0.2.%d\n",
			base.Add(time.Duration(i)*time.Second).Format("2006-01-02T15:04:05.000Z"), i, i%200)
		if extra != nil {
			b.WriteString(extra(i))
		}
	}
	p := filepath.Join(t.TempDir(), "d.log")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Paging backwards across many read chunks returns every line once, in
// order, and a line longer than the limit is skipped, not split.
func TestSearchPages(t *testing.T) {
	long := "time=2026-12-01T08:00:00.000Z login=" + strings.Repeat("a", maxLineLen) + "\n"
	const n = 5000
	p := writeLog(t, n, func(i int) string {
		if i%1000 == 500 {
			return long
		}
		return ""
	})
	var got []string
	before := ""
	pages := 0
	for {
		pg, err := Search(context.Background(), Source{File: p}, Query{Limit: 77, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range pg.Entries {
			got = append(got, e.Login)
		}
		if pg.Next == "" {
			break
		}
		before = pg.Next
	}
	if len(got) != n {
		t.Fatalf("%d lines over %d pages, want %d", len(got), pages, n)
	}
	for i, l := range got {
		if want := fmt.Sprintf("u%d@example.com", n-1-i); l != want {
			t.Fatalf("line %d: %s, want %s", i, l, want)
		}
	}
}

func TestSearchFilters(t *testing.T) {
	p := writeLog(t, 1000, nil)
	from := time.Date(2026, 12, 1, 8, 10, 0, 0, time.UTC)
	src := Source{File: p}
	pg, err := Search(context.Background(), src, Query{Prefix: netip.MustParsePrefix("192.0.2.0/30"), From: from, To: from.Add(time.Minute), Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	// Seconds 600..660 whose index mod 200 is 0..3: 600, 601, 602, 603.
	if len(pg.Entries) != 4 || pg.Entries[0].Login != "u603@example.com" || pg.Next != "" {
		t.Fatalf("got %d entries (%+v), next %q", len(pg.Entries), pg.Entries, pg.Next)
	}
	// The search stopped at from: it did not read the start of the file.
	var read, size int
	if _, err := fmt.Sscanf(pg.Read, "%d of %d bytes read", &read, &size); err != nil || read >= size {
		t.Errorf("%s: the search went past from (%v)", pg.Read, err)
	}
	pg, _ = Search(context.Background(), src, Query{Login: "u7@example.com", Reason: "refused"})
	if len(pg.Entries) != 1 {
		t.Errorf("login search: %d entries", len(pg.Entries))
	}
	pg, _ = Search(context.Background(), src, Query{Reason: "default"})
	if len(pg.Entries) != 0 {
		t.Errorf("reason search: %d entries", len(pg.Entries))
	}
}

// A search reads a bounded part of a large file and says where to go on.
func TestSearchBounded(t *testing.T) {
	p := writeLog(t, 2000, nil) // about 280 KB: several chunks
	f, _ := os.Open(p)
	defer f.Close()
	fi, _ := f.Stat()
	seen := 0
	next, err := scanBackward(f, fi.Size(), 1, func([]byte, int64) bool { seen++; return true })
	if err != nil || next <= 0 || seen == 0 || seen >= 2000 {
		t.Fatalf("budget 1 byte: next %d, %d lines, %v", next, seen, err)
	}
}

// BenchmarkSearch is a search that matches nothing through a 64 MiB
// decision log: the most one page reads.
func BenchmarkSearch(b *testing.B) {
	var buf bytes.Buffer
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for i := 0; buf.Len() < maxScanBytes; i++ {
		fmt.Fprintf(&buf, "time=%s decision=allow reason=default rule=- door=dovecot service=imap login=u%d@example.com ip=192.0.2.%d session=zHU7R9RgWLZ/AAAB\n",
			base.Add(time.Duration(i)*time.Millisecond).Format("2006-01-02T15:04:05.000Z"), i%5000, i%200)
	}
	p := filepath.Join(b.TempDir(), "d.log")
	os.WriteFile(p, buf.Bytes(), 0o600)
	for name, q := range map[string]Query{
		"login":   {Login: "nobody@example.com"},
		"address": {Prefix: netip.MustParsePrefix("198.51.100.0/24")},
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(maxScanBytes)
			for b.Loop() {
				if _, err := Search(context.Background(), Source{File: p}, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

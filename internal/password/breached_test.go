package password

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// hashList is a sorted list of distinct SHA-1s (upper-case hex) with counts.
type hashList struct {
	hashes []string
	counts []int64
}

// makeHashes returns n distinct random hashes, sorted, from a fixed seed,
// plus the extra hashes given.
func makeHashes(n int, seed uint64, extra ...string) hashList {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	raw := make([][20]byte, n)
	for i := range raw {
		for j := 0; j < 20; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < 20; k++ {
				raw[i][j+k] = byte(v >> (8 * k))
			}
		}
	}
	hs := make([]string, 0, n+len(extra))
	for i := range raw {
		hs = append(hs, strings.ToUpper(hex.EncodeToString(raw[i][:])))
	}
	hs = append(hs, extra...)
	slices.Sort(hs)
	hs = slices.Compact(hs)
	l := hashList{hashes: hs, counts: make([]int64, len(hs))}
	for i := range l.counts {
		l.counts[i] = int64(r.IntN(1_000_000) + 1)
	}
	return l
}

// write writes l to dir/name with the line end eol; trailing adds one
// more line end at the end of the file.
func (l hashList) write(t testing.TB, dir, name, eol string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i, h := range l.hashes {
		fmt.Fprintf(w, "%s:%d%s", h, l.counts[i], eol)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha1Hex(s string) string {
	h := sha1.Sum([]byte(s))
	return strings.ToUpper(hex.EncodeToString(h[:]))
}

// TestBreachedMillion searches a generated sorted file of a million
// hashes: every probe at the first, last and middle lines and a spread of
// others is found with its count, and hashes not in the file are not.
func TestBreachedMillion(t *testing.T) {
	const n = 1_000_000
	l := makeHashes(n, 12, sha1Hex("password"))
	dir := t.TempDir()
	for _, eol := range []string{"\r\n", "\n"} {
		name := map[string]string{"\r\n": "crlf", "\n": "lf"}[eol]
		t.Run(name, func(t *testing.T) {
			p := l.write(t, dir, name+".txt", eol)
			b, err := OpenBreached(p)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			probes := []int{0, 1, len(l.hashes) / 2, len(l.hashes) - 2, len(l.hashes) - 1}
			for i := 0; i < len(l.hashes); i += 9973 {
				probes = append(probes, i)
			}
			for _, i := range probes {
				got, err := b.CountHash(l.hashes[i])
				if err != nil || got != l.counts[i] {
					t.Fatalf("line %d %s: got %d, %v; want %d", i, l.hashes[i], got, err, l.counts[i])
				}
				// Lower case asks for the same.
				if got, _ := b.CountHash(strings.ToLower(l.hashes[i])); got != l.counts[i] {
					t.Fatalf("line %d lower case: got %d", i, got)
				}
			}
			if got, err := b.Count("password"); err != nil || got == 0 {
				t.Fatalf(`Count("password") = %d, %v; want listed`, got, err)
			}
			misses := []string{
				strings.Repeat("0", 40), strings.Repeat("F", 40),
				sha1Hex("a password nobody has used, surely 8f3e"),
			}
			// Neighbours of listed hashes: one more in the last digit.
			for _, i := range []int{0, len(l.hashes) / 2, len(l.hashes) - 1} {
				h := []byte(l.hashes[i])
				h[39] = "123456789ABCDEF0"[strings.IndexByte("0123456789ABCDEF", h[39])]
				misses = append(misses, string(h))
			}
			for _, h := range misses {
				if _, found := slices.BinarySearch(l.hashes, h); found {
					continue
				}
				if got, err := b.CountHash(h); err != nil || got != 0 {
					t.Fatalf("miss %s: got %d, %v", h, got, err)
				}
			}
		})
	}
}

// TestBreachedSmall covers the edges of tiny files: one line, no final
// newline, extra line ends at the end.
func TestBreachedSmall(t *testing.T) {
	dir := t.TempDir()
	l := makeHashes(3, 1)
	for _, tc := range []struct{ name, tail string }{
		{"no-final-newline", ""}, {"crlf", "\r\n"}, {"extra-newlines", "\n\n"},
	} {
		var buf bytes.Buffer
		for i, h := range l.hashes {
			if i > 0 {
				buf.WriteString("\n")
			}
			fmt.Fprintf(&buf, "%s:%d", h, l.counts[i])
		}
		buf.WriteString(tc.tail)
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, buf.Bytes(), 0o600)
		b, err := OpenBreached(p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i, h := range l.hashes {
			if got, err := b.CountHash(h); err != nil || got != l.counts[i] {
				t.Fatalf("%s: %s: %d, %v", tc.name, h, got, err)
			}
		}
		if got, err := b.CountHash(strings.Repeat("F", 40)); got != 0 || err != nil {
			t.Fatalf("%s: miss: %d %v", tc.name, got, err)
		}
		b.Close()
		if _, err := b.CountHash(l.hashes[0]); err == nil {
			t.Fatalf("%s: lookup after Close: no error", tc.name)
		}
	}
}

// TestBreachedBadFiles: files that are not a sorted SHA-1 list are
// refused at Open with an error saying why.
func TestBreachedBadFiles(t *testing.T) {
	dir := t.TempDir()
	l := makeHashes(5000, 7)
	var sorted bytes.Buffer
	for i, h := range l.hashes {
		fmt.Fprintf(&sorted, "%s:%d\r\n", h, l.counts[i])
	}
	unsorted := slices.Clone(l.hashes)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(unsorted), func(i, j int) { unsorted[i], unsorted[j] = unsorted[j], unsorted[i] })
	var shuffled bytes.Buffer
	for _, h := range unsorted {
		fmt.Fprintf(&shuffled, "%s:1\r\n", h)
	}
	var ntlm bytes.Buffer
	for _, h := range l.hashes {
		fmt.Fprintf(&ntlm, "%s:1\r\n", h[:32])
	}
	// A line Open samples (the 16th of 64 spread over the file) broken,
	// and the last line broken.
	corruptMid := bytes.Clone(sorted.Bytes())
	end := textEnd(corruptMid)
	copy(corruptMid[nextLine(corruptMid, end*16/(samples+1), end):], "zzzzzzzzzz")
	corruptLast := bytes.Clone(sorted.Bytes())
	copy(corruptLast[lastLineStart(corruptLast)+41:], "-1")
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"text", []byte("hello world\n"), "not a line HEX40:COUNT"},
		{"unsorted", shuffled.Bytes(), "not sorted"},
		{"ntlm", ntlm.Bytes(), "NTLM"},
		{"corrupt-middle", corruptMid, "byte"},
		{"corrupt-last", corruptLast, "bad count"},
		{"bad-count", []byte(l.hashes[0] + ":12x\n"), "bad count"},
		{"no-count", []byte(l.hashes[0] + ":\n"), "HEX40:COUNT"},
		{"long-line", []byte(l.hashes[0] + ":" + strings.Repeat("1", 200) + "\n" + l.hashes[1] + ":1\n"), ""},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := OpenBreached(p)
		if err == nil {
			b.Close()
			t.Errorf("%s: opened", tc.name)
			continue
		}
		var fe *FormatError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want a FormatError with %q", tc.name, err, tc.want)
		}
	}
	if _, err := OpenBreached(filepath.Join(dir, "missing")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := OpenBreached(dir); err == nil {
		t.Errorf("directory: opened")
	}
	p := filepath.Join(dir, "ok")
	os.WriteFile(p, sorted.Bytes(), 0o600)
	b, err := OpenBreached(p)
	if err != nil {
		t.Fatalf("sorted file: %v", err)
	}
	defer b.Close()
	if _, err := b.CountHash("xyz"); err == nil {
		t.Error("CountHash(xyz): no error")
	}
}

// TestSearchCorruptAtLookup: a line broken after Open (the samples did
// not see it) is an error from the search, not a wrong answer or a crash.
func TestSearchCorruptAtLookup(t *testing.T) {
	l := makeHashes(1000, 9)
	var buf bytes.Buffer
	for i, h := range l.hashes {
		fmt.Fprintf(&buf, "%s:%d\n", h, l.counts[i])
	}
	data := buf.Bytes()
	mid := bytes.Index(data, []byte(l.hashes[500]))
	copy(data[mid:], "zz")
	if _, err := search(data, []byte(l.hashes[500])); err == nil {
		t.Fatal("no error for a corrupt line")
	}
}

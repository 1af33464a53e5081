package logfollow

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzSplitter: whatever the bytes and however they are cut into reads,
// the lines handed on are the input's lines of at most max bytes, in
// order, none longer than max, and no more than max bytes are held.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte("a\nbb\nccc\n"), uint8(2), uint8(3))
	f.Add([]byte("\n\n\r\nxxxxxxxxxx\ny"), uint8(1), uint8(4))
	f.Add([]byte("no newline at all"), uint8(5), uint8(8))
	f.Fuzz(func(t *testing.T, in []byte, cut, max8 uint8) {
		max := int(max8)%64 + 1
		step := int(cut)%16 + 1
		s := splitter{max: max}
		var got [][]byte
		for i := 0; i < len(in); i += step {
			s.feed(in[i:min(i+step, len(in))], func(l []byte) { got = append(got, bytes.Clone(l)) })
			if len(s.partial) > max {
				t.Fatalf("holding %d bytes, max %d", len(s.partial), max)
			}
		}
		var want [][]byte
		lines := bytes.Split(in, []byte("\n"))
		for _, l := range lines[:len(lines)-1] { // the last has no newline yet
			if len(l) <= max {
				want = append(want, trimCR(l))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d lines, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("line %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// FuzzLoadPosition: a position file of any content is a position or an
// error, never a crash or a negative offset.
func FuzzLoadPosition(f *testing.F) {
	f.Add([]byte(`{"source":"/var/log/mail.log","dev":2049,"inode":1234,"offset":99,"first_line":"ab"}`))
	f.Add([]byte(`{"source":"journald","cursor":"s=1;i=2"}`))
	f.Add([]byte(`{"offset":-5}`))
	f.Add([]byte(`[`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "pos")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		pos, ok, err := LoadPosition(p)
		if err == nil && ok && pos.Offset < 0 {
			t.Fatalf("negative offset %d accepted", pos.Offset)
		}
	})
}

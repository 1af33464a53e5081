package logfollow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// collector gathers the lines a follower hands on.
type collector struct{ got []string }

func (c *collector) add(b []byte) { c.got = append(c.got, string(b)) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func appendTo(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func lines(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("line %d", i))
	}
	return out
}

func text(from, to int) string {
	var b strings.Builder
	for _, l := range lines(from, to) {
		b.WriteString(l + "\n")
	}
	return b.String()
}

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func newFollower(t *testing.T, path string, opt FileOptions) (*File, *collector) {
	c := &collector{}
	return NewFile(path, opt, c.add, discard()), c
}

func check(t *testing.T, c *collector, want []string) {
	t.Helper()
	if !slices.Equal(c.got, want) {
		t.Fatalf("lines:\n got %q\nwant %q", c.got, want)
	}
}

func TestFileAppendAndPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	appendTo(t, path, text(1, 2))
	f, c := newFollower(t, path, FileOptions{FromStart: true})
	defer f.Close()
	f.Step(t0)
	check(t, c, lines(1, 2))
	appendTo(t, path, "line 3\nline ")
	f.Step(t0)
	check(t, c, lines(1, 3))
	if p := f.Position(); p.Offset != int64(len(text(1, 3))) {
		t.Errorf("position %d, want the end of the last complete line %d", p.Offset, len(text(1, 3)))
	}
	appendTo(t, path, "4\r\n")
	f.Step(t0)
	check(t, c, lines(1, 4))
}

func TestFileNewSourceStartsAtEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	appendTo(t, path, text(1, 3)+"line 4 still being wr")
	f, c := newFollower(t, path, FileOptions{})
	defer f.Close()
	f.Step(t0)
	check(t, c, nil)
	appendTo(t, path, "itten\n"+text(5, 5))
	f.Step(t0)
	check(t, c, []string{"line 4 still being written", "line 5"})
}

func TestFileNotThereYet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "mail.log")
	f, c := newFollower(t, path, FileOptions{})
	defer f.Close()
	f.Step(t0)
	if s := f.Status(); s.State != "missing" || s.MissingFrom != t0 {
		t.Fatalf("status %+v, want missing since t0", s)
	}
	os.Mkdir(filepath.Dir(path), 0o755)
	appendTo(t, path, text(1, 2))
	f.Step(t0.Add(time.Second))
	// A file made after the start is read from its beginning.
	check(t, c, lines(1, 2))
	if s := f.Status(); s.State != "ok" {
		t.Fatalf("status %+v, want ok", s)
	}
}

func TestFileRenameRotationMidStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendTo(t, path, text(1, 3))
	f, c := newFollower(t, path, FileOptions{FromStart: true})
	defer f.Close()
	f.Step(t0)
	// The writer still holds the old file: it writes a line and a half
	// after the rename, and the rest after reopening.
	old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	old.WriteString("line 4\n")
	f.Step(t0) // the path is gone: the old file is still read
	check(t, c, lines(1, 4))
	if s := f.Status(); s.State != "missing" {
		t.Fatalf("state %q, want missing", s.State)
	}
	old.WriteString("line 5\n")
	appendTo(t, path, text(6, 7))
	old.WriteString("line 5b\n") // written before the switch is seen
	old.Close()
	f.Step(t0)
	check(t, c, append(append(lines(1, 5), "line 5b"), lines(6, 7)...))
	if s := f.Status(); s.Rotations != 1 || s.State != "ok" {
		t.Fatalf("status %+v, want 1 rotation", s)
	}
}

func TestFileCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	appendTo(t, path, text(1, 3))
	f, c := newFollower(t, path, FileOptions{FromStart: true})
	defer f.Close()
	f.Step(t0)
	appendTo(t, path, "line 4\n")
	// copytruncate: copy, then truncate; the writer goes on at offset 0
	// (O_APPEND).
	f.Step(t0)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendTo(t, path, text(5, 5))
	f.Step(t0)
	check(t, c, lines(1, 5))
	if s := f.Status(); s.Truncations != 1 {
		t.Fatalf("status %+v, want 1 truncation", s)
	}
}

func TestFileDeletedAndRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	appendTo(t, path, text(1, 2))
	f, c := newFollower(t, path, FileOptions{FromStart: true})
	defer f.Close()
	f.Step(t0)
	os.Remove(path)
	f.Step(t0.Add(time.Second))
	f.Step(t0.Add(2 * time.Second))
	if s := f.Status(); s.State != "missing" || !s.MissingFrom.Equal(t0.Add(time.Second)) {
		t.Fatalf("status %+v, want missing since t0+1s", s)
	}
	appendTo(t, path, text(3, 4))
	f.Step(t0.Add(3 * time.Second))
	check(t, c, lines(1, 4))
}

func TestFileLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	long := strings.Repeat("x", 300)
	appendTo(t, path, "line 1\n"+long+"\nline 2\n"+long[:150])
	f, c := newFollower(t, path, FileOptions{FromStart: true, MaxLine: 100})
	f.buf = make([]byte, 64) // the long line spans reads
	defer f.Close()
	f.Step(t0)
	check(t, c, lines(1, 2))
	if len(f.split.partial) > 100 {
		t.Fatalf("holding %d bytes of a long line, want at most 100", len(f.split.partial))
	}
	appendTo(t, path, long+"\nline 3\n")
	f.Step(t0)
	check(t, c, lines(1, 3))
	if s := f.Status(); s.LongLines != 2 || s.Lines != 3 {
		t.Fatalf("status %+v, want 2 long lines skipped and 3 lines", s)
	}
}

// restart runs a follower on path until the end of its life (Save), as
// Run does at shutdown.
func restart(t *testing.T, path, pos string, c *collector) *File {
	f := NewFile(path, FileOptions{PositionFile: pos}, c.add, discard())
	f.Step(t0)
	return f
}

func TestFileRestartResumes(t *testing.T) {
	dir := t.TempDir()
	path, pos := filepath.Join(dir, "mail.log"), filepath.Join(dir, "state", "mail.pos")
	appendTo(t, path, text(1, 3))
	c := &collector{}
	f := NewFile(path, FileOptions{PositionFile: pos, FromStart: true}, c.add, discard())
	f.Step(t0)
	appendTo(t, path, "line 4\nline 5 half")
	f.Step(t0)
	f.Save()
	f.Close()

	// Down: lines are written.
	appendTo(t, path, " done\n"+text(6, 6))
	f = restart(t, path, pos, c)
	check(t, c, append(append(lines(1, 4), "line 5 half done"), lines(6, 6)...))
	f.Save()
	f.Close()

	// Copytruncate while down: the file is shorter than the position.
	os.Truncate(path, 0)
	appendTo(t, path, text(7, 7))
	f = restart(t, path, pos, c)
	check(t, c, append(append(lines(1, 4), "line 5 half done"), lines(6, 7)...))
	f.Save()
	f.Close()
	p, _, _ := LoadPosition(pos)
	if p.Offset != int64(len(text(7, 7))) || p.FirstLine == "" {
		t.Fatalf("saved %+v", p)
	}
}

func TestFileRotatedWhileDown(t *testing.T) {
	dir := t.TempDir()
	path, pos := filepath.Join(dir, "mail.log"), filepath.Join(dir, "mail.pos")
	appendTo(t, path, text(1, 2))
	c := &collector{}
	f := NewFile(path, FileOptions{PositionFile: pos, FromStart: true}, c.add, discard())
	f.Step(t0)
	f.Save()
	f.Close()
	// Down: two more lines, a rotation by rename, lines in the new file.
	appendTo(t, path, text(3, 4))
	os.Rename(path, path+".1")
	appendTo(t, path, text(5, 6))
	f = restart(t, path, pos, c)
	check(t, c, lines(1, 6))

	// Without the rotated file (compressed), the new file from 0.
	f.Save()
	f.Close()
	appendTo(t, path, text(7, 7))
	os.Rename(path, path+".2.gz")
	appendTo(t, path, text(8, 8))
	c.got = nil
	f = restart(t, path, pos, c)
	check(t, c, lines(8, 8))
	f.Close()
}

func TestFileFirstLineHash(t *testing.T) {
	dir := t.TempDir()
	path, pos := filepath.Join(dir, "mail.log"), filepath.Join(dir, "mail.pos")
	appendTo(t, path, text(1, 3))
	c := &collector{}
	f := NewFile(path, FileOptions{PositionFile: pos, FromStart: true}, c.add, discard())
	f.Step(t0)
	f.Save()
	f.Close()

	// Same first line, new inode (the file was copied into place, e.g.
	// restored from a backup or moved to another disk): the same file,
	// go on from the position.
	appendTo(t, path, text(4, 4))
	b, _ := os.ReadFile(path)
	os.Remove(path)
	os.WriteFile(path, b, 0o644)
	c.got = nil
	f = restart(t, path, pos, c)
	check(t, c, lines(4, 4))
	f.Save()
	f.Close()

	// Another first line under a new inode: a new file, from 0 (no rotated
	// file to find).
	os.Remove(path)
	appendTo(t, path, "other 1\nother 2\n")
	c.got = nil
	f = restart(t, path, pos, c)
	check(t, c, []string{"other 1", "other 2"})
	f.Save()
	f.Close()

	// Same inode, another first line (rewritten in place while down):
	// from 0.
	fh, _ := os.OpenFile(path, os.O_WRONLY, 0)
	fh.WriteAt([]byte("OTHER 1\nOTHER 2\nOTHER 3\n"), 0)
	fh.Close()
	c.got = nil
	f = restart(t, path, pos, c)
	check(t, c, []string{"OTHER 1", "OTHER 2", "OTHER 3"})
	f.Close()
}

func TestFileRunSavesAtBoundedRate(t *testing.T) {
	dir := t.TempDir()
	path, pos := filepath.Join(dir, "mail.log"), filepath.Join(dir, "mail.pos")
	appendTo(t, path, text(1, 1))
	c := &collector{}
	f := NewFile(path, FileOptions{PositionFile: pos, FromStart: true, SaveEvery: time.Minute}, c.add, discard())
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx, tick); close(done) }()
	tick <- t0 // reads line 1, saves (first save)
	tick <- t0 // the first step is done once this one is taken
	appendTo(t, path, text(2, 2))
	tick <- t0.Add(time.Second) // reads line 2, no save within the minute
	tick <- t0.Add(2 * time.Second)
	p, _, _ := LoadPosition(pos)
	if p.Offset != int64(len(text(1, 1))) {
		t.Errorf("saved offset %d within SaveEvery, want %d", p.Offset, len(text(1, 1)))
	}
	cancel()
	<-done
	p, _, _ = LoadPosition(pos)
	if p.Offset != int64(len(text(1, 2))) {
		t.Errorf("saved offset %d at the end, want %d", p.Offset, len(text(1, 2)))
	}
}

func TestLoadPositionBad(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"garbage":  "not json",
		"negative": `{"source":"x","offset":-1}`,
		"huge":     strings.Repeat(" ", maxPositionFile+1),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		if _, _, err := LoadPosition(p); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, ok, err := LoadPosition(filepath.Join(dir, "none")); ok || err != nil {
		t.Errorf("missing file: ok %v err %v", ok, err)
	}
}

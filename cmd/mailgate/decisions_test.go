package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// Decision lines are buffered, written within decisionFlushEvery, and all
// of them by Close (a clean shutdown) and Reopen (logrotate).
func TestDecisionWriterBuffers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "decisions.log")
		d, err := openDecisionWriter(path)
		if err != nil {
			t.Fatal(err)
		}
		read := func() string {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		d.Write([]byte("line 1\n"))
		if got := read(); got != "" {
			t.Errorf("written at once (one write per line): %q", got)
		}
		time.Sleep(decisionFlushEvery + time.Millisecond)
		synctest.Wait()
		if got := read(); got != "line 1\n" {
			t.Errorf("after the flush interval: %q", got)
		}

		// Rotation: the old file gets what was buffered, the new one the rest.
		d.Write([]byte("line 2\n"))
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		if err := d.Reopen(); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path + ".1"); string(b) != "line 1\nline 2\n" {
			t.Errorf("rotated file: %q", b)
		}

		// A clean shutdown loses nothing, however many lines are buffered.
		var want strings.Builder
		for i := range 10_000 {
			l := fmt.Sprintf("line %d of many\n", i)
			want.WriteString(l)
			d.Write([]byte(l))
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != want.String() {
			t.Errorf("after Close: %d bytes, want %d", len(got), want.Len())
		}
		if _, err := d.Write([]byte("late\n")); err == nil {
			t.Error("a write after Close succeeded")
		}
		time.Sleep(time.Second)
		synctest.Wait()
	})
}

// flaky fails its first write (a full disk) and takes the next ones.
type flaky struct {
	fails int
	got   strings.Builder
}

func (f *flaky) Write(b []byte) (int, error) {
	if f.fails > 0 {
		f.fails--
		return 0, errors.New("no space left on device")
	}
	return f.got.Write(b)
}

// A failed write loses that batch, not every later line (a bufio.Writer
// keeps its first error and refuses everything after it).
func TestDecisionWriterRecoversAfterWriteError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &flaky{fails: 1}
		d := newDecisionWriter(f)
		d.Write([]byte("lost\n"))
		time.Sleep(decisionFlushEvery + time.Millisecond)
		synctest.Wait()
		if _, err := d.Write([]byte("line 2\n")); err != nil {
			t.Errorf("write after a failed flush: %v", err)
		}
		time.Sleep(decisionFlushEvery + time.Millisecond)
		synctest.Wait()
		d.Write([]byte("line 3\n"))
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if got := f.got.String(); got != "line 2\nline 3\n" {
			t.Errorf("written after the error: %q", got)
		}
	})
}

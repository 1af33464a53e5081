package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestPrioHandlerPrefixesEachLineWithItsLevel(t *testing.T) {
	var out bytes.Buffer
	h := newPrioHandler(&out, func(w io.Writer) slog.Handler {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}})
	})
	log := slog.New(h).With("component", "admin").WithGroup("g")
	log.Debug("d")
	log.Info("i", "k", 1)
	log.Warn("w")
	log.Error("e")
	log.Log(t.Context(), slog.LevelError+4, "worse")
	want := []string{
		`<7>level=DEBUG msg=d component=admin`,
		`<6>level=INFO msg=i component=admin g.k=1`,
		`<4>level=WARN msg=w component=admin`,
		`<3>level=ERROR msg=e component=admin`,
		`<3>level=ERROR+4 msg=worse component=admin`,
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}
}

func TestToJournalComparesDeviceAndInode(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	mine := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	other := fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)
	for _, c := range []struct {
		env  string
		want bool
	}{{mine, true}, {other, false}, {"", false}, {"junk", false}} {
		if got := toJournal(f, c.env); got != c.want {
			t.Errorf("toJournal(%q) = %v, want %v", c.env, got, c.want)
		}
	}
}

func TestLogHandlerPrefixesOnlyOnTheJournal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	st := fi.Sys().(*syscall.Stat_t)
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	slog.New(logHandler(f, nil)).Warn("to the journal")
	t.Setenv("JOURNAL_STREAM", "")
	slog.New(logHandler(f, nil)).Warn("to a file")
	b, _ := os.ReadFile(f.Name())
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "<4>time=") || !strings.HasPrefix(lines[1], "time=") {
		t.Fatalf("got %q", lines)
	}
}

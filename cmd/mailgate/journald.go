package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// toJournal reports whether f is the stream systemd connected to the
// journal: JOURNAL_STREAM ("device:inode", see systemd.exec(5)) names it.
// Comparing the numbers keeps the prefixes out of a file that stderr was
// redirected to by a shell started from a unit.
func toJournal(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(journalStream, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}

// syslogPriority is the sd-daemon(3) priority of a slog level.
func syslogPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	default:
		return 7 // debug
	}
}

// prioHandler prefixes each line of inner with "<N>", the syslog
// priority of the record's level, which journald reads from a stream
// (SyslogLevelPrefix=yes, the default) and then strips: `journalctl -p
// warning -u mailgate` shows warnings and errors, and they are coloured.
type prioHandler struct {
	inner slog.Handler
	sh    *prioShared
}

// prioShared is the buffer the inner handler writes to, and the lock
// that keeps prefix and line together; it is shared with the handlers
// made by WithAttrs and WithGroup.
type prioShared struct {
	mu  sync.Mutex
	buf bytes.Buffer
	out io.Writer
}

// newPrioHandler returns a handler that writes newInner's lines to out,
// each prefixed with its priority.
func newPrioHandler(out io.Writer, newInner func(io.Writer) slog.Handler) slog.Handler {
	sh := &prioShared{out: out}
	return &prioHandler{inner: newInner(&sh.buf), sh: sh}
}

func (h *prioHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *prioHandler) Handle(ctx context.Context, r slog.Record) error {
	h.sh.mu.Lock()
	defer h.sh.mu.Unlock()
	h.sh.buf.Reset()
	fmt.Fprintf(&h.sh.buf, "<%d>", syslogPriority(r.Level))
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	_, err := h.sh.out.Write(h.sh.buf.Bytes())
	return err
}

func (h *prioHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &prioHandler{inner: h.inner.WithAttrs(as), sh: h.sh}
}

func (h *prioHandler) WithGroup(name string) slog.Handler {
	return &prioHandler{inner: h.inner.WithGroup(name), sh: h.sh}
}

// logHandler is the daemon's log handler on stderr: text lines, with
// journald priority prefixes when stderr is the journal.
func logHandler(stderr io.Writer, opts *slog.HandlerOptions) slog.Handler {
	text := func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	if f, ok := stderr.(*os.File); ok && toJournal(f, os.Getenv("JOURNAL_STREAM")) {
		return newPrioHandler(stderr, text)
	}
	return text(stderr)
}

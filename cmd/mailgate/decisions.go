package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// decisionWriter is where decision lines go: stdout, stderr, nowhere, or
// a file reopened on SIGHUP (for logrotate). Lines are buffered and
// written at most decisionFlushEvery after the first one of a batch (or
// when decisionBuffer is full): one write(2) for many lines instead of
// one per verdict, which was the largest cost of the Dovecot door under
// load (docs/performance.md). Close and Reopen write what is buffered, so
// a clean shutdown or a log rotation loses nothing; a crash (kill -9)
// loses at most the last decisionFlushEvery.
type decisionWriter struct {
	mu      sync.Mutex
	where   string    // log.decisions: stdout, stderr, off or the file's path
	path    string    // "" unless writing to a file
	f       *os.File  // nil unless path is set
	out     io.Writer // what buf writes to
	buf     *bufio.Writer
	pending bool // a flush is scheduled
	closed  bool
}

const (
	decisionFlushEvery = 100 * time.Millisecond
	decisionBuffer     = 64 << 10
)

func openDecisionWriter(where string) (*decisionWriter, error) {
	switch where {
	case "stdout", "stderr", "off":
		d := &decisionWriter{}
		return d, d.Retarget(where)
	default:
		d := &decisionWriter{}
		if err := d.Retarget(where); err != nil {
			return nil, fmt.Errorf("log.decisions: %w", err)
		}
		return d, nil
	}
}

// Path is the decision log file's path, or "" when decision lines do not
// go to a file (the console searches the file).
func (d *decisionWriter) Path() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.path
}

// Where is log.decisions as the writer follows it: stdout, stderr, off or
// a file's path.
func (d *decisionWriter) Where() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.where
}

func newDecisionWriter(w io.Writer) *decisionWriter {
	return &decisionWriter{out: w, buf: bufio.NewWriterSize(w, decisionBuffer)}
}

// failed forgets what could not be written: a bufio.Writer that met an
// error refuses every later write, and one full disk must not stop the
// decision log for good (unbuffered, the next line was written again).
func (d *decisionWriter) failed(err error) {
	if err != nil {
		d.buf.Reset(d.out)
	}
}

func (d *decisionWriter) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, os.ErrClosed
	}
	n, err := d.buf.Write(b)
	d.failed(err)
	if !d.pending && d.buf.Buffered() > 0 {
		d.pending = true
		time.AfterFunc(decisionFlushEvery, d.flush)
	}
	return n, err
}

func (d *decisionWriter) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = false
	d.failed(d.buf.Flush())
}

// Reopen writes what is buffered to the old file and goes on in a new one
// at the same path.
func (d *decisionWriter) Reopen() error {
	d.mu.Lock()
	path := d.path
	d.mu.Unlock()
	if path == "" {
		return nil
	}
	return d.Retarget(path)
}

// Retarget writes what is buffered to the old destination and goes on in
// where (as log.decisions says: stdout, stderr, off or a file's path).
// When the new file cannot be opened, nothing changes.
func (d *decisionWriter) Retarget(where string) error {
	var out io.Writer
	var f *os.File
	switch where {
	case "stdout":
		out = os.Stdout
	case "stderr":
		out = os.Stderr
	case "off":
		out = io.Discard
	default:
		var err error
		if f, err = os.OpenFile(where, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err != nil {
			return err
		}
		out = f
	}
	path := where
	if f == nil {
		path = ""
	}
	d.mu.Lock()
	old := d.f
	if d.buf != nil {
		d.buf.Flush() //nolint:errcheck // a line the old file cannot take is lost, as unbuffered
		d.buf.Reset(out)
	} else {
		d.buf = bufio.NewWriterSize(out, decisionBuffer)
	}
	d.f, d.out, d.path, d.where = f, out, path, where
	d.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close writes what is buffered and closes the file. Later writes fail.
func (d *decisionWriter) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	err := d.buf.Flush()
	if d.f != nil {
		if cerr := d.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Package logfollow follows mail logs: files (through rotation by rename,
// copytruncate and deletion, resuming across restarts from a saved
// position) and the systemd journal (a journalctl subprocess, resuming
// from a saved cursor). It hands complete lines to a callback; what a line
// means is package maillog's business.
//
// Files are polled, not watched with inotify: a poll is one read to the
// end and one stat per file, which costs nothing at a few times a second,
// and it sees every way a log changes (a rename, a truncation, a file
// deleted and made again, a directory that does not exist yet, a file on
// a network file system) the same way, where inotify needs a watch on the
// directory, a new watch after every rename, and still a poll for the
// cases it misses. Tests drive the poll themselves (File.Step), so no
// test sleeps.
package logfollow

import "bytes"

// DefaultMaxLine is the longest line handed on, in bytes; a longer line is
// skipped (and counted), never buffered whole.
const DefaultMaxLine = 16 << 10

// splitter cuts a byte stream into lines of at most max bytes. A line
// longer than max is dropped and counted; only max bytes of it are ever
// held.
type splitter struct {
	max      int
	partial  []byte // the start of a line whose end has not come yet
	skipping bool   // inside a line already known to be too long
}

// feed passes every complete line of chunk (with what partial held
// before) to emit, without the newline, and keeps the rest. It returns how
// many bytes of chunk end with the last complete line (0 when chunk has
// no newline), and how many over-long lines were dropped.
func (s *splitter) feed(chunk []byte, emit func([]byte)) (through int, long int) {
	for {
		i := bytes.IndexByte(chunk[through:], '\n')
		if i < 0 {
			break
		}
		line := chunk[through : through+i]
		through += i + 1
		switch {
		case s.skipping:
			s.skipping = false
			long++
		case len(s.partial)+len(line) > s.max:
			s.partial = s.partial[:0]
			long++
		case len(s.partial) > 0:
			s.partial = append(s.partial, line...)
			emit(trimCR(s.partial))
			s.partial = s.partial[:0]
		default:
			emit(trimCR(line))
		}
	}
	rest := chunk[through:]
	if s.skipping || len(rest) == 0 {
		return through, long
	}
	if len(s.partial)+len(rest) > s.max {
		s.partial = s.partial[:0]
		s.skipping = true
		return through, long
	}
	s.partial = append(s.partial, rest...)
	return through, long
}

// reset forgets a partial line (the file it came from was truncated or
// replaced).
func (s *splitter) reset() {
	s.partial = s.partial[:0]
	s.skipping = false
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

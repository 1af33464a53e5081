package logfollow

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FileOptions configure a File.
type FileOptions struct {
	// PositionFile is where the position is saved ("" = nowhere: every
	// start begins at the end of the file).
	PositionFile string
	// MaxLine is the longest line handed on (0 = DefaultMaxLine).
	MaxLine int
	// FromStart reads a file met for the first time (no saved position)
	// from its beginning; otherwise from its end, so that a new source
	// does not replay an old log as if it happened now. A file that
	// appears while the follower runs (a new log after a rotation, a log
	// created later) is always read from its beginning.
	FromStart bool
	// SaveEvery bounds how often the position is written (0 = 5 s); it is
	// also written when Run ends.
	SaveEvery time.Duration
}

// File follows one log file. Step reads what was added since the last
// Step and handles rotation; Run calls Step on every tick. Handle is
// called from the goroutine running Step, one line at a time.
type File struct {
	path   string
	opt    FileOptions
	handle func(line []byte)
	log    *slog.Logger

	// The reader's state; only Step's goroutine touches it.
	f        *os.File
	dev, ino uint64
	off      int64 // after the last complete line handed on
	readOff  int64 // read up to here (off plus the partial line)
	split    splitter
	buf      []byte
	started  bool // the first open (with the saved position) is done
	// absentAtStart: the file did not exist when the follower started,
	// so when it comes it holds only new lines.
	absentAtStart bool
	hash          string
	saved         Position
	savedAt       time.Time
	saveErrs      int

	mu          sync.Mutex // guards the fields Status reads
	state       string
	missingFrom time.Time
	lastLine    time.Time
	lastStep    time.Time
	curOff      int64
	curIno      uint64

	lines, long, rotations, truncations atomic.Uint64
}

// NewFile returns a follower of path that passes each line to handle.
func NewFile(path string, opt FileOptions, handle func(line []byte), log *slog.Logger) *File {
	if opt.MaxLine <= 0 {
		opt.MaxLine = DefaultMaxLine
	}
	if opt.SaveEvery <= 0 {
		opt.SaveEvery = 5 * time.Second
	}
	return &File{
		path:   path,
		opt:    opt,
		handle: handle,
		log:    log,
		split:  splitter{max: opt.MaxLine},
		buf:    make([]byte, 64<<10),
		state:  "starting",
	}
}

// Path is the followed file's path.
func (f *File) Path() string { return f.path }

// Run steps on every tick until ctx is done, saving the position at most
// every SaveEvery and once more at the end.
func (f *File) Run(ctx context.Context, tick <-chan time.Time) {
	defer f.Close()
	for {
		select {
		case <-ctx.Done():
			f.Save()
			return
		case now := <-tick:
			f.Step(now)
			if now.Sub(f.savedAt) >= f.opt.SaveEvery {
				f.savedAt = now
				f.Save()
			}
		}
	}
}

// Close closes the file held open (Run does it when it ends).
func (f *File) Close() {
	if f.f != nil {
		f.f.Close()
		f.f = nil
	}
}

// Step reads the file to its end, handing on each complete line, and
// follows a rotation: a new file at the path (rotation by rename, or a
// file deleted and made again) is switched to once the old one is read to
// its end; a file that shrank (copytruncate) is read again from 0; a file
// that is gone is waited for, the old one still read (its writer may
// still hold it open).
func (f *File) Step(now time.Time) {
	defer func() {
		f.mu.Lock()
		f.lastStep = now
		f.mu.Unlock()
	}()
	if f.f == nil {
		if !f.open(now) {
			return
		}
	}
	f.drain(now)
	fi, err := os.Stat(f.path)
	if err != nil {
		f.mu.Lock()
		if f.missingFrom.IsZero() {
			f.missingFrom = now
			f.log.Warn("log file is gone; reading what is left of it and waiting for it to come back", "path", f.path)
		}
		f.state = "missing"
		f.mu.Unlock()
		return
	}
	dev, ino := fileID(fi)
	if dev != f.dev || ino != f.ino {
		// A new file at the path: the old one may still get the lines
		// written before its writer reopened; read them, then switch.
		f.drain(now)
		f.rotations.Add(1)
		f.log.Info("log file rotated; reading the new one from its beginning", "path", f.path, "old_offset", f.readOff)
		f.Close()
		if f.switchTo(now) {
			f.drain(now)
		}
		return
	}
	if fi.Size() < f.readOff {
		f.truncations.Add(1)
		f.log.Info("log file truncated (copytruncate); reading it again from its beginning", "path", f.path, "size", fi.Size(), "offset", f.readOff)
		f.seek(0)
		f.hash = ""
		f.drain(now)
	}
	f.mu.Lock()
	f.state = "ok"
	f.missingFrom = time.Time{}
	f.mu.Unlock()
}

// open opens the path for the first time, or after it was gone.
func (f *File) open(now time.Time) bool {
	if f.started {
		return f.switchTo(now)
	}
	fh, err := os.Open(f.path)
	if err != nil {
		f.absentAtStart = true
		f.mu.Lock()
		if f.missingFrom.IsZero() {
			f.missingFrom = now
			f.log.Warn("log file does not exist (yet); waiting for it", "path", f.path, "err", err)
		}
		f.state = "missing"
		f.mu.Unlock()
		return false
	}
	f.started = true
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return false
	}
	f.f = fh
	f.dev, f.ino = fileID(fi)
	f.split.reset()
	p, ok, err := f.loadPosition()
	if err != nil {
		f.log.Warn("saved log position unreadable; starting as without one", "path", f.path, "err", err)
	}
	switch {
	case !ok && (f.opt.FromStart || f.absentAtStart):
		// A file made after mailgate started holds only new lines.
		f.seek(0)
	case !ok:
		// From the end, but at a line's start: the partial last line
		// is read whole once its end is written.
		f.startAtLastLine(fi.Size())
	default:
		f.resume(now, p, fi.Size())
	}
	f.noteOpen(now)
	return true
}

// resume applies a saved position to the file just opened (f.f).
func (f *File) resume(now time.Time, p Position, size int64) {
	h := firstLineHash(f.f)
	sameInode := p.Dev == f.dev && p.Inode == f.ino
	sameHash := p.FirstLine != "" && p.FirstLine == h
	switch {
	case sameInode && (p.FirstLine == "" || sameHash || h == "") && p.Offset <= size:
		// The same file: go on where we stopped.
		f.seek(p.Offset)
	case sameInode:
		// The inode was reused, or the file was truncated while we were
		// down: a new file.
		f.log.Info("log file was truncated or replaced while mailgate was down; reading it from its beginning", "path", f.path)
		f.seek(0)
	case sameHash && p.Offset <= size:
		// Another inode with the same first line: the same file,
		// moved or copied into place (fail2ban's rule).
		f.log.Info("log file has a new inode but the same first line; going on from the saved position", "path", f.path)
		f.seek(p.Offset)
	default:
		// Rotated while we were down. The lines written to the old file
		// after the saved position are in the rotated file, if it is
		// still there under a usual name and not compressed: read them
		// first. Then the new file from its beginning: every line of it
		// was written after the old file was closed.
		if old := f.findRotated(p); old != nil {
			cur, curDev, curIno := f.f, f.dev, f.ino
			f.f, f.dev, f.ino = old, p.Dev, p.Inode
			f.seek(p.Offset)
			f.drain(now)
			old.Close()
			f.f, f.dev, f.ino = cur, curDev, curIno
			f.split.reset()
		} else {
			f.log.Warn("log file was rotated while mailgate was down and the old file is not found (compressed or removed); its last lines are not read", "path", f.path)
		}
		f.rotations.Add(1)
		f.seek(0)
	}
}

// findRotated looks for the file of position p under the names logrotate
// and newsyslog give a rotated file (path.1, path.0, path-DATE).
func (f *File) findRotated(p Position) *os.File {
	cands := []string{f.path + ".1", f.path + ".0"}
	if m, err := filepath.Glob(f.path + "-*"); err == nil && len(m) <= 64 {
		cands = append(cands, m...)
	}
	for _, c := range cands {
		if strings.HasSuffix(c, ".gz") || strings.HasSuffix(c, ".xz") || strings.HasSuffix(c, ".bz2") || strings.HasSuffix(c, ".zst") {
			continue
		}
		fi, err := os.Stat(c)
		if err != nil {
			continue
		}
		if dev, ino := fileID(fi); dev != p.Dev || ino != p.Inode || fi.Size() < p.Offset {
			continue
		}
		fh, err := os.Open(c)
		if err != nil {
			continue
		}
		if p.FirstLine != "" && firstLineHash(fh) != p.FirstLine {
			fh.Close()
			continue
		}
		f.log.Info("reading the end of the log file rotated while mailgate was down", "path", c, "offset", p.Offset)
		return fh
	}
	return nil
}

// switchTo opens the file now at the path and reads it from its
// beginning.
func (f *File) switchTo(now time.Time) bool {
	fh, err := os.Open(f.path)
	if err != nil {
		f.mu.Lock()
		if f.missingFrom.IsZero() {
			f.missingFrom = now
		}
		f.state = "missing"
		f.mu.Unlock()
		return false
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return false
	}
	f.f = fh
	f.dev, f.ino = fileID(fi)
	f.seek(0)
	f.noteOpen(now)
	if f.started {
		f.log.Info("log file is back; reading it", "path", f.path)
	}
	f.started = true
	return true
}

func (f *File) noteOpen(time.Time) {
	f.hash = ""
	f.mu.Lock()
	f.state = "ok"
	f.missingFrom = time.Time{}
	f.curIno = f.ino
	f.curOff = f.off
	f.mu.Unlock()
}

// seek moves the reader to off, a line's start, forgetting a partial line.
func (f *File) seek(off int64) {
	f.off, f.readOff = off, off
	f.split.reset()
	f.mu.Lock()
	f.curOff = off
	f.mu.Unlock()
}

// startAtLastLine moves the reader to the start of the file's last line
// (size is the file's size): a line still being written is read whole
// once its end comes. A last line longer than MaxLine is skipped.
func (f *File) startAtLastLine(size int64) {
	limit := max(0, size-int64(f.opt.MaxLine)-1)
	for end := size; end > limit; {
		start := max(limit, end-4<<10)
		b := make([]byte, end-start)
		if n, _ := f.f.ReadAt(b, start); n < len(b) {
			break
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			f.seek(start + int64(i) + 1)
			return
		}
		end = start
	}
	if limit == 0 {
		f.seek(0)
		return
	}
	f.seek(size)
	f.split.skipping = true
}

// drain reads the open file from readOff to its end.
func (f *File) drain(now time.Time) {
	emit := func(line []byte) {
		f.lines.Add(1)
		f.handle(line)
	}
	for {
		n, err := f.f.ReadAt(f.buf, f.readOff)
		if n > 0 {
			through, long := f.split.feed(f.buf[:n], emit)
			if long > 0 {
				f.long.Add(uint64(long))
			}
			if through > 0 {
				f.off = f.readOff + int64(through)
				f.mu.Lock()
				f.curOff = f.off
				f.lastLine = now
				f.mu.Unlock()
			}
			f.readOff += int64(n)
		}
		if n < len(f.buf) || err != nil {
			if err != nil && !errors.Is(err, io.EOF) {
				f.log.Warn("reading log file", "path", f.path, "err", err)
			}
			return
		}
	}
}

// Position returns where the follower stands, for saving.
func (f *File) Position() Position {
	p := Position{Source: f.path, Dev: f.dev, Inode: f.ino, Offset: f.off}
	if f.f != nil {
		if f.hash == "" {
			f.hash = firstLineHash(f.f)
		}
		p.FirstLine = f.hash
	}
	return p
}

// Save writes the position to the position file if it changed. Call it
// from the goroutine running Step (Run does).
func (f *File) Save() {
	if f.opt.PositionFile == "" || !f.started || f.ino == 0 {
		return
	}
	p := f.Position()
	if p == f.saved {
		return
	}
	if err := SavePosition(f.opt.PositionFile, p); err != nil {
		if f.saveErrs == 0 {
			f.log.Error("saving the log position", "path", f.path, "file", f.opt.PositionFile, "err", err)
		}
		f.saveErrs++
		return
	}
	f.saveErrs = 0
	f.saved = p
}

func (f *File) loadPosition() (Position, bool, error) {
	if f.opt.PositionFile == "" {
		return Position{}, false, nil
	}
	p, ok, err := LoadPosition(f.opt.PositionFile)
	if err != nil || !ok {
		return Position{}, false, err
	}
	if p.Source != f.path {
		// The source's path changed in the config: a different log.
		return Position{}, false, nil
	}
	f.saved = p
	return p, true, nil
}

// FileStatus is what Status tells about a file follower.
type FileStatus struct {
	Path        string
	State       string    // ok, missing, starting
	MissingFrom time.Time // when the file was found gone (zero: it is there)
	Offset      int64     // read up to here
	Size        int64     // the size of the file at the path (-1: none)
	LastLine    time.Time // when the last line was read
	LastStep    time.Time // when the file was last checked (zero: never)
	Lines       uint64    // lines read
	LongLines   uint64    // lines skipped for being longer than MaxLine
	Rotations   uint64
	Truncations uint64
}

// Lag is how many bytes of the file are not read yet.
func (s FileStatus) Lag() int64 {
	if s.Size < 0 {
		return 0
	}
	return max(0, s.Size-s.Offset)
}

// Status returns the follower's state; safe from any goroutine.
func (f *File) Status() FileStatus {
	f.mu.Lock()
	s := FileStatus{Path: f.path, State: f.state, MissingFrom: f.missingFrom, Offset: f.curOff, LastLine: f.lastLine, LastStep: f.lastStep}
	ino := f.curIno
	f.mu.Unlock()
	s.Size = -1
	if fi, err := os.Stat(f.path); err == nil {
		if _, i := fileID(fi); i == ino {
			s.Size = fi.Size()
		} else {
			// Rotated, not switched to yet: all of the new file is unread.
			s.Size, s.Offset = fi.Size(), 0
		}
	}
	s.Lines, s.LongLines = f.lines.Load(), f.long.Load()
	s.Rotations, s.Truncations = f.rotations.Load(), f.truncations.Load()
	return s
}

func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino //nolint:unconvert // Dev's type differs between platforms
	}
	return 0, 0
}

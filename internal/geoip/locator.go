package geoip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Locator holds the current database of one path and replaces it when the
// file changes. Lookup is safe for concurrent use, also during reloads.
//
// Retired databases are not unmapped by the Locator: it drops its
// reference, and the DB's cleanup (runtime.AddCleanup) unmaps the file
// once no goroutine can reach it any more — a Lookup in progress holds the
// DB it loaded, so the garbage collector is the reference count, at no
// cost on the lookup path. A grace timer would be cheaper to reason about
// but unsafe for a lookup stalled longer than the grace period; an
// explicit reference count would put a shared atomic write on every
// lookup. The price: an old mapping (and the disk space of a replaced
// file) lives until the next garbage collection, at most a few minutes in
// an idle daemon.
type Locator struct {
	path     string
	opts     Options
	log      *slog.Logger
	debounce time.Duration // Watch waits this long after the last change
	onUnmap  func()        // tests: observes retired databases being unmapped

	cur atomic.Pointer[DB] // nil after Close

	mu     sync.Mutex // serialises Reload and Close
	closed bool       // guarded by mu
}

// NewLocator opens the database at path. log may be nil.
func NewLocator(path string, opts Options, log *slog.Logger) (*Locator, error) {
	return newLocator(path, opts, log, nil)
}

func newLocator(path string, opts Options, log *slog.Logger, onUnmap func()) (*Locator, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := open(path, opts, time.Now(), onUnmap)
	if err != nil {
		return nil, err
	}
	l := &Locator{path: path, opts: opts, log: log, debounce: time.Second, onUnmap: onUnmap}
	l.cur.Store(db)
	return l, nil
}

// Lookup returns the country of addr from the current database. It does
// not allocate. After Close it only tells Private from Unknown.
func (l *Locator) Lookup(addr netip.Addr) Result {
	if db := l.cur.Load(); db != nil {
		return db.Lookup(addr)
	}
	addr = addr.Unmap()
	if !addr.IsValid() {
		return Result{Kind: Unknown}
	}
	return Result{Kind: classify(addr)}
}

// Info describes the current database (the zero Info after Close).
func (l *Locator) Info() Info {
	if db := l.cur.Load(); db != nil {
		return db.Info()
	}
	return Info{}
}

// Reload opens the file again and makes it current. On any error the old
// database stays in use and the error names the path. A file that did not
// change (same device, inode, size and modification time) is not read
// again.
func (l *Locator) Reload() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("geoip database %s: reload after close", l.path)
	}
	old := l.cur.Load()
	if st, err := os.Stat(l.path); err == nil && old != nil && sameFile(old.id, st) {
		l.log.Debug("geoip database unchanged", "path", l.path)
		return nil
	}
	db, err := open(l.path, l.opts, time.Now(), l.onUnmap)
	if err != nil {
		return fmt.Errorf("reload, keeping the database loaded at %s: %w", old.info.Loaded.Format(time.RFC3339), err)
	}
	l.cur.Store(db)
	// old is left to its cleanup: lookups may still be reading it.
	i := db.Info()
	l.log.Info("geoip database reloaded", "path", l.path, "format", i.Format,
		"type", i.DatabaseType, "built", i.Built.Format(time.DateOnly), "size", i.Size)
	return nil
}

func sameFile(id fileID, st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && id.dev == uint64(sys.Dev) && id.ino == sys.Ino &&
		id.size == st.Size() && id.mtime == st.ModTime().UnixNano()
}

// Close stops lookups in the database; they answer Private or Unknown
// afterwards. The mapping is released once concurrent lookups are done
// with it (see Locator).
func (l *Locator) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	l.cur.Store(nil)
	return nil
}

// Watch reloads the database when its file changes, until ctx is done.
// It watches the file's directory, since updaters (geoipupdate, cron
// jobs) replace the file by renaming a new one over it, and for a
// symbolic link also the directory of its target. Changes are debounced
// (a second without events) so that a file being written is read once
// complete. Reloads and their errors are logged.
func (l *Locator) Watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		l.log.Error("geoip database watch failed; reload with SIGHUP", "path", l.path, "err", err)
		return
	}
	defer w.Close()
	targets := map[string]bool{} // cleaned paths whose events matter
	add := func(p string) {
		p = filepath.Clean(p)
		if targets[p] {
			return
		}
		if err := w.Add(filepath.Dir(p)); err != nil {
			l.log.Error("geoip database watch failed; reload with SIGHUP", "path", l.path, "dir", filepath.Dir(p), "err", err)
			return
		}
		targets[p] = true
	}
	add(l.path)
	if real, err := filepath.EvalSymlinks(l.path); err == nil {
		add(real)
	}
	if len(targets) == 0 {
		return
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if targets[filepath.Clean(ev.Name)] {
				timer.Reset(l.debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			l.log.Warn("geoip database watch", "path", l.path, "err", err)
		case <-timer.C:
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return
			}
			if err := l.Reload(); err != nil {
				l.log.Error("geoip database reload failed", "path", l.path, "err", err)
			}
			// The target of a symbolic link may have moved.
			if real, err := filepath.EvalSymlinks(l.path); err == nil {
				add(real)
			}
		}
	}
}

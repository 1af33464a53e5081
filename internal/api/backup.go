package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// BackupFunc writes a consistent copy of the store (a SQLite database
// file) to w.
type BackupFunc func(ctx context.Context, w io.Writer) error

// WithBackup serves GET /v1/backup: the store copied by backup, streamed
// to the client. The daemon never writes to a path the client names: the
// client writes the file, with its own rights.
func (s *Server) WithBackup(backup BackupFunc) *Server {
	s.backup = backup
	return s
}

// backupContentType is the media type of a SQLite database file.
const backupContentType = "application/vnd.sqlite3"

func (s *Server) serveBackup(w http.ResponseWriter, r *http.Request) {
	if s.backup == nil {
		writeError(w, http.StatusNotFound, errors.New("this daemon has no store to back up"))
		return
	}
	// Buffering would hold the whole store in memory; the copy is made on
	// disk first (VACUUM INTO), so an error before the first byte is still
	// a JSON error reply.
	sw := &startWriter{w: w}
	if err := s.backup(r.Context(), sw); err != nil {
		if !sw.started {
			s.internal(w, "backing up the store", err)
			return
		}
		// Headers are gone: cut the stream so the client sees a short body.
		s.log.Error("backup: streaming the copy", "err", err)
		panic(http.ErrAbortHandler)
	}
	if !sw.started {
		w.Header().Set("Content-Type", backupContentType)
		w.WriteHeader(http.StatusOK)
	}
	s.log.Info("store backed up", "actor", actor(r), "bytes", sw.n)
}

// startWriter sets the success headers on the first write.
type startWriter struct {
	w       http.ResponseWriter
	started bool
	n       int64
}

func (sw *startWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.started = true
		sw.w.Header().Set("Content-Type", backupContentType)
		sw.w.WriteHeader(http.StatusOK)
	}
	n, err := sw.w.Write(p)
	sw.n += int64(n)
	return n, err
}

// Backup streams a consistent copy of the daemon's store into w. It
// returns the number of bytes written; a reply cut short is an error.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/backup", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != backupContentType {
		return 0, fmt.Errorf("backup: unexpected reply of type %q", ct)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("backup: the copy was cut short after %d bytes: %w", n, err)
	}
	return n, nil
}

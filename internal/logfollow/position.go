package logfollow

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Position is where a follower stands, as saved between runs: for a file
// its identity (device, inode, the hash of its first line) and the offset
// after the last line handed on; for the journal the cursor of the last
// entry.
type Position struct {
	Source string `json:"source"` // the path or "journald", for a reader of the file
	Dev    uint64 `json:"dev,omitempty"`
	Inode  uint64 `json:"inode,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	// FirstLine is the hex SHA-256 of the file's first line (at most
	// firstLineMax bytes of it); "" when the file had no complete first
	// line yet.
	FirstLine string `json:"first_line,omitempty"`
	Cursor    string `json:"cursor,omitempty"`
}

// maxPositionFile bounds a position file's size (a cursor is ~100 bytes).
const maxPositionFile = 64 << 10

// LoadPosition reads a position file. A file that does not exist is no
// position (ok false, no error); one that is not a position is an error.
func LoadPosition(path string) (p Position, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Position{}, false, nil
	}
	if err != nil {
		return Position{}, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPositionFile+1))
	if err != nil {
		return Position{}, false, err
	}
	if len(b) > maxPositionFile {
		return Position{}, false, fmt.Errorf("%s: larger than %d bytes: not a position file", path, maxPositionFile)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return Position{}, false, fmt.Errorf("%s: %w", path, err)
	}
	if p.Offset < 0 {
		return Position{}, false, fmt.Errorf("%s: negative offset", path)
	}
	return p, true, nil
}

// SavePosition writes p to path atomically: a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so that
// a crash leaves the old position or the new one, never half of one.
func SavePosition(path string, p Position) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: no such file
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() //nolint:errcheck // best effort: the rename is done
		d.Close()
	}
	return nil
}

// firstLineMax bounds how much of a file's first line is hashed.
const firstLineMax = 4 << 10

// firstLineHash returns the hash of r's first line (at most firstLineMax
// bytes of it, the newline included), or "" when the file has no complete
// first line yet: it may still change, so it identifies nothing.
func firstLineHash(r io.ReaderAt) string {
	buf := make([]byte, firstLineMax)
	n, _ := r.ReadAt(buf, 0)
	buf = buf[:n]
	if i := indexNL(buf); i >= 0 {
		buf = buf[:i+1]
	} else if n < firstLineMax {
		return ""
	}
	h := sha256.Sum256(buf)
	return hex.EncodeToString(h[:])
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

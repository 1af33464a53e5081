// Package keyfile keeps a shared secret in a file that only its owner may
// read: the key the Dovecot door requires when the config names none.
// mailgate creates the file with a random key on its first start and reads
// the same key on every later start, and Dovecot reads it too
// (auth_policy_server_api_header = </path), so nobody has to copy it.
//
// A file that exists but cannot be used (unreadable, readable by others,
// owned by another user, empty, not a key) is an error, never a reason to
// make a new key: a new key would silently lock Dovecot out of the door,
// and a file someone else could write would hand them the key.
//
// It is not a secret store: one key per file, no rotation.
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Bounds of a key read from a file.
const (
	MinLen = 16
	MaxLen = 256
)

// Mode is the file mode of a key file mailgate creates; a file whose mode
// lets anyone but its owner in is refused.
const Mode fs.FileMode = 0o600

// Load reads the key in the file at path. It refuses a file that others
// may read or write, that another user owns, or whose content is not a
// key (MinLen to MaxLen printable ASCII characters, no line break).
func Load(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	if err := checkFile(path, fi); err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxLen+2))
	if err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	if err := Check(string(b)); err != nil {
		return "", fmt.Errorf("key file %s: %w", path, err)
	}
	return string(b), nil
}

// Exists reports whether path exists, and an error for a path that can
// neither be read nor be known missing (a permission problem, a file in
// the place of a directory).
func Exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("key file %s: %w", path, err)
}

// LoadOrCreate returns the key in the file at path, as Load does, or
// writes a new random key there (mode 0600) when no file exists. created
// tells which. The directory must exist. Two processes creating the file
// at once end up with the same key: the file appears whole, once.
func LoadOrCreate(path string) (key string, created bool, err error) {
	ok, err := Exists(path)
	if err != nil {
		return "", false, err
	}
	if ok {
		key, err := Load(path)
		return key, false, err
	}
	key = rand.Text() // 26 base32 characters, 130 random bits
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return "", false, fmt.Errorf("creating key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600; Chmod states it.
	err = tmp.Chmod(Mode)
	if err == nil {
		_, err = io.WriteString(tmp, key)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", false, fmt.Errorf("creating key file %s: %w", path, err)
	}
	// Link, unlike Rename, does not replace a file created meanwhile.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			key, err := Load(path)
			return key, false, err
		}
		return "", false, fmt.Errorf("creating key file %s: %w", path, err)
	}
	return key, true, nil
}

// checkFile checks a key file's type, mode and owner.
func checkFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("key file %s: not a regular file (%v)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key file %s: mode %04o lets other users in; run: chmod 600 %s", path, perm, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("key file %s: owned by uid %d, not by mailgate's user (uid %d), who could then choose the key; run: chown %d %s",
			path, st.Uid, os.Geteuid(), os.Geteuid(), path)
	}
	return nil
}

// Check checks a key: MinLen to MaxLen printable ASCII characters without
// spaces. A trailing line break gets its own message: Dovecot would send
// it in the header, and its auth process aborts on that.
func Check(key string) error {
	switch {
	case key == "":
		return errors.New("empty; delete the file and mailgate creates a new key at its next start (then reload Dovecot)")
	case key[len(key)-1] == '\n' || key[len(key)-1] == '\r':
		return errors.New("ends with a line break, which Dovecot would send in the X-API-Key header (and its auth process aborts on one); write the key without it, e.g. printf %s KEY > FILE")
	case len(key) > MaxLen:
		return fmt.Errorf("longer than %d bytes: not a key", MaxLen)
	}
	for _, c := range []byte(key) {
		if c <= ' ' || c >= 0x7f {
			return errors.New("holds a character other than printable ASCII without spaces: not a key")
		}
	}
	if len(key) < MinLen {
		return fmt.Errorf("%d characters, fewer than %d", len(key), MinLen)
	}
	return nil
}

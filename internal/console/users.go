package console

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/argon2"
)

// Limits of the users file.
const (
	MaxUsersFile    = 1 << 20 // bytes
	MaxPasswordLen  = 1024    // bytes
	maxUserLineLen  = 512
	maxArgonMemory  = 1 << 20 // KiB: a hash asking for more is refused
	maxArgonTime    = 20
	maxArgonThreads = 16
)

// The parameters new hashes get (RFC 9106's second recommendation: 64 MiB,
// three passes).
const (
	argonMemory  = 64 << 10 // KiB
	argonTime    = 3
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,63}$`)

// CheckUserName says what is wrong with a console user name.
func CheckUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return fmt.Errorf("user name %q: want 1 to 64 of a-z, 0-9, '.', '_', '@', '-', starting with a letter or digit", clip(name))
	}
	if name == TokenUser {
		return fmt.Errorf("user name %q is reserved for token sign-in", name)
	}
	return nil
}

// TokenUser is the name a sign-in with the admin token gets.
const TokenUser = "admin-token"

// argonHash is one parsed "$argon2id$v=19$m=M,t=T,p=P$salt$hash".
type argonHash struct {
	m, t    uint32
	p       uint8
	salt, k []byte
}

// HashPassword returns the Argon2id hash of pw with a new random salt.
func HashPassword(pw []byte) (string, error) {
	return hashWith(pw, argonMemory, argonTime, argonThreads)
}

func hashWith(pw []byte, m, t uint32, p uint8) (string, error) {
	if len(pw) == 0 || len(pw) > MaxPasswordLen {
		return "", fmt.Errorf("a password is 1 to %d bytes", MaxPasswordLen)
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	k := argon2.IDKey(pw, salt, t, m, p, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p, enc.EncodeToString(salt), enc.EncodeToString(k)), nil
}

func parseHash(s string) (argonHash, error) {
	var h argonHash
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v=19" {
		return h, errors.New("not an Argon2id (v=19) hash")
	}
	var m, t, p uint64
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return h, fmt.Errorf("parameter %q: %w", clip(kv), err)
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return h, fmt.Errorf("unknown parameter %q", clip(k))
		}
	}
	if m < 8 || m > maxArgonMemory || t < 1 || t > maxArgonTime || p < 1 || p > maxArgonThreads {
		return h, errors.New("parameters out of range")
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(f[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return h, errors.New("bad salt")
	}
	k, err := enc.DecodeString(f[5])
	if err != nil || len(k) < 16 || len(k) > 64 {
		return h, errors.New("bad key")
	}
	return argonHash{m: uint32(m), t: uint32(t), p: uint8(p), salt: salt, k: k}, nil
}

func (h *argonHash) matches(pw []byte) bool {
	k := argon2.IDKey(pw, h.salt, h.t, h.m, h.p, uint32(len(h.k)))
	return subtle.ConstantTimeCompare(k, h.k) == 1
}

// ParseUsers reads a users file: "name:hash" lines; blank lines and lines
// starting with # are skipped. Any other line is an error naming its
// number (never its hash).
func ParseUsers(b []byte) (map[string]string, error) {
	if len(b) > MaxUsersFile {
		return nil, fmt.Errorf("larger than %d bytes", MaxUsersFile)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxUserLineLen+1)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want name:hash", n)
		}
		if err := CheckUserName(name); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, err := parseHash(hash); err != nil {
			return nil, fmt.Errorf("line %d (%s): %w", n, name, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("line %d: user %s is listed twice", n, name)
		}
		out[name] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	return out, nil
}

// Users checks sign-ins against a users file, read again when it changes.
type Users struct {
	path string

	mu        sync.Mutex
	mtime     time.Time
	size      int64
	users     map[string]string
	err       error
	dummy     argonHash // checked for unknown names, so they take as long
	dummyOnce sync.Once
	sem       chan struct{}
}

// NewUsers checks sign-ins against the file at path ("" = no users).
func NewUsers(path string) *Users {
	return &Users{path: path, sem: make(chan struct{}, 2)}
}

func (u *Users) load() (map[string]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.path == "" {
		return nil, nil
	}
	fi, err := os.Stat(u.path)
	if errors.Is(err, os.ErrNotExist) {
		u.users, u.err, u.mtime = nil, nil, time.Time{}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if fi.ModTime().Equal(u.mtime) && fi.Size() == u.size && (u.users != nil || u.err != nil) {
		return u.users, u.err
	}
	b, err := readLimited(u.path)
	if err == nil {
		u.users, err = ParseUsers(b)
	}
	u.mtime, u.size, u.err = fi.ModTime(), fi.Size(), err
	if err != nil {
		u.users = nil
		return nil, fmt.Errorf("%s: %w", u.path, err)
	}
	return u.users, nil
}

// Check reports whether name signs in with pw. An unknown name costs as
// much as a known one. At most two checks run at once (each takes the
// KDF's memory); err is a users file that cannot be read.
func (u *Users) Check(name string, pw []byte) (bool, error) {
	_, ok, err := u.check(name, pw)
	return ok, err
}

// check is Check that also returns the stored hash name signed in with,
// which a session keeps to notice a password changed or a user removed.
func (u *Users) check(name string, pw []byte) (string, bool, error) {
	users, err := u.load()
	u.dummyOnce.Do(func() {
		h, _ := hashWith([]byte("no such user"), argonMemory, argonTime, argonThreads)
		u.dummy, _ = parseHash(h)
	})
	h := u.dummy
	known := false
	stored := users[name]
	if stored != "" {
		if p, perr := parseHash(stored); perr == nil {
			h, known = p, true
		}
	}
	u.sem <- struct{}{}
	ok := h.matches(pw)
	<-u.sem
	if !ok || !known {
		return "", false, err
	}
	return stored, true, err
}

// current reports whether name is still in the users file with the hash
// it signed in with (a file that cannot be read keeps no one signed in).
func (u *Users) current(name, hash string) (bool, error) {
	users, err := u.load()
	return err == nil && hash != "" && users[name] == hash, err
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxUsersFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxUsersFile {
		return nil, fmt.Errorf("larger than %d bytes", MaxUsersFile)
	}
	return b, nil
}

// SetUser adds name with hash to the users file at path, or replaces its
// hash (hash "" removes it); it reports whether name was there before.
// The file is replaced whole (mode 0600).
func SetUser(path, name, hash string) (existed bool, err error) {
	if err := CheckUserName(name); err != nil {
		return false, err
	}
	var users map[string]string
	b, err := readLimited(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		users = map[string]string{}
	case err != nil:
		return false, err
	default:
		if users, err = ParseUsers(b); err != nil {
			return false, fmt.Errorf("%s: %w", path, err)
		}
	}
	_, existed = users[name]
	if hash == "" {
		delete(users, name)
	} else {
		users[name] = hash
	}
	var out bytes.Buffer
	out.WriteString("# mailgate console users: written by 'mailgate console-user add'\n")
	for _, n := range sortedKeys(users) {
		fmt.Fprintf(&out, "%s:%s\n", n, users[n])
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".console-users-*")
	if err != nil {
		return existed, err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return existed, err
	}
	// Run as root (sudo mailgate console-user add), the file keeps its
	// owner, or a new one gets its directory's (mailgate in the package's
	// /var/lib/mailgate): the daemon's user must read it.
	if uid, gid, ok := ownerFor(path); ok && os.Geteuid() == 0 {
		if err := tmp.Chown(uid, gid); err != nil {
			tmp.Close()
			return existed, err
		}
	}
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return existed, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return existed, err
	}
	if err := tmp.Close(); err != nil {
		return existed, err
	}
	return existed, os.Rename(tmp.Name(), path)
}

// ownerFor returns the owner of the file at path, or of its directory
// when there is no file.
func ownerFor(path string) (uid, gid int, ok bool) {
	fi, err := os.Stat(path)
	if err != nil {
		if fi, err = os.Stat(filepath.Dir(path)); err != nil {
			return 0, 0, false
		}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// ListUsers returns the names in the users file at path.
func ListUsers(path string) ([]string, error) {
	b, err := readLimited(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	users, err := ParseUsers(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sortedKeys(users), nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

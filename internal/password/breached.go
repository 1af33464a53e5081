package password

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Breached is a Pwned Passwords file (https://haveibeenpwned.com/Passwords)
// searched in place: lines "HEX40:COUNT" (the SHA-1 of a password in
// upper-case hex, a colon, how often it was seen), CRLF or LF, sorted by
// hash. The file is memory-mapped read-only and searched by bisecting
// byte offsets (jump to the middle, skip to the next line start), so a
// 40 GB file costs no memory beyond the pages a search touches and about
// 30 line reads per lookup. Get the ordered-by-hash file (the official
// downloader, haveibeenpwned-downloader, writes it); the NTLM file and
// the ordered-by-count file are refused at Open.
//
// Replace the file by rename (download next to it, then mv): a file
// truncated or rewritten in place under a mapping makes reads fault;
// Count turns that fault into an error instead of a crash.
type Breached struct {
	path string

	mu   sync.RWMutex // guards data against Close during a search
	data []byte
}

// Format limits.
const (
	hashLen = 40
	// maxLine is the longest line accepted: a hash, a colon, a count of
	// up to 20 digits and CRLF.
	maxLine = hashLen + 1 + 20 + 2
	// samples is how many lines Open checks besides the first and last.
	samples = 64
)

// FormatError says why a file is not a sorted Pwned Passwords SHA-1 file.
type FormatError struct {
	Path   string
	Offset int64 // byte offset of the bad line
	Msg    string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("breached-password list %s: %s (at byte %d); it must be the Pwned Passwords SHA-1 file ordered by hash, lines HEX40:COUNT", e.Path, e.Msg, e.Offset)
}

// OpenBreached maps the file at path and checks that it looks like a
// sorted Pwned Passwords SHA-1 file: its first and last lines and
// samples lines spread over it must parse, and their hashes must be in
// increasing order.
func OpenBreached(path string) (*Breached, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("breached-password list: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("breached-password list: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, &FormatError{Path: path, Msg: "not a regular file"}
	}
	size := st.Size()
	if size == 0 {
		return nil, &FormatError{Path: path, Msg: "the file is empty"}
	}
	if int64(int(size)) != size {
		return nil, &FormatError{Path: path, Msg: "the file is too large to map"}
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("breached-password list %s: mmap: %w", path, err)
	}
	// Lookups jump around: read-ahead would only waste the page cache.
	_ = unix.Madvise(data, unix.MADV_RANDOM)
	b := &Breached{path: path, data: data}
	if err := Validate(path, data); err != nil {
		unix.Munmap(data)
		return nil, err
	}
	return b, nil
}

// Validate checks data as OpenBreached does; path names it in errors.
func Validate(path string, data []byte) error {
	if len(data) == 0 {
		return &FormatError{Path: path, Msg: "the file is empty"}
	}
	var prev []byte
	var prevOff int64 = -1
	check := func(off int) error {
		line, _, err := lineAt(data, off)
		if err != nil {
			return &FormatError{Path: path, Offset: int64(off), Msg: err.Error()}
		}
		h := line[:hashLen]
		if prev != nil && int64(off) != prevOff {
			if c := compareHex(prev, h); c >= 0 {
				return &FormatError{Path: path, Offset: int64(off), Msg: "the file is not sorted by hash (this line's hash is not greater than an earlier one's)"}
			}
		}
		prev, prevOff = h, int64(off)
		return nil
	}
	if err := check(0); err != nil {
		return err
	}
	end := textEnd(data)
	for i := 1; i <= samples; i++ {
		off := nextLine(data, end*i/(samples+1), end)
		if off >= end {
			continue
		}
		if err := check(off); err != nil {
			return err
		}
	}
	if last := lastLineStart(data); last > 0 {
		if err := check(last); err != nil {
			return err
		}
	}
	return nil
}

// Path is the file's path.
func (b *Breached) Path() string { return b.path }

// Size is the file's size in bytes.
func (b *Breached) Size() int64 { return int64(len(b.data)) }

// Close unmaps the file; later lookups fail.
func (b *Breached) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.data == nil {
		return nil
	}
	err := unix.Munmap(b.data)
	b.data = nil
	return err
}

// Count is how often the file says pw was seen; 0 when it is not listed.
func (b *Breached) Count(pw string) (int64, error) {
	sum := sha1.Sum([]byte(pw))
	var h [hashLen]byte
	hex.Encode(h[:], sum[:])
	upper(h[:])
	return b.lookup(h[:])
}

// CountHash is Count for a SHA-1 given as 40 hex digits (any case).
func (b *Breached) CountHash(sha1hex string) (int64, error) {
	if len(sha1hex) != hashLen {
		return 0, errNotHex
	}
	var h [hashLen]byte
	copy(h[:], sha1hex)
	upper(h[:])
	for _, c := range h {
		if !isHex(c) {
			return 0, errNotHex
		}
	}
	return b.lookup(h[:])
}

var errClosed = errors.New("password: breached-password list is closed")

func (b *Breached) lookup(h []byte) (n int64, err error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.data == nil {
		return 0, errClosed
	}
	// A file truncated under the mapping raises SIGBUS on access; make it
	// a panic of this goroutine, and the panic an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			n, err = 0, fmt.Errorf("breached-password list %s: read fault (was the file changed in place? replace it by rename): %v", b.path, r)
		}
	}()
	return search(b.data, h)
}

// search bisects data, a sorted file, for the hash h (upper case). lo
// and hi are always line starts (or len(data)); each step reads the
// first line that starts at or after the middle.
func search(data, h []byte) (int64, error) {
	// hi starts at the end of the last line's text, so that trailing line
	// ends never look like an empty line.
	lo, hi := 0, textEnd(data)
	for lo < hi {
		mid := lo + (hi-lo)/2
		s := nextLine(data, mid, hi)
		if s >= hi {
			// No line starts in [mid, hi): read the range's first line.
			s = lo
		}
		line, next, err := lineAt(data, s)
		if err != nil {
			return 0, fmt.Errorf("breached-password list: byte %d: %w", s, err)
		}
		switch c := compareHex(line[:hashLen], h); {
		case c == 0:
			return parseCount(line[hashLen+1:])
		case c < 0:
			lo = next
		default:
			hi = s
		}
	}
	return 0, nil
}

// nextLine is the first line start at or after off, searching no further
// than hi; hi when there is none.
func nextLine(data []byte, off, hi int) int {
	if off <= 0 {
		return 0
	}
	if off >= hi {
		return hi
	}
	i := bytes.IndexByte(data[off-1:hi], '\n')
	if i < 0 {
		return hi
	}
	return off + i
}

// textEnd is len(data) without the line ends at its end.
func textEnd(data []byte) int {
	hi := len(data)
	for hi > 0 && (data[hi-1] == '\n' || data[hi-1] == '\r') {
		hi--
	}
	return hi
}

// lastLineStart is the start of the last non-empty line.
func lastLineStart(data []byte) int {
	i := bytes.LastIndexByte(data[:textEnd(data)], '\n')
	return i + 1
}

// lineAt parses the line starting at off: it returns the line without
// its end (hash, colon, count) and the start of the next line.
func lineAt(data []byte, off int) (line []byte, next int, err error) {
	rest := data[off:]
	if len(rest) > maxLine {
		rest = rest[:maxLine]
	}
	end := bytes.IndexByte(rest, '\n')
	next = off + end + 1
	if end < 0 {
		if off+len(rest) < len(data) {
			return nil, 0, errors.New("line too long")
		}
		end = len(rest) // the last line, without a newline
		next = len(data)
	}
	line = rest[:end]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if err := checkLine(line); err != nil {
		return nil, 0, err
	}
	return line, next, nil
}

// checkLine checks "HEX40:COUNT".
func checkLine(line []byte) error {
	if len(line) < hashLen+2 || line[hashLen] != ':' {
		i := bytes.IndexByte(line, ':')
		if i == 32 {
			return errors.New("a 32-digit hash: this is the NTLM file, not the SHA-1 one")
		}
		return fmt.Errorf("not a line HEX40:COUNT: %q", shorten(line))
	}
	for _, c := range line[:hashLen] {
		if !isHex(c) {
			return fmt.Errorf("not a hex hash: %q", shorten(line))
		}
	}
	if _, err := parseCount(line[hashLen+1:]); err != nil {
		return err
	}
	return nil
}

func parseCount(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 19 {
		return 0, fmt.Errorf("bad count %q", shorten(b))
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad count %q", shorten(b))
		}
	}
	return strconv.ParseInt(string(b), 10, 64)
}

func shorten(b []byte) string {
	if len(b) > 60 {
		b = b[:60]
	}
	return string(b)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f'
}

func upper(b []byte) {
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
}

// compareHex compares two 40-digit hex strings, ignoring case.
func compareHex(a, b []byte) int {
	for i := range hashLen {
		x, y := a[i], b[i]
		if x >= 'a' {
			x -= 'a' - 'A'
		}
		if y >= 'a' {
			y -= 'a' - 'A'
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

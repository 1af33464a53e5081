// Package geoip finds the country of a client address in a country
// database file: a MaxMind DB file (.mmdb: GeoLite2/GeoIP2 Country or City,
// DB-IP lite, the ip-location-db country files) or an IP2Location BIN file
// (DB1 and up, IPv4 or IPv6 editions).
//
// The file is memory-mapped, checked when it is opened (a truncated or
// corrupt file is an error at Open, never a panic later) and looked up
// without allocating. A Locator holds the current database for the engine:
// it reloads the file when it changes (Watch, for geoipupdate and cron jobs
// that replace it by rename) or when asked (Reload, on SIGHUP), and keeps
// the old database when the new file is broken.
//
// Every lookup answers with a Kind: Found (the database names the
// country), Private (the database has no country and the address is
// private, loopback, link-local, CGNAT, ULA or unspecified) or Unknown.
// The database is asked first, so a test database may map loopback ranges
// to countries.
//
// It is not a policy: what a country, a private or an unknown address
// means for a login is the policy engine's business. It does no network
// I/O and never downloads a database.
package geoip

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// MaxFileSize is the largest database file Open accepts. The largest
// commercial country/city files are well below it.
const MaxFileSize = 2 << 30

// Kind says what a lookup found.
type Kind uint8

const (
	Found   Kind = iota // the database names the country
	Private             // no country in the database; a private, loopback, link-local, CGNAT, ULA or unspecified address
	Unknown             // no country in the database
)

// String returns "found", "private" or "unknown".
func (k Kind) String() string {
	switch k {
	case Found:
		return "found"
	case Private:
		return "private"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Result is the answer to a lookup.
type Result struct {
	// Country is the upper-case ISO 3166-1 alpha-2 code ("DE") when Kind is
	// Found, else "".
	Country string
	Kind    Kind
}

// Format names of the database files Open reads.
const (
	FormatAuto        = "auto"
	FormatMMDB        = "mmdb"
	FormatIP2Location = "ip2location"
)

// Options say how to read a database file.
type Options struct {
	// Format is "auto" (or ""), detected from the file content, "mmdb" or
	// "ip2location".
	Format string
	// CountryField is, for mmdb files only, the dotted path of the
	// country code in a record, e.g. "country.iso_code". "" detects it:
	// country.iso_code (MaxMind, DB-IP), then country_code
	// (ip-location-db), then country as a plain string. With
	// country.iso_code, a record without a country falls back to
	// registered_country.iso_code (MaxMind does that for some anycast and
	// satellite networks).
	CountryField string
}

// Info describes a loaded database file.
type Info struct {
	Path         string
	Format       string    // "mmdb" or "ip2location"
	CountryField string    // mmdb: the path of the country code in use; ip2location: "country_short"
	DatabaseType string    // mmdb metadata database_type (e.g. "GeoLite2-Country"), or "IP2Location DB1"
	IPv6         bool      // the file has IPv6 data
	Built        time.Time // build date stated in the file (UTC)
	Loaded       time.Time // when Open read it
	Size         int64     // file size in bytes
	ModTime      time.Time // file modification time
	// Faults counts lookups that found the file truncated under them
	// (rewritten in place instead of replaced by rename) and answered
	// without a country.
	Faults int64
}

// backend is one file format's lookup. lookup returns a code index (see
// codeIndex), 0 for no country.
type backend interface {
	lookup(addr netip.Addr) uint16
}

// DB is one opened database file. Lookup is safe for concurrent use.
// Close must not be called while a Lookup may run; a Locator takes care
// of that for reloads.
type DB struct {
	be     backend
	info   Info
	id     fileID
	codes  string // all 676 two-letter codes, "AAABAC…ZZ", so a code is a substring: no allocation
	m      *mapping
	closed atomic.Bool
	faults atomic.Int64
}

// fileID identifies a version of a file, to skip reloading an unchanged one.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

// mapping is a read-only memory map of a file. It is unmapped once, by
// Close or by a cleanup when its DB became unreachable.
type mapping struct {
	data     []byte
	unmapped atomic.Bool
	onUnmap  func() // tests observe the cleanup
}

func (m *mapping) unmap() error {
	if !m.unmapped.CompareAndSwap(false, true) {
		return nil
	}
	err := unix.Munmap(m.data)
	if m.onUnmap != nil {
		m.onUnmap()
	}
	return err
}

// Open maps and checks the database file at path.
func Open(path string, opts Options) (*DB, error) {
	return open(path, opts, time.Now(), nil)
}

func open(path string, opts Options, now time.Time, onUnmap func()) (*DB, error) {
	format := opts.Format
	switch format {
	case "", FormatAuto:
		format = FormatAuto
	case FormatMMDB, FormatIP2Location:
	default:
		return nil, fmt.Errorf("geoip database %s: unknown format %q (want auto, mmdb or ip2location)", path, opts.Format)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip database: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("geoip database: %w", err)
	}
	switch {
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("geoip database %s: not a regular file", path)
	case st.Size() == 0:
		return nil, fmt.Errorf("geoip database %s: empty file", path)
	case st.Size() > MaxFileSize:
		return nil, fmt.Errorf("geoip database %s: %d bytes, more than the limit of %d", path, st.Size(), int64(MaxFileSize))
	}
	id := fileID{size: st.Size(), mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(sys.Dev), sys.Ino
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("geoip database %s: mmap: %w", path, err)
	}
	m := &mapping{data: data, onUnmap: onUnmap}
	if format == FormatAuto {
		format = detectFormatGuarded(data)
		if format == "" {
			m.unmap()
			return nil, fmt.Errorf("geoip database %s: not a MaxMind DB (.mmdb) nor an IP2Location BIN file", path)
		}
	}
	if opts.CountryField != "" && format == FormatIP2Location {
		m.unmap()
		return nil, fmt.Errorf("geoip database %s: an IP2Location BIN file; country_field is for mmdb files only", path)
	}
	db := &DB{
		id:    id,
		codes: allCodes(),
		m:     m,
		info:  Info{Path: path, Format: format, Loaded: now, Size: st.Size(), ModTime: st.ModTime()},
	}
	db.be, err = openBackend(format, data, opts.CountryField, &db.info)
	if err != nil {
		m.unmap()
		return nil, fmt.Errorf("geoip database %s: %w", path, err)
	}
	// A DB dropped without Close (a Locator's retired databases) is
	// unmapped once no goroutine can reach it any more.
	runtime.AddCleanup(db, func(m *mapping) { m.unmap() }, m)
	return db, nil
}

// openBackend checks the mapped file; a file truncated in place while it
// is read is an error, not a crash (see lookupGuarded).
func openBackend(format string, data []byte, field string, info *Info) (be backend, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if !isFault(r) {
				panic(r)
			}
			be, err = nil, errors.New("file changed while being read")
		}
	}()
	if format == FormatMMDB {
		return openMMDB(data, field, info)
	}
	return openBIN(data, info)
}

// mmdbMarker starts the metadata section of a MaxMind DB file, which is at
// most 128 KiB from its end (MaxMind DB spec, "Database Metadata").
var mmdbMarker = []byte("\xab\xcd\xefMaxMind.com")

const mmdbMetadataMax = 128 << 10

func detectFormatGuarded(data []byte) (format string) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if !isFault(r) {
				panic(r)
			}
			format = ""
		}
	}()
	return detectFormat(data)
}

func detectFormat(data []byte) string {
	tail := data[max(0, len(data)-mmdbMetadataMax):]
	if bytes.LastIndex(tail, mmdbMarker) >= 0 {
		return FormatMMDB
	}
	if _, err := parseBINHeader(data); err == nil {
		return FormatIP2Location
	}
	return ""
}

// Lookup returns the country of addr. An IPv4-mapped IPv6 address is
// looked up as the IPv4 address. It does not allocate.
func (db *DB) Lookup(addr netip.Addr) Result {
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return Result{Kind: Unknown}
	}
	if !db.closed.Load() {
		c := db.lookupGuarded(addr)
		// The mapping is unmapped by a cleanup once db is unreachable:
		// keep db reachable until the read of the mapping is done.
		runtime.KeepAlive(db)
		if c != 0 {
			return Result{Country: db.code(c), Kind: Found}
		}
	}
	return Result{Kind: classify(addr)}
}

// lookupGuarded is db.be.lookup, turning a fault on the mapping into "no
// country". Replacing a file by rename leaves the mapping intact, but
// truncating or rewriting it in place (cp, unzip -o, wget -O) makes reads
// past its new end fault with SIGBUS, which would kill the daemon; the
// reload that follows the change repairs lookups.
func (db *DB) lookupGuarded(addr netip.Addr) (c uint16) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if !isFault(r) {
				panic(r)
			}
			db.faults.Add(1)
			c = 0
		}
	}()
	return db.be.lookup(addr)
}

// isFault reports whether a recovered panic is a memory fault turned into
// a panic by debug.SetPanicOnFault.
func isFault(r any) bool {
	_, ok := r.(interface{ Addr() uintptr })
	return ok
}

// Info describes the database.
func (db *DB) Info() Info {
	i := db.info
	i.Faults = db.faults.Load()
	return i
}

// Close unmaps the file. Lookups after Close find no country; a Lookup
// running concurrently with Close may crash, so a DB shared between
// goroutines is closed by the one that knows they are done (Locator does
// not close retired databases itself, see Locator).
func (db *DB) Close() error {
	db.closed.Store(true)
	if err := db.m.unmap(); err != nil {
		return fmt.Errorf("geoip database %s: munmap: %w", db.info.Path, err)
	}
	return nil
}

// IsPrivate reports whether addr is an address with no country: private
// (RFC 1918, ULA fc00::/7), loopback, link-local, shared address space
// (CGNAT, 100.64.0.0/10) or unspecified. A Lookup whose database has no
// country for such an address answers Private.
func IsPrivate(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr.IsPrivate() || addr.IsLoopback() || addr.IsLinkLocalUnicast() || addr.IsUnspecified() {
		return true
	}
	if addr.Is4() {
		a := addr.As4()
		return a[0] == 100 && a[1]&0xc0 == 64
	}
	return false
}

func classify(addr netip.Addr) Kind {
	if IsPrivate(addr) {
		return Private
	}
	return Unknown
}

// codeIndex maps a two-letter country code to 1..676; anything else
// (including IP2Location's "-") to 0. Lower case letters are accepted.
func codeIndex(a, b byte) uint16 {
	a &^= 0x20 // ASCII upper case; non-letters fail the range check either way
	b &^= 0x20
	if a < 'A' || a > 'Z' || b < 'A' || b > 'Z' {
		return 0
	}
	return uint16(a-'A')*26 + uint16(b-'A') + 1
}

func codeIndexString(s string) uint16 {
	if len(s) != 2 {
		return 0
	}
	return codeIndex(s[0], s[1])
}

func (db *DB) code(c uint16) string {
	i := int(c-1) * 2
	return db.codes[i : i+2]
}

func allCodes() string {
	var b strings.Builder
	b.Grow(676 * 2)
	for a := byte('A'); a <= 'Z'; a++ {
		for c := byte('A'); c <= 'Z'; c++ {
			b.WriteByte(a)
			b.WriteByte(c)
		}
	}
	return b.String()
}

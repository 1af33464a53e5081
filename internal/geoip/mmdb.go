package geoip

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MaxMind DB files (https://maxmind.github.io/MaxMind-DB/) are read by
// maxminddb-golang over our own mapping of the file. Decoding a record's
// country string allocates, so the decoded country of each data record is
// cached by the record's data-section offset: a country file has a few
// hundred to a few thousand distinct records, each decoded once.

// fieldCandidates are the country code paths detected, in order:
// MaxMind GeoIP2/GeoLite2 and DB-IP (country.iso_code), ip-location-db
// (country_code), and files with the code as a plain string (country).
var fieldCandidates = [...]string{"country.iso_code", "country_code", "country"}

// registeredField is the fallback of country.iso_code: MaxMind leaves out
// country for some anycast and satellite networks but names the
// registered country.
const registeredField = "registered_country.iso_code"

// sampleNetworks is how many networks with data Open reads to detect or
// check the country field, sampleSteps how many networks it reads at most,
// empty ones included: a hostile tree whose nodes share children could
// otherwise make the walk exponential without yielding any network.
const (
	sampleNetworks = 4096
	sampleSteps    = 1 << 16
)

// sample calls f with up to sampleNetworks networks that have data, until
// f returns true.
func (m *mmdbDB) sample(f func(maxminddb.Result) bool) (n int, err error) {
	steps := 0
	for res := range m.r.Networks(maxminddb.IncludeNetworksWithoutData()) {
		if err := res.Err(); err != nil {
			return n, fmt.Errorf("MaxMind DB: %w", err)
		}
		if steps++; steps > sampleSteps {
			break
		}
		if !res.Found() {
			continue
		}
		n++
		if f(res) || n >= sampleNetworks {
			break
		}
	}
	return n, nil
}

type mmdbDB struct {
	r        *maxminddb.Reader
	path     []any // the country field, split
	fallback []any // registered_country.iso_code, or nil
	v4only   bool
	cache    offsetCache
}

func openMMDB(data []byte, field string, info *Info) (backend, error) {
	r, err := maxminddb.OpenBytes(data, maxminddb.DisableStringCache())
	if err != nil {
		return nil, fmt.Errorf("MaxMind DB: %w", err)
	}
	// Verify walks the search tree and decodes every data record once, so
	// that a corrupt file fails here and not on some lookup later. It also
	// insists on metadata that lookups do not need (a description, a
	// database type), which files made by other tools may lack: fill those
	// in, so that only the structure is judged.
	dbType := r.Metadata.DatabaseType
	if dbType == "" {
		r.Metadata.DatabaseType = "unknown"
	}
	if len(r.Metadata.Description) == 0 {
		r.Metadata.Description = map[string]string{"en": "none"}
	}
	if err := r.Verify(); err != nil {
		return nil, fmt.Errorf("MaxMind DB: %w", err)
	}
	m := &mmdbDB{r: r, v4only: r.Metadata.IPVersion == 4}
	if field == "" {
		field, err = m.detectField()
	} else {
		err = m.checkField(field)
	}
	if err != nil {
		return nil, err
	}
	m.path = splitPath(field)
	if field == fieldCandidates[0] {
		m.fallback = splitPath(registeredField)
	}
	m.cache.init()
	info.CountryField = field
	info.DatabaseType = dbType
	info.IPv6 = r.Metadata.IPVersion == 6
	info.Built = r.Metadata.BuildTime().UTC()
	return m, nil
}

func splitPath(field string) []any {
	parts := strings.Split(field, ".")
	path := make([]any, len(parts))
	for i, p := range parts {
		path[i] = p
	}
	return path
}

// codeAt decodes the string at path in res's record as a country code; 0
// when the path is missing, not a string or not a two-letter code.
func codeAt(res maxminddb.Result, path []any) uint16 {
	var s string
	if err := res.DecodePath(&s, path...); err != nil {
		return 0
	}
	return codeIndexString(s)
}

func (m *mmdbDB) detectField() (string, error) {
	paths := make([][]any, len(fieldCandidates))
	for i, f := range fieldCandidates {
		paths[i] = splitPath(f)
	}
	registered := splitPath(registeredField)
	found, sawRegistered := "", false
	n, err := m.sample(func(res maxminddb.Result) bool {
		for i, p := range paths {
			if codeAt(res, p) != 0 {
				found = fieldCandidates[i]
				return true
			}
		}
		if codeAt(res, registered) != 0 {
			sawRegistered = true
		}
		return false
	})
	switch {
	case err != nil:
		return "", err
	case found != "":
		return found, nil
	case n == 0 || sawRegistered:
		// An empty file (or one of MaxMind's with only registered
		// countries in the sample) uses MaxMind's layout.
		return fieldCandidates[0], nil
	}
	return "", fmt.Errorf("no country code in the first %d networks at %s; set the country field (country_field)",
		n, strings.Join(fieldCandidates[:], ", "))
}

func (m *mmdbDB) checkField(field string) error {
	for _, p := range strings.Split(field, ".") {
		if p == "" {
			return fmt.Errorf("country field %q is not a dotted path like country.iso_code", field)
		}
	}
	path := splitPath(field)
	ok := false
	n, err := m.sample(func(res maxminddb.Result) bool {
		ok = codeAt(res, path) != 0
		return ok
	})
	if err != nil || ok || n == 0 {
		return err
	}
	return fmt.Errorf("country field %q: no two-letter code there in the first %d networks", field, n)
}

func (m *mmdbDB) lookup(addr netip.Addr) uint16 {
	if addr.Is6() {
		if m.v4only {
			return 0 // the library would build an error for it
		}
		if a := addr.As16(); [12]byte(a[:12]) == [12]byte{} {
			// ::/96, IPv4-compatible (deprecated, RFC 4291 2.5.5.1):
			// MaxMind's tree holds IPv4 there, but ::1 is not 0.0.0.1.
			return 0
		}
	}
	res := m.r.Lookup(addr)
	if !res.Found() {
		return 0
	}
	off := uint64(res.Offset())
	if c, ok := m.cache.get(off); ok {
		return c
	}
	c := codeAt(res, m.path)
	if c == 0 && m.fallback != nil {
		c = codeAt(res, m.fallback)
	}
	m.cache.put(off, c)
	return c
}

// offsetCache maps data-section offsets to code indexes. Readers never
// lock or write shared memory: they load the table pointer and probe
// slots atomically. Writers (cache misses, rare) take mu, insert with
// linear probing, and replace the table by a twice larger copy when it is
// three quarters full. Nothing is ever deleted. A slot holds
// (offset+1)<<32 | code, 0 when empty.
type offsetCache struct {
	tab atomic.Pointer[[]atomic.Uint64]

	mu sync.Mutex
	n  int // entries, guarded by mu
}

const (
	cacheInitSlots = 1 << 10
	cacheMaxSlots  = 1 << 20 // 8 MiB; a City database with more records decodes the rest each time
)

func (c *offsetCache) init() {
	t := make([]atomic.Uint64, cacheInitSlots)
	c.tab.Store(&t)
}

func cacheHash(off uint64, slots int) int {
	return int((off * 0x9e3779b97f4a7c15) >> 32 & uint64(slots-1))
}

func (c *offsetCache) get(off uint64) (uint16, bool) {
	if off >= 1<<32-1 {
		return 0, false
	}
	t := *c.tab.Load()
	key := off + 1
	for i := cacheHash(off, len(t)); ; i = (i + 1) & (len(t) - 1) {
		e := t[i].Load()
		if e == 0 {
			return 0, false
		}
		if e>>32 == key {
			return uint16(e), true
		}
	}
}

func (c *offsetCache) put(off uint64, code uint16) {
	if off >= 1<<32-1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := *c.tab.Load()
	if (c.n+1)*4 > len(t)*3 {
		if len(t) >= cacheMaxSlots {
			return
		}
		bigger := make([]atomic.Uint64, len(t)*2)
		for i := range t {
			if e := t[i].Load(); e != 0 {
				insertLocked(bigger, e)
			}
		}
		c.tab.Store(&bigger)
		t = bigger
	}
	if insertLocked(t, (off+1)<<32|uint64(code)) {
		c.n++
	}
}

// insertLocked puts entry e in t unless its offset is there already.
func insertLocked(t []atomic.Uint64, e uint64) bool {
	for i := cacheHash(e>>32-1, len(t)); ; i = (i + 1) & (len(t) - 1) {
		old := t[i].Load()
		if old == 0 {
			t[i].Store(e)
			return true
		}
		if old>>32 == e>>32 {
			return false
		}
	}
}

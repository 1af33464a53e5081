package geoip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// IP2Location BIN files, as IP2Location's own readers (ip2location-go,
// IP2Location-Python, IP2Location.php) read them. All integers are little
// endian; offsets in the header are 1-based file positions.
//
//	byte 0     database type (1 = DB1 … 26 = DB26)
//	byte 1     columns per row, the IP column included
//	bytes 2-4  build date: year-2000, month, day
//	bytes 5-8  IPv4 row count      bytes 9-12   IPv4 table position
//	bytes 13-16 IPv6 row count     bytes 17-20  IPv6 table position
//	bytes 21-24 IPv4 index position bytes 25-28 IPv6 index position (0 = none)
//	byte 29    product code (1 = IP2Location; 0 in files before 2021)
//	byte 30    license code        bytes 31-34  database size
//
// An IPv4 row is columns×4 bytes: ip_from (uint32), then one uint32 per
// column. An IPv6 row is 12 bytes longer, its ip_from being a uint128. A
// row covers [its ip_from, the next row's ip_from); the last row is the
// upper bound only. The country column comes right after ip_from in every
// database type; it holds the 0-based file offset of the short code, a
// length byte and the letters ("\x02DE"; "\x01-" when unknown), followed
// by the country name the same way.
//
// The index of each family has 65536 entries, one per value of the
// address's top 16 bits, each two uint32: the first and last row to
// search. IPv4 addresses are looked up in the IPv4 table; as IP2Location's
// readers do, 6to4 (2002::/16) and Teredo (2001::/32) addresses are looked
// up as the IPv4 address they carry, and an IPv4 address in a file with
// only an IPv6 table as ::ffff:a.b.c.d.

const (
	binHeaderLen  = 35
	binIndexLen   = 65536 * 8
	binCountryCol = 1 // 0-based column of the country pointer, after ip_from
)

type binHeader struct {
	dbType, columns      uint8
	year, month, day     uint8
	v4Count, v4Pos       uint32
	v6Count, v6Pos       uint32
	v4IndexPos, v6Index  uint32
	product, licenseCode uint8
}

func (h *binHeader) v4Width() uint64 { return uint64(h.columns) * 4 }
func (h *binHeader) v6Width() uint64 { return uint64(h.columns)*4 + 12 }

// parseBINHeader reads the header and checks that it is plausible and that
// the tables and indexes it names lie inside data.
func parseBINHeader(data []byte) (binHeader, error) {
	var h binHeader
	if len(data) < binHeaderLen {
		return h, errors.New("IP2Location BIN: shorter than its header")
	}
	le := binary.LittleEndian
	h = binHeader{
		dbType: data[0], columns: data[1],
		year: data[2], month: data[3], day: data[4],
		v4Count: le.Uint32(data[5:]), v4Pos: le.Uint32(data[9:]),
		v6Count: le.Uint32(data[13:]), v6Pos: le.Uint32(data[17:]),
		v4IndexPos: le.Uint32(data[21:]), v6Index: le.Uint32(data[25:]),
		product: data[29], licenseCode: data[30],
	}
	switch {
	case h.dbType < 1 || h.dbType > 32:
		return h, fmt.Errorf("IP2Location BIN: database type %d is not DB1 to DB32", h.dbType)
	case h.columns < 2 || h.columns > 64:
		return h, fmt.Errorf("IP2Location BIN: %d columns, want 2 to 64", h.columns)
	case h.month < 1 || h.month > 12 || h.day < 1 || h.day > 31:
		return h, fmt.Errorf("IP2Location BIN: build date %d-%d-%d is not a date", h.year, h.month, h.day)
	case h.product != 1 && !(h.product == 0 && h.year <= 20):
		// IP2Location's readers refuse product codes other than 1 in
		// files built after 2020 (2 is IP2Proxy).
		return h, fmt.Errorf("IP2Location BIN: product code %d is not IP2Location", h.product)
	case h.v4Count < 2 && h.v6Count < 2:
		return h, errors.New("IP2Location BIN: no IPv4 or IPv6 rows")
	}
	size := uint64(len(data))
	table := func(name string, count, pos uint32, width uint64) error {
		if count < 2 {
			return nil
		}
		if pos <= binHeaderLen || uint64(pos-1)+uint64(count)*width > size {
			return fmt.Errorf("IP2Location BIN: %s table (%d rows at %d) outside the file of %d bytes", name, count, pos, size)
		}
		return nil
	}
	index := func(name string, pos uint32) error {
		if pos != 0 && (pos <= binHeaderLen || uint64(pos-1)+binIndexLen > size) {
			return fmt.Errorf("IP2Location BIN: %s index at %d outside the file of %d bytes", name, pos, size)
		}
		return nil
	}
	if err := errors.Join(
		table("IPv4", h.v4Count, h.v4Pos, h.v4Width()),
		table("IPv6", h.v6Count, h.v6Pos, h.v6Width()),
		index("IPv4", h.v4IndexPos),
		index("IPv6", h.v6Index),
	); err != nil {
		return h, err
	}
	return h, nil
}

type binDB struct {
	data []byte
	// Tables and indexes: 0-based offsets; a count below 2 means no table,
	// an index offset of -1 no index.
	v4Off, v4Count, v4Width int
	v6Off, v6Count, v6Width int
	v4Index, v6Index        int
}

func openBIN(data []byte, info *Info) (backend, error) {
	h, err := parseBINHeader(data)
	if err != nil {
		return nil, err
	}
	b := &binDB{
		data:    data,
		v4Off:   int(h.v4Pos) - 1,
		v4Count: int(h.v4Count),
		v4Width: int(h.v4Width()),
		v6Off:   int(h.v6Pos) - 1,
		v6Count: int(h.v6Count),
		v6Width: int(h.v6Width()),
		v4Index: int(h.v4IndexPos) - 1,
		v6Index: int(h.v6Index) - 1,
	}
	if b.v4Count < 2 {
		b.v4Count = 0
	}
	if b.v6Count < 2 {
		b.v6Count = 0
	}
	// Binary search needs sorted rows: check them once, here.
	for i := 1; i < b.v4Count; i++ {
		if b.from4(i) < b.from4(i-1) {
			return nil, fmt.Errorf("IP2Location BIN: IPv4 row %d is out of order", i)
		}
	}
	for i := 1; i < b.v6Count; i++ {
		if b.from6(i).less(b.from6(i - 1)) {
			return nil, fmt.Errorf("IP2Location BIN: IPv6 row %d is out of order", i)
		}
	}
	info.CountryField = "country_short"
	info.DatabaseType = fmt.Sprintf("IP2Location DB%d", h.dbType)
	info.IPv6 = b.v6Count > 0
	info.Built = time.Date(2000+int(h.year), time.Month(h.month), int(h.day), 0, 0, 0, 0, time.UTC)
	return b, nil
}

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (b *binDB) from4(i int) uint32 {
	return binary.LittleEndian.Uint32(b.data[b.v4Off+i*b.v4Width:])
}

func (b *binDB) from6(i int) u128 {
	p := b.data[b.v6Off+i*b.v6Width:]
	return u128{hi: binary.LittleEndian.Uint64(p[8:]), lo: binary.LittleEndian.Uint64(p)}
}

// bounds narrows the rows to search [lo, hi] with the index entry at
// off+slot*8, if there is an index. A row is searched with the next
// row's ip_from as its end, so hi is at most count-2.
func (b *binDB) bounds(index, slot, count int) (lo, hi int) {
	lo, hi = 0, count-2
	if index >= 0 {
		p := b.data[index+slot*8:]
		lo = max(lo, int(binary.LittleEndian.Uint32(p)))
		hi = min(hi, int(binary.LittleEndian.Uint32(p[4:])))
	}
	return lo, hi
}

// country reads the short code the pointer ptr names; 0 for "-", for a
// pointer outside the file and for anything not a two-letter code.
func (b *binDB) country(ptr uint32) uint16 {
	p := uint64(ptr)
	if p+3 > uint64(len(b.data)) || b.data[p] != 2 {
		return 0
	}
	return codeIndex(b.data[p+1], b.data[p+2])
}

func (b *binDB) lookup(addr netip.Addr) uint16 {
	if addr.Is4() {
		a := addr.As4()
		return b.lookup4(binary.BigEndian.Uint32(a[:]))
	}
	a := addr.As16()
	switch {
	case a[0] == 0x20 && a[1] == 0x02: // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
		return b.lookup4(binary.BigEndian.Uint32(a[2:6]))
	case a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0: // Teredo: the client's address, inverted, in the last 32 bits
		return b.lookup4(^binary.BigEndian.Uint32(a[12:16]))
	}
	return b.lookup6(u128{hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:])})
}

func (b *binDB) lookup4(ip uint32) uint16 {
	if b.v4Count == 0 {
		if b.v6Count == 0 {
			return 0
		}
		return b.lookup6(u128{hi: 0, lo: 0xffff<<32 | uint64(ip)})
	}
	if ip == math.MaxUint32 {
		ip-- // the last row starts at the top address: it only bounds the one before
	}
	lo, hi := b.bounds(b.v4Index, int(ip>>16), b.v4Count)
	for lo <= hi {
		mid := int(uint(lo+hi) >> 1)
		switch {
		case ip < b.from4(mid):
			hi = mid - 1
		case ip >= b.from4(mid+1):
			lo = mid + 1
		default:
			off := b.v4Off + mid*b.v4Width + binCountryCol*4
			return b.country(binary.LittleEndian.Uint32(b.data[off:]))
		}
	}
	return 0
}

func (b *binDB) lookup6(ip u128) uint16 {
	if b.v6Count == 0 {
		return 0
	}
	if ip.hi == math.MaxUint64 && ip.lo == math.MaxUint64 {
		ip.lo--
	}
	lo, hi := b.bounds(b.v6Index, int(ip.hi>>48), b.v6Count)
	for lo <= hi {
		mid := int(uint(lo+hi) >> 1)
		switch {
		case ip.less(b.from6(mid)):
			hi = mid - 1
		case !ip.less(b.from6(mid + 1)):
			lo = mid + 1
		default:
			off := b.v6Off + mid*b.v6Width + 16 + (binCountryCol-1)*4
			return b.country(binary.LittleEndian.Uint32(b.data[off:]))
		}
	}
	return 0
}

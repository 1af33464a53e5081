package geoip

import (
	"encoding/binary"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/internal/geoip/geoiptest"
)

// handBIN is an IPv4 DB1 file assembled byte by byte from the layout
// IP2Location's readers use (IP2Location-Python _get_record/_read_record,
// ip2location-go query): not by geoiptest, so that the writer and the
// reader are checked against the format and not only against each other.
func handBIN() []byte {
	header := []byte{
		1,         // database type DB1
		2,         // columns: ip_from, country
		24, 5, 17, // built 2024-05-17
		4, 0, 0, 0, // IPv4 rows
		65, 0, 0, 0, // IPv4 table at position 65 (1-based): file offset 64
		4, 0, 0, 0, // IPv6 rows
		97, 0, 0, 0, // IPv6 table at position 97: offset 96
		0, 0, 0, 0, // no IPv4 index
		0, 0, 0, 0, // no IPv6 index
		1,          // product code: IP2Location
		1,          // license code
		0, 0, 0, 0, // database size (unused)
	}
	data := make([]byte, 64)
	copy(data, header)
	// IPv4 rows at 64, 8 bytes each: ip_from, pointer to the country.
	// Strings at 176: "-" at 176 ("\x01-\x01-"), DE at 180.
	data = append(data,
		0x00, 0x00, 0x00, 0x00, 176, 0, 0, 0, // 0.0.0.0 -
		0x00, 0x03, 0x02, 0x01, 180, 0, 0, 0, // 1.2.3.0 DE
		0x00, 0x04, 0x02, 0x01, 176, 0, 0, 0, // 1.2.4.0 -
		0xff, 0xff, 0xff, 0xff, 176, 0, 0, 0, // 255.255.255.255: bounds the row before
	)
	// IPv6 rows at 96, 20 bytes each: 16-byte little-endian ip_from,
	// pointer.
	data = append(data,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 176, 0, 0, 0, // :: -
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb8, 0x0d, 0x01, 0x20, 180, 0, 0, 0, // 2001:db8:: DE
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb9, 0x0d, 0x01, 0x20, 176, 0, 0, 0, // 2001:db9:: -
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 176, 0, 0, 0,
	)
	if len(data) != 176 {
		panic("handBIN layout")
	}
	data = append(data, 1, '-', 1, '-')
	data = append(data, 2, 'D', 'E', 7, 'G', 'e', 'r', 'm', 'a', 'n', 'y')
	return data
}

func TestBINHandAssembled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hand.bin")
	if err := os.WriteFile(path, handBIN(), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if i := db.Info(); i.Format != FormatIP2Location || i.Built.Format("2006-01-02") != "2024-05-17" || !i.IPv6 {
		t.Errorf("Info() = %+v", i)
	}
	for addr, want := range map[string]string{
		"1.2.3.0": "DE", "1.2.3.255": "DE", "1.2.2.255": "", "1.2.4.0": "", "0.0.0.1": "",
		"255.255.255.255": "", "2001:db8::": "DE", "2001:db8:ffff::1": "DE",
		"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff": "", "ffff::": "",
	} {
		if got := db.Lookup(netip.MustParseAddr(addr)).Country; got != want {
			t.Errorf("Lookup(%s) = %q, want %q", addr, got, want)
		}
	}
}

// officialLookup is IP2Location's lookup as their readers write it
// (IP2Location-Python _get_record for IPv4, ip2location-go query for
// IPv6): 1-based positions, high starting at the row count, the index
// read as (low, high), a row's end read from the next row, the country
// string at the pointer (0-based). It is deliberately a separate
// transliteration, to check geoiptest's files against the format.
func officialLookup(t *testing.T, f []byte, ip netip.Addr) string {
	t.Helper()
	le := binary.LittleEndian
	readi := func(pos uint64) uint64 { return uint64(le.Uint32(f[pos-1:])) } // position is 1-based
	reads := func(ptr uint64) string { return string(f[ptr+1 : ptr+1+uint64(f[ptr])]) }
	dbcolumn := uint64(f[1])
	if ip.Is4() {
		a := ip.As4()
		ipno := uint64(binary.BigEndian.Uint32(a[:]))
		if ipno == 4294967295 {
			ipno--
		}
		base, low, high := readi(10), uint64(0), readi(6)
		if idx := readi(22); idx > 0 {
			pos := ((ipno >> 16) << 3) + idx
			low, high = readi(pos), readi(pos+4)
		}
		for low <= high {
			mid := (low + high) / 2
			row := base + mid*dbcolumn*4
			ipfrom, ipto := readi(row), readi(row+dbcolumn*4)
			if ipfrom <= ipno && ipno < ipto {
				return reads(readi(row + 4))
			}
			if ipno < ipfrom {
				if mid == 0 {
					break
				}
				high = mid - 1
			} else {
				low = mid + 1
			}
		}
		t.Fatalf("officialLookup(%s): not found", ip)
	}
	read128 := func(pos uint64) *big.Int {
		b := make([]byte, 16)
		for i := range 16 {
			b[15-i] = f[pos-1+uint64(i)]
		}
		return new(big.Int).SetBytes(b)
	}
	a := ip.As16()
	ipno := new(big.Int).SetBytes(a[:])
	maxip := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))
	if ipno.Cmp(maxip) >= 0 {
		ipno.Sub(ipno, big.NewInt(1))
	}
	colsize := 16 + (dbcolumn-1)*4
	base, low, high := readi(18), uint64(0), readi(14)
	if idx := readi(26); idx > 0 {
		pos := uint64(a[0])<<8 | uint64(a[1])
		pos = pos<<3 + idx
		low, high = readi(pos), readi(pos+4)
	}
	for low <= high {
		mid := (low + high) / 2
		row := base + mid*colsize
		ipfrom, ipto := read128(row), read128(row+colsize)
		if ipno.Cmp(ipfrom) >= 0 && ipno.Cmp(ipto) < 0 {
			return reads(readi(row + 16))
		}
		if ipno.Cmp(ipfrom) < 0 {
			if mid == 0 {
				break
			}
			high = mid - 1
		} else {
			low = mid + 1
		}
	}
	t.Fatalf("officialLookup(%s): not found", ip)
	return ""
}

func TestBINWriterAgainstOfficialLookup(t *testing.T) {
	hand := handBIN()
	for addr, want := range map[string]string{"1.2.3.9": "DE", "1.2.4.9": "-", "2001:db8::9": "DE", "2001:db9::": "-"} {
		if got := officialLookup(t, hand, netip.MustParseAddr(addr)); got != want {
			t.Fatalf("officialLookup(hand, %s) = %q, want %q: the transliteration is wrong", addr, got, want)
		}
	}
	for _, o := range []geoiptest.BINOptions{{}, {IPv6: true}, {NoIndex: true}, {IPv6: true, NoIndex: true}} {
		data, err := geoiptest.BuildBIN(testNets, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range lookupCases {
			a := netip.MustParseAddr(c.addr).Unmap()
			if a.Is6() && (!o.IPv6 || !c.v6) {
				continue // 6to4 and the like are the reader's mapping, not the file's
			}
			want := c.cc
			if want == "" {
				want = "-"
			}
			if got := officialLookup(t, data, a); got != want {
				t.Errorf("%+v: official lookup of %s = %q, want %q", o, a, got, want)
			}
		}
	}
}

func TestBINHostile(t *testing.T) {
	dir := t.TempDir()
	open := func(name string, data []byte) (*DB, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return Open(p, Options{Format: FormatIP2Location})
	}
	le := binary.LittleEndian
	mutate := func(f func([]byte)) []byte {
		d := handBIN()
		f(d)
		return d
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string // "" = opens
	}{
		{"type 0", mutate(func(d []byte) { d[0] = 0 }), "database type 0"},
		{"one column", mutate(func(d []byte) { d[1] = 1 }), "1 columns"},
		{"month 13", mutate(func(d []byte) { d[3] = 13 }), "not a date"},
		{"IP2Proxy", mutate(func(d []byte) { d[29] = 2 }), "product code 2"},
		{"no rows", mutate(func(d []byte) { le.PutUint32(d[5:], 1); le.PutUint32(d[13:], 0) }), "no IPv4 or IPv6 rows"},
		{"rows past the end", mutate(func(d []byte) { le.PutUint32(d[5:], 1<<30) }), "IPv4 table"},
		{"table in the header", mutate(func(d []byte) { le.PutUint32(d[9:], 3) }), "IPv4 table"},
		{"table position 0", mutate(func(d []byte) { le.PutUint32(d[17:], 0) }), "IPv6 table"},
		{"index past the end", mutate(func(d []byte) { le.PutUint32(d[21:], 65) }), "IPv4 index"},
		{"unsorted", mutate(func(d []byte) { d[64+8+3] = 0x09 }), "out of order"},
		{"unsorted v6", mutate(func(d []byte) { d[96+60+15] = 0x10 }), "IPv6 row 3 is out of order"},
		{"pointer past the end", mutate(func(d []byte) { le.PutUint32(d[64+12:], 0xfffffff0) }), ""},
		{"pointer at the last byte", mutate(func(d []byte) { le.PutUint32(d[64+12:], uint32(len(d)-1)) }), ""},
		{"long string", mutate(func(d []byte) { d[180] = 200 }), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := open(strings.ReplaceAll(tc.name, " ", "_"), tc.data)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open = %v, want error with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, a := range []string{"1.2.3.4", "0.0.0.0", "255.255.255.255", "2001:db8::1", "::ffff:1.2.3.4"} {
				if r := db.Lookup(netip.MustParseAddr(a)); r.Kind == Found && r.Country != "DE" {
					t.Errorf("Lookup(%s) = %+v", a, r)
				}
			}
		})
	}
}

func TestBINHostileIndex(t *testing.T) {
	// An index whose rows are out of range or reversed finds nothing, and
	// never reads outside the table.
	data, err := geoiptest.BuildBIN(testNets, geoiptest.BINOptions{IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	idx4, idx6 := int(le.Uint32(data[21:]))-1, int(le.Uint32(data[25:]))-1
	for s := range 65536 {
		switch s % 3 {
		case 0:
			le.PutUint32(data[idx4+s*8:], 0xffffffff)
			le.PutUint32(data[idx6+s*8+4:], 0xffffffff)
		case 1:
			le.PutUint32(data[idx4+s*8:], 5)
			le.PutUint32(data[idx4+s*8+4:], 2)
		default:
			le.PutUint32(data[idx6+s*8:], 0x7fffffff)
		}
	}
	path := filepath.Join(t.TempDir(), "bad-index.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range lookupCases {
		db.Lookup(netip.MustParseAddr(c.addr))
	}
	if got := db.Lookup(netip.MustParseAddr("127.0.1.1")); got.Kind == Found && got.Country != "DE" {
		t.Errorf("Lookup = %+v", got)
	}
}

func TestDetectFormat(t *testing.T) {
	if got := detectFormat(handBIN()); got != FormatIP2Location {
		t.Errorf("detectFormat(BIN) = %q", got)
	}
	if got := detectFormat([]byte("\x01\x02hello")); got != "" {
		t.Errorf("detectFormat(short) = %q", got)
	}
	// A marker further than 128 KiB from the end is not metadata.
	far := append([]byte("\xab\xcd\xefMaxMind.com"), make([]byte, 130<<10)...)
	if got := detectFormat(far); got != "" {
		t.Errorf("detectFormat(far marker) = %q", got)
	}
}

// Package geoiptest writes small country databases for tests: MaxMind DB
// files in the layouts of MaxMind, DB-IP and ip-location-db, and
// IP2Location DB1 BIN files. Tests choose a client's country by choosing
// its address, e.g. 127.0.1.0/24 → DE and 127.0.2.0/24 → CN.
//
// It is for tests and benchmarks only: the files carry codes, not the
// names and other fields of real databases.
package geoiptest

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gaissmai/bart"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Shapes of WriteMMDB records.
const (
	ShapeMaxMind      = "maxmind"      // {"country":{"iso_code":"DE","geoname_id":…,"names":{…}},"registered_country":{…}}
	ShapeDBIP         = "dbip"         // {"country":{"iso_code":"DE","is_in_european_union":…,"names":{…}}}
	ShapeIPLocationDB = "iplocationdb" // {"country_code":"DE"}
)

// WriteMMDB writes a MaxMind DB file mapping each network ("127.0.1.0/24",
// "2001:db8::/32") to a country code ("DE") in the record layout shape.
// Loopback and other reserved networks are allowed. The file is written
// under a temporary name and renamed to path, as geoipupdate does.
func WriteMMDB(path string, nets map[string]string, shape string) error {
	var dbType string
	switch shape {
	case ShapeMaxMind:
		dbType = "GeoLite2-Country"
	case ShapeDBIP:
		dbType = "DBIP-Country-Lite"
	case ShapeIPLocationDB:
		dbType = "ip-location-db-country"
	default:
		return fmt.Errorf("geoiptest: unknown mmdb shape %q (want maxmind, dbip or iplocationdb)", shape)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		BuildEpoch:              time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
		DatabaseType:            dbType,
		Description:             map[string]string{"en": "mailgate test database"},
		Languages:               []string{"en"},
		IncludeReservedNetworks: true,
		RecordSize:              28,
	})
	if err != nil {
		return fmt.Errorf("geoiptest: %w", err)
	}
	prefixes, err := parseNets(nets)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		ipnet := &net.IPNet{IP: p.pfx.Addr().AsSlice(), Mask: net.CIDRMask(p.pfx.Bits(), p.pfx.Addr().BitLen())}
		if err := tree.Insert(ipnet, mmdbRecord(shape, p.cc)); err != nil {
			return fmt.Errorf("geoiptest: insert %s: %w", p.pfx, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return fmt.Errorf("geoiptest: %w", err)
	}
	return writeRename(path, buf.Bytes())
}

func mmdbRecord(shape, cc string) mmdbtype.DataType {
	names := mmdbtype.Map{"en": mmdbtype.String("Country " + cc)}
	switch shape {
	case ShapeMaxMind:
		country := mmdbtype.Map{
			"geoname_id": mmdbtype.Uint32(geonameID(cc)),
			"iso_code":   mmdbtype.String(cc),
			"names":      names,
		}
		return mmdbtype.Map{"country": country, "registered_country": country}
	case ShapeDBIP:
		return mmdbtype.Map{
			"country": mmdbtype.Map{
				"geoname_id":           mmdbtype.Uint32(geonameID(cc)),
				"is_in_european_union": mmdbtype.Bool(false),
				"iso_code":             mmdbtype.String(cc),
				"names":                mmdbtype.Map{"en": names["en"], "de": mmdbtype.String("Land " + cc)},
			},
		}
	default:
		return mmdbtype.Map{"country_code": mmdbtype.String(cc)}
	}
}

func geonameID(cc string) uint32 {
	var id uint32 = 1000
	for _, c := range []byte(cc) {
		id = id*31 + uint32(c)
	}
	return id
}

type netCC struct {
	pfx netip.Prefix
	cc  string
}

// parseNets parses and sorts the networks (shortest prefix first, so that
// a writer inserting in order lets longer prefixes win).
func parseNets(nets map[string]string) ([]netCC, error) {
	out := make([]netCC, 0, len(nets))
	for s, cc := range nets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("geoiptest: %w", err)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("geoiptest: %s: write IPv4 networks as IPv4", s)
		}
		out = append(out, netCC{p.Masked(), cc})
	}
	slices.SortFunc(out, func(a, b netCC) int {
		return cmp.Or(cmp.Compare(a.pfx.Bits(), b.pfx.Bits()), a.pfx.Addr().Compare(b.pfx.Addr()))
	})
	return out, nil
}

func writeRename(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("geoiptest: %w", err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("geoiptest: %w", err)
	}
	return nil
}

// BINOptions shape a WriteBINWith file.
type BINOptions struct {
	IPv6        bool      // an IPv6 edition: an IPv6 table too, IPv4 networks in it as ::ffff:a.b.c.d
	NoIPv4Table bool      // with IPv6: leave the IPv4 table out (its count 0)
	NoIndex     bool      // no index tables (index positions 0)
	Built       time.Time // header date; zero is 2024-01-01
}

// WriteBIN writes an IP2Location DB1 BIN file mapping each network to a
// country code; addresses in no network get "-" (IP2Location's unknown).
// ipv6 makes an IPv6 edition (like IP2LOCATION-LITE-DB1.IPV6.BIN).
func WriteBIN(path string, nets map[string]string, ipv6 bool) error {
	return WriteBINWith(path, nets, BINOptions{IPv6: ipv6})
}

// WriteBINWith is WriteBIN with more choices.
func WriteBINWith(path string, nets map[string]string, o BINOptions) error {
	data, err := BuildBIN(nets, o)
	if err != nil {
		return err
	}
	return writeRename(path, data)
}

// binRow is a row of a table: its first address and country.
type binRow struct {
	from netip.Addr
	cc   string
}

// BuildBIN returns the bytes of a WriteBINWith file.
//
// The layout is the one IP2Location's readers expect (see
// internal/geoip/bin.go): a 64-byte header, the IPv4 and IPv6 indexes
// (65536 entries of first and last row), the IPv4 rows (ip_from, country
// pointer), the IPv6 rows (16-byte ip_from, country pointer), then the
// country strings (length-prefixed short code, then long name). Each table
// ends with a row starting at the top address that only bounds the row
// before it.
func BuildBIN(nets map[string]string, o BINOptions) ([]byte, error) {
	prefixes, err := parseNets(nets)
	if err != nil {
		return nil, err
	}
	var t4, t6 bart.Table[string]
	for _, p := range prefixes {
		if len(p.cc) != 2 && p.cc != "-" {
			return nil, fmt.Errorf("geoiptest: %s: %q is not a two-letter code", p.pfx, p.cc)
		}
		if p.pfx.Addr().Is4() {
			t4.Insert(p.pfx, strings.ToUpper(p.cc))
			if o.IPv6 {
				mapped := netip.PrefixFrom(netip.AddrFrom16(p.pfx.Addr().As16()), p.pfx.Bits()+96)
				t6.Insert(mapped, strings.ToUpper(p.cc))
			}
		} else if o.IPv6 {
			t6.Insert(p.pfx, strings.ToUpper(p.cc))
		}
	}
	var rows4, rows6 []binRow
	if !o.IPv6 || !o.NoIPv4Table {
		rows4 = flatten(&t4, netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}))
	}
	if o.IPv6 {
		rows6 = flatten(&t6, netip.IPv6Unspecified(), netip.AddrFrom16([16]byte{
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}))
	}

	const (
		headerLen = 64
		indexLen  = 65536 * 8
		columns   = 2 // DB1: ip_from, country
		width4    = columns * 4
		width6    = columns*4 + 12
	)
	pos := headerLen // 0-based write position
	index4, index6 := 0, 0
	if !o.NoIndex {
		if rows4 != nil {
			index4, pos = pos, pos+indexLen
		}
		if rows6 != nil {
			index6, pos = pos, pos+indexLen
		}
	}
	table4 := pos
	pos += len(rows4) * width4
	table6 := pos
	pos += len(rows6) * width6
	// Country strings: short code, then the long name (here the code).
	strs := map[string]uint32{}
	var strBuf []byte
	for _, r := range slices.Concat(rows4, rows6) {
		if _, ok := strs[r.cc]; ok {
			continue
		}
		strs[r.cc] = uint32(pos + len(strBuf))
		long := r.cc
		if r.cc != "-" {
			long = "Country " + r.cc
		}
		strBuf = append(strBuf, byte(len(r.cc)))
		strBuf = append(strBuf, r.cc...)
		strBuf = append(strBuf, byte(len(long)))
		strBuf = append(strBuf, long...)
	}
	size := pos + len(strBuf)
	if size > math.MaxUint32 {
		return nil, fmt.Errorf("geoiptest: BIN file of %d bytes is too large", size)
	}
	buf := make([]byte, size)
	le := binary.LittleEndian
	built := o.Built
	if built.IsZero() {
		built = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	one := func(p int) uint32 { // 1-based position, 0 for none
		if p == 0 {
			return 0
		}
		return uint32(p + 1)
	}
	buf[0] = 1 // DB1
	buf[1] = columns
	buf[2], buf[3], buf[4] = byte(built.Year()-2000), byte(built.Month()), byte(built.Day())
	le.PutUint32(buf[5:], uint32(len(rows4)))
	le.PutUint32(buf[9:], one(table4))
	le.PutUint32(buf[13:], uint32(len(rows6)))
	if rows6 != nil {
		le.PutUint32(buf[17:], one(table6))
	}
	le.PutUint32(buf[21:], one(index4))
	le.PutUint32(buf[25:], one(index6))
	buf[29] = 1 // product: IP2Location
	buf[30] = 1 // license
	le.PutUint32(buf[31:], uint32(size))

	for i, r := range rows4 {
		p := table4 + i*width4
		a := r.from.As4()
		le.PutUint32(buf[p:], binary.BigEndian.Uint32(a[:]))
		le.PutUint32(buf[p+4:], strs[r.cc])
	}
	for i, r := range rows6 {
		p := table6 + i*width6
		a := r.from.As16()
		le.PutUint64(buf[p:], binary.BigEndian.Uint64(a[8:]))
		le.PutUint64(buf[p+8:], binary.BigEndian.Uint64(a[:8]))
		le.PutUint32(buf[p+16:], strs[r.cc])
	}
	if index4 != 0 {
		writeIndex(buf[index4:], rows4, 4)
	}
	if index6 != 0 {
		writeIndex(buf[index6:], rows6, 16)
	}
	copy(buf[pos:], strBuf)
	return buf, nil
}

// flatten turns the longest-prefix-match table into rows covering
// [first, last]: one row per run of addresses with one country, then the
// bounding row at last.
func flatten(t *bart.Table[string], first, last netip.Addr) []binRow {
	bounds := []netip.Addr{first}
	for p := range t.All() {
		bounds = append(bounds, p.Masked().Addr())
		if end := lastAddr(p); end.Less(last) {
			bounds = append(bounds, end.Next())
		}
	}
	slices.SortFunc(bounds, netip.Addr.Compare)
	bounds = slices.Compact(bounds)
	var rows []binRow
	for _, b := range bounds {
		if b == last {
			break
		}
		cc, ok := t.Lookup(b)
		if !ok {
			cc = "-"
		}
		if len(rows) > 0 && rows[len(rows)-1].cc == cc {
			continue
		}
		rows = append(rows, binRow{b, cc})
	}
	return append(rows, binRow{last, "-"})
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	addr, _ := netip.AddrFromSlice(a)
	return addr
}

// writeIndex fills the 65536 index entries: for each value of the top 16
// address bits, the rows containing the first and the last address with
// those bits.
func writeIndex(buf []byte, rows []binRow, addrLen int) {
	covering := len(rows) - 1 // the last row only bounds
	containing := func(a netip.Addr) int {
		return max(0, sort.Search(covering, func(i int) bool { return a.Less(rows[i].from) })-1)
	}
	first, last := make([]byte, addrLen), make([]byte, addrLen)
	for i := 2; i < addrLen; i++ {
		last[i] = 0xff
	}
	for s := range 65536 {
		first[0], first[1] = byte(s>>8), byte(s)
		last[0], last[1] = first[0], first[1]
		a, _ := netip.AddrFromSlice(first)
		b, _ := netip.AddrFromSlice(last)
		binary.LittleEndian.PutUint32(buf[s*8:], uint32(containing(a)))
		binary.LittleEndian.PutUint32(buf[s*8+4:], uint32(containing(b)))
	}
}

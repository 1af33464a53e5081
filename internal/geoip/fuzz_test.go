package geoip

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// fuzzAddrs are looked up in every database the fuzzers open.
var fuzzAddrs = []netip.Addr{
	netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("127.0.1.1"),
	netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("::"), netip.MustParseAddr("2001:db8::1"),
	netip.MustParseAddr("2002:102:304::1"), netip.MustParseAddr("2001:0:0:0:0:0:fefd:fcfb"),
	netip.MustParseAddr("::ffff:8.8.8.8"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
}

// fuzzOpen writes data to a file, opens it with format and looks up
// fuzzAddrs: an error is fine, a panic or a malformed answer is not.
func fuzzOpen(t *testing.T, data []byte, format string) {

	path := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{Format: format})
	if err != nil {
		return
	}
	defer db.Close()
	for _, a := range fuzzAddrs {
		for range 2 { // the second mmdb lookup comes from the cache
			r := db.Lookup(a)
			switch {
			case r.Kind == Found && (len(r.Country) != 2 || r.Country[0] < 'A' || r.Country[0] > 'Z' || r.Country[1] < 'A' || r.Country[1] > 'Z'):
				t.Fatalf("Lookup(%s) = %+v", a, r)
			case r.Kind != Found && r.Country != "":
				t.Fatalf("Lookup(%s) = %+v", a, r)
			}
		}
	}
}

// FuzzOpenBIN opens IP2Location BIN files. The corpus in
// testdata/fuzz/FuzzOpenBIN holds small files made by geoiptest (IPv4,
// IPv6, without indexes, as an index makes a file at least 512 KiB) and
// truncated ones.
func FuzzOpenBIN(f *testing.F) {
	f.Add(handBIN())
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOpen(t, data, FormatIP2Location)
		fuzzOpen(t, data, FormatAuto)
	})
}

// FuzzOpenMMDB opens MaxMind DB files. The corpus in
// testdata/fuzz/FuzzOpenMMDB holds small files of each shape made by
// geoiptest and truncated ones.
func FuzzOpenMMDB(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOpen(t, data, FormatMMDB)
	})
}

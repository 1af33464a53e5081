package geoip

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/geoip/geoiptest"
)

// testNets is the database of most tests. It nests networks (1.2.3.0/24
// in 1.0.0.0/8), maps loopback ranges, and puts networks at both ends of
// each address family.
var testNets = map[string]string{
	"127.0.1.0/24":     "DE",
	"127.0.2.0/24":     "CN",
	"8.8.8.0/24":       "US",
	"10.1.0.0/16":      "NL",
	"1.0.0.0/8":        "AU",
	"1.2.3.0/24":       "JP",
	"0.0.0.0/8":        "SE",
	"255.255.255.0/24": "GB",
	"2001:db8::/32":    "FR",
	"2a00:1450::/32":   "IE",
	"ffff:ffff::/32":   "NO",
}

type lookupCase struct {
	addr string
	cc   string // "" with kind != Found
	kind Kind
	v6   bool // an IPv6 lookup: Unknown in a file without IPv6 data
}

var lookupCases = []lookupCase{
	{"127.0.1.1", "DE", Found, false},
	{"127.0.1.0", "DE", Found, false},   // first address of the network
	{"127.0.1.255", "DE", Found, false}, // last
	{"127.0.0.255", "", Private, false}, // loopback, not in the database
	{"127.0.2.0", "CN", Found, false},
	{"127.0.3.0", "", Private, false},
	{"::ffff:127.0.1.7", "DE", Found, false}, // IPv4-mapped IPv6
	{"::ffff:8.8.8.8", "US", Found, false},
	{"8.8.8.8", "US", Found, false},
	{"8.8.7.255", "", Unknown, false},
	{"8.8.9.0", "", Unknown, false},
	{"10.1.2.3", "NL", Found, false},
	{"10.2.0.1", "", Private, false},
	{"192.168.1.1", "", Private, false},
	{"172.16.0.1", "", Private, false},
	{"100.64.0.1", "", Private, false},      // CGNAT
	{"100.127.255.255", "", Private, false}, // CGNAT, last
	{"100.128.0.0", "", Unknown, false},
	{"169.254.1.1", "", Private, false},
	{"1.2.3.4", "JP", Found, false}, // the more specific network wins
	{"1.2.2.255", "AU", Found, false},
	{"1.2.4.0", "AU", Found, false},
	{"1.0.0.0", "AU", Found, false},
	{"1.255.255.255", "AU", Found, false},
	{"2.0.0.0", "", Unknown, false},
	{"0.0.0.0", "SE", Found, false}, // the database is asked first
	{"0.255.255.255", "SE", Found, false},
	{"255.255.255.255", "GB", Found, false}, // the top address
	{"255.255.254.255", "", Unknown, false},
	{"2001:db8::1", "FR", Found, true},
	{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "FR", Found, true},
	{"2001:db9::", "", Unknown, true},
	{"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "", Unknown, true},
	{"2a00:1450:4001::1", "IE", Found, true},
	{"2a00:1451::1", "", Unknown, true},
	{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "NO", Found, true},
	{"ffff:fffe::1", "", Unknown, true},
	{"2002:0808:0808::1", "US", Found, false}, // 6to4 carries 8.8.8.8
	{"::1", "", Private, false},
	{"::", "", Private, false},
	{"fe80::1", "", Private, false},
	{"fd00::1", "", Private, false},
	{"2003::1", "", Unknown, true},
}

func writeTestDB(t testing.TB, kind string) string {
	t.Helper()
	dir := t.TempDir()
	var err error
	path := filepath.Join(dir, "db")
	switch kind {
	case "maxmind", "dbip", "iplocationdb":
		err = geoiptest.WriteMMDB(path, testNets, kind)
	case "bin4":
		err = geoiptest.WriteBIN(path, testNets, false)
	case "bin6":
		err = geoiptest.WriteBIN(path, testNets, true)
	case "bin6-no-ipv4-table":
		err = geoiptest.WriteBINWith(path, testNets, geoiptest.BINOptions{IPv6: true, NoIPv4Table: true})
	case "bin4-no-index":
		err = geoiptest.WriteBINWith(path, testNets, geoiptest.BINOptions{NoIndex: true})
	case "bin6-no-index":
		err = geoiptest.WriteBINWith(path, testNets, geoiptest.BINOptions{IPv6: true, NoIndex: true})
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLookup(t *testing.T) {
	for _, tc := range []struct {
		kind        string
		format      string
		field       string
		dbType      string
		ipv6        bool
		teredoCC    string // Teredo 2001:0:0808:0808::f7f7:f7f7 (server 8.8.8.8, client 8.8.8.8)
		teredoOther string // Teredo 2001:0:0808:0808::fefd:fcfb (client 1.2.3.4)
	}{
		{"maxmind", "mmdb", "country.iso_code", "GeoLite2-Country", true, "US", "US"},
		{"dbip", "mmdb", "country.iso_code", "DBIP-Country-Lite", true, "US", "US"},
		{"iplocationdb", "mmdb", "country_code", "ip-location-db-country", true, "US", "US"},
		// IP2Location reads Teredo's client address, MaxMind's aliasing the server's.
		{"bin4", "ip2location", "country_short", "IP2Location DB1", false, "US", "JP"},
		{"bin6", "ip2location", "country_short", "IP2Location DB1", true, "US", "JP"},
		{"bin6-no-ipv4-table", "ip2location", "country_short", "IP2Location DB1", true, "US", "JP"},
		{"bin4-no-index", "ip2location", "country_short", "IP2Location DB1", false, "US", "JP"},
		{"bin6-no-index", "ip2location", "country_short", "IP2Location DB1", true, "US", "JP"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			path := writeTestDB(t, tc.kind)
			db, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			info := db.Info()
			if info.Format != tc.format || info.CountryField != tc.field || info.DatabaseType != tc.dbType || info.IPv6 != tc.ipv6 || info.Path != path {
				t.Errorf("Info() = %+v, want format %s, field %s, type %s, IPv6 %v", info, tc.format, tc.field, tc.dbType, tc.ipv6)
			}
			st, _ := os.Stat(path)
			if info.Size != st.Size() || !info.ModTime.Equal(st.ModTime()) || info.Built.IsZero() || time.Since(info.Loaded) > time.Minute {
				t.Errorf("Info() = %+v: size, times", info)
			}
			cases := append([]lookupCase{
				{"2001:0:0808:0808::f7f7:f7f7", tc.teredoCC, Found, false},
				{"2001:0:0808:0808::fefd:fcfb", tc.teredoOther, Found, false},
			}, lookupCases...)
			for _, c := range cases {
				want := Result{Country: c.cc, Kind: c.kind}
				if c.v6 && !tc.ipv6 {
					want = Result{Kind: Unknown}
				}
				if got := db.Lookup(netip.MustParseAddr(c.addr)); got != want {
					t.Errorf("Lookup(%s) = %+v, want %+v", c.addr, got, want)
				}
			}
			if got := db.Lookup(netip.Addr{}); got != (Result{Kind: Unknown}) {
				t.Errorf("Lookup(invalid) = %+v", got)
			}
			if got := db.Lookup(netip.MustParseAddr("fe80::1%eth0")); got != (Result{Kind: Private}) {
				t.Errorf("Lookup(fe80::1%%eth0) = %+v", got)
			}
		})
	}
}

func TestLookupAfterClose(t *testing.T) {
	db, err := Open(writeTestDB(t, "bin4"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := db.Lookup(netip.MustParseAddr("8.8.8.8")); got != (Result{Kind: Unknown}) {
		t.Errorf("Lookup after Close = %+v", got)
	}
	if got := db.Lookup(netip.MustParseAddr("127.0.1.1")); got != (Result{Kind: Private}) {
		t.Errorf("Lookup after Close = %+v", got)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Found: "found", Private: "private", Unknown: "unknown", 9: "Kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", k, got, want)
		}
	}
}

func TestIsPrivate(t *testing.T) {
	for addr, want := range map[string]bool{
		"10.0.0.1": true, "172.31.255.255": true, "172.32.0.0": false, "192.168.0.1": true,
		"127.0.0.1": true, "169.254.0.1": true, "100.64.0.0": true, "100.63.255.255": false,
		"100.128.0.0": false, "0.0.0.0": true, "8.8.8.8": false, "::ffff:10.0.0.1": true,
		"::1": true, "::": true, "fe80::1": true, "fc00::1": true, "fdff::1": true, "fe00::1": false,
		"2001:db8::1": false, "224.0.0.1": false,
	} {
		if got := IsPrivate(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsPrivate(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mmdb := writeTestDB(t, "maxmind")
	bin := writeTestDB(t, "bin4")
	mmdbData, _ := os.ReadFile(mmdb)
	binData, _ := os.ReadFile(bin)
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, MaxFileSize+1); err != nil { // sparse
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		opts Options
		want string
	}{
		{"missing", filepath.Join(dir, "nope"), Options{}, "no such file"},
		{"directory", dir, Options{}, "not a regular file"},
		{"empty", write("empty", nil), Options{}, "empty file"},
		{"too large", huge, Options{}, "more than the limit"},
		{"garbage", write("garbage", []byte(strings.Repeat("not a database\n", 100))), Options{}, "not a MaxMind DB (.mmdb) nor an IP2Location BIN file"},
		{"bad format option", mmdb, Options{Format: "csv"}, `unknown format "csv"`},
		{"mmdb as bin", mmdb, Options{Format: FormatIP2Location}, "IP2Location BIN"},
		{"bin as mmdb", bin, Options{Format: FormatMMDB}, "MaxMind DB"},
		{"country field for bin", bin, Options{CountryField: "country"}, "for mmdb files only"},
		{"wrong country field", mmdb, Options{CountryField: "country.names.en"}, `country field "country.names.en": no two-letter code`},
		{"bad country field", mmdb, Options{CountryField: "country..iso_code"}, "not a dotted path"},
		{"truncated mmdb", write("t.mmdb", mmdbData[:len(mmdbData)/2]), Options{}, "not a MaxMind DB"},
		{"mmdb without its end", write("t2.mmdb", mmdbData[:len(mmdbData)-20]), Options{}, "MaxMind DB"},
		{"truncated bin", write("t.bin", binData[:len(binData)-200]), Options{}, "not a MaxMind DB"},
		{"truncated bin, format given", write("t2.bin", binData[:len(binData)-200]), Options{Format: FormatIP2Location}, "outside the file"},
		{"bin header only", write("t3.bin", binData[:64]), Options{Format: FormatIP2Location}, "outside the file"},
		{"bin shorter than header", write("t4.bin", binData[:20]), Options{Format: FormatIP2Location}, "shorter than its header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(tc.path, tc.opts)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%s) succeeded", tc.path)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("Open(%s) = %v, want an error naming the path and %q", tc.path, err, tc.want)
			}
		})
	}
}

func TestExplicitFormatAndField(t *testing.T) {
	for _, tc := range []struct {
		kind string
		opts Options
	}{
		{"maxmind", Options{Format: FormatMMDB, CountryField: "country.iso_code"}},
		{"dbip", Options{Format: FormatMMDB}},
		{"iplocationdb", Options{Format: FormatAuto, CountryField: "country_code"}},
		{"bin6", Options{Format: FormatIP2Location}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			db, err := Open(writeTestDB(t, tc.kind), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if tc.opts.CountryField != "" && db.Info().CountryField != tc.opts.CountryField {
				t.Errorf("CountryField = %q", db.Info().CountryField)
			}
			if got := db.Lookup(netip.MustParseAddr("127.0.2.9")); got != (Result{"CN", Found}) {
				t.Errorf("Lookup = %+v", got)
			}
		})
	}
}

func TestLookupAllocs(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.1.1"), netip.MustParseAddr("1.2.3.4"), netip.MustParseAddr("8.8.9.9"),
		netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:8.8.8.8"),
		netip.MustParseAddr("2003::1"), netip.MustParseAddr("fe80::1%eth0"),
	}
	for _, kind := range []string{"maxmind", "iplocationdb", "bin4", "bin6", "bin6-no-ipv4-table"} {
		t.Run(kind, func(t *testing.T) {
			path := writeTestDB(t, kind)
			db, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			l, err := NewLocator(path, Options{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for _, a := range addrs { // warm the mmdb record cache
				db.Lookup(a)
				l.Lookup(a)
			}
			var sink Result
			if n := testing.AllocsPerRun(200, func() {
				for _, a := range addrs {
					sink = db.Lookup(a)
					sink = l.Lookup(a)
				}
			}); n != 0 {
				t.Errorf("Lookup allocates %v times per run", n)
			}
			_ = sink
		})
	}
}

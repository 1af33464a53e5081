package geoip

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeRecords writes an mmdb file with the given record per network, in
// order (a later network replaces the parts of earlier ones it covers).
func writeRecords(t testing.TB, ipVersion int, recs ...any) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "Test", IncludeReservedNetworks: true, IPVersion: ipVersion, RecordSize: 24,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += 2 {
		_, ipnet, err := net.ParseCIDR(recs[i].(string))
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(ipnet, recs[i+1].(mmdbtype.DataType)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "test.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return path
}

type M = mmdbtype.Map
type S = mmdbtype.String

func TestMMDBCountryField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		recs  []any
		opts  Options
		field string // detected; "" = Open fails with err
		err   string
		want  map[string]Result
	}{
		{
			name: "registered_country fallback",
			recs: []any{
				"1.0.0.0/24", M{"registered_country": M{"iso_code": S("US")}}, // anycast: no country
				"2.0.0.0/24", M{"country": M{"iso_code": S("FR")}, "registered_country": M{"iso_code": S("DE")}},
				"3.0.0.0/24", M{"continent": M{"code": S("EU")}},
				"4.0.0.0/24", M{"country": M{"iso_code": S("de")}}, // lower case is accepted
			},
			field: "country.iso_code",
			want: map[string]Result{
				"1.0.0.1": {"US", Found}, "2.0.0.1": {"FR", Found}, "3.0.0.1": {"", Unknown}, "4.0.0.1": {"DE", Found},
			},
		},
		{
			name:  "only registered countries in the sample",
			recs:  []any{"1.0.0.0/24", M{"registered_country": M{"iso_code": S("US")}}},
			field: "country.iso_code",
			want:  map[string]Result{"1.0.0.1": {"US", Found}},
		},
		{
			name:  "plain country string",
			recs:  []any{"1.0.0.0/24", M{"country": S("SE")}, "2.0.0.0/24", M{"country": S("Sweden")}},
			field: "country",
			want:  map[string]Result{"1.0.0.1": {"SE", Found}, "2.0.0.1": {"", Unknown}},
		},
		{
			name:  "country_code beats a country name",
			recs:  []any{"1.0.0.0/24", M{"country_code": S("US"), "country": S("United States")}},
			field: "country_code",
			want:  map[string]Result{"1.0.0.1": {"US", Found}},
		},
		{
			name:  "configured field",
			recs:  []any{"1.0.0.0/24", M{"geo": M{"cc": S("PL")}, "country": M{"iso_code": S("CZ")}}},
			opts:  Options{CountryField: "geo.cc"},
			field: "geo.cc",
			want:  map[string]Result{"1.0.0.1": {"PL", Found}},
		},
		{
			name:  "no fallback for a configured other field",
			recs:  []any{"1.0.0.0/24", M{"registered_country": M{"iso_code": S("US")}}, "2.0.0.0/24", M{"country_code": S("IT")}},
			opts:  Options{CountryField: "country_code"},
			field: "country_code",
			want:  map[string]Result{"1.0.0.1": {"", Unknown}, "2.0.0.1": {"IT", Found}},
		},
		{
			name: "no country anywhere",
			recs: []any{"1.0.0.0/24", M{"autonomous_system_number": mmdbtype.Uint32(64500)}},
			err:  "set the country field (country_field)",
		},
		{
			name:  "empty database",
			recs:  nil,
			field: "country.iso_code",
			want:  map[string]Result{"1.0.0.1": {"", Unknown}, "10.0.0.1": {"", Private}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeRecords(t, 6, tc.recs...)
			db, err := Open(path, tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Open = %v, want error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if got := db.Info().CountryField; got != tc.field {
				t.Errorf("CountryField = %q, want %q", got, tc.field)
			}
			for addr, want := range tc.want {
				for range 2 { // decoded, then cached
					if got := db.Lookup(netip.MustParseAddr(addr)); got != want {
						t.Errorf("Lookup(%s) = %+v, want %+v", addr, got, want)
					}
				}
			}
		})
	}
}

func TestMMDBIPv4Only(t *testing.T) {
	path := writeRecords(t, 4, "1.0.0.0/24", M{"country": M{"iso_code": S("AU")}})
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Info().IPv6 {
		t.Error("Info().IPv6 for an IPv4 database")
	}
	for addr, want := range map[string]Result{
		"1.0.0.1": {"AU", Found}, "::ffff:1.0.0.1": {"AU", Found}, "2001:db8::1": {"", Unknown}, "fd00::1": {"", Private},
	} {
		if got := db.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Lookup(%s) = %+v, want %+v", addr, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { db.Lookup(netip.MustParseAddr("2001:db8::1")) }); n != 0 {
		t.Errorf("IPv6 lookup in an IPv4 database allocates %v times", n)
	}
}

func TestMMDBCorrupt(t *testing.T) {
	data, err := os.ReadFile(writeTestDB(t, "maxmind"))
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite the search tree's first nodes: pointers past the data.
	bad := bytes.Clone(data)
	for i := range 64 {
		bad[i] = 0xff
	}
	path := filepath.Join(t.TempDir(), "bad.mmdb")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if db, err := Open(path, Options{}); err == nil {
		db.Close()
		t.Fatal("Open of a corrupt search tree succeeded")
	} else if !strings.Contains(err.Error(), path) {
		t.Errorf("error %v does not name the file", err)
	}
}

func TestOffsetCache(t *testing.T) {
	var c offsetCache
	c.init()
	const n = 5000 // grows the table from 1024 slots several times
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				off := uint64(i*7919 + w%2) // two writers per key set
				if got, ok := c.get(off); ok && got != uint16(off%677) {
					t.Errorf("get(%d) = %d", off, got)
					return
				}
				c.put(off, uint16(off%677))
			}
		}()
	}
	wg.Wait()
	for i := range n {
		for _, off := range []uint64{uint64(i * 7919), uint64(i*7919 + 1)} {
			if got, ok := c.get(off); !ok || got != uint16(off%677) {
				t.Fatalf("get(%d) = %d, %v", off, got, ok)
			}
		}
	}
	if c.n != 2*n {
		t.Errorf("%d entries, want %d", c.n, 2*n)
	}
	if _, ok := c.get(1<<32 + 5); ok {
		t.Error("found an offset never put")
	}
	c.put(1<<40, 3) // too large to cache: ignored
	if _, ok := c.get(1 << 40); ok {
		t.Error("cached an offset over 32 bits")
	}
}

func TestMMDBManyRecords(t *testing.T) {
	// More distinct records than the first cache table holds.
	var recs []any
	for i := range 3000 {
		recs = append(recs, fmt.Sprintf("11.%d.%d.0/24", i/256, i%256), M{"country": M{"iso_code": S(string([]byte{'A' + byte(i%26), 'A' + byte(i/26%26)}))}, "n": mmdbtype.Uint32(i)})
	}
	db, err := Open(writeRecords(t, 6, recs...), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for round := range 2 {
		for i := range 3000 {
			addr := netip.AddrFrom4([4]byte{11, byte(i / 256), byte(i % 256), 7})
			want := string([]byte{'A' + byte(i%26), 'A' + byte(i/26%26)})
			if got := db.Lookup(addr); got != (Result{want, Found}) {
				t.Fatalf("round %d: Lookup(%s) = %+v, want %s", round, addr, got, want)
			}
		}
	}
}

package geoiptest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "db")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"shape", WriteMMDB(p, map[string]string{"1.0.0.0/8": "AU"}, "geolite"), `unknown mmdb shape "geolite"`},
		{"prefix", WriteMMDB(p, map[string]string{"1.0.0.0": "AU"}, ShapeMaxMind), "no '/'"},
		{"mapped", WriteBIN(p, map[string]string{"::ffff:1.0.0.0/104": "AU"}, true), "write IPv4 networks as IPv4"},
		{"code", WriteBIN(p, map[string]string{"1.0.0.0/8": "AUS"}, false), `"AUS" is not a two-letter code`},
		{"missing dir", WriteBIN(filepath.Join(dir, "no", "db"), nil, false), "no such file"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, tc.err, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestWriteReplacesByRename(t *testing.T) {
	p := filepath.Join(t.TempDir(), "db")
	if err := WriteMMDB(p, map[string]string{"127.0.1.0/24": "DE"}, ShapeDBIP); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(p)
	if err := WriteBIN(p, map[string]string{"127.0.1.0/24": "DE"}, true); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if os.SameFile(before, after) {
		t.Error("the file was rewritten in place, not replaced")
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestBuildBINLayout(t *testing.T) {
	// Nested networks flatten into rows: 1.0.0.0/8 AU with 1.2.3.0/24 JP
	// inside, then the unknown rest, then the bounding row.
	data, err := BuildBIN(map[string]string{"1.0.0.0/8": "au", "1.2.3.0/24": "JP"}, BINOptions{NoIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if data[0] != 1 || data[1] != 2 || data[29] != 1 {
		t.Fatalf("header type %d, columns %d, product %d", data[0], data[1], data[29])
	}
	count, base := le.Uint32(data[5:]), le.Uint32(data[9:])
	if base != 65 || le.Uint32(data[13:]) != 0 || le.Uint32(data[21:]) != 0 {
		t.Fatalf("header: IPv4 table at %d, IPv6 rows %d, index %d", base, le.Uint32(data[13:]), le.Uint32(data[21:]))
	}
	want := []struct {
		from uint32
		cc   string
	}{
		{0, "-"}, {0x01000000, "AU"}, {0x01020300, "JP"}, {0x01020400, "AU"}, {0x02000000, "-"}, {0xffffffff, "-"},
	}
	if int(count) != len(want) {
		t.Fatalf("%d rows, want %d", count, len(want))
	}
	for i, w := range want {
		row := data[base-1+uint32(i)*8:]
		ptr := le.Uint32(row[4:])
		cc := string(data[ptr+1 : ptr+1+uint32(data[ptr])])
		if from := le.Uint32(row); from != w.from || cc != w.cc {
			t.Errorf("row %d: %#x %q, want %#x %q", i, from, cc, w.from, w.cc)
		}
	}
	if len(data) != 64+len(want)*8+len("\x01-\x01-")+2*len("\x02AU\x0aCountry AU") {
		t.Errorf("file of %d bytes", len(data))
	}
}

package geoip

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"mailgate/internal/geoip/geoiptest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// seedNets is a small database for the fuzz seeds.
var seedNets = map[string]string{
	"1.2.3.0/24": "DE", "127.0.1.0/24": "CN", "8.0.0.0/8": "US", "2001:db8::/32": "FR", "2a00::/16": "GB",
}

// TestFuzzSeeds checks that the committed seed corpora are there, and
// rewrites them with -update-seeds:
//
//	go test ./internal/geoip -run TestFuzzSeeds -update-seeds
func TestFuzzSeeds(t *testing.T) {
	seeds := map[string][]byte{}
	dir := t.TempDir()
	for _, shape := range []string{geoiptest.ShapeMaxMind, geoiptest.ShapeDBIP, geoiptest.ShapeIPLocationDB} {
		p := filepath.Join(dir, shape)
		if err := geoiptest.WriteMMDB(p, seedNets, shape); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		seeds["FuzzOpenMMDB/"+shape] = data
		seeds["FuzzOpenMMDB/"+shape+"-truncated"] = data[:len(data)*2/3]
		seeds["FuzzOpenMMDB/"+shape+"-no-tree"] = data[len(data)/2:]
	}
	for _, o := range []struct {
		name string
		opts geoiptest.BINOptions
	}{
		{"ipv4", geoiptest.BINOptions{NoIndex: true}},
		{"ipv6", geoiptest.BINOptions{IPv6: true, NoIndex: true}},
		{"ipv6-only", geoiptest.BINOptions{IPv6: true, NoIPv4Table: true, NoIndex: true}},
	} {
		data, err := geoiptest.BuildBIN(seedNets, o.opts)
		if err != nil {
			t.Fatal(err)
		}
		seeds["FuzzOpenBIN/"+o.name] = data
		seeds["FuzzOpenBIN/"+o.name+"-truncated"] = data[:len(data)-10]
		seeds["FuzzOpenBIN/"+o.name+"-header"] = data[:64]
	}
	seeds["FuzzOpenBIN/hand"] = handBIN()
	for name, data := range seeds {
		path := filepath.Join("testdata", "fuzz", name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if *updateSeeds {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("seed %s missing (go test -run TestFuzzSeeds -update-seeds): %v", name, err)
		}
	}
}

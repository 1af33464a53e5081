package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Parse, the body of Load. It must never
// panic; whatever it accepts must validate, convert to configurations the
// relay and sendlimit packages accept, and survive a round trip through
// encode (the writer behind Example).
func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"testdata/good/*.toml", "testdata/bad/*.toml", examplePath} {
		files, _ := filepath.Glob(glob)
		for _, path := range files {
			data, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config Validate refuses: %v", err)
		}
		if _, err := cfg.TrustedPrefixes(); err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.DenyPrefixes(); err != nil {
			t.Fatal(err)
		}
		// What config accepts, the packages it configures accept too.
		rc, err := cfg.Relay.RelayConfig()
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Validate(); err != nil {
			t.Fatalf("relay refuses an accepted [relay]: %v", err)
		}
		if err := cfg.Limits.SendLimit().Validate(); err != nil {
			t.Fatalf("sendlimit refuses accepted [limits]: %v", err)
		}
		if n := len(cfg.Limits.SendLimit().Accounts); n != len(cfg.Limits.Accounts) {
			t.Fatalf("SendLimit kept %d of %d accounts", n, len(cfg.Limits.Accounts))
		}
		out := encode(&cfg)
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parsing encoded config: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("round trip changed the config:\n got %#v\nwant %#v", back, cfg)
		}
	})
}

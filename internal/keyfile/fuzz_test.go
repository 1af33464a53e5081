package keyfile

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: whatever a key file holds, Load returns a key Check accepts,
// or an error; never a key with a space, a control character or a line
// break (which Dovecot would send in a header).
func FuzzLoad(f *testing.F) {
	for _, s := range []string{"0123456789abcdef", "0123456789abcdef\n", "", "\x00", "short", "ÄÖÜ-not-ascii-0123456789"} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		path := filepath.Join(dir, "key")
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		key, err := Load(path)
		if err != nil {
			return
		}
		if len(key) < MinLen || len(key) > MaxLen || key != string(content) {
			t.Fatalf("Load(%q) = %q", content, key)
		}
		for _, c := range []byte(key) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("Load(%q) = %q, with byte %#x", content, key, c)
			}
		}
	})
}

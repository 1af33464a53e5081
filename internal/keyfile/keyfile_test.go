package keyfile

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dovecot-api-key")
	key, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first start: created %v, err %v", created, err)
	}
	if err := Check(key); err != nil {
		t.Fatalf("the new key %q: %v", key, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if string(b) != key {
		t.Errorf("file holds %q, want exactly the key %q (no line break)", b, key)
	}
	again, created, err := LoadOrCreate(path)
	if err != nil || created || again != key {
		t.Fatalf("second start: key %q created %v err %v; want the same key %q", again, created, err, key)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (no temp file left)", len(entries))
	}
	other, _, err := LoadOrCreate(filepath.Join(t.TempDir(), "k"))
	if err != nil || other == key {
		t.Errorf("another file: %q, %v; want a different random key", other, err)
	}
}

// TestLoadOrCreateRace: processes (here goroutines) starting together
// all end up with the one key in the file.
func TestLoadOrCreateRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	keys := make([]string, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, _, err := LoadOrCreate(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	b, _ := os.ReadFile(path)
	for i, k := range keys {
		if k != string(b) {
			t.Errorf("caller %d got %q, the file holds %q", i, k, b)
		}
	}
}

// TestBadFiles: a file that exists but is no usable key is an error that
// says why, and is left as it is: never silently replaced by a new key.
func TestBadFiles(t *testing.T) {
	const good = "0123456789abcdef0123"
	for _, c := range []struct {
		name    string
		content string
		mode    os.FileMode
		dir     bool // a directory in the key's place
		want    string
	}{
		{name: "world readable", content: good, mode: 0o644, want: "mode 0644 lets other users in; run: chmod 600"},
		{name: "group writable", content: good, mode: 0o620, want: "mode 0620"},
		{name: "empty", content: "", mode: 0o600, want: "empty"},
		{name: "trailing newline", content: good + "\n", mode: 0o600, want: "ends with a line break"},
		{name: "crlf", content: good + "\r\n", mode: 0o600, want: "ends with a line break"},
		{name: "short", content: "abc", mode: 0o600, want: "3 characters, fewer than 16"},
		{name: "binary", content: "\x00\x01\x02garbage-garbage-garbage", mode: 0o600, want: "printable ASCII"},
		{name: "space", content: "0123456789 abcdef0123", mode: 0o600, want: "printable ASCII"},
		{name: "too long", content: strings.Repeat("k", 300), mode: 0o600, want: "longer than 256 bytes"},
		{name: "directory", dir: true, want: "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if c.dir {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := os.WriteFile(path, []byte(c.content), c.mode); err != nil {
					t.Fatal(err)
				}
				os.Chmod(path, c.mode) // past the umask
			}
			_, created, err := LoadOrCreate(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err %v; want one naming %s and saying %q", err, path, c.want)
			}
			if created {
				t.Error("created a new key")
			}
			if !c.dir {
				if b, _ := os.ReadFile(path); string(b) != c.content {
					t.Errorf("the file changed to %q", b)
				}
			}
		})
	}
}

// TestUnreadablePath: a path that cannot be known to exist or not (here a
// file where a directory should be) is an error, not a new key.
func TestUnreadablePath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "key")
	if _, _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err %v; want an error naming %s", err, path)
	}
	if ok, err := Exists(path); ok || err == nil {
		t.Errorf("Exists: %v, %v; want an error", ok, err)
	}
	if _, _, err := LoadOrCreate(filepath.Join(dir, "missing-dir", "key")); err == nil || !strings.Contains(err.Error(), "creating key file") {
		t.Errorf("missing directory: err %v; want a creating error", err)
	}
}

// TestOtherOwner: a key file another user owns (one who could have chosen
// the key) is refused. Needs root to chown.
func TestOtherOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file to another user")
	}
	path := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(path, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, -1); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("err %v; want owned by uid 65534", err)
	}
}

func TestCheck(t *testing.T) {
	for _, k := range []string{"0123456789abcdef", strings.Repeat("x", 256), "A~!@#$%^&*()_+-=[]{}|;:',.<>/?"} {
		if err := Check(k); err != nil {
			t.Errorf("Check(%q) = %v", k, err)
		}
	}
}

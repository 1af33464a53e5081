package main

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseServerURL(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:4080", "http://127.0.0.5:4080/", "http://[::1]:4080", "http://localhost:4080",
		"https://mail2.example.net:4443", "https://192.0.2.7:443"} {
		if u, err := parseServerURL(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		} else if u.Path != "" {
			t.Errorf("%s: path %q kept", ok, u.Path)
		}
	}
	for in, want := range map[string]string{
		"127.0.0.1:4080":                       "https://host:port",
		"ftp://127.0.0.1:21":                   "want http://host:port",
		"http://127.0.0.1":                     "a host and a port",
		"http://user:pw@127.0.0.1:4080":        "no user or password",
		"http://127.0.0.1:4080/v1/rules":       "only the scheme, host and port",
		"http://127.0.0.1:4080/?x=1":           "only the scheme, host and port",
		"http://192.0.2.7:4080":                "clear text",
		"http://mail2.example.net:4080":        "clear text",
		"http://[2001:db8::1]:4080":            "clear text",
		"http://127.0.0.1:4080\x00":            "not a URL",
		"https://" + strings.Repeat("a", 3000): "longer than 2048",
	} {
		if _, err := parseServerURL(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", in, err, want)
		}
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := readTokenFile(write("ok", "0123456789abcdef\n", 0o600)); err != nil || tok != "0123456789abcdef" {
		t.Errorf("good file: %q %v", tok, err)
	}
	for name, c := range map[string]struct {
		body string
		mode os.FileMode
		want string
	}{
		"world": {"0123456789abcdef\n", 0o644, "chmod 600"},
		"empty": {"\n", 0o600, "empty"},
		"lines": {"a\nb\n", 0o600, "more than one line"},
		"nul":   {"a\x00b", 0o600, "NUL"},
		"large": {strings.Repeat("a", 2000), 0o600, "larger than"},
	} {
		if _, err := readTokenFile(write(name, c.body, c.mode)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	if _, err := readTokenFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory: %v", err)
	}
}

// TestClientFlagsRemote: --server needs a token, takes it from the file
// before the environment, and does not mix with --socket; --token-file
// and --ca-file need --server.
func TestClientFlagsRemote(t *testing.T) {
	parse := func(args ...string) clientFlags {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		cf := addClientFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return cf
	}
	if _, err := parse("--server", "http://127.0.0.1:4080").remote(""); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "MAILGATE_TOKEN") {
		t.Errorf("no token: %v", err)
	}
	if _, err := parse("--server", "http://127.0.0.1:4080").remote("0123456789abcdef"); err != nil {
		t.Errorf("token from the environment: %v", err)
	}
	if _, err := parse("--server", "http://127.0.0.1:4080", "--socket", "/x").client(); !errors.Is(err, errUsage) {
		t.Errorf("--server and --socket: %v", err)
	}
	if _, err := parse("--token-file", "/x").client(); !errors.Is(err, errUsage) {
		t.Errorf("--token-file without --server: %v", err)
	}
	if _, err := parse("--server", "http://127.0.0.1:4080", "--ca-file", "/x").remote("0123456789abcdef"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "https") {
		t.Errorf("--ca-file with http: %v", err)
	}
	if _, err := parse("--server", "https://127.0.0.1:4080", "--ca-file", "/nonexistent").remote("0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "--ca-file") {
		t.Errorf("missing CA file: %v", err)
	}
	if _, err := parse("--server", "http://127.0.0.1:4080").remote("a\nb"); !errors.Is(err, errUsage) {
		t.Errorf("a token of two lines: %v", err)
	}
}

// FuzzParseServerURL: any --server text gives a URL or an error, never a
// panic; an accepted URL is http(s) with a host and port and nothing
// else, and plain http only to loopback.
func FuzzParseServerURL(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:4080", "https://mx2.example.net:4443/", "http://[::1]:4080",
		"http://192.0.2.1:80", "http://localhost:1", "http://u:p@127.0.0.1:1", "https://h:1/x?y#z", "http://127.0.0.1:4080%00", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseServerURL(s)
		if err != nil {
			return
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("%q accepted as %#v", s, u)
		}
		if u.Scheme == "http" {
			if a, err := netip.ParseAddr(u.Hostname()); u.Hostname() != "localhost" && (err != nil || !a.IsLoopback()) {
				t.Fatalf("%q: plain http to %s accepted", s, u.Hostname())
			}
		}
	})
}

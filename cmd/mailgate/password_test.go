package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/internal/password"
)

// stdinWith is a pipe holding s, as a shell's `echo s |` gives.
func stdinWith(t *testing.T, s string) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() { w.WriteString(s); w.Close() }()
	t.Cleanup(func() { r.Close() })
	return r
}

func runCheck(t *testing.T, cfg, in string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	fs := flag.NewFlagSet("password check", flag.ContinueOnError)
	err := cmdPasswordCheck(stdinWith(t, in))(context.Background(), fs, append([]string{"--config", cfg}, args...), &out, &errOut)
	return out.String(), err
}

// TestPasswordCheckCommand: exit 0 for a good password, 1 (exitWeak)
// with every reason for a weak one, 2 (errUsage) for a password given as
// an argument, an empty or too long input; JSON on --json.
func TestPasswordCheckCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "m.toml")
	os.WriteFile(cfg, []byte("[password]\nmin_length = 12\n"), 0o600)
	if out, err := runCheck(t, cfg, "vK8#qm2Lp0zR\n"); err != nil || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("good: %q %v", out, err)
	}
	out, err := runCheck(t, cfg, "alice2024\r\n", "--login", "alice@example.com")
	if !errors.Is(err, exitWeak) || !strings.Contains(out, "too_short:") || !strings.Contains(out, "contains_login:") || strings.Contains(out, "alice2024") {
		t.Fatalf("weak: %q %v", out, err)
	}
	out, err = runCheck(t, cfg, "Sommer2024", "--json")
	if !errors.Is(err, exitWeak) || !strings.Contains(out, `"code": "too_short"`) || !strings.Contains(out, `"ok": false`) {
		t.Fatalf("json: %q %v", out, err)
	}
	for _, tc := range []struct{ in, arg string }{
		{"", ""}, {strings.Repeat("x", password.MaxLen+1) + "\n", ""}, {"x\n", "the-password"},
	} {
		args := []string{}
		if tc.arg != "" {
			args = append(args, tc.arg)
		}
		if _, err := runCheck(t, cfg, tc.in, args...); !errors.Is(err, errUsage) {
			t.Errorf("input %.20q args %v: %v; want a usage error", tc.in, args, err)
		}
	}
}

// TestPasswordGenerateCommand: every generated password, both forms,
// passes `password check` with the same config.
func TestPasswordGenerateCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "m.toml")
	os.WriteFile(cfg, []byte("[password]\nmin_length = 14\nmin_classes = 4\n"), 0o600)
	for _, args := range [][]string{{"--count", "20"}, {"--count", "20", "--words", "4"}, {"--length", "30", "--count", "5"}} {
		var out bytes.Buffer
		fs := flag.NewFlagSet("password generate", flag.ContinueOnError)
		if err := cmdPasswordGenerate(context.Background(), fs, append([]string{"--config", cfg}, args...), &out); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != map[bool]int{true: 5, false: 20}[args[1] == "30"] {
			t.Fatalf("%v: %d lines", args, len(lines))
		}
		for _, pw := range lines {
			if o, err := runCheck(t, cfg, pw+"\n"); err != nil {
				t.Fatalf("%v: generated %q fails: %s %v", args, pw, o, err)
			}
		}
	}
	fs := flag.NewFlagSet("password generate", flag.ContinueOnError)
	if err := cmdPasswordGenerate(context.Background(), fs, []string{"--config", cfg, "--length", "8"}, &bytes.Buffer{}); !errors.Is(err, errUsage) {
		t.Fatalf("length below min_length: %v", err)
	}
}

// TestConfigCheckBreachedFile: config check opens the breached list as
// serve would: a sorted file is ok, an unsorted one is an error naming
// the key.
func TestConfigCheckBreachedFile(t *testing.T) {
	dir := t.TempDir()
	sorted := filepath.Join(dir, "sorted.txt")
	unsorted := filepath.Join(dir, "unsorted.txt")
	os.WriteFile(sorted, []byte(strings.Repeat("0", 40)+":3\r\n"+strings.Repeat("A", 40)+":1\r\n"), 0o600)
	os.WriteFile(unsorted, []byte(strings.Repeat("A", 40)+":3\r\n"+strings.Repeat("0", 40)+":1\r\n"), 0o600)
	for _, c := range []struct {
		file string
		ok   bool
	}{{sorted, true}, {unsorted, false}} {
		cfg := filepath.Join(dir, "m.toml")
		os.WriteFile(cfg, []byte(fmt.Sprintf("[store]\npath = %q\n[dovecot]\napi_key = \"0123456789abcdef0123\"\n[password]\nbreached_file = %q\n", filepath.Join(dir, "m.db"), c.file)), 0o600)
		var out bytes.Buffer
		err := cmdConfigCheck(t.Context(), flag.NewFlagSet("config check", flag.ContinueOnError), []string{"--config", cfg}, &out)
		if c.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "password.breached_file") && !strings.Contains(err.Error(), "not sorted")) {
			t.Errorf("%s: %v\n%s", c.file, err, out.String())
		}
	}
}

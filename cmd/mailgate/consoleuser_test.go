package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/internal/console"
)

// console-user add hashes the password from standard input into the
// users file; list and rm work on it; bad input changes nothing.
func TestConsoleUserCommands(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	cfg := filepath.Join(dir, "m.toml")
	os.WriteFile(cfg, []byte("[console]\nusers_file = \""+users+"\"\n"), 0o600)
	add := func(name, in string) (string, error) {
		var out, errOut bytes.Buffer
		err := cmdConsoleUserAdd(stdinWith(t, in))(context.Background(), flag.NewFlagSet("console-user add", flag.ContinueOnError),
			[]string{"--config", cfg, name}, &out, &errOut)
		return out.String(), err
	}
	if out, err := add("alice", "a-long-console-password\n"); err != nil || !strings.Contains(out, "console user alice added") {
		t.Fatalf("add: %q %v", out, err)
	}
	b, _ := os.ReadFile(users)
	if strings.Contains(string(b), "a-long-console-password") || !strings.Contains(string(b), "alice:$argon2id$") {
		t.Fatalf("users file:\n%s", b)
	}
	u := console.NewUsers(users)
	if ok, err := u.Check("alice", []byte("a-long-console-password")); !ok || err != nil {
		t.Fatalf("the added user does not sign in: %v", err)
	}
	for _, c := range [][2]string{{"alice", "short\n"}, {"Alice!", "a-long-console-password\n"}, {"admin-token", "a-long-console-password\n"}, {"bob", "\n"}} {
		if _, err := add(c[0], c[1]); !errors.Is(err, errUsage) {
			t.Errorf("add %q: %v, want a usage error", c, err)
		}
	}
	if b2, _ := os.ReadFile(users); !bytes.Equal(b, b2) {
		t.Error("a refused add changed the file")
	}
	var out bytes.Buffer
	if err := cmdConsoleUserList(context.Background(), flag.NewFlagSet("console-user list", flag.ContinueOnError), []string{"--config", cfg}, &out); err != nil || out.String() != "alice\n" {
		t.Fatalf("list: %q %v", out.String(), err)
	}
	rm := func(name string) error {
		return cmdConsoleUserRemove(context.Background(), flag.NewFlagSet("console-user rm", flag.ContinueOnError), []string{"--config", cfg, name}, &bytes.Buffer{})
	}
	if err := rm("alice"); err != nil {
		t.Fatal(err)
	}
	if err := rm("alice"); err == nil {
		t.Error("removing a user twice succeeded")
	}
	if ok, _ := u.Check("alice", []byte("a-long-console-password")); ok {
		t.Error("a removed user signs in")
	}
}

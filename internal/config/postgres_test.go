package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPostgresDSNNeverShown: no error or warning about store.dsn shows
// the password it holds, also when the DSN does not parse.
func TestPostgresDSNNeverShown(t *testing.T) {
	const pw = "hunter2-secret"
	for _, dsn := range []string{
		"postgres://mailgate:" + pw + "@db1.example.net:notaport/mailgate",
		"postgres://mailgate:" + pw + "@db1.example.net/mailgate?sslmode=bogus",
		"host=db1.example.net password=" + pw + " sslmode=nonsense",
		"host=db1.example.net password='" + pw,
		"postgres://mailgate:" + pw + "@db1.example.net/mailgate",
	} {
		c := Default()
		c.Store.Driver, c.Store.DSN = "postgres", dsn
		var msgs []string
		if err := c.Validate(); err != nil {
			msgs = append(msgs, err.Error())
		}
		msgs = append(msgs, c.Warnings()...)
		if len(msgs) == 0 {
			t.Errorf("%q: no error and no warning", dsn)
		}
		for _, m := range msgs {
			if strings.Contains(m, pw) {
				t.Errorf("%q: message shows the password: %s", dsn, m)
			}
		}
	}
}

// TestPostgresWarnings: a password in the DSN and a connection that may
// fall back to plain text over the network are warned about; a
// verify-full DSN with a password file, or a unix socket, is not.
func TestPostgresWarnings(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dsn, file string
		want      []string
	}{
		{"postgres://mg:pw@db1.example.net/mg?sslmode=verify-full", "", []string{"holds the database password"}},
		{"postgres://mg@db1.example.net/mg", pwFile, []string{"plain text"}},
		{"postgres://mg@db1.example.net/mg?sslmode=require", pwFile, nil},
		{"postgres://mg@db1.example.net/mg?sslmode=verify-full", pwFile, nil},
		{"host=/run/postgresql dbname=mg", "", nil},
		{"postgres://mg@127.0.0.1/mg?sslmode=disable", pwFile, nil},
	} {
		c := Default()
		c.Store.Driver, c.Store.DSN, c.Store.PasswordFile = "postgres", tc.dsn, tc.file
		if err := c.Validate(); err != nil {
			t.Errorf("%q: %v", tc.dsn, err)
			continue
		}
		got := c.postgresWarnings()
		if len(got) != len(tc.want) {
			t.Errorf("%q: warnings %q, want %q", tc.dsn, got, tc.want)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tc.want[i]) {
				t.Errorf("%q: warning %q, want %q", tc.dsn, got[i], tc.want[i])
			}
		}
	}
}

func TestReadPasswordFile(t *testing.T) {
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
	if pw, err := ReadPasswordFile(write("ok", "s3cret\n", 0o640)); err != nil || pw != "s3cret" {
		t.Errorf("ok: %q, %v", pw, err)
	}
	for name, f := range map[string]string{
		"world":   write("world", "s3cret\n", 0o644),
		"empty":   write("empty", "\n", 0o600),
		"lines":   write("lines", "a\nb\n", 0o600),
		"big":     write("big", strings.Repeat("x", maxPasswordFileLen+1), 0o600),
		"missing": filepath.Join(dir, "missing"),
		"dir":     dir,
	} {
		if _, err := ReadPasswordFile(f); err == nil {
			t.Errorf("%s: read", name)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
}

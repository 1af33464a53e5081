package config

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// maxDSNLen bounds store.dsn.
const maxDSNLen = 4096

// maxPasswordFileLen bounds store.password_file's size.
const maxPasswordFileLen = 1024

// errDSN is the error for a DSN that does not parse. The DSN is not
// shown: pgconn's parse errors mask its password only on a best-effort
// basis.
var errDSN = errors.New("not a valid PostgreSQL connection string (a postgres:// URL or key=value pairs; not shown here, it may hold a password)")

// parseDSN parses store.dsn as pgx will.
func parseDSN(dsn string) (*pgconn.Config, error) {
	switch {
	case dsn == "":
		return nil, errors.New("empty (driver = \"postgres\" needs a connection string, e.g. postgres://mailgate@db1.example.net/mailgate?sslmode=verify-full)")
	case len(dsn) > maxDSNLen:
		return nil, fmt.Errorf("longer than %d bytes", maxDSNLen)
	case strings.ContainsAny(dsn, "\x00\r\n"):
		return nil, errors.New("contains a NUL byte or a line break")
	}
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, errDSN
	}
	return c, nil
}

func checkPostgresDSN(dsn string) error {
	_, err := parseDSN(dsn)
	return err
}

// postgresWarnings are the store.dsn settings that work but expose
// something: a password in the config file, a connection that may go
// over the network in plain text.
func (c *Config) postgresWarnings() []string {
	if c.Store.Driver != "postgres" {
		return nil
	}
	pc, err := parseDSN(c.Store.DSN)
	if err != nil {
		return nil // an error, not a warning
	}
	var w []string
	if pc.Password != "" && c.Store.PasswordFile == "" {
		w = append(w, "store.dsn: holds the database password; move it to store.password_file (mode 0600) so that the config file can be shown and shared without it")
	}
	plain := pc.TLSConfig == nil
	for _, f := range pc.Fallbacks {
		if f.TLSConfig == nil {
			plain = true
		}
	}
	if plain && !localHost(pc.Host) {
		w = append(w, "store.dsn: the connection to "+pc.Host+" may go in plain text (sslmode is disable, allow or prefer, and prefer is the default): the password, rules and bans cross the network readable; set sslmode=verify-full and sslrootcert (docs/store-postgres.md)")
	}
	return w
}

// localHost reports whether a PostgreSQL host is a unix socket directory
// or a loopback address.
func localHost(h string) bool {
	if strings.HasPrefix(h, "/") || h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ReadPasswordFile reads a password_file ([store], [cluster]): a regular
// file that other users cannot read, holding the password on its first
// line (one trailing line break is dropped).
func ReadPasswordFile(path string) (string, error) {
	return ReadLineFile(path, "password", maxPasswordFileLen)
}

// ReadLineFile reads a one-line secret (a password, a key, a token) from
// path: a regular file other users cannot read, at most limit bytes, one
// line (a final line break is dropped), not empty. what names the secret
// in errors, which never show it.
func ReadLineFile(path, what string, limit int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	switch {
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s: not a regular file", path)
	case fi.Mode().Perm()&0o007 != 0:
		return "", fmt.Errorf("%s: mode %04o lets every user read the %s; run: chmod 600 %s", path, fi.Mode().Perm(), what, path)
	case fi.Size() > int64(limit):
		return "", fmt.Errorf("%s: larger than %d bytes: not a %s file", path, limit, what)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return "", err
	}
	if len(b) > limit {
		return "", fmt.Errorf("%s: larger than %d bytes: not a %s file", path, limit, what)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case strings.TrimSpace(s) == "":
		return "", fmt.Errorf("%s: empty", path)
	case strings.ContainsAny(s, "\x00\r\n"):
		return "", fmt.Errorf("%s: more than one line, or a NUL byte", path)
	}
	return s, nil
}

func checkSecretFile(path string) error {
	_, err := ReadPasswordFile(path)
	return err
}

package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"mailgate/internal/config"
	"mailgate/internal/keyfile"
)

// dovecotKey returns the key the Dovecot door requires: dovecot.api_key,
// or the key in its key file, created on the first start. It logs where
// the key is and the line Dovecot needs.
func dovecotKey(cfg *config.Config, log *slog.Logger) (string, error) {
	path := cfg.DovecotKeyFile()
	if path == "" {
		return cfg.Dovecot.APIKey, nil
	}
	key, created, err := keyfile.LoadOrCreate(path)
	if err != nil {
		return "", fmt.Errorf("dovecot.api_key_file: %w", err)
	}
	abs := absPath(path)
	if created {
		log.Warn("dovecot door: created a random API key; Dovecot must send it, or its requests are refused (401) and change nothing: add to Dovecot's config, then reload Dovecot (docs/dovecot.md)",
			"key_file", abs, "dovecot", "auth_policy_server_api_header = <"+abs)
	} else {
		log.Info("dovecot door: API key from file", "key_file", abs, "dovecot", "auth_policy_server_api_header = <"+abs)
	}
	return key, nil
}

// checkDovecotKey is config check's look at the Dovecot door's key file:
// what Dovecot needs, or why the file would stop the start. It creates
// nothing.
func checkDovecotKey(cfg *config.Config, w io.Writer) error {
	path := cfg.DovecotKeyFile()
	if !cfg.Dovecot.Enabled || path == "" {
		return nil
	}
	abs := absPath(path)
	ok, err := keyfile.Exists(path)
	if err != nil {
		return fmt.Errorf("dovecot.api_key_file: %w", err)
	}
	if !ok {
		fmt.Fprintf(w, "dovecot: no key file yet: serve creates %s with a random API key on its first start; Dovecot needs\n  auth_policy_server_api_header = <%s\n", abs, abs)
		return nil
	}
	if _, err := keyfile.Load(path); err != nil {
		return fmt.Errorf("dovecot.api_key_file: %w", err)
	}
	fmt.Fprintf(w, "dovecot: API key in %s; Dovecot needs\n  auth_policy_server_api_header = <%s\n", abs, abs)
	return nil
}

// absPath is path made absolute, as Dovecot's config needs it; path itself
// if the working directory is unknown.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// warnSocketDir warns when a unix socket others may connect to (mode
// 0666) sits in a directory every local user can enter: then nothing but
// the directory would have kept them out.
func warnSocketDir(log *slog.Logger, key, path string) {
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm()&0o001 == 0 {
		return
	}
	log.Warn(key+": the socket is mode 0666 in a directory every local user may enter, so every local user can use it; put it in Postfix's private/ directory (mode 0700, owner postfix), e.g. /var/spool/postfix/private/mailgate", "socket", path)
}

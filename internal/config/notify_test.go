package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifyParse: a [[notify]] entry gets the defaults for the keys it
// leaves out, and keeps what it sets, also 0 (retries = 0: no retry).
func TestNotifyParse(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "hook.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(`
[[notify]]
name = "hook"
kind = "webhook"
url = "https://hooks.example.com/mailgate"
secret_file = "` + key + `"
retries = 0

[[notify]]
name = "mail"
kind = "mail"
from = "mailgate@example.com"
to = ["admin@example.com"]
events = ["login_banned", "firewall_failed"]
queue = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	h, m := cfg.Notify[0], cfg.Notify[1]
	if h.Retries != 0 || h.Timeout != 10*time.Second || h.Queue != 1000 || h.Backoff != time.Second || h.MaxBackoff != 5*time.Minute || len(h.Sendmail) != 0 {
		t.Errorf("webhook %+v", h)
	}
	if m.Retries != 5 || m.Queue != 5 || len(m.Sendmail) != 1 || m.Sendmail[0] != "/usr/sbin/sendmail" {
		t.Errorf("mail %+v", m)
	}
	if s, err := ReadSecretFile(key, "webhook key"); err != nil || s != "0123456789abcdef0123456789abcdef" {
		t.Errorf("ReadSecretFile = %q, %v", s, err)
	}
}

// TestNotifySecretFileChecked: a key other users may read, or a short
// one, is refused with the key path; the error never shows the key.
func TestNotifySecretFileChecked(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"world": {"0123456789abcdef0123456789abcdef", 0o644, "chmod 600"},
		"short": {"tiny-key", 0o600, "shorter than 16"},
	} {
		path := filepath.Join(dir, name)
		os.WriteFile(path, []byte(c.content), c.mode)
		os.Chmod(path, c.mode)
		_, err := Parse([]byte(`
[[notify]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/x"
secret_file = "` + path + `"
`))
		if err == nil || !strings.Contains(err.Error(), "notify[0].secret_file") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), c.content) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
}
